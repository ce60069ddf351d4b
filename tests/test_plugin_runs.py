"""Plugins through the trainer and the CLI: lineage, reload for evaluation, and `ablate`."""

from __future__ import annotations

import json

import pytest
from conftest import random_text_vectors

from lmmrec_cli.cli import app
from lmmrec_cli.errors import UsageError
from lmmrec_cli.plugin_setup import plugin_spec
from lmmrec_cli.workspace import Workspace

FAST = ["--epochs", "2", "--eval-every", "1", "--batch-size", "2048"]


@pytest.fixture(scope="module")
def text_ws(demo_workspace):
    """The demo workspace with a small random text-vector artifact."""
    ws = Workspace(demo_workspace)
    random_text_vectors(ws, "demo-random")
    return ws


def test_plugin_needs_vectors_unless_it_reads_no_text(text_ws) -> None:
    with pytest.raises(UsageError, match="--embeddings"):
        plugin_spec(text_ws, "lmmrec", embeddings=None)
    assert plugin_spec(text_ws, "lmmrec", embeddings=None, overrides={"use_text": "false"}).parents == []
    with pytest.raises(UsageError, match="no setting 'nope'"):
        plugin_spec(text_ws, "lmmrec", embeddings="demo-random", overrides={"nope": "1"})


def test_train_with_plugin_records_vectors_and_reevaluates_identically(runner, text_ws) -> None:
    root = str(text_ws.root)
    trained = runner.invoke(app, ["train", "-d", "demo", "-w", root, "--plugin", "lmmrec", "-e", "demo-random",
                                  "--plugin-param", "prototypes=16", "--json", *FAST])
    assert trained.exit_code == 0, trained.output
    run = json.loads(trained.output)
    ref = text_ws.resolve("runs", run["run"])
    parents = {(p["kind"], p["name"]) for p in ref.manifest()["parents"]}
    assert parents == {("datasets", "demo"), ("embeddings", "demo-random")}
    # Evaluating with other cut-offs recomputes: model + plugin are rebuilt from the run and
    # must give the stored numbers back.
    again = runner.invoke(app, ["evaluate", run["run"], "-w", root, "--k", "10,20", "--json"])
    assert again.exit_code == 0, again.output
    (evaluated,) = json.loads(again.output)["runs"]
    assert evaluated["source"].startswith("recomputed")
    for metric in ("recall@20", "ndcg@10"):
        assert evaluated["metrics"][metric] == pytest.approx(run["metrics"]["test"][metric], abs=1e-9)


def test_ablate_trains_each_variant_once_and_prints_table_ii(runner, text_ws) -> None:
    root = str(text_ws.root)
    args = ["ablate", "-d", "demo", "-e", "demo-random", "-w", root, "--seeds", "0",
            "--plugin-param", "prototypes=16", *FAST]
    first = runner.invoke(app, [*args, "--json"])
    assert first.exit_code == 0, first.output
    rows = json.loads(first.output)
    assert [r["variant"] for r in rows] == ["LMMRec", "w/o MCS", "w/o ICM", "w/o GCN", "w/o TM"]
    assert rows[0]["vs_full"] == {} and "recall@5" in rows[1]["vs_full"]
    configs = {
        r["variant"]: json.loads((text_ws.resolve("runs", r["runs"][0].split("/")[1]).path / "config.json").read_text())
        for r in rows
    }
    assert configs["w/o TM"]["plugin"]["settings"]["embeddings"] is None
    assert configs["w/o ICM"]["plugin"]["settings"]["config"]["use_icm"] is False
    assert configs["w/o GCN"]["plugin"]["settings"]["config"]["use_gcn"] is False
    table = runner.invoke(app, args)
    assert table.exit_code == 0 and "w/o TM" in table.output and "R@5" in table.output
    assert "trained" not in table.output  # every run was found, none retrained
