"""AutoGraph (Shan et al., "An Automatic Graph Construction Framework based on Large Language
Models for Recommendation", KDD 2025) as a graph-CF plugin (docs/method.md §3.5).

Follows ``LaVieEnRose365/AutoGraph``: ``quantization.py`` (residual codes of the LLM vectors,
3 levels, codebooks 300 users / 256 items as ``main.py`` / ``utils.py``), ``dataset.py``
(semantic code nodes per level, each linked to at most ``degree = 15`` of its members, sampled
once with a fixed seed: ``prepare_i_graphs``), ``models.py`` (member→code and code→entity
aggregation, a mapping MLP with ReLU producing an extra embedding of each user / item).

Here, per entity ``v`` with codes ``c_{v,1..L}``:

* code part ``a_v = mean_l C_l[c_{v,l}]`` — learnable code-node embeddings ``C_l ∈ R^{K×d}``;
* member part ``b_v = mean_l mean_{m ∈ S(l, c_{v,l})} x_m`` — ``S`` the ≤15 sampled members of the
  code node, ``x`` the base model's ID (ego) embeddings, so co-members' IDs reach ``v``;
* ``g_v = MLP([a_v ; b_v])`` (``2d → d → d``, ReLU; users and items have their own MLP and code
  tables), and ``input_offset`` adds ``g`` to the ego embeddings of all users and items.

Deviations and why:
* **Where g enters.** AutoGraph concatenates ``g`` as an extra field of its matching tower, i.e.
  after the encoder, before scoring. The base models here compute BPR on their own final
  embeddings, so an addition inside ``fuse_scores`` would never be trained. ``g`` is added to the
  ego embeddings instead (``input_offset``): it is propagated by the base encoder, trained end to
  end by the base loss, and scoring is the base's own (no ``fuse_scores`` override).
* **Aggregator.** Mean pooling replaces the metapath ``dgl.GATConv`` (2 heads, hidden 32) and the
  item→user metapath is dropped: the base encoder already propagates over the user-item graph,
  and torch alone keeps the plugin dependency-free; the MLP has no dropout (AutoGraph 0.1).
* **Codes.** k-means residual codes instead of a trained RQ-VAE (``quantize.py``), from the
  shared text vectors instead of vicuna-7b hidden states (every LLM plugin reads the same text).
* Members are sampled once at construction (as AutoGraph does), an entity may be among its own
  code's sampled members, and empty (unused) codes contribute a zero member mean.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from lmmrec_cli.config import tunable
from lmmrec_cli.models.base import BaseModel, Embeddings, Plugin, squared_norm_of_parameters
from lmmrec_cli.models.graph import Batch
from lmmrec_cli.plugins.common import embedding_dim, require_text
from lmmrec_cli.plugins.quantize import residual_quantize


@dataclass
class AutoGraphConfig:
    levels: int = 3
    """Residual levels per side (AutoGraph ``num_quantizers`` 3|3)."""
    user_codes: int = 300
    """Codebook size of the user side (AutoGraph ``codebook_size`` 300|256)."""
    item_codes: int = 256
    """Codebook size of the item side."""
    degree: int = tunable(15, 5, 30)
    """Members sampled per code node (AutoGraph ``degree``)."""
    init_std: float = 0.01
    """Std of the normal init of the code-node embeddings (ID-table scale)."""
    reg: float = tunable(1e-7, 1e-9, 1e-5, log=True)
    """Weight of ``Σ‖W‖²`` over the plugin's parameters."""
    seed: int = 0
    """Seed of the quantisation and of the member sampling."""
    max_fit_rows: int = 16384
    """Rows used to fit each k-means level."""


def sample_members(codes: Tensor, codebook: int, degree: int,
                   rng: np.random.Generator) -> tuple[Tensor, Tensor]:
    """Per code node ``(l, k)`` (flat index ``l·K + k``), ≤ ``degree`` sampled member rows.

    Returns ``members [L·K, degree]`` (long, padded with 0) and ``weights [L·K, degree]``
    (``1/count`` for real members, 0 for padding), so ``Σ_j weights·x[members]`` is the mean.
    """
    levels = codes.shape[1]
    flat = (codes.numpy() + np.arange(levels) * codebook).T.reshape(-1)  # level-major
    rows = np.tile(np.arange(codes.shape[0]), levels)
    order = np.argsort(flat, kind="stable")
    flat, rows = flat[order], rows[order]
    starts = np.searchsorted(flat, np.arange(levels * codebook + 1))
    members = np.zeros((levels * codebook, degree), dtype=np.int64)
    weights = np.zeros((levels * codebook, degree), dtype=np.float32)
    for node in range(levels * codebook):
        group = rows[starts[node]:starts[node + 1]]
        if group.size == 0:
            continue
        chosen = rng.choice(group, min(degree, group.size), replace=False)
        members[node, :chosen.size] = chosen
        weights[node, :chosen.size] = 1.0 / chosen.size
    return torch.from_numpy(members), torch.from_numpy(weights)


def mapping_mlp(dim: int) -> nn.Sequential:
    """AutoGraph's mapping MLP (ReLU) from ``[code part ; member part]`` to the extra embedding."""
    return nn.Sequential(nn.Linear(2 * dim, dim), nn.ReLU(), nn.Linear(dim, dim))


class AutoGraph(Plugin):
    """Semantic code nodes and code co-members as an extra embedding added to the ego table.

    Args:
        model: the base model; its ID tables are read every step through ``ego_table`` (held in
            a plain list, so its parameters are never registered twice).
        user_text, item_text: frozen text vectors ``[U, d_s]``, ``[I, d_s]``; quantised once here.
        config: :class:`AutoGraphConfig`.
    """

    name: ClassVar[str] = "autograph"
    Config: ClassVar[type] = AutoGraphConfig

    def __init__(self, model: BaseModel, user_text: Tensor | None, item_text: Tensor | None,
                 config: AutoGraphConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or AutoGraphConfig()
        users, items = require_text(self.name, user_text, item_text, model)
        self._model = [model]  # plain list: not a submodule, so no duplicate parameters
        rng = np.random.default_rng(c.seed)
        d = embedding_dim(model)
        for side, text, size in (("user", users, c.user_codes), ("item", items, c.item_codes)):
            codes = residual_quantize(text, levels=c.levels, codes=size, seed=c.seed,
                                      max_fit_rows=c.max_fit_rows).codes
            members, weights = sample_members(codes, size, c.degree, rng)
            # Codes and sampled members are the plugin's learned graph: persistent buffers.
            self.register_buffer(f"{side}_codes", codes)
            self.register_buffer(f"{side}_members", members)
            self.register_buffer(f"{side}_member_weights", weights)
        # Code-node embeddings of all levels in one table, row l·K + k (as AutoGraph offsets ids).
        user_nodes, item_nodes = c.levels * c.user_codes, c.levels * c.item_codes
        self.user_code_embedding = nn.Parameter(c.init_std * torch.randn(user_nodes, d))
        self.item_code_embedding = nn.Parameter(c.init_std * torch.randn(item_nodes, d))
        self.user_mlp = mapping_mlp(d)
        self.item_mlp = mapping_mlp(d)

    @staticmethod
    def extra_embedding(codes: Tensor, code_embedding: Tensor, members: Tensor,
                        member_weights: Tensor, ids: Tensor, mlp: nn.Module) -> Tensor:
        """``g = MLP([mean_l C[c_l] ; mean_l member_mean(c_l)])`` for every row, ``[n, d]``."""
        codebook = code_embedding.shape[0] // codes.shape[1]
        flat = codes + torch.arange(codes.shape[1], device=codes.device) * codebook
        member_mean = (ids[members] * member_weights[..., None]).sum(1)  # [L·K, d]
        code_part = code_embedding[flat].mean(1)
        member_part = member_mean[flat].mean(1)
        return mlp(torch.cat([code_part, member_part], dim=-1))

    def input_offset(self) -> Tensor:
        model = self._model[0]
        user_ids, item_ids = model.split(model.ego_table(None))
        users = self.extra_embedding(self.user_codes, self.user_code_embedding, self.user_members,
                                     self.user_member_weights, user_ids, self.user_mlp)
        items = self.extra_embedding(self.item_codes, self.item_code_embedding, self.item_members,
                                     self.item_member_weights, item_ids, self.item_mlp)
        return torch.cat([users, items], dim=0)

    def loss(self, batch: Batch, emb: Embeddings, model: BaseModel) -> dict[str, Tensor]:
        return {"autograph_reg": self.config.reg * squared_norm_of_parameters(self)}
