"""SGL-ED (Wu et al., "Self-supervised Graph Learning for Recommendation", SIGIR 2021) as in
RLMRec ``encoder/models/general_cf/sgl.py`` / ``sgl.yml`` (docs/method.md §2.4).

Training forward: the clean LightGCN propagation (sum of layers 0..K, no dropout) carries
BPR; two further propagations over independently edge-dropped ``Â`` (keep-rate 0.8) are the
views. InfoNCE between the views for the batch's users (denominator: all users of view 2), its
positive and its negative items (denominator: all items), summed, ``/ B``, × ``cl_weight``.
Regulariser ``reg · Σ‖W‖²`` over all parameters. Defaults: RLMRec's Amazon-book values
(layers 3, reg 1e-5, cl 0.1, τ 0.2, keep 0.8).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from lmmrec_cli.config import tunable
from lmmrec_cli.models.base import BaseModel, Embeddings, two_view_objective, xavier_table
from lmmrec_cli.models.graph import Batch, Graph
from lmmrec_cli.models.lightgcn import propagate_layers, sum_readout


@dataclass
class SGLConfig:
    dim: int = 32
    """Embedding dimension (LMMRec / RLMRec: 32)."""
    layers: int = 3
    """Propagation layers (RLMRec amazon/yelp 3, steam 2)."""
    reg: float = tunable(1e-5, 1e-7, 1e-3, log=True)
    """Weight of ``Σ‖W‖²`` over all parameters (RLMRec amazon; yelp 1e-6)."""
    cl_weight: float = tunable(0.1, 1e-3, 1.0, log=True)
    """Weight of the contrastive term (RLMRec amazon; yelp 1e-3)."""
    temperature: float = tunable(0.2, 0.05, 1.0, log=True)
    """InfoNCE temperature τ (RLMRec amazon; yelp 0.1, steam 0.5)."""
    keep_rate: float = tunable(0.8, 0.5, 0.95)
    """Edge keep-rate of each view's dropped graph."""


class SGL(BaseModel):
    name: ClassVar[str] = "sgl"
    Config: ClassVar[type] = SGLConfig

    def __init__(self, n_users: int, n_items: int, graph: Graph, config: SGLConfig) -> None:
        super().__init__(n_users, n_items, graph, config)
        self.user_embedding = xavier_table(n_users, config.dim)
        self.item_embedding = xavier_table(n_items, config.dim)

    def propagate(self, *, training: bool, ego_offset: Tensor | None = None) -> Embeddings:
        ego = self.ego_table(ego_offset)
        layers = propagate_layers(self.graph.adjacency, ego, self.config.layers)
        users, items = self.split(sum_readout(layers))
        extras = {}
        if training:
            views = []
            for _ in range(2):  # each view draws its own dropped graph
                dropped = self.graph.edge_dropped(self.config.keep_rate)
                views.append(self.split(sum_readout(propagate_layers(dropped, ego, self.config.layers))))
            extras["views"] = views
        return Embeddings(users, items, layers=layers, readout=sum_readout, ego=ego, extras=extras)

    def loss(self, batch: Batch, emb: Embeddings) -> dict[str, Tensor]:
        return two_view_objective(self, batch, emb, negatives=True)
