"""Streaming line access to raw files: gzip transparent, numbered, with clear errors.

Readers never load a whole file: they iterate ``numbered_lines`` and hand each line to a
parser. A corrupt or truncated gzip stream and an undecodable line are reported with the file
name and the line number reached.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from lmmrec_cli.data.badlines import BadLines
from lmmrec_cli.errors import InputError

GZIP_MAGIC = b"\x1f\x8b"


def is_gzip(path: str | Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == GZIP_MAGIC


def open_binary(path: str | Path) -> BinaryIO:
    """Open a file for reading bytes, decompressing gzip (recognised by content, not name)."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found", hint="check the path")
    if path.is_dir():
        raise InputError(path, "is a directory, expected a file")
    if is_gzip(path):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


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
    with open_binary(path) as handle:
        try:
            for raw in handle:
                line_number += 1
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
                if not text.strip():
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
    if not seen_content:
        raise InputError(path, "the file is empty", hint="check that the download finished")


def peek_lines(path: str | Path, count: int = 5, max_bytes: int = 1 << 20) -> list[str]:
    """The first ``count`` non-blank lines (decoded leniently), for format detection."""
    lines: list[str] = []
    try:
        with open_binary(path) as handle:
            reader = io.BufferedReader(handle) if not isinstance(handle, io.BufferedReader) else handle
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
        raise InputError(path, f"the gzip data is corrupt ({exc})", line=1) from None
    return lines
