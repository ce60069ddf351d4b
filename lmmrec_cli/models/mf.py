"""MF-BPR: matrix factorisation trained with BPR, the sanity floor.

Rendle et al., "BPR: Bayesian Personalized Ranking from Implicit Feedback" (UAI 2009). Scores
are ``x_u · x_i`` of the ID tables, no propagation. The loss follows the RLMRec family used for
LightGCN here (``bpr`` = mean softplus, ``reg`` = ``reg · Σ‖W‖²`` over all parameters,
RLMRec ``loss_utils.py``) so that MF and LightGCN differ only in propagation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from lmmrec_cli.config import tunable
from lmmrec_cli.models.base import (
    BaseModel,
    Embeddings,
    bpr_loss,
    pick,
    squared_norm_of_parameters,
    xavier_table,
)
from lmmrec_cli.models.graph import Batch, Graph


@dataclass
class MFConfig:
    dim: int = 32
    """Embedding dimension (LMMRec §III-A: 32)."""
    reg: float = tunable(1e-6, 1e-8, 1e-3, log=True)
    """Weight of ``Σ‖W‖²`` over all parameters (RLMRec ``lightgcn.yml`` value)."""


class MF(BaseModel):
    name: ClassVar[str] = "mf"
    Config: ClassVar[type] = MFConfig

    def __init__(self, n_users: int, n_items: int, graph: Graph, config: MFConfig) -> None:
        super().__init__(n_users, n_items, graph, config)
        self.user_embedding = xavier_table(n_users, config.dim)
        self.item_embedding = xavier_table(n_items, config.dim)

    def propagate(self, *, training: bool, ego_offset: Tensor | None = None) -> Embeddings:
        ego = self.ego_table(ego_offset)
        users, items = self.split(ego)
        return Embeddings(users, items, layers=[ego], readout=lambda layers: layers[0], ego=ego)

    def loss(self, batch: Batch, emb: Embeddings) -> dict[str, Tensor]:
        return {
            "bpr": bpr_loss(*pick(emb, batch)),
            "reg": self.config.reg * squared_norm_of_parameters(self),
        }
