"""Residual quantisation (RQ) of frozen text vectors into L-level semantic codes.

Shared by UIST (docs/method.md §3.3) and AutoGraph (docs/method.md §3.5). Level ``l`` runs k-means on the
residual left by levels ``1..l-1`` and assigns each row its nearest centre (L2), so a row's codes
``(c_1, ..., c_L)`` reconstruct it as ``Σ_l C_l[c_l]``.

Follows the *inference* of ``Jyonn/SemanticTokenizer`` ``model/quantization/residual.py``
(per level nearest code by L2 ``cdist``, next level takes ``embeds − codes``) and the k-means
initialisation of the ``vector_quantize_pytorch.ResidualVQ`` that AutoGraph ``quantization.py``
trains (``kmeans_init=True``): centres start at randomly sampled rows, then Lloyd iterations;
a code that loses all its rows keeps its previous centre.

Deviations and why:
* Both originals then *train* an RQ-VAE (MLP encoder / decoder, commitment 0.25, 1000 epochs for
  AutoGraph). Here the codebooks are the k-means centres themselves, fitted once at plugin
  construction, with no encoder network: the RQ-VAE's initial state, deterministic for a seed,
  seconds instead of an extra training run. The codes are what the plugins consume.
* k-means runs in torch rather than scikit-learn: on the shared 2-core machine sklearn's
  ``KMeans(256)`` took 67 s for 2,048 × 1536 rows (2 Lloyd iterations, k-means++ init), while
  the torch loop below codes both sides of the Amazon-book shape (11,000 users + 9,332 items ×
  1536, 3 levels × 256 codes) in 26-40 s on the same loaded machine (``bench_plugins.py``).
* Each level is fitted on at most ``max_fit_rows`` rows (a seeded subsample), then every row is
  assigned to its nearest centre. Lloyd runs at most ``max_iter`` = 20 updates
  (vector_quantize_pytorch's default ``kmeans_iters`` is 10, AutoGraph sets 500 before training
  the RQ-VAE) and stops early once ≤ 0.1% of the rows change code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass
class ResidualCodes:
    """The result of :func:`residual_quantize`.

    Attributes:
        codes: ``[n, L]`` long, ``codes[:, l]`` in ``[0, codebooks[l].shape[0])``.
        codebooks: L tensors ``[K_l, d_s]`` (``K_l = min(K, n)``), the k-means centres per level.
    """

    codes: Tensor
    codebooks: list[Tensor]

    @property
    def levels(self) -> int:
        return int(self.codes.shape[1])

    def reconstruct(self, levels: int | None = None) -> Tensor:
        """``Σ_{l<levels} C_l[c_l]`` ``[n, d_s]`` (all levels by default)."""
        levels = self.levels if levels is None else levels
        out = torch.zeros(self.codes.shape[0], self.codebooks[0].shape[1])
        for level in range(levels):
            out = out + self.codebooks[level][self.codes[:, level]]
        return out


def _as_float(vectors: Tensor | np.ndarray) -> Tensor:
    if isinstance(vectors, np.ndarray):
        vectors = torch.from_numpy(vectors)
    return vectors.detach().to("cpu", torch.float32).clone()


def nearest(rows: Tensor, centres: Tensor, chunk: int = 8192) -> Tensor:
    """Index of the nearest centre (L2) per row, in chunks to bound the ``[chunk, K]`` matrix."""
    centre_norms = centres.square().sum(1)
    out = torch.empty(rows.shape[0], dtype=torch.long)
    for start in range(0, rows.shape[0], chunk):
        block = rows[start:start + chunk]
        # ‖x − c‖² = ‖x‖² − 2 x·c + ‖c‖²; ‖x‖² is constant per row, so it does not change argmin.
        out[start:start + chunk] = (centre_norms[None, :] - 2.0 * block @ centres.T).argmin(1)
    return out


def kmeans(rows: Tensor, k: int, iterations: int, generator: torch.Generator,
           tolerance: float = 1e-3) -> Tensor:
    """Lloyd's k-means with sampled-row init (``vector_quantize_pytorch.kmeans``), ``[k, d]``.

    Stops after ``iterations`` updates or once at most ``tolerance`` of the rows change code.
    """
    centres = rows[torch.randperm(rows.shape[0], generator=generator)[:k]].clone()
    assigned = nearest(rows, centres)
    for _ in range(iterations):
        counts = torch.bincount(assigned, minlength=k)
        sums = torch.zeros_like(centres).index_add_(0, assigned, rows)
        filled = counts > 0  # an empty code keeps its centre (as vector_quantize_pytorch)
        centres[filled] = sums[filled] / counts[filled, None].to(rows.dtype)
        updated = nearest(rows, centres)
        changed = int((updated != assigned).sum())
        assigned = updated
        if changed <= tolerance * rows.shape[0]:
            break
    return centres


def _fit_level(residual: Tensor, codes: int, seed: int, max_fit_rows: int,
               max_iter: int) -> Tensor:
    """k-means centres ``[K, d_s]`` of one level (``K = min(codes, rows)``), seeded subsample."""
    generator = torch.Generator().manual_seed(seed)
    fit_rows = residual
    if residual.shape[0] > max_fit_rows:
        chosen = torch.randperm(residual.shape[0], generator=generator)[:max_fit_rows]
        fit_rows = residual[chosen.sort().values]
    return kmeans(fit_rows, min(codes, fit_rows.shape[0]), max_iter, generator)


def residual_quantize(vectors: Tensor | np.ndarray, *, levels: int = 3, codes: int = 256,
                      seed: int = 0, max_fit_rows: int = 16384,
                      max_iter: int = 20) -> ResidualCodes:
    """Residual k-means codes of ``vectors`` ``[n, d_s]``.

    Args:
        vectors: the frozen text vectors of one side (users or items).
        levels: L, number of residual levels (UIST / AutoGraph: 3).
        codes: K, codebook size per level (AutoGraph: 256 items, 300 users).
        seed: seeds the fitting subsample and the initial centres (level ``l`` uses ``seed + l``).
        max_fit_rows: rows used to fit each level's k-means; all rows are assigned afterwards.
        max_iter: Lloyd iterations per level.

    Returns:
        :class:`ResidualCodes` with ``codes [n, L]`` and the L codebooks.

    Example::

        x = torch.randn(1000, 64)
        rq = residual_quantize(x, levels=3, codes=32)
        error = (rq.reconstruct() - x).square().sum(1).mean()
    """
    if levels < 1 or codes < 1:
        raise ValueError(f"levels and codes must be >= 1, got levels={levels}, codes={codes}")
    residual = _as_float(vectors)
    if residual.ndim != 2 or residual.shape[0] == 0:
        raise ValueError(f"expected a non-empty [n, d] matrix, got shape {residual.shape}")
    all_codes, codebooks = [], []
    for level in range(levels):
        centres = _fit_level(residual, codes, seed + level, max_fit_rows, max_iter)
        assigned = nearest(residual, centres)
        residual -= centres[assigned]
        all_codes.append(assigned)
        codebooks.append(centres)
    return ResidualCodes(torch.stack(all_codes, dim=1), codebooks)
