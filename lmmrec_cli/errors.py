"""User-facing errors.

Every mistake a user can make (a missing file, a malformed line, an unknown option value)
raises :class:`LmmrecError`. The CLI prints its message as one line on stderr and exits
non-zero, with no traceback. So does an operating-system refusal (an ``OSError`` with an errno:
permission, a full disk, a name too long), named by its file; anything else that escapes is a
bug and keeps its traceback.
"""

from __future__ import annotations

import errno
from pathlib import Path

# Write failures that mean the disk (or the process's file size limit, `ulimit -f`) is full.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})


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


class DiskFullError(LmmrecError):
    """A write failed for lack of space (or over the file size limit), naming what was written."""

    def __init__(self, error: OSError, writing: str | Path) -> None:
        cause = "file too large (over the file size limit)" if error.errno == errno.EFBIG else "no space left"
        super().__init__(
            f"{cause} while writing {writing}",
            hint="free space on that disk (or raise `ulimit -f`) and run the command again",
        )


class DamagedFileError(LmmrecError):
    """A file this tool wrote earlier (an artifact's) cannot be read back: truncated or corrupt."""

    def __init__(self, path: str | Path, error: BaseException, *, hint: str | None = None) -> None:
        reason = " ".join(str(error).split())[:160] or type(error).__name__
        super().__init__(
            f"{path} is damaged or truncated ({reason})",
            hint=hint or "delete that artifact's directory and run the command that made it again",
        )


def environment_error(error: OSError) -> LmmrecError:
    """One line for an operating-system refusal (permission, missing file, full disk, name too
    long...) that reached the command line without a more specific message."""
    name = error.filename
    if error.errno in DISK_FULL_ERRNOS:
        return DiskFullError(error, name or "a file")
    reason = error.strerror or str(error)
    where = f"{name}: " if name else ""
    return LmmrecError(f"{where}{reason}", hint="check the path and its permissions")
