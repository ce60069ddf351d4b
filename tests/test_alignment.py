"""Alignment blocks (Eqs. 3, 5-9) against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
from alignment_reference import correspondence_kl, cosine_logits, info_nce

from lmmrec_cli.plugins.alignment import (
    MotivationPrototypes,
    TextEncoder,
    alignment_losses,
    alignment_losses_autograd,
    ema_update,
)


def test_text_encoder_is_eq3_with_rlmrec_widths() -> None:
    torch.manual_seed(0)
    encoder = TextEncoder(10, 4)
    assert encoder.first.weight.shape == (7, 10) and encoder.second.weight.shape == (4, 7)
    s = torch.randn(3, 10)
    hidden = encoder.first.weight @ s.T + encoder.first.bias[:, None]
    hidden = torch.where(hidden > 0, hidden, 0.01 * hidden)
    expected = (encoder.second.weight @ hidden + encoder.second.bias[:, None]).T
    torch.testing.assert_close(encoder(s), expected)


def test_prototypes_soft_assignment_and_aggregation() -> None:
    protos = MotivationPrototypes(dim=2, count=3)
    with torch.no_grad():
        protos.prototypes.copy_(torch.tensor([[1.0, 0.0, -1.0], [0.0, 1.0, 0.0]]))
    x = torch.tensor([[2.0, 0.0]])
    # x·Z = [2, 0, -2] → softmax
    weights = torch.tensor([math.exp(2), 1.0, math.exp(-2)])
    weights = weights / weights.sum()
    torch.testing.assert_close(protos.assign(x), weights[None])
    expected = (
        weights[0] * torch.tensor([1.0, 0.0])
        + weights[1] * torch.tensor([0.0, 1.0])
        + weights[2] * torch.tensor([-1.0, 0.0])
    )
    torch.testing.assert_close(protos(x), expected[None])


def test_info_nce_matches_hand_computation() -> None:
    anchors = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    candidates = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    psi = 0.5
    # cosines: row 0: [1, 1/√2]; row 1: [0, 1/√2]
    c = 1 / math.sqrt(2)
    loss0 = -math.log(math.exp(1 / psi) / (math.exp(1 / psi) + math.exp(c / psi)))
    loss1 = -math.log(math.exp(c / psi) / (math.exp(0.0) + math.exp(c / psi)))
    assert info_nce(anchors, candidates, psi).item() == pytest.approx((loss0 + loss1) / 2, rel=1e-6)


def _kl_rows(p_logits: torch.Tensor, q_logits: torch.Tensor) -> float:
    """mean over rows of KL(softmax(p) || softmax(q)), by the textbook formula."""
    total = 0.0
    for p_row, q_row in zip(p_logits, q_logits, strict=True):
        p = torch.softmax(p_row, 0)
        q = torch.softmax(q_row, 0)
        total += float((p * (p.log() - q.log())).sum())
    return total / len(p_logits)


def test_correspondence_kl_matches_textbook_and_is_zero_for_equal_views() -> None:
    torch.manual_seed(1)
    h, p, ht, pt = (torch.randn(5, 3) for _ in range(4))
    psi = 0.2
    student = cosine_logits(h, p, psi)
    teacher = cosine_logits(ht, pt, psi)
    expected = _kl_rows(teacher, student) + _kl_rows(teacher.T, student.T)
    value = correspondence_kl(h, p, ht, pt, psi)
    assert value.item() == pytest.approx(expected, rel=1e-5)
    assert value.item() >= 0
    assert correspondence_kl(h, p, h.clone(), p.clone(), psi).item() == pytest.approx(0.0, abs=1e-6)


def test_teacher_inputs_receive_no_gradient() -> None:
    h = torch.randn(4, 3, requires_grad=True)
    p = torch.randn(4, 3, requires_grad=True)
    ht = torch.randn(4, 3, requires_grad=True)
    pt = torch.randn(4, 3, requires_grad=True)
    correspondence_kl(h, p, ht, pt, 0.2).backward()
    assert h.grad is not None and p.grad is not None
    assert ht.grad is None and pt.grad is None


def test_ema_moves_teacher_by_exactly_one_minus_m() -> None:
    student = [torch.tensor([1.0, 2.0]), torch.tensor([[3.0]])]
    teacher = [torch.tensor([0.0, 0.0]), torch.tensor([[1.0]])]
    before = [t.clone() for t in teacher]
    ema_update(teacher, student, momentum=0.9)
    for t, b, s in zip(teacher, before, student, strict=True):
        torch.testing.assert_close(t - b, 0.1 * (s - b))


def test_info_nce_gradient_matches_finite_differences() -> None:
    torch.manual_seed(2)
    anchors = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    candidates = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, c: info_nce(a, c, 0.3), (anchors, candidates))


def test_alignment_losses_equal_the_reference_functions_summed_over_groups() -> None:
    generator = torch.Generator().manual_seed(3)
    shape = (3, 6, 4)  # groups × batch rows × dim
    h, p, ht, pt = (torch.randn(shape, generator=generator) for _ in range(4))
    h.requires_grad_()
    p.requires_grad_()
    mcs, icm = alignment_losses(h, p, ht, pt, 0.2)
    expected_mcs = sum(info_nce(p[g], h[g], 0.2) for g in range(3))
    expected_icm = sum(correspondence_kl(h[g], p[g], ht[g], pt[g], 0.2) for g in range(3))
    torch.testing.assert_close(mcs, expected_mcs)
    torch.testing.assert_close(icm, expected_icm)
    grads = torch.autograd.grad(mcs + icm, (h, p))
    expected_grads = torch.autograd.grad(expected_mcs + expected_icm, (h, p))
    for got, expected in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, expected)
    mcs_only, none = alignment_losses(h, p, None, None, 0.2)
    assert none is None
    torch.testing.assert_close(mcs_only, expected_mcs)


@pytest.mark.parametrize("with_teacher", [True, False])
def test_fused_alignment_weighs_each_loss_by_its_own_upstream_gradient(with_teacher: bool) -> None:
    # The closed-form backward must use ∂/∂MCS and ∂/∂ICM separately (λ and γ differ).
    generator = torch.Generator().manual_seed(4)
    h, p, ht, pt = (torch.randn(3, 7, 5, generator=generator, dtype=torch.float64) for _ in range(4))
    teacher = (ht, pt) if with_teacher else (None, None)
    for weights in [(0.3, 1.7), (1.0, 0.0), (0.0, 2.0)]:
        grads = []
        for losses in (alignment_losses, alignment_losses_autograd):
            hh, pp = h.clone().requires_grad_(), p.clone().requires_grad_()
            mcs, icm = losses(hh, pp, *teacher, 0.2)
            total = weights[0] * mcs + (weights[1] * icm if icm is not None else 0.0)
            grads.append(torch.autograd.grad(total, (hh, pp)))
        for got, expected in zip(*grads, strict=True):
            torch.testing.assert_close(got, expected)


def test_fused_alignment_passes_gradcheck_when_only_one_loss_is_used() -> None:
    generator = torch.Generator().manual_seed(5)
    h, p = (torch.randn(2, 4, 3, generator=generator, dtype=torch.float64, requires_grad=True) for _ in range(2))
    ht, pt = (torch.randn(2, 4, 3, generator=generator, dtype=torch.float64) for _ in range(2))
    assert torch.autograd.gradcheck(lambda a, b: alignment_losses(a, b, ht, pt, 0.3)[1], (h, p))
    assert torch.autograd.gradcheck(lambda a, b: alignment_losses(a, b, ht, pt, 0.3)[0], (h, p))


def test_low_temperatures_take_the_autograd_form_and_stay_finite() -> None:
    # At ψ = 0.01, exp(S) reaches e^100, beyond float32: the fallback must keep the values
    # finite and equal to the reference.
    generator = torch.Generator().manual_seed(6)
    h, p, ht, pt = (torch.randn(3, 6, 4, generator=generator) for _ in range(4))
    mcs, icm = alignment_losses(h, p, ht, pt, 0.01)
    expected_mcs = sum(info_nce(p[g], h[g], 0.01) for g in range(3))
    assert torch.isfinite(mcs) and torch.isfinite(icm)
    torch.testing.assert_close(mcs, expected_mcs)
