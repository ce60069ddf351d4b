"""User-facing errors.

Every mistake a user can make (a missing file, a malformed line, an unknown option value)
raises :class:`LmmrecError`. The CLI prints its message as one line on stderr and exits
non-zero, with no traceback; anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class LmmrecError(Exception):
    """An error caused by input or settings, explained in one line."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = " ".join(self.message.split())
        if self.hint:
            text += f" ({' '.join(self.hint.split())})"
        return text


class InputError(LmmrecError):
    """Bad content in an input file, located by file and (where known) line number."""

    def __init__(
        self,
        path: str | Path,
        problem: str,
        *,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.path = str(path)
        self.line = line
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}", hint=hint)


class UsageError(LmmrecError):
    """Settings that cannot work together, or a reference to something that does not exist."""

    exit_code = 2
