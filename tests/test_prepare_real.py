"""``lmmrec prepare`` on the real raw samples in ``../shared/data``; counts from each SOURCE.md.

The samples are research-use data: they are read where they lie, never copied into the
repository, and these tests skip when ``../shared`` is not beside the repository.
"""

from __future__ import annotations

import ast
import gzip
import json
import random
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_cli, write_lines

pytestmark = pytest.mark.shared_data

LOOSE = ("--min-rating", "0", "--min-user-interactions", "1", "--min-item-interactions", "1")


def prepare_json(workspace: Path, *args) -> dict:
    result = run_cli("prepare", *args, "-w", workspace, "-q", "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def dataset_dir(out: dict) -> Path:
    return Path(out["path"])


def check_split_invariants(path: Path) -> None:
    frame = pd.read_parquet(path / "interactions.parquet")
    assert not frame.duplicated(["user", "item"]).any()
    assert set(frame.user[frame.split == "train"]) == set(frame.user)


# (file, lines, users, items, distinct pairs) from amazon2018_5core/SOURCE.md
AMAZON_2018 = [
    ("All_Beauty_5.json.gz", 5269, 991, 85, 4092),
    ("AMAZON_FASHION_5.json.gz", 3176, 406, 31, 3042),
    ("Appliances_5.json.gz", 2277, 47, 48, 183),
    ("Magazine_Subscriptions_5.json.gz", 2375, 348, 157, 2302),
]


@pytest.mark.parametrize(("name", "lines", "users", "items", "pairs"), AMAZON_2018)
def test_amazon_2018_5core_counts(shared_data, tmp_path, name, lines, users, items, pairs):
    out = prepare_json(tmp_path / "ws", shared_data / "amazon2018_5core" / name, *LOOSE)
    counts = out["counts"]
    assert out["format"] == "amazon2018"
    assert counts["records_read"] == lines
    assert (counts["users"], counts["items"], counts["distinct_pairs"]) == (users, items, pairs)
    assert counts["duplicates"] == lines - pairs  # exact duplicate reviews are de-duplicated
    assert sum(counts["interactions"].values()) == pairs
    assert counts["bad_lines"]["count"] == 0
    check_split_invariants(dataset_dir(out))


def test_amazon_2018_rating_histogram_and_default_filter(shared_data, tmp_path):
    # SOURCE.md: All_Beauty_5 ratings 1/2/3/4/5 = 115/64/109/332/4,649; the default keeps >= 3.
    path = shared_data / "amazon2018_5core" / "All_Beauty_5.json.gz"
    out = prepare_json(
        tmp_path / "ws", path, "--min-user-interactions", "1", "--min-item-interactions", "1"
    )
    assert out["counts"]["below_min_rating"] == 115 + 64
    reviews = pd.read_parquet(dataset_dir(out) / "reviews.parquet")
    assert reviews.rating.min() >= 3


def test_magazine_subscriptions_with_meta(shared_data, tmp_path):
    folder = shared_data / "amazon2018_5core"
    out = prepare_json(
        tmp_path / "ws",
        folder / "Magazine_Subscriptions_5.json.gz",
        "--meta",
        folder / "meta_Magazine_Subscriptions.json.gz",
        *LOOSE,
    )
    counts = out["counts"]
    assert (counts["users"], counts["items"]) == (348, 157)
    assert counts["items_with_text"] == 151  # SOURCE.md: the meta covers 151 of the 157 items
    items = pd.read_parquet(dataset_dir(out) / "items.parquet")
    covered = items[items.text != ""]
    assert len(covered) == 151
    assert covered.text.str.contains("Categories: Magazine Subscriptions").mean() > 0.95
    # 148 of the covered items have only an HTML fragment as title; it is stripped, not kept.
    assert not items.title.str.contains("<").any()
    assert counts["items_with_title"] == (items.title != "").sum() == 3


def test_amazon_2018_defaults_run_where_the_data_allows(shared_data, tmp_path):
    folder = shared_data / "amazon2018_5core"
    for name in (
        "All_Beauty_5.json.gz",
        "AMAZON_FASHION_5.json.gz",
        "Magazine_Subscriptions_5.json.gz",
    ):
        out = prepare_json(tmp_path / "ws", folder / name)  # rating >= 3, 5-core users and items
        counts = out["counts"]
        assert counts["users"] > 100 and counts["items"] > 5
        interactions = pd.read_parquet(dataset_dir(out) / "interactions.parquet")
        assert interactions.groupby("user").size().min() >= 5
        assert interactions.groupby("item").size().min() >= 5
        check_split_invariants(dataset_dir(out))
    again = run_cli("prepare", folder / "All_Beauty_5.json.gz", "-w", tmp_path / "ws", "-q")
    assert again.exit_code == 0 and "up to date" in again.stdout


def test_appliances_5core_is_too_small_for_defaults(shared_data, tmp_path):
    result = run_cli(
        "prepare",
        shared_data / "amazon2018_5core" / "Appliances_5.json.gz",
        "-w",
        tmp_path / "ws",
        "-q",
    )
    assert result.exit_code != 0
    assert "empty after filtering" in result.stderr and "Traceback" not in result.stderr


def test_amazon_2014_head(shared_data, tmp_path):
    path = shared_data / "amazon2014_mi5_head" / "Musical_Instruments_5.json"
    out = prepare_json(tmp_path / "ws", path, *LOOSE)
    counts = out["counts"]
    assert out["format"] == "amazon2014"
    assert (counts["records_read"], counts["users"], counts["items"], counts["distinct_pairs"]) == (
        50,
        49,
        7,
        50,
    )
    assert counts["reviews_with_text"] == 50
    ratings = (
        pd.read_parquet(dataset_dir(out) / "interactions.parquet").rating.value_counts().to_dict()
    )
    assert ratings == {2.0: 1, 3.0: 2, 4.0: 13, 5.0: 34}


def test_yelp_sample_unfiltered(shared_data, tmp_path):
    out = prepare_json(tmp_path / "ws", shared_data / "yelp_sample", *LOOSE)
    counts = out["counts"]
    assert out["format"] == "yelp"
    assert (counts["records_read"], counts["users"], counts["items"], counts["distinct_pairs"]) == (
        999,
        993,
        822,
        999,
    )
    assert counts["reviews_with_text"] == 999
    # SOURCE.md: only 63 of the 822 reviewed businesses are in the business file.
    assert counts["items_with_title"] == counts["items_with_text"] == 63
    items = pd.read_parquet(dataset_dir(out) / "items.parquet")
    assert items[items.title != ""].text.str.contains("Categories: ").all()
    stars = (
        pd.read_parquet(dataset_dir(out) / "interactions.parquet").rating.value_counts().to_dict()
    )
    assert stars == {1.0: 112, 2.0: 74, 3.0: 125, 4.0: 228, 5.0: 460}


def test_yelp_sample_defaults_empty_after_filtering(shared_data, tmp_path):
    workspace = tmp_path / "ws"
    result = run_cli("prepare", shared_data / "yelp_sample", "-w", workspace, "-q")
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "yelp_academic_dataset_review.json" in lines[0] and "empty after filtering" in lines[0]
    assert "--min-user-interactions" in lines[0]
    # stars >= 2 keeps 999 - 112 reviews
    assert "887 distinct interactions" in lines[0]
    for name_dir in (workspace / "datasets").iterdir():
        assert [p for p in name_dir.iterdir() if not p.name.startswith(".")] == []


def test_steam_games_as_meta_of_v2_reviews(shared_data, tmp_path):
    """A small v2 review file written here over real product ids, with the real games file."""
    mapper = shared_data / "rlmrec_id_mappers" / "steam_item.json"
    product_ids = [json.loads(line)["product_id"] for line in mapper.read_text().splitlines()[:12]]
    rng = random.Random(5)
    lines = []
    for user in range(30):
        for product in rng.sample(product_ids, 8):
            record = {
                "username": f"player {user}",
                "hours": 1.5,
                "products": 12,
                "product_id": product,
                "page_order": 0,
                "date": "2017-12-17",
                "text": f"played {product} a lot",
                "early_access": False,
            }
            lines.append(repr(record))  # a Python literal, as in the original dump
    reviews = write_lines(tmp_path / "steam_reviews.json.gz", lines, gz=True)
    games = shared_data / "steam_games" / "steam_games.json.gz"
    out = prepare_json(
        tmp_path / "ws", reviews, "--meta", games
    )  # defaults: no rating filter, 5-core
    counts = out["counts"]
    assert out["format"] == "steam"
    assert (counts["users"], counts["items"]) == (30, 12)
    assert counts["without_rating"] == counts["records_read"] == 240
    assert counts["items_with_title"] == counts["items_with_text"] == counts["items"]
    # steam_games line 75 is a record with no app id at all (SOURCE.md: 32,133 of 32,135 have one;
    # the other one without "id" has its id in its store URL).
    assert counts["bad_lines"]["count"] == 1 and counts["bad_lines"]["examples"][0]["line"] == 75
    items = pd.read_parquet(dataset_dir(out) / "items.parquet")
    assert items.text.str.contains("Tags: ").all()
    assert items.text.str.contains("Genres: ").mean() > 0.8
    with gzip.open(games, "rt") as handle:
        first = ast.literal_eval(next(handle))
    assert (
        first["app_name"] == "Lost Summoner Kitty"
    )  # the games file is the Python-literal original
