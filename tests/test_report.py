"""`lmmrec report`: grouping, statistics, the paper's layouts, files, and agreement with
`lmmrec evaluate --compare`.

Layout tests use small hand-made run directories (per-user metrics chosen by the test), so they
take milliseconds; one test trains two short real runs on the demo data.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import random_text_vectors, run_cli

from lmmrec_cli.config import TrainConfig
from lmmrec_cli.evaluation import mean_over_seeds
from lmmrec_cli.metrics import RankingResult, paired_test
from lmmrec_cli.plugin_setup import plugin_spec
from lmmrec_cli.report import build_report
from lmmrec_cli.train import train
from lmmrec_cli.workspace import Workspace, atomic_write_json

KS = (5, 10, 20)
N_USERS = 40


def _result(level: float, seed: int) -> RankingResult:
    """Per-user metrics around ``level`` with seed-dependent noise (deterministic)."""
    rng = np.random.default_rng(seed)
    users = np.arange(N_USERS, dtype=np.int64)
    recall = {k: np.clip(level * k / 10 + rng.normal(0, 0.05, N_USERS), 0, 1) for k in KS}
    ndcg = {k: np.clip(level * k / 12 + rng.normal(0, 0.05, N_USERS), 0, 1) for k in KS}
    return RankingResult(KS, users, recall, ndcg)


def _dataset(ws: Workspace, name: str, *, noise: float | None = None, parent: str = "demo") -> None:
    folder = ws.root / "datasets" / name / "v1"
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {"kind": "datasets", "name": name, "version": "v1", "parents": [], "counts": {}}
    if noise is not None:
        manifest["noise"] = {"ratio": noise, "seed": 0}
        manifest["parents"] = [{"kind": "datasets", "name": parent, "version": "v1"}]
    atomic_write_json(folder / "manifest.json", manifest)


def _run(ws: Workspace, name: str, *, level: float, seed: int, dataset: str = "demo",
         model: str = "lightgcn", plugin: str = "none", plugin_config: dict | None = None,
         seconds: float = 10.0, noise: int | None = None) -> RankingResult:
    """A finished run of ``seed`` whose per-user metrics are ``_result(level, noise or seed)``."""
    version = f"{abs(hash((name, seed))) % 10**12:012d}"
    folder = ws.root / "runs" / name / version
    folder.mkdir(parents=True)
    config = {"dataset": {"kind": "datasets", "name": dataset, "version": "v1"}, "model": model,
              "model_config": {"dim": 32}, "device_type": "cpu", "device": "cpu",
              "plugin": {"name": plugin, "settings": {"config": plugin_config or {}} if plugin != "none" else {}},
              "train": {**dataclasses.asdict(TrainConfig(seed=seed))}}
    atomic_write_json(folder / "config.json", config)
    atomic_write_json(folder / "manifest.json", {
        "kind": "runs", "name": name, "version": version, "duration_s": seconds,
        "counts": {"epochs": 12}, "settings": config, "finished_at": f"2026-01-01T00:00:0{seed}"})
    result = _result(level, seed if noise is None else noise)
    with open(folder / "per_user_test.npz", "wb") as handle:
        result.to_npz(handle)
    log = [
        {
            "epoch": e,
            "loss": {"bpr": 1 / e, "total": 1 / e},
            **({"valid": {"recall@20": 0.1 * e}} if e % 3 == 0 else {}),
        }
        for e in range(1, 13)
    ]
    (folder / "log.jsonl").write_text("".join(json.dumps(line) + "\n" for line in log))
    ws.set_latest("runs", name, version)
    return result


@pytest.fixture
def table_ws(tmp_path: Path) -> Workspace:
    """demo: LightGCN alone, +RLMRec-Con, +LMMRec, 3 seeds each; WeightedGCL alone, 1 seed."""
    ws = Workspace(tmp_path / "ws")
    _dataset(ws, "demo")
    for seed in range(3):
        _run(ws, f"demo-lightgcn-s{seed}", level=0.20, seed=seed)
        _run(ws, f"demo-lightgcn-rlmrec-con-s{seed}", level=0.21, seed=seed, noise=10 + seed, plugin="rlmrec-con")
        _run(ws, f"demo-lightgcn-lmmrec-s{seed}", level=0.40, seed=seed, noise=20 + seed, plugin="lmmrec",
             plugin_config={"use_mcs": True})
    _run(ws, "demo-weightedgcl-s0", level=0.25, seed=0, model="weightedgcl")
    return ws


def test_groups_mean_std_and_significance_over_shared_seeds(table_ws: Workspace) -> None:
    report = build_report(table_ws, ["demo-*"])
    runs = report.layouts[0]
    assert runs.key == "runs"
    rows = {(r["model"], r["method"]): r for r in runs.records}
    assert set(rows) == {("lightgcn", "none"), ("lightgcn", "rlmrec-con"), ("lightgcn", "lmmrec"),
                         ("weightedgcl", "none")}
    lmmrec = rows[("lightgcn", "lmmrec")]
    assert lmmrec["n_seeds"] == 3 and lmmrec["seeds"] == "0 1 2"
    values = [float(_result(0.40, 20 + s).recall[10].mean()) for s in range(3)]
    assert lmmrec["recall@10_mean"] == pytest.approx(np.mean(values), abs=1e-15)
    assert lmmrec["recall@10_std"] == pytest.approx(np.std(values, ddof=1), abs=1e-15)
    assert lmmrec["time_s_mean"] == 10.0
    # significance: seed-averaged per-user metrics, paired t-test, exactly as paired_test gives it
    base = mean_over_seeds([_result(0.20, s) for s in range(3)])
    ours = mean_over_seeds([_result(0.40, 20 + s) for s in range(3)])
    expected = paired_test(base, ours, "ndcg@5")
    assert lmmrec["ndcg@5_p_t"] == expected.t_pvalue and lmmrec["ndcg@5_p_wilcoxon"] == expected.wilcoxon_pvalue
    assert lmmrec["recall@10_significant"] is True and lmmrec["vs"] == "none"
    assert rows[("lightgcn", "none")]["recall@10_p_t"] is None  # the base is not tested against itself
    assert rows[("weightedgcl", "none")]["n_seeds"] == 1 and rows[("weightedgcl", "none")]["recall@10_std"] == 0.0


def test_table1_layout_blocks_stars_and_improvement_over_best_rival(table_ws: Workspace) -> None:
    layout = next(lay for lay in build_report(table_ws, ["demo-*"]).layouts if lay.key == "table1")
    assert layout.headers == ["method", "demo R@5", "demo R@10", "demo N@5", "demo N@10"]
    titles = [row[0] for row in layout.rows]
    assert titles == ["LightGCN", "+RLMRec-Con", "+LMMRec", "Improv.", "WeightedGCL"]
    lightgcn, rival, lmmrec, improvement, _ = layout.rows
    assert not any(cell.endswith("*") for cell in lightgcn[1:])
    assert all(cell.endswith("*") for cell in lmmrec[1:])  # 0.40 vs 0.20: far apart
    records = {(r["method"], r["metric"]): r for r in layout.records}
    mine, theirs = records[("lmmrec", "recall@5")]["mean"], records[("rlmrec-con", "recall@5")]["mean"]
    assert records[("Improv.", "recall@5")]["mean"] == pytest.approx(mine / theirs - 1)
    assert records[("Improv.", "recall@5")]["best_rival"] == "rlmrec-con"
    assert improvement[1] == f"{mine / theirs - 1:+.2%}*"
    assert lmmrec[1] == f"{mine:.4f}*"


def test_improvement_falls_back_to_the_base_and_baseline_is_selectable(table_ws: Workspace) -> None:
    alone = build_report(table_ws, ["demo-lightgcn-s*", "demo-lightgcn-lmmrec-s*"])
    table1 = next(lay for lay in alone.layouts if lay.key == "table1")
    assert [row[0] for row in table1.rows] == ["LightGCN", "+LMMRec", "Improv."]
    best = {r["metric"]: r["best_rival"] for r in table1.records if r["method"] == "Improv."}
    assert set(best.values()) == {"none"}  # no rival plugin ran: LMMRec over the base
    against_rival = build_report(table_ws, ["demo-lightgcn*"], baseline="rlmrec-con")
    rows = {r["method"]: r for r in against_rival.layouts[0].records}
    assert rows["lmmrec"]["vs"] == "rlmrec-con" and rows["none"]["vs"] == "rlmrec-con"
    assert rows["rlmrec-con"]["vs"] == ""


def test_ablation_layout_compares_variants_with_full_lmmrec(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    _dataset(ws, "demo")
    for seed in range(2):
        _run(ws, f"demo-lightgcn-lmmrec-s{seed}", level=0.40, seed=seed, plugin="lmmrec",
             plugin_config={"use_mcs": True, "use_icm": True})
        _run(ws, f"demo-lightgcn-lmmrec-no-mcs-s{seed}", level=0.20, seed=seed, noise=5 + seed, plugin="lmmrec",
             plugin_config={"use_mcs": False, "use_icm": True})
        _run(ws, f"demo-lightgcn-lmmrec-no-icm-s{seed}", level=0.40, seed=seed, plugin="lmmrec",
             plugin_config={"use_mcs": True, "use_icm": False})
    report = build_report(ws, ["demo-lightgcn-lmmrec*"])
    assert [lay.key for lay in report.layouts] == ["runs", "table2"]  # one method: no Table I
    table2 = report.layouts[1]
    assert table2.headers == ["dataset", "model", "variant", "R@5", "N@5", "R@10", "N@10"]
    assert [row[2] for row in table2.rows] == ["LMMRec", "w/o MCS", "w/o ICM"]
    full, no_mcs, no_icm = table2.rows
    assert all(cell.endswith("†") for cell in no_mcs[3:])  # significantly *below* the full model
    # identical per-user values: no difference at all, p = 1 (never a star)
    assert not any(cell.endswith(("*", "†")) for cell in no_icm[3:] + full[3:])
    assert " ± " in full[3]


def test_noise_layout_by_ratio_with_clean_data_as_zero(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    _dataset(ws, "demo")
    for percent, level in ((0, 0.30), (5, 0.28), (10, 0.24)):
        name = "demo" if percent == 0 else f"demo-noise{percent}"
        if percent:
            _dataset(ws, name, noise=percent / 100)
        _run(ws, f"{name}-lightgcn-s0", level=level, seed=0, dataset=name)
        _run(ws, f"{name}-lightgcn-lmmrec-s0", level=level + 0.1, seed=0, noise=1, dataset=name, plugin="lmmrec")
    report = build_report(ws, ["demo*"])
    noise = next(lay for lay in report.layouts if lay.key == "noise")
    assert noise.headers == ["dataset", "model", "method", "metric", "0%", "5%", "10%"]
    assert [(r[2], r[3]) for r in noise.rows] == [("none", "R@20"), ("none", "N@20"),
                                                  ("lmmrec", "R@20"), ("lmmrec", "N@20")]
    clean = float(_result(0.30, 0).recall[20].mean())
    noisy = float(_result(0.24, 0).recall[20].mean())
    assert noise.rows[0][6] == f"{noisy:.4f} ({noisy / clean - 1:+.1%})"
    ratios = {r["ratio"] for r in noise.records}
    assert ratios == {0.0, 0.05, 0.1}
    table1 = next(lay for lay in report.layouts if lay.key == "table1")
    assert table1.headers == ["method", "demo R@5", "demo R@10", "demo N@5", "demo N@10"]  # clean data only


def test_cli_writes_tables_json_and_plots(table_ws: Workspace, tmp_path: Path) -> None:
    result = run_cli("report", "demo-lightgcn*", "demo-weightedgcl-s0", "--name", "t1", "-w", table_ws.root)
    assert result.exit_code == 0, result.output
    assert "Table I layout" in result.output and "Improv." in result.output
    folder = table_ws.root / "reports" / "t1"
    for name in ("report.md", "runs.csv", "table1.csv", "report.json", "plots/curves-demo-lightgcn.png",
                 "plots/bars-demo.png"):
        assert (folder / name).stat().st_size > 0, name
    assert (folder / "plots/bars-demo.png").read_bytes()[:4] == b"\x89PNG"
    rows = list(csv.DictReader((folder / "runs.csv").open()))
    assert len(rows) == 4 and float(rows[0]["recall@5_mean"]) > 0
    markdown = (folder / "report.md").read_text()
    assert "## Table I layout" in markdown and "| +LMMRec |" in markdown
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no staging left
    # --out: other files in the directory stay; md only, no plots
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    again = run_cli("report", "demo-*", "--out", out, "--format", "md", "--no-plots", "--json", "-w", table_ws.root)
    assert again.exit_code == 0, again.output
    data = json.loads(again.output)
    assert set(data["files"]) == {"report.md", "report.json"} and (out / "mine.txt").read_text() == "keep"
    assert data["table1"]["rows"][0][0] == "LightGCN"


@pytest.mark.parametrize(("args", "message"), [
    (["nothing-*"], "no run name matches 'nothing-*'"),
    (["absent"], "no run named 'absent'"),
    (["demo-lightgcn-s0", "--format", "pdf"], "--format 'pdf'"),
])
def test_bad_input_is_one_line(table_ws: Workspace, args: list[str], message: str) -> None:
    result = run_cli("report", *args, "-w", table_ws.root)
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_report_reproduces_evaluate_compare_exactly(demo_ws: Workspace) -> None:
    """Two real (short) runs, base and base + plugin: the means and p-values of `report` are
    those of `evaluate --compare`, to the last bit."""
    random_text_vectors(demo_ws, "rep-random")
    config = TrainConfig(epochs=2, eval_every=1, batch_size=2048, seed=4, device="cpu")
    base = train(demo_ws, dataset="demo", model="lightgcn", config=config, name="rep-lightgcn-s4")
    spec = plugin_spec(demo_ws, "rlmrec-con", embeddings="rep-random")
    other = train(demo_ws, dataset="demo", model="lightgcn", config=config, plugin=spec,
                  name="rep-lightgcn-rlmrec-con-s4")
    compared = run_cli("evaluate", base.ref.name, "--compare", other.ref.name, "--json", "-w", demo_ws.root)
    assert compared.exit_code == 0, compared.output
    evaluated = json.loads(compared.output)
    tests = evaluated["comparisons"][0]["tests"]
    reported = run_cli("report", "rep-lightgcn*", "--no-plots", "--json", "-w", demo_ws.root, "--name", "rep")
    assert reported.exit_code == 0, reported.output
    rows = {r["plugin"]: r for r in json.loads(reported.output)["runs"]["records"]}
    assert rows["rlmrec-con"]["vs"] == "none" and rows["rlmrec-con"]["vs_seeds"] == "4"
    assert len(tests) == 6
    for test in tests:
        metric = test["metric"]
        assert rows["none"][f"{metric}_mean"] == test["mean_a"]
        assert rows["rlmrec-con"][f"{metric}_mean"] == test["mean_b"]
        assert rows["rlmrec-con"][f"{metric}_p_t"] == test["t_pvalue"]
        assert rows["rlmrec-con"][f"{metric}_p_wilcoxon"] == test["wilcoxon_pvalue"]
        assert rows["rlmrec-con"][f"{metric}_significant"] == test["significant"]
