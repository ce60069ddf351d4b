"""`lmmrec train`, `evaluate` and `models` through Typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from lmmrec_cli.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_train_evaluate_and_compare(demo_workspace):
    ws = str(demo_workspace)
    common = ["--epochs", "3", "--eval-every", "3", "--device", "cpu", "-w", ws, "--seed", "11"]
    first = invoke("train", "-d", "demo", "-m", "lightgcn", "--json", *common)
    assert first.exit_code == 0, first.output
    run = json.loads(first.stdout)
    assert run["run"] == "demo-lightgcn-s11" and not run["reused"]
    assert set(run["metrics"]["test"]) == {f"{m}@{k}" for m in ("recall", "ndcg") for k in (5, 10, 20)}
    second = invoke("train", "-d", "demo", "-m", "polycf", "--layers", "2", "-p", "low_pass_rank=4",
                    "--json", *common)
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout)["model_config"]["layers"] == 2

    shown = invoke("evaluate", "demo-lightgcn-s11", "-w", ws)
    assert shown.exit_code == 0, shown.output
    assert "stored test pass" in shown.stdout and "masked: train items" in shown.stdout
    assert "hits / |test items of the user|" in shown.stdout

    again = invoke("evaluate", "demo-lightgcn-s11", "-w", ws, "--json")
    stored = json.loads(again.stdout)["runs"][0]["metrics"]
    assert stored == run["metrics"]["test"]

    recomputed = invoke("evaluate", "demo-lightgcn-s11", "-w", ws, "--mask-valid", "--k", "10",
                        "--device", "cpu", "--json")
    assert recomputed.exit_code == 0, recomputed.output
    data = json.loads(recomputed.stdout)
    assert data["protocol"]["masked"] == ["train", "valid"]
    assert data["runs"][0]["source"].startswith("recomputed")
    # masking the validation items can only move test items up
    assert data["runs"][0]["metrics"]["recall@10"] >= run["metrics"]["test"]["recall@10"]

    compared = invoke("evaluate", "demo-lightgcn-s11", "--compare", "demo-polycf-s11", "-w", ws)
    assert compared.exit_code == 0, compared.output
    assert "p (t / W)" in compared.stdout and "recall@20" in compared.stdout
    as_json = json.loads(invoke("evaluate", "demo-lightgcn-s11", "demo-polycf-s11", "-w", ws, "--json").stdout)
    tests = as_json["comparisons"][0]["tests"]
    assert len(tests) == 6 and all(0.0 <= t["t_pvalue"] <= 1.0 for t in tests)

    reused = invoke("train", "-d", "demo", "-m", "lightgcn", *common)
    assert reused.exit_code == 0 and "up to date" in reused.stdout


def test_user_mistakes_are_one_line_errors(demo_workspace):
    ws = str(demo_workspace)
    cases = [
        (["train", "-d", "demo", "-m", "nope", "-w", ws], "unknown model"),
        (["train", "-d", "demo", "-m", "mf", "--layers", "2", "-w", ws], "no setting 'layers'"),
        (["train", "-d", "demo", "-p", "tau=1", "-w", ws], "its settings:"),
        (["train", "-d", "demo", "--k", "5,x", "-w", ws], "--k"),
        (["train", "-d", "missing", "-w", ws], "no dataset named"),
        (["evaluate", "nope", "-w", ws], "no run named"),
        (["evaluate", "x", "--split", "train", "-w", ws], "--split"),
    ]
    for args, expected in cases:
        result = invoke(*args)
        assert result.exit_code != 0, args
        assert expected in result.output, (args, result.output)
        assert "Traceback" not in result.output


def test_a_models_own_training_defaults_apply_unless_a_flag_overrides_them(demo_workspace):
    ws = str(demo_workspace)
    result = invoke("train", "-d", "demo", "-m", "weightedgcl", "--epochs", "2", "--lr", "0.003",
                    "--device", "cpu", "-w", ws, "--seed", "12", "--json", "-q")
    assert result.exit_code == 0, result.output
    config = json.loads((Path(json.loads(result.stdout)["path"]) / "config.json").read_text())
    train = config["train"]
    # its paper's batch, stopping rule and warm-up; the two flags given win
    assert (train["batch_size"], train["select_metric"], train["eval_every"], train["patience"],
            train["min_epochs"]) == (4096, "ndcg@10", 1, 10, 30)
    assert train["epochs"] == 2 and train["lr"] == 0.003
    assert config["model_train_defaults"]["lr"] == 1e-4


def test_help_teaches_and_models_lists_settings():
    result = invoke("train", "--help")
    assert result.exit_code == 0
    for text in ("--param", "--resume", "--device", "LMMRec: 512", "RLMRec"):
        assert text in result.output
    listing = invoke("models", "--json")
    models = json.loads(listing.stdout)
    assert {"lightgcn", "mf", "sgl", "simgcl", "weightedgcl", "polycf"} == set(models)
    settings = {s["name"]: s for s in models["simgcl"]["settings"]}
    assert settings["eps"]["default"] == 0.9 and settings["eps"]["help"]
    # a model's own training defaults are listed (WeightedGCL: its paper's), the others' trainer's
    assert models["weightedgcl"]["training"]["lr"] == 1e-4
    assert models["weightedgcl"]["training"]["select_metric"] == "ndcg@10"
    assert "min_epochs" in models["weightedgcl"]["training_own"]
    assert models["lightgcn"]["training"]["batch_size"] == 512 and models["lightgcn"]["training_own"] == []


def test_plugins_lists_every_plugin_and_its_settings():
    # `train --plugin`'s help points here for the settings --plugin-param accepts.
    listing = invoke("plugins", "--json")
    assert listing.exit_code == 0, listing.output
    plugins = json.loads(listing.stdout)
    assert set(plugins) == {"none", "lmmrec", "rlmrec-con", "uist", "once", "autograph"}
    assert plugins["none"]["settings"] == []
    lmmrec = {s["name"]: s for s in plugins["lmmrec"]["settings"]}
    assert lmmrec["mcs_weight"]["default"] == 0.01 and lmmrec["prototypes"]["default"] == 128
    # every LMMRec setting, the ablation switches included, says what it does
    assert all(s["help"] for s in lmmrec.values()), [n for n, s in lmmrec.items() if not s["help"]]
    table = invoke("plugins")
    assert table.exit_code == 0 and "teacher_refresh_steps" in table.output


def test_a_selection_metric_that_cannot_tell_models_apart_is_warned_about(tmp_path: Path, demo_workspace) -> None:
    # 25 items, users with 5-6 of them: ~22 unseen per user, so recall@20 is ~0.9 for any ranking
    rows = ["user,item,rating,timestamp"]
    for user in range(40):
        for item in range(user % 20, user % 20 + 5 + user % 2):
            rows.append(f"u{user},i{item},5,{1_000_000 + user * 100 + item}")
    source = tmp_path / "small.csv"
    source.write_text("\n".join(rows) + "\n", encoding="utf-8")
    ws = str(tmp_path / "ws")
    prepared = invoke("prepare", str(source), "-d", "small", "--min-item-interactions", "1", "-w", ws, "-q")
    assert prepared.exit_code == 0, prepared.output
    common = ["-d", "small", "--epochs", "1", "--device", "cpu", "-w", ws, "-q"]
    warned = invoke("train", *common)
    assert warned.exit_code == 0, warned.output
    assert "warning: --select recall@20 on small: a random ranking already scores recall@20" in warned.stderr
    assert "select on ndcg@20 or a smaller K" in warned.stderr
    assert "warning" not in invoke("train", *common, "--select", "ndcg@20").stderr
    assert "warning" not in invoke("train", *common, "--select", "recall@5").stderr
    # 160 items on the demo: recall@20 of a random ranking is far below 0.5
    assert "warning" not in invoke("train", "-d", "demo", "--epochs", "1", "--device", "cpu", "-q",
                                   "-w", str(demo_workspace)).stderr
