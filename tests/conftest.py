"""Shared test helpers: fixture files written in the real raw schemas, the CLI runner, a tiny
random graph, a prepared demo workspace, and the location of the shared real-data samples
(``../shared/data`` beside the repository)."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from lmmrec_cli.cli import app
from lmmrec_cli.data.pipeline import PrepareSettings
from lmmrec_cli.data.prepare import DemoSpec, prepare
from lmmrec_cli.models.graph import Graph
from lmmrec_cli.workspace import Workspace

# Tests use tiny tensors: one thread avoids OpenMP hand-offs, which cost far more than the work
# on a shared machine (a LightGCN step on the demo: ~3 ms with 1 thread, ~35 ms with 2 busy ones).
torch.set_num_threads(1)

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


def interactions_frame(dataset) -> pd.DataFrame:
    """A prepared dataset's interactions table (user, item, split, rating, timestamp)."""
    from lmmrec_cli.data.dataset import INTERACTIONS_FILE

    return pd.read_parquet(dataset.path / INTERACTIONS_FILE)


def dense_adjacency(graph: Graph) -> torch.Tensor:
    """``Â`` of ``graph`` as a dense tensor (tiny graphs only)."""
    return graph.adjacency.matrix.to_dense()


def make_tiny_graph(n_users: int = 12, n_items: int = 9, n_pairs: int = 40, seed: int = 0) -> Graph:
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, n_pairs)
    items = rng.integers(0, n_items, n_pairs)
    # every node gets at least one edge, except the last user (a zero-degree row)
    users = np.concatenate([users, np.arange(n_users - 1), np.zeros(n_items, dtype=np.int64)])
    items = np.concatenate([items, np.arange(n_users - 1) % n_items, np.arange(n_items)])
    users[users == n_users - 1] = 0
    return Graph(n_users, n_items, users, items)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``cuda`` skip where torch sees no CUDA device, saying so."""
    if torch.cuda.is_available():
        return
    reason = pytest.mark.skip(reason="needs a CUDA device: torch.cuda.is_available() is False here "
                                     "(benchmarks/gpu_check.sh runs these on a GPU machine)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(reason)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def tiny_graph() -> Graph:
    return make_tiny_graph()


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA} (real samples live in ../shared/data)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def demo_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace holding the demo data set (600 users), prepared once per test session.

    Tests copy nothing out of it; runs they create use distinct names or seeds.
    """
    root = tmp_path_factory.mktemp("ws")
    prepare(Workspace(root), paths=[], meta=[], format_name=None, name="demo",
            settings=PrepareSettings(), min_rating_given=False, demo=DemoSpec())
    return root


@pytest.fixture
def demo_ws(demo_workspace: Path) -> Workspace:
    """The demo workspace as a :class:`Workspace`."""
    return Workspace(demo_workspace)


def popularity(ws: Workspace, dataset: str = "demo", ks: tuple[int, ...] = (10, 20)) -> dict[str, float]:
    """Test metrics of ranking every user's unseen items by training popularity (the floor a
    base model must clear to count as learning)."""
    from lmmrec_cli.data.dataset import PreparedDataset
    from lmmrec_cli.metrics import full_ranking

    inter = PreparedDataset.open(ws, dataset).interactions
    degree = torch.tensor(np.asarray(inter.matrix("train").sum(0)).ravel(), dtype=torch.float32)
    result = full_ranking(lambda users: degree.expand(len(users), -1).clone(),
                          inter.matrix("test"), inter.matrix("train"), ks=ks)
    return result.summary()


def random_text_vectors(ws: Workspace, name: str, dim: int = 8, seed: int = 0) -> str:
    """A text-vector artifact of random rows for the demo dataset of ``ws`` (made once)."""
    from lmmrec_cli.data.dataset import PreparedDataset
    from lmmrec_cli.embeddings import TextVectors, write_vectors

    data = PreparedDataset.open(ws, "demo")
    rng = np.random.default_rng(seed)
    build = ws.build("embeddings", name, key={"random": dim, "seed": seed}, parents=[data.ref])
    with build:
        if not build.reused:
            write_vectors(build.dir, TextVectors(
                rng.normal(size=(data.n_users, dim)).astype("f4"),
                rng.normal(size=(data.n_items, dim)).astype("f4"),
                np.zeros(data.n_users, bool), np.zeros(data.n_items, bool)))
    return name
