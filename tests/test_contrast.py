"""The fused all-candidate log-sum-exp behind SGL, SimGCL and RLMRec-Con's InfoNCE."""

from __future__ import annotations

import math

import pytest
import torch

from lmmrec_cli.models import contrast
from lmmrec_cli.models.base import infonce_all
from lmmrec_cli.models.contrast import logsumexp_against


@pytest.mark.parametrize("rows", [1, 7, 64, 130])  # below, at and across the row block
def test_value_and_gradients_equal_unfused_autograd(rows: int, monkeypatch) -> None:
    monkeypatch.setattr(contrast, "ROW_BLOCK", 64)
    generator = torch.Generator().manual_seed(rows)
    anchors = (3 * torch.randn(rows, 8, generator=generator)).requires_grad_()
    candidates = torch.randn(50, 8, generator=generator).requires_grad_()
    upstream = torch.rand(rows, generator=generator)

    expected = torch.logsumexp(anchors @ candidates.T, dim=-1)
    (expected * upstream).sum().backward()
    grads_expected = anchors.grad.clone(), candidates.grad.clone()
    anchors.grad = candidates.grad = None

    got = logsumexp_against(anchors, candidates)
    (got * upstream).sum().backward()
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(anchors.grad, grads_expected[0])
    torch.testing.assert_close(candidates.grad, grads_expected[1])


def test_gradcheck_in_double_precision(monkeypatch) -> None:
    monkeypatch.setattr(contrast, "ROW_BLOCK", 3)  # several blocks on a tiny input
    generator = torch.Generator().manual_seed(1)
    anchors = torch.randn(7, 4, dtype=torch.float64, generator=generator, requires_grad=True)
    candidates = torch.randn(5, 4, dtype=torch.float64, generator=generator, requires_grad=True)
    assert torch.autograd.gradcheck(logsumexp_against, (anchors, candidates))


def test_large_logits_do_not_overflow() -> None:
    anchors = torch.tensor([[100.0, 0.0]])
    candidates = torch.tensor([[1.0, 0.0], [0.9, 0.0]])
    got = logsumexp_against(anchors, candidates).item()
    assert got == pytest.approx(100 + math.log(1 + math.exp(-10)), rel=1e-6)


def test_only_the_needed_gradient_is_computed() -> None:
    anchors = torch.randn(4, 3, requires_grad=True)
    candidates = torch.randn(6, 3)  # a constant table (e.g. frozen text vectors)
    logsumexp_against(anchors, candidates).sum().backward()
    assert anchors.grad is not None and candidates.grad is None


def test_infonce_all_by_hand() -> None:
    """RLMRec cal_infonce_loss: Σ_i −log(exp(cos(a_i,b_i)/τ) / Σ_j exp(cos(a_i,c_j)/τ))."""
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    c = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    tau = 0.5
    # cosines: a0·b0 = 1/√2, a1·b1 = 1; a0 against c: 1, 0, −1; a1 against c: 0, 1, 0
    expected = (-(1 / math.sqrt(2)) / tau + math.log(math.exp(2) + 1 + math.exp(-2))
                - 1 / tau + math.log(1 + math.exp(2) + 1))
    assert infonce_all(a, b, c, tau).item() == pytest.approx(expected, rel=1e-5)
