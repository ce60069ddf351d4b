"""LMMRec (Di et al.): motivation-aware alignment of text and interaction views, as a plugin.

The plugin adds two objectives to any base model (docs/method.md §1; paper §II-B to II-E) and never
changes how the base model scores: prediction stays ``x_u · x_i`` of the base.

* Text view — Eq. 3: frozen motivation vectors ``s`` → :class:`TextEncoder` → ``h``.
* Interaction view — Eqs. 5–6: the base model's per-layer embeddings ``x^(k)`` of the batch rows
  → :class:`MotivationPrototypes` (separate user / item prototypes) → ``p^(k)``, combined with
  the base model's own readout into ``p``.
* MCS — Eqs. 7–8: in-batch InfoNCE between ``p`` and ``h`` for the users, the positive
  ("active") items and the negative ("passive") items of the BPR triples.
* ICM — Eq. 9: momentum (EMA) copies of the text encoder, the base model and the prototypes
  give teacher similarity distributions; KL pulls the student's towards them in both
  directions. The teacher is updated before every step (m = 0.995) and its weight γ ramps up
  linearly over the first epoch (ALBEF's α warm-up). ``teacher_refresh_steps`` > 1 reuses the
  teacher's propagated embeddings between refreshes (a documented cost option).
* Cost: text-side work is computed for the rows a step needs (3B rows), never for the whole
  table; MCS and ICM share one student similarity matrix per group, built tile by tile and
  never held whole (``alignment_losses``).
* Eq. 10 with the base loss added: ``L_base + λ·L_MCS + γ_t·L_ICM + λ_reg·‖Φ_plugin‖²``.

Ablation switches (Table II): ``use_mcs=False`` (λ = 0), ``use_icm=False`` (no teacher at all),
``use_gcn=False`` (prototypes on the un-propagated ego embeddings), ``use_text=False`` (the text
view is an MLP of the ego embeddings; the text vectors are never read).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from lmmrec_cli.config import tunable
from lmmrec_cli.models.base import BaseModel, Embeddings, Plugin, Readout
from lmmrec_cli.models.graph import Batch
from lmmrec_cli.plugins.alignment import (
    MotivationPrototypes,
    TextEncoder,
    alignment_losses,
    ema_update,
)
from lmmrec_cli.plugins.common import TEXT_DIM, principal_projection

GROUPS = ("user", "active", "passive")


@dataclass
class LMMRecConfig:
    prototypes: int = 128
    """I_p, motivation prototypes per side (DCCF ``intent_num``)."""
    temperature: float = tunable(0.2, 0.05, 1.0, log=True)
    """ψ of MCS and ICM (RLMRec ``lightgcn_plus.yml`` amazon/yelp; 0.1 on Steam)."""
    mcs_weight: float = tunable(1e-2, 1e-3, 1.0, log=True)
    """λ on L_MCS (RLMRec ``kd_weight``; 1e-3 on Steam)."""
    icm_weight: float | None = None
    """γ on L_ICM; default λ·α/(1−α) with ALBEF's α = 0.4, i.e. ≈ 0.67·λ (docs/method.md §1.7)."""
    momentum: float = 0.995
    """m of the EMA teacher (ALBEF ``Pretrain.yaml``)."""
    teacher_refresh_steps: int = 1
    """Propagate the teacher's graph every this many steps (and at each epoch's first step)
    and reuse it in between; 1 = every step, exact. The teacher's prototypes and text encoder
    still follow the EMA every step; only its propagated embeddings are reused (docs/method.md
    §1.7's cost option). Raise it (e.g. 8) when training time matters more than exactness: the
    teacher's propagation is a large part of a step (measured: benchmarks/bench_plugins.md)."""
    warmup_epochs: float = 1.0
    """γ ramps linearly from 0 over this many epochs (ALBEF: the first epoch)."""
    reg_weight: float = 1e-7
    """λ_reg on the squared norm of the plugin's trainable parameters (RLMRec ``reg_weight``)."""
    text_dim: int = TEXT_DIM
    """Project the text vectors onto their top principal components first (0: never). A deviation
    for cost: Eq. 3's first layer on 1536/3072-d vectors dominates a CPU step, the projected input
    costs a small fraction of it (docs/method.md §1.3; benchmarks/bench_plugins.md). Set 0 to run
    Eq. 3 exactly, e.g. on a GPU or to check the projection costs no quality."""
    per_layer: bool = True
    """Map every propagation layer through the prototypes and combine with the base readout;
    False: map only the final embeddings — cheaper, but it lost much of the demo's gain
    (benchmarks/bench_plugins.md); keep True unless a base model has no layer outputs."""
    use_mcs: bool = True
    """False: ablation w/o MCS (λ = 0)."""
    use_icm: bool = True
    """False: ablation w/o ICM, no teacher at all (also the cheapest LMMRec: no teacher propagation;
    benchmarks/bench_plugins.md)."""
    use_gcn: bool = True
    """False: ablation w/o GCN, prototypes on the un-propagated (ego) embeddings."""
    use_text: bool = True
    """False: ablation w/o TM, the text view is an MLP of the ego embeddings; no text is read."""

    def resolved_icm_weight(self) -> float:
        if self.icm_weight is not None:
            return self.icm_weight
        alpha = 0.4
        return self.mcs_weight * alpha / (1 - alpha)


def prototype_inputs(emb: Embeddings, user_rows: Tensor, item_rows: Tensor, n_users: int, *,
                     per_layer: bool, use_gcn: bool) -> Tensor:
    """``[sources, rows, d]``: what the prototypes map for ``user_rows`` then ``item_rows``.

    Every layer of the base (``per_layer``), its final embeddings, or the un-propagated ego
    embeddings (w/o GCN). One gather per layer for all rows: each gather's backward writes a
    dense ``[N, d]`` gradient.
    """
    node_rows = torch.cat([user_rows, item_rows + n_users])
    if not use_gcn:
        sources = [emb.ego[node_rows]]
    elif per_layer and emb.layers:
        sources = [layer[node_rows] for layer in emb.layers]
    else:
        sources = [torch.cat([emb.users[user_rows], emb.items[item_rows]])]
    return torch.stack(sources)


def combined_assignments(prototypes: MotivationPrototypes, inputs: Tensor, readout: Readout) -> Tensor:
    """``readout_k softmax(x^(k) Z)``: ``[rows, I_p]``, the weights of ``p`` over ``Z`` (Eqs. 5–6).

    The base's readout combines the soft assignments rather than the maps ``D_k Zᵀ``: it is a
    weighted sum of layers with scalar weights (the :class:`Embeddings` contract), so
    ``readout_k(D_k Zᵀ) = readout_k(D_k) Zᵀ`` and the product by ``Zᵀ`` runs once, not per layer.
    """
    assignments = prototypes.assign(inputs)
    return assignments[0] if len(inputs) == 1 else readout(list(assignments.unbind(0)))


class _InteractionSide(nn.Module):
    """User and item prototypes; maps base-model embeddings of batch rows to ``p``."""

    def __init__(self, dim: int, count: int) -> None:
        super().__init__()
        self.users = MotivationPrototypes(dim, count)
        self.items = MotivationPrototypes(dim, count)

    def motivation(self, emb: Embeddings, user_rows: Tensor, item_rows: Tensor, n_users: int, *,
                   per_layer: bool, use_gcn: bool) -> Tensor:
        """``p`` of ``user_rows`` then ``item_rows``: ``[len(user_rows) + len(item_rows), d]``.

        The user rows of every layer, then the item rows of every layer, go through their
        prototypes in one product each.
        """
        inputs = prototype_inputs(emb, user_rows, item_rows, n_users, per_layer=per_layer, use_gcn=use_gcn)
        n_user_rows = len(user_rows)
        mapped = [combined_assignments(prototypes, rows, emb.readout) @ prototypes.prototypes.T
                  for prototypes, rows in ((self.users, inputs[:, :n_user_rows]),
                                           (self.items, inputs[:, n_user_rows:]))]
        return torch.cat(mapped)


class LMMRecPlugin(Plugin):
    """The LMMRec plugin on any :class:`BaseModel` (see the module docstring).

    Args:
        model: the base model being trained (read, never modified; copied for the teacher).
        user_text, item_text: frozen motivation vectors ``[U, d_s]``, ``[I, d_s]``; ignored (and
            may be None) when ``config.use_text`` is False.
        config: :class:`LMMRecConfig`.
    """

    name: ClassVar[str] = "lmmrec"
    Config: ClassVar[type] = LMMRecConfig

    def __init__(
        self,
        model: BaseModel,
        user_text: Tensor | None,
        item_text: Tensor | None,
        config: LMMRecConfig | None = None,
    ) -> None:
        super().__init__()
        self.config = config = config or LMMRecConfig()
        self.n_users = model.n_users
        dim = int(model.ego_table(None).shape[1])
        # A plain list keeps the student model out of this module's parameters and state_dict.
        self._student: list[BaseModel] = [model]
        if config.use_text:
            if user_text is None or item_text is None:
                raise ValueError("LMMRec needs user and item text vectors unless use_text=False")
            user_text, item_text = principal_projection(user_text.float(), item_text.float(), config.text_dim)
            # Not persistent: the vectors are an input artifact, not learned state.
            self.register_buffer("user_text", user_text, persistent=False)
            self.register_buffer("item_text", item_text, persistent=False)
            self.text_encoder = TextEncoder(int(user_text.shape[1]), dim)
        else:
            self.user_text = None
            self.item_text = None
            self.text_encoder = TextEncoder(dim, dim)  # w/o TM: an MLP of ID embeddings
        self.interaction = _InteractionSide(dim, config.prototypes)
        self.teacher_model: BaseModel | None = None
        if config.use_icm:
            # The memo makes the copy share the constant graph instead of copying it (its sparse
            # CSR tensors cannot be deep-copied, and a second copy would only waste memory).
            self.teacher_model = copy.deepcopy(model, {id(model.graph): model.graph})
            self.teacher_encoder = copy.deepcopy(self.text_encoder)
            self.teacher_interaction = copy.deepcopy(self.interaction)
            for param in self._teacher_parameters():
                param.requires_grad_(False)
        self._icm_scale = 0.0
        self._teacher_embeddings: Embeddings | None = None
        self._refresh_teacher = True

    # -- teacher ------------------------------------------------------------------------------

    def _teacher_parameters(self) -> list[Tensor]:
        return [
            *self.teacher_model.parameters(),
            *self.teacher_encoder.parameters(),
            *self.teacher_interaction.parameters(),
        ]

    def _student_parameters(self) -> list[Tensor]:
        return [
            *self._student[0].parameters(),
            *self.text_encoder.parameters(),
            *self.interaction.parameters(),
        ]

    def on_step_begin(self, step: int, steps_per_epoch: int, epoch: int) -> None:
        progress = (epoch * steps_per_epoch + step) / max(1.0, steps_per_epoch * self.config.warmup_epochs)
        self._icm_scale = min(1.0, progress)
        if self.teacher_model is not None:
            ema_update(self._teacher_parameters(), self._student_parameters(), self.config.momentum)
            # Counted within the epoch so a run resumed at an epoch boundary refreshes exactly
            # where the unbroken run did.
            step_in_epoch = step - epoch * steps_per_epoch
            self._refresh_teacher = step_in_epoch % max(1, self.config.teacher_refresh_steps) == 0

    def _teacher_propagation(self) -> Embeddings:
        if self._refresh_teacher or self._teacher_embeddings is None:
            self._teacher_embeddings = self.teacher_model.final()
            self._refresh_teacher = False
        return self._teacher_embeddings

    def loadings(self, emb: Embeddings) -> Tensor:
        """The weights of ``p`` (Eq. 5) over the user-side prototypes ``Z_U`` for every user and
        item, through the plugin's own map (its layers and readout), so users and items are
        described on one set of prototypes (rows are mixtures; the caller normalises them)."""
        nodes = prototype_inputs(emb, torch.arange(self.n_users, device=emb.users.device),
                                 torch.arange(len(emb.items), device=emb.users.device), self.n_users,
                                 per_layer=self.config.per_layer, use_gcn=self.config.use_gcn)
        prototypes = self.interaction.users
        weights = combined_assignments(prototypes, nodes, emb.readout)
        if bool((weights < 0).any()) or bool((weights.sum(1) <= 0).any()):
            # a readout with negative coefficients (PolyCF's learned θ) is no mixture
            weights = prototypes.assign(nodes).mean(0)
        return weights

    # -- the two views ------------------------------------------------------------------------

    def _views(self, emb: Embeddings, batch: Batch, encoder: TextEncoder, side: _InteractionSide):
        """``h`` and ``p`` of the batch: ``[3, B, d]`` each, groups in :data:`GROUPS` order.

        The three groups go through the encoder and the prototypes together (one call each
        instead of three): the same rows and the same values, fewer and larger operations.
        """
        item_rows = torch.cat([batch.pos, batch.neg])
        if self.config.use_text:
            text_input = torch.cat([self.user_text[batch.users], self.item_text[item_rows]])
        else:  # w/o TM: the "text" view is an MLP of the ID (ego) embeddings
            text_input = emb.ego[torch.cat([batch.users, item_rows + self.n_users])]
        text = encoder(text_input)
        interaction = side.motivation(emb, batch.users, item_rows, self.n_users,
                                      per_layer=self.config.per_layer, use_gcn=self.config.use_gcn)
        shape = (len(GROUPS), len(batch), -1)
        return text.reshape(shape), interaction.reshape(shape)

    # -- the objective ------------------------------------------------------------------------

    def loss(self, batch: Batch, emb: Embeddings, model: BaseModel) -> dict[str, Tensor]:
        config = self.config
        text, interaction = self._views(emb, batch, self.text_encoder, self.interaction)
        teacher_text = teacher_interaction = None
        if self.teacher_model is not None:
            with torch.no_grad():
                teacher_text, teacher_interaction = self._views(
                    self._teacher_propagation(), batch, self.teacher_encoder, self.teacher_interaction)
        mcs, icm = alignment_losses(text, interaction, teacher_text, teacher_interaction, config.temperature)
        terms: dict[str, Tensor] = {}
        if config.use_mcs and config.mcs_weight > 0:
            terms["mcs"] = config.mcs_weight * mcs
        if icm is not None:
            terms["icm"] = config.resolved_icm_weight() * self._icm_scale * icm
        trainable = [*self.text_encoder.parameters(), *self.interaction.parameters()]
        terms["plugin_reg"] = config.reg_weight * torch.stack([p.square().sum() for p in trainable]).sum()
        return terms
