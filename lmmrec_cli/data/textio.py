"""Streaming line access to raw files: gzip transparent, numbered, with clear errors.

Readers never load a whole file: they iterate ``numbered_lines`` and hand each line to a
parser. A corrupt or truncated gzip stream and an undecodable line are reported with the file
name and the line number reached.
"""

from __future__ import annotations

import codecs
import gzip
import io
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import BinaryIO

from lmmrec_cli.data.badlines import BadLines
from lmmrec_cli.errors import InputError, UsageError

GZIP_MAGIC = b"\x1f\x8b"

# Progress of reading, in bytes of the file on disk (compressed bytes for gzip, so the total is
# the file size). Readers stay unaware of it: ``numbered_lines`` calls the hook every
# ``PROGRESS_EVERY`` lines with the bytes read since its last call.
PROGRESS_EVERY = 4096
_bytes_read_hook: ContextVar[Callable[[int], None] | None] = ContextVar("bytes_read_hook", default=None)


def bytes_read_hook() -> Callable[[int], None] | None:
    """The hook of the enclosing :func:`report_bytes_read` (for readers that do not read lines)."""
    return _bytes_read_hook.get()


@contextmanager
def report_bytes_read(hook: Callable[[int], None]) -> Iterator[None]:
    """While the block runs, ``numbered_lines`` reports bytes read to ``hook``."""
    token = _bytes_read_hook.set(hook)
    try:
        yield
    finally:
        _bytes_read_hook.reset(token)


def open_binary(path: str | Path) -> BinaryIO:
    """Open a file for reading bytes, decompressing gzip (recognised by content, not name)."""
    return _open_counted(path)[0]


def _open_counted(path: str | Path, buffer_size: int = 1 << 16) -> tuple[BinaryIO, BinaryIO]:
    """The (decompressed) stream and the file on disk under it, whose position is the bytes read."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found", hint="check the path")
    if path.is_dir():
        raise InputError(path, "is a directory, expected a file")
    raw = open(path, "rb")
    if raw.read(2) == GZIP_MAGIC:
        raw.seek(0)
        # GzipFile.readline is Python code; a BufferedReader on top iterates lines in C. Its
        # buffer is small so a damaged stream is reported near the line where it breaks.
        stream = io.BufferedReader(gzip.GzipFile(fileobj=raw, mode="rb"), buffer_size=buffer_size)
        return stream, raw  # type: ignore[return-value]
    raw.seek(0)
    return raw, raw


def numbered_lines(
    path: str | Path,
    bad_lines: BadLines,
    *,
    encoding: str = "utf-8",
    skip_blank: bool = True,
) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for each line (1-based), without the newline.

    Lines that cannot be decoded go to ``bad_lines``; a damaged gzip stream is an error
    (the rest of the file cannot be trusted), naming the last line read.
    """
    path = Path(path)
    line_number = 0
    seen_content = False
    hook = _bytes_read_hook.get()
    handle, on_disk = _open_counted(path)
    reported = 0
    with handle, on_disk:
        try:
            for raw in handle:
                line_number += 1
                if hook is not None and not line_number % PROGRESS_EVERY:
                    position = on_disk.tell()
                    hook(position - reported)
                    reported = position
                if line_number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
                try:
                    text = raw.decode(encoding)
                except UnicodeDecodeError as exc:
                    bad_lines.report(
                        path,
                        line_number,
                        f"not valid {encoding} text at byte {exc.start}",
                        hint=f"re-encode the file as {encoding}, pass --encoding, or --on-bad-line skip",
                    )
                    continue
                text = text.rstrip("\r\n")
                if not text or text.isspace():  # isspace, unlike strip, copies nothing
                    if skip_blank:
                        continue
                seen_content = True
                yield line_number, text
        except (gzip.BadGzipFile, EOFError, zlib.error, OSError) as exc:
            if isinstance(exc, OSError) and not isinstance(exc, gzip.BadGzipFile) and exc.errno:
                raise
            raise InputError(
                path,
                f"the gzip data is corrupt or truncated after line {line_number} ({exc})",
                line=line_number + 1,
                hint="download the file again or decompress what is readable with `zcat`",
            ) from None
        if hook is not None:
            hook(on_disk.tell() - reported)
    if not seen_content:
        raise InputError(path, "the file is empty", hint="check that the download finished")


def peek_lines(path: str | Path, count: int = 5, max_bytes: int = 1 << 20) -> list[str]:
    """The first ``count`` non-blank lines (decoded leniently), for format detection."""
    lines: list[str] = []
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found", hint="check the path")
    try:
        with open(path, "rb") as on_disk:
            gzipped = on_disk.read(2) == GZIP_MAGIC
            on_disk.seek(0)
            # Small reads: a damaged stream further on must not fail the sniffing of line 1.
            reader = io.BufferedReader(gzip.GzipFile(fileobj=on_disk, mode="rb"), 8192) if gzipped else on_disk
            budget = max_bytes
            while len(lines) < count and budget > 0:
                raw = reader.readline(budget)
                if not raw:
                    break
                budget -= len(raw)
                text = raw.decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r\n")
                if text.strip():
                    lines.append(text)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        if not lines:
            raise InputError(path, f"the gzip data is corrupt ({exc})", line=1) from None
        # Some lines were read: reading the whole file reports the damage with its line number.
    return lines


_WIDE_BOMS = {
    codecs.BOM_UTF32_LE: "UTF-32", codecs.BOM_UTF32_BE: "UTF-32",  # before UTF-16: FF FE 00 00 starts with FF FE
    codecs.BOM_UTF16_LE: "UTF-16", codecs.BOM_UTF16_BE: "UTF-16",
}


def check_encoding(encoding: str) -> str:
    """``--encoding``, if readers can honour it: lines are split on the newline byte before they
    are decoded, so only encodings that write ASCII as ASCII (UTF-8, Latin-1, cp1252, ...) work."""
    try:
        codec = codecs.lookup(encoding)
    except LookupError:
        raise UsageError(f"--encoding {encoding!r}: unknown encoding", hint="e.g. utf-8, latin-1, cp1252") from None
    try:
        ascii_kept = b"\n\t,;{}\"ab1".decode(codec.name) == "\n\t,;{}\"ab1"
    except UnicodeDecodeError:
        ascii_kept = False
    if not ascii_kept:
        raise UsageError(
            f"--encoding {encoding!r} is not supported: lines are split on the byte \\n, so only encodings "
            "that keep ASCII as is (utf-8, latin-1, cp1252, ...) can be read",
            hint=f"convert the file to UTF-8 first: iconv -f {encoding} -t UTF-8 FILE > FILE.utf8",
        )
    return encoding


def check_text_file(path: str | Path, sample: int = 8192) -> None:
    """Refuse, with the real cause, a file that is not line-oriented text readers can split:
    binary data, UTF-16/32 text, or lines ended by a bare carriage return."""
    path = Path(path)
    try:
        with open_binary(path) as handle:
            head = handle.read(sample)
    except (gzip.BadGzipFile, EOFError, zlib.error):
        return  # reading the file reports the damage with its line number
    name = next((wide for bom, wide in _WIDE_BOMS.items() if head.startswith(bom)), None)
    if name is None:
        # no BOM: ASCII as UTF-16 has a zero in every other byte, and none in the bytes between
        even, odd = head[0::2].count(0), head[1::2].count(0)
        wide = len(head) >= 8 and min(even, odd) == 0 and max(even, odd) > len(head) // 4
        name = "UTF-16" if wide else None
    if name is not None:
        raise InputError(
            path,
            f"the file is {name} text; lines are read as UTF-8 or another ASCII-compatible encoding (--encoding)",
            hint=f"convert it first: iconv -f {name} -t UTF-8 {path} > {path}.utf8",
        )
    if b"\0" in head:
        raise InputError(
            path,
            f"this is not text: binary data (a NUL byte at offset {head.index(0)})",
            hint="name the data file itself (gzip is read as is; unpack zip, bz2 or xz archives first)",
        )
    if b"\r" in head and b"\n" not in head:
        raise InputError(
            path,
            "lines end with a bare carriage return (CR, classic Mac OS line endings), not LF or CRLF",
            line=1,
            hint=f"convert the line endings: tr '\\r' '\\n' < {path} > {path}.lf",
        )
