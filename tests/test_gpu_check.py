"""benchmarks/gpu_check.sh on a machine without a GPU: ``--dry-run`` lists every step and exits
0; a real run refuses with one line and status 2 where torch sees no CUDA device;
benchmarks/cuda_run.py passes a command's exit status through."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "benchmarks" / "gpu_check.sh"


def _run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHON": sys.executable, **env}, timeout=300, check=False)


def test_dry_run_lists_every_step_and_exits_zero(tmp_path) -> None:
    done = _run("--dry-run", "--out", str(tmp_path / "summary.txt"), LMMREC_RLMREC_AMAZON="")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for step in ("CUDA tests (pytest -m cuda)", "bench_train: LightGCN epoch, evaluation",
                 "LMMRec / LightGCN, batch 512", "LMMRec / LightGCN, batch 4096",
                 "LMMRec / WeightedGCL, batch 4096", "train --device cuda: RLMRec amazon"):
        assert step in out
    assert "SKIP: LMMREC_RLMREC_AMAZON is not set" in out
    assert "total limit" in out and "CUDA tests in tests/test_cuda.py" in out
    assert not (tmp_path / "summary.txt").exists()  # a dry run writes nothing


def test_dry_run_with_a_split_lists_the_cuda_training_runs(tmp_path) -> None:
    done = _run("--dry-run", LMMREC_RLMREC_AMAZON=str(tmp_path), GPU_CHECK_EPOCHS="2")
    assert done.returncode == 0, done.stderr
    assert f"prepare --format rlmrec {tmp_path}" in done.stdout
    assert "--epochs 2" in done.stdout and "--device cuda" in done.stdout and "--plugin lmmrec" in done.stdout


def test_unknown_option_is_one_line() -> None:
    done = _run("--bogus")
    assert done.returncode == 64
    assert done.stderr.strip().count("\n") == 0 and "--dry-run" in done.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available: the real run would start")
def test_without_cuda_a_real_run_refuses_in_one_line(tmp_path) -> None:
    done = _run("--out", str(tmp_path / "summary.txt"))
    assert done.returncode == 2
    assert "CUDA is not usable here" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "summary.txt").exists()


@pytest.mark.slow
def test_cuda_run_reports_the_commands_exit_status(tmp_path) -> None:
    done = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "cuda_run.py"), "train", "-d", "nope",
                           "-m", "lightgcn", "--device", "cpu", "-w", str(tmp_path)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 2
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["exit_code"] == 2 and report["seconds"] >= 0
