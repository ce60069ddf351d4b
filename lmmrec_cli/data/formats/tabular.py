"""Generic tables: CSV / TSV (with a header line), JSON lines, and Parquet.

Columns are named with ``--col-user``, ``--col-item``, ``--col-rating``, ``--col-text``,
``--col-summary``, ``--col-timestamp``; when a name is not given, common names are tried
(``user_id``, ``userId``, ``item_id``, ``asin``, ``rating``, ``timestamp``...). A named column
that the file lacks is an error that lists the columns it has. Timestamps may be Unix seconds
(or milliseconds), ISO dates, or Parquet timestamps.

Item tables (``--meta``) take ``--col-item``, ``--col-title`` and ``--col-item-text``; without
``--col-item-text`` every other column becomes labelled text ("Genres: Comedy. Year: 1995.").
An item table may be in any of the three layouts, whatever the review table's is.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.parquet as pq

from lmmrec_cli.data.badlines import BadLines
from lmmrec_cli.data.formats import RawFormat, ReadOptions, is_parquet
from lmmrec_cli.data.formats.columnar import JsonReviewColumns, read_review_batches
from lmmrec_cli.data.formats.common import (
    JSON,
    BadValue,
    clean_text,
    first_line_record,
    labelled,
    rating_value,
    records,
    timestamp_value,
)
from lmmrec_cli.data.records import ItemText, Review
from lmmrec_cli.data.textio import bytes_read_hook, numbered_lines, peek_lines
from lmmrec_cli.errors import InputError

DELIMITERS = ("\t", ",", ";", "|")
PARQUET_BATCH_ROWS = 65_536

USER_NAMES = ("user_id", "userId", "userID", "user", "uid", "reviewerID", "username", "customer_id")
ITEM_NAMES = (
    "item_id",
    "itemId",
    "itemID",
    "item",
    "iid",
    "parent_asin",
    "asin",
    "business_id",
    "product_id",
    "movieId",
    "movie_id",
    "book_id",
    "isbn",
)
RATING_NAMES = ("rating", "overall", "stars", "score")
TEXT_NAMES = ("text", "review", "reviewText", "review_text", "comment", "body")
SUMMARY_NAMES = ("summary", "review_title", "headline")
TIME_NAMES = ("timestamp", "time", "unixReviewTime", "date", "datetime")
TITLE_NAMES = ("title", "name", "app_name", "movie_title", "item_name")


def _pick(
    columns: list[str],
    given: str | None,
    guesses: tuple[str, ...],
    option: str,
    path: Path,
    required: bool,
) -> str | None:
    """The column to use: the one named by ``option``, else the first common name present."""
    if given is not None:
        if given not in columns:
            raise InputError(
                path,
                f"no column {given!r} ({option}); the file has: {', '.join(map(repr, columns))}",
                hint=f"pass {option} with one of these names",
            )
        return given
    lowered = {c.lower(): c for c in columns}
    for guess in guesses:
        if guess in columns:
            return guess
        if guess.lower() in lowered:
            return lowered[guess.lower()]
    if required:
        raise InputError(
            path,
            f"cannot tell which column holds the {option[6:]} id; the file has: {', '.join(map(repr, columns))}",
            hint=f"pass {option} NAME",
        )
    return None


@dataclass(frozen=True)
class _ReviewColumns:
    user: str
    item: str
    rating: str | None
    text: str | None
    summary: str | None
    timestamp: str | None

    @classmethod
    def resolve(cls, columns: list[str], options: ReadOptions, path: Path) -> _ReviewColumns:
        return cls(
            user=_pick(columns, options.col_user, USER_NAMES, "--col-user", path, True),  # type: ignore[arg-type]
            item=_pick(columns, options.col_item, ITEM_NAMES, "--col-item", path, True),  # type: ignore[arg-type]
            rating=_pick(columns, options.col_rating, RATING_NAMES, "--col-rating", path, False),
            text=_pick(columns, options.col_text, TEXT_NAMES, "--col-text", path, False),
            summary=_pick(
                columns, options.col_summary, SUMMARY_NAMES, "--col-summary", path, False
            ),
            timestamp=_pick(
                columns, options.col_timestamp, TIME_NAMES, "--col-timestamp", path, False
            ),
        )

    def review(
        self, row: dict[str, Any], path: Path, line: int, bad_lines: BadLines
    ) -> Review | None:
        user, item = _id(row.get(self.user)), _id(row.get(self.item))
        if user is None or item is None:
            bad_lines.report(
                path, line, f"empty or missing {self.user if user is None else self.item!r}"
            )
            return None
        try:
            rating = rating_value(row.get(self.rating)) if self.rating else None
            timestamp = timestamp_value(row.get(self.timestamp)) if self.timestamp else None
        except BadValue as error:
            bad_lines.report(path, line, str(error))
            return None
        return Review(
            user, item, rating, timestamp, _text(row, self.text), _text(row, self.summary), line
        )


@dataclass(frozen=True)
class _ItemColumns:
    item: str
    title: str | None
    text: str | None
    others: tuple[str, ...]

    @classmethod
    def resolve(cls, columns: list[str], options: ReadOptions, path: Path) -> _ItemColumns:
        item = _pick(columns, options.col_item, ITEM_NAMES, "--col-item", path, True)
        title = _pick(columns, options.col_title, TITLE_NAMES, "--col-title", path, False)
        text = _pick(columns, options.col_item_text, (), "--col-item-text", path, False)
        others = tuple(c for c in columns if c not in (item, title)) if text is None else ()
        return cls(item, title, text, others)  # type: ignore[arg-type]

    def item_text(
        self, row: dict[str, Any], path: Path, line: int, bad_lines: BadLines
    ) -> ItemText | None:
        item = _id(row.get(self.item))
        if item is None:
            bad_lines.report(path, line, f"empty or missing {self.item!r}")
            return None
        title = clean_text(row.get(self.title)) if self.title else ""
        if self.text is not None:
            text = clean_text(row.get(self.text))
        else:
            text = labelled(
                (column.replace("_", " ").capitalize(), _scalar(row.get(column)))
                for column in self.others
            )
        return ItemText(item, title, text, line)


def _id(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # ids read as floats by a table writer: 12.0 → "12"
    text = str(value).strip()
    return text or None


def _text(row: dict[str, Any], column: str | None) -> str:
    if column is None:
        return ""
    value = row.get(column)
    return "" if value is None else value if isinstance(value, str) else str(value)


def _scalar(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        return ""
    if isinstance(value, (list, tuple, str)) or value is None:
        return value
    return str(value)


# -- row sources ----------------------------------------------------------------------------


def _header_delimiter(line: str) -> str | None:
    """The delimiter of a header line, or None if it does not look like a header of names."""
    if line.lstrip()[:1] in ("{", "["):
        return None
    counts = {d: line.count(d) for d in DELIMITERS}
    delimiter = max(DELIMITERS, key=lambda d: counts[d])
    if counts[delimiter] == 0:
        return None
    try:
        names = next(csv.reader([line], delimiter=delimiter))
    except csv.Error:  # e.g. a line break inside an unquoted field: not a header
        return None
    if len(names) < 2 or any(not n.strip() or len(n) > 100 for n in names):
        return None
    # A header names columns; a data row usually has numbers in it.
    if any(_is_number(n) for n in names):
        return None
    return delimiter


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _csv_rows(
    path: Path, options: ReadOptions, bad_lines: BadLines, delimiter: str | None
) -> tuple[list[str], Iterator[tuple[int, dict[str, Any]]]]:
    """Header and ``(line, row)`` pairs of a delimited text file."""
    current = [0]

    def physical_lines() -> Iterator[str]:
        # Keeps the newline so the csv module can rebuild quoted fields that span lines.
        for number, text in numbered_lines(
            path, bad_lines, encoding=options.encoding, skip_blank=False
        ):
            current[0] = number
            yield text + "\n"

    csv.field_size_limit(
        min(sys.maxsize, 2**31 - 1)
    )  # long review texts exceed the 128 KiB default
    lines = physical_lines()
    first = next(lines, None)
    while first is not None and not first.strip():
        first = next(lines, None)
    if first is None:
        raise InputError(path, "the file is empty", hint="check that the download finished")
    delimiter = options.delimiter or delimiter or _header_delimiter(first.rstrip("\n")) or ","
    header = [name.strip() for name in next(csv.reader([first], delimiter=delimiter))]
    reader = csv.reader(lines, delimiter=delimiter)

    def rows() -> Iterator[tuple[int, dict[str, Any]]]:
        width = len(header)
        seen = False
        try:
            for fields in reader:
                if not fields or (len(fields) == 1 and not fields[0].strip()):
                    continue
                seen = True
                if len(fields) != width:
                    bad_lines.report(
                        path,
                        current[0],
                        f"{len(fields)} fields where the header has {width} (malformed or truncated line)",
                    )
                    continue
                yield current[0], dict(zip(header, fields, strict=False))
        except csv.Error as error:
            bad_lines.report(path, current[0], f"unreadable table row ({error})")
            seen = True
        if not seen:
            raise InputError(path, "the file has a header line and no data rows", hint="check that the export finished")

    return header, rows()


def _jsonl_rows(
    path: Path, options: ReadOptions, bad_lines: BadLines
) -> tuple[list[str], Iterator[tuple[int, dict[str, Any]]]]:
    # Columns are the keys of the first few records (a broken first line must not hide them).
    columns: dict[str, None] = {}
    for line in peek_lines(path):
        record = first_line_record([line], JSON)
        if record is not None:
            columns.update(dict.fromkeys(record))
    if not columns:
        raise InputError(
            path,
            "none of the first lines is a JSON object",
            line=1,
            hint="pass --format for this file",
        )
    return list(columns), records(path, bad_lines, syntax=JSON, encoding=options.encoding)


def _parquet_rows(
    path: Path, columns: list[str] | None = None
) -> tuple[list[str], Iterator[tuple[int, dict[str, Any]]]]:
    try:
        table = pq.ParquetFile(str(path))
    except Exception as error:  # pyarrow raises several types for a damaged file
        raise InputError(
            path, f"not a readable Parquet file ({error})", hint="check the file"
        ) from None
    names = list(table.schema_arrow.names)

    def rows(wanted: list[str]) -> Iterator[tuple[int, dict[str, Any]]]:
        row = 0
        hook = bytes_read_hook()
        size, total_rows, reported = path.stat().st_size, max(table.metadata.num_rows, 1), 0
        for batch in table.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=wanted):
            values = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
            for entry in zip(*values, strict=False):
                row += 1
                yield row, dict(zip(wanted, entry, strict=False))
            if hook is not None:  # progress in file bytes, pro rata of the rows read
                done = size * row // total_rows
                hook(done - reported)
                reported = done

    return names, rows(columns or names)


def _table_rows(
    path: Path, options: ReadOptions, bad_lines: BadLines, delimiter: str | None = None
) -> tuple[list[str], Iterator[tuple[int, dict[str, Any]]]]:
    """Header and rows of any table layout, told apart by content."""
    if is_parquet(path):
        return _parquet_rows(path)
    first_lines = peek_lines(path, 1)
    if not first_lines:
        raise InputError(path, "the file is empty", hint="check that the download finished")
    if first_lines[0].lstrip().startswith("{"):
        return _jsonl_rows(path, options, bad_lines)
    return _csv_rows(path, options, bad_lines, delimiter)


class _Table(RawFormat):
    """Shared reading; subclasses decide what they sniff."""

    default_min_rating: ClassVar[float | None] = None
    delimiter: ClassVar[str | None] = None

    def read_reviews(
        self, path: Path, options: ReadOptions, bad_lines: BadLines
    ) -> Iterator[Review]:
        if is_parquet(path):
            names, _ = _parquet_rows(path)
            columns = _ReviewColumns.resolve(names, options, path)
            wanted = [
                c
                for c in (
                    columns.user,
                    columns.item,
                    columns.rating,
                    columns.text,
                    columns.summary,
                    columns.timestamp,
                )
                if c
            ]
            _, rows = _parquet_rows(path, list(dict.fromkeys(wanted)))
        else:
            names, rows = _table_rows(path, options, bad_lines, self.delimiter)
            columns = _ReviewColumns.resolve(names, options, path)
        for line, row in rows:
            review = columns.review(row, path, line, bad_lines)
            if review is not None:
                yield review

    def review_batches(self, path: Path, options: ReadOptions, bad_lines: BadLines) -> Iterator[pa.Table]:
        first_lines = [] if is_parquet(path) else peek_lines(path, 1)
        if not first_lines or not first_lines[0].lstrip().startswith("{"):
            return super().review_batches(path, options, bad_lines)
        names, _ = _jsonl_rows(path, options, bad_lines)
        found = _ReviewColumns.resolve(names, options, path)
        columns = JsonReviewColumns(
            found.user, (found.item,), found.rating, found.timestamp, found.text, found.summary
        )
        return read_review_batches(
            path, columns, lambda: self.read_reviews(path, options, bad_lines), encoding=options.encoding
        )

    def read_items(
        self, path: Path, options: ReadOptions, bad_lines: BadLines
    ) -> Iterator[ItemText]:
        names, rows = _table_rows(path, options, bad_lines)
        columns = _ItemColumns.resolve(names, options, path)
        for line, row in rows:
            item = columns.item_text(row, path, line, bad_lines)
            if item is not None:
                yield item


class ParquetTable(_Table):
    name = "parquet"
    description = "Parquet table of interactions (--col-user, --col-item, ...)"

    @classmethod
    def sniff(cls, path: Path, first_lines: list[str]) -> bool:
        return is_parquet(path)


class JsonLinesTable(_Table):
    name = "jsonl"
    description = "JSON lines with one interaction per object (--col-user, --col-item, ...)"

    @classmethod
    def sniff(cls, path: Path, first_lines: list[str]) -> bool:
        return any(first_line_record([line], JSON) is not None for line in first_lines)


class TsvTable(_Table):
    name = "tsv"
    description = "tab-separated table with a header line (--col-user, --col-item, ...)"
    delimiter = "\t"

    @classmethod
    def sniff(cls, path: Path, first_lines: list[str]) -> bool:
        return bool(first_lines) and _header_delimiter(first_lines[0]) == "\t"


class CsvTable(_Table):
    name = "csv"
    description = "delimited table with a header line (, ; | detected; --delimiter) (--col-user, --col-item, ...)"

    @classmethod
    def sniff(cls, path: Path, first_lines: list[str]) -> bool:
        return bool(first_lines) and _header_delimiter(first_lines[0]) is not None
