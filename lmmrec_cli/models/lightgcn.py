"""LightGCN (He et al., "LightGCN: Simplifying and Powering Graph Convolution Network for
Recommendation", SIGIR 2020), in two variants (docs/method.md §2.1).

``variant="rlmrec"`` (default; RLMRec/SSLRec ``encoder/models/general_cf/lightgcn.py``,
``lightgcn.yml``, the variant behind the published Amazon-book / Yelp / Steam numbers):
Xavier-uniform init, ``x^(k) = Â x^(k-1)`` for k = 1..K, readout = **sum** of layers 0..K,
training edge dropout keep-rate 0.8 without rescaling (``SpAdjEdgeDrop``), BPR
``Σ softplus / B``, ``reg · Σ‖W‖²`` over all parameters (reg 1e-6).

``variant="original"`` (``gusye1234/LightGCN-PyTorch code/model.py``): N(0, 0.1) init, readout =
**mean** of layers 0..K, no dropout, ``reg · ½(‖x⁰_u‖² + ‖x⁰_i⁺‖² + ‖x⁰_i⁻‖²) / B`` on the
batch's ego rows (reg 1e-4, the official ``decay``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from lmmrec_cli.config import tunable
from lmmrec_cli.models.base import (
    BaseModel,
    Embeddings,
    bpr_loss,
    pick,
    squared_norm_of_parameters,
)
from lmmrec_cli.models.graph import Batch, Graph, SparseOperator

VARIANTS = ("rlmrec", "original")


def sum_readout(layers: list[Tensor]) -> Tensor:
    """RLMRec ``sum(embeds_list)``."""
    out = layers[0]
    for layer in layers[1:]:
        out = out + layer
    return out


def mean_readout(layers: list[Tensor]) -> Tensor:
    """LightGCN paper / RecBole ``torch.mean(torch.stack(...), dim=1)``."""
    return sum_readout(layers) / len(layers)


def propagate_layers(adjacency: SparseOperator, ego: Tensor, n_layers: int,
                     after_layer: Callable[[int, Tensor], Tensor] | None = None) -> list[Tensor]:
    """``[x^(0), ..., x^(K)]`` with ``x^(k) = Â x^(k-1)`` (LMMRec Eq. 4, LightGCN Eq. 3).

    ``after_layer(k, x)`` (k = 1..K) may perturb a layer's output before the next step takes
    it as input (SimGCL, WeightedGCL).
    """
    layers = [ego]
    for k in range(1, n_layers + 1):
        x = adjacency @ layers[-1]
        if after_layer is not None:
            x = after_layer(k, x)
        layers.append(x)
    return layers


@dataclass
class LightGCNConfig:
    dim: int = 32
    """Embedding dimension (LMMRec §III-A and RLMRec: 32)."""
    layers: int = tunable(3, 1, 4)
    """Propagation layers K (RLMRec amazon/yelp: 3; steam: 2)."""
    reg: float | None = tunable(None, 1e-8, 1e-3, log=True)
    """L2 weight; default by variant: 1e-6 over all parameters (rlmrec), 1e-4 batch ego (original)."""
    keep_rate: float | None = None
    """Training edge keep-rate; default by variant: 0.8 (rlmrec), 1.0 = no dropout (original)."""
    variant: str = "rlmrec"
    """rlmrec: sum readout, Xavier, edge dropout; original: mean readout, N(0,0.1), no dropout."""


class LightGCN(BaseModel):
    name: ClassVar[str] = "lightgcn"
    Config: ClassVar[type] = LightGCNConfig

    def __init__(self, n_users: int, n_items: int, graph: Graph, config: LightGCNConfig) -> None:
        super().__init__(n_users, n_items, graph, config)
        if config.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, not {config.variant!r}")
        original = config.variant == "original"
        self.reg = config.reg if config.reg is not None else (1e-4 if original else 1e-6)
        self.keep_rate = config.keep_rate if config.keep_rate is not None else (1.0 if original else 0.8)
        self.readout: Callable[[list[Tensor]], Tensor] = mean_readout if original else sum_readout
        self.user_embedding = nn.Parameter(torch.empty(n_users, config.dim))
        self.item_embedding = nn.Parameter(torch.empty(n_items, config.dim))
        for table in (self.user_embedding, self.item_embedding):
            if original:
                nn.init.normal_(table, std=0.1)
            else:
                nn.init.xavier_uniform_(table)

    def propagate(self, *, training: bool, ego_offset: Tensor | None = None) -> Embeddings:
        ego = self.ego_table(ego_offset)
        adjacency = self.graph.edge_dropped(self.keep_rate) if training else self.graph.adjacency
        layers = propagate_layers(adjacency, ego, self.config.layers)
        users, items = self.split(self.readout(layers))
        return Embeddings(users, items, layers=layers, readout=self.readout, ego=ego)

    def loss(self, batch: Batch, emb: Embeddings) -> dict[str, Tensor]:
        terms = {"bpr": bpr_loss(*pick(emb, batch))}
        if self.config.variant == "original":
            ego_users, ego_items = self.user_embedding, self.item_embedding
            squares = (ego_users[batch.users].square().sum() + ego_items[batch.pos].square().sum()
                       + ego_items[batch.neg].square().sum())
            terms["reg"] = self.reg * 0.5 * squares / len(batch)
        else:
            terms["reg"] = self.reg * squared_norm_of_parameters(self)
        return terms
