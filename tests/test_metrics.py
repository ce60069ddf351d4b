"""Full-ranking metrics against hand-computed values and a naive reference; significance."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from lmmrec_cli.metrics import RankingResult, full_ranking, paired_test, top_items


def csr(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    r = [u for u, items in enumerate(rows) for _ in items]
    c = [i for items in rows for i in items]
    return sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(len(rows), n_items))


def scorer(matrix: np.ndarray):
    table = torch.tensor(matrix, dtype=torch.float32)
    return lambda users: table[users]


def test_hand_computed_recall_and_ndcg_with_masking():
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4]])
    result = full_ranking(scorer(scores), csr([[2, 5]], 6), csr([[0]], 6), ks=(2, 5))
    # item 0 masked → ranking 1, 2, 3, 4, 5; targets 2 (rank 2) and 5 (rank 5)
    assert result.recall[2][0] == pytest.approx(0.5)
    assert result.ndcg[2][0] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert result.recall[5][0] == pytest.approx(1.0)
    assert result.ndcg[5][0] == pytest.approx(
        (1 / math.log2(3) + 1 / math.log2(6)) / (1 + 1 / math.log2(3)))


def test_masked_target_item_is_never_a_hit():
    scores = np.array([[0.9, 0.1, 0.2]])
    result = full_ranking(scorer(scores), csr([[0]], 3), csr([[0]], 3), ks=(1, 3))
    assert result.recall[3][0] == 0.0


def test_fewer_test_items_than_n_uses_all_items_for_recall_and_min_for_idcg():
    scores = np.array([[0.1, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]])
    result = full_ranking(scorer(scores), csr([[0, 6]], 8), None, ks=(5, 20))
    # ranks: 1,2,3,4,5,6,7,0 → item 6 at rank 6, item 0 at rank 8; neither in top-5
    assert result.recall[5][0] == 0.0
    assert result.recall[20][0] == pytest.approx(1.0)  # N larger than the item count
    idcg = 1 + 1 / math.log2(3)  # min(20, 2) = 2 ideal positions
    assert result.ndcg[20][0] == pytest.approx((1 / math.log2(7) + 1 / math.log2(9)) / idcg)


def test_ties_are_broken_towards_the_lower_item_index():
    scores = np.array([[0.5, 0.5, 0.5, 0.1], [0.1, 0.5, 0.5, 0.5]])
    result = full_ranking(scorer(scores), csr([[1], [3]], 4), None, ks=(1, 2, 3))
    assert result.recall[1].tolist() == [0.0, 0.0]
    assert result.recall[2].tolist() == [1.0, 0.0]  # row 0: top-2 = items 0, 1
    assert result.recall[3].tolist() == [1.0, 1.0]
    assert result.ndcg[2][0] == pytest.approx(1 / math.log2(3))
    assert result.ndcg[3][1] == pytest.approx(1 / math.log2(4))  # row 1 ranking: 1, 2, 3


def test_users_without_target_items_are_excluded_and_empty_train_rows_work():
    scores = np.array([[0.3, 0.2, 0.1], [0.3, 0.2, 0.1], [0.1, 0.2, 0.3]])
    target = csr([[1], [], [2]], 3)
    exclude = csr([[0], [0], []], 3)  # user 2 has no training items
    result = full_ranking(scorer(scores), target, exclude, ks=(1,))
    assert result.users.tolist() == [0, 2]
    assert result.recall[1].tolist() == [1.0, 1.0]
    assert result.summary()["recall@1"] == 1.0


def naive(scores: np.ndarray, target: sp.csr_matrix, exclude: sp.csr_matrix, k: int):
    recalls, ndcgs = [], []
    for u in range(scores.shape[0]):
        truth = set(target[u].indices.tolist())
        if not truth:
            continue
        s = scores[u].astype(np.float64).copy()
        s[exclude[u].indices] = -np.inf
        order = np.argsort(-s, kind="stable")[:k]
        hits = [int(i in truth and np.isfinite(s[i])) for i in order]
        dcg = sum(h / math.log2(j + 2) for j, h in enumerate(hits))
        idcg = sum(1 / math.log2(j + 2) for j in range(min(k, len(truth))))
        recalls.append(sum(hits) / len(truth))
        ndcgs.append(dcg / idcg)
    return np.array(recalls), np.array(ndcgs)


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_matches_naive_reference_with_many_ties_for_any_chunk_size(chunk):
    rng = np.random.default_rng(3)
    n_users, n_items = 40, 30
    scores = rng.integers(0, 6, size=(n_users, n_items)).astype(np.float32)  # many ties
    target = sp.csr_matrix(rng.random((n_users, n_items)) < 0.1)
    exclude = sp.csr_matrix((rng.random((n_users, n_items)) < 0.2).astype(np.float32) - target.multiply(1))
    exclude.eliminate_zeros()
    exclude.data[:] = 1
    result = full_ranking(scorer(scores), target, exclude, ks=(5, 10), chunk_size=chunk)
    for k in (5, 10):
        recall, ndcg = naive(scores, target, exclude, k)
        np.testing.assert_allclose(result.recall[k], recall)
        np.testing.assert_allclose(result.ndcg[k], ndcg)


def test_top_items_orders_ties_inside_the_selection_by_index():
    values, indices = top_items(torch.tensor([[1.0, 3.0, 3.0, 2.0, 3.0]]), 3)
    assert indices.tolist() == [[1, 2, 4]]
    assert values.tolist() == [[3.0, 3.0, 3.0]]


def test_npz_round_trip(tmp_path):
    result = RankingResult((5,), np.array([0, 3]), {5: np.array([0.5, 1.0])}, {5: np.array([0.2, 0.3])})
    result.to_npz(tmp_path / "r.npz")
    back = RankingResult.from_npz(tmp_path / "r.npz")
    assert back.ks == (5,) and back.users.tolist() == [0, 3]
    assert back.metric("recall@5").tolist() == [0.5, 1.0]
    with pytest.raises(KeyError):
        back.metric("recall@7")


def _result(values: np.ndarray) -> RankingResult:
    users = np.arange(len(values))
    return RankingResult((20,), users, {20: values}, {20: values})


def test_paired_tests_identical_runs_give_p_one_without_crashing():
    a = _result(np.array([0.0, 0.5, 1.0, 0.25]))
    test = paired_test(a, _result(a.recall[20].copy()), "recall@20")
    assert test.t_pvalue == 1.0 and test.wilcoxon_pvalue == 1.0 and not test.significant
    zeros = _result(np.zeros(5))
    assert paired_test(zeros, _result(np.zeros(5)), "ndcg@20").t_pvalue == 1.0


def test_paired_tests_detect_a_clear_improvement():
    rng = np.random.default_rng(0)
    base = rng.random(200) * 0.5
    better = base + 0.05 + rng.normal(0, 0.01, 200)
    test = paired_test(_result(base), _result(better), "recall@20")
    assert test.significant and test.wilcoxon_pvalue < 0.05
    assert test.relative == pytest.approx(better.mean() / base.mean() - 1)
    noise = paired_test(_result(base), _result(base + rng.normal(0, 0.01, 200)), "recall@20")
    assert noise.t_pvalue > 0.001  # no systematic difference


def test_paired_test_refuses_different_user_sets():
    a = _result(np.array([0.1, 0.2]))
    b = RankingResult((20,), np.array([0, 2]), {20: np.array([0.1, 0.2])}, {20: np.array([0.1, 0.2])})
    with pytest.raises(ValueError):
        paired_test(a, b, "recall@20")
