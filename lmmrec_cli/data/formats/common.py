"""Parsing helpers shared by the raw-format readers: record lines, fields, times, readable text.

Every reader turns one line into one dict with :func:`records`, then picks fields from it. A
line that is not a record, or lacks a required field, goes to the :class:`BadLines` policy with
its line number; nothing here loads a whole file.
"""

from __future__ import annotations

import ast
import calendar
import html
import json
import math
import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from lmmrec_cli.data.badlines import BadLines
from lmmrec_cli.data.textio import numbered_lines

# Some dumps (Amazon 2014 meta, Steam) are Python literals; a strict-JSON line is tried first
# because json.loads is ~20x faster than ast.literal_eval.
JSON = "json"
LITERAL = "literal"
JSON_OR_LITERAL = "json-or-literal"

_LITERAL_ERRORS = (ValueError, SyntaxError, TypeError, MemoryError, RecursionError)


def parse_record(text: str, syntax: str) -> dict | None:
    """The dict a line holds, or None if it is not one (never evaluates code)."""
    value: Any = None
    if syntax != LITERAL:
        try:
            value = json.loads(text)
        except ValueError:
            value = None
    if value is None and syntax != JSON:
        try:
            value = ast.literal_eval(text)
        except _LITERAL_ERRORS:
            value = None
    return value if isinstance(value, dict) else None


def records(
    path: Path, bad_lines: BadLines, *, syntax: str, encoding: str = "utf-8"
) -> Iterator[tuple[int, dict]]:
    """``(line_number, record)`` for each line holding one object; other lines are bad lines."""
    what = {JSON: "a JSON object", LITERAL: "a Python-literal record"}.get(
        syntax, "a JSON or Python-literal record"
    )
    loads = json.loads
    try_json = syntax != LITERAL
    for line_number, text in numbered_lines(path, bad_lines, encoding=encoding):
        # The common case inline (this loop runs once per line of multi-GB dumps).
        record = None
        if try_json:
            try:
                record = loads(text)
            except ValueError:
                pass
        if type(record) is not dict:
            record = parse_record(text, syntax) if syntax != JSON else None
        if record is None:
            bad_lines.report(path, line_number, f"not {what} (malformed or truncated line)")
            continue
        yield line_number, record


def first_line_record(first_lines: list[str], syntax: str = JSON_OR_LITERAL) -> dict | None:
    """The record on the first line, for sniffing (None if it is not one)."""
    return parse_record(first_lines[0], syntax) if first_lines else None


def id_field(record: dict, key: str) -> str | None:
    """A required id as text; None when absent or empty (ids may be stored as numbers)."""
    value = record.get(key)
    if type(value) is str:
        return value if value and not value.isspace() else None
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    text = str(value).strip()
    return text or None


def missing(path: Path, line: int, bad_lines: BadLines, keys: Iterable[str]) -> None:
    bad_lines.report(path, line, f"missing required field {' / '.join(repr(k) for k in keys)}")


class BadValue(ValueError):
    """A field holds something that cannot be read as what it should be."""


def rating_value(value: Any) -> float | None:
    if type(value) is float and value - value == 0:  # finite (inf - inf and NaN - NaN are NaN)
        return value
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise BadValue(f"rating {value!r} is not a number")
    try:
        rating = float(value)
    except (TypeError, ValueError):
        raise BadValue(f"rating {value!r} is not a number") from None
    if rating != rating:  # NaN: treat as unrated
        return None
    if not math.isfinite(rating):  # inf, or 1e400 read as inf: no rating scale has it
        raise BadValue(f"rating {value!r} is not a finite number")
    return rating


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def timestamp_value(value: Any) -> int | None:
    """Unix seconds from an int/float (seconds, or milliseconds when implausibly large), a
    numeric string, or an ISO date / date-time string (read as UTC)."""
    if type(value) is int and -100_000_000_000 < value < 100_000_000_000:
        return value
    if value is None or value == "" or isinstance(value, bool):
        return None
    if hasattr(value, "timetuple"):  # datetime / date from a Parquet timestamp column
        if getattr(value, "tzinfo", None) is not None:
            return int(value.timestamp())
        return calendar.timegm(value.timetuple())
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        text = str(value).strip()
        try:
            number = float(text)
        except ValueError:
            if not _ISO_DATE.match(text):
                raise BadValue(f"timestamp {value!r} is neither a number nor an ISO date") from None
            try:
                moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise BadValue(f"timestamp {value!r} is not a valid date") from None
            if moment.tzinfo is not None:
                return int(moment.timestamp())
            return calendar.timegm(moment.timetuple())
    if number != number:
        return None
    # Anything past year 5000 in seconds is a millisecond stamp (Amazon 2023 uses ms).
    if abs(number) > 1e11:
        number /= 1000.0
    return int(number)


# A tag starts with a letter, "/" or "!" so "price < 10" survives; an unclosed tag runs to the end.
_TAG = re.compile(r"</?[A-Za-z!][^>]*>?")
_SPACE = re.compile(r"\s+")


def raw_text(value: Any) -> str:
    """A review field as given (not cleaned: review text is kept verbatim); missing → ""."""
    return str(value) if value else ""


def clean_text(value: Any) -> str:
    """Readable text: HTML tags stripped, entities decoded, whitespace collapsed.

    A value that is only markup (Amazon 2018 titles like ``<span class="a-size-medium"``)
    becomes "".
    """
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return " ".join(t for t in (clean_text(v) for v in value) if t)
    text = str(value)
    if "<" in text:
        text = _TAG.sub(" ", text)
    if "&" in text:
        text = html.unescape(text)
    return _SPACE.sub(" ", text).strip()


def text_list(value: Any) -> list[str]:
    """A list of cleaned, non-empty, de-duplicated strings from a list, nested lists or a
    comma-separated string."""
    if value is None:
        return []
    if isinstance(value, str):
        parts: list[Any] = value.split(",")
    elif isinstance(value, (list, tuple)):
        parts = []
        for entry in value:
            parts.extend(entry if isinstance(entry, (list, tuple)) else [entry])
    else:
        parts = [value]
    seen: dict[str, None] = {}
    for part in parts:
        text = clean_text(part)
        if text:
            seen.setdefault(text, None)
    return list(seen)


def labelled(parts: Iterable[tuple[str, Any]]) -> str:
    """Join labelled pieces into prose: ``"Categories: A, B. Description: ..."``; empty
    pieces are left out."""
    out = []
    for label, value in parts:
        if isinstance(value, (list, tuple)):
            text = ", ".join(text_list(value))
        else:
            text = clean_text(value)
        if text:
            out.append(f"{label}: {text}" if label else text)
    return " ".join(p if p.endswith((".", "!", "?")) else p + "." for p in out)
