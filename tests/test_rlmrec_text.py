"""Review text and item metadata joined onto an RLMRec split (``prepare --format rlmrec --reviews``).

No raw dump of the paper's data is available here, so each test writes one in the real format
(Amazon 2014 reviews + Python-literal metadata, the Yelp directory, Steam v2 reviews +
``steam_games``) from real ids of RLMRec's mappers (``tests/fixtures/rlmrec_ids.json``, among them
Steam's unicode usernames), plus records outside the split, a duplicate, a pair that is not an
interaction, pairs without a review and a broken line.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp
from conftest import SHARED_DATA, interactions_frame
from typer.testing import CliRunner

import lmmrec_cli.llm.motivate as motivate_module
from lmmrec_cli.cli import app
from lmmrec_cli.data.dataset import PreparedDataset
from lmmrec_cli.workspace import Workspace

FIXTURE = Path(__file__).parent / "fixtures" / "rlmrec_ids.json"
REAL_IDS = json.loads(FIXTURE.read_text(encoding="utf-8"))
SHARED_MAPPERS = SHARED_DATA / "rlmrec_id_mappers"
DATASETS = ("amazon", "yelp", "steam")
RAW_FORMATS = ("amazon", "amazon2018", "yelp", "steam")  # Amazon 2018's dump shape on Amazon's ids

N_USERS, N_ITEMS = 6, 5
SPLIT_PAIRS = {
    "train": [(0, 0), (0, 1), (1, 1), (1, 2), (2, 2), (2, 3), (3, 0), (3, 3), (4, 4), (4, 1), (5, 2)],
    "valid": [(0, 2), (1, 3), (3, 4)],
    "test": [(0, 3), (2, 0), (4, 0), (5, 4)],
}
SPLIT_FILES = {"train": "trn_mat.pkl", "valid": "val_mat.pkl", "test": "tst_mat.pkl"}
NO_REVIEW = {(5, 2), (3, 4)}  # pairs of the split the dump does not review (one train, one valid)
EMPTY_REVIEW = (2, 3)  # a training pair whose raw review has no text
NOT_A_PAIR = (1, 0)  # user and item are in the split, the pair is not
META_ITEMS = (0, 1, 2)
MARKERS = {"train": "TRAINTEXT", "valid": "VALIDTEXT", "test": "TESTTEXT"}


def _spec(dataset: str) -> dict:
    return REAL_IDS["amazon" if dataset == "amazon2018" else dataset]


def _ids(dataset: str) -> tuple[list[str], list[str]]:
    spec = _spec(dataset)
    return [u for _, u in spec["users"]], [i for _, i in spec["items"]]


def _split_of(user: int, item: int) -> str | None:
    return next((s for s, pairs in SPLIT_PAIRS.items() if (user, item) in pairs), None)


def _review_text(user: int, item: int) -> str:
    split = _split_of(user, item)
    return f"{MARKERS[split]} u{user} i{item}: the story kept me up all night" if split else "NOPAIR"


def write_split(root: Path, name: str) -> Path:
    directory = root / name
    directory.mkdir(parents=True)
    for split, pairs in SPLIT_PAIRS.items():
        rows, cols = zip(*pairs, strict=True)
        matrix = sp.coo_matrix((np.ones(len(pairs)), (rows, cols)), shape=(N_USERS, N_ITEMS))
        (directory / SPLIT_FILES[split]).write_bytes(pickle.dumps(matrix, protocol=4))
    return directory


def write_mappers(directory: Path, dataset: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    spec = _spec(dataset)
    users, items = _ids(dataset)
    lines = [json.dumps({"uid": k, spec["user_field"]: u}, ensure_ascii=False) for k, u in enumerate(users)]
    (directory / f"{dataset}_user.json").write_text("\n".join(lines), encoding="utf-8")
    lines = [json.dumps({"iid": k, spec["item_field"]: i}) for k, i in enumerate(items)]
    (directory / f"{dataset}_item.json").write_text("\n".join(lines), encoding="utf-8")
    return directory


def _raw_pairs(users: list[str], items: list[str]) -> list[tuple[str, str, str]]:
    """(raw user, raw item, text) in dump order: every reviewed pair of the split, then a
    duplicate of the first, a non-interaction and three records outside the split."""
    out = []
    for split in ("test", "train", "valid"):  # not in index order: the join must not care
        for user, item in SPLIT_PAIRS[split]:
            if (user, item) in NO_REVIEW:
                continue
            text = "" if (user, item) == EMPTY_REVIEW else _review_text(user, item)
            out.append((users[user], items[item], text))
    out.append((users[0], items[0], "DUPLICATE second review, must not win"))
    out.append((users[NOT_A_PAIR[0]], items[NOT_A_PAIR[1]], "NOPAIR review"))
    out.append(("OUTSIDER", items[0], "OUTSIDE user"))
    out.append((users[0], "OUTSIDE-ITEM", "OUTSIDE item"))
    out.append(("OUTSIDER", "OUTSIDE-ITEM", "OUTSIDE both"))
    return out


def _meta_records(items: list[str]) -> list[tuple[str, str]]:
    """(raw item, title): items 0-2, a repeat of item 0 (the first record wins), one outsider."""
    rows = [(items[k], f"Title of item {k}") for k in META_ITEMS]
    return [*rows, (items[0], "REPEATED title"), ("OUTSIDE-ITEM", "Outside title")]


def write_dump(root: Path, dataset: str) -> list[str]:
    """The raw files in the data set's published format; returns the prepare arguments."""
    root.mkdir(parents=True, exist_ok=True)
    users, items = _ids(dataset)
    reviews, meta = _raw_pairs(users, items), _meta_records(items)
    if dataset == "amazon":
        lines = [
            json.dumps({"reviewerID": u, "asin": i, "reviewerName": "R", "helpful": [0, 0],
                        "reviewText": t, "overall": 4.0, "summary": t.split(":")[0] if t else "",
                        "unixReviewTime": 1380000000 + k, "reviewTime": "09 24, 2013"})
            for k, (u, i, t) in enumerate(reviews)
        ]
        (root / "reviews_Books.json").write_text("\n".join([*lines, '{"reviewerID": broken'] ) + "\n")
        lines = [
            repr({"asin": i, "title": title, "description": f"About {title}.",
                  "categories": [["Books", "Literature & Fiction"]], "salesRank": {"Books": 7}})
            for i, title in meta
        ]
        (root / "meta_Books.json").write_text("\n".join(lines) + "\n")
        return ["--reviews", str(root / "reviews_Books.json"), "--meta", str(root / "meta_Books.json")]
    if dataset == "amazon2018":
        lines = [
            json.dumps({"overall": 4.0, "verified": True, "reviewTime": "09 24, 2013", "reviewerID": u,
                        "asin": i, "style": {"Format:": " Paperback"}, "reviewerName": "R",
                        "reviewText": t, "summary": "", "unixReviewTime": 1380000000 + k})
            for k, (u, i, t) in enumerate(reviews)
        ]
        (root / "Books.json").write_text("\n".join([*lines, "{broken"]) + "\n")
        lines = [
            json.dumps({"category": ["Books", "Literature & Fiction"], "description": [f"About {title}."],
                        "title": title, "brand": "", "feature": [], "asin": i})
            for i, title in meta
        ]
        (root / "meta_Books.json").write_text("\n".join(lines) + "\n")
        return ["--reviews", str(root / "Books.json"), "--meta", str(root / "meta_Books.json")]
    if dataset == "yelp":
        lines = [
            json.dumps({"review_id": f"r{k}", "user_id": u, "business_id": i, "stars": 4.0,
                        "useful": 0, "funny": 0, "cool": 0, "text": t, "date": "2016-03-09 17:00:00"})
            for k, (u, i, t) in enumerate(reviews)
        ]
        directory = root / "yelp_dataset"
        directory.mkdir()
        (directory / "yelp_academic_dataset_review.json").write_text(
            "\n".join([*lines, "{broken"]) + "\n"
        )
        lines = [
            json.dumps({"business_id": i, "name": title, "city": "Tucson", "state": "AZ",
                        "stars": 4.0, "review_count": 9, "is_open": 1,
                        "attributes": {"WiFi": "u'free'"}, "categories": "Books, Cafes"})
            for i, title in meta
        ]
        (directory / "yelp_academic_dataset_business.json").write_text("\n".join(lines) + "\n")
        return ["--reviews", str(directory)]
    lines = [
        repr({"username": u, "hours": 1.5, "products": 10, "product_id": i, "page_order": k,
              "date": "2017-12-17", "text": t, "early_access": False, "page": 1})
        for k, (u, i, t) in enumerate(reviews)
    ]
    (root / "steam_reviews.json").write_text("\n".join([*lines, "{'username': "]) + "\n", encoding="utf-8")
    lines = [
        repr({"publisher": "P", "genres": ["Action"], "app_name": title, "title": title,
              "url": f"http://store.steampowered.com/app/{i}/", "tags": ["Action", "Indie"],
              "specs": ["Single-player"], "id": i, "developer": "D"})
        for i, title in meta
    ]
    (root / "steam_games.json").write_text("\n".join(lines) + "\n")
    return ["--reviews", str(root / "steam_reviews.json"), "--meta", str(root / "steam_games.json")]


def prepare(ws: Path, split: Path, mappers: Path, name: str, *extra: str) -> dict:
    args = ["prepare", "--format", "rlmrec", str(split), "--mapper", str(mappers),
            "--dataset", name, "-w", str(ws), "--json", *extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_committed_ids_are_the_real_mappers_ids() -> None:
    if not SHARED_MAPPERS.is_dir():
        pytest.skip(f"shared data not available: {SHARED_MAPPERS}")
    for dataset in DATASETS:
        spec = REAL_IDS[dataset]
        for side, index_key in (("user", "uid"), ("item", "iid")):
            lines = (SHARED_MAPPERS / f"{dataset}_{side}.json").read_text(encoding="utf-8").splitlines()
            real = {r[index_key]: r[spec[f"{side}_field"]] for r in map(json.loads, lines)}
            assert all(real[k] == raw for k, raw in spec[f"{side}s"]), (dataset, side)
    assert any(not u.isascii() for _, u in REAL_IDS["steam"]["users"])


@pytest.mark.parametrize("dataset", RAW_FORMATS)
def test_reviews_join_the_split_exactly(tmp_path: Path, dataset: str) -> None:
    split = write_split(tmp_path, "paper-split")  # not named after the mapper: counts decide
    mappers = write_mappers(tmp_path / "mapper", dataset)
    # A second pair of another shape, named like the split folder: the counts decide.
    (tmp_path / "mapper" / "paper-split_user.json").write_text('{"uid": 0, "username": "x"}')
    (tmp_path / "mapper" / "paper-split_item.json").write_text('{"iid": 0, "product_id": "1"}')
    raw = write_dump(tmp_path / "raw", dataset)
    ws = tmp_path / "ws"
    plain = prepare(ws, split, mappers, "plain")
    joined = prepare(ws, split, mappers, "joined", *raw)

    plain_dir, joined_dir = Path(plain["path"]), Path(joined["path"])
    for name in ("interactions.parquet", "users.parquet"):
        assert (plain_dir / name).read_bytes() == (joined_dir / name).read_bytes(), name
    assert pq.read_table(plain_dir / "items.parquet").column("item_id").to_pylist() == _ids(dataset)[1]
    assert joined["counts"]["interactions"] == plain["counts"]["interactions"]

    dataset_ws = PreparedDataset.open(Workspace(ws), "joined")
    reviews = dataset_ws.reviews()
    interactions = interactions_frame(dataset_ws)
    merged = reviews.merge(interactions, on=["user", "item"], suffixes=("", "_interaction"))
    assert len(merged) == len(reviews) == 15
    assert (merged.split == merged.split_interaction).all()
    for row in reviews.itertuples():
        assert row.text.startswith(MARKERS[row.split]), row
        assert row.text == _review_text(row.user, row.item)  # the first record of a pair wins
    assert not reviews.text.str.contains("OUTSIDE|NOPAIR|DUPLICATE").any()
    assert reviews.split.value_counts().to_dict() == {"train": 9, "test": 4, "valid": 2}
    if dataset == "amazon":
        assert reviews.rating.eq(4.0).all() and reviews.summary.str.startswith(tuple(MARKERS.values())).all()

    items = dataset_ws.items()
    assert items.title.tolist() == [f"Title of item {k}" for k in META_ITEMS] + ["", ""]
    assert items.text.iloc[0] != "" and items.text.iloc[3] == ""

    text = joined["counts"]["text"]
    expected_format = {"amazon": "amazon2014"}.get(dataset, dataset)
    assert text["reviews"]["formats"] == [expected_format]
    assert text["meta"]["formats"] == [expected_format]
    assert text["reviews"] | {"files": None, "formats": None} == {
        "files": None,
        "formats": None,
        "records": 21,
        "records_user_outside_split": 2,
        "records_item_outside_split": 2,
        "records_pair_not_in_split": 1,
        "records_duplicate_pair": 1,
        "pairs_matched": {"train": 10, "valid": 2, "test": 4},
        "pairs_matched_without_text": {"train": 1, "valid": 0, "test": 0},
        "pairs_without_review": {"train": 1, "valid": 1, "test": 0},
    }
    assert text["meta"]["records"] == 5 and text["meta"]["items_matched"] == 3
    assert text["meta"]["records_item_outside_split"] == 1 and text["meta"]["records_duplicate_item"] == 1
    assert text["coverage"] == {
        "users": {"with_text": 5, "total": 6, "share": 5 / 6},
        "items": {"with_text": 5, "total": 5, "share": 1.0},
        "train_interactions": {"with_text": 9, "total": 11, "share": 9 / 11},
        "items_with_metadata": {"with_text": 3, "total": 5, "share": 0.6},
    }
    assert text["warnings"] == [] and text["bad_lines"]["count"] == 1
    manifest = json.loads((joined_dir / "manifest.json").read_text())
    assert manifest["counts"]["text"]["coverage"] == text["coverage"]

    again = prepare(ws, split, mappers, "joined", *raw)
    assert again["reused"] is True and again["version"] == joined["version"]


def test_motivate_prompts_quote_training_reviews_only(tmp_path: Path, monkeypatch) -> None:
    split = write_split(tmp_path, "amazon")
    mappers = write_mappers(tmp_path / "mapper", "amazon")
    raw = write_dump(tmp_path / "raw", "amazon")
    ws = tmp_path / "ws"
    prepare(ws, split, mappers, "amazon-book", *raw)

    prompts: list[str] = []
    real_estimate = motivate_module.estimate_tokens

    def recording(text: str) -> int:  # records what dry-run sizes: the prompts it would send
        prompts.append(text)
        return real_estimate(text)

    monkeypatch.setattr(motivate_module, "estimate_tokens", recording)
    result = CliRunner().invoke(app, ["motivate", "--dataset", "amazon-book", "--dry-run", "-w", str(ws)])
    assert result.exit_code == 0, result.output
    assert "11 users" not in result.output and f"{N_ITEMS} items + {N_USERS} users" in result.output
    everything = "\n".join(prompts)
    quoted = {(u, i) for u, i in SPLIT_PAIRS["train"] if f"u{u} i{i}:" in everything}
    assert quoted == set(SPLIT_PAIRS["train"]) - NO_REVIEW - {EMPTY_REVIEW}
    assert "VALIDTEXT" not in everything and "TESTTEXT" not in everything
    assert "Title of item 0" in everything and "REPEATED" not in everything


def test_wrong_dump_for_the_mapper_warns_of_low_coverage(tmp_path: Path) -> None:
    split = write_split(tmp_path, "amazon")
    mappers = write_mappers(tmp_path / "mapper", "amazon")
    steam = write_dump(tmp_path / "raw", "steam")  # Steam's dump, Amazon's ids
    result = CliRunner().invoke(
        app,
        ["prepare", "--format", "rlmrec", str(split), "--mapper", str(mappers), "--dataset", "x",
         "-w", str(tmp_path / "ws"), *steam],
    )
    assert result.exit_code == 0, result.output
    assert "low coverage: only 0.0% of the training interactions (0 of 11)" in result.output
    assert "steam_reviews.json" in result.output and "only 0.0% of the items" in result.output
    manifest = PreparedDataset.open(Workspace(tmp_path / "ws"), "x").manifest
    warnings = manifest["counts"]["text"]["warnings"]
    assert len(warnings) == 2 and all(w.startswith("low coverage") for w in warnings)
    assert manifest["counts"]["text"]["reviews"]["records_user_outside_split"] == 21


def test_reviews_need_the_mappers_and_a_split(tmp_path: Path) -> None:
    split = write_split(tmp_path, "amazon")
    raw = write_dump(tmp_path / "raw", "amazon")
    runner = CliRunner()
    no_mapper = runner.invoke(
        app, ["prepare", "--format", "rlmrec", str(split), "-w", str(tmp_path / "ws"), *raw]
    )
    assert no_mapper.exit_code != 0 and "give both id mappers" in no_mapper.output
    assert "Traceback" not in no_mapper.output
    raw_only = runner.invoke(
        app, ["prepare", raw[1], "--reviews", raw[1], "-w", str(tmp_path / "ws")]
    )
    assert raw_only.exit_code != 0 and "--reviews joins review texts onto an RLMRec split" in raw_only.output
    swapped = runner.invoke(
        app,
        ["prepare", "--format", "rlmrec", str(split), "--mapper", str(write_mappers(tmp_path / "m", "amazon")),
         "--reviews", raw[3], "-w", str(tmp_path / "ws")],
    )
    assert swapped.exit_code != 0 and "looks like item metadata" in swapped.output


@pytest.mark.slow
@pytest.mark.shared_data
def test_real_steam_metadata_covers_every_item_of_rlmrec_steam(tmp_path: Path) -> None:
    """The real steam_games dump joined by the real Steam item mapper: all 5,237 items of
    RLMRec's Steam split find their metadata (the split's interactions are stand-ins of its shape)."""
    games = SHARED_DATA / "steam_games" / "steam_games.json.gz"
    if not games.is_file() or not (SHARED_MAPPERS / "steam_item.json").is_file():
        pytest.skip(f"shared data not available: {games}, {SHARED_MAPPERS}")
    split = tmp_path / "steam"
    split.mkdir()
    shape = (23_310, 5_237)
    for k, name in enumerate(SPLIT_FILES.values()):
        users = np.arange(k, shape[0], 3)
        matrix = sp.coo_matrix((np.ones(len(users)), (users, users % shape[1])), shape=shape)
        (split / name).write_bytes(pickle.dumps(matrix, protocol=4))
    done = prepare(tmp_path / "ws", split, SHARED_MAPPERS, "steam", "--meta", str(games))
    meta = done["counts"]["text"]["meta"]
    assert done["counts"]["original_ids"] == {"user": "username", "item": "product_id"}
    assert meta["items_matched"] == 5_237 and meta["formats"] == ["steam"]
    assert done["counts"]["text"]["coverage"]["items_with_metadata"]["share"] == 1.0
    assert done["counts"]["text"]["warnings"] == []
