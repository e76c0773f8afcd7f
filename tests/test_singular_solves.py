"""Singular and near-singular systems: every dense solve and Cholesky in mfrec against the minimum-norm answer.

Two kinds of input, both for every solve:

- **exactly singular**: exactly collinear columns (a column that is the sum of two others, a one-hot group beside
  the intercept, more factors than the rows that pin them down) or a regularization lost in rounding (1e-300
  beside entries of order 1);
- **near-singular**: columns collinear up to a 1e-9 perturbation, so that the smallest eigenvalue of the Gram
  matrix (~1e-18 of the largest) is below what float64 resolves while no pivot is exactly zero.

The answer is then the minimum-norm least-squares solution, computed here independently by numpy's SVD-based
``lstsq`` with the rank cut-off at ``n eps``. Before the rank checks these solves used ``np.linalg.solve`` (LU
meets a pivot of rounding noise and returns finite nonsense) or Cholesky kernels that only rejected pivots <= 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from model_conformance import planted_interactions
from test_linear_baselines import item_frame, user_frame

from mfrec import Interactions
from mfrec.kernels import als_implicit as K
from mfrec.kernels.als_explicit import als_explicit_step, cholesky_solve
from mfrec.kernels.dense import is_numerically_singular, rank_tolerance, solve_psd
from mfrec.kernels.hybrid import prior_half_step, ridge_map
from mfrec.kernels.linalg import cholesky_upper_inplace
from mfrec.models.content import ContentBased, HybridALS
from mfrec.models.implicit import ImplicitALS
from mfrec.models.linear import GlobalLinear

KINDS = ["singular", "near"]
TINY = 1e-300  # a regularization that rounding swallows: A + TINY I == A in float64


def collinear(kind: str, n: int, p: int, seed: int = 0) -> np.ndarray:
    """``(n, p)`` normal columns whose last is the sum of the first two (``near``: plus 1e-9 noise)."""
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, p))
    Z[:, -1] = Z[:, 0] + Z[:, 1]
    if kind == "near":
        Z[:, -1] += 1e-9 * rng.normal(size=n)
    return Z


def min_norm(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The reference: minimum-norm least squares by SVD with singular values below ``n eps s_max`` dropped."""
    A = np.asarray(A, dtype=np.float64)
    return np.linalg.lstsq(A, np.asarray(b, dtype=np.float64), rcond=A.shape[0] * np.finfo(np.float64).eps)[0]


def assert_close(actual, expected, rtol=1e-6):
    expected = np.asarray(expected, dtype=np.float64)
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), expected, rtol=0, atol=rtol * scale)


# ------------------------------------------------------------------------------------------------- solve_psd
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("consistent", [True, False])
def test_solve_psd_gives_the_minimum_norm_solution(kind, consistent):
    Z = collinear(kind, 40, 6)
    A = Z.T @ Z
    rng = np.random.default_rng(1)
    b = Z.T @ rng.normal(size=40) if consistent else rng.normal(size=6)
    assert is_numerically_singular(A)
    x = solve_psd(A, b)
    assert_close(x, min_norm(A, b))
    assert np.linalg.norm(x) < 10 * np.linalg.norm(b)  # np.linalg.solve: ~1e15 along the null direction


@pytest.mark.parametrize("kind", KINDS)
def test_solve_psd_several_right_hand_sides(kind):
    Z = collinear(kind, 30, 5, seed=2)
    A = Z.T @ Z
    B = Z.T @ np.random.default_rng(3).normal(size=(30, 3))
    assert_close(solve_psd(A, B), min_norm(A, B))


def test_solve_psd_well_conditioned_is_the_exact_solve():
    rng = np.random.default_rng(4)
    M = rng.normal(size=(8, 8))
    A = M @ M.T + np.eye(8)
    b = rng.normal(size=8)
    assert not is_numerically_singular(A)
    np.testing.assert_allclose(solve_psd(A, b), np.linalg.solve(A, b), rtol=1e-10)
    # an ill-conditioned but resolvable system (cond ~ 1e10) is still solved exactly, not truncated
    Q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    A = Q @ np.diag(np.logspace(0, -10, 8)) @ Q.T
    x_true = rng.normal(size=8)
    np.testing.assert_allclose(solve_psd(A, A @ x_true), x_true, rtol=1e-4)


def test_solve_psd_reports_indefinite_and_non_finite_systems():
    A = np.diag([1.0, -1.0, 2.0])  # a saddle: no minimiser, so no minimum-norm minimiser either
    assert np.isnan(solve_psd(A, np.ones(3))).all()
    assert np.isnan(solve_psd(np.array([[np.nan]]), np.ones(1))).all()
    assert np.isnan(solve_psd(np.eye(2), np.array([1.0, np.inf]))).all()
    assert solve_psd(np.zeros((0, 0)), np.zeros(0)).shape == (0,)
    # the zero matrix is singular in every direction: x = 0
    np.testing.assert_array_equal(solve_psd(np.zeros((3, 3)), np.ones(3)), np.zeros(3))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 9), rank=st.integers(0, 8), seed=st.integers(0, 2**32 - 1))
def test_solve_psd_is_the_projection_onto_the_range(n, rank, seed):
    """For any PSD A of rank r: A x is the projection of b onto range(A), and x lies in range(A) (minimum norm)."""
    rank = min(rank, n - 1)
    rng = np.random.default_rng(seed)
    M = rng.normal(size=(n, rank))
    A = M @ M.T
    b = rng.normal(size=n)
    x = solve_psd(A, b)
    Q = np.linalg.qr(M)[0] if rank else np.zeros((n, 0))
    P = Q @ Q.T
    scale = max(1.0, np.abs(x).max()) * max(1.0, np.abs(A).max())
    np.testing.assert_allclose(A @ x, P @ b, atol=1e-7 * scale)
    np.testing.assert_allclose(x, P @ x, atol=1e-7 * max(1.0, np.abs(x).max()))


def test_rank_tolerance_is_numpys_lstsq_cut_off():
    eps64, eps32 = np.finfo(np.float64).eps, np.finfo(np.float32).eps
    assert rank_tolerance(7) == 7 * eps64
    assert rank_tolerance(7, terms=400) == 400 * eps64  # a Gram of 400 rows: rounding grows with the rows
    assert rank_tolerance(0, np.float32) == eps32
    assert rank_tolerance(8, np.float32) == 8 * eps32
    assert rank_tolerance(8, np.float32, terms=10**10) == 10**10 * eps64


# ------------------------------------------------------------------------------ compiled Cholesky kernels
@pytest.mark.parametrize("kind", KINDS)
def test_cholesky_kernels_reject_numerically_singular_matrices(kind):
    """The pivots are checked against n eps max(diag), not against 0: rounding leaves a tiny positive pivot."""
    A = collinear(kind, 50, 7).T @ collinear(kind, 50, 7)
    assert not cholesky_solve(A.copy(), np.ones(7), 7)
    assert not cholesky_upper_inplace(A.copy(), 7)
    assert not cholesky_upper_inplace(A.astype(np.float32), 7)
    # float32 pivots are judged at float32 resolution: a 1e-7 relative pivot passes in float64, not in float32
    B = A + 1e-7 * np.abs(np.diag(A)).max() * np.eye(7)
    assert cholesky_upper_inplace(B.copy(), 7)
    assert not cholesky_upper_inplace(B.astype(np.float32), 7)
    # a well-conditioned matrix still passes
    good = A + np.eye(7)
    assert cholesky_solve(good.copy(), np.ones(7), 7)
    assert cholesky_upper_inplace(good.copy(), 7)


# ------------------------------------------------------------------------------------------- GlobalLinear
def _global_linear_frames(kind):
    """``singular``: the planted tables, whose one-hot user groups are collinear with the intercept (the bug
    report's case: LU returned weights of 4.5 where least squares gives 3.83). ``near``: numeric attributes
    only, one of them a copy of another up to 1e-8 (LU returned weights of ~2e6)."""
    users, items = user_frame(), item_frame()
    if kind == "singular":
        return users, items
    rng = np.random.default_rng(5)
    return users[["age"]].assign(age2=users["age"] + 1e-8 * rng.normal(size=len(users))), items[["year"]]


@pytest.mark.parametrize("kind", KINDS)
def test_global_linear_min_norm_weights(kind):
    data = planted_interactions(seed=3)
    users, items = _global_linear_frames(kind)
    model = GlobalLinear(regularization=0.0).fit(data, users, items)
    rows, cols, vals = data.coo()
    Z = np.hstack([model.user_features_[rows], model.item_features_[cols]]).astype(np.float64)
    r = vals.astype(np.float64)
    Zc = Z - Z.mean(axis=0)
    G = Zc.T @ Zc
    assert is_numerically_singular(G)
    w_ref = min_norm(G, Zc.T @ (r - r.mean()))
    w = np.concatenate([model.user_weights_, model.item_weights_])
    assert_close(w, w_ref, rtol=1e-5)
    assert_close(Z @ w + model.intercept_, Z @ w_ref + r.mean() - Z.mean(axis=0) @ w_ref, rtol=1e-6)


# ------------------------------------------------------------------------------------------- ridge_map
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("ratio", [0.0, TINY])
def test_ridge_map_min_norm(kind, ratio):
    A = collinear(kind, 25, 6, seed=6)
    X = np.random.default_rng(7).normal(size=(25, 3))
    assert_close(ridge_map(A, X, ratio), min_norm(A.T @ A, A.T @ X))


# ------------------------------------------------------------------------------------- explicit ALS rows
def _sparse_rows(n_rows, n_cols, per_row, seed):
    rng = np.random.default_rng(seed)
    dense = np.zeros((n_rows, n_cols))
    for u in range(n_rows):
        dense[u, rng.choice(n_cols, per_row, replace=False)] = rng.integers(1, 6, per_row)
    return sp.csr_matrix(dense)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("biases", [False, True])
def test_explicit_rows_min_norm(kind, biases):
    csr = _sparse_rows(9, 12, 7, seed=8)
    Y = collinear(kind, 12, 5, seed=9)  # the fixed side: collinear factor columns
    bi = np.random.default_rng(10).normal(size=12)
    mu = 3.0
    X = np.zeros((9, 5))
    bu = np.zeros(9)
    bad = als_explicit_step(csr.indptr, csr.indices.astype(np.int32), csr.data.astype(np.float32), Y, bi, mu, TINY,
                            False, biases, X, bu)
    assert bad == 0
    for u in range(9):
        idx = csr.indices[csr.indptr[u]:csr.indptr[u + 1]]
        t = csr.data[csr.indptr[u]:csr.indptr[u + 1]] - mu
        F = Y[idx]
        if biases:
            F = np.hstack([F, np.ones((len(idx), 1))])
            t = t - bi[idx]
        z = min_norm(F.T @ F, F.T @ t)
        assert_close(X[u], z[:5], rtol=1e-5)
        if biases:
            assert bu[u] == pytest.approx(z[5], abs=1e-5 * max(1, abs(z[5])))


def test_explicit_rows_with_fewer_ratings_than_factors():
    """A user with 2 ratings and 6 factors at lambda ~ 0: the ridge limit is the minimum-norm fit of 2 ratings."""
    csr = _sparse_rows(4, 10, 2, seed=11)
    Y = np.random.default_rng(12).normal(size=(10, 6))
    X = np.zeros((4, 6))
    assert als_explicit_step(csr.indptr, csr.indices.astype(np.int32), csr.data.astype(np.float32), Y,
                             np.zeros(10), 0.0, TINY, False, False, X, np.zeros(4)) == 0
    for u in range(4):
        idx = csr.indices[csr.indptr[u]:csr.indptr[u + 1]]
        F = Y[idx]
        assert_close(X[u], min_norm(F.T @ F, F.T @ csr.data[csr.indptr[u]:csr.indptr[u + 1]]))
        np.testing.assert_allclose(F @ X[u], csr.data[csr.indptr[u]:csr.indptr[u + 1]], atol=1e-8)


# ------------------------------------------------------------------------------------- implicit ALS rows
def _implicit_problem(kind, dtype, seed=13):
    """Users x items with the item factors singular (6 items, 8 factors) or near-collinear (12 items).

    float32: singular means two factor columns exactly 0 (a rank deficiency that float32 products keep exact;
    collinearity is blurred at 1e-7 by float32 storage and products, below what a float32 fit resolves).
    """
    rng = np.random.default_rng(seed)
    n_items = 6 if kind == "singular" else 12
    d = 8
    dense = (rng.random((10, n_items)) < 0.5).astype(float)
    dense[:, 0] = 1.0
    csr = sp.csr_matrix(dense)
    conf = (1.0 + 3 * rng.random(csr.nnz)).astype(dtype)
    pref = np.ones(csr.nnz, dtype=dtype)
    Y = rng.normal(scale=0.5, size=(n_items, d))
    if kind == "singular" and dtype == np.float32:
        Y[:, -2:] = 0.0
    if kind == "near":
        Y[:, -1] = Y[:, 0] + Y[:, 1] + 1e-9 * rng.normal(size=n_items)
    return csr.indptr.astype(np.int32), csr.indices.astype(np.int32), conf, pref, Y.astype(dtype)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("long_row", [0, 10**9])  # every row by the gathered-GEMM path / every row compiled
def test_implicit_cholesky_rows_min_norm(kind, dtype, long_row):
    if kind == "near" and dtype == np.float32:
        pytest.skip("a 1e-9 perturbation does not survive float32 storage (that is the exactly singular case)")
    indptr, indices, conf, pref, Y = _implicit_problem(kind, dtype)
    c0 = 1.0
    X = np.zeros((10, Y.shape[1]), dtype=dtype)
    row_loss = np.zeros(10)
    failed = K.half_step(indptr, indices, conf, pref, Y, X, c0=c0, reg=TINY, solver="cholesky", long_row=long_row,
                         row_loss=row_loss)
    assert not failed.any()
    Y64 = Y.astype(np.float64)
    tol = 1e-5 if dtype == np.float64 else 2e-3
    for u in range(10):
        idx = indices[indptr[u]:indptr[u + 1]]
        c = conf[indptr[u]:indptr[u + 1]].astype(np.float64)
        A = c0 * Y64.T @ Y64 + Y64[idx].T @ ((c - c0)[:, None] * Y64[idx])
        x = min_norm(A, Y64[idx].T @ c)
        assert_close(X[u], x, rtol=tol)
        s = Y64[idx] @ X[u].astype(np.float64)
        assert row_loss[u] == pytest.approx(float(np.sum(c * (1 - s) ** 2 - c0 * s * s)), rel=1e-4, abs=1e-4)


def test_implicit_rows_indefinite_stay_reported():
    """Not every rejected row is rank deficient: an indefinite system (negative confidences) is still reported."""
    indptr, indices, conf, pref, Y = _implicit_problem("singular", np.float64)
    conf = conf.copy()
    conf[indptr[1]:indptr[2]] = -50.0
    X = np.zeros((10, Y.shape[1]))
    failed = K.half_step(indptr, indices, conf, pref, Y + 0.1, X, c0=1.0, reg=0.1, solver="cholesky")
    assert failed[1] == 1 and failed.sum() == 1


# ------------------------------------------------------------------------------------- hybrid prior rows
@pytest.mark.parametrize("kind", KINDS)
def test_prior_rows_min_norm(kind):
    csr = _sparse_rows(8, 12, 4, seed=14)
    Y = collinear(kind, 12, 6, seed=15)
    weight = np.ones(csr.nnz)
    target = csr.data.astype(np.float64)
    prior = np.random.default_rng(16).normal(size=(8, 6))
    X = np.zeros((8, 6))
    failed = prior_half_step(csr.indptr, csr.indices.astype(np.int32), weight, target, Y, X, prior, c0=0.0, reg=TINY)
    assert not failed.any()
    for u in range(8):
        idx = csr.indices[csr.indptr[u]:csr.indptr[u + 1]]
        F = Y[idx]
        assert_close(X[u], min_norm(F.T @ F, F.T @ target[csr.indptr[u]:csr.indptr[u + 1]]), rtol=1e-5)


# ------------------------------------------------------------------------------------- the models' solves
def _small_implicit(n_items=6, seed=17):
    rng = np.random.default_rng(seed)
    u, i = np.nonzero(rng.random((20, n_items)) < 0.5)
    frame = pd.DataFrame({"user": u, "item": i, "value": rng.integers(1, 4, len(u)).astype(float)})
    return Interactions.from_frame(frame, value="value", item_ids=list(range(n_items)))


def test_implicit_als_fit_and_fold_in_with_more_factors_than_items():
    """8 factors over 6 items at lambda ~ 0: every user system is singular; fit and fold-in are minimum norm."""
    data = _small_implicit()
    model = ImplicitALS(factors=8, regularization=TINY, alpha=1.0, iterations=3, solver="cholesky",
                        dtype="float64").fit(data)
    assert np.isfinite(model.user_factors_).all() and np.isfinite(model.item_factors_).all()
    Y = model.item_factors_.astype(np.float64)
    items, values = [0, 2, 5], [1.0, 2.0, 3.0]
    conf = 1.0 + 1.0 * np.array(values)  # the model's confidence rule 1 + alpha r
    c0 = model.unobserved_confidence_
    A = c0 * Y.T @ Y + Y[items].T @ ((conf - c0)[:, None] * Y[items])
    expected = min_norm(A, Y[items].T @ conf)
    assert_close(model.fold_in_user(items, values), expected, rtol=1e-6)


def test_implicit_als_fold_in_near_singular_factors():
    data = _small_implicit(n_items=12)
    model = ImplicitALS(factors=6, regularization=0.1, iterations=2).fit(data)
    Y = collinear("near", 12, 6, seed=18)
    idx = np.array([1, 4, 7, 9])
    conf = np.array([2.0, 3.0, 1.5, 4.0])
    model.regularization = TINY  # the solve under test: c0 Y^T Y + lambda I + ...
    c0 = model.unobserved_confidence_
    A = c0 * Y.T @ Y + Y[idx].T @ ((conf - c0)[:, None] * Y[idx])
    assert_close(model._solve_against(Y, idx, conf), min_norm(A, Y[idx].T @ conf))


def _category_items(kind):
    """Item attributes whose encoding is collinear with ContentBased's intercept column (one complete one-hot
    group) or, ``near``, a numeric column that nearly duplicates another."""
    items = item_frame()
    rng = np.random.default_rng(19)
    if kind == "singular":
        return pd.DataFrame({"kind": rng.choice(["a", "b", "c"], len(items))}, index=items.index)
    x = rng.normal(size=len(items))
    return pd.DataFrame({"x": x, "x2": x + 1e-9 * rng.normal(size=len(items))}, index=items.index)


@pytest.mark.parametrize("kind", KINDS)
def test_content_based_fit_and_fold_in_min_norm(kind):
    data = planted_interactions(seed=20)
    model = ContentBased(regularization=TINY, feedback="explicit").fit(data, item_attributes=_category_items(kind))
    F = model.item_factors_.astype(np.float64)
    assert is_numerically_singular(F.T @ F)
    mu = model.global_mean_
    csr = data.matrix
    for u in range(0, data.n_users, 7):
        idx = csr.indices[csr.indptr[u]:csr.indptr[u + 1]]
        r = csr.data[csr.indptr[u]:csr.indptr[u + 1]].astype(np.float64)
        w = min_norm(F[idx].T @ F[idx], F[idx].T @ (r - mu))
        w[-1] += mu
        assert_close(model.user_factors_[u], w, rtol=1e-4)
        assert_close(model.fold_in_user(data.item_index_map[idx], r), w, rtol=1e-4)


def test_hybrid_fold_in_with_more_factors_than_items():
    data = _small_implicit()
    model = HybridALS(factors=8, regularization=TINY, iterations=2, seed=0, dtype="float64").fit(data)
    assert np.isfinite(model.user_factors_).all()
    Y = model.item_factors_.astype(np.float64)
    items = [0, 3, 4]
    conf = 1.0 + float(model.alpha) * np.ones(3)
    c0 = float(model.unobserved_confidence)
    A = c0 * Y.T @ Y + Y[items].T @ ((conf - c0)[:, None] * Y[items])
    assert_close(model.fold_in_user(items), min_norm(A, Y[items].T @ conf), rtol=1e-5)
