"""Shared fixtures: a tiny random graph and the built-in demo data set in a temporary workspace."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lmmrec_cli.data.pipeline import PrepareSettings
from lmmrec_cli.data.prepare import DemoSpec, prepare
from lmmrec_cli.models.graph import Graph
from lmmrec_cli.workspace import Workspace

# Tests use tiny tensors: one thread avoids OpenMP hand-offs, which cost far more than the work
# on a shared machine (a LightGCN step on the demo: ~3 ms with 1 thread, ~35 ms with 2 busy ones).
torch.set_num_threads(1)


def make_tiny_graph(n_users: int = 12, n_items: int = 9, n_pairs: int = 40, seed: int = 0) -> Graph:
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, n_pairs)
    items = rng.integers(0, n_items, n_pairs)
    # every node gets at least one edge, except the last user (a zero-degree row)
    users = np.concatenate([users, np.arange(n_users - 1), np.zeros(n_items, dtype=np.int64)])
    items = np.concatenate([items, np.arange(n_users - 1) % n_items, np.arange(n_items)])
    users[users == n_users - 1] = 0
    return Graph(n_users, n_items, users, items)


@pytest.fixture
def tiny_graph() -> Graph:
    return make_tiny_graph()


@pytest.fixture(scope="session")
def demo_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace holding the demo data set (600 users), prepared once per test session.

    Tests copy nothing out of it; runs they create use distinct names or seeds.
    """
    root = tmp_path_factory.mktemp("ws")
    prepare(Workspace(root), paths=[], meta=[], format_name=None, name="demo",
            settings=PrepareSettings(), min_rating_given=False, demo=DemoSpec())
    return root
