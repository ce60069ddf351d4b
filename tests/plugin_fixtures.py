"""Tiny graphs, text vectors, base models and plugins shared by the plugin tests."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from lmmrec_cli import catalog
from lmmrec_cli.models.base import BaseModel, Plugin
from lmmrec_cli.models.graph import Batch, Graph, NegativeSampler, epoch_batches
from lmmrec_cli.models.registry import MODELS
from lmmrec_cli.plugins.registry import PLUGINS

N_USERS, N_ITEMS, DIM, TEXT_DIM = 12, 10, 16, 8

# Each rival's tiny settings come from its catalog row (e.g. small codebooks, so the tiny tables
# exercise every code path: several codes, several members).
TINY_CONFIGS: dict[str, Any] = {e.name: e.config_class()(**e.tiny) for e in catalog.PLUGINS if e.rival}


def tiny_graph(seed: int = 0) -> Graph:
    """Every user has 2-5 items; about 40 interactions."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    for user in range(N_USERS):
        chosen = rng.choice(N_ITEMS, rng.integers(2, 6), replace=False)
        users += [user] * len(chosen)
        items += list(chosen)
    return Graph(N_USERS, N_ITEMS, np.array(users), np.array(items))


def tiny_text(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(N_USERS, TEXT_DIM, generator=generator),
            torch.randn(N_ITEMS, TEXT_DIM, generator=generator))


def tiny_model(name: str, graph: Graph, seed: int = 0) -> BaseModel:
    torch.manual_seed(seed)
    cls = MODELS[name]
    config = cls.Config(dim=DIM, **catalog.model_entry(name).tiny)
    return cls(N_USERS, N_ITEMS, graph, config)


def tiny_plugin(name: str, model: BaseModel, seed: int = 0, **overrides: Any) -> Plugin:
    torch.manual_seed(seed + 1)
    config = dataclasses.replace(TINY_CONFIGS[name], **overrides)
    user_text, item_text = tiny_text()
    return PLUGINS[name](model, user_text, item_text, config)


def tiny_batches(graph: Graph, batch_size: int = 16, seed: int = 0) -> list[Batch]:
    generator = torch.Generator().manual_seed(seed)
    return epoch_batches(graph, NegativeSampler(graph), batch_size, generator, torch.device("cpu"))
