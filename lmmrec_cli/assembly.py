"""Names and settings → live objects: the device, the base model, the dataset's graph.

The trainer and :mod:`lmmrec_cli.runs` (rebuilding a finished run) build the same objects the
same way through these functions.
"""

from __future__ import annotations

from typing import Any

import torch

from lmmrec_cli.config import apply_overrides
from lmmrec_cli.data.dataset import PreparedDataset
from lmmrec_cli.errors import UsageError
from lmmrec_cli.models.base import BaseModel
from lmmrec_cli.models.graph import Graph
from lmmrec_cli.models.registry import MODELS


def resolve_device(text: str) -> torch.device:
    """``auto`` → the first CUDA device if one is usable, else the CPU; ``cpu``; ``cuda[:N]``."""
    text = (text or "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise UsageError(f"--device {text!r} is not a device", hint="use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {text}: CUDA is not available here", hint="use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"--device {text}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif device.type != "cpu":
        raise UsageError(f"--device {text!r} is not supported", hint="use auto, cpu, cuda or cuda:N")
    return device


def model_class(name: str) -> type[BaseModel]:
    try:
        return MODELS[name.lower()]
    except KeyError:
        raise UsageError(f"unknown model {name!r}", hint=f"models: {', '.join(MODELS)}") from None


def model_config(name: str, overrides: dict[str, str] | None = None) -> Any:
    """The model's Config with defaults, ``overrides`` (``key=value`` strings) applied."""
    cls = model_class(name)
    return apply_overrides(cls.Config(), overrides or {}, owner=f"model {cls.name}")


def build_model(name: str, config: Any, graph: Graph, seed: int) -> BaseModel:
    """Instantiate a model with its initial weights drawn from ``seed``."""
    torch.manual_seed(seed)
    try:
        return model_class(name)(graph.n_users, graph.n_items, graph, config)
    except ValueError as error:  # a model rejecting a combination of its settings
        raise UsageError(f"model {name}: {error}") from None


def dataset_graph(dataset: PreparedDataset) -> Graph:
    inter = dataset.interactions
    users, items = inter.pairs("train")
    if len(users) == 0:
        raise UsageError(f"{dataset.ref.label} has no training interactions")
    return Graph(dataset.n_users, dataset.n_items, users, items)
