"""The prepare pipeline on small hand-made review streams: filters, dedup, k-core, partitions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
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
    monkeypatch.setattr(pipeline, "SPILL_CHUNK_ROWS", 37)
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


def test_partitioning_in_passes_writes_the_same_bytes(tmp_path: Path, monkeypatch) -> None:
    """Few open partition writers (several passes over the spill) must not change the tables."""
    rng = np.random.default_rng(5)
    reviews = [
        Review(f"u{rng.integers(60)}", f"i{rng.integers(40)}", float(rng.integers(1, 6)), int(k), f"text {k}", line=k)
        for k in range(1500)
    ]
    monkeypatch.setattr(pipeline, "ROWS_PER_PARTITION", 50)
    monkeypatch.setattr(pipeline, "SPILL_CHUNK_ROWS", 70)
    outputs = []
    for open_writers in (1000, 3):
        monkeypatch.setattr(pipeline, "MAX_OPEN_PARTITIONS", open_writers)
        report, _ = _run(iter(reviews), tmp_path / str(open_writers), min_user_interactions=2, min_item_interactions=2)
        assert report.partitions > 3 * 3
        out = tmp_path / str(open_writers) / "out"
        outputs.append([(out / f).read_bytes() for f in (INTERACTIONS_FILE, REVIEWS_FILE, USERS_FILE, ITEMS_FILE)])
    assert outputs[0] == outputs[1]
