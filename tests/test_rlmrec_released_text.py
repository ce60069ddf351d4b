"""RLMRec's released profiles and text vectors, used directly: LMMRec trains on them without an
LLM, and the ``rlmrec`` recipe trains with RLMRec's settings and prints RLMRec's Table 1 beside.

The release's pickles are made here, small: a split, ``usr_prf.pkl`` / ``itm_prf.pkl`` and
``usr_emb_np.pkl`` / ``itm_emb_np.pkl`` in RLMRec's layout.
"""

from __future__ import annotations

import json
import os
import pickle
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import REPO_ROOT
from typer.testing import CliRunner

from lmmrec_cli.cli import app
from lmmrec_cli.workspace import Workspace

N_USERS, N_ITEMS, DIM = 40, 30, 12


def write_release(directory: Path) -> Path:
    """A small RLMRec data directory: three split matrices, profiles and text vectors."""
    rng = np.random.default_rng(3)
    directory.mkdir(parents=True)
    pairs = [(u, int(i)) for u in range(N_USERS) for i in rng.choice(N_ITEMS, 7, replace=False)]
    order = rng.permutation(len(pairs))
    cut = [0, int(0.6 * len(pairs)), int(0.8 * len(pairs)), len(pairs)]
    for k, name in enumerate(("trn_mat.pkl", "val_mat.pkl", "tst_mat.pkl")):
        chosen = [pairs[j] for j in order[cut[k] : cut[k + 1]]]
        rows, cols = zip(*chosen, strict=True)
        matrix = sp.coo_matrix((np.ones(len(chosen)), (rows, cols)), shape=(N_USERS, N_ITEMS))
        (directory / name).write_bytes(pickle.dumps(matrix, protocol=4))
    profiles = {
        "usr_prf.pkl": {u: {"profile": f"reader {u} seeks slow-burn mysteries", "reasoning": "r"}
                        for u in range(N_USERS)},
        "itm_prf.pkl": {i: {"profile": f"book {i}: a coastal mystery", "reasoning": ""}
                        for i in range(N_ITEMS)},
        "usr_emb_np.pkl": rng.normal(size=(N_USERS, DIM)),
        "itm_emb_np.pkl": rng.normal(size=(N_ITEMS, DIM)),
    }
    for name, value in profiles.items():
        (directory / name).write_bytes(pickle.dumps(value, protocol=4))
    return directory


def test_lmmrec_trains_on_the_released_profiles_and_vectors(tmp_path: Path) -> None:
    release = write_release(tmp_path / "amazon")
    ws = str(tmp_path / "ws")
    runner = CliRunner()
    prepared = runner.invoke(
        app, ["prepare", "--format", "rlmrec", str(release), "--dataset", "amazon-book", "-w", ws, "--json"]
    )
    assert prepared.exit_code == 0, prepared.output
    derived = json.loads(prepared.output)["derived"]
    assert [d.split("@")[0] for d in derived] == ["motivations/amazon-book", "embeddings/amazon-book"]
    trained = runner.invoke(
        app,
        ["train", "--dataset", "amazon-book", "--model", "lightgcn", "--plugin", "lmmrec",
         "--embeddings", "amazon-book", "--epochs", "2", "--threads", "1", "-w", ws, "-q"],
    )
    assert trained.exit_code == 0, trained.output
    workspace = Workspace(ws)
    run = workspace.latest("runs", "amazon-book-lightgcn-lmmrec-s0")
    assert run is not None
    embeddings = workspace.latest("embeddings", "amazon-book")
    assert embeddings.version in json.dumps(run.manifest())  # the run names the vectors it read
    assert embeddings.manifest()["settings"]["backend"] == "imported:rlmrec"
    metrics = json.loads((run.path / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["recall@20"] <= 1.0


def _make(*args: str, workspace: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "MAKEFLAGS": ""}
    env.pop("LMMREC_WORKSPACE", None)
    lmmrec = f"{shlex.quote(sys.executable)} -m lmmrec_cli"
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO_ROOT / "recipes"), *args,
         f"LMMREC={lmmrec}", f"PYTHON={shlex.quote(sys.executable)}", f"WORKSPACE={workspace}"],
        capture_output=True, text=True, env=env, check=False,
    )


needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


@needs_make
def test_rlmrec_recipe_uses_the_data_sets_settings(tmp_path: Path) -> None:
    plan = _make("-n", "rlmrec", "RLMREC_DATA=steam", "RLMREC_SPLIT=/data/steam",
                 "RLMREC_MAPPER=/data/mapper", "MODELS=lightgcn sgl simgcl", "SEEDS=0",
                 workspace=tmp_path / "ws")
    assert plan.returncode == 0, plan.stderr
    # One command per line, continuations joined and runs of blanks collapsed.
    commands = "\n".join(" ".join(c.split()) for c in plan.stdout.replace("\\\n", " ").splitlines())
    assert "prepare --format rlmrec /data/steam --mapper /data/mapper --dataset rlmrec-steam" in commands
    lines = {m: next(line for line in commands.splitlines() if f"--model {m} " in line) for m in
             ("lightgcn", "sgl", "simgcl")}
    assert "--param layers=2" in lines["lightgcn"]
    assert "--param temperature=0.5" in lines["sgl"] and "--param eps=0.2" in lines["simgcl"]
    assert all("--lr 1e-3 --batch-size 4096 --eval-every 3 --patience 5" in line for line in lines.values())
    assert "published.py rlmrec-steam --data steam" in commands
    missing = _make("rlmrec", "MODELS=lightgcn", "SEEDS=0", workspace=tmp_path / "ws")
    assert missing.returncode != 0 and "pass RLMREC_SPLIT=DIR" in missing.stderr


@needs_make
@pytest.mark.slow
def test_rlmrec_recipe_prints_ours_beside_the_published_table(tmp_path: Path) -> None:
    release = write_release(tmp_path / "yelp")
    done = _make("rlmrec", "RLMREC_DATA=yelp", f"RLMREC_SPLIT={release}", "MODELS=lightgcn", "SEEDS=0",
                 "RLMREC_PLUGINS=none rlmrec-con", "EPOCHS=3", "DEVICE=cpu", workspace=tmp_path / "ws")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "RLMRec Table 1, yelp: runs rlmrec-yelp-<model>-s<seed>" in out
    rows = {line.split()[0] + " " + line.split()[1]: line for line in out.splitlines()
            if line.startswith("lightgcn")}
    assert "0.1157" in rows["lightgcn recall@20"] and "(n=1)" in rows["lightgcn recall@20"]
    assert "0.1230" in rows["lightgcn-rlmrec-con recall@20"]
    assert "no finished runs" not in out
