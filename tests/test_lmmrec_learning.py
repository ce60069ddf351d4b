"""Learning check of the LMMRec plugin on the demo data (issue 5).

The demo world plants motivations in the review text (what a diner seeks and what puts them
off), so text-derived motivations carry signal the interaction graph alone has to learn
slowly. The offline pipeline (extractive motivations → TF-IDF vectors) feeds LightGCN+LMMRec;
it must beat LightGCN on test Recall@10 and NDCG@10 with p < 0.05 over users (paired t-test),
and the same plugin with the text view replaced by an MLP of ID embeddings (w/o TM) must lose
that gain: the gain comes from the text, not from the extra objective.

λ (``mcs_weight``) is 1.0 here, the smoke recipe's value: the paper's 1e-2 leaves the planted
signal nearly unused on a graph this small (measured: no significant gain).
"""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

from lmmrec_cli.metrics import paired_test
from lmmrec_cli.runs import stored_test_result
from lmmrec_cli.workspace import Workspace

TRAIN = ["--device", "cpu", "--threads", "1", "--epochs", "60", "--json", "-q"]
PLUGIN = ["--plugin", "lmmrec", "--plugin-param", "mcs_weight=1.0"]


def _train(workspace, *args: str) -> str:
    result = run_cli("train", "--dataset", "demo", "--model", "lightgcn", "--workspace", workspace, *TRAIN, *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["run"]


@pytest.fixture(scope="module")
def runs(demo_workspace) -> dict[str, str]:
    ws = str(demo_workspace)
    for step in (["motivate", "--dataset", "demo", "--backend", "extractive"],
                 ["embed", "--motivations", "demo"]):
        result = run_cli(*step, "--workspace", ws, "-q")
        assert result.exit_code == 0, result.output
    return {
        "base": _train(ws),
        "lmmrec": _train(ws, *PLUGIN, "--embeddings", "demo"),
        "w/o TM": _train(ws, *PLUGIN, "--plugin-param", "use_text=false", "--name", "demo-lightgcn-lmmrec-wo-tm-s0"),
    }


def _compare(demo_workspace, runs, variant: str, metric: str):
    ws = Workspace(demo_workspace)
    base = stored_test_result(ws.resolve("runs", runs["base"]))
    other = stored_test_result(ws.resolve("runs", runs[variant]))
    return paired_test(base, other, metric)


@pytest.mark.parametrize("metric", ["recall@10", "ndcg@10"])
def test_lmmrec_beats_its_base_and_the_gain_comes_from_the_text(demo_workspace, runs, metric) -> None:
    full = _compare(demo_workspace, runs, "lmmrec", metric)
    assert full.mean_b > full.mean_a and full.significant, full
    without_text = _compare(demo_workspace, runs, "w/o TM", metric)
    gain, kept = full.mean_b - full.mean_a, without_text.mean_b - without_text.mean_a
    # w/o TM keeps under a third of the gain (measured: none of it), and LMMRec with text is
    # significantly better than w/o TM on the same users
    assert kept < gain / 3, (full, without_text)
    ws = Workspace(demo_workspace)
    versus = paired_test(stored_test_result(ws.resolve("runs", runs["w/o TM"])),
                         stored_test_result(ws.resolve("runs", runs["lmmrec"])), metric)
    assert versus.mean_b > versus.mean_a and versus.significant, versus
