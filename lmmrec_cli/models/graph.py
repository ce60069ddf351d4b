"""The shared graph module: normalised adjacency, sparse products, edge dropout, sampling.

Everything a base model or a plugin needs from the training interactions, built once per run
and moved to the run's device. Models and plugins import this module, torch and numpy only.

* ``Â = D^-1/2 A D^-1/2`` with ``A = [[0, R], [Rᵀ, 0]]`` over ``N = U + I`` nodes (users first),
  zero-degree rows → 0: RLMRec ``data_handler_general_cf.py::_normalize_adj`` (docs/method.md §1.1).
* Stored as torch sparse **CSR** together with its transpose. RLMRec multiplies a COO tensor
  (``torch.spmm``) whose backward re-derives the transpose on every call; the issue measured
  that as the single largest cost of its trainer, and CSR with a precomputed transpose at about
  2× faster. :func:`spmm` is an autograd function whose backward multiplies by the stored
  transpose, so no layout conversion happens inside the training step.
* Edge dropout (``keep_rate``) drops each stored entry independently and does **not** rescale
  the kept values, exactly as RLMRec's ``SpAdjEdgeDrop`` (``model_utils.py``); the transpose of
  the dropped matrix is a gather through a precomputed permutation, never a sort.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

# torch labels CSR "beta"; the operations used here (construction, CSR @ dense) are stable.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")


class _SpMM(torch.autograd.Function):
    """``a @ x`` for a constant sparse ``a``; the backward uses the stored ``a_t`` (= aᵀ)."""

    @staticmethod
    def forward(ctx, a: Tensor, a_t: Tensor, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.a_t = a_t
        return torch.sparse.mm(a, x)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        a_t = ctx.a_t
        ctx.a_t = None  # drop the reference early: the step's graph may be kept alive longer
        return None, None, torch.sparse.mm(a_t, grad.contiguous())


@dataclass
class SparseOperator:
    """A constant sparse ``N×N`` matrix with its transpose (both CSR) for fast autograd."""

    matrix: Tensor
    transpose: Tensor

    def __matmul__(self, x: Tensor) -> Tensor:
        if x.requires_grad:
            return _SpMM.apply(self.matrix, self.transpose, x)
        return torch.sparse.mm(self.matrix, x)


def _csr(crow: Tensor, col: Tensor, val: Tensor, n: int) -> Tensor:
    # int32 indices when they fit: ~8% faster products than int64 (measured, Amazon-book shape)
    if crow.dtype == torch.int64 and int(crow[-1]) < 2**31 - 1 and n < 2**31 - 1:
        crow, col = crow.to(torch.int32), col.to(torch.int32)
    return torch.sparse_csr_tensor(crow, col, val, size=(n, n), check_invariants=False)


def _crow(rows: Tensor, n: int) -> Tensor:
    counts = torch.bincount(rows, minlength=n)
    return torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])


class Graph:
    """The training graph of one run: adjacency operators, degrees and the training pairs.

    Args:
        n_users, n_items: sizes of the two node sets (node ``n_users + i`` is item ``i``).
        users, items: the training interactions (int arrays of equal length, duplicates ignored).

    Example::

        graph = Graph(3, 2, np.array([0, 1, 2]), np.array([0, 0, 1])).to("cpu")
        x1 = graph.adjacency @ x0          # one LightGCN propagation step, [N, d]
    """

    def __init__(self, n_users: int, n_items: int, users: np.ndarray, items: np.ndarray) -> None:
        self.n_users = int(n_users)
        self.n_items = int(n_items)
        n = self.n_nodes
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        keys = np.unique(users * self.n_items + items)  # sorted, de-duplicated training pairs
        self.train_users = torch.from_numpy(keys // self.n_items)
        self.train_items = torch.from_numpy(keys % self.n_items)
        self.train_keys = torch.from_numpy(keys)
        # Both triangles of A, sorted by (row, col) = CSR order.
        rows = np.concatenate([keys // self.n_items, keys % self.n_items + self.n_users])
        cols = np.concatenate([keys % self.n_items + self.n_users, keys // self.n_items])
        order = np.lexsort((cols, rows))
        rows, cols = rows[order], cols[order]
        degree = np.bincount(rows, minlength=n).astype(np.float64)
        self.degree = torch.from_numpy(degree)
        self._rows = torch.from_numpy(rows)
        self._cols = torch.from_numpy(cols)
        # Position in CSR order of the mirrored entry (c, r) of each entry (r, c): the pattern
        # is symmetric, so the transpose has the same pattern with permuted values.
        entry_keys = rows * n + cols
        self._perm_t = torch.from_numpy(np.searchsorted(entry_keys, cols * n + rows))
        self._crow_full = _crow(self._rows, n)
        self.device = torch.device("cpu")
        self._cache: dict[float, SparseOperator] = {}

    @property
    def n_nodes(self) -> int:
        return self.n_users + self.n_items

    @property
    def n_edges(self) -> int:
        """Stored entries of A (each interaction twice)."""
        return int(self._rows.numel())

    def to(self, device: torch.device | str) -> Graph:
        device = torch.device(device)
        for attr in ("train_users", "train_items", "train_keys", "degree", "_rows", "_cols",
                     "_perm_t", "_crow_full"):
            setattr(self, attr, getattr(self, attr).to(device))
        self.device = device
        self._cache = {}
        return self

    # -- operators ----------------------------------------------------------------------

    def _values(self, gamma: float) -> Tensor:
        """Entries of ``D^-γ A D^(γ-1)`` in CSR order (γ = ½ gives Â); 0^-x is taken as 0."""
        deg = self.degree
        safe = torch.where(deg > 0, deg, torch.ones_like(deg))
        left = torch.where(deg > 0, safe.pow(-gamma), torch.zeros_like(deg))
        right = torch.where(deg > 0, safe.pow(gamma - 1.0), torch.zeros_like(deg))
        return (left[self._rows] * right[self._cols]).to(torch.float32)

    def operator(self, gamma: float = 0.5) -> SparseOperator:
        """``D^-γ A D^(γ-1)`` with its transpose; γ = ½ is the symmetric ``Â`` (cached)."""
        if gamma not in self._cache:
            n = self.n_nodes
            values = self._values(gamma)
            matrix = _csr(self._crow_full, self._cols, values, n)
            if gamma == 0.5:
                transpose = matrix  # Â is symmetric
            else:
                transpose = _csr(self._crow_full, self._cols, values[self._perm_t], n)
            self._cache[gamma] = SparseOperator(matrix, transpose)
        return self._cache[gamma]

    @property
    def adjacency(self) -> SparseOperator:
        """``Â = D^-1/2 A D^-1/2`` (docs/method.md §1.1)."""
        return self.operator(0.5)

    def edge_dropped(self, keep_rate: float, generator: torch.Generator | None = None) -> SparseOperator:
        """``Â`` with each stored entry kept with probability ``keep_rate``, not rescaled.

        RLMRec ``SpAdjEdgeDrop``: ``mask = floor(rand + keep_rate)``; the two mirrored entries
        of an interaction are dropped independently, as there. Dropped entries become explicit
        zeros on the fixed CSR structure instead of being removed: the product is the same, and
        a step then costs one mask multiply and one gather (~1 ms on Amazon-book's 241k
        entries) instead of rebuilding two CSR structures (~25 ms, measured), while the sparse
        products only do ``1/keep_rate`` times the necessary work (~0.4 ms a product there).
        """
        base = self.adjacency
        if keep_rate >= 1.0:
            return base
        n = self.n_nodes
        values = base.matrix.values()
        keep = torch.rand(values.shape, device=values.device, generator=generator) < keep_rate
        kept = values * keep
        crow, col = base.matrix.crow_indices(), base.matrix.col_indices()  # shared, not copied
        matrix = torch.sparse_csr_tensor(crow, col, kept, size=(n, n), check_invariants=False)
        transpose = torch.sparse_csr_tensor(crow, col, kept[self._perm_t], size=(n, n),
                                            check_invariants=False)
        return SparseOperator(matrix, transpose)


def low_pass_basis(op: SparseOperator, rank: int, n_nodes: int, *, iterations: int = 30,
                   seed: int = 0) -> Tensor:
    """Top-``rank`` eigenvectors of the symmetric ``Â`` (largest algebraic eigenvalues).

    Randomised subspace iteration on ``(Â + I)/2``, whose spectrum lies in [0, 1] so the
    dominant directions are the smoothest graph signals (GF-CF's "ideal low-pass" basis; for
    the bipartite ``Â`` these are ``[u; v]/√2`` of the top singular pairs of ``R̃``).
    Returns ``[N, rank]`` with orthonormal columns. Deterministic for a given ``seed``.
    """
    device = op.matrix.device
    generator = torch.Generator().manual_seed(seed)
    width = min(n_nodes, rank + 10)
    q = torch.randn(n_nodes, width, generator=generator).to(device)
    q, _ = torch.linalg.qr(q)
    for _ in range(iterations):
        q, _ = torch.linalg.qr(0.5 * (torch.sparse.mm(op.matrix, q) + q))
    small = q.T @ (torch.sparse.mm(op.matrix, q))
    eigenvalues, vectors = torch.linalg.eigh(0.5 * (small + small.T))
    top = torch.argsort(eigenvalues, descending=True)[:rank]
    return q @ vectors[:, top]


# -- batches and negatives ----------------------------------------------------------------


@dataclass
class Batch:
    """One BPR batch of ``B`` triples ``(u, i⁺, i⁻)``, long tensors on the run's device."""

    users: Tensor
    pos: Tensor
    neg: Tensor

    def __len__(self) -> int:
        return int(self.users.numel())


class NegativeSampler:
    """Uniform negatives over all items, resampled (vectorised) while they hit a positive.

    Membership is tested with ``searchsorted`` on the sorted training keys ``u·I + i``, so an
    epoch costs a few vectorised passes instead of a Python loop per interaction (RLMRec's
    ``TrnData.sample_negs`` loops in Python).
    """

    def __init__(self, graph: Graph, max_rounds: int = 100) -> None:
        self.n_items = graph.n_items
        self.keys = graph.train_keys.cpu()
        self.max_rounds = max_rounds

    def is_positive(self, users: Tensor, items: Tensor) -> Tensor:
        keys = users * self.n_items + items
        pos = torch.searchsorted(self.keys, keys).clamp_max(self.keys.numel() - 1)
        return self.keys[pos] == keys

    def sample(self, users: Tensor, generator: torch.Generator) -> Tensor:
        """Negatives for ``users`` (CPU long tensor); ``generator`` is a CPU generator."""
        neg = torch.randint(self.n_items, users.shape, generator=generator)
        for _ in range(self.max_rounds):
            hit = self.is_positive(users, neg)
            if not bool(hit.any()):
                return neg
            neg[hit] = torch.randint(self.n_items, (int(hit.sum()),), generator=generator)
        return neg  # users who interacted with (almost) every item keep a rare false negative


def epoch_batches(graph: Graph, sampler: NegativeSampler, batch_size: int,
                  generator: torch.Generator, device: torch.device) -> list[Batch]:
    """All training interactions of one epoch in shuffled batches, each with one negative.

    RLMRec's epoch: every training pair once, shuffled, one uniform negative each. Sampling
    runs on the CPU with ``generator`` (so its state can be checkpointed), then moves once.
    """
    users = graph.train_users.cpu()
    items = graph.train_items.cpu()
    order = torch.randperm(users.numel(), generator=generator)
    users, items = users[order], items[order]
    neg = sampler.sample(users, generator)
    users, items, neg = users.to(device), items.to(device), neg.to(device)
    return [
        Batch(users[s:s + batch_size], items[s:s + batch_size], neg[s:s + batch_size])
        for s in range(0, users.numel(), batch_size)
    ]
