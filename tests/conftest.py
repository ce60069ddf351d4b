"""Shared fixtures: a prepared demo workspace, the CLI runner, the shared data location."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from lmmrec_cli.data.pipeline import PrepareSettings
from lmmrec_cli.data.prepare import DemoSpec, prepare
from lmmrec_cli.workspace import Workspace

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


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


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, skipping the test when the shared data is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return path
