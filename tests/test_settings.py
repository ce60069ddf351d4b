"""Nonsense settings are refused in one place (the config) with one clear line; a diverging loss
stops the run like NaN does."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest
from conftest import run_cli

from lmmrec_cli import catalog
from lmmrec_cli.config import SETTING_BOUNDS

LMMREC_WITHOUT_TEXT = ["--plugin", "lmmrec", "--plugin-param", "use_text=false"]
FAST = ["--epochs", "3", "--eval-every", "3", "--batch-size", "1024", "--device", "cpu", "--threads", "1", "-q"]


def _numeric(annotation: typing.Any) -> bool:
    args = typing.get_args(annotation) or (annotation,)
    inner = [typing.get_args(a)[0] if typing.get_origin(a) is tuple else a for a in args]
    return any(a in (int, float) for a in inner)


@pytest.mark.parametrize("entry", [*catalog.MODELS, *catalog.PLUGINS[1:]], ids=lambda e: e.name)
def test_every_numeric_setting_has_a_range(entry):
    config = entry.config_class()()
    hints = typing.get_type_hints(type(config))
    missing = [f.name for f in dataclasses.fields(config) if _numeric(hints[f.name]) and f.name not in SETTING_BOUNDS]
    assert missing == []


@pytest.fixture(scope="module")
def small_ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("settings") / "ws"
    result = run_cli("prepare", "--dataset", "demo", "--demo-users", "120", "--demo-items", "60", "-w", root, "-q")
    assert result.exit_code == 0, result.output
    return root


@pytest.mark.parametrize(("args", "named"), [
    (["--dim", "0"], "--dim 0"),
    (["--dim", "-5"], "--dim -5"),
    (["--layers", "-1"], "--layers -1"),
    (["--reg", "-1"], "--reg -1"),
    (["--param", "temperature=0", "-m", "sgl"], "--param temperature=0"),
    (["--param", "keep_rate=1.5", "-m", "sgl"], "keep_rate=1.5"),
    (["--param", "eps=nan", "-m", "simgcl"], "eps=nan"),
    (["--lr", "0"], "--lr"),
    (["--lr", "nan"], "--lr"),
    (["--lr", "inf"], "--lr"),
    ([*LMMREC_WITHOUT_TEXT, "--plugin-param", "prototypes=0"], "--plugin-param prototypes=0"),
    ([*LMMREC_WITHOUT_TEXT, "--plugin-param", "momentum=2"], "--plugin-param momentum=2"),
])
def test_a_setting_out_of_range_is_refused_with_one_line(small_ws: Path, args: list[str], named: str) -> None:
    result = run_cli("train", "-d", "demo", "-w", small_ws, *FAST, *args)
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and named in lines[0], result.stderr
    assert not list((small_ws / "runs").glob("*/*/metrics.json")) if (small_ws / "runs").is_dir() else True


def test_a_diverging_loss_stops_like_nan(small_ws: Path) -> None:
    result = run_cli("train", "-d", "demo", "-m", "mf", "--lr", "1e9", "--name", "diverged", "-w", small_ws, *FAST)
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "diverged" in lines[0] and "epoch" in lines[0] and "--lr" in lines[0], result.stderr
    assert not (small_ws / "runs" / "diverged" / "latest").exists()
