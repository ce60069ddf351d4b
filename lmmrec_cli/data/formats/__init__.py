"""Raw review formats: one reader class per source schema, and format detection.

Each format is a :class:`RawFormat` subclass in its own module. ``prepare`` asks
:func:`detect` which format a file or directory is in (or takes ``--format``), then streams
:class:`~lmmrec_cli.data.records.Review` records from the review file(s) and
:class:`~lmmrec_cli.data.records.ItemText` records from the item metadata file(s).
Readers never hold a whole file in memory and report unreadable lines to a
:class:`~lmmrec_cli.data.badlines.BadLines`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from lmmrec_cli.data.badlines import BadLines
from lmmrec_cli.data.records import ItemText, Review
from lmmrec_cli.data.textio import check_encoding, check_text_file, peek_lines
from lmmrec_cli.errors import InputError, UsageError

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class ReadOptions:
    """Reader settings that are not part of a format's schema.

    The ``col_*`` fields name columns for the generic tabular formats (CSV, TSV, JSONL,
    Parquet); fixed-schema formats ignore them.
    """

    encoding: str = "utf-8"
    col_user: str | None = None
    col_item: str | None = None
    col_rating: str | None = None
    col_text: str | None = None
    col_summary: str | None = None
    col_timestamp: str | None = None
    col_title: str | None = None
    col_item_text: str | None = None
    delimiter: str | None = None

    def __post_init__(self) -> None:
        check_encoding(self.encoding)
        if self.delimiter is not None and len(self.delimiter) != 1:
            raise UsageError(f"--delimiter {self.delimiter!r}: give one character, e.g. ';' or a tab")


@dataclass(frozen=True)
class RawSource:
    """The files one ``prepare`` reads: interactions/reviews and optional item metadata."""

    reviews: tuple[Path, ...]
    meta: tuple[Path, ...] = field(default_factory=tuple)


class RawFormat(ABC):
    """One raw data schema.

    ``name`` is what ``--format`` takes; ``default_min_rating`` is the rating filter the paper
    uses for this source (None: keep every interaction).
    """

    name: ClassVar[str]
    description: ClassVar[str]
    default_min_rating: ClassVar[float | None] = None

    @classmethod
    @abstractmethod
    def sniff(cls, path: Path, first_lines: list[str]) -> bool:
        """True if ``path`` (whose first non-blank lines are given) is a review file of this format."""

    @classmethod
    def discover(cls, directory: Path) -> RawSource | None:
        """The files of this format in ``directory`` (e.g. Yelp's review + business files),
        or None if the directory does not hold this format."""
        return None

    @classmethod
    def sniff_meta(cls, path: Path, first_lines: list[str]) -> bool:
        """True if ``path`` is an item-metadata file of this format."""
        return False

    @abstractmethod
    def read_reviews(self, path: Path, options: ReadOptions, bad_lines: BadLines) -> Iterator[Review]:
        """Stream the interactions of one review file."""

    def review_batches(self, path: Path, options: ReadOptions, bad_lines: BadLines) -> Iterator[pa.Table]:
        """The same reviews as :meth:`read_reviews`, as Arrow batches (``columnar.REVIEW_BATCH_SCHEMA``).

        What ``prepare`` reads. Formats a columnar engine can parse override it; the others
        batch their Python reader's records.
        """
        from lmmrec_cli.data.formats.columnar import batches_of

        return batches_of(self.read_reviews(path, options, bad_lines))

    def read_items(self, path: Path, options: ReadOptions, bad_lines: BadLines) -> Iterator[ItemText]:
        """Stream item metadata; formats without metadata files refuse."""
        raise UsageError(f"format {self.name!r} has no item metadata files", hint=f"drop --meta {path}")


def all_formats() -> list[type[RawFormat]]:
    """Every known format, in detection order (most specific first).

    The reader modules import this one (for :class:`RawFormat`), so they are imported here,
    by name, when first asked for rather than at the top.
    """
    from lmmrec_cli.data.formats.amazon import Amazon2014, Amazon2018, Amazon2023
    from lmmrec_cli.data.formats.recbole import RecBole
    from lmmrec_cli.data.formats.steam import Steam
    from lmmrec_cli.data.formats.tabular import CsvTable, JsonLinesTable, ParquetTable, TsvTable
    from lmmrec_cli.data.formats.yelp import Yelp

    return [
        ParquetTable,  # binary: decided by magic bytes before any text sniffing
        RecBole,  # typed header line
        Yelp,
        Amazon2023,
        Amazon2018,  # 2018 before 2014: same keys plus verified/vote/style/image
        Amazon2014,
        Steam,
        JsonLinesTable,  # any other JSON object per line
        TsvTable,
        CsvTable,
    ]


def format_by_name(name: str) -> type[RawFormat]:
    for fmt in all_formats():
        if fmt.name == name:
            return fmt
    known = ", ".join(f.name for f in all_formats())
    raise UsageError(f"unknown format {name!r}", hint=f"known formats: {known}")


def _sniff_review_format(path: Path) -> type[RawFormat]:
    first_lines = peek_lines(path)
    if not first_lines:
        raise InputError(path, "the file is empty", hint="check that the download finished")
    # Metadata first: a generic reader (JSON lines) would otherwise take a metadata file.
    for fmt in all_formats():
        if fmt.sniff_meta(path, first_lines):
            raise InputError(
                path,
                f"this looks like item metadata ({fmt.name}), not reviews",
                line=1,
                hint=f"give the review file as the input and this one with --meta {path}",
            )
    for fmt in all_formats():
        if fmt.sniff(path, first_lines):
            return fmt
    known = ", ".join(f.name for f in all_formats())
    raise InputError(
        path,
        "unknown format: the first lines match no known schema",
        line=1,
        hint=f"pass --format (one of: {known}) and, for tables, --col-user/--col-item",
    )


PARQUET_MAGIC = b"PAR1"


def is_parquet(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == PARQUET_MAGIC
    except OSError:
        return False


def detect_source(
    paths: list[Path], meta: list[Path], format_name: str | None
) -> tuple[type[RawFormat], RawSource]:
    """Which format the inputs are in, and which files hold reviews and which metadata.

    A directory is searched for the files of each format (``discover``); a file's first lines
    decide its format unless ``format_name`` is given.
    """
    paths = [Path(p).expanduser() for p in paths]
    meta = [Path(p).expanduser() for p in meta]
    for path in [*paths, *meta]:
        if not path.exists():
            raise InputError(path, "file not found", hint="check the path")
    for path in meta:
        if path.is_dir():
            raise InputError(path, "is a directory; --meta takes a file", hint="name the metadata file itself")
    if len(paths) > 1 and any(p.is_dir() for p in paths):
        raise UsageError("give one directory, or review files only", hint="a directory's layout names its own files")
    for path in [*paths, *meta]:
        if path.is_file() and not is_parquet(path):
            check_text_file(path)
    candidates = [format_by_name(format_name)] if format_name else all_formats()
    if len(paths) == 1 and paths[0].is_dir():
        for fmt in candidates:
            found = fmt.discover(paths[0])
            if found is not None:
                return fmt, RawSource(found.reviews, tuple(meta) or found.meta)
        raise UsageError(
            f"{paths[0]}: no known data set layout in this directory",
            hint="name the review file itself, or pass --format",
        )
    fmt = candidates[0] if format_name else _sniff_review_format(paths[0])
    return fmt, RawSource(tuple(paths), tuple(meta))
