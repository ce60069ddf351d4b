"""Scoring and evaluation of a trained model: full ranking with masking, the protocol record,
per-user metrics averaged over seeds.

The trainer validates and tests through :func:`evaluate_split`; ``lmmrec evaluate``,
``explain``, ``report`` and ``ablate`` read the same functions, never the trainer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from lmmrec_cli.console import SILENT, Progress
from lmmrec_cli.errors import UsageError
from lmmrec_cli.metrics import DEFAULT_KS, RECALL_NORMALISATION, RankingResult, full_ranking

if TYPE_CHECKING:
    import scipy.sparse as sp
    import torch

    from lmmrec_cli.data.dataset import Interactions, PreparedDataset
    from lmmrec_cli.models.base import BaseModel, Embeddings, Plugin


def score_function(model: BaseModel, plugin: Plugin) -> tuple[Callable[[torch.Tensor], torch.Tensor], Embeddings]:
    """The eval-forward embeddings and a ``users → scores [b, I]`` function over them."""
    import torch

    with torch.no_grad():
        emb = model.final(ego_offset=plugin.input_offset())

    def scores(users: torch.Tensor) -> torch.Tensor:
        return plugin.fuse_scores(users, model.score(users, emb), emb)

    return scores, emb


def masked_items(inter: Interactions, *, mask_valid: bool) -> sp.csr_matrix:
    """The items ranking leaves out, users × items: training items, plus validation items
    when ``mask_valid`` (RecBole's test protocol)."""
    exclude: sp.csr_matrix = inter.matrix("train")
    if mask_valid:
        exclude = (exclude + inter.matrix("valid")).tocsr()
    return exclude


def saturated_selection(data: PreparedDataset, metric: str) -> str | None:
    """A warning when ``metric`` (``recall@K``) can barely tell models apart on ``data``'s
    validation users: with ``n`` unseen items a random ranking already puts each validation item
    in the top K with probability ``min(1, K / n)``. None when that chance recall is under 0.5,
    or for NDCG (it depends on the order within the top K)."""
    kind, _, k_text = metric.partition("@")
    if kind != "recall" or not k_text.isdigit():
        return None
    k = int(k_text)
    inter = data.interactions
    valid_users = np.flatnonzero(np.diff(inter.matrix("valid").indptr))
    if valid_users.size == 0:
        return None
    unseen = data.n_items - np.diff(inter.matrix("train").indptr)[valid_users]
    chance = float(np.mean(np.minimum(1.0, k / np.maximum(unseen, 1))))
    if chance < 0.5:
        return None
    return (f"--select {metric} on {data.ref.name}: a random ranking already scores {metric} {chance:.2f} on "
            f"its validation users ({data.n_items} items, about {np.median(unseen):.0f} unseen per user), so "
            f"selection and early stopping barely see the model; select on ndcg@{k} or a smaller K")


def evaluate_split(
    model: BaseModel,
    plugin: Plugin,
    dataset: PreparedDataset,
    *,
    split: str = "test",
    mask_valid: bool = False,
    ks: tuple[int, ...] = DEFAULT_KS,
    chunk_size: int = 2048,
    device: torch.device,
    progress: Progress = SILENT,
) -> RankingResult:
    """Full ranking of ``split`` with training items masked (and validation items at test
    time when ``mask_valid``; never at validation time, where they are the targets)."""
    if split not in ("test", "valid"):
        raise UsageError(f"--split {split!r}: use test or valid")
    inter = dataset.interactions
    exclude = masked_items(inter, mask_valid=mask_valid and split == "test")
    target = inter.matrix(split)
    was_training = model.training
    model.eval()
    plugin.eval()
    try:
        scores, _ = score_function(model, plugin)
        n_eval = int((np.diff(target.indptr) > 0).sum())
        with progress.task(f"evaluate {split}", total=n_eval) as bar:
            return full_ranking(scores, target, exclude, ks=ks, chunk_size=chunk_size, device=device,
                                on_chunk=lambda done: bar.update(completed=done))
    finally:
        model.train(was_training)
        plugin.train(was_training)


def protocol(split: str, mask_valid: bool, ks: tuple[int, ...]) -> dict[str, Any]:
    """What an evaluation did, stated with its numbers."""
    masked = ["train"] + (["valid"] if mask_valid and split == "test" else [])
    return {
        "split": split,
        "ranking": "full (all items)",
        "masked": masked,
        "ks": list(ks),
        "recall_normalisation": RECALL_NORMALISATION,
        "ndcg": "binary relevance, IDCG over min(N, |test items|)",
    }


def mean_over_seeds(results: list[RankingResult]) -> RankingResult:
    """Per-user metrics averaged over runs evaluated on the same users."""
    first = results[0]
    for other in results[1:]:
        if not np.array_equal(other.users, first.users):
            raise ValueError("runs to average were evaluated on different users")
    recall = {k: np.mean([r.recall[k] for r in results], axis=0) for k in first.ks}
    ndcg = {k: np.mean([r.ndcg[k] for r in results], axis=0) for k in first.ks}
    return RankingResult(first.ks, first.users, recall, ndcg)
