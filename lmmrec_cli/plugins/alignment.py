"""Building blocks of text–interaction alignment (LMMRec §II-B to II-E; docs/method.md §1.3–1.7).

Each block is small and testable on its own:

* :class:`TextEncoder` — Eq. 3, ``h = M2 · LeakyReLU(M1 s + g1) + g2`` (RLMRec ``lightgcn_plus.py``
  ``self.mlp``: hidden width ``(d_s + d) // 2``, slope 0.01, Xavier-uniform weights).
* :class:`MotivationPrototypes` — Eqs. 5–6, ``p = softmax(x Z) Zᵀ`` with separate user and item
  prototype matrices (DCCF's intent aggregation, RLMRec ``dccf_plus.py``).
* :func:`alignment_losses` — Eqs. 7–8 (MCS: in-batch InfoNCE with cosine similarity and
  temperature ψ; RLMRec ``loss_utils.cal_infonce_loss`` normalises both sides, eps 1e-8) and
  Eq. 9 (ICM: KL from the teacher's to the student's similarity distributions in both
  directions, ALBEF momentum distillation) for several groups at once from one shared student
  similarity matrix, tile by tile. Their plain one-group forms (``info_nce``,
  ``correspondence_kl`` in ``tests/alignment_reference.py``) are what the tests check it against.
* :func:`ema_update` — the momentum teacher update ``θ' ← m θ' + (1 − m) θ`` (ALBEF
  ``_momentum_update``, m = 0.995).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable

import torch
from torch import Tensor, nn

_EPS = 1e-8


class TextEncoder(nn.Sequential):
    """Eq. 3: maps frozen text vectors ``s`` [b, d_s] to the model space ``h`` [b, d].

    The one text MLP of the package: LMMRec's text view, RLMRec-Con's ``mlp`` and ONCE's
    projection are all this module, so the plugins compare methods at equal text capacity.
    Layers ``first`` (``[0]``), the LeakyReLU (``[1]``) and ``second`` (``[2]``).

    Args:
        text_dim: d_s, the dimension of the text vectors.
        dim: d, the dimension of the base model's embeddings.
        hidden: the hidden width; None = ``(d_s + d) // 2`` (RLMRec's).

    Example:
        >>> encoder = TextEncoder(1536, 32)
        >>> encoder(torch.zeros(4, 1536)).shape
        torch.Size([4, 32])
    """

    def __init__(self, text_dim: int, dim: int, hidden: int | None = None) -> None:
        hidden = hidden or (text_dim + dim) // 2
        super().__init__(OrderedDict(first=nn.Linear(text_dim, hidden),
                                     activation=nn.LeakyReLU(negative_slope=0.01),
                                     second=nn.Linear(hidden, dim)))
        nn.init.xavier_uniform_(self.first.weight)
        nn.init.xavier_uniform_(self.second.weight)
        self._register_load_state_dict_pre_hook(_sequential_keys)


def _sequential_keys(state_dict, prefix, *args) -> None:
    """Runs saved before there was one text MLP stored RLMRec-Con's and ONCE's as an
    ``nn.Sequential`` (keys ``0.*`` and ``2.*``): read them as ``first.*`` and ``second.*``."""
    for old, new in (("0.", "first."), ("2.", "second.")):
        for key in [k for k in state_dict if k.startswith(prefix + old)]:
            state_dict[prefix + new + key[len(prefix + old):]] = state_dict.pop(key)


class MotivationPrototypes(nn.Module):
    """Eqs. 5–6: soft assignment of embeddings to learnable motivation prototypes.

    ``assign(x)`` is ``D(z | x) = softmax(x Z)`` [b, I_p]; ``forward(x)`` is the
    motivation-aware embedding ``p = D(z | x) Zᵀ`` [b, d]. No temperature and no normalisation,
    as in DCCF.

    Args:
        dim: d.
        count: I_p, the number of prototypes (DCCF's ``intent_num`` 128 by default).
    """

    def __init__(self, dim: int, count: int) -> None:
        super().__init__()
        self.prototypes = nn.Parameter(torch.empty(dim, count))
        nn.init.xavier_uniform_(self.prototypes)

    def assign(self, embeddings: Tensor) -> Tensor:
        """``softmax(x Z)`` over the prototypes: ``[..., b, d]`` → ``[..., b, I_p]``."""
        return torch.softmax(embeddings @ self.prototypes, dim=-1)

    def forward(self, embeddings: Tensor) -> Tensor:
        return self.assign(embeddings) @ self.prototypes.T


def _unit_rows(x: Tensor) -> Tensor:
    return x / (x.norm(dim=-1, keepdim=True) + _EPS)


def alignment_losses(
    text: Tensor,
    interaction: Tensor,
    teacher_text: Tensor | None,
    teacher_interaction: Tensor | None,
    temperature: float,
) -> tuple[Tensor, Tensor | None]:
    """``Σ_g info_nce(p_g, h_g)`` and ``Σ_g correspondence_kl(h_g, p_g, h'_g, p'_g)`` (the
    one-group reference forms of ``tests/alignment_reference.py``) for ``G``
    groups of ``B`` rows (``[G, B, d]`` each), from one student matrix per group, computed in
    row tiles so that no ``[G, B, B]`` array is ever held (memory ``O(G·B·d)``).

    The same values and gradients as the two reference functions, with far fewer passes over
    the ``[G, B, B]`` matrices (on a CPU these passes, not the products, were the cost):

    * MCS's logits ``cos(p_j, h_l)/ψ`` are the transpose of ICM's ``S = cos(h_j, p_l)/ψ``, so
      MCS is ``mean_l (lse_j S_jl − S_ll)`` from the column log-sum-exps ICM needs anyway.
    * With teacher row/column softmaxes ``v`` of ``T``, ``Σ_l v_jl = 1`` turns each KL into
      log-sum-exps and one weighted sum: ``KL(v_j‖u_j) = (lse S_j − lse T_j) − Σ_l v_jl (S − T)_jl``
      (rows; columns alike), so no ``log_softmax`` of ``S`` is materialised.
    * Cosines are bounded, so ``|S| ≤ 1/ψ``: ``exp(S)`` cannot overflow and needs no max pass.
      It is taken once per tile and pass and shared by the loss values and the closed-form
      gradient (:class:`_FusedAlignment`). Below :data:`FUSED_MIN_TEMPERATURE` the plain autograd form
      (:func:`alignment_losses_autograd`), which subtracts maxima, runs instead.

    The teacher is None when ICM is off; the second result is then None.
    """
    if temperature < FUSED_MIN_TEMPERATURE:
        return alignment_losses_autograd(text, interaction, teacher_text, teacher_interaction, temperature)
    with_teacher = teacher_text is not None and teacher_interaction is not None
    teacher = (_unit_rows(teacher_text), _unit_rows(teacher_interaction)) if with_teacher else (None, None)
    mcs, icm = _FusedAlignment.apply(_unit_rows(text), _unit_rows(interaction), *teacher, 1.0 / temperature)
    return mcs, (icm if with_teacher else None)


FUSED_MIN_TEMPERATURE = 0.05
"""The fused form's ψ floor. Its row and column sums of ``exp(S)`` reach ``B · e^(1/ψ)``, which
overflows float32 once ``1/ψ`` nears 88 − ln B; at ψ = 0.05 that bound is ``B · e^20``, far
from it. Below the floor the autograd form, which subtracts maxima, is used."""

_LOG2_E = math.log2(math.e)

TILE_ELEMENTS = {"cpu": 3 * 512 * 512, "cuda": 1 << 26}
"""Elements of one ``[G, rows, B]`` tile of the similarity matrices, per device type.

On a CPU the tile must stay in cache: at B = 4096 the whole ``[3, B, B]`` array is 200 MB, and
building, exponentiating, summing and scaling it pass after pass through memory cost 1.8 s of a
2.1 s step (benchmarks/bench_plugins.md). 3 × 512 × 512 floats (3 MB) is one tile at the
paper's batch of 512 and 64-row tiles at 4096. A GPU prefers few large kernels: 2^26 floats
(256 MB) keeps batch 4096 in one tile."""


def _tile_rows(groups: int, rows: int, device: torch.device) -> int:
    budget = TILE_ELEMENTS.get(device.type, TILE_ELEMENTS["cpu"])
    return max(1, min(rows, budget // (groups * rows)))


def _row_blocks(rows: int, size: int):
    for start in range(0, rows, size):
        yield start, min(rows, start + size)


class _Tiles:
    """Reusable ``[G, rows, B]`` buffers, one per role, so the row loop allocates nothing.

    A role's buffer is allocated on its first use: with one kept tile, the exponentials get
    their own arrays and their roles are never asked for."""

    def __init__(self, like: Tensor, tile_rows: int) -> None:
        groups, columns, _ = like.shape  # [G, B, d]: tiles are [G, ≤ tile_rows, B]
        self._like, self._size, self._shape = like, groups * tile_rows * columns, (groups, columns)
        self._buffers: dict[int, Tensor] = {}

    def __call__(self, role: int, rows: int) -> Tensor:
        if role not in self._buffers:
            self._buffers[role] = self._like.new_empty(self._size)
        groups, columns = self._shape
        return self._buffers[role][: groups * rows * columns].view(groups, rows, columns)


class _FusedAlignment(torch.autograd.Function):
    """MCS and ICM of unit vectors with their gradient in closed form, tile by tile.

    Notation as in :func:`alignment_losses`: ``S = (1/ψ) h pᵀ`` and ``E = exp(S)`` with row sums
    ``r`` and column sums ``c``; the teacher's ``T``, ``E' = exp(T)``, ``r'``, ``c'`` and
    weights ``W = E'/r' + E'/c'`` (``v^ab + v^ba``, the rows and columns of ``W`` divided
    elementwise). Every quantity of the loss is a row or column sum of a ``[G, B, B]`` array, so
    the forward walks over row tiles (:data:`TILE_ELEMENTS`) and keeps only ``[G, B]`` vectors:

    * ``r``, ``r'`` complete within a tile; ``c``, ``c'`` accumulate over tiles;
    * ``Σ W ⊙ (S − T) = Σ_j q_j / r'_j + Σ_l q'_l / c'_l`` with ``q = rowsum(E' ⊙ (S − T))``,
      ``q' = colsum(E' ⊙ (S − T))``, so the teacher's weights need no second pass.

    With the loss weights ``a = ∂/∂MCS``, ``b = ∂/∂ICM`` arriving in backward::

        ∂/∂S = a/B · (E/c − I) + b/B · (E/r + E/c − W)

    and ``S = (1/ψ) · h pᵀ`` gives the gradients of the unit vectors by two products per tile.
    The backward recomputes each tile's ``E`` and ``E'`` from ``h``, ``p`` (two small products
    with ``d`` columns) instead of storing ``2 · G · B²`` floats — unless the arrays fit in one
    tile, as at batch 512 on a CPU, where the forward's tiles are kept. ``exp`` runs once per
    element per pass and needs no max pass because ``|S| ≤ 1/ψ``; it is taken as ``exp2`` of
    base-2 logits, about twice as fast as ``exp`` on this CPU build
    (benchmarks/bench_lmmrec_parts.py), the factor ``log2(e)`` riding on the ``[G, B, d]`` operand.
    """

    @staticmethod
    def forward(ctx, text, interaction, teacher_text, teacher_interaction, inverse_temperature):
        groups, rows, _ = text.shape
        with_teacher = teacher_text is not None
        tile_rows = _tile_rows(groups, rows, text.device)
        keep = tile_rows == rows  # one tile: keep E (and E') for the backward
        scale = inverse_temperature * _LOG2_E
        text2, teacher_text2 = text * scale, (teacher_text * scale if with_teacher else None)
        columns = interaction.transpose(1, 2)
        teacher_columns = teacher_interaction.transpose(1, 2) if with_teacher else None
        tiles = _Tiles(text, tile_rows)
        row_sums, column_sums = text.new_empty(groups, rows), text.new_zeros(groups, rows)
        if with_teacher:
            teacher_rows, teacher_cols = text.new_empty(groups, rows), text.new_zeros(groups, rows)
            cross_rows, cross_cols = text.new_empty(groups, rows), text.new_zeros(groups, rows)
        kept = kept_teacher = None
        for start, stop in _row_blocks(rows, tile_rows):
            n = stop - start
            logits = torch.bmm(text2[:, start:stop], columns, out=tiles(0, n))  # log2(e) · S
            exps = torch.exp2(logits, out=tiles(1, n)) if not keep else torch.exp2(logits)
            row_sums[:, start:stop] = exps.sum(dim=2)
            column_sums += exps.sum(dim=1)
            if with_teacher:
                teacher_logits = torch.bmm(teacher_text2[:, start:stop], teacher_columns, out=tiles(2, n))
                teacher_exps = torch.exp2(teacher_logits, out=tiles(3, n)) if not keep else torch.exp2(teacher_logits)
                teacher_rows[:, start:stop] = teacher_exps.sum(dim=2)
                teacher_cols += teacher_exps.sum(dim=1)
                weighted = logits.sub_(teacher_logits).mul_(teacher_exps)  # log2(e) · E' ⊙ (S − T)
                cross_rows[:, start:stop] = weighted.sum(dim=2)
                cross_cols += weighted.sum(dim=1)
                kept_teacher = teacher_exps if keep else None
            kept = exps if keep else None
        log_columns = column_sums.log()
        diagonal = torch.sum(text * interaction) * inverse_temperature
        mcs = (log_columns.sum() - diagonal) / rows
        icm = mcs.new_zeros(())
        if with_teacher:
            cross = ((cross_rows / teacher_rows).sum() + (cross_cols / teacher_cols).sum()) / _LOG2_E
            icm = ((row_sums.log() - teacher_rows.log()).sum()
                   + (log_columns - teacher_cols.log()).sum() - cross) / rows
            ctx.save_for_backward(text, interaction, teacher_text, teacher_interaction, row_sums, column_sums,
                                  teacher_rows, teacher_cols, kept, kept_teacher)
        else:
            ctx.save_for_backward(text, interaction, None, None, row_sums, column_sums, None, None, kept, None)
        ctx.inverse_temperature = inverse_temperature
        ctx.tile_rows = tile_rows
        return mcs, icm

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_mcs, grad_icm):
        (text, interaction, teacher_text, teacher_interaction, row_sums, column_sums,
         teacher_rows, teacher_cols, kept, kept_teacher) = ctx.saved_tensors
        groups, rows, _ = text.shape
        with_teacher = teacher_text is not None
        inverse_temperature, tile_rows = ctx.inverse_temperature, ctx.tile_rows
        # a and b as in the class docstring, times ∂S/∂(h pᵀ) = 1/ψ.
        scale = inverse_temperature / rows
        a = grad_mcs * scale if grad_mcs is not None else text.new_zeros(())
        b = grad_icm * scale if (grad_icm is not None and with_teacher) else text.new_zeros(())
        column_factor = ((a + b) / column_sums).unsqueeze(1)  # [G, 1, B]
        if with_teacher:
            row_factor = (b / row_sums).unsqueeze(2)  # [G, B, 1]
            teacher_row_factor = (b / teacher_rows).unsqueeze(2)
            teacher_column_factor = (b / teacher_cols).unsqueeze(1)
        need_text, need_interaction = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_text = torch.empty_like(text) if need_text else None
        grad_interaction = torch.zeros_like(interaction) if need_interaction else None
        log2_scale = inverse_temperature * _LOG2_E
        text2 = text * log2_scale
        teacher_text2 = teacher_text * log2_scale if with_teacher else None
        columns = interaction.transpose(1, 2)
        teacher_columns = teacher_interaction.transpose(1, 2) if with_teacher else None
        tiles = _Tiles(text, tile_rows)
        for start, stop in _row_blocks(rows, tile_rows):
            n = stop - start
            if kept is not None:
                exps = kept
            else:
                exps = torch.bmm(text2[:, start:stop], columns, out=tiles(1, n)).exp2_()
            grad = torch.mul(exps, column_factor, out=tiles(0, n))
            if with_teacher:
                grad.addcmul_(exps, row_factor[:, start:stop])
                if kept_teacher is not None:
                    teacher_exps = kept_teacher
                else:
                    teacher_exps = torch.bmm(teacher_text2[:, start:stop], teacher_columns, out=tiles(3, n)).exp2_()
                weights = torch.add(teacher_row_factor[:, start:stop], teacher_column_factor, out=tiles(2, n))
                grad.addcmul_(teacher_exps, weights, value=-1.0)  # − b/B · W
            grad.diagonal(offset=start, dim1=1, dim2=2).sub_(a)
            if need_text:
                grad_text[:, start:stop] = torch.bmm(grad, interaction)
            if need_interaction:
                grad_interaction.baddbmm_(grad.transpose(1, 2), text[:, start:stop])
        return grad_text, grad_interaction, None, None, None


def alignment_losses_autograd(
    text: Tensor,
    interaction: Tensor,
    teacher_text: Tensor | None,
    teacher_interaction: Tensor | None,
    temperature: float,
) -> tuple[Tensor, Tensor | None]:
    """:func:`alignment_losses` through plain autograd (any ψ; the reference of the fused form)."""
    student = torch.bmm(_unit_rows(text), _unit_rows(interaction).transpose(1, 2)) / temperature
    column_lse = torch.logsumexp(student, dim=1)  # [G, B]: p_l against every h_j
    mcs = (column_lse - student.diagonal(dim1=1, dim2=2)).mean(dim=1).sum()
    if teacher_text is None or teacher_interaction is None:
        return mcs, None
    row_lse = torch.logsumexp(student, dim=2)  # [G, B]: h_j against every p_l
    with torch.no_grad():
        teacher = torch.bmm(_unit_rows(teacher_text), _unit_rows(teacher_interaction).transpose(1, 2))
        teacher /= temperature
        teacher_row_lse = torch.logsumexp(teacher, dim=2, keepdim=True)
        teacher_column_lse = torch.logsumexp(teacher, dim=1, keepdim=True)
        targets = (teacher - teacher_row_lse).exp_() + (teacher - teacher_column_lse).exp_()
    kl_sum = ((row_lse - teacher_row_lse.squeeze(2)).sum()
              + (column_lse - teacher_column_lse.squeeze(1)).sum()
              - (targets * (student - teacher)).sum())
    return mcs, kl_sum / student.shape[1]


@torch.no_grad()
def ema_update(teacher: Iterable[Tensor], student: Iterable[Tensor], momentum: float) -> None:
    """``θ' ← m θ' + (1 − m) θ`` for matching parameter lists (ALBEF ``_momentum_update``)."""
    for teacher_param, student_param in zip(teacher, student, strict=True):
        teacher_param.mul_(momentum).add_(student_param.detach(), alpha=1.0 - momentum)
