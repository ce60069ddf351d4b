"""The prepare pipeline on small hand-made review streams: filters, dedup, k-core, partitions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from lmmrec_cli.data import pipeline
from lmmrec_cli.data.dataset import INTERACTIONS_FILE, ITEMS_FILE, REVIEWS_FILE, USERS_FILE
from lmmrec_cli.data.pipeline import EmptyDatasetError, PrepareSettings, run_pipeline
from lmmrec_cli.data.records import ItemText, Review


def _run(reviews, tmp_path: Path, items=None, **settings) -> tuple[pipeline.PrepareReport, dict[str, pd.DataFrame]]:
    out = tmp_path / "out"
    out.mkdir(parents=True, exist_ok=True)
    report = run_pipeline(reviews, items, PrepareSettings(**settings), out)
    tables = {
        name: pd.read_parquet(out / f)
        for name, f in [
            ("inter", INTERACTIONS_FILE),
            ("users", USERS_FILE),
            ("items", ITEMS_FILE),
            ("reviews", REVIEWS_FILE),
        ]
    }
    return report, tables


def _pairs(tables) -> set[tuple[str, str]]:
    users = tables["users"].set_index("user")["user_id"]
    items = tables["items"].set_index("item")["item_id"]
    inter = tables["inter"]
    return {(users[u], items[i]) for u, i in zip(inter["user"], inter["item"], strict=True)}


def test_duplicates_keep_first_occurrence_and_rating_filter(tmp_path: Path) -> None:
    reviews = [
        Review("u1", "a", 5.0, 10, "first a", line=1),
        Review("u1", "a", 1.0, 20, "second a", line=2),
        Review("u1", "b", 2.0, 30, "low", line=3),
        Review("u2", "a", None, 40, "no rating", line=4),
    ]
    report, tables = _run(reviews, tmp_path, min_rating=3, min_user_interactions=1, min_item_interactions=1)
    assert report.records_read == 4
    assert report.below_min_rating == 2  # the second u1-a (1.0) and u1-b (2.0)
    assert report.without_rating == 1
    assert report.duplicates == 0
    assert _pairs(tables) == {("u1", "a"), ("u2", "a")}
    _, tables = _run(reviews, tmp_path, min_user_interactions=1, min_item_interactions=1)
    inter = tables["inter"].merge(tables["users"]).merge(tables["items"])
    first = inter[(inter.user_id == "u1") & (inter.item_id == "a")]
    assert first["rating"].tolist() == [5.0] and first["timestamp"].tolist() == [10]
    texts = tables["reviews"].merge(tables["users"], on="user").merge(tables["items"][["item", "item_id"]], on="item")
    assert texts[(texts.user_id == "u1") & (texts.item_id == "a")]["text"].tolist() == ["first a"]


def _naive_kcore(pairs: set[tuple[int, int]], k_user: int, k_item: int) -> set[tuple[int, int]]:
    pairs = set(pairs)
    while True:
        users = pd.Series([u for u, _ in pairs]).value_counts() if pairs else pd.Series(dtype=int)
        items = pd.Series([i for _, i in pairs]).value_counts() if pairs else pd.Series(dtype=int)
        kept = {(u, i) for u, i in pairs if users[u] >= k_user and items[i] >= k_item}
        if kept == pairs:
            return kept
        pairs = kept


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kcore_matches_naive_reference(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    raw = [(int(rng.integers(0, 60)), int(rng.zipf(1.6) % 40)) for _ in range(700)]
    reviews = [Review(f"u{u}", f"i{i}", 4.0, None, "", line=n) for n, (u, i) in enumerate(raw)]
    _, tables = _run(reviews, tmp_path, min_user_interactions=4, min_item_interactions=3)
    expected = {(f"u{u}", f"i{i}") for u, i in _naive_kcore(set(raw), 4, 3)}
    assert _pairs(tables) == expected


def test_partitioned_run_equals_single_partition(tmp_path: Path, monkeypatch) -> None:
    rng = np.random.default_rng(5)
    reviews = [
        Review(f"u{int(rng.integers(0, 80))}", f"i{int(rng.integers(0, 30))}", float(rng.integers(1, 6)),
               int(rng.integers(0, 10**6)), f"text {n}", line=n)
        for n in range(1500)
    ]
    single = tmp_path / "single"
    _run(reviews, single, min_user_interactions=3, min_item_interactions=3)
    monkeypatch.setattr(pipeline, "ROWS_PER_PARTITION", 100)
    monkeypatch.setattr(pipeline, "RECORDS_PER_BATCH", 37)
    split = tmp_path / "split"
    report, _ = _run(reviews, split, min_user_interactions=3, min_item_interactions=3)
    assert report.partitions > 5
    for name in (INTERACTIONS_FILE, USERS_FILE, ITEMS_FILE, REVIEWS_FILE):
        a = pd.read_parquet(single / "out" / name)
        b = pd.read_parquet(split / "out" / name)
        pd.testing.assert_frame_equal(a, b)


def test_items_metadata_joined_first_record_wins(tmp_path: Path) -> None:
    reviews = [Review("u", "a", 5.0, 1, "x"), Review("u", "b", 5.0, 2, "")]
    items = [ItemText("a", "Title A", "desc A"), ItemText("a", "dup", "dup"), ItemText("zzz", "gone", "")]
    report, tables = _run(reviews, tmp_path, items=items, min_user_interactions=1, min_item_interactions=1)
    titles = dict(zip(tables["items"]["item_id"], tables["items"]["title"], strict=True))
    assert titles == {"a": "Title A", "b": ""}
    assert report.items_with_text == 1
    assert report.reviews_with_text == 1  # the review of b has no text and no summary
    assert set(tables["reviews"]["split"]) <= {"train", "valid", "test"}


def test_empty_after_filtering_is_a_clear_error(tmp_path: Path) -> None:
    reviews = [Review(f"u{n}", f"i{n}", 5.0, None, "") for n in range(10)]
    with pytest.raises(EmptyDatasetError, match="empty after filtering.*5-core"):
        _run(reviews, tmp_path)
    with pytest.raises(EmptyDatasetError, match="rating filter"):
        _run(reviews, tmp_path, min_rating=6)


def test_sample_users_is_seeded(tmp_path: Path) -> None:
    reviews = [Review(f"u{u}", f"i{i}", 5.0, None, "") for u in range(30) for i in range(6)]
    _, a = _run(reviews, tmp_path / "a", min_user_interactions=1, min_item_interactions=1, sample_users=10, seed=1)
    _, b = _run(reviews, tmp_path / "b", min_user_interactions=1, min_item_interactions=1, sample_users=10, seed=1)
    _, c = _run(reviews, tmp_path / "c", min_user_interactions=1, min_item_interactions=1, sample_users=10, seed=2)
    assert len(a["users"]) == 10
    assert a["users"]["user_id"].tolist() == b["users"]["user_id"].tolist()
    assert a["users"]["user_id"].tolist() != c["users"]["user_id"].tolist()


def test_spilling_in_many_runs_writes_the_same_bytes(tmp_path: Path, monkeypatch) -> None:
    """A spill buffer that holds one batch (a sorted run per batch, each user's rows spread over
    many runs) must not change the tables."""
    rng = np.random.default_rng(5)
    reviews = [
        Review(f"u{rng.integers(60)}", f"i{rng.integers(40)}", float(rng.integers(1, 6)), int(k), f"text {k}", line=k)
        for k in range(1500)
    ]
    monkeypatch.setattr(pipeline, "ROWS_PER_PARTITION", 50)
    monkeypatch.setattr(pipeline, "RECORDS_PER_BATCH", 70)
    outputs = []
    for buffer_bytes in (1 << 24, 1):
        monkeypatch.setattr(pipeline, "SPILL_BUFFER_BYTES", buffer_bytes)
        report, _ = _run(iter(reviews), tmp_path / str(buffer_bytes), min_user_interactions=2, min_item_interactions=2)
        assert report.partitions > 3 * 3
        out = tmp_path / str(buffer_bytes) / "out"
        outputs.append([(out / f).read_bytes() for f in (INTERACTIONS_FILE, REVIEWS_FILE, USERS_FILE, ITEMS_FILE)])
    assert outputs[0] == outputs[1]


def test_spill_reads_each_users_rows_in_file_order(tmp_path: Path, monkeypatch) -> None:
    """Rows spilled in many small sorted runs come back, for any range of users, complete and
    with each user's rows (and their texts) in file order."""
    monkeypatch.setattr(pipeline, "SPILL_BUFFER_BYTES", 3000)
    monkeypatch.setattr(pipeline, "SPILL_BATCH_ROWS", 5)
    rng = np.random.default_rng(3)
    users = rng.integers(0, 50, size=1000).astype(np.int32)
    with pipeline._Spill(tmp_path / "spill") as spill:
        for start in range(0, len(users), 13):
            codes = users[start : start + 13]
            row_ids = np.arange(start, start + len(codes))
            texts = [str(r) for r in row_ids]  # the row's number, to check texts stay with their row
            columns = [codes, codes, np.ones(len(codes), np.float32), row_ids, [""] * len(codes), texts]
            spill.write(pa.table(columns, schema=pipeline._SPILL_SCHEMA))
        spill.finish_writing()
        _check_spill_reads(spill, users)


def _check_spill_reads(spill, users: np.ndarray) -> None:
    assert spill.user_rows.tolist() == np.bincount(users).tolist()
    for wanted in (range(50), range(10, 17), range(49, 50), range(0, 1)):
        ints, texts = spill.read(wanted)
        got = pd.DataFrame({"user": ints.column("user").to_numpy(), "row": ints.column("timestamp").to_numpy()})
        assert texts.column("text").to_pylist() == [str(r) for r in got["row"]]
        expected = np.flatnonzero((users >= wanted.start) & (users < wanted.stop))
        assert sorted(got["row"]) == expected.tolist()
        for _, rows in got.groupby("user")["row"]:
            assert rows.tolist() == sorted(rows)


def test_first_occurrence_wins_across_runs(tmp_path: Path, monkeypatch) -> None:
    """A pair repeated in later runs keeps its first occurrence (rating, time and text)."""
    reviews = [
        Review(f"u{k % 3}", f"i{(k // 3) % 20}", float(5 - k // 60), k, f"t{k}", line=k) for k in range(300)
    ]
    monkeypatch.setattr(pipeline, "SPILL_BUFFER_BYTES", 1)
    monkeypatch.setattr(pipeline, "RECORDS_PER_BATCH", 7)
    monkeypatch.setattr(pipeline, "SPILL_BATCH_ROWS", 3)
    report, tables = _run(reviews, tmp_path, min_user_interactions=1, min_item_interactions=1)
    assert report.duplicates == 240
    inter = tables["inter"].merge(tables["users"]).merge(tables["items"])
    first = {(f"u{k % 3}", f"i{(k // 3) % 20}"): k for k in reversed(range(300))}
    got = {(u, i): t for u, i, t in zip(inter["user_id"], inter["item_id"], inter["timestamp"], strict=True)}
    assert got == first
    texts = tables["reviews"].merge(tables["users"]).merge(tables["items"][["item", "item_id"]])
    assert sorted(texts["text"]) == sorted(f"t{k}" for k in first.values())
    assert set(inter["rating"]) == {5.0}


def test_string_arena_gives_back_what_was_appended() -> None:
    """Sliced chunks, nulls, empty strings and empty chunks, over two runs of the same arena."""
    arena = pipeline._StringArena()
    first = [pa.chunked_array([pa.array(["a", None, "ccc", ""]).slice(1, 3), pa.array([], pa.string())])]
    first.append(pa.chunked_array([pa.array(["dd" * 1000, "é"]), pa.array(["", ""])]))
    for column in first:
        arena.append(column)
    assert arena.take_array().to_pylist() == [None, "ccc", "", "dd" * 1000, "é", "", ""]
    arena.append(pa.chunked_array([pa.array(["x", "yz"])]))
    taken = arena.take_array()
    assert taken.to_pylist() == ["x", "yz"] and taken.null_count == 0
    assert arena.take_array().to_pylist() == []
