"""WeightedGCL (Chen et al., SIGIR 2025) following ``Jinfeng-Xu/WeightedGCL``
``recbole_gnn/model/general_recommender/weightedgcl.py`` (docs/method.md §2.2).

* Encoder: LightGCN propagation; readout = **mean of layers 1..K** (the ego layer is excluded:
  ``embeddings_list`` starts empty in the official ``forward``).
* Views: two forwards with ``e + sign(e) ⊙ normalize(U(0,1)) · eps`` added to the **last**
  layer only (``layer_idx >= n_layers - 1``).
* Squeeze-and-excitation: ``w = σ(L3(L2(L1(mean_d(e)))))`` with linears 1→d/16→d/4→d and no
  activations between them (the official ``excitation``), one module shared by both views and
  by users and items; each view's batch rows are multiplied by their own ``w``.
* Contrast: InfoNCE (cosine, τ) between the weighted views over ``unique(users)`` and
  ``unique(pos items)`` of the batch, each **summed** over rows, × λ.
* Base loss (RecBole-GNN LightGCN): BPR mean on the clean forward + ``reg · (‖x⁰_u‖ + ‖x⁰_i⁺‖ +
  ‖x⁰_i⁻‖) / B`` (RecBole ``EmbLoss`` with ``require_pow=False``: Frobenius norms, not squared).

Defaults: the official ``WeightedGCL.yaml`` (layers 2, reg 1e-4, λ 1e-3, eps 0.1, τ 0.2) except
``dim`` = 32 (LMMRec §III-A) instead of 64. Training defaults (:attr:`WeightedGCL.train_defaults`)
are the official ``overall.yaml`` + ``warm_up_step``: Adam lr 1e-4, batch 4096, up to 500 epochs,
validation NDCG@10 every epoch, stop after 10 validations without improvement but never before
epoch 30 (RecBole's ``stopping_step`` 10 stops after 11; its ``warm_up_step`` 30 allows a stop from
epoch 32; both differences are below one validation).

The loss starts on a plateau: the ego layer is not in the readout, so scores start near 0 and the
BPR gradient is small, while the summed InfoNCE is not. The reference code shows the same curve
(README, "Base models": side by side on one split, ours and ``Jinfeng-Xu/WeightedGCL``): on the
Magazine sample at lr 3e-3 / batch 512 BPR stays within 3% of ln 2 for ~60 epochs and falls below
0.3 only after ~150. With the paper's lr 1e-4 and batch 4096 a small data set has 1-2 steps an
epoch and never leaves the plateau in 500 epochs; the recipes train small data at LMMRec's lr /
batch with λ = 1e-4 (``recipes/Makefile``, ``MODEL_ARGS_weightedgcl``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lmmrec_cli.config import tunable
from lmmrec_cli.models.base import BaseModel, Embeddings, bpr_loss, perturb, pick, xavier_table
from lmmrec_cli.models.graph import Batch, Graph
from lmmrec_cli.models.lightgcn import mean_readout, propagate_layers


@dataclass
class WeightedGCLConfig:
    dim: int = 32
    """Embedding dimension (LMMRec: 32; the official default is 64). Must be ≥ 16."""
    layers: int = 2
    """Propagation layers K (official 2; searched 2-4)."""
    reg: float = tunable(1e-4, 1e-6, 1e-2, log=True)
    """Weight of RecBole's EmbLoss on the batch's ego rows."""
    cl_weight: float = tunable(1e-3, 1e-4, 1.0, log=True)
    """λ, weight of the summed InfoNCE terms."""
    temperature: float = tunable(0.2, 0.05, 1.0, log=True)
    """InfoNCE temperature τ."""
    eps: float = tunable(0.1, 0.01, 1.0)
    """Noise magnitude added to the last layer of each view."""


def weighted_gcl_infonce(view1: Tensor, view2: Tensor, temperature: float) -> Tensor:
    """Official ``calculate_cl_loss``: in-set InfoNCE with cosine similarity, summed."""
    a, b = F.normalize(view1, dim=-1), F.normalize(view2, dim=-1)
    positive = (a * b).sum(-1) / temperature
    return (torch.logsumexp(a @ b.T / temperature, dim=-1) - positive).sum()


class WeightedGCL(BaseModel):
    name: ClassVar[str] = "weightedgcl"
    Config: ClassVar[type] = WeightedGCLConfig
    train_defaults: ClassVar[dict[str, Any]] = {
        "lr": 1e-4, "batch_size": 4096, "epochs": 500, "eval_every": 1, "patience": 10,
        "min_epochs": 30, "select_metric": "ndcg@10",
    }

    def __init__(self, n_users: int, n_items: int, graph: Graph, config: WeightedGCLConfig) -> None:
        super().__init__(n_users, n_items, graph, config)
        if config.dim < 16:
            raise ValueError("WeightedGCL needs dim >= 16 (its excitation stack is 1→d/16→d/4→d)")
        self.user_embedding = xavier_table(n_users, config.dim)
        self.item_embedding = xavier_table(n_items, config.dim)
        d = config.dim
        self.excitation = nn.Sequential(
            nn.Linear(1, d // 16), nn.Linear(d // 16, d // 4), nn.Linear(d // 4, d), nn.Sigmoid()
        )

    def _forward(self, ego: Tensor, perturbed: bool) -> list[Tensor]:
        last = self.config.layers

        def noisy(k: int, x: Tensor) -> Tensor:
            return perturb(x, self.config.eps) if perturbed and k == last else x

        return propagate_layers(self.graph.adjacency, ego, self.config.layers, noisy)[1:]

    def propagate(self, *, training: bool, ego_offset: Tensor | None = None) -> Embeddings:
        ego = self.ego_table(ego_offset)
        layers = self._forward(ego, perturbed=False)
        users, items = self.split(mean_readout(layers))
        extras = {}
        if training:
            extras["views"] = [self.split(mean_readout(self._forward(ego, True))) for _ in range(2)]
        return Embeddings(users, items, layers=layers, readout=mean_readout, ego=ego, extras=extras)

    def _weighted(self, view1: Tensor, view2: Tensor) -> tuple[Tensor, Tensor]:
        w1 = self.excitation(view1.mean(dim=1, keepdim=True))
        w2 = self.excitation(view2.mean(dim=1, keepdim=True))
        return w1 * view1, w2 * view2

    def loss(self, batch: Batch, emb: Embeddings) -> dict[str, Tensor]:
        (users1, items1), (users2, items2) = emb.extras["views"]
        users = torch.unique(batch.users)
        items = torch.unique(batch.pos)
        tau = self.config.temperature
        contrast = (weighted_gcl_infonce(*self._weighted(users1[users], users2[users]), tau)
                    + weighted_gcl_infonce(*self._weighted(items1[items], items2[items]), tau))
        norms = (self.user_embedding[batch.users].norm() + self.item_embedding[batch.pos].norm()
                 + self.item_embedding[batch.neg].norm())
        return {
            "bpr": bpr_loss(*pick(emb, batch)),
            "ssl": self.config.cl_weight * contrast,
            "reg": self.config.reg * norms / len(batch),
        }
