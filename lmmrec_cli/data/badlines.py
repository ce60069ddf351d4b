"""What to do with a line that cannot be read: skip and count it, or stop.

Huge dumps always hold a few broken lines, so the default policy skips them, counts them and
remembers the first few line numbers for the summary and the manifest; ``--strict`` (or
``--on-bad-line fail``) turns the first one into an error that names file and line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lmmrec_cli.errors import InputError

MAX_EXAMPLES = 5
POLICIES = ("skip", "fail")


@dataclass
class BadLines:
    """Collects bad lines of one or more files under one policy."""

    policy: str = "skip"
    count: int = 0
    examples: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"unknown bad-line policy {self.policy!r}")

    def report(self, path: str | Path, line: int, problem: str, hint: str | None = None) -> None:
        """Record one bad line; raises :class:`InputError` under the ``fail`` policy."""
        if self.policy == "fail":
            raise InputError(
                path,
                problem,
                line=line,
                hint=hint or "fix or remove the line, or pass --on-bad-line skip to skip such lines",
            )
        self.count += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append({"file": str(path), "line": line, "problem": problem})

    def as_dict(self) -> dict:
        return {"policy": self.policy, "count": self.count, "examples": self.examples}
