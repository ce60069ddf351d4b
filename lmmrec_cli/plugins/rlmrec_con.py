"""RLMRec-Con (Ren et al., "Representation Learning with Large Language Models for
Recommendation", WWW 2024): contrastive alignment of the base model's final embeddings with an
MLP of the frozen LLM profile vectors (docs/method.md §3.1).

Follows ``HKUDS/RLMRec`` ``encoder/models/general_cf/lightgcn_plus.py`` (``cal_loss``) and
``encoder/models/loss_utils.py`` (``cal_infonce_loss``, ``reg_params``):

* ``h = MLP(s)``: ``Linear(d_s, (d_s+d)//2) → LeakyReLU(0.01) → Linear(·, d)``, Xavier-uniform
  weights, default biases; one MLP shared by users and items;
* ``kd = infonce_all(e_u, h_u, H_users) + infonce_all(e_i⁺, h_i⁺, H_pos) + infonce_all(e_i⁻, h_i⁻, H_neg)``
  with cosine similarity / τ, the CF embedding as anchor and text as candidates; the user
  denominator runs over **all** users' ``h`` (RLMRec; ``user_negatives="batch"`` uses the batch's
  users instead, LMMRec Eq. 7's choice), the item denominators over the batch's pos / neg rows;
  summed over rows, ``/ B``, × ``kd_weight``;
* ``reg · Σ‖W‖²`` over the plugin's parameters (RLMRec regularises all parameters with one
  weight; the base model keeps its own regulariser here).

Defaults: ``lightgcn_plus.yml`` Amazon-book / Yelp (kd_weight 1e-2, τ 0.2, reg 1e-7).

Where it deviates (cost, not maths):
* RLMRec runs the MLP over **all** users' and all items' vectors every step. Here the item side
  runs only on the batch's distinct pos/neg items, and the user side on the batch's distinct
  users when ``user_negatives="batch"``; with the default ``"all"`` the all-user ``h`` is needed
  for the denominator, so it is computed once per step (and the batch rows are read from it).
  The loss value and its gradients are identical to RLMRec's. Measured
  (``benchmarks/bench_plugins.py``, Amazon-book shape, batch 4096, 1 CPU thread): a 4096 batch
  already holds ~3.4k distinct users and ~4.7k distinct items, so the text MLP
  (1536 → 784 → 32) still dominates: "all" 2.83 s/step = 62× LightGCN's 0.043 s, "batch"
  1.72 s/step = 41×. On a GPU these matmuls take milliseconds. Hence the second deviation:
* the MLP reads the top-``text_dim`` (128) principal components of the vectors, the input
  every text-MLP plugin here reads (``plugins.common.TEXT_DIM``); ``text_dim=0`` reads the
  full vectors, as RLMRec.
* The InfoNCE is ``models.base.infonce_all``: a max-shifted log-sum-exp replaces
  ``log(sum(exp))`` (same value, no overflow), and the ``[B, C]`` logits are never stored.
* The anchor ``e`` is whatever the base model hands over as final embeddings of the training
  forward (edge-dropped for RLMRec-variant LightGCN, as in ``lightgcn_plus.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from lmmrec_cli.config import tunable
from lmmrec_cli.models.base import (
    BaseModel,
    Embeddings,
    Plugin,
    infonce_all,
    pick,
    squared_norm_of_parameters,
)
from lmmrec_cli.models.graph import Batch
from lmmrec_cli.plugins.alignment import TextEncoder
from lmmrec_cli.plugins.common import TEXT_DIM, embedding_dim, principal_projection, require_text

USER_NEGATIVES = ("all", "batch")


@dataclass
class RLMRecConConfig:
    kd_weight: float = tunable(1e-2, 1e-3, 1.0, log=True)
    """Weight of the summed InfoNCE terms (RLMRec amazon/yelp 1e-2; steam 1e-3)."""
    temperature: float = tunable(0.2, 0.05, 1.0, log=True)
    """InfoNCE temperature τ (RLMRec amazon/yelp 0.2; steam 0.1)."""
    reg: float = 1e-7
    """Weight of ``Σ‖W‖²`` over the plugin's MLP (RLMRec ``reg_weight`` 1e-7)."""
    user_negatives: str = "all"
    """Denominator of the user term: "all" users' text (RLMRec) or the "batch" users (Eq. 7)."""
    text_dim: int = TEXT_DIM
    """Project the text vectors onto their top principal axes first (0: the full vectors, as
    RLMRec); the same input every text-MLP plugin reads (``plugins.common.TEXT_DIM``)."""


class RLMRecCon(Plugin):
    """RLMRec-Con on any base model.

    Args:
        model: the base model (read for sizes only; never stored).
        user_text, item_text: frozen profile vectors ``[U, d_s]``, ``[I, d_s]``.
        config: :class:`RLMRecConConfig`.

    Example::

        plugin = RLMRecCon(model, user_text, item_text)
        terms = model.loss(batch, emb) | plugin.loss(batch, emb, model)
    """

    name: ClassVar[str] = "rlmrec-con"
    Config: ClassVar[type] = RLMRecConConfig

    def __init__(self, model: BaseModel, user_text: Tensor | None, item_text: Tensor | None,
                 config: RLMRecConConfig | None = None) -> None:
        super().__init__()
        self.config = config or RLMRecConConfig()
        if self.config.user_negatives not in USER_NEGATIVES:
            raise ValueError(f"user_negatives must be one of {USER_NEGATIVES}, "
                             f"not {self.config.user_negatives!r}")
        users, items = require_text(self.name, user_text, item_text, model)
        users, items = principal_projection(users, items, self.config.text_dim)
        self.register_buffer("user_text", users, persistent=False)
        self.register_buffer("item_text", items, persistent=False)
        self.mlp = TextEncoder(users.shape[1], embedding_dim(model))

    def _text_rows(self, table: Tensor, rows: Tensor) -> Tensor:
        """``MLP(table[rows])`` computed once per distinct row (duplicates are gathered)."""
        distinct, inverse = torch.unique(rows, return_inverse=True)
        return self.mlp(table[distinct])[inverse]

    def _item_text(self, batch: Batch) -> tuple[Tensor, Tensor]:
        rows = torch.cat([batch.pos, batch.neg])
        mapped = self._text_rows(self.item_text, rows)
        return mapped[: len(batch)], mapped[len(batch):]

    def _user_text(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """The batch users' ``h`` and the candidates of the user denominator."""
        if self.config.user_negatives == "all":
            all_users = self.mlp(self.user_text)  # needed whole by the denominator
            return all_users[batch.users], all_users
        anchors = self._text_rows(self.user_text, batch.users)
        return anchors, anchors

    def contrast(self, batch: Batch, emb: Embeddings) -> Tensor:
        """The un-weighted ``kd`` sum (RLMRec ``kd_loss`` before ``/B`` and ``× kd_weight``)."""
        anchor, pos, neg = pick(emb, batch)
        anchor_h, user_candidates = self._user_text(batch)
        pos_h, neg_h = self._item_text(batch)
        tau = self.config.temperature
        return (infonce_all(anchor, anchor_h, user_candidates, tau)
                + infonce_all(pos, pos_h, pos_h, tau)
                + infonce_all(neg, neg_h, neg_h, tau))

    def loss(self, batch: Batch, emb: Embeddings, model: BaseModel) -> dict[str, Tensor]:
        return {
            "rlmrec_kd": self.config.kd_weight * self.contrast(batch, emb) / len(batch),
            "rlmrec_reg": self.config.reg * squared_norm_of_parameters(self),
        }
