"""PolyCF-E: a **reconstruction** of PolyCF (Qin et al., "PolyCF: Towards the Optimal Spectral
Graph Filters for Collaborative Filtering", TOIS 2025) with learnable ID embeddings.

No official PolyCF code is public (docs/method.md §0, §2.3: searched, not found); only the abstract
was available. This module implements docs/method.md §2.3's "PolyCF-E" decision, an adaptation built
from the paper's description, and every number it produces must be flagged as such:

* representation ``X = Σ_{k=0}^{K} θ_k Â^k X⁰`` — a learnable polynomial graph filter over the
  ID embeddings ``X⁰`` with θ initialised to 1/(K+1), which makes the start equal to LightGCN's
  mean readout; K = 4 by default (even powers of ``Â`` restricted to items are powers of the
  item-item Gram matrix ``P̃ = R̃ᵀR̃``, the paper's "Gram filter");
* optional *generalized Gram* terms ``θ_{γ,k} Â_γ^k X⁰`` with ``Â_γ = D^-γ A D^(γ-1)`` for every
  γ in ``gammas`` other than ½ (k = 1..K; initialised to 0 so the start is unchanged);
* an ideal low-pass term ``β Û Ûᵀ X⁰`` with ``Û`` the top ``low_pass_rank`` eigenvectors of ``Â``
  (GF-CF's ideal low-pass filter, "low-pass enhancement"), β learnable, initialised to 0;
* loss BPR + ``reg · Σ‖W‖²`` over all parameters (RLMRec's regulariser).

The per-order terms are the ``layers`` handed to plugins (docs/method.md §1.4 / §2.3) and the readout is
their θ/β-weighted sum. No dropout or noise: ``propagate(training=True)`` equals eval.
"""

from __future__ import annotations

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
    xavier_table,
)
from lmmrec_cli.models.graph import Batch, Graph, low_pass_basis


@dataclass
class PolyCFConfig:
    dim: int = 32
    """Embedding dimension (LMMRec: 32)."""
    layers: int = 4
    """Polynomial order K (powers Â^0..Â^K)."""
    reg: float = tunable(1e-6, 1e-8, 1e-3, log=True)
    """Weight of ``Σ‖W‖²`` over all parameters."""
    gammas: tuple[float, ...] = (0.5,)
    """Generalized-Gram normalisations γ of ``D^-γ A D^(γ-1)``; ½ is ``Â``. E.g. 0,0.5,1."""
    low_pass_rank: int = 64
    """Rank of the ideal low-pass term ``β Û Ûᵀ X⁰``; 0 switches it off."""


class PolyCF(BaseModel):
    name: ClassVar[str] = "polycf"
    Config: ClassVar[type] = PolyCFConfig

    def __init__(self, n_users: int, n_items: int, graph: Graph, config: PolyCFConfig) -> None:
        super().__init__(n_users, n_items, graph, config)
        self.user_embedding = xavier_table(n_users, config.dim)
        self.item_embedding = xavier_table(n_items, config.dim)
        self.extra_gammas = [float(g) for g in config.gammas if float(g) != 0.5]
        order = config.layers
        self.theta = nn.Parameter(torch.full((order + 1,), 1.0 / (order + 1)))
        self.theta_gamma = nn.Parameter(torch.zeros(len(self.extra_gammas), order))
        rank = min(config.low_pass_rank, graph.n_nodes)
        self.beta = nn.Parameter(torch.zeros(1)) if rank > 0 else None
        self._rank = rank
        self._basis: Tensor | None = None  # Û, derived from the graph; not a parameter

    def _low_pass(self) -> Tensor:
        if self._basis is None or self._basis.device != self.user_embedding.device:
            self._basis = low_pass_basis(self.graph.adjacency, self._rank, self.graph.n_nodes)
            self._basis = self._basis.to(self.user_embedding.device)
        return self._basis

    def coefficients(self) -> Tensor:
        parts = [self.theta, self.theta_gamma.reshape(-1)]
        if self.beta is not None:
            parts.append(self.beta)
        return torch.cat(parts)

    def readout(self, layers: list[Tensor]) -> Tensor:
        coefficients = self.coefficients()
        out = coefficients[0] * layers[0]
        for weight, layer in zip(coefficients[1:], layers[1:], strict=True):
            out = out + weight * layer
        return out

    def propagate(self, *, training: bool, ego_offset: Tensor | None = None) -> Embeddings:
        ego = self.ego_table(ego_offset)
        layers = [ego]
        for _ in range(self.config.layers):
            layers.append(self.graph.adjacency @ layers[-1])
        for gamma in self.extra_gammas:
            operator = self.graph.operator(gamma)
            x = ego
            for _ in range(self.config.layers):
                x = operator @ x
                layers.append(x)
        if self.beta is not None:
            basis = self._low_pass()
            layers.append(basis @ (basis.T @ ego))
        users, items = self.split(self.readout(layers))
        return Embeddings(users, items, layers=layers, readout=self.readout, ego=ego)

    def loss(self, batch: Batch, emb: Embeddings) -> dict[str, Tensor]:
        return {
            "bpr": bpr_loss(*pick(emb, batch)),
            "reg": self.config.reg * squared_norm_of_parameters(self),
        }
