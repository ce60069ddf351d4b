"""`lmmrec explain`: the evaluator's top-k, the JSON schema, motivations from the user's own
training reviews, prototypes and agreement for LMMRec, plugin-less runs, unknown users."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from lmmrec_cli.explain import agreement, prototype_loadings, recommend, shared_prototypes
from lmmrec_cli.metrics import RankingResult
from lmmrec_cli.runs import PER_USER_TEST_FILE, load_run
from lmmrec_cli.workspace import Workspace

# Short runs on a small demo: explain needs a trained run, not a good one.
FAST = [
    "--epochs",
    "3",
    "--eval-every",
    "3",
    "--batch-size",
    "1024",
    "--device",
    "cpu",
    "--threads",
    "1",
    "-q",
]
LMMREC_RUN, PLAIN_RUN = "demo-lightgcn-lmmrec-s0", "demo-lightgcn-s0"


def _ok(*args: str):
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def explained_ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """demo (120 users) → extractive motivations → TF-IDF vectors → LightGCN with and without
    LMMRec (16 prototypes)."""
    root = str(tmp_path_factory.mktemp("explain") / "ws")
    _ok(
        "prepare",
        "--dataset",
        "demo",
        "--demo-users",
        "120",
        "--demo-items",
        "60",
        "-w",
        root,
        "-q",
    )
    _ok("motivate", "--dataset", "demo", "--backend", "extractive", "-w", root, "-q")
    _ok("embed", "--motivations", "demo", "--dimensions", "16", "-w", root, "-q")
    _ok(
        "train",
        "-d",
        "demo",
        "-m",
        "lightgcn",
        "--plugin",
        "lmmrec",
        "-e",
        "demo",
        "--plugin-param",
        "prototypes=16",
        "--plugin-param",
        "mcs_weight=1.0",
        "-w",
        root,
        *FAST,
    )
    _ok("train", "-d", "demo", "-m", "lightgcn", "-w", root, *FAST)
    return Path(root)


def _explain_json(ws: Path, *args: str) -> dict:
    return json.loads(_ok("explain", "-w", str(ws), "--json", *args).stdout)


@pytest.mark.parametrize("run", [LMMREC_RUN, PLAIN_RUN])
def test_top_k_is_the_evaluators_ranking(explained_ws: Path, run: str) -> None:
    ws = Workspace(explained_ws)
    loaded = load_run(ws, run, device="cpu")
    stored = RankingResult.from_npz(loaded.ref.path / PER_USER_TEST_FILE)
    items, _ = recommend(loaded, stored.users, max(stored.ks))
    test = loaded.dataset.interactions.matrix("test")
    # Per-user Recall@N recomputed from explain's ranking equals the trainer's stored test pass
    # for every evaluated user, at every cut-off: the same items in the same order.
    sizes = np.diff(test.indptr)[stored.users]
    hit = np.array(
        [np.isin(items[row], test[user].indices) for row, user in enumerate(stored.users)]
    )
    discount = 1.0 / np.log2(np.arange(2, hit.shape[1] + 2))
    for k in stored.ks:
        np.testing.assert_allclose(hit[:, :k].sum(1) / sizes, stored.recall[k], atol=1e-12)
        # NDCG depends on where the hits sit: the order matches too, not only the set
        ideal = np.array([discount[: min(k, n)].sum() for n in sizes])
        np.testing.assert_allclose(
            (hit[:, :k] * discount[:k]).sum(1) / ideal, stored.ndcg[k], atol=1e-9
        )
    # ... and the command shows that ranking
    user = int(stored.users[0])
    out = _explain_json(explained_ws, "--run", run, "--user", str(user), "--index", "--k", "7")
    assert [r["item"] for r in out["recommendations"]] == items[0, :7].tolist()
    train_items = set(loaded.dataset.interactions.matrix("train")[user].indices)
    assert not train_items & {r["item"] for r in out["recommendations"]}


def test_json_schema(explained_ws: Path) -> None:
    out = _explain_json(explained_ws, "--run", LMMREC_RUN, "--user", "diner_0003", "--k", "4")
    assert set(out) == {
        "run",
        "dataset",
        "plugin",
        "motivations",
        "user",
        "prototypes",
        "k",
        "masked",
        "recommendations",
    }
    assert out["plugin"] == "lmmrec" and out["k"] == 4 and out["masked"] == ["train"]
    assert out["motivations"].startswith("motivations/demo@")
    assert out["user"]["id"] == "diner_0003" and out["user"]["index"] == 3
    assert set(out["user"]["motivations"]) == {"active", "passive", "summary", "source"}
    assert [r["rank"] for r in out["recommendations"]] == [1, 2, 3, 4]
    scores = [r["score"] for r in out["recommendations"]]
    assert scores == sorted(scores, reverse=True)
    for entry in out["recommendations"]:
        assert set(entry) == {
            "rank",
            "item",
            "item_id",
            "title",
            "score",
            "held_out",
            "motivations",
            "matched",
            "conflicts",
            "agreement",
            "prototypes",
        }
        assert entry["held_out"] in (None, "valid", "test")
        user_motivations = out["user"]["motivations"]
        assert set(entry["conflicts"]) <= set(entry["motivations"]["passive"]) & set(
            user_motivations["passive"]
        )
        assert set(entry["matched"]) <= set(entry["motivations"]["active"]) & set(
            out["user"]["motivations"]["active"]
        )
        assert set(entry["prototypes"]) == {"shared", "item_top"}


def test_user_motivations_come_from_the_users_training_reviews(explained_ws: Path) -> None:
    ws = Workspace(explained_ws)
    dataset_ref = ws.resolve("datasets", "demo")
    from lmmrec_cli.data.dataset import PreparedDataset

    reviews = PreparedDataset(dataset_ref).reviews(split="train")
    checked = 0
    for user in ("diner_0000", "diner_0001", "diner_0002"):
        out = _explain_json(explained_ws, "--run", LMMREC_RUN, "--user", user, "--k", "3")
        phrases = out["user"]["motivations"]["active"] + out["user"]["motivations"]["passive"]
        assert phrases, f"{user} has no motivations"
        text = " ".join(reviews.loc[reviews["user"] == out["user"]["index"], "text"]).lower()
        words = set(re.findall(r"[a-z]+", text))
        # Key phrases are content words of one clause with stop words dropped ("nigiri town" from
        # "the best nigiri in town"): every word of every phrase is in the user's own training
        # reviews, and most phrases occur verbatim.
        for phrase in phrases:
            assert set(phrase.split()) <= words, (user, phrase)
        verbatim = [p for p in phrases if p in text]
        assert len(verbatim) >= len(phrases) / 2, (user, phrases)
        checked += 1
    assert checked == 3


def test_lmmrec_run_shows_prototypes_and_agreement_in_range(explained_ws: Path) -> None:
    out = _explain_json(explained_ws, "--run", LMMREC_RUN, "--user", "diner_0005", "--k", "5")
    prototypes = out["prototypes"]
    assert prototypes["available"] and prototypes["count"] == 16
    assert len(prototypes["user_top"]) == 3
    assert all(0 <= p["prototype"] < 16 and p["load"] > 0 for p in prototypes["user_top"])
    for entry in out["recommendations"]:
        assert -1.0 <= entry["agreement"] <= 1.0
        for shared in entry["prototypes"]["shared"]:
            # "both load on" means both above uniform (loads are multiples of uniform)
            assert shared["user_load"] > 1.0 and shared["item_load"] > 1.0
            assert isinstance(shared["label"], list)
    text = _ok(
        "explain", "-w", str(explained_ws), "--run", LMMREC_RUN, "--user", "diner_0005", "--k", "2"
    ).stdout
    assert "both load on" in text and "agreement" in text and "#1 " in text and "#2 " in text


def test_agreement_and_shared_prototypes_definitions() -> None:
    user = np.array([0.4, 0.3, 0.2, 0.1])
    assert agreement(user, user) == pytest.approx(1.0)
    assert agreement(user, user[::-1].copy()) == pytest.approx(-1.0)
    assert agreement(user, np.full(4, 0.25)) == 0.0  # a flat loading agrees with nothing
    item = np.array([0.35, 0.15, 0.35, 0.15])
    # prototype 0 is above uniform for both; 2 only for the item, 1 only for the user
    assert shared_prototypes(user, item) == [0]
    assert shared_prototypes(np.array([0.3, 0.3, 0.2, 0.2]), np.array([0.3, 0.3, 0.2, 0.2])) == [
        0,
        1,
    ]


def test_loadings_are_distributions(explained_ws: Path) -> None:
    ws = Workspace(explained_ws)
    loaded = load_run(ws, LMMREC_RUN, device="cpu")
    loadings = prototype_loadings(loaded)
    assert loadings is not None and loadings.users.shape == (loaded.dataset.n_users, 16)
    assert loadings.items.shape == (loaded.dataset.n_items, 16)
    np.testing.assert_allclose(loadings.users.sum(1), 1.0)
    assert (loadings.items > 0).all()


def test_run_without_plugin_lists_top_k_with_motivations(explained_ws: Path) -> None:
    out = _explain_json(explained_ws, "--run", PLAIN_RUN, "--user", "diner_0003", "--k", "3")
    assert out["plugin"] == "none" and out["prototypes"]["available"] is False
    assert "prototypes" in out["prototypes"]["reason"]
    assert len(out["recommendations"]) == 3
    # no text vectors in a plain run: motivations are found through its dataset
    assert (
        out["motivations"].startswith("motivations/demo@") and out["user"]["motivations"]["active"]
    )
    assert all(
        r["agreement"] is None and r["prototypes"] is None and r["motivations"]
        for r in out["recommendations"]
    )
    text = _ok(
        "explain", "-w", str(explained_ws), "--run", PLAIN_RUN, "--user", "diner_0003", "--k", "2"
    ).stdout
    assert "prototypes unavailable" in text and "seeks:" in text


def test_unknown_user_is_one_line_naming_the_dataset(explained_ws: Path) -> None:
    result = run_cli("explain", "-w", str(explained_ws), "--run", PLAIN_RUN, "--user", "nobody")
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "datasets/demo@" in lines[0] and "--list-users" in lines[0]
    assert "Traceback" not in result.output
    by_index = run_cli(
        "explain", "-w", str(explained_ws), "--run", PLAIN_RUN, "--user", "100000", "--index"
    )
    assert by_index.exit_code != 0 and len(by_index.stderr.strip().splitlines()) == 1
    listing = json.loads(
        _ok("explain", "-w", str(explained_ws), "--run", PLAIN_RUN, "--list-users", "--json").stdout
    )
    assert listing[0] == {
        "index": 0,
        "id": "diner_0000",
        "training_items": listing[0]["training_items"],
    }
    assert len(listing) == 120
