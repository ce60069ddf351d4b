"""Split invariants (property tests) and reproducibility of prepared artifacts."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli, write_lines
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmmrec_cli.data import pipeline
from lmmrec_cli.data.dataset import SPLIT_CODES
from lmmrec_cli.data.pipeline import PrepareSettings, run_pipeline
from lmmrec_cli.data.records import Review
from lmmrec_cli.data.split import assign_splits

# The split properties do not depend on speed: on a loaded shared machine (or CI) Hypothesis'
# "generation too slow" check and per-example deadlines fail for the load, not for the code.
settings.register_profile("load-tolerant", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("load-tolerant")

TRAIN, VALID, TEST = SPLIT_CODES["train"], SPLIT_CODES["valid"], SPLIT_CODES["test"]


@st.composite
def interactions(draw, max_users: int = 30, max_items: int = 40):
    """Distinct (user, item) pairs with timestamps, in a drawn order."""
    n_users = draw(st.integers(1, max_users))
    users, items = [], []
    for user in range(n_users):
        chosen = draw(st.sets(st.integers(0, max_items - 1), min_size=1, max_size=max_items))
        users += [user] * len(chosen)
        items += sorted(chosen)
    order = draw(st.permutations(range(len(users))))
    users = np.asarray(users, dtype=np.int64)[list(order)]
    items = np.asarray(items, dtype=np.int64)[list(order)]
    timestamps = np.asarray(
        draw(st.lists(st.integers(0, 50), min_size=len(users), max_size=len(users)))
    )
    return users, items, timestamps


def per_user(users: np.ndarray, codes: np.ndarray) -> dict[int, np.ndarray]:
    return {int(u): np.bincount(codes[users == u], minlength=3) for u in np.unique(users)}


@settings(max_examples=50)
@given(interactions(), st.integers(0, 2**32))
def test_user_split_is_3_1_1_within_rounding(data, seed):
    users, items, _ = data
    codes = assign_splits(users, items, None, strategy="user", seed=seed)
    for counts in per_user(users, codes).values():
        n = counts.sum()
        assert counts[TRAIN] >= 1
        for code, ratio in ((TRAIN, 0.6), (VALID, 0.2), (TEST, 0.2)):
            assert abs(counts[code] - n * ratio) <= 1


@settings(max_examples=50)
@given(interactions(), st.integers(0, 2**32), st.sampled_from(["user", "global", "temporal"]))
def test_every_user_keeps_a_training_item(data, seed, strategy):
    users, items, timestamps = data
    codes = assign_splits(users, items, timestamps, strategy=strategy, seed=seed)
    assert set(np.unique(users[codes == TRAIN])) == set(np.unique(users))
    assert set(np.unique(codes)) <= {TRAIN, VALID, TEST}


@settings(max_examples=50)
@given(interactions(), st.integers(0, 2**32))
def test_temporal_split_respects_time(data, seed):
    users, items, timestamps = data
    codes = assign_splits(users, items, timestamps, strategy="temporal", seed=seed)
    for user in np.unique(users):
        mine = users == user
        stamps = {code: timestamps[mine & (codes == code)] for code in (TRAIN, VALID, TEST)}
        if len(stamps[VALID]):
            assert stamps[TRAIN].max() <= stamps[VALID].min()
        if len(stamps[TEST]):
            assert max(stamps[TRAIN].max(), stamps[VALID].max(initial=0)) <= stamps[TEST].min()


@settings(max_examples=50)
@given(
    interactions(),
    st.integers(0, 2**32),
    st.sampled_from(["user", "global", "temporal"]),
    st.randoms(),
)
def test_split_does_not_depend_on_row_order(data, seed, strategy, rng):
    users, items, timestamps = data
    codes = assign_splits(users, items, timestamps, strategy=strategy, seed=seed)
    order = list(range(len(users)))
    rng.shuffle(order)
    shuffled = assign_splits(
        users[order], items[order], timestamps[order], strategy=strategy, seed=seed
    )
    assert (shuffled == codes[order]).all()


def test_different_seeds_give_different_splits():
    users = np.repeat(np.arange(50), 10)
    items = np.tile(np.arange(10), 50)
    first = assign_splits(users, items, None, seed=1)
    assert (assign_splits(users, items, None, seed=1) == first).all()
    assert (assign_splits(users, items, None, seed=2) != first).any()


# -- the whole pipeline ---------------------------------------------------------------------


@st.composite
def raw_reviews(draw):
    """Reviews with repeated pairs, in arbitrary order, over a small id space."""
    n = draw(st.integers(1, 300))
    rows = draw(
        st.lists(
            st.tuples(
                st.integers(0, 25), st.integers(0, 15), st.integers(1, 5), st.integers(0, 1000)
            ),
            min_size=n,
            max_size=n,
        )
    )
    return [
        Review(f"u{u}", f"i{i}", float(r), t, f"text {u} {i}", "", k + 1)
        for k, (u, i, r, t) in enumerate(rows)
    ]


def reference_kcore(
    pairs: set[tuple[str, str]], k_users: int, k_items: int
) -> set[tuple[str, str]]:
    """The k-core by its definition, slowly: drop under-connected users and items until none is."""
    while True:
        users: dict[str, int] = {}
        items: dict[str, int] = {}
        for user, item in pairs:
            users[user] = users.get(user, 0) + 1
            items[item] = items.get(item, 0) + 1
        kept = {(u, i) for u, i in pairs if users[u] >= k_users and items[i] >= k_items}
        if kept == pairs:
            return kept
        pairs = kept


def _run(reviews: list[Review], prepare_settings: PrepareSettings) -> pd.DataFrame | None:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            run_pipeline(iter(reviews), None, prepare_settings, Path(tmp))
        except pipeline.EmptyDatasetError:
            return None
        frame = pd.read_parquet(Path(tmp) / "interactions.parquet")
        users = pd.read_parquet(Path(tmp) / "users.parquet")
        items = pd.read_parquet(Path(tmp) / "items.parquet")
    frame["user_id"] = users.user_id.to_numpy()[frame.user]
    frame["item_id"] = items.item_id.to_numpy()[frame.item]
    return frame


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw_reviews(),
    st.integers(1, 3),
    st.integers(1, 3),
    st.sampled_from(["user", "global", "temporal"]),
)
def test_pipeline_invariants(reviews, k_users, k_items, strategy):
    prepare_settings = PrepareSettings(
        min_rating=2, min_user_interactions=k_users, min_item_interactions=k_items, split=strategy
    )
    frame = _run(reviews, prepare_settings)
    expected = reference_kcore(
        {(r.user_id, r.item_id) for r in reviews if r.rating >= 2}, k_users, k_items
    )
    if frame is None:
        assert expected == set()
        return
    pairs = list(zip(frame.user_id, frame.item_id, strict=True))
    assert len(pairs) == len(set(pairs))  # no pair twice, so none in two splits
    assert set(pairs) == expected
    assert set(frame.user[frame.split == "train"]) == set(frame.user)
    assert (frame.rating >= 2).all()
    # The first occurrence of a repeated pair wins.
    first = {}
    for review in reviews:
        if review.rating >= 2:
            first.setdefault((review.user_id, review.item_id), review.timestamp)
    assert all(
        first[(u, i)] == t
        for u, i, t in zip(frame.user_id, frame.item_id, frame.timestamp, strict=True)
    )


@settings(max_examples=10, deadline=None)
@given(raw_reviews())
def test_partitioning_does_not_change_the_result(reviews):
    """Memory is bounded by cutting the data into user-range partitions; the tables must not
    depend on where the cuts fall."""
    whole = _run(
        reviews, PrepareSettings(min_rating=None, min_user_interactions=2, min_item_interactions=2)
    )
    original = (pipeline.ROWS_PER_PARTITION, pipeline.RECORDS_PER_BATCH)
    pipeline.ROWS_PER_PARTITION, pipeline.RECORDS_PER_BATCH = 17, 7
    try:
        cut = _run(
            reviews,
            PrepareSettings(min_rating=None, min_user_interactions=2, min_item_interactions=2),
        )
    finally:
        pipeline.ROWS_PER_PARTITION, pipeline.RECORDS_PER_BATCH = original
    if whole is None:
        assert cut is None
        return
    pd.testing.assert_frame_equal(whole.reset_index(drop=True), cut.reset_index(drop=True))


# -- reproducible artifacts -----------------------------------------------------------------


def _ratings_csv(path: Path) -> Path:
    rng = np.random.default_rng(3)
    rows = ["user,item,rating,timestamp,text"]
    for user in range(60):
        for item in rng.choice(40, size=int(rng.integers(5, 15)), replace=False):
            rows.append(
                f"u{user},i{item},{rng.integers(1, 6)},{rng.integers(10**9, 2 * 10**9)},review {user} {item}"
            )
    return write_lines(path, rows)


def _prepare(source: Path, workspace: Path, *args: str) -> Path:
    result = run_cli("prepare", source, "-w", workspace, "-q", "--min-rating", "0", *args)
    assert result.exit_code == 0, result.stderr
    (version,) = [
        p
        for p in (workspace / "datasets" / "ratings").iterdir()
        if not p.name.startswith(".") and p.name != "latest"
    ]
    return version


TABLES = ("interactions.parquet", "users.parquet", "items.parquet", "reviews.parquet")


@pytest.mark.parametrize("strategy", ["user", "temporal", "global"])
def test_same_seed_gives_byte_identical_artifacts(tmp_path, strategy):
    source = _ratings_csv(tmp_path / "ratings.csv")
    first = _prepare(source, tmp_path / "a", "--split", strategy, "--seed", "11")
    second = _prepare(source, tmp_path / "b", "--split", strategy, "--seed", "11")
    assert first.name == second.name
    for table in TABLES:
        assert (first / table).read_bytes() == (second / table).read_bytes(), table


def test_different_seed_gives_a_different_split(tmp_path):
    source = _ratings_csv(tmp_path / "ratings.csv")
    first = pd.read_parquet(
        _prepare(source, tmp_path / "a", "--seed", "11") / "interactions.parquet"
    )
    second = pd.read_parquet(
        _prepare(source, tmp_path / "b", "--seed", "12") / "interactions.parquet"
    )
    assert (first[["user", "item"]].to_numpy() == second[["user", "item"]].to_numpy()).all()
    assert (first.split != second.split).any()
