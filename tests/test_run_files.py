"""Run files are loaded without running code: a crafted checkpoint is refused with one line."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from conftest import run_cli

from lmmrec_cli.config import TrainConfig
from lmmrec_cli.runs import BEST_FILE, CHECKPOINT_FILE
from lmmrec_cli.train import train
from lmmrec_cli.workspace import Workspace

FAST = ["--epochs", "3", "--eval-every", "3", "--batch-size", "1024", "--device", "cpu", "--threads", "1", "-q"]


class _RunsACommand:
    """Unpickling this calls os.system: what an attacker would put in a shared run directory."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _crafted(path: Path, marker: Path) -> None:
    torch.save({"model": {}, "plugin": {}, "epoch": 1, "payload": _RunsACommand(marker)}, path)


@pytest.fixture(scope="module")
def small_ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runfiles") / "ws"
    result = run_cli("prepare", "--dataset", "demo", "--demo-users", "120", "--demo-items", "60", "-w", root, "-q")
    assert result.exit_code == 0, result.output
    result = run_cli("train", "-d", "demo", "-m", "mf", "-w", root, *FAST)
    assert result.exit_code == 0, result.output
    return root


def test_a_crafted_best_pt_is_refused_by_explain(small_ws: Path, tmp_path: Path) -> None:
    run_dir = Workspace(small_ws).resolve("runs", "demo-mf-s0").path
    copied = tmp_path / "shared-run"
    shutil.copytree(run_dir, copied)
    marker = tmp_path / "pwned"
    _crafted(copied / BEST_FILE, marker)
    result = run_cli("explain", "--run", copied, "--user", "3", "--index", "-w", small_ws)
    assert result.exit_code != 0
    assert not marker.exists(), "unpickling the checkpoint ran a command"
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and BEST_FILE in lines[0] and "refused" in lines[0], result.stderr


def test_a_damaged_best_pt_is_one_clear_line(small_ws: Path, tmp_path: Path) -> None:
    run_dir = Workspace(small_ws).resolve("runs", "demo-mf-s0").path
    copied = tmp_path / "damaged-run"
    shutil.copytree(run_dir, copied)
    data = (copied / BEST_FILE).read_bytes()
    (copied / BEST_FILE).write_bytes(data[: len(data) // 2])
    result = run_cli("explain", "--run", copied, "--user", "3", "--index", "-w", small_ws)
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert BEST_FILE in result.stderr and "damaged" in result.stderr


class _Interrupt(Exception):
    pass


def _stop_at(epoch: int):
    def callback(record) -> None:
        if record.epoch == epoch:
            raise _Interrupt()
    return callback


def test_a_crafted_checkpoint_is_refused_on_resume(small_ws: Path, tmp_path: Path) -> None:
    ws = Workspace(small_ws)
    config = TrainConfig(epochs=4, eval_every=2, patience=10, device="cpu", seed=3, batch_size=1024, threads=1)
    with pytest.raises(_Interrupt):
        train(ws, dataset="demo", model="mf", config=config, name="crafted", callbacks=[_stop_at(2)])
    checkpoints = [p for p in small_ws.rglob(CHECKPOINT_FILE) if "crafted" in str(p)]
    assert len(checkpoints) == 1
    marker = tmp_path / "pwned"
    _crafted(checkpoints[0], marker)
    result = run_cli("train", "-d", "demo", "-m", "mf", "--name", "crafted", "--epochs", "4", "--eval-every", "2",
                     "--patience", "10", "--seed", "3", "--batch-size", "1024", "--device", "cpu", "--threads", "1",
                     "--resume", "-q", "-w", small_ws)
    assert result.exit_code != 0
    assert not marker.exists(), "unpickling the checkpoint ran a command"
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and CHECKPOINT_FILE in lines[0] and "--restart" in lines[0], result.stderr
