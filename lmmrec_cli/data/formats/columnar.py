"""Columnar reading of JSON-lines review files: Polars parses, Python checks the exceptions.

A review dump of millions of lines is decompressed by Arrow in blocks of whole lines, and each
block parsed by Polars (Rust, SIMD JSON) into Arrow columns: several times cheaper per line
than ``json.loads`` and a :class:`~lmmrec_cli.data.records.Review` per line. The values must be exactly what the Python
reader of the format would give, so the engine only takes the lines it reads the same way:

- a line Polars cannot read (not JSON, truncated, invalid UTF-8, a corrupt gzip stream, a
  rating that is a string, a Python literal...) stops the engine;
- so does a value the Python reader treats specially: a missing or blank id, an id or text
  that was not a JSON string (Polars writes ``12.5`` or ``["a"]`` as text where Python
  writes ``'12.5'`` or ``"['a']"``), a date that is not ``YYYY-MM-DD HH:MM:SS``.

When the engine stops, the format's Python reader takes over the same file after skipping the
reviews the engine already gave, so bad lines are counted and named by line number exactly as
before (``--strict`` included), and everything up to the first exception ran at engine speed.
Known differences, on lines no supported dump holds: an object with a repeated key keeps the
first value in Polars and the last in Python; an id written as an integral JSON float (``12.0``,
not ``"12.0"``) reads as ``12`` in Polars and ``12.0`` in the Amazon and Yelp Python readers.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from contextlib import closing
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TypeVar

import pyarrow as pa

from lmmrec_cli.data.records import Review
from lmmrec_cli.data.textio import GZIP_MAGIC, bytes_read_hook

T = TypeVar("T")

# What every reader hands the pipeline: one batch of reviews as Arrow columns.
REVIEW_BATCH_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("rating", pa.float64()),
        ("timestamp", pa.int64()),
        ("summary", pa.string()),
        ("text", pa.string()),
    ]
)
BATCH_ROWS = 65_536
BLOCK_BYTES = 1 << 23  # 8 MiB of JSON lines per engine call (~11k reviews): memory, not speed, decides
# (gathering blocks into larger batches for the id coding cost ~50 MiB more at 5M lines: measured)
UNIX = "unix"  # an integer: seconds, or milliseconds when implausibly large (common.timestamp_value)
ISO = "iso"  # "YYYY-MM-DD HH:MM:SS" read as UTC (Yelp)

# Ids and texts Polars may have turned into text from another JSON type, or that the Python
# readers treat specially (blank, padded): such a line goes to the Python reader.
_SPACE = r"[\s\x1c-\x1f]"
_SUSPECT_ID = rf"^{_SPACE}|{_SPACE}$|^$|^[\[{{]|^(true|false)$|^-?[0-9.]+[eE.][-+0-9]*$"
_SUSPECT_TEXT = r"^\[.*\]$|^\{.*\}$|^(true|false|0|-?[0-9]*\.[0-9]+([eE][-+]?[0-9]+)?|-?[0-9]+[eE][-+]?[0-9]+)$"
_ISO_DATE = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$"


@dataclass(frozen=True)
class JsonReviewColumns:
    """Where a JSON-lines format keeps each review field (``None``: the format has none)."""

    user: str
    items: tuple[str, ...]  # the first present, non-blank one is the item (Amazon 2023)
    rating: str | None
    timestamp: str | None
    text: str | None
    summary: str | None
    time_kind: str = UNIX


def reviews_to_batch(reviews: list[Review]) -> pa.Table:
    """Reviews from a Python reader as one batch (column-wise: cheaper than row appends)."""
    return pa.table(
        [
            pa.array([r.user_id for r in reviews], type=pa.string()),
            pa.array([r.item_id for r in reviews], type=pa.string()),
            pa.array([r.rating for r in reviews], type=pa.float64()),
            pa.array([r.timestamp for r in reviews], type=pa.int64()),
            pa.array([r.summary or "" for r in reviews], type=pa.string()),
            pa.array([r.text or "" for r in reviews], type=pa.string()),
        ],
        schema=REVIEW_BATCH_SCHEMA,
    )


def batches_of(reviews: Iterator[Review], rows: int = BATCH_ROWS) -> Iterator[pa.Table]:
    """A Python reader's reviews, ``rows`` at a time."""
    while chunk := list(islice(reviews, rows)):
        yield reviews_to_batch(chunk)


def _engine_frames(path: Path, columns: JsonReviewColumns):  # noqa: ANN202 - polars types, imported late
    """Polars frames of the review fields (and a ``suspect`` flag per row), block by block."""
    import polars as pl  # here: only prepare needs it, and it costs start-up time

    keys = dict.fromkeys(
        k for k in (columns.user, *columns.items, columns.rating, columns.timestamp, columns.text, columns.summary) if k
    )
    schema = {key: pl.String for key in keys}
    if columns.rating:
        schema[columns.rating] = pl.Float64
    if columns.timestamp:
        schema[columns.timestamp] = pl.Int64 if columns.time_kind == UNIX else pl.String

    def present(key: str) -> pl.Expr:
        return pl.col(key).is_not_null() & (pl.col(key).str.strip_chars() != "")

    def suspect_id(value: pl.Expr) -> pl.Expr:
        return value.is_null() | value.str.contains(_SUSPECT_ID)

    item = pl.col(columns.items[-1])
    for key in reversed(columns.items[:-1]):
        # A blank earlier key falls through to the next one, as in the Python reader.
        item = pl.when(present(key)).then(pl.col(key)).otherwise(item)
    suspect = suspect_id(pl.col(columns.user)) | suspect_id(item)
    for key in columns.items[:-1]:
        suspect = suspect | (present(key) & suspect_id(pl.col(key)))
    for key in (columns.text, columns.summary):
        if key:
            suspect = suspect | pl.col(key).str.contains(_SUSPECT_TEXT).fill_null(False)

    raw = pl.col(columns.timestamp) if columns.timestamp else None
    if raw is None:
        stamp = pl.lit(None, dtype=pl.Int64)
    elif columns.time_kind == UNIX:
        milliseconds = (raw.cast(pl.Float64) / 1000.0).cast(pl.Int64)
        stamp = pl.when(raw.abs() <= 100_000_000_000).then(raw).otherwise(milliseconds)
    else:
        stamp = raw.str.strptime(pl.Datetime("us"), "%Y-%m-%d %H:%M:%S", strict=False).dt.epoch("s")
        odd_date = ~raw.str.contains(_ISO_DATE) | stamp.is_null()
        suspect = suspect | (raw.is_not_null() & odd_date)

    def text(key: str | None) -> pl.Expr:
        return pl.col(key).fill_null("") if key else pl.lit("")

    fields = {
        "user_id": pl.col(columns.user),
        "item_id": item,
        "rating": pl.col(columns.rating) if columns.rating else pl.lit(None, dtype=pl.Float64),
        "timestamp": stamp,
        "summary": text(columns.summary),
        "text": text(columns.text),
        "suspect": suspect,
    }
    with closing(_read_ahead(_line_blocks(path))) as blocks:
        for block in blocks:
            yield pl.read_ndjson(block, schema=schema).select(**fields)


def _read_ahead(blocks: Generator[T, None, None], depth: int = 1) -> Generator[T, None, None]:
    """``blocks``, produced by another thread up to ``depth`` ahead of the consumer.

    Reading runs as a chain of such threads: ISA-L decompresses the next block and Polars
    parses the one before while the main thread codes and spills the one before that (both
    libraries work without the GIL), so the stages share the cores. Closing this generator
    early (the engine stopping at a line it does not read like Python) stops the thread and
    closes ``blocks``.
    """
    import queue
    import threading

    pending: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple[str, object]) -> bool:
        while not stop.is_set():
            try:
                pending.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for block in blocks:
                if not put(("block", block)):
                    return
            put(("end", None))
        except BaseException as error:  # noqa: BLE001 - raised again in the consumer
            put(("error", error))
        finally:
            blocks.close()

    thread = threading.Thread(target=produce, name="prepare-decompress", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = pending.get()
            if kind == "end":
                return
            if kind == "error":
                raise value  # type: ignore[misc]
            yield value
    finally:
        stop.set()
        thread.join()


def _line_blocks(path: Path) -> Generator[bytes, None, None]:
    """The (decompressed) file in blocks of whole lines, ``BLOCK_BYTES`` at a time.

    Blocks, not the engine's own file scan: Polars' scan of a gzip file holds the whole
    decompressed file in memory, and the memory of ``prepare`` must not grow with the file.
    ISA-L decompresses (1.0 CPU-s per million generated reviews, where Arrow's zlib takes 2.4;
    concatenated gzip members included).
    """
    from isal import igzip

    with open(path, "rb") as raw:
        gzipped = raw.read(2) == GZIP_MAGIC
    with igzip.open(path, "rb") if gzipped else open(path, "rb") as stream:
        rest = b""
        while True:
            data = stream.read(BLOCK_BYTES)
            if not data:
                break
            data = rest + data if rest else data
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                rest = data
                continue
            rest = data[cut:]
            yield data[:cut]
        if rest:
            yield rest


def read_review_batches(
    path: Path,
    columns: JsonReviewColumns,
    python_reader: Callable[[], Iterator[Review]],
    *,
    encoding: str = "utf-8",
) -> Iterator[pa.Table]:
    """The reviews of one JSON-lines file as Arrow batches (see the module docstring).

    ``python_reader`` gives the same file's reviews through the format's Python reader; it
    takes over from the first line the engine does not read the way Python does.
    """
    if encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
        yield from batches_of(python_reader())
        return
    done = 0
    try:
        with closing(_read_ahead(_engine_frames(path, columns))) as frames:
            for frame in frames:
                suspects = frame.get_column("suspect")
                clean = frame.drop("suspect")
                stop = suspects.arg_true()
                if len(stop):
                    clean = clean.head(int(stop[0]))
                if clean.height:
                    done += clean.height
                    yield clean.to_arrow().cast(REVIEW_BATCH_SCHEMA)
                if len(stop):
                    break
            else:
                if done:
                    hook = bytes_read_hook()
                    if hook is not None:
                        hook(path.stat().st_size)
                    return
    except Exception:  # noqa: BLE001 - any engine error means "let Python read the rest"
        pass
    # The Python reader gives the reviews the engine already gave first (the same lines, read
    # the same way), then everything else with its bad-line policy and line numbers.
    reviews = python_reader()
    for _ in islice(reviews, done):
        pass
    yield from batches_of(reviews)
