"""UIST (Liu et al., "Semantic Tokenization for Deep CTR Prediction" / user-item semantic
tokens, WWW 2024 companion) as a graph-CF plugin (docs/method.md §3.3).

Follows ``Jyonn/SemanticTokenizer`` (incomplete repo): ``model/quantization/residual.py`` for the
residual tokenizer (per level nearest code by L2, next level on the residual) and the README's
"hierarchical mixture inference" over user-item token pairs. Graph-CF adaptation (docs/method.md §3.3):

* offline: the shared text vectors of users and items are residual-quantised separately
  (:mod:`lmmrec_cli.plugins.quantize`) into L codes each (default 3 levels × 256 codes);
* learnable code tables ``E^U_l, E^I_l ∈ R^{K×d}`` per level;
* ``input_offset``: ``x⁰_v += Σ_l E_l[c_{v,l}]`` for users and items (tokens as input features);
* ``fuse_scores``: ``s = s_base + Σ_l softmax(w)_l ⟨P^U_l(u), P^I_l(i)⟩`` with prefix embeddings
  ``P_l = Σ_{j≤l} E_j[c_j]`` and learnable level weights ``w`` (the prefix-level mixture).

Deviations and why:
* Tokenizer: k-means residual codes instead of a trained RQ-VAE (see ``quantize.py``), and the
  user side quantises the user text vectors directly (UIST tokenises encoded behaviour sequences;
  every LLM plugin here reads the same vectors).
* Training of the mixture: ``fuse_scores`` changes only the scores, while the base model trains
  BPR on its own ``s_base``, so the level weights and the mixture would get no gradient. The
  plugin therefore adds ``uist_mix = mixture_weight · BPR`` over the batch triples on the **fused**
  score ``s_base + mixture`` (``mixture_objective="fused"``, default: the training objective sees
  the score used at evaluation, as UIST's single CTR loss does) or on the mixture alone
  (``"tokens"``: the token model is trained as its own ranker, the base gradient is unchanged).
  ``s_base`` here is ``⟨e_u, e_i⟩`` of the training forward, the score of every base model.
* Code tables start at N(0, ``init_std``²) (the scale of the ID tables) rather than N(0, 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lmmrec_cli.config import tunable
from lmmrec_cli.models.base import BaseModel, Embeddings, Plugin, squared_norm_of_parameters
from lmmrec_cli.models.graph import Batch
from lmmrec_cli.plugins.common import embedding_dim, require_text
from lmmrec_cli.plugins.quantize import residual_quantize

MIXTURE_OBJECTIVES = ("fused", "tokens")


@dataclass
class UISTConfig:
    levels: int = 3
    """Residual levels L (docs/method.md §3.3: 3-4)."""
    codes: int = 256
    """Codes per level K (docs/method.md §3.3: 256)."""
    mixture_weight: float = tunable(1.0, 0.1, 10.0, log=True)
    """Weight of the BPR term that trains the token mixture."""
    mixture_objective: str = "fused"
    """BPR on the "fused" score (base + mixture) or on the mixture alone ("tokens")."""
    init_std: float = 0.01
    """Std of the normal init of the code tables (ID-table scale)."""
    reg: float = tunable(1e-7, 1e-9, 1e-5, log=True)
    """Weight of ``Σ‖W‖²`` over the plugin's parameters."""
    seed: int = 0
    """Seed of the offline quantisation."""
    max_fit_rows: int = 16384
    """Rows used to fit each k-means level (all rows are then assigned)."""


class UIST(Plugin):
    """Semantic-token offsets and a prefix-level token mixture score on any base model.

    Args:
        model: the base model (read for sizes only; never stored).
        user_text, item_text: frozen text vectors ``[U, d_s]``, ``[I, d_s]``; quantised once here.
        config: :class:`UISTConfig`.
    """

    name: ClassVar[str] = "uist"
    Config: ClassVar[type] = UISTConfig

    def __init__(self, model: BaseModel, user_text: Tensor | None, item_text: Tensor | None,
                 config: UISTConfig | None = None) -> None:
        super().__init__()
        self.config = config or UISTConfig()
        if self.config.mixture_objective not in MIXTURE_OBJECTIVES:
            raise ValueError(f"mixture_objective must be one of {MIXTURE_OBJECTIVES}, "
                             f"not {self.config.mixture_objective!r}")
        users, items = require_text(self.name, user_text, item_text, model)
        c = self.config
        # Codes are learned state of the plugin (the code tables mean nothing without them), so
        # they are persistent buffers and a checkpoint restores them exactly.
        self.register_buffer("user_codes", residual_quantize(
            users, levels=c.levels, codes=c.codes, seed=c.seed, max_fit_rows=c.max_fit_rows).codes)
        self.register_buffer("item_codes", residual_quantize(
            items, levels=c.levels, codes=c.codes, seed=c.seed, max_fit_rows=c.max_fit_rows).codes)
        d = embedding_dim(model)
        self.user_tables = nn.Parameter(torch.randn(c.levels, c.codes, d) * c.init_std)
        self.item_tables = nn.Parameter(torch.randn(c.levels, c.codes, d) * c.init_std)
        self.level_logits = nn.Parameter(torch.zeros(c.levels))

    @staticmethod
    def tokens(tables: Tensor, codes: Tensor) -> Tensor:
        """``[n, L, d]``: row v, level l holds ``E_l[c_{v,l}]``."""
        levels = torch.arange(tables.shape[0], device=codes.device)
        return tables[levels, codes]

    def user_tokens(self, users: Tensor | None = None) -> Tensor:
        codes = self.user_codes if users is None else self.user_codes[users]
        return self.tokens(self.user_tables, codes)

    def item_tokens(self, items: Tensor | None = None) -> Tensor:
        codes = self.item_codes if items is None else self.item_codes[items]
        return self.tokens(self.item_tables, codes)

    def input_offset(self) -> Tensor:
        return torch.cat([self.user_tokens().sum(1), self.item_tokens().sum(1)], dim=0)

    def level_weights(self) -> Tensor:
        return torch.softmax(self.level_logits, dim=0)

    def mixture_pairs(self, users: Tensor, items: Tensor) -> Tensor:
        """Mixture score ``[B]`` of aligned pairs ``(users[j], items[j])``."""
        user_prefix = self.user_tokens(users).cumsum(1)
        item_prefix = self.item_tokens(items).cumsum(1)
        return ((user_prefix * item_prefix).sum(-1) * self.level_weights()).sum(-1)

    def mixture_all(self, users: Tensor) -> Tensor:
        """Mixture score ``[b, I]`` of ``users`` against every item."""
        user_prefix = self.user_tokens(users).cumsum(1) * self.level_weights()[:, None]
        item_prefix = self.item_tokens().cumsum(1)
        # Σ_l w_l ⟨P^U_l, P^I_l⟩ = ⟨concat_l w_l P^U_l, concat_l P^I_l⟩: one matmul.
        return user_prefix.flatten(1) @ item_prefix.flatten(1).T

    def fuse_scores(self, users: Tensor, scores: Tensor, emb: Embeddings) -> Tensor:
        return scores + self.mixture_all(users)

    def loss(self, batch: Batch, emb: Embeddings, model: BaseModel) -> dict[str, Tensor]:
        pos = self.mixture_pairs(batch.users, batch.pos)
        neg = self.mixture_pairs(batch.users, batch.neg)
        if self.config.mixture_objective == "fused":
            user = emb.users[batch.users]
            pos = pos + (user * emb.items[batch.pos]).sum(-1)
            neg = neg + (user * emb.items[batch.neg]).sum(-1)
        return {
            "uist_mix": self.config.mixture_weight * F.softplus(neg - pos).mean(),
            "uist_reg": self.config.reg * squared_norm_of_parameters(self),
        }
