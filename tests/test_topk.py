"""kernels/topk.py against a numpy reference (stable argsort), with hypothesis for ties/exclusions/k."""

from __future__ import annotations

import time

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from mfrec.kernels.topk import select_topk, topk_dot


def random_pattern(n_rows: int, n_cols: int, density: float, rng: np.random.Generator) -> sp.csr_matrix:
    """A random CSR pattern (``scipy.sparse.random`` takes ``rng=`` only from scipy 1.15 on: this works on all)."""
    nnz = int(round(density * n_rows * n_cols))
    flat = rng.choice(n_rows * n_cols, size=nnz, replace=False) if nnz else np.zeros(0, dtype=np.int64)
    return sp.csr_matrix((np.ones(nnz), (flat // n_cols, flat % n_cols)), shape=(n_rows, n_cols))


def reference_topk(scores, k, exclude=None, allowed=None):
    """Per row: candidates sorted by (-score, index) with NaN as -inf, first k; as python lists."""
    scores = np.asarray(scores, dtype=np.float64)
    b, n = scores.shape
    out = []
    for r in range(b):
        cand = np.ones(n, dtype=bool)
        if allowed is not None:
            cand &= allowed
        if exclude is not None:
            cand[exclude[r].indices] = False
        idx = np.flatnonzero(cand)
        s = np.where(np.isnan(scores[r, idx]), -np.inf, scores[r, idx])
        order = np.lexsort((idx, -s))  # primary: score descending; secondary: index ascending
        out.append(idx[order][:k])
    return out


@st.composite
def problems(draw):
    b = draw(st.integers(1, 6))
    n = draw(st.integers(1, 40))
    k = draw(st.integers(1, 50))  # often larger than the candidate count
    levels = draw(st.sampled_from([3, 10, 1000]))  # few levels: many ties
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    scores = rng.integers(-levels, levels, size=(b, n)).astype(np.float32) / 4
    if draw(st.booleans()):
        scores[rng.random((b, n)) < 0.05] = np.nan
    if draw(st.booleans()):
        scores[rng.random((b, n)) < 0.05] = -np.inf
    exclude = random_pattern(b, n, draw(st.sampled_from([0.0, 0.2, 0.7])), rng)
    allowed = rng.random(n) < draw(st.sampled_from([0.3, 0.9])) if draw(st.booleans()) else None
    return scores, k, exclude, allowed


def _check_against_reference(items, top, counts, scores, k, exclude, allowed):
    ref = reference_topk(scores, k, exclude, allowed)
    for r, expected in enumerate(ref):
        c = int(counts[r])
        assert c == len(expected)
        np.testing.assert_array_equal(items[r, :c], expected)
        s = np.where(np.isnan(scores[r, expected]), -np.inf, scores[r, expected]).astype(np.float32)
        np.testing.assert_array_equal(top[r, :c], s)
        assert (items[r, c:] == -1).all()
        assert np.isneginf(top[r, c:]).all()


@settings(max_examples=150, deadline=None)
@given(problems())
def test_select_topk_matches_reference(problem):
    scores, k, exclude, allowed = problem
    items, top, counts = select_topk(scores, k, exclude.indptr, exclude.indices, allowed)
    assert items.dtype == np.int32 and top.dtype == np.float32 and counts.dtype == np.int32
    assert items.shape == (scores.shape[0], k)
    _check_against_reference(items, top, counts, scores, k, exclude, allowed)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 7), st.integers(1, 30), st.integers(1, 5), st.integers(1, 35), st.integers(0, 2**32 - 1))
def test_topk_dot_matches_reference_across_blocks(b, n, d, k, seed):
    rng = np.random.default_rng(seed)
    U = rng.integers(-2, 3, size=(b, d)).astype(np.float32)  # small integers: exact dot products, many ties
    V = rng.integers(-2, 3, size=(n, d)).astype(np.float32)
    exclude = random_pattern(b, n, 0.3, rng)
    allowed = rng.random(n) < 0.8
    # a tiny block budget forces several blocks (one row each when n is large)
    items, top, counts = topk_dot(U, V, k, exclude.indptr, exclude.indices, allowed, block_bytes=4 * n * 2)
    kk = min(k, n)
    assert items.shape == (b, kk)
    _check_against_reference(items, top, counts, U @ V.T, kk, exclude, allowed)


def test_unsorted_exclusion_rows_are_handled():
    scores = np.array([[5, 4, 3, 2, 1], [1, 2, 3, 4, 5]], dtype=np.float32)
    indptr = np.array([0, 2, 4])
    indices = np.array([1, 0, 4, 3])  # unsorted within each row
    items, top, counts = select_topk(scores, 2, indptr, indices)
    assert items.tolist() == [[2, 3], [2, 1]]
    assert counts.tolist() == [2, 2]


def test_ties_broken_by_lower_index_and_explicit_zero_excludes():
    scores = np.zeros((1, 6), dtype=np.float32)
    excl = sp.csr_matrix((np.array([0.0], np.float32), np.array([1]), np.array([0, 1])), shape=(1, 6))
    assert excl.nnz == 1  # the stored zero is kept: it still excludes item 1
    items, _, counts = select_topk(scores, 3, excl.indptr, excl.indices)
    assert items[0].tolist() == [0, 2, 3] and counts[0] == 3


def test_no_candidates_gives_empty_rows():
    scores = np.ones((2, 3), dtype=np.float32)
    items, top, counts = select_topk(scores, 2, allowed=np.zeros(3, bool))
    assert counts.tolist() == [0, 0]
    assert (items == -1).all() and np.isneginf(top).all()


def test_float64_scores_and_bad_arguments():
    scores = np.array([[0.1, 0.3, 0.30000001, 0.5]])  # 0.3 and 0.30000001 are one float32: a tie
    items, top, _ = select_topk(scores, 3)
    assert items[0].tolist() == [3, 1, 2] and top.dtype == np.float32
    items, _, _ = select_topk(np.array([[1, 3, 2]]), 2)  # integer scores are accepted
    assert items[0].tolist() == [1, 2]
    with pytest.raises(ValueError, match="k must be >= 1"):
        select_topk(scores, 0)
    with pytest.raises(ValueError, match="allowed mask"):
        select_topk(scores, 1, allowed=np.ones(2, bool))
    with pytest.raises(ValueError, match="indptr"):
        select_topk(scores, 1, np.array([0, 1, 2]), np.array([0, 1]))
    with pytest.raises(ValueError, match="do not align"):
        topk_dot(np.ones((2, 3)), np.ones((4, 2)), 1)


def test_topk_dot_float64_inputs_and_empty_users():
    rng = np.random.default_rng(0)
    U, V = rng.standard_normal((3, 4)), rng.standard_normal((10, 4))
    items, top, _ = topk_dot(U, V, 4)
    ref = np.argsort(-(U @ V.T), axis=1, kind="stable")[:, :4]
    np.testing.assert_array_equal(items, ref)
    np.testing.assert_allclose(top, np.take_along_axis(U @ V.T, ref, axis=1), rtol=1e-5, atol=1e-5)
    items, top, counts = topk_dot(np.zeros((0, 4)), V, 3)
    assert items.shape == (0, 3) and counts.shape == (0,)


@pytest.mark.slow
def test_topk_dot_scale_10k_users_100k_items_64_factors():
    rng = np.random.default_rng(42)
    U = rng.standard_normal((10_000, 64), dtype=np.float32)
    V = rng.standard_normal((100_000, 64), dtype=np.float32)
    # about 50 seen items per user as exclusions
    excl = random_pattern(10_000, 100_000, 5e-4, rng)
    topk_dot(U[:10], V, 10, excl[:10].indptr, excl[:10].indices)  # JIT warm-up
    start = time.perf_counter()
    items, top, counts = topk_dot(U, V, 10, excl.indptr, excl.indices)
    elapsed = time.perf_counter() - start
    print(f"\ntopk_dot 10k users x 100k items x 64 factors, k=10: {elapsed:.2f} s")
    assert (counts == 10).all()
    check = rng.choice(10_000, 20, replace=False)
    for r in check:
        s = V.astype(np.float64) @ U[r].astype(np.float64)
        s[excl[r].indices] = -np.inf
        best = np.sort(s)[::-1][:10]
        # same scores as the exact float64 top-10 (float32 GEMM rounding may swap near-ties only)
        np.testing.assert_allclose(np.sort(s[items[r]])[::-1], best, atol=1e-4)
        assert not np.isin(items[r], excl[r].indices).any()
    assert elapsed < 60


def test_serial_and_threaded_selection_agree():
    """Few rows go to the serial kernel, blocks to the threaded one: same answers either way."""
    from mfrec.kernels import topk

    rng = np.random.default_rng(7)
    scores = rng.normal(size=(40, 300)).astype(np.float32)
    scores[:, ::7] = scores[:, :1]  # ties
    indptr = np.arange(0, 41 * 5, 5, dtype=np.int64)
    indices = np.sort(rng.integers(0, 300, size=(40, 5)), axis=1).ravel().astype(np.int32)
    block = topk.select_topk(scores, 12, indptr, indices)
    for r in range(0, 40, 13):
        one = topk.select_topk(scores[r : r + 1], 12, indptr[r : r + 2] - indptr[r], indices[indptr[r] : indptr[r + 1]])
        for got, want in zip(one, block):
            np.testing.assert_array_equal(got[0], want[r])
