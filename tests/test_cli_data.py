"""`lmmrec prepare` on the demo and `lmmrec status`, through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from conftest import interactions_frame

from lmmrec_cli import __version__
from lmmrec_cli.cli import app
from lmmrec_cli.data.dataset import PreparedDataset
from lmmrec_cli.data.demo import ASPECTS, generate_demo
from lmmrec_cli.workspace import Workspace


def test_help_lists_commands_and_version(runner) -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "prepare" in result.output and "status" in result.output
    result = runner.invoke(app, ["--version"])
    assert result.output.strip() == f"lmmrec {__version__}"


def test_prepare_demo_then_rerun_is_noop(runner, tmp_path: Path) -> None:
    ws = str(tmp_path / "ws")
    first = runner.invoke(app, ["prepare", "--dataset", "demo", "-w", ws, "-q"])
    assert first.exit_code == 0, first.output
    assert "prepared datasets/demo@" in first.output
    assert "interactions: train" in first.output
    again = runner.invoke(app, ["prepare", "--dataset", "demo", "-w", ws, "--json"])
    assert again.exit_code == 0
    data = json.loads(again.output)
    assert data["reused"] is True
    assert data["counts"]["users"] == 600
    dataset = PreparedDataset.open(Workspace(ws), "demo")
    assert dataset.n_users == 600 and dataset.n_items == data["counts"]["items"]


def test_status_shows_lineage_tree_and_json(runner, tmp_path: Path) -> None:
    ws = str(tmp_path / "ws")
    empty = runner.invoke(app, ["status", "-w", ws])
    assert "empty" in empty.output
    runner.invoke(app, ["prepare", "--dataset", "demo", "-w", ws, "-q"])
    tree = runner.invoke(app, ["status", "-w", ws])
    assert tree.exit_code == 0 and "datasets/demo@" in tree.output and "(latest)" in tree.output
    data = json.loads(runner.invoke(app, ["status", "-w", ws, "--json"]).output)
    (artifact,) = data["artifacts"]
    assert artifact["kind"] == "datasets" and artifact["latest"] is True


def test_user_mistakes_are_one_line_errors(runner, tmp_path: Path) -> None:
    ws = str(tmp_path / "ws")
    missing = runner.invoke(app, ["prepare", str(tmp_path / "nope.json"), "-w", ws])
    assert missing.exit_code != 0
    lines = [line for line in missing.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "nope.json" in lines[0]
    assert "Traceback" not in missing.output
    bad_ratio = runner.invoke(app, ["prepare", "--dataset", "demo", "-w", ws, "--ratios", "3:1"])
    assert bad_ratio.exit_code != 0 and "--ratios" in bad_ratio.output
    unknown = runner.invoke(app, ["status", "-w", ws])
    assert unknown.exit_code == 0


def test_demo_is_deterministic_and_reviews_carry_motivations() -> None:
    a, b = generate_demo(seed=3), generate_demo(seed=3)
    assert [(r.user_id, r.item_id, r.text) for r in a.reviews] == [(r.user_id, r.item_id, r.text) for r in b.reviews]
    assert [r.text for r in generate_demo(seed=4).reviews] != [r.text for r in a.reviews]
    # A review praises exactly the aspects the diner seeks and the restaurant offers.
    for review in a.reviews[:300]:
        user = int(review.user_id.split("_")[1])
        item = int(review.item_id.split("_")[1])
        wanted = set(a.user_seeks[user]) & set(a.item_offers[item])
        for aspect in wanted:
            assert any(p.lower() in review.text.lower() for p in ASPECTS[aspect].praise)


def test_demo_split_and_text_tables(demo_ws) -> None:
    dataset = PreparedDataset.open(demo_ws, "demo")
    inter = dataset.interactions
    assert inter.count("train") > inter.count("valid") > 0
    train_reviews = dataset.reviews("train")
    assert set(train_reviews["split"]) == {"train"}
    assert len(train_reviews) == inter.count("train")
    items = dataset.items()
    assert (items["title"].str.len() > 0).all() and items["text"].str.contains("Known for").all()
    frame = interactions_frame(dataset)
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == ["user", "item", "split", "rating", "timestamp"]
