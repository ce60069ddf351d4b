"""Residual quantisation (RQ) of frozen text vectors into L-level semantic codes.

Shared by UIST (METHOD §3.3) and AutoGraph (METHOD §3.5). Level ``l`` runs k-means on the
residual left by levels ``1..l-1`` and assigns each row its nearest centre (L2), so a row's codes
``(c_1, ..., c_L)`` reconstruct it as ``Σ_l C_l[c_l]``.

Follows the *inference* of ``Jyonn/SemanticTokenizer`` ``model/quantization/residual.py``
(per level nearest code by L2 ``cdist``, next level takes ``embeds − codes``) and the k-means
initialisation of the ``vector_quantize_pytorch.ResidualVQ`` that AutoGraph ``quantization.py``
trains (``kmeans_init=True``, 500 iterations).

Deviation (documented in both plugins): both originals then *train* an RQ-VAE (MLP encoder /
decoder, commitment 0.25, 1000 epochs for AutoGraph). Here the codebooks are the k-means
centres themselves, fitted once at plugin construction, with no encoder network: it is the
RQ-VAE's initial state, deterministic for a seed, and takes seconds instead of an extra training
run. The codes are what the plugins consume; an RQ-VAE would mainly rebalance code usage.

k-means is scikit-learn's ``KMeans`` (k-means++, one init). Fitting uses at most
``max_fit_rows`` rows (a seeded subsample) and every row is then assigned to its nearest centre.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.cluster import KMeans
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


def _as_numpy(vectors: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(vectors, Tensor):
        vectors = vectors.detach().cpu().numpy()
    return np.ascontiguousarray(vectors, dtype=np.float32)


def _nearest(rows: np.ndarray, centres: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """Index of the nearest centre (L2) per row, in chunks to bound the ``[chunk, K]`` matrix."""
    centre_norms = (centres * centres).sum(1)
    out = np.empty(rows.shape[0], dtype=np.int64)
    for start in range(0, rows.shape[0], chunk):
        block = rows[start:start + chunk]
        # ‖x − c‖² = ‖x‖² − 2 x·c + ‖c‖²; ‖x‖² is constant per row, so it does not change argmin.
        distances = centre_norms[None, :] - 2.0 * block @ centres.T
        out[start:start + chunk] = np.argmin(distances, axis=1)
    return out


def _fit_level(residual: np.ndarray, codes: int, seed: int, max_fit_rows: int,
               max_iter: int) -> np.ndarray:
    """k-means centres ``[K, d_s]`` of one level, fitted on a seeded subsample."""
    rng = np.random.default_rng(seed)
    fit_rows = residual
    if residual.shape[0] > max_fit_rows:
        fit_rows = residual[np.sort(rng.choice(residual.shape[0], max_fit_rows, replace=False))]
    k = min(codes, fit_rows.shape[0])
    kmeans = KMeans(n_clusters=k, n_init=1, max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings():
        # Tiny inputs with duplicate rows find fewer distinct clusters than k; that is harmless
        # here (the extra codes stay unused).
        warnings.simplefilter("ignore")
        kmeans.fit(fit_rows)
    return kmeans.cluster_centers_.astype(np.float32)


def residual_quantize(vectors: Tensor | np.ndarray, *, levels: int = 3, codes: int = 256,
                      seed: int = 0, max_fit_rows: int = 16384,
                      max_iter: int = 100) -> ResidualCodes:
    """Residual k-means codes of ``vectors`` ``[n, d_s]``.

    Args:
        vectors: the frozen text vectors of one side (users or items).
        levels: L, number of residual levels (UIST / AutoGraph: 3).
        codes: K, codebook size per level (AutoGraph: 256 items, 300 users).
        seed: seeds the fitting subsample and k-means++ (level ``l`` uses ``seed + l``).
        max_fit_rows: rows used to fit each level's k-means; all rows are assigned afterwards.
        max_iter: Lloyd iterations per level.

    Returns:
        :class:`ResidualCodes` with ``codes [n, L]`` and the L codebooks.

    Example::

        rq = residual_quantize(torch.randn(1000, 64), levels=3, codes=32)
        error = (rq.reconstruct() - x).square().sum(1).mean()
    """
    if levels < 1 or codes < 1:
        raise ValueError(f"levels and codes must be >= 1, got levels={levels}, codes={codes}")
    residual = _as_numpy(vectors).copy()
    if residual.ndim != 2 or residual.shape[0] == 0:
        raise ValueError(f"expected a non-empty [n, d] matrix, got shape {residual.shape}")
    all_codes, codebooks = [], []
    for level in range(levels):
        centres = _fit_level(residual, codes, seed + level, max_fit_rows, max_iter)
        assigned = _nearest(residual, centres)
        residual -= centres[assigned]
        all_codes.append(assigned)
        codebooks.append(torch.from_numpy(centres))
    return ResidualCodes(torch.from_numpy(np.stack(all_codes, axis=1)), codebooks)
