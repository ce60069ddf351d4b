"""The columnar (Polars) review reader gives exactly what the Python readers give.

Every review file a JSON-lines format reads goes through ``review_batches``; these tests
compare it value for value, and bad line for bad line, with ``read_reviews`` on files that mix
clean lines with every kind of line the engine must hand back to Python.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pytest

from lmmrec_cli.data.badlines import BadLines
from lmmrec_cli.data.formats import ReadOptions
from lmmrec_cli.data.formats.amazon import Amazon2018, Amazon2023
from lmmrec_cli.data.formats.columnar import REVIEW_BATCH_SCHEMA
from lmmrec_cli.data.formats.tabular import JsonLinesTable
from lmmrec_cli.data.formats.yelp import Yelp
from lmmrec_cli.errors import InputError


def _amazon(k: int, **override) -> str:
    record = {
        "overall": float(1 + k % 5),
        "verified": True,
        "reviewerID": f"U{k % 17}",
        "asin": f"B{k % 11:04d}",
        "style": {"Size:": " 7"},
        "reviewText": f"text {k}",
        "summary": f"summary {k}",
        "unixReviewTime": 1_400_000_000 + k,
    }
    record.update(override)
    return json.dumps(record)


def _write(path: Path, lines: list[str]) -> Path:
    data = ("\n".join(lines) + "\n").encode()
    if path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def _python_rows(fmt, path: Path, policy: str = "skip") -> tuple[list[tuple], dict]:
    bad = BadLines(policy)
    rows = [
        (r.user_id, r.item_id, r.rating, r.timestamp, r.summary or "", r.text or "")
        for r in fmt.read_reviews(path, ReadOptions(), bad)
    ]
    return rows, bad.as_dict()


def _engine_rows(fmt, path: Path, policy: str = "skip") -> tuple[list[tuple], dict]:
    bad = BadLines(policy)
    batches = list(fmt.review_batches(path, ReadOptions(), bad))
    assert all(b.schema == REVIEW_BATCH_SCHEMA for b in batches)
    table = pa.concat_tables(batches) if batches else REVIEW_BATCH_SCHEMA.empty_table()
    return [tuple(row.values()) for row in table.to_pylist()], bad.as_dict()


def _spy_python(monkeypatch, fmt) -> list[int]:
    calls: list[int] = []
    original = fmt.read_reviews

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(fmt, "read_reviews", spy)
    return calls


def test_clean_file_is_read_by_the_engine_alone(tmp_path, monkeypatch):
    path = _write(tmp_path / "r.json.gz", [_amazon(k) for k in range(500)] + [_amazon(7, reviewText=None)])
    expected = _python_rows(Amazon2018(), path)
    fmt = Amazon2018()
    calls = _spy_python(monkeypatch, fmt)
    assert _engine_rows(fmt, path) == expected
    assert calls == []


ODD_LINES = {
    "not json": "{not json",
    "python literal": "{'reviewerID': 'U1', 'asin': 'B1', 'overall': 5.0}",
    "blank line": "   ",
    "numeric id": _amazon(1, reviewerID=12345),
    "float id": _amazon(1, asin=12.5),
    "missing user": _amazon(1, reviewerID=None),
    "blank user": _amazon(1, reviewerID="  "),
    "padded user": _amazon(1, reviewerID=" U1 "),
    "string rating": _amazon(1, overall="4"),
    "bool rating": _amazon(1, overall=True),
    "list text": _amazon(1, reviewText=["a", "b"]),
    "number text": _amazon(1, reviewText=4.5),
    "zero text": _amazon(1, reviewText=0),
    "empty text": _amazon(1, reviewText=""),
    "bracket text": _amazon(1, reviewText="[This review was collected as part of a promotion.] Fine"),
    "millisecond time": _amazon(1, unixReviewTime=1_400_000_000_123),
    "float time": _amazon(1, unixReviewTime=1.5e9),
    "string time": _amazon(1, unixReviewTime="2014-01-02"),
    "no rating": _amazon(1, overall=None),
    "array line": "[1, 2]",
}


@pytest.mark.parametrize("case", sorted(ODD_LINES))
@pytest.mark.parametrize("where", [3, 300])
def test_odd_line_gives_the_python_readers_rows_and_bad_lines(tmp_path, case, where):
    lines = [_amazon(k) for k in range(400)]
    lines.insert(where, ODD_LINES[case])
    path = _write(tmp_path / "r.json", lines)
    assert _engine_rows(Amazon2018(), path) == _python_rows(Amazon2018(), path)


def test_strict_policy_names_the_same_line(tmp_path):
    lines = [_amazon(k) for k in range(300)]
    lines.insert(250, "{truncated")
    path = _write(tmp_path / "r.json.gz", lines)
    with pytest.raises(InputError) as python_error:
        _python_rows(Amazon2018(), path, "fail")
    with pytest.raises(InputError) as engine_error:
        _engine_rows(Amazon2018(), path, "fail")
    assert str(engine_error.value) == str(python_error.value)
    assert "251" in str(engine_error.value)


def test_corrupt_gzip_is_reported_as_before(tmp_path):
    path = _write(tmp_path / "r.json.gz", [_amazon(k) for k in range(2000)])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as python_error:
        _python_rows(Amazon2018(), path)
    with pytest.raises(InputError) as engine_error:
        _engine_rows(Amazon2018(), path)
    assert str(engine_error.value) == str(python_error.value)


def test_amazon_2023_item_falls_back_to_asin_and_milliseconds(tmp_path, monkeypatch):
    def record(k: int, **override) -> str:
        base = {"user_id": f"U{k % 5}", "parent_asin": f"P{k % 3}", "asin": f"A{k}", "rating": 4,
                "text": "t", "title": "s", "timestamp": 1_600_000_000_000 + 999 * k}
        base.update(override)
        return json.dumps(base)

    lines = [record(k) for k in range(50)] + [record(51, parent_asin=""), record(52, parent_asin=None)]
    path = _write(tmp_path / "All_Beauty.jsonl", lines)
    fmt = Amazon2023()
    calls = _spy_python(monkeypatch, fmt)
    assert _engine_rows(fmt, path) == _python_rows(Amazon2023(), path)
    assert calls == []


def test_yelp_dates_are_read_as_utc_like_python(tmp_path):
    def review(k: int, date: str) -> str:
        return json.dumps({"review_id": f"r{k}", "user_id": f"u{k % 4}", "business_id": f"b{k % 3}",
                           "stars": 1 + k % 5, "text": f"t{k}", "date": date})

    lines = [review(k, f"20{10 + k % 10}-0{1 + k % 9}-1{k % 10} 1{k % 10}:3{k % 10}:0{k % 10}") for k in range(60)]
    path = _write(tmp_path / "yelp_academic_dataset_review.json", lines)
    assert _engine_rows(Yelp(), path) == _python_rows(Yelp(), path)
    odd = _write(tmp_path / "odd.json", [*lines, review(99, "2016-02-30 10:00:00"), review(98, "2016-01-01T10:00:00Z")])
    assert _engine_rows(Yelp(), odd) == _python_rows(Yelp(), odd)


def test_jsonl_table_columns_and_padded_ids(tmp_path):
    lines = [json.dumps({"user": f"u{k % 6}", "item": k % 4, "rating": k % 5, "time": 1000 + k}) for k in range(40)]
    lines.append(json.dumps({"user": " u1 ", "item": 2.0, "rating": 3, "time": 5}))
    path = _write(tmp_path / "t.jsonl", lines)
    assert _engine_rows(JsonLinesTable(), path) == _python_rows(JsonLinesTable(), path)


@pytest.mark.parametrize("case", ["not json", "blank user", "list text"])
def test_small_blocks_and_batches_hand_over_at_the_right_review(tmp_path, monkeypatch, case):
    """Blocks and batches cut the file in many places; the hand-over to Python must still
    resume exactly after the last review the engine gave."""
    from lmmrec_cli.data.formats import columnar

    monkeypatch.setattr(columnar, "BLOCK_BYTES", 1000)
    monkeypatch.setattr(columnar, "BATCH_ROWS", 7)
    lines = [_amazon(k) for k in range(300)]
    lines.insert(211, ODD_LINES[case])
    path = _write(tmp_path / "r.json.gz", lines)
    assert _engine_rows(Amazon2018(), path) == _python_rows(Amazon2018(), path)
