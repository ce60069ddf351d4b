"""Output for people (rich tables, progress bars) and for machines (``--json``).

Library code reports progress through :class:`Progress`, which the CLI backs with rich bars
and tests back with nothing, so no module below the CLI prints on its own.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress


def _console(stderr: bool) -> Console:
    # Piped output (logs, CI, tests) gets a wide fixed width so tables and trees are not cut.
    probe = Console(stderr=stderr)
    width = None if probe.is_terminal else 160
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=width)


stdout = _console(stderr=False)
stderr = _console(stderr=True)


def print_json(obj: Any) -> None:
    """Machine output: one JSON document on stdout, nothing else."""
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


class Task:
    """One progress bar; ``advance`` adds work done, ``set_postfix`` shows live numbers."""

    def __init__(self, progress: RichProgress | None, task_id: Any) -> None:
        self._progress = progress
        self._task_id = task_id

    def advance(self, amount: float = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task_id, amount)

    def update(self, *, completed: float | None = None, total: float | None = None) -> None:
        if self._progress is not None:
            self._progress.update(self._task_id, completed=completed, total=total)

    def set_postfix(self, text: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task_id, postfix=text)


class Progress:
    """Progress reporting for long work. ``Progress(enabled=False)`` reports nothing."""

    def __init__(self, enabled: bool = True, console: Console | None = None) -> None:
        self.enabled = enabled
        self.console = console or stderr

    @contextmanager
    def task(self, description: str, total: float | None = None, unit: str = "") -> Iterator[Task]:
        if not self.enabled:
            yield Task(None, None)
            return
        columns = [
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn() if unit != "bytes" else TaskProgressColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[postfix]}"),
        ]
        with RichProgress(*columns, console=self.console, transient=False) as bar:
            task_id = bar.add_task(description, total=total, postfix="")
            yield Task(bar, task_id)

    def note(self, message: str) -> None:
        if self.enabled:
            self.console.print(message)


SILENT = Progress(enabled=False)
