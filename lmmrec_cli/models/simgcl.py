"""SimGCL (Yu et al., "Are Graph Augmentations Necessary? Simple Graph Contrastive Learning for
Recommendation", SIGIR 2022) as in RLMRec ``encoder/models/general_cf/simgcl.py`` /
``simgcl.yml`` (docs/method.md §2.5).

Training forward: the clean LightGCN propagation (sum of layers 0..K) carries BPR; two views
add ``sign(e) ⊙ normalize(U(0,1)) · eps`` after **every** layer (the ego layer is unperturbed).
InfoNCE between the views for the batch's users (denominator all users) and positive items
(denominator all items), summed, ``/ B``, × ``cl_weight``; ``reg · Σ‖W‖²`` over all
parameters. Defaults: RLMRec's Amazon-book values (layers 3, reg 1e-5, cl 0.1, τ 0.2, eps 0.9).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from lmmrec_cli.config import tunable
from lmmrec_cli.models.base import BaseModel, Embeddings, perturb, two_view_objective, xavier_table
from lmmrec_cli.models.graph import Batch, Graph
from lmmrec_cli.models.lightgcn import propagate_layers, sum_readout


@dataclass
class SimGCLConfig:
    dim: int = 32
    """Embedding dimension (LMMRec / RLMRec: 32)."""
    layers: int = 3
    """Propagation layers."""
    reg: float = tunable(1e-5, 1e-7, 1e-3, log=True)
    """Weight of ``Σ‖W‖²`` over all parameters."""
    cl_weight: float = tunable(0.1, 1e-3, 1.0, log=True)
    """Weight of the contrastive term."""
    temperature: float = tunable(0.2, 0.05, 1.0, log=True)
    """InfoNCE temperature τ (RLMRec amazon/yelp 0.2, steam 0.5)."""
    eps: float = tunable(0.9, 0.01, 1.0)
    """Noise magnitude (RLMRec amazon/yelp 0.9, steam 0.2)."""


class SimGCL(BaseModel):
    name: ClassVar[str] = "simgcl"
    Config: ClassVar[type] = SimGCLConfig

    def __init__(self, n_users: int, n_items: int, graph: Graph, config: SimGCLConfig) -> None:
        super().__init__(n_users, n_items, graph, config)
        self.user_embedding = xavier_table(n_users, config.dim)
        self.item_embedding = xavier_table(n_items, config.dim)

    def propagate(self, *, training: bool, ego_offset: Tensor | None = None) -> Embeddings:
        ego = self.ego_table(ego_offset)
        adjacency = self.graph.adjacency
        layers = propagate_layers(adjacency, ego, self.config.layers)
        users, items = self.split(sum_readout(layers))
        extras = {}
        if training:
            def noisy(_k: int, x: Tensor) -> Tensor:
                return perturb(x, self.config.eps)

            extras["views"] = [
                self.split(sum_readout(propagate_layers(adjacency, ego, self.config.layers, noisy)))
                for _ in range(2)
            ]
        return Embeddings(users, items, layers=layers, readout=sum_readout, ego=ego, extras=extras)

    def loss(self, batch: Batch, emb: Embeddings) -> dict[str, Tensor]:
        return two_view_objective(self, batch, emb, negatives=False)
