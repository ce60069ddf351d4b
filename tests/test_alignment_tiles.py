"""The tiled alignment (plugins.alignment._FusedAlignment over row tiles) against the
materialised autograd form: values, each loss's gradient and gradcheck, with tiles that leave
a remainder, with and without the teacher."""

from __future__ import annotations

import pytest
import torch

from lmmrec_cli.plugins import alignment
from lmmrec_cli.plugins.alignment import alignment_losses, alignment_losses_autograd


@pytest.fixture
def small_tiles(monkeypatch: pytest.MonkeyPatch) -> int:
    # 3 groups × 3 rows × 10 columns per tile: 10 rows in tiles of 3, 3, 3 and 1.
    monkeypatch.setitem(alignment.TILE_ELEMENTS, "cpu", 3 * 3 * 10)
    return 3


def _views(seed: int, shape=(3, 10, 4), dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=generator, dtype=dtype) for _ in range(4)]


def test_rows_are_split_into_tiles_with_a_remainder(small_tiles: int) -> None:
    assert alignment._tile_rows(3, 10, torch.device("cpu")) == small_tiles
    assert list(alignment._row_blocks(10, small_tiles)) == [(0, 3), (3, 6), (6, 9), (9, 10)]


@pytest.mark.parametrize("with_teacher", [True, False])
def test_tiled_values_and_gradients_equal_the_materialised_form(small_tiles: int, with_teacher: bool) -> None:
    h, p, ht, pt = _views(11)
    teacher = (ht, pt) if with_teacher else (None, None)
    for weights in [(0.3, 1.7), (1.0, 0.0), (0.0, 2.0)]:
        results = []
        for losses in (alignment_losses, alignment_losses_autograd):
            hh, pp = h.clone().requires_grad_(), p.clone().requires_grad_()
            mcs, icm = losses(hh, pp, *teacher, 0.2)
            total = weights[0] * mcs + (weights[1] * icm if icm is not None else 0.0)
            results.append((mcs, icm, *torch.autograd.grad(total, (hh, pp))))
        for got, expected in zip(*results, strict=True):
            if expected is None:
                assert got is None
            else:
                torch.testing.assert_close(got, expected)


def test_tiled_form_passes_gradcheck(small_tiles: int) -> None:
    h, p, ht, pt = _views(12)
    h.requires_grad_()
    p.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: alignment_losses(a, b, ht, pt, 0.3)[0], (h, p))
    assert torch.autograd.gradcheck(lambda a, b: alignment_losses(a, b, ht, pt, 0.3)[1], (h, p))
    assert torch.autograd.gradcheck(lambda a, b: sum(alignment_losses(a, b, ht, pt, 0.3)), (h, p))
    assert torch.autograd.gradcheck(lambda a, b: alignment_losses(a, b, None, None, 0.3)[0], (h, p))


def test_one_input_without_gradient(small_tiles: int) -> None:
    h, p, ht, pt = _views(13)
    h.requires_grad_()
    mcs, icm = alignment_losses(h, p, ht, pt, 0.2)
    (got,) = torch.autograd.grad(mcs + icm, (h,))
    hh = h.detach().clone().requires_grad_()
    ref_mcs, ref_icm = alignment_losses_autograd(hh, p, ht, pt, 0.2)
    (expected,) = torch.autograd.grad(ref_mcs + ref_icm, (hh,))
    torch.testing.assert_close(got, expected)


def test_tiled_float32_at_a_larger_batch_matches_float64_reference() -> None:
    # The production tile size on 200 rows (one tile kept) and with 40-row tiles (recomputed).
    h, p, ht, pt = _views(14, shape=(3, 200, 32), dtype=torch.float32)
    reference = [x.double() for x in (h, p, ht, pt)]
    expected = alignment_losses_autograd(*reference, 0.2)
    for budget in (alignment.TILE_ELEMENTS["cpu"], 3 * 40 * 200):
        with pytest.MonkeyPatch.context() as patch:
            patch.setitem(alignment.TILE_ELEMENTS, "cpu", budget)
            got = alignment_losses(h, p, ht, pt, 0.2)
        for value, ref in zip(got, expected, strict=True):
            torch.testing.assert_close(value.double(), ref, rtol=1e-5, atol=1e-5)
