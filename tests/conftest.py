"""Shared test helpers: fixture files written in the real raw schemas, the CLI runner, a
prepared demo workspace, and the location of the shared real-data samples (``../shared/data``
beside the repository)."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lmmrec_cli.cli import app
from lmmrec_cli.data.pipeline import PrepareSettings
from lmmrec_cli.data.prepare import DemoSpec, prepare
from lmmrec_cli.workspace import Workspace

REPO_ROOT = Path(__file__).resolve().parents[1]
# ../shared/data beside the repository (as in CI); LMMREC_SHARED_DATA points elsewhere, e.g.
# from a git worktree that does not sit beside shared/.
SHARED_DATA = Path(os.environ.get("LMMREC_SHARED_DATA") or REPO_ROOT.parent / "shared" / "data")


def write_lines(path: Path, lines: Iterable[str], *, gz: bool = False) -> Path:
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


def write_json_lines(path: Path, records: Iterable[dict], *, gz: bool = False) -> Path:
    return write_lines(path, (json.dumps(r) for r in records), gz=gz)


def run_cli(*args: str):
    """Run ``lmmrec ARGS``; returns click's Result (exit_code, stdout, stderr)."""
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"shared data not found at {SHARED_DATA} (the real samples live in ../shared/data)"
        )
    return SHARED_DATA


@pytest.fixture(scope="session")
def demo_workspace(tmp_path_factory) -> Workspace:
    """A workspace holding the prepared demo data set (built once per test session)."""
    ws = Workspace(tmp_path_factory.mktemp("demo-ws"))
    prepare(
        ws,
        paths=[],
        meta=[],
        format_name=None,
        name="demo",
        settings=PrepareSettings(),
        min_rating_given=False,
        demo=DemoSpec(),
    )
    return ws
