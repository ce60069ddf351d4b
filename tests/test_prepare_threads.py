"""The threads beside ``prepare``'s main thread: reading ahead and writing behind.

Both must hand errors to the main thread and stop when the main thread stops, so that an
engine hand-over to the Python reader, a corrupt file or a failing disk never leaves a thread
running or a write lost.
"""

from __future__ import annotations

import threading

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lmmrec_cli.data.formats.columnar import _read_ahead
from lmmrec_cli.data.pipeline import _WriteBehind


def _threads() -> set[str]:
    return {t.name for t in threading.enumerate()}


def test_read_ahead_gives_every_item_in_order_and_ends_its_thread() -> None:
    assert list(_read_ahead(x for x in range(100))) == list(range(100))
    assert "prepare-decompress" not in _threads()


def test_read_ahead_stopped_early_closes_the_source() -> None:
    closed = threading.Event()

    def source():
        try:
            yield from range(10**9)
        finally:
            closed.set()

    reader = _read_ahead(source())
    assert [next(reader) for _ in range(3)] == [0, 1, 2]
    reader.close()
    assert closed.is_set()
    assert "prepare-decompress" not in _threads()


def test_read_ahead_raises_the_source_error_in_the_consumer() -> None:
    def source():
        yield 1
        raise EOFError("Compressed file ended before the end-of-stream marker was reached")

    reader = _read_ahead(source())
    assert next(reader) == 1
    with pytest.raises(EOFError, match="end-of-stream"):
        next(reader)


def test_write_behind_writes_in_order(tmp_path) -> None:
    schema = pa.schema([("k", pa.int64())])
    writer = pq.ParquetWriter(str(tmp_path / "t.parquet"), schema)
    behind = _WriteBehind()
    for k in range(20):
        behind.write(writer, pa.table({"k": [k, k]}, schema=schema))
    behind.close()
    writer.close()
    handle = pq.ParquetFile(str(tmp_path / "t.parquet"))
    assert handle.num_row_groups == 20
    assert handle.read().column("k").to_pylist() == [k for k in range(20) for _ in range(2)]


def test_write_behind_raises_a_failed_write_in_the_main_thread(tmp_path) -> None:
    schema = pa.schema([("k", pa.int64())])
    writer = pq.ParquetWriter(str(tmp_path / "t.parquet"), schema)
    behind = _WriteBehind()
    behind.write(writer, pa.table({"other": ["not the writer's schema"]}))
    with pytest.raises(ValueError, match="schema"):
        try:
            for _ in range(5):  # the error surfaces at a later call, at the latest at close
                behind.write(writer, pa.table({"k": [1]}, schema=schema))
        finally:
            behind.close()
    assert "prepare-writer" not in _threads()
    writer.close()
