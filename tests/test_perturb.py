"""`perturb`: exact count, no collisions, validation/test untouched, seeded."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import interactions_frame
from hypothesis import given, settings
from hypothesis import strategies as st

from lmmrec_cli.cli import app
from lmmrec_cli.data.dataset import PreparedDataset
from lmmrec_cli.data.perturb import NOISE_FILE, draw_noise_pairs, parse_ratios, perturb
from lmmrec_cli.errors import UsageError


def _pairs(frame: pd.DataFrame) -> set[tuple[int, int]]:
    return set(zip(frame["user"].tolist(), frame["item"].tolist(), strict=True))


def test_noise_is_exact_new_and_leaves_valid_test_alone(demo_ws) -> None:
    clean = PreparedDataset.open(demo_ws, "demo")
    result = perturb(demo_ws, "demo", 0.1, seed=3)
    noisy = PreparedDataset(result.ref)
    n_train = clean.interactions.count("train")
    assert result.added == round(0.1 * n_train)
    assert noisy.interactions.count("train") == n_train + result.added
    clean_frame, noisy_frame = interactions_frame(clean), interactions_frame(noisy)
    for split in ("valid", "test"):
        pd.testing.assert_frame_equal(
            clean_frame[clean_frame.split == split].reset_index(drop=True),
            noisy_frame[noisy_frame.split == split].reset_index(drop=True),
            check_dtype=False,  # the added rows have null timestamps, so pandas widens the column
        )
    added = _pairs(pd.read_parquet(result.ref.path / NOISE_FILE))
    assert len(added) == result.added  # no duplicates
    assert not added & _pairs(clean_frame)  # none existed in any split
    noisy_train = _pairs(noisy_frame[noisy_frame.split == "train"])
    assert noisy_train == _pairs(clean_frame[clean_frame.split == "train"]) | added
    manifest = result.ref.manifest()
    assert manifest["parents"] == [clean.ref.as_parent()]
    assert manifest["noise"]["seed"] == 3 and manifest["noise"]["ratio"] == 0.1
    assert noisy.n_users == clean.n_users and noisy.n_items == clean.n_items


def test_same_seed_same_pairs_other_seed_other_pairs(demo_ws) -> None:
    first = perturb(demo_ws, "demo", 0.05, seed=11)
    again = perturb(demo_ws, "demo", 0.05, seed=11)
    other = perturb(demo_ws, "demo", 0.05, seed=12, name="demo-other")
    assert again.reused and again.ref == first.ref
    a = _pairs(pd.read_parquet(first.ref.path / NOISE_FILE))
    b = _pairs(pd.read_parquet(other.ref.path / NOISE_FILE))
    assert a != b


def test_draw_refuses_impossible_counts_and_fills_dense_graphs() -> None:
    users, items = np.array([0, 0, 1]), np.array([0, 1, 0])
    u, i = draw_noise_pairs(2, 2, users, items, 1, seed=0)
    assert (int(u[0]), int(i[0])) == (1, 1)
    with pytest.raises(UsageError, match="only 1"):
        draw_noise_pairs(2, 2, users, items, 2, seed=0)


def test_ratio_parsing() -> None:
    assert parse_ratios("0.05..0.30") == [0.05, 0.1, 0.15, 0.2, 0.25, 0.3]
    assert parse_ratios("0.1,0.2") == [0.1, 0.2]
    with pytest.raises(UsageError):
        parse_ratios("abc")


def test_cli_perturb_json(runner, demo_ws) -> None:
    result = runner.invoke(app, ["perturb", "-d", "demo", "--ratio", "0.05,0.1", "-w", str(demo_ws.root), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["ratio"] for r in rows] == [0.05, 0.1]
    bad = runner.invoke(app, ["perturb", "-d", "demo", "--ratio", "0.05,0.1", "--name", "x", "-w", str(demo_ws.root)])
    assert bad.exit_code == 2 and "--name" in bad.output


@settings(max_examples=60, deadline=None)
@given(n_users=st.integers(1, 12), n_items=st.integers(1, 12), density=st.floats(0, 0.9),
       fraction=st.floats(0, 1), seed=st.integers(0, 2**31))
def test_drawn_pairs_are_exact_distinct_new_and_seeded(n_users, n_items, density, fraction, seed) -> None:
    rng = np.random.default_rng(seed)
    keys = np.flatnonzero(rng.random(n_users * n_items) < density)
    users, items = keys // n_items, keys % n_items
    count = int(fraction * (n_users * n_items - len(keys)))
    u, i = draw_noise_pairs(n_users, n_items, users, items, count, seed)
    drawn = set(zip(u.tolist(), i.tolist(), strict=True))
    assert len(u) == len(i) == count == len(drawn)  # exact count, no duplicates
    assert not drawn & set(zip(users.tolist(), items.tolist(), strict=True))  # none existed
    assert all(0 <= a < n_users and 0 <= b < n_items for a, b in drawn)
    again = draw_noise_pairs(n_users, n_items, users, items, count, seed)
    assert np.array_equal(again[0], u) and np.array_equal(again[1], i)  # same seed, same pairs


def test_range_names_versions_by_percent_and_recipe_spelling_finds_them(runner, demo_ws) -> None:
    root = str(demo_ws.root)
    result = runner.invoke(app, ["perturb", "-d", "demo", "--ratio", "0.05..0.30", "--seed", "7", "-w", root, "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    names = [r["dataset"].split("/")[1].split("@")[0] for r in rows]
    assert names == [f"demo-noise{p}" for p in (5, 10, 15, 20, 25, 30)]
    for row, percent in zip(rows, (5, 10, 15, 20, 25, 30), strict=True):
        manifest = demo_ws.resolve("datasets", row["dataset"].split("/")[1]).manifest()
        assert manifest["noise"]["ratio"] == percent / 100 and manifest["noise"]["seed"] == 7
    # recipes/Makefile writes a ratio as PERCENTe-2 with --name: the same version, nothing redone
    again = runner.invoke(app, ["perturb", "-d", "demo", "--ratio", "15e-2", "--seed", "7", "--name", "demo-noise15",
                                "-w", root, "--json"])
    assert again.exit_code == 0, again.output
    (row,) = json.loads(again.output)
    assert row["reused"] is True and row["dataset"] == rows[2]["dataset"]
