"""ONCE (Liu et al., "ONCE: Boosting Content-based Recommendation with Both Open- and
Closed-source Large Language Models", WSDM 2024), DIRE-style, as a graph-CF plugin (docs/method.md §3.4).

Follows ``Jyonn/ONCE`` (readme; training in ``Jyonn/Legommenders``, not read): DIRE encodes item
content with an open LLM and feeds a projection of it to the recommender as the item
representation; GENRE's generated texts are the content. Graph-CF adaptation (docs/method.md §3.4):

* content vector ``c`` = the shared frozen text vectors (users: profile/motivation text,
  items: item text), the same vectors every LLM plugin reads;
* trainable 2-layer projection ``W: d_s → hidden → d`` (Linear, LeakyReLU, Linear; Xavier
  weights; ``hidden`` defaults to ``(d_s+d)//2`` like the text MLPs of RLMRec and LMMRec, so the
  plugins compare methods at equal text-side capacity), one projection shared by users and items;
* ``input_offset``: ``x⁰ += W c`` for every user and item, so content enters as an *input
  feature* and is trained end to end with the base loss (no alignment term).

Deviations and why:
* no LLM fine-tuning (DIRE tunes the top LLM layers with LoRA): the vectors are frozen API /
  embedding-model outputs, as for every plugin here; only ``W`` learns.
* cost: the offset covers all N nodes, so ``W c`` runs over the whole ``[N, d_s]`` table once
  per training step (and once per evaluation); it cannot be restricted to batch rows because
  propagation mixes every node's ego embedding. On the full 1536-d vectors
  (``benchmarks/bench_plugins.py``, Amazon-book shape, batch 512, 1 CPU thread) that was
  1.69 s/step = 53× LightGCN, all of it the two projection matmuls; so, like LMMRec and
  RLMRec-Con, ONCE reads the top-``text_dim`` (128) principal components of the vectors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from lmmrec_cli.config import tunable
from lmmrec_cli.models.base import BaseModel, Embeddings, Plugin, squared_norm_of_parameters
from lmmrec_cli.models.graph import Batch
from lmmrec_cli.plugins.alignment import TextEncoder
from lmmrec_cli.plugins.common import TEXT_DIM, embedding_dim, principal_projection, require_text


@dataclass
class ONCEConfig:
    hidden: int | None = None
    """Hidden width of the projection; None = ``(d_s + d) // 2``."""
    reg: float = tunable(1e-7, 1e-9, 1e-5, log=True)
    """Weight of ``Σ‖W‖²`` over the projection."""
    text_dim: int = TEXT_DIM
    """Project the content vectors onto their top principal axes first (0: the full vectors);
    the same input every text-MLP plugin reads (``plugins.common.TEXT_DIM``)."""


class ONCE(Plugin):
    """Frozen content vectors through a trainable projection, added to the ID embeddings.

    Args:
        model: the base model (read for sizes only; never stored).
        user_text, item_text: frozen content vectors ``[U, d_s]``, ``[I, d_s]``.
        config: :class:`ONCEConfig`.
    """

    name: ClassVar[str] = "once"
    Config: ClassVar[type] = ONCEConfig

    def __init__(self, model: BaseModel, user_text: Tensor | None, item_text: Tensor | None,
                 config: ONCEConfig | None = None) -> None:
        super().__init__()
        self.config = config or ONCEConfig()
        users, items = require_text(self.name, user_text, item_text, model)
        users, items = principal_projection(users, items, self.config.text_dim)
        # One [N, d_s] table (users first, like the ego table) so the projection is one matmul.
        self.register_buffer("content", torch.cat([users, items], dim=0), persistent=False)
        d, text_dim = embedding_dim(model), users.shape[1]
        hidden = self.config.hidden or (text_dim + d) // 2
        self.projection = TextEncoder(text_dim, d, hidden)

    def input_offset(self) -> Tensor:
        return self.projection(self.content)

    def loss(self, batch: Batch, emb: Embeddings, model: BaseModel) -> dict[str, Tensor]:
        return {"once_reg": self.config.reg * squared_norm_of_parameters(self)}
