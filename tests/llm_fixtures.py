"""Fixtures of the LLM-layer tests: a small prepared demo workspace (copied per test), the
fake OpenAI server and a CLI runner with the test key set. Test modules import them by name
(kept out of conftest.py so they merge beside the other suites' fixtures)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from lmmrec_cli.cli import app
from lmmrec_cli.data.dataset import REVIEWS_FILE, write_table
from lmmrec_cli.workspace import Workspace
from tests.fake_openai import FakeOpenAI

# Built at run time so that no key-shaped literal sits in the repository (secret scanners).
API_KEY = "sk-" + "lmmrectest-9f8e7d6c5b4a3210ZZ"
KEY_ENV = "LMMREC_TEST_KEY"


def mark_reviews(dataset_dir: Path) -> None:
    """Give every review a unique marker naming its split, so a leaked validation or test
    review is visible in any prompt."""
    import pyarrow as pa

    frame = pd.read_parquet(dataset_dir / REVIEWS_FILE)
    frame["text"] = [
        f"{text} [R{n:05d}-{split}]"
        for n, (text, split) in enumerate(zip(frame["text"], frame["split"], strict=True))
    ]
    from lmmrec_cli.data.dataset import REVIEWS_SCHEMA

    write_table(
        pa.Table.from_pandas(frame, schema=REVIEWS_SCHEMA, preserve_index=False),
        dataset_dir / REVIEWS_FILE,
    )


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("template") / "ws"
    result = CliRunner().invoke(
        app,
        [
            "prepare",
            "--dataset",
            "demo",
            "--demo-users",
            "60",
            "--demo-items",
            "30",
            "-w",
            str(root),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    ref = Workspace(root).resolve("datasets", "demo")
    mark_reviews(ref.path)
    return root


@pytest.fixture
def ws_path(demo_template: Path, tmp_path: Path) -> Path:
    target = tmp_path / "ws"
    shutil.copytree(demo_template, target, symlinks=True)
    return target


@pytest.fixture
def server():
    with FakeOpenAI(api_key=API_KEY) as fake:
        yield fake


@pytest.fixture
def cli(monkeypatch):
    monkeypatch.setenv(KEY_ENV, API_KEY)

    def invoke(*args: str):
        return CliRunner().invoke(app, [str(a) for a in args])

    return invoke
