"""Full-ranking evaluation (Recall@N, NDCG@N per user) and paired significance tests.

Protocol: RLMRec ``encoder/trainer/metrics.py``, ``datasets_general_cf.py::AllRankTstData``,
``base_model.py::_mask_predict`` (docs/method.md §5):

* every item is ranked for every user with at least one item in the target split; users with
  none are excluded and averages divide by the number of evaluated users;
* the user's **training** items are masked (score −∞). Validation items are *not* masked at
  test time in RLMRec; ``exclude`` is whatever the caller passes (train, or train + valid);
* ``Recall@N = |top-N ∩ T_u| / |T_u|`` (divided by all of the user's target items, not by
  ``min(N, |T_u|)``: RLMRec's and LightGCN-PyTorch's normalisation);
* ``NDCG@N`` with binary relevance, ``DCG = Σ_{j≤N} hit_j / log2(j+1)`` and
  ``IDCG = Σ_{j ≤ min(N, |T_u|)} 1 / log2(j+1)``.

Users are scored in chunks on the model's device and ranked with ``torch.topk``, so memory is
bounded by ``chunk × items``, never ``users × items``. Ties are broken towards the lower item
index (deterministic and testable; ``torch.topk`` alone leaves tie order unspecified): the top
``N+1`` values reveal whether a tie straddles the cut, and only such rows are re-ranked with a
stable sort.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from scipy import stats
from torch import Tensor

RECALL_NORMALISATION = "hits / |test items of the user|"
DEFAULT_KS = (5, 10, 20)


@dataclass
class RankingResult:
    """Per-user metrics of one full-ranking pass."""

    ks: tuple[int, ...]
    users: np.ndarray  # int64 [n] evaluated users (≥ 1 target item), ascending
    recall: dict[int, np.ndarray]  # k → float64 [n]
    ndcg: dict[int, np.ndarray]

    def metric(self, name: str) -> np.ndarray:
        """Per-user values of ``"recall@20"`` / ``"ndcg@10"``."""
        kind, _, k = name.partition("@")
        table = {"recall": self.recall, "ndcg": self.ndcg}.get(kind)
        if table is None or not k.isdigit() or int(k) not in table:
            raise KeyError(f"unknown metric {name!r}; have {', '.join(self.names())}")
        return table[int(k)]

    def names(self) -> list[str]:
        return [f"recall@{k}" for k in self.ks] + [f"ndcg@{k}" for k in self.ks]

    def summary(self) -> dict[str, float]:
        """Means over evaluated users (0.0 when no user was evaluated)."""
        return {n: float(self.metric(n).mean()) if len(self.users) else 0.0 for n in self.names()}

    def to_npz(self, path) -> None:
        arrays = {"users": self.users, "ks": np.asarray(self.ks, dtype=np.int64)}
        arrays.update({n: self.metric(n) for n in self.names()})
        np.savez(path, **arrays)

    @classmethod
    def from_npz(cls, path) -> RankingResult:
        with np.load(path) as data:
            ks = tuple(int(k) for k in data["ks"])
            return cls(ks, data["users"], {k: data[f"recall@{k}"] for k in ks},
                       {k: data[f"ndcg@{k}"] for k in ks})


def rows_to_device(matrix: sp.csr_matrix, rows: np.ndarray, device: torch.device) -> tuple[Tensor, Tensor]:
    """(row-in-chunk, column) index pairs of ``matrix[rows]`` as long tensors on ``device``."""
    sub = matrix[rows]
    counts = np.diff(sub.indptr)
    local = np.repeat(np.arange(len(rows), dtype=np.int64), counts)
    return (torch.from_numpy(local).to(device), torch.from_numpy(sub.indices.astype(np.int64)).to(device))


def top_items(scores: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """Top-``n`` (values, item indices) per row, ties broken towards the lower item index."""
    n_items = scores.shape[1]
    width = min(n + 1, n_items)
    values, indices = torch.topk(scores, width, dim=1)
    if width > n:
        straddle = values[:, n] == values[:, n - 1]
        values, indices = values[:, :n], indices[:, :n]
        if bool(straddle.any()):
            rows = straddle.nonzero().squeeze(1)
            # stable sort keeps index order among equal scores
            sorted_values, sorted_indices = torch.sort(scores[rows], dim=1, descending=True, stable=True)
            values[rows], indices[rows] = sorted_values[:, :n], sorted_indices[:, :n]
    # within the selection, equal values ordered by item index: sort by index, then stably by value
    by_index = torch.argsort(indices, dim=1)
    values, indices = values.gather(1, by_index), indices.gather(1, by_index)
    by_value = torch.sort(values, dim=1, descending=True, stable=True).indices
    return values.gather(1, by_value), indices.gather(1, by_value)


def full_ranking(
    score_fn: Callable[[Tensor], Tensor],
    target: sp.csr_matrix,
    exclude: sp.csr_matrix | None,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    chunk_size: int = 1024,
    device: torch.device | str = "cpu",
    on_chunk: Callable[[int], None] | None = None,
) -> RankingResult:
    """Rank all items for every user with a target item; return per-user Recall/NDCG.

    Args:
        score_fn: maps a long tensor of user indices (on ``device``) to scores ``[b, I]``.
        target: users × items CSR of the relevant items (the test or validation split).
        exclude: users × items CSR of items never recommended (training items; optionally
            validation items too), or None.
        ks: cut-offs N.
        chunk_size: users scored at once; peak memory ≈ ``chunk × I × 4`` bytes (fp32 scores).
        on_chunk: called with the number of users done after every chunk (progress bars).
    """
    device = torch.device(device)
    ks = tuple(sorted(set(int(k) for k in ks)))
    if not ks or ks[0] < 1:
        raise ValueError("cut-offs must be positive integers")
    target = sp.csr_matrix(target, copy=True)
    target.sum_duplicates()  # canonical: sorted indices within rows, so chunk keys are sorted
    n_items = target.shape[1]
    sizes = np.diff(target.indptr)
    users = np.flatnonzero(sizes > 0).astype(np.int64)
    max_k = min(ks[-1], n_items)
    # discount[j] = 1/log2(j+2) for rank j (0-based); idcg_table[m] = Σ_{j<m} discount[j]
    discount = 1.0 / np.log2(np.arange(2, max_k + 2, dtype=np.float64))
    idcg_table = np.concatenate([[0.0], np.cumsum(discount)])
    discount_t = torch.from_numpy(discount).to(device)
    recall = {k: np.zeros(len(users)) for k in ks}
    ndcg = {k: np.zeros(len(users)) for k in ks}
    exclude = sp.csr_matrix(exclude) if exclude is not None else None

    with torch.no_grad():
        for start in range(0, len(users), chunk_size):
            chunk = users[start:start + chunk_size]
            chunk_t = torch.from_numpy(chunk).to(device)
            scores = score_fn(chunk_t).float()
            if exclude is not None:
                rows, cols = rows_to_device(exclude, chunk, device)
                scores[rows, cols] = -math.inf
            values, top = top_items(scores, max_k)
            del scores
            # hits by binary search in the chunk's sorted (row, item) keys: no [chunk, I] mask
            rows, cols = rows_to_device(target, chunk, device)
            target_keys = rows * n_items + cols
            top_keys = torch.arange(len(chunk), device=device).unsqueeze(1) * n_items + top
            found = torch.searchsorted(target_keys, top_keys).clamp_max(target_keys.numel() - 1)
            # an excluded item is never a hit, even if it is also a target item
            hits = (target_keys[found] == top_keys) & torch.isfinite(values)
            hit_f = hits.to(torch.float64)
            cum_hits = hit_f.cumsum(1).cpu().numpy()
            cum_dcg = (hit_f * discount_t).cumsum(1).cpu().numpy()
            n_target = sizes[chunk].astype(np.float64)
            for k in ks:
                kk = min(k, max_k)
                recall[k][start:start + len(chunk)] = cum_hits[:, kk - 1] / n_target
                ideal = idcg_table[np.minimum(kk, sizes[chunk])]
                ndcg[k][start:start + len(chunk)] = cum_dcg[:, kk - 1] / ideal
            if on_chunk is not None:
                on_chunk(min(start + chunk_size, len(users)))
    return RankingResult(ks, users, recall, ndcg)


# -- significance --------------------------------------------------------------------------


@dataclass
class PairedTest:
    metric: str
    mean_a: float
    mean_b: float
    relative: float  # mean_b / mean_a − 1 (NaN when mean_a is 0)
    t_pvalue: float
    wilcoxon_pvalue: float
    n_users: int

    @property
    def significant(self) -> bool:
        """p < 0.05 in the paired t-test (the paper's ``*``)."""
        return self.t_pvalue < 0.05

    def as_dict(self) -> dict:
        return {
            "metric": self.metric, "mean_a": self.mean_a, "mean_b": self.mean_b,
            "relative": self.relative, "t_pvalue": self.t_pvalue,
            "wilcoxon_pvalue": self.wilcoxon_pvalue, "n_users": self.n_users,
            "significant": self.significant,
        }


def paired_test(a: RankingResult, b: RankingResult, metric: str) -> PairedTest:
    """Two-sided paired t-test (``scipy.stats.ttest_rel``) and Wilcoxon signed-rank test over
    the per-user values of ``metric`` of two runs evaluated on the same users (docs/method.md §5).

    When every paired difference is zero the runs are indistinguishable: both p-values are 1.0
    (scipy would return NaN or raise).
    """
    if not np.array_equal(a.users, b.users):
        raise ValueError("the two results were evaluated on different users; use the same split")
    x, y = a.metric(metric), b.metric(metric)
    mean_a, mean_b = float(x.mean()), float(y.mean())
    relative = mean_b / mean_a - 1.0 if mean_a != 0 else float("nan")
    diff = y - x
    if len(diff) < 2 or not np.any(diff != 0):
        t_p = w_p = 1.0
    else:
        t_p = float(stats.ttest_rel(y, x).pvalue)
        if not np.isfinite(t_p):  # constant non-zero difference: t is infinite
            t_p = 0.0
        w_p = float(stats.wilcoxon(y, x, zero_method="wilcox").pvalue)
    return PairedTest(metric, mean_a, mean_b, relative, t_p, w_p, len(diff))
