"""evaluation/metrics.py against hand-computed values, a pure-python reference, and bounds (hypothesis)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import mean_absolute_error, mean_squared_error, roc_auc_score

from mfrec.evaluation import metrics as M
from mfrec.exceptions import InvalidDataError, InvalidParameterError

RANKING = {
    "precision": M.precision_at_k,
    "recall": M.recall_at_k,
    "ndcg": M.ndcg_at_k,
    "map": M.map_at_k,
    "mrr": M.mrr,
    "hit_rate": M.hit_rate_at_k,
}


def csr(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    indptr = np.r_[0, np.cumsum([len(r) for r in rows])]
    indices = np.array([i for r in rows for i in r], dtype=np.int32)
    return sp.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(len(rows), n_items))


# ---------------------------------------------------------------------------------------------- reference
def reference(top: list[list[int]], truth: list[set[int]], k: int) -> dict[str, float]:
    """Textbook definitions, one user at a time (users with empty truth skipped)."""
    acc: dict[str, list[float]] = {name: [] for name in RANKING}
    for lst, rel in zip(top, truth):
        if not rel:
            continue
        lst = [i for i in lst[:k]]
        hits = [1 if (i >= 0 and i in rel) else 0 for i in lst]
        acc["precision"].append(sum(hits) / k)
        acc["recall"].append(sum(hits) / len(rel))
        dcg = sum(h / math.log2(j + 2) for j, h in enumerate(hits))
        idcg = sum(1 / math.log2(j + 2) for j in range(min(len(rel), k)))
        acc["ndcg"].append(dcg / idcg)
        ap, n_hit = 0.0, 0
        for j, h in enumerate(hits):
            if h:
                n_hit += 1
                ap += n_hit / (j + 1)
        acc["map"].append(ap / min(len(rel), k))
        first = next((j for j, h in enumerate(hits) if h), None)
        acc["mrr"].append(0.0 if first is None else 1 / (first + 1))
        acc["hit_rate"].append(float(any(hits)))
    return {name: (sum(v) / len(v) if v else float("nan")) for name, v in acc.items()}


def reference_auc(scores: np.ndarray, truth: list[set[int]], exclude: list[set[int]]) -> float:
    values = []
    for u, row in enumerate(scores):
        cand = [i for i in range(len(row)) if i not in exclude[u]]
        pos = [i for i in cand if i in truth[u]]
        neg = [i for i in cand if i not in truth[u]]
        if not pos or not neg:
            continue
        good = sum(1.0 if row[p] > row[n] else 0.5 if row[p] == row[n] else 0.0 for p in pos for n in neg)
        values.append(good / (len(pos) * len(neg)))
    return sum(values) / len(values) if values else float("nan")


# ---------------------------------------------------------------------------------------------- by hand
TOP = np.array([[2, 0, 5], [1, 4, -1], [0, 1, 2], [0, 1, 2]])
TRUTH = csr([[0, 3], [1, 4, 5], [], [5]], 6)


def test_ranking_metrics_by_hand():
    # user 0: hit at rank 2 of 3, |T|=2; user 1: hits at ranks 1, 2, |T|=3; user 2: no truth (skipped);
    # user 3: no hit.
    d = 1 / math.log2(3)  # discount of rank 2
    expected = {
        "precision": (1 / 3 + 2 / 3 + 0) / 3,
        "recall": (1 / 2 + 2 / 3 + 0) / 3,
        "ndcg": (d / (1 + d) + (1 + d) / (1 + d + 0.5) + 0) / 3,
        "map": ((1 / 2) / 2 + (1 + 1) / 3 + 0) / 3,
        "mrr": (1 / 2 + 1 + 0) / 3,
        "hit_rate": 2 / 3,
    }
    for name, fn in RANKING.items():
        assert fn(TOP, TRUTH) == pytest.approx(expected[name], abs=1e-12), name
    together = M.ranking_metrics(TOP, TRUTH)
    assert together == pytest.approx(expected)
    per_user = M.precision_at_k(TOP, TRUTH, per_user=True)
    assert np.isnan(per_user[2]) and per_user[[0, 1, 3]] == pytest.approx([1 / 3, 2 / 3, 0])
    # items 0, 1, 2, 4, 5 are recommended to someone: 5 of 6
    assert M.catalog_coverage_at_k(TOP, 6) == pytest.approx(5 / 6)


def test_k_truncates_and_a_larger_k_counts_missing_ranks_as_misses():
    assert M.precision_at_k(TOP, TRUTH, k=1) == pytest.approx((0 + 1 + 0) / 3)
    assert M.recall_at_k(TOP, TRUTH, k=2) == pytest.approx((1 / 2 + 2 / 3) / 3)
    assert M.precision_at_k(TOP, TRUTH, k=6) == pytest.approx((1 / 6 + 2 / 6) / 3)
    assert M.catalog_coverage_at_k(TOP, 6, k=1) == pytest.approx(3 / 6)


def test_no_user_with_truth_gives_nan():
    empty = csr([[], []], 4)
    assert math.isnan(M.ndcg_at_k(np.array([[0, 1], [2, 3]]), empty))


def test_auc_by_hand():
    scores = np.array(
        [
            [0.9, 0.1, 0.5, 0.5, 0.3],  # candidates 1..4 (0 excluded); positive 2 beats 1 and 4, ties 3
            [1.0, 2.0, 3.0, 4.0, 5.0],  # positives 0, 1 lose to every negative
            [1.0, 1.0, 1.0, 1.0, 1.0],  # every candidate positive: skipped
        ]
    )
    truth = csr([[2], [0, 1], [0, 1, 2]], 5)
    exclude = csr([[0], [], [3, 4]], 5)
    per_user = M.auc(scores, truth, exclude, per_user=True)
    assert per_user[:2] == pytest.approx([(1 + 1 + 0.5) / 3, 0.0])
    assert np.isnan(per_user[2])
    assert M.auc(scores, truth, exclude) == pytest.approx(((1 + 1 + 0.5) / 3 + 0) / 2)


def test_auc_matches_sklearn_without_ties():
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((1, 50))
    labels = np.zeros(50, int)
    labels[rng.choice(50, 10, replace=False)] = 1
    truth = sp.csr_matrix(labels.reshape(1, -1))
    assert M.auc(scores, truth) == pytest.approx(roc_auc_score(labels, scores[0]))


def test_rmse_mae_match_sklearn():
    rng = np.random.default_rng(1)
    t, p = rng.uniform(1, 5, 100), rng.uniform(1, 5, 100)
    assert M.rmse(t, p) == pytest.approx(math.sqrt(mean_squared_error(t, p)))
    assert M.mae(t, p) == pytest.approx(mean_absolute_error(t, p))
    assert M.rmse([1, 2, 3], [1, 2, 5]) == pytest.approx(math.sqrt(4 / 3))
    assert M.mae([1, 2, 3], [1, 2, 5]) == pytest.approx(2 / 3)


# ---------------------------------------------------------------------------------------------- errors
def test_errors_name_the_fault():
    with pytest.raises(InvalidDataError, match="y_true has 2 values but y_pred has 3"):
        M.rmse([1, 2], [1, 2, 3])
    with pytest.raises(InvalidDataError, match=r"y_pred\[1\] is nan"):
        M.mae([1, 2], [1, float("nan")])
    with pytest.raises(InvalidDataError, match="empty"):
        M.rmse([], [])
    with pytest.raises(InvalidDataError, match="truth has 4 rows but top_k has 2"):
        M.precision_at_k(TOP[:2], TRUTH)
    with pytest.raises(InvalidDataError, match=r"top_k\[0, 1\] = 9 is not an item index"):
        M.recall_at_k(np.array([[0, 9, 1], [0, 1, 2], [0, 1, 2], [0, 1, 2]]), TRUTH)
    with pytest.raises(InvalidDataError, match="row 1 recommends item 4 more than once"):
        M.ndcg_at_k(np.array([[0, 1, 2], [4, 3, 4], [0, 1, 2], [0, 1, 2]]), TRUTH)
    with pytest.raises(InvalidDataError, match="scipy sparse"):
        M.mrr(TOP, np.ones((4, 6)))
    with pytest.raises(InvalidParameterError, match="k must be an integer >= 1"):
        M.map_at_k(TOP, TRUTH, k=0)
    with pytest.raises(InvalidDataError, match=r"scores\[0, 1\] is NaN"):
        M.auc(np.array([[0.0, np.nan]]), csr([[0]], 2))
    with pytest.raises(InvalidParameterError, match="n_items"):
        M.catalog_coverage_at_k(TOP, 0)


# ---------------------------------------------------------------------------------------------- properties
@st.composite
def ranking_case(draw):
    n_users = draw(st.integers(1, 8))
    n_items = draw(st.integers(1, 12))
    k = draw(st.integers(1, n_items))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    top, truth = [], []
    for _ in range(n_users):
        lst = list(rng.permutation(n_items)[:k])
        n_pad = draw(st.integers(0, k - 1))
        lst = lst[: k - n_pad] + [-1] * n_pad
        top.append(lst)
        truth.append(set(rng.choice(n_items, draw(st.integers(0, n_items)), replace=False).tolist()))
    return np.array(top, dtype=np.int64), truth, n_items, k


@settings(max_examples=60, deadline=None)
@given(ranking_case())
def test_ranking_metrics_match_reference_and_lie_in_unit_interval(case):
    top, truth_sets, n_items, k = case
    truth = csr([sorted(s) for s in truth_sets], n_items)
    ref = reference(top.tolist(), truth_sets, k)
    got = M.ranking_metrics(top, truth)
    for name, fn in RANKING.items():
        single = fn(top, truth)
        if math.isnan(ref[name]):
            assert math.isnan(single) and math.isnan(got[name])
            continue
        assert single == pytest.approx(ref[name], abs=1e-12), name
        assert got[name] == pytest.approx(ref[name], abs=1e-12), name
        assert 0.0 <= single <= 1.0
    assert 0.0 <= M.catalog_coverage_at_k(top, n_items) <= 1.0


@settings(max_examples=60, deadline=None)
@given(
    n_users=st.integers(1, 6),
    n_items=st.integers(2, 10),
    seed=st.integers(0, 2**31 - 1),
    n_levels=st.integers(1, 4),
)
def test_auc_matches_pairwise_reference(n_users, n_items, seed, n_levels):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, n_levels, (n_users, n_items)).astype(float)  # few levels: many ties
    truth_sets = [set(np.flatnonzero(rng.random(n_items) < 0.3).tolist()) for _ in range(n_users)]
    excl_sets = [set(np.flatnonzero(rng.random(n_items) < 0.3).tolist()) - truth_sets[u] for u in range(n_users)]
    truth = csr([sorted(s) for s in truth_sets], n_items)
    exclude = csr([sorted(s) for s in excl_sets], n_items)
    ref = reference_auc(scores, truth_sets, excl_sets)
    got = M.auc(scores, truth, exclude)
    if math.isnan(ref):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(ref, abs=1e-12)
        assert 0.0 <= got <= 1.0
