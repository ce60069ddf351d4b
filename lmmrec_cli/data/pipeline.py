"""From a stream of raw reviews to the four tables of a dataset version, in bounded memory.

Stages (each counted in the report):

1. *parse*: reviews stream in from a reader as Arrow batches (JSON-lines dumps are parsed by
   a columnar engine, see ``formats/columnar.py``); the rating filter drops low ratings; user
   and item ids get integer codes in order of first appearance; rows spill to disk batch by
   batch (texts never accumulate in memory).
2. *partition*: the spill is cut into partitions by ranges of user code, each holding every row
   of its users and at most ~``ROWS_PER_PARTITION`` rows (unless one user alone has more).
   Every later step that needs all of a user's rows works one partition at a time.
3. *de-duplicate*: a repeated (user, item) pair keeps its first occurrence; each partition's
   surviving (row, user, item) arrays are saved to disk beside it.
4. *k-core*: users and items with too few interactions are removed, repeatedly, until none is
   left (each round loads those integer arrays one partition at a time).
5. *sample* (optional): a seeded choice of users, followed by another k-core pass.
6. *split* and *write*: per user 3:1:1 (or global / temporal, see split.py); rows are written
   sorted by (user, item), each partition in turn, one Parquet row group per partition.

The spill and the partitions are temporary Arrow IPC files (integers and texts apart); each
text is written to disk twice before the output (spill, partition), which costs less than
parsing the input twice to learn the partitions first (benchmarks/bench_prepare.md). Reading
and the final write run in threads beside the main one (decompression, parsing, Parquet
encoding), so two cores share the work.

Memory is bounded by the number of distinct users and items plus a few batches and
partitions, not by the number of lines or the amount of text.
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
# Partition files written at once in one pass over the spill (each is two open files); more
# partitions take more passes.
MAX_OPEN_PARTITIONS = 200
SPILL_CHUNK_ROWS = 50_000
# Spill and partition files live for one run and are read back once or twice, so they are Arrow
# IPC streams (no encoding, no statistics) with LZ4: per million generated reviews, writing and
# reading them back costs 1.5 CPU-s where LZ4 Parquet cost 4.6, at about the same size (measured
# in benchmarks/bench_prepare.md).
_TEMP_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4", use_threads=False)

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


class _RowFiles:
    """Rows kept on disk as two Arrow IPC streams, ``STEM.ints.arrow`` and ``STEM.texts.arrow``,
    written batch for batch in step (batch ``k`` of one file holds the rows of batch ``k`` of
    the other)."""

    def __init__(self, stem: Path) -> None:
        self.stem = stem
        self.ints_path = self.sibling(".ints.arrow")
        self.texts_path = self.sibling(".texts.arrow")

    def sibling(self, suffix: str) -> Path:
        """``STEM`` + ``suffix``: a file that belongs with these rows."""
        return self.stem.with_name(self.stem.name + suffix)

    def open_writer(self) -> _RowWriter:
        return _RowWriter(self)

    def chunks(self, rows: int) -> Iterator[tuple[pa.Table, pa.Table]]:
        """The rows in order, as (integers, texts) tables of at least ``rows`` rows (but the last)."""
        ints_batches: list[pa.RecordBatch] = []
        texts_batches: list[pa.RecordBatch] = []
        held = 0
        with pa.OSFile(str(self.ints_path)) as ints, pa.OSFile(str(self.texts_path)) as texts:
            for pair in zip(pa.ipc.open_stream(ints), pa.ipc.open_stream(texts), strict=True):
                ints_batches.append(pair[0])
                texts_batches.append(pair[1])
                held += len(pair[0])
                if held >= rows:
                    yield pa.Table.from_batches(ints_batches), pa.Table.from_batches(texts_batches)
                    ints_batches, texts_batches, held = [], [], 0
        if ints_batches:
            yield pa.Table.from_batches(ints_batches), pa.Table.from_batches(texts_batches)

    def read_ints(self) -> pa.Table:
        return _read_stream(self.ints_path)

    def read_texts(self) -> pa.Table:
        return _read_stream(self.texts_path)

    def unlink(self) -> None:
        self.ints_path.unlink()
        self.texts_path.unlink()


def _read_stream(path: Path) -> pa.Table:
    with pa.OSFile(str(path)) as handle:
        return pa.ipc.open_stream(handle).read_all()


class _RowWriter:
    def __init__(self, files: _RowFiles) -> None:
        self._ints_file = pa.OSFile(str(files.ints_path), "wb")
        self._texts_file = pa.OSFile(str(files.texts_path), "wb")
        self._ints = pa.ipc.new_stream(self._ints_file, _INTS_SCHEMA, options=_TEMP_OPTIONS)
        self._texts = pa.ipc.new_stream(self._texts_file, _TEXTS_SCHEMA, options=_TEMP_OPTIONS)

    def write(self, ints: pa.Table | pa.RecordBatch, texts: pa.Table | pa.RecordBatch) -> None:
        self._ints.write(ints)
        self._texts.write(texts)

    def close(self) -> None:
        self._ints.close()
        self._texts.close()
        self._ints_file.close()
        self._texts_file.close()


class _Spill:
    """Rows in file order, as the reader's batches come (no copy to regroup them)."""

    def __init__(self, stem: Path) -> None:
        self.files = _RowFiles(stem)
        self._writer = self.files.open_writer()
        self.rows = 0
        self.user_rows = np.zeros(0, dtype=np.int64)

    def write(self, table: pa.Table) -> None:
        """Append rows (``_INTS_SCHEMA`` then ``_TEXTS_SCHEMA`` columns)."""
        if not table.num_rows:
            return
        counts = np.bincount(table.column("user").to_numpy())
        if len(counts) > len(self.user_rows):
            self.user_rows = np.pad(self.user_rows, (0, len(counts) - len(self.user_rows)))
        self.user_rows[: len(counts)] += counts
        self.rows += table.num_rows
        self._writer.write(table.select(_INTS_SCHEMA.names), table.select(_TEXTS_SCHEMA.names))

    def close(self) -> None:
        self._writer.close()


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
            if len(pending) >= SPILL_CHUNK_ROWS:
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
    spill.close()


def _partition(spill: _Spill, n_users: int, workdir: Path, progress: Progress) -> list[_RowFiles]:
    """Cut the spill into partitions by contiguous ranges of user code."""
    if spill.rows <= ROWS_PER_PARTITION:
        return [spill.files]
    n_parts = math.ceil(spill.rows / ROWS_PER_PARTITION)
    cumulative = np.cumsum(np.pad(spill.user_rows, (0, max(0, n_users - len(spill.user_rows)))))
    targets = spill.rows * np.arange(1, n_parts) / n_parts
    # boundaries[k] = first user code of partition k+1
    boundaries = np.unique(np.searchsorted(cumulative, targets, side="right") + 1)
    boundaries = boundaries[(boundaries > 0) & (boundaries < n_users)]
    parts = [_RowFiles(workdir / f"part-{k:05d}") for k in range(len(boundaries) + 1)]
    written: set[int] = set()
    # At most MAX_OPEN_PARTITIONS are open at a time: more partitions take more passes over
    # the spill instead of more open files.
    passes = range(0, len(parts), MAX_OPEN_PARTITIONS)
    with progress.task("partitioning", total=spill.rows * len(passes)) as task:
        for first in passes:
            writers: dict[int, _RowWriter] = {}
            last = first + MAX_OPEN_PARTITIONS
            for ints, texts in spill.files.chunks(SPILL_CHUNK_ROWS):
                part_of_row = np.searchsorted(boundaries, ints.column("user").to_numpy(), side="right")
                # One stable sort by partition, then a zero-copy slice per partition: linear in
                # the rows, where a filter per partition would scan the chunk once per partition.
                # Stable, so rows keep their file order inside a partition (the first of a pair
                # wins).
                order = np.argsort(part_of_row, kind="stable")
                sorted_parts = part_of_row[order]
                lo, hi = np.searchsorted(sorted_parts, [first, last])
                order, sorted_parts = order[lo:hi], sorted_parts[lo:hi]
                take = pa.array(order)
                ints, texts = ints.take(take), texts.take(take)
                cuts = np.flatnonzero(sorted_parts[1:] != sorted_parts[:-1]) + 1
                for start, end in zip(np.r_[0, cuts], np.r_[cuts, len(order)], strict=True):
                    if start == end:
                        continue
                    part = int(sorted_parts[start])
                    if part not in writers:
                        writers[part] = parts[part].open_writer()
                    writers[part].write(ints.slice(start, end - start), texts.slice(start, end - start))
                task.advance(len(part_of_row))
                del ints, texts
                pa.default_memory_pool().release_unused()
            for writer in writers.values():
                writer.close()
            written.update(writers)
    spill.files.unlink()
    return [p for k, p in enumerate(parts) if k in written]


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


def _load_kept(part: _RowFiles) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    columns = part.read_ints()
    users = columns.column("user").to_numpy().astype(np.int64)
    items = columns.column("item").to_numpy().astype(np.int64)
    rows = _first_occurrences(users, items)
    return rows, users[rows], items[rows]


class _KeptPartitions:
    """The de-duplicated (row, user, item) arrays of every partition, kept on disk.

    Held in memory they would grow with the number of interactions (24 bytes each); on disk,
    each pass (a k-core round, the final write) loads one partition at a time.
    """

    def __init__(self, parts: list[_RowFiles]) -> None:
        self.paths: list[Path] = []
        self.sizes: list[int] = []
        for part in parts:
            rows, users, items = _load_kept(part)
            path = part.sibling(".kept.npy")
            np.save(path, np.stack([rows, users, items]).astype(np.int32))
            self.paths.append(path)
            self.sizes.append(len(rows))

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
    with tempfile.TemporaryDirectory(prefix="prepare-", dir=out_dir) as tmp:
        workdir = Path(tmp)
        spill = _Spill(workdir / "spill")
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
        parts = _partition(spill, len(users), workdir, progress)
        report.partitions = len(parts)

        kept = _KeptPartitions(parts)
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
            with progress.task("splitting and writing", total=len(parts)) as task:
                for part, (rows, part_users, part_items) in zip(parts, kept, strict=True):
                    alive = user_alive[part_users] & item_alive[part_items]
                    out, review_table, codes = _output_tables(
                        part, rows[alive], part_users[alive], part_items[alive], user_index, item_index, settings
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
    part: _RowFiles,
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

    ints = part.read_ints().combine_chunks()
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
    split_names = np.asarray(SPLITS, dtype=object)[codes[order]]
    # One take, in output order: the texts are the bulk of a partition, so they are copied
    # once, not once to drop duplicates and again to sort.
    take = pa.array(rows[order])
    ints = ints.take(take)
    # Take from the file's batches, then make the result one chunk: no extra copy of the
    # texts, and the output's arrays have the same layout whatever the partition files held.
    texts = part.read_texts().take(take).combine_chunks()
    out = pa.table(
        {
            "user": new_users[order],
            "item": new_items[order],
            "split": pa.array(split_names, type=pa.string()),
            "rating": ints.column("rating"),
            "timestamp": ints.column("timestamp"),
        },
        schema=INTERACTIONS_SCHEMA,
    )
    has_text = pc.or_(
        pc.greater(pc.utf8_length(texts.column("text")), 0),
        pc.greater(pc.utf8_length(texts.column("summary")), 0),
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
