"""The plain one-group forms of MCS (Eq. 7) and ICM (Eq. 9): the reference the package's
fused, tiled ``alignment_losses`` is tested against (docs/method.md §1.6–1.7)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lmmrec_cli.plugins.alignment import _unit_rows


def cosine_logits(left: Tensor, right: Tensor, temperature: float) -> Tensor:
    """``cos(left_j, right_l) / temperature`` for all pairs: [b_left, b_right]."""
    return _unit_rows(left) @ _unit_rows(right).T / temperature


def info_nce(anchors: Tensor, candidates: Tensor, temperature: float) -> Tensor:
    """Eq. 7: mean over j of ``−log softmax_l(cos(anchor_j, candidate_l)/ψ)[j]``.

    Row j of ``candidates`` is the positive of anchor j; the other rows are its negatives.
    """
    logits = cosine_logits(anchors, candidates, temperature)
    targets = torch.arange(len(anchors), device=anchors.device)
    return F.cross_entropy(logits, targets)


def correspondence_kl(
    text: Tensor,
    interaction: Tensor,
    teacher_text: Tensor,
    teacher_interaction: Tensor,
    temperature: float,
) -> Tensor:
    """Eq. 9: ``mean_j KL(v^ab_j ‖ u^ab_j) + mean_l KL(v^ba_l ‖ u^ba_l)``.

    Student logits ``S = cos(h_j, p_l)/ψ``; ``u^ab`` = softmax over rows of S (text →
    interaction), ``u^ba`` = softmax over rows of Sᵀ (interaction → text). The teacher's
    ``v^ab``, ``v^ba`` come from ``T = cos(h'_j, p'_l)/ψ`` and carry no gradient.
    """
    student = cosine_logits(text, interaction, temperature)
    with torch.no_grad():
        teacher = cosine_logits(teacher_text, teacher_interaction, temperature)
    text_to_interaction = F.kl_div(
        F.log_softmax(student, dim=1), F.log_softmax(teacher, dim=1), reduction="batchmean", log_target=True
    )
    interaction_to_text = F.kl_div(
        F.log_softmax(student.T, dim=1), F.log_softmax(teacher.T, dim=1), reduction="batchmean", log_target=True
    )
    return text_to_interaction + interaction_to_text
