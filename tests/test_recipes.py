"""The Make recipes: `smoke` end to end in a temporary workspace, its rerun, and what `table1`,
`table2` and `noise` would run (``make -n``).

`smoke` trains two runs (about a minute on a CPU); it runs once per module and the tests read
what it left.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT

RECIPES = REPO_ROOT / "recipes"
LMMREC = f"{shlex.quote(sys.executable)} -m lmmrec_cli"
SMOKE_RUNS = ("demo-lightgcn-s0", "demo-lightgcn-lmmrec-s0")

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def make(*args: str, workspace: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "MAKEFLAGS": ""}
    env.pop("LMMREC_WORKSPACE", None)
    return subprocess.run(["make", "--no-print-directory", "-C", str(RECIPES), *args,
                           f"LMMREC={LMMREC}", f"WORKSPACE={workspace}"],
                          capture_output=True, text=True, env=env, check=False)


def _versions(workspace: Path) -> dict[str, list[str]]:
    runs = workspace / "runs"
    return {p.name: sorted(v.name for v in p.iterdir() if not v.name.startswith(".") and v.name != "latest")
            for p in runs.iterdir() if not p.name.startswith(".")}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    workspace = tmp_path_factory.mktemp("smoke") / "ws"
    done = make("smoke", workspace=workspace)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return workspace, done


@pytest.mark.slow
def test_smoke_leaves_every_artifact_and_a_consistent_table(smoke) -> None:
    workspace, done = smoke
    for kind in ("datasets", "motivations", "embeddings"):
        folder = (workspace / kind / "demo" / "latest").resolve()
        files = [p for p in folder.iterdir() if p.is_file() and p.name != "failures.jsonl"]
        assert (folder / "manifest.json").is_file() and len(files) > 1, kind
        assert all(p.stat().st_size > 0 for p in files), kind
    motivations = (workspace / "motivations" / "demo" / "latest").resolve()
    assert (motivations / "failures.jsonl").read_text() == ""  # the offline backend never fails
    counts = json.loads((workspace / "datasets" / "demo" / "latest" / "manifest.json").read_text())["counts"]
    assert len((motivations / "users.jsonl").read_text().splitlines()) == counts["users"]
    per_user = {}
    for name in SMOKE_RUNS:
        folder = (workspace / "runs" / name / "latest").resolve()
        for filename in ("manifest.json", "config.json", "log.jsonl", "metrics.json", "per_user_test.npz",
                         "best.pt", "checkpoint.pt", "users.npy", "items.npy"):
            assert (folder / filename).stat().st_size > 0, f"{name}/{filename}"
        with np.load(folder / "per_user_test.npz") as data:
            per_user[name] = {m: float(data[m].mean()) for m in data.files if "@" in m}
        stored = json.loads((folder / "metrics.json").read_text())["test"]
        assert stored == pytest.approx(per_user[name], abs=1e-12)
    # the comparison table printed by `evaluate --compare` shows these means
    for name in SMOKE_RUNS:
        assert f"{per_user[name]['recall@10']:.4f}" in done.stdout
    # the final report: every file non-empty, its numbers those of the per-user metrics
    report = workspace / "reports" / "smoke"
    for filename in ("report.md", "runs.csv", "table1.csv", "report.json",
                     "plots/curves-demo-lightgcn.png", "plots/bars-demo.png"):
        assert (report / filename).stat().st_size > 0, filename
    rows = {r["plugin"]: r for r in csv.DictReader((report / "runs.csv").open())}
    for plugin, name in zip(("none", "lmmrec"), SMOKE_RUNS, strict=True):
        assert rows[plugin]["n_seeds"] == "1"
        for metric, value in per_user[name].items():
            assert float(rows[plugin][f"{metric}_mean"]) == pytest.approx(value, abs=1e-12)
    markdown = (report / "report.md").read_text()
    assert f"{per_user['demo-lightgcn-lmmrec-s0']['recall@5']:.4f}" in markdown
    assert "Improv." in markdown


@pytest.mark.slow
def test_smoke_rerun_trains_nothing(smoke) -> None:
    workspace, _ = smoke
    before = _versions(workspace)
    logs = {n: (workspace / "runs" / n / "latest" / "log.jsonl").stat().st_mtime_ns for n in SMOKE_RUNS}
    again = make("smoke", workspace=workspace)
    assert again.returncode == 0, again.stderr[-3000:]
    commands = [line for line in again.stdout.splitlines() if line.startswith(LMMREC)]
    assert [c.split()[3] for c in commands] == ["evaluate", "report"]  # no prepare/motivate/embed/train
    assert _versions(workspace) == before
    assert logs == {n: (workspace / "runs" / n / "latest" / "log.jsonl").stat().st_mtime_ns for n in SMOKE_RUNS}
    # table1 over the same cells finds smoke's runs: nothing to train
    dry = make("-n", "table1", "MODELS=lightgcn", "PLUGINS=none lmmrec", "SEEDS=0", workspace=workspace)
    assert dry.returncode == 0, dry.stderr
    assert " train " not in dry.stdout and " report " in dry.stdout


def _commands(output: str, verb: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(LMMREC) and line.split()[3] == verb]


def test_experiment_targets_plan_one_run_per_cell(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    table1 = make("-n", "table1", "MODELS=lightgcn weightedgcl", "PLUGINS=none uist lmmrec", "SEEDS=0 1",
                  workspace=workspace)
    assert table1.returncode == 0, table1.stderr
    trains = _commands(table1.stdout, "train")
    assert len(trains) == 2 * 3 * 2
    names = {shlex.split(c)[shlex.split(c).index("--name") + 1] for c in trains}
    assert "demo-weightedgcl-uist-s1" in names and "demo-lightgcn-s0" in names
    lmmrec = [c for c in trains if "--plugin lmmrec" in c]
    assert lmmrec and all("mcs_weight=1.0" in c and "--embeddings demo" in c for c in lmmrec)
    assert len(_commands(table1.stdout, "report")) == 1

    table2 = make("-n", "table2", "MODELS=lightgcn", "SEEDS=0", "LMMREC_PARAMS=", workspace=workspace)
    variants = sorted(c.split("--name ")[1].split()[0] for c in _commands(table2.stdout, "train"))
    assert variants == ["demo-lightgcn-lmmrec-no-gcn-s0", "demo-lightgcn-lmmrec-no-icm-s0",
                        "demo-lightgcn-lmmrec-no-mcs-s0", "demo-lightgcn-lmmrec-no-tm-s0",
                        "demo-lightgcn-lmmrec-s0"]
    assert not any("mcs_weight" in c for c in _commands(table2.stdout, "train"))

    noise = make("-n", "noise", "MODELS=lightgcn", "PLUGINS=none lmmrec", "SEEDS=0", "NOISE=5 30",
                 workspace=workspace)
    assert [c.split("--ratio ")[1].split()[0] for c in _commands(noise.stdout, "perturb")] == ["5e-2", "30e-2"]
    noisy = [c for c in _commands(noise.stdout, "train") if "noise" in c]
    assert len(noisy) == 4 and all("--embeddings demo " in c for c in noisy if "--plugin" in c)

    missing = make("-n", "table1", "DATASETS=yelp", workspace=workspace)
    assert missing.returncode != 0 and "RAW_yelp" in missing.stderr
