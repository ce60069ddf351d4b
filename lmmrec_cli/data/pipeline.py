"""From a stream of raw reviews to the four tables of a dataset version, in bounded memory.

Stages (each counted in the report):

1. *parse*: reviews stream in from a reader as Arrow batches (JSON-lines dumps are parsed by
   a columnar engine, see ``formats/columnar.py``); the rating filter drops low ratings; user
   and item ids get integer codes in order of first appearance; rows spill to disk in runs of
   a few MiB, each sorted by user code (texts never accumulate in memory).
2. *partitions*: ranges of user code, each holding every row of its users and at most
   ~``ROWS_PER_PARTITION`` rows (unless one user alone has more), cut from the per-user row
   counts once the whole input is read. Every later step that needs all of a user's rows
   works one partition at a time, reading its users' slice of every run.
3. *de-duplicate*: a repeated (user, item) pair keeps its first occurrence; each partition's
   surviving (row, user, item) arrays are saved to disk.
4. *k-core*: users and items with too few interactions are removed, repeatedly, until none is
   left (each round loads those integer arrays one partition at a time).
5. *sample* (optional): a seeded choice of users, followed by another k-core pass.
6. *split* and *write*: per user 3:1:1 (or global / temporal, see split.py); rows are written
   sorted by (user, item), each partition in turn, one Parquet row group per partition.

The spill is a pair of temporary Arrow IPC files (integers and texts apart). Each text goes to
disk once before the output: sorting each run by user while it is still in memory lets a
partition be read straight from the spill, where cutting the spill into partition files took
a second trip through disk (benchmarks/bench_prepare.md). Reading and the final write run in
threads beside the main one (decompression, parsing, Parquet encoding), so two cores share the
work.

Memory is bounded by the number of distinct users and items plus a few batches, one spill run
and a few partitions, not by the number of lines or the amount of text.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lmmrec_cli.console import SILENT, Progress
from lmmrec_cli.data.dataset import (
    INTERACTIONS_FILE,
    INTERACTIONS_SCHEMA,
    ITEMS_FILE,
    ITEMS_SCHEMA,
    PARQUET_OPTIONS,
    REVIEWS_FILE,
    REVIEWS_SCHEMA,
    SPLITS,
    USERS_FILE,
    USERS_SCHEMA,
    write_table,
)
from lmmrec_cli.data.formats.columnar import reviews_to_batch
from lmmrec_cli.data.records import ItemText, Review
from lmmrec_cli.data.split import STRATEGIES, assign_splits
from lmmrec_cli.errors import LmmrecError, UsageError

ROWS_PER_PARTITION = 50_000
# Single reviews (Python readers, the demo) are gathered into batches of this many rows.
RECORDS_PER_BATCH = 50_000
# Rows of a spill batch: reading a range of users reads the batches its slice of each run
# overlaps, so larger batches read more rows that are not wanted, smaller ones cost more reads.
SPILL_BATCH_ROWS = 512
# Parsed rows held before they are sorted and spilled as one run (see _Spill). Larger runs
# mean fewer pieces per partition when it is read back; the buffer adds to the parse stage's
# peak memory, and does not grow with the number of lines.
SPILL_BUFFER_BYTES = 32 << 20
# The spill lives for one run and is read back once or twice, so it is Arrow IPC (no encoding,
# no statistics), uncompressed: for the rows of a million generated reviews (439 MB) writing it
# costs 0.15 CPU-s and reading it back 0.03, where LZ4 cost 0.62 + 0.28, for 2.2 times the disk
# (measured in benchmarks/bench_prepare.md).
_TEMP_OPTIONS = pa.ipc.IpcWriteOptions(use_threads=False)

# A row's integer fields and its texts go to two files, so that de-duplication and k-core read
# the integers without the texts.
_INTS_SCHEMA = pa.schema(
    [
        ("user", pa.int32()),
        ("item", pa.int32()),
        ("rating", pa.float32()),
        ("timestamp", pa.int64()),
    ]
)
_TEXTS_SCHEMA = pa.schema([("summary", pa.string()), ("text", pa.string())])
_SPILL_SCHEMA = pa.schema([*_INTS_SCHEMA, *_TEXTS_SCHEMA])


class EmptyDatasetError(LmmrecError):
    """Filtering left nothing to train on."""


@dataclass(frozen=True)
class PrepareSettings:
    """Everything that decides which interactions a dataset keeps and how they are split."""

    min_rating: float | None = None
    min_user_interactions: int = 5
    min_item_interactions: int = 5
    sample_users: int | None = None
    split: str = "user"
    ratios: tuple[float, float, float] = (0.6, 0.2, 0.2)
    seed: int = 2024

    def __post_init__(self) -> None:
        if self.split not in STRATEGIES:
            raise UsageError(f"unknown split {self.split!r}", hint=f"use one of {', '.join(STRATEGIES)}")
        if self.min_user_interactions < 1 or self.min_item_interactions < 1:
            raise UsageError("--min-user-interactions and --min-item-interactions must be at least 1")
        if self.sample_users is not None and self.sample_users < 1:
            raise UsageError("--sample-users must be a positive number of users")
        if self.min_rating is not None and not math.isfinite(self.min_rating):
            raise UsageError(f"--min-rating {self.min_rating}: give a finite number (0 keeps every rating)")

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratios"] = list(self.ratios)
        return data


@dataclass
class PrepareReport:
    """Counts of what each stage kept and dropped (goes into the manifest)."""

    records_read: int = 0
    below_min_rating: int = 0
    without_rating: int = 0
    duplicates: int = 0
    distinct_pairs: int = 0
    kcore_rounds: int = 0
    sampled_out_users: int = 0
    partitions: int = 0
    users: int = 0
    items: int = 0
    interactions: dict[str, int] = field(default_factory=dict)
    density: float = 0.0
    reviews_with_text: int = 0
    items_with_text: int = 0
    items_with_title: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Vocabulary:
    """Raw id → dense code, in order of first appearance.

    Polars' categorical type keeps such a mapping in Rust: casting a batch of ids to it gives
    every id already seen its code and appends new ids in the order they first appear (three
    times cheaper than a Python dict touched once per distinct id of a batch; measured in
    benchmarks/bench_prepare.md).
    """

    def __init__(self) -> None:
        import polars as pl  # here: only prepare needs it, and it costs start-up time

        self._categories = pl.Categories.random()
        self._dtype = pl.Categorical(self._categories)
        # The mapping lives as long as a Series of its type does (the Categories object alone
        # does not keep it): this empty one holds it for the whole run.
        self._anchor = pl.Series([], dtype=pl.String).cast(self._dtype)
        self._size = 0

    def encode(self, raw_ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """The codes of a column of ids (no nulls); new ids get codes in order of first appearance."""
        import polars as pl

        codes = pl.Series(raw_ids).cast(self._dtype).to_physical().to_numpy()
        if len(codes):
            self._size = max(self._size, int(codes.max()) + 1)
        return codes.astype(np.int32)

    def ids(self, codes: np.ndarray) -> pa.Array:
        """The raw ids of these codes (an Arrow string array: no Python object per id)."""
        every = self._categories.to_series()
        if len(every) != self._size:  # the mapping is the run's own: anything else is a bug
            raise RuntimeError(f"id vocabulary holds {len(every)} ids, expected {self._size}")
        return every.gather(codes).to_arrow().cast(pa.string())

    def __len__(self) -> int:
        return self._size


class _StringArena:
    """Strings appended batch by batch into one byte buffer, taken out as one Arrow array.

    A run's texts held as the reader's batches and then concatenated would be in memory twice
    at the flush; copied into the arena as they come, they are there once. The buffer is
    reused from run to run, so its pages are touched once.
    """

    def __init__(self) -> None:
        self._data = np.empty(0, dtype=np.uint8)
        self._ends: list[np.ndarray] = []  # end of each string in the buffer, batch by batch
        self._valid: list[np.ndarray] = []
        self.nbytes = 0

    def append(self, column: pa.ChunkedArray) -> None:
        for chunk in column.chunks:
            if not len(chunk):
                continue
            _, offsets_buffer, data_buffer = chunk.buffers()
            offsets = np.frombuffer(offsets_buffer, dtype=np.int32)[chunk.offset : chunk.offset + len(chunk) + 1]
            size = int(offsets[-1] - offsets[0])
            if self.nbytes + size > len(self._data):
                grown = np.empty(max(2 * len(self._data), SPILL_BUFFER_BYTES + size), dtype=np.uint8)
                grown[: self.nbytes] = self._data[: self.nbytes]
                self._data = grown
            if size:
                data = np.frombuffer(data_buffer, dtype=np.uint8, count=size, offset=int(offsets[0]))
                self._data[self.nbytes : self.nbytes + size] = data
            self._ends.append(offsets[1:].astype(np.int64) - offsets[0] + self.nbytes)
            valid = chunk.is_valid().to_numpy(zero_copy_only=False) if chunk.null_count else np.ones(len(chunk), bool)
            self._valid.append(valid)
            self.nbytes += size

    def take_array(self) -> pa.StringArray:
        """The strings appended since the last call; the array reads the arena's buffer, so it
        is valid until the next :meth:`append`."""
        ends = np.concatenate(self._ends) if self._ends else np.zeros(0, dtype=np.int64)
        valid = np.concatenate(self._valid) if self._valid else np.zeros(0, dtype=bool)
        offsets = np.concatenate([[0], ends]).astype(np.int32)
        validity = None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
        array = pa.StringArray.from_buffers(
            len(ends), pa.py_buffer(offsets), pa.py_buffer(self._data[: self.nbytes]), validity
        )
        self._ends, self._valid, self.nbytes = [], [], 0
        return array


class _Spill:
    """The parsed rows on disk, in runs sorted by user code: the rows of a range of users are
    read back without reading the others'.

    Rows are buffered as the reader's batches come, up to ``SPILL_BUFFER_BYTES`` of texts; each
    full buffer is stably sorted by user code and written as one run of batches of
    ``SPILL_BATCH_ROWS`` rows. Runs follow each other in file order and the sort is stable, so a
    user's rows stay in file order (the first of a repeated pair wins). Integers and texts go to
    two Arrow IPC files written batch for batch in step (batch ``k`` of one holds the rows of
    batch ``k`` of the other). A range of users is a slice of each run: reading it reads the
    few batches that slice overlaps.

    Write with :meth:`write`, then :meth:`finish_writing`, then :meth:`read`; a ``with`` block
    closes the files.
    """

    def __init__(self, stem: Path) -> None:
        self.ints_path = stem.with_name(stem.name + ".ints.arrow")
        self.texts_path = stem.with_name(stem.name + ".texts.arrow")
        self._ints_file = pa.OSFile(str(self.ints_path), "wb")
        self._texts_file = pa.OSFile(str(self.texts_path), "wb")
        self._ints_writer = pa.ipc.new_file(self._ints_file, _INTS_SCHEMA, options=_TEMP_OPTIONS)
        self._texts_writer = pa.ipc.new_file(self._texts_file, _TEXTS_SCHEMA, options=_TEMP_OPTIONS)
        # A run in the making: its integers as the batches came, its texts copied into arenas.
        self._buffered_ints: list[pa.Table] = []
        self._texts_arenas = [_StringArena() for _ in _TEXTS_SCHEMA.names]
        # First and last user code of each batch written (a batch is sorted by user).
        self._batch_users: list[tuple[int, int]] = []
        self.rows = 0
        self.user_rows = np.zeros(0, dtype=np.int64)

    def __enter__(self) -> _Spill:
        return self

    def __exit__(self, *exc: object) -> None:
        self._ints_file.close()
        self._texts_file.close()

    def write(self, table: pa.Table) -> None:
        """Append rows (``_SPILL_SCHEMA``)."""
        if not table.num_rows:
            return
        counts = np.bincount(table.column("user").to_numpy())
        if len(counts) > len(self.user_rows):
            self.user_rows = np.pad(self.user_rows, (0, len(counts) - len(self.user_rows)))
        self.user_rows[: len(counts)] += counts
        self.rows += table.num_rows
        self._buffered_ints.append(table.select(_INTS_SCHEMA.names))
        for arena, name in zip(self._texts_arenas, _TEXTS_SCHEMA.names, strict=True):
            arena.append(table.column(name))
        if sum(arena.nbytes for arena in self._texts_arenas) >= SPILL_BUFFER_BYTES:
            self._write_run()

    def _write_run(self) -> None:
        if not self._buffered_ints:
            return
        ints = pa.concat_tables(self._buffered_ints).combine_chunks()
        texts = pa.table([arena.take_array() for arena in self._texts_arenas], schema=_TEXTS_SCHEMA)
        self._buffered_ints = []
        users = ints.column("user").to_numpy()
        order = np.argsort(users, kind="stable")
        # A take per batch: the sorted run is never whole in memory beside the arenas.
        for start in range(0, len(order), SPILL_BATCH_ROWS):
            rows = order[start : start + SPILL_BATCH_ROWS]
            indices = pa.array(rows)
            self._ints_writer.write_table(ints.take(indices))
            self._texts_writer.write_table(texts.take(indices))
            self._batch_users.append((int(users[rows[0]]), int(users[rows[-1]])))
        del ints, texts
        pa.default_memory_pool().release_unused()

    def finish_writing(self) -> None:
        self._write_run()
        self._texts_arenas = []
        self._ints_writer.close()
        self._texts_writer.close()
        self._ints_file.close()
        self._texts_file.close()
        self._first_user, self._last_user = np.asarray(self._batch_users, dtype=np.int64).reshape(-1, 2).T
        # Plain reads, not a memory map: the page cache holds the spill in large folios, and a
        # mapping maps the whole folio for every slice read from it, about 2 MiB a slice
        # whatever its size (measured in benchmarks/bench_prepare.md).
        self._ints_file = pa.OSFile(str(self.ints_path))
        self._texts_file = pa.OSFile(str(self.texts_path))
        self._ints_reader = pa.ipc.open_file(self._ints_file)
        self._texts_reader = pa.ipc.open_file(self._texts_file)

    def read(self, users: range, *, texts: bool = True) -> tuple[pa.Table, pa.Table | None]:
        """The rows of the users with codes in ``users`` as (integers, texts) tables of one chunk
        each: each user's rows in file order, users in no particular order. ``texts=False``
        leaves the texts file alone (``None``)."""
        wanted = np.flatnonzero((self._first_user < users.stop) & (self._last_user >= users.start))
        ints_pieces: list[pa.RecordBatch] = []
        texts_pieces: list[pa.RecordBatch] = []
        for index in wanted.tolist():
            batch = self._ints_reader.get_batch(index)
            start, end = np.searchsorted(batch.column("user").to_numpy(), [users.start, users.stop])
            ints_pieces.append(batch.slice(start, end - start))
            if texts:
                piece = self._texts_reader.get_batch(index).slice(start, end - start)
                # A copy of the slice, so that the rest of the batch read is freed now.
                texts_pieces.append(
                    pa.RecordBatch.from_arrays([pa.concat_arrays([c]) for c in piece.columns], schema=_TEXTS_SCHEMA)
                )
        ints = pa.Table.from_batches(ints_pieces, schema=_INTS_SCHEMA).combine_chunks()
        if not texts:
            return ints, None
        return ints, pa.Table.from_batches(texts_pieces, schema=_TEXTS_SCHEMA).combine_chunks()


def _batches(reviews: Iterable[Review | pa.Table]) -> Iterator[pa.Table]:
    """Review batches (``REVIEW_BATCH_SCHEMA``) from a stream of batches and/or single reviews."""
    pending: list[Review] = []
    for entry in reviews:
        if isinstance(entry, pa.Table):
            if pending:
                yield reviews_to_batch(pending)
                pending = []
            yield entry
        else:
            pending.append(entry)
            if len(pending) >= RECORDS_PER_BATCH:
                yield reviews_to_batch(pending)
                pending = []
    if pending:
        yield reviews_to_batch(pending)


def _parse(
    reviews: Iterable[Review | pa.Table],
    settings: PrepareSettings,
    spill: _Spill,
    users: _Vocabulary,
    items: _Vocabulary,
    report: PrepareReport,
) -> None:
    import pyarrow.compute as pc

    min_rating = settings.min_rating
    for batch in _batches(reviews):
        rating = batch.column("rating")
        report.records_read += batch.num_rows
        report.without_rating += rating.null_count
        if min_rating is not None:
            below = pc.fill_null(pc.less(rating, min_rating), False)
            dropped = pc.sum(below).as_py() or 0
            if dropped:
                report.below_min_rating += dropped
                batch = batch.filter(pc.invert(below))
        if not batch.num_rows:
            continue
        user = users.encode(batch.column("user_id"))
        item = items.encode(batch.column("item_id"))
        spill.write(
            pa.table(
                [
                    pa.array(user, type=pa.int32()),
                    pa.array(item, type=pa.int32()),
                    batch.column("rating").cast(pa.float32(), safe=False),
                    batch.column("timestamp"),
                    batch.column("summary"),
                    batch.column("text"),
                ],
                schema=_SPILL_SCHEMA,
            )
        )
    spill.finish_writing()


def _partitions(user_rows: np.ndarray, rows: int) -> list[range]:
    """Contiguous ranges of user code, each holding at most ~``ROWS_PER_PARTITION`` rows
    (unless one user alone has more), from the number of rows of each user code."""
    n_users = len(user_rows)
    if rows <= ROWS_PER_PARTITION:
        return [range(n_users)]
    n_parts = math.ceil(rows / ROWS_PER_PARTITION)
    cumulative = np.cumsum(user_rows)
    targets = rows * np.arange(1, n_parts) / n_parts
    # boundaries[k] = first user code of partition k+1
    boundaries = np.unique(np.searchsorted(cumulative, targets, side="right") + 1)
    boundaries = boundaries[(boundaries > 0) & (boundaries < n_users)]
    edges = [0, *boundaries.tolist(), n_users]
    return [range(lo, hi) for lo, hi in zip(edges[:-1], edges[1:], strict=True)]


def _first_occurrences(users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Row indices that are the first occurrence of their (user, item) pair, ascending."""
    order = np.lexsort((np.arange(len(users)), items, users))
    su, si = users[order], items[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = (su[1:] != su[:-1]) | (si[1:] != si[:-1])
    return np.sort(order[first])


def _kcore(
    kept: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]],
    user_alive: np.ndarray,
    item_alive: np.ndarray,
    settings: PrepareSettings,
) -> int:
    """Iteratively remove users/items below the thresholds (in place); returns rounds run."""
    rounds = 0
    while True:
        rounds += 1
        user_degree = np.zeros(len(user_alive), dtype=np.int64)
        item_degree = np.zeros(len(item_alive), dtype=np.int64)
        for _, users, items in kept:
            mask = user_alive[users] & item_alive[items]
            user_degree += np.bincount(users[mask], minlength=len(user_alive))
            item_degree += np.bincount(items[mask], minlength=len(item_alive))
        new_users = user_alive & (user_degree >= settings.min_user_interactions)
        new_items = item_alive & (item_degree >= settings.min_item_interactions)
        changed = (new_users != user_alive).any() or (new_items != item_alive).any()
        user_alive[:] = new_users
        item_alive[:] = new_items
        if not changed:
            return rounds


def _load_kept(spill: _Spill, users: range) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    columns, _ = spill.read(users, texts=False)
    part_users = columns.column("user").to_numpy().astype(np.int64)
    part_items = columns.column("item").to_numpy().astype(np.int64)
    rows = _first_occurrences(part_users, part_items)
    return rows, part_users[rows], part_items[rows]


class _KeptPartitions:
    """The de-duplicated (row, user, item) arrays of every partition, kept on disk.

    ``row`` indexes the partition's rows as ``_Spill.read`` gives them. Held in memory they
    would grow with the number of interactions (24 bytes each); on disk, each pass (a k-core
    round, the final write) loads one partition at a time.
    """

    def __init__(self, spill: _Spill, partitions: list[range], workdir: Path, progress: Progress) -> None:
        self.paths: list[Path] = []
        self.sizes: list[int] = []
        with progress.task("de-duplicating", total=len(partitions)) as task:
            for k, users in enumerate(partitions):
                rows, part_users, part_items = _load_kept(spill, users)
                path = workdir / f"part-{k:05d}.kept.npy"
                np.save(path, np.stack([rows, part_users, part_items]).astype(np.int32))
                self.paths.append(path)
                self.sizes.append(len(rows))
                task.advance()

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        for path in self.paths:
            rows, users, items = np.load(path).astype(np.int64)
            yield rows, users, items


class _WriteBehind:
    """Writes tables to Parquet writers in a second thread, in the order they are given.

    Encoding and compressing the output (zstd, dictionaries) is most of the final stage's
    work, and Arrow releases the GIL while it does it: the main thread prepares the next
    partition meanwhile. At most ``depth`` tables wait, so memory stays at a few partitions.
    """

    def __init__(self, depth: int = 1) -> None:
        import queue
        import threading

        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="prepare-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            if self._error is not None:
                continue  # drain: the main thread raises at its next call
            writer, table = job
            try:
                writer.write_table(table)
            except BaseException as error:  # noqa: BLE001 - handed to the main thread
                self._error = error

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def write(self, writer: pq.ParquetWriter, table: pa.Table) -> None:
        self._check()
        self._queue.put((writer, table))

    def close(self) -> None:
        """Wait for every write; raises the first write error."""
        self._queue.put(None)
        self._thread.join()
        self._check()


@contextmanager
def _returning_memory_pool() -> Iterator[None]:
    """Arrow allocates from jemalloc (freed pages go back to the system within a second) while
    the block runs.

    The default pool (mimalloc) keeps more freed memory in the heaps of the threads that used
    it: with reading and writing in threads, each stage's peak was 25-30 MiB higher with it
    (1M generated lines). Builds without jemalloc keep the default.
    """
    try:
        pool = pa.jemalloc_memory_pool()
    except NotImplementedError:
        yield
        return
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pool)
    try:
        yield
    finally:
        pa.set_memory_pool(previous)


@_returning_memory_pool()
def run_pipeline(
    reviews: Iterable[Review | pa.Table],
    item_texts: Iterable[ItemText] | None,
    settings: PrepareSettings,
    out_dir: Path,
    *,
    progress: Progress = SILENT,
    source_label: str = "the input",
) -> PrepareReport:
    """Read ``reviews``, filter, split and write the dataset tables into ``out_dir``.

    ``reviews`` yields :class:`Review` records or batches of them as Arrow tables
    (``formats.columnar.REVIEW_BATCH_SCHEMA``), in file order.

    ``item_texts`` (item metadata) is read after filtering, keeping only items that survived.
    Raises :class:`EmptyDatasetError` when filtering leaves no interactions.
    """
    report = PrepareReport()
    users, items = _Vocabulary(), _Vocabulary()
    with tempfile.TemporaryDirectory(prefix="prepare-", dir=out_dir) as tmp, _Spill(Path(tmp) / "spill") as spill:
        workdir = Path(tmp)
        _parse(reviews, settings, spill, users, items, report)
        pa.default_memory_pool().release_unused()
        if report.records_read == 0:
            raise EmptyDatasetError(
                f"{source_label}: no interaction could be read from the input",
                hint="every line was unreadable or empty; --strict stops at the first bad line and names it",
            )
        if spill.rows == 0:
            raise EmptyDatasetError(
                f"{source_label}: no interaction is left after the rating filter "
                f"(read {report.records_read}, below --min-rating {settings.min_rating}: {report.below_min_rating})",
                hint="lower --min-rating",
            )
        partitions = _partitions(spill.user_rows, spill.rows)
        report.partitions = len(partitions)

        kept = _KeptPartitions(spill, partitions, workdir, progress)
        report.duplicates = spill.rows - sum(kept.sizes)
        user_alive = np.ones(len(users), dtype=bool)
        item_alive = np.ones(len(items), dtype=bool)
        report.kcore_rounds = _kcore(kept, user_alive, item_alive, settings)
        if settings.sample_users is not None and user_alive.sum() > settings.sample_users:
            candidates = np.flatnonzero(user_alive)
            chosen = np.random.default_rng(settings.seed).choice(
                candidates, size=settings.sample_users, replace=False
            )
            report.sampled_out_users = len(candidates) - settings.sample_users
            user_alive[:] = False
            user_alive[chosen] = True
            report.kcore_rounds += _kcore(kept, user_alive, item_alive, settings)
        report.distinct_pairs = sum(kept.sizes)

        if not user_alive.any() or not item_alive.any():
            raise EmptyDatasetError(
                f"{source_label}: the data set is empty after filtering "
                f"({report.distinct_pairs} distinct interactions, none survives the "
                f"{settings.min_user_interactions}-core on users and "
                f"{settings.min_item_interactions}-core on items)",
                hint="lower --min-user-interactions / --min-item-interactions, or use a larger sample",
            )
        user_index = np.cumsum(user_alive) - 1  # dense index of each surviving user code
        item_index = np.cumsum(item_alive) - 1

        split_counts = dict.fromkeys(SPLITS, 0)
        interactions_writer = pq.ParquetWriter(str(out_dir / INTERACTIONS_FILE), INTERACTIONS_SCHEMA, **PARQUET_OPTIONS)
        reviews_writer = pq.ParquetWriter(str(out_dir / REVIEWS_FILE), REVIEWS_SCHEMA, **PARQUET_OPTIONS)
        behind = _WriteBehind()
        try:
            with progress.task("splitting and writing", total=len(partitions)) as task:
                for users_range, (rows, part_users, part_items) in zip(partitions, kept, strict=True):
                    alive = user_alive[part_users] & item_alive[part_items]
                    out, review_table, codes = _output_tables(
                        spill, users_range, rows[alive], part_users[alive], part_items[alive],
                        user_index, item_index, settings,
                    )
                    behind.write(interactions_writer, out)
                    behind.write(reviews_writer, review_table)
                    report.reviews_with_text += review_table.num_rows
                    for code, name in enumerate(SPLITS):
                        split_counts[name] += int((codes == code).sum())
                    del out, review_table
                    # Arrow's allocator keeps freed blocks; hand them back so the peak stays at
                    # a few partitions rather than creeping up partition by partition.
                    pa.default_memory_pool().release_unused()
                    task.advance()
        finally:
            behind.close()
            interactions_writer.close()
            reviews_writer.close()

    report.users = int(user_alive.sum())
    report.items = int(item_alive.sum())
    report.interactions = split_counts
    report.density = sum(split_counts.values()) / (report.users * report.items)

    user_ids = users.ids(np.flatnonzero(user_alive))
    write_table(
        pa.table({"user": np.arange(len(user_ids), dtype=np.int32), "user_id": user_ids}, schema=USERS_SCHEMA),
        out_dir / USERS_FILE,
    )
    _write_items(items, item_alive, item_texts, out_dir, report)
    return report


def _output_tables(
    spill: _Spill,
    partition: range,
    rows: np.ndarray,
    part_users: np.ndarray,
    part_items: np.ndarray,
    user_index: np.ndarray,
    item_index: np.ndarray,
    settings: PrepareSettings,
) -> tuple[pa.Table, pa.Table, np.ndarray]:
    """One partition's rows of ``interactions`` and ``reviews``, sorted by (user, item), and
    the split code of each kept row (in ``rows`` order)."""
    import pyarrow.compute as pc  # here: every lmmrec command imports this module

    ints, texts = spill.read(partition)
    stamps = ints.column("timestamp").take(pa.array(rows))
    codes = assign_splits(
        part_users,
        part_items,
        _timestamps_or_none(stamps),
        strategy=settings.split,
        ratios=settings.ratios,
        seed=settings.seed,
    )
    new_users = user_index[part_users].astype(np.int32)
    new_items = item_index[part_items].astype(np.int32)
    order = np.lexsort((new_items, new_users))
    # An Arrow take from the three names: no Python string object per row.
    split_names = pa.array(SPLITS, type=pa.string()).take(pa.array(codes[order]))
    # One take, in output order: the texts are the bulk of a partition, so they are copied
    # once, not once to drop duplicates and again to sort.
    take = pa.array(rows[order])
    ints = ints.take(take)
    # One chunk in (``_Spill.read``), one chunk out: the output's arrays have the same layout,
    # and the Parquet pages the same bytes, however the spill's runs and batches fell.
    texts = texts.take(take)
    out = pa.table(
        {
            "user": new_users[order],
            "item": new_items[order],
            "split": split_names,
            "rating": ints.column("rating"),
            "timestamp": ints.column("timestamp"),
        },
        schema=INTERACTIONS_SCHEMA,
    )
    has_text = pc.or_(
        pc.greater(pc.binary_length(texts.column("text")), 0),
        pc.greater(pc.binary_length(texts.column("summary")), 0),
    )
    review_table = pa.table(
        {
            "user": out.column("user"),
            "item": out.column("item"),
            "split": out.column("split"),
            "rating": ints.column("rating"),
            "summary": texts.column("summary"),
            "text": texts.column("text"),
        },
        schema=REVIEWS_SCHEMA,
    )
    if pc.all(has_text).as_py() is False:
        review_table = review_table.filter(has_text)
    return out, review_table, codes


def _timestamps_or_none(column: pa.Array | pa.ChunkedArray) -> np.ndarray | None:
    if column.null_count == len(column):
        return None
    return column.fill_null(0).to_numpy()


def _write_items(
    items: _Vocabulary,
    item_alive: np.ndarray,
    item_texts: Iterable[ItemText] | None,
    out_dir: Path,
    report: PrepareReport,
) -> None:
    item_ids = items.ids(np.flatnonzero(item_alive)).to_pylist()
    wanted = set(item_ids)
    found: dict[str, ItemText] = {}
    for record in item_texts or ():
        # Metadata dumps repeat some ids; the first record of an id wins.
        if record.item_id in wanted and record.item_id not in found:
            found[record.item_id] = record
    titles = [found[i].title if i in found else "" for i in item_ids]
    texts = [found[i].text if i in found else "" for i in item_ids]
    report.items_with_title = sum(1 for t in titles if t)
    report.items_with_text = sum(1 for t, x in zip(titles, texts, strict=True) if t or x)
    write_table(
        pa.table(
            {
                "item": np.arange(len(item_ids), dtype=np.int32),
                "item_id": item_ids,
                "title": titles,
                "text": texts,
            },
            schema=ITEMS_SCHEMA,
        ),
        out_dir / ITEMS_FILE,
    )
