"""ExplicitALS: kernel vs numpy.linalg.solve, monotone loss, worked example, predict/fallbacks, scenarios."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mfrec import Interactions
from mfrec.exceptions import InvalidDataError, InvalidParameterError, NotFittedError, UnknownIdError
from mfrec.kernels.als_explicit import (
    als_explicit_step,
    cholesky_solve,
    explicit_ridge_rows,
    explicit_sse,
    predict_pairs,
)
from mfrec.models.base import clone
from mfrec.models.explicit import ExplicitALS

from conftest import ml100k_fold

# The worked example of ../shared/seed-example.md (0 = unknown).
R = np.array(
    [
        [1, 0, 0, 2, 0, 1],
        [0, 2, 3, 0, 2, 1],
        [1, 5, 5, 0, 0, 5],
        [0, 0, 2, 0, 0, 3],
    ],
    dtype=np.float32,
)
U = np.array([[0.3, 0.7], [0.3, 0.5], [0.2, 0.4], [0.2, 0.1]])
VT = np.array([[1, 10, 11, 10, 4, 20], [1, -1, -2, -1, 1, -4]], dtype=np.float64)
TABLE = np.array(
    [
        [1.0, 2.3, 1.9, 2.3, 1.9, 3.2],
        [0.8, 2.5, 2.3, 2.5, 1.7, 4.0],
        [0.6, 1.6, 1.4, 1.6, 1.2, 2.4],
        [0.3, 1.9, 2.0, 1.9, 0.9, 3.6],
    ]
)


def seed_interactions() -> Interactions:
    return Interactions(sp.csr_matrix(R), [f"u{k}" for k in range(1, 5)], [f"i{k}" for k in range(1, 7)])


def reference_step(csr, other, other_bias, mu, reg, frequency_weighted, biases, bias_reg=None):
    """numpy.linalg.solve of every row's ridge problem (the oracle for the kernel).

    The penalty is diag(lambda, ..., lambda, lambda_b) (times the row count when frequency-weighted).
    """
    n, d = csr.shape[0], other.shape[1]
    X, b = np.zeros((n, d)), np.zeros(n)
    for u in range(n):
        cols = csr.indices[csr.indptr[u] : csr.indptr[u + 1]]
        r = csr.data[csr.indptr[u] : csr.indptr[u + 1]].astype(np.float64)
        F = np.c_[other[cols], np.ones(len(cols))] if biases else other[cols]
        t = r - mu - (other_bias[cols] if biases else 0.0)
        scale = max(len(cols), 1) if frequency_weighted else 1
        penalty = np.full(F.shape[1], reg * scale)
        if biases:
            penalty[d] = (reg if bias_reg is None else bias_reg) * scale
        z = np.linalg.solve(F.T @ F + np.diag(penalty), F.T @ t)
        X[u] = z[:d]
        if biases:
            b[u] = z[d]
    return X, b


def random_problem(seed, n=9, m=7, d=3, density=0.5):
    gen = np.random.default_rng(seed)
    csr = sp.random(n, m, density=density, random_state=seed, format="csr", dtype=np.float32)
    csr.data = gen.integers(1, 6, size=csr.nnz).astype(np.float32)
    csr.data[csr.indptr[0] : csr.indptr[1]] = 0.0  # row 0 becomes empty
    csr.eliminate_zeros()
    csr.indices = csr.indices.astype(np.int32)
    return csr, gen.normal(size=(m, d)), gen.normal(size=m)


# ------------------------------------------------------------------------------------------- kernels
@pytest.mark.parametrize("biases", [True, False])
@pytest.mark.parametrize("frequency_weighted", [True, False])
def test_step_equals_numpy_solve(biases, frequency_weighted):
    csr, Y, bi = random_problem(1)
    assert np.diff(csr.indptr)[0] == 0  # an empty row gets (lambda I)^-1 0 = 0
    mu = 3.1 if biases else 0.0
    X, bu = np.zeros((csr.shape[0], Y.shape[1])), np.zeros(csr.shape[0])
    fails = als_explicit_step(csr.indptr, csr.indices, csr.data, Y, bi, mu, 0.3, frequency_weighted, biases, X, bu)
    assert fails == 0
    X_ref, b_ref = reference_step(csr, Y, bi, mu, 0.3, frequency_weighted, biases)
    np.testing.assert_allclose(X, X_ref, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(bu, b_ref if biases else 0.0, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("d", [7, 16, 40])
@pytest.mark.parametrize("biases", [True, False])
def test_short_rows_take_the_dual_system_and_long_rows_the_primal_with_the_same_answer(d, biases):
    """Rows with fewer ratings than unknowns (0 < n_u < d (+1)) are solved in the n_u x n_u dual form, the others
    in the k x k primal; both equal numpy's solve of the primal ridge problem (the row lengths here span both)."""
    gen = np.random.default_rng(d)
    n, m = 30, 80
    lengths = np.r_[0, 1, 2, d - 1, d, d + 1, d + 2, gen.integers(1, 3 * d, n - 7)]
    rows = [np.sort(gen.choice(m, size=min(int(c), m), replace=False)) for c in lengths]
    indptr = np.r_[0, np.cumsum([len(r) for r in rows])].astype(np.int64)
    indices = np.concatenate(rows).astype(np.int32)
    data = gen.integers(1, 6, size=len(indices)).astype(np.float32)
    csr = sp.csr_matrix((data, indices, indptr), shape=(n, m))
    Y, bi = gen.normal(size=(m, d)), gen.normal(size=m)
    for fw, reg, breg in ((False, 0.7, None), (True, 0.05, 0.02)):
        X, bu = np.zeros((n, d)), np.zeros(n)
        assert als_explicit_step(csr.indptr, csr.indices, csr.data, Y, bi, 3.2, reg, fw, biases, X, bu,
                                 -1.0 if breg is None else breg) == 0
        X_ref, b_ref = reference_step(csr, Y, bi, 3.2, reg, fw, biases, breg)
        np.testing.assert_allclose(X, X_ref, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(bu, b_ref if biases else 0.0, rtol=1e-8, atol=1e-10)


# hypothesis 6.90 (the lowest declared) sometimes fails its data_too_large health check while drawing these four
# scalars (seen in .ci/lowest); the examples themselves are small, so that check is off here
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.data_too_large])
@given(seed=st.integers(0, 10_000), reg=st.floats(0.01, 5.0), bias_reg=st.floats(0.001, 20.0),
       frequency_weighted=st.booleans())
def test_step_with_bias_regularization_equals_numpy_solve(seed, reg, bias_reg, frequency_weighted):
    csr, Y, bi = random_problem(seed, d=4)
    X, bu = np.zeros((csr.shape[0], 4)), np.zeros(csr.shape[0])
    assert als_explicit_step(csr.indptr, csr.indices, csr.data, Y, bi, 3.1, reg, frequency_weighted, True, X, bu,
                             bias_reg) == 0
    X_ref, b_ref = reference_step(csr, Y, bi, 3.1, reg, frequency_weighted, True, bias_reg)
    np.testing.assert_allclose(X, X_ref, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(bu, b_ref, rtol=1e-8, atol=1e-10)


def test_step_handles_empty_rows_and_float32_factors():
    csr = sp.csr_matrix(np.array([[0, 0, 0], [4, 0, 5]], dtype=np.float32))
    Y = np.array([[1.0, 0.5], [0.2, -1.0], [0.3, 0.3]], dtype=np.float32)
    bi = np.array([0.1, -0.2, 0.3], dtype=np.float32)
    X = np.full((2, 2), 7.0, dtype=np.float32)
    bu = np.full(2, 7.0, dtype=np.float32)
    assert als_explicit_step(csr.indptr, csr.indices.astype(np.int32), csr.data, Y, bi, 3.0, 0.5, False, True, X, bu) == 0
    np.testing.assert_array_equal(X[0], 0.0)  # no ratings: the ridge solution is 0
    assert bu[0] == 0.0
    X_ref, b_ref = reference_step(csr, Y.astype(np.float64), bi.astype(np.float64), 3.0, 0.5, False, True)
    np.testing.assert_allclose(X[1], X_ref[1], rtol=1e-5)
    np.testing.assert_allclose(bu[1], b_ref[1], rtol=1e-5)


def test_step_reports_non_positive_definite_rows():
    csr = sp.csr_matrix(np.array([[4.0, 5.0]], dtype=np.float32))
    Y = np.array([[np.nan], [1.0]])
    X, bu = np.zeros((1, 1)), np.zeros(1)
    assert als_explicit_step(csr.indptr, csr.indices.astype(np.int32), csr.data, Y, np.zeros(2), 0.0, 0.1, False,
                             False, X, bu) == 1


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("biases", [True, False])
def test_short_rows_batched_eight_per_length_match_numpy_and_fail_alone(dtype, biases):
    """Short rows are solved eight rows of one length at a time (one per vector lane): full and partial batches
    of several lengths equal numpy's solve row by row, and a row with a NaN factor fails alone in its batch."""
    gen = np.random.default_rng(5)
    d, m = 12, 60
    lengths = np.r_[[3] * 19, [7] * 8, [11] * 9, [1] * 2, [25] * 3]  # batches of 8, 8, 3 / 8 / 8, 1 / 2 / primal
    gen.shuffle(lengths)
    rows = [np.sort(gen.choice(m - 1, size=int(c), replace=False)) for c in lengths]
    victim = int(np.flatnonzero(lengths == 3)[4])  # the one row rating the last item
    rows[victim] = np.r_[rows[victim][1:], m - 1]
    indptr = np.r_[0, np.cumsum([len(r) for r in rows])].astype(np.int64)
    indices = np.concatenate(rows).astype(np.int32)
    data = gen.integers(1, 6, size=len(indices)).astype(np.float32)
    csr = sp.csr_matrix((data, indices, indptr), shape=(len(rows), m))
    Y, bi = gen.normal(size=(m, d)).astype(dtype), gen.normal(size=m).astype(dtype)
    X, bu = np.zeros((len(rows), d), dtype), np.zeros(len(rows), dtype)
    assert als_explicit_step(csr.indptr, csr.indices, csr.data, Y, bi, 3.0, 0.4, True, biases, X, bu) == 0
    X_ref, b_ref = reference_step(csr, Y.astype(np.float64), bi.astype(np.float64), 3.0, 0.4, True, biases)
    tol = dict(rtol=1e-8, atol=1e-10) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(X, X_ref, **tol)
    np.testing.assert_allclose(bu, b_ref if biases else 0.0, **tol)
    # a NaN factor for the victim's private item: that row fails (left unchanged), its batch-mates do not
    Yp = Y.copy()
    Yp[m - 1] = np.nan
    X2 = np.full_like(X, 7.0)
    bu2 = np.full_like(bu, 7.0)
    fails = als_explicit_step(csr.indptr, csr.indices, csr.data, Yp, bi, 3.0, 0.4, True, biases, X2, bu2)
    assert fails == 1
    np.testing.assert_array_equal(X2[victim], 7.0)
    good = np.setdiff1d(np.arange(len(rows)), [victim])
    np.testing.assert_allclose(X2[good], X_ref[good], **tol)


def test_short_rows_with_huge_factors_match_numpy_dual_solve():
    """Factors around 1e8 put the pivot floor (n eps max G_ee) far above 1; the batched dual solve must still run
    every row (numpy's primal solve is the inaccurate one here: cond(F^T F + lambda I) ~ 1e17)."""
    gen = np.random.default_rng(0)
    d, m = 12, 30
    rows = [np.sort(gen.choice(m, 5, replace=False)) for _ in range(9)]
    indptr = np.r_[0, np.cumsum([len(r) for r in rows])].astype(np.int64)
    indices = np.concatenate(rows).astype(np.int32)
    data = gen.integers(1, 6, len(indices)).astype(np.float32)
    Y = gen.normal(size=(m, d)) * 1e8
    X, bu, failed = np.zeros((9, d)), np.zeros(9), np.zeros(9, np.uint8)
    explicit_ridge_rows(indptr, indices, data, Y, np.zeros(m), 3.0, 0.1, False, False, X, bu, failed)
    assert not failed.any()
    for u, cols in enumerate(rows):
        F, t = Y[cols], data[indptr[u] : indptr[u + 1]].astype(np.float64) - 3.0
        np.testing.assert_allclose(X[u], F.T @ np.linalg.solve(F @ F.T + 0.1 * np.eye(len(cols)), t), rtol=1e-9,
                                   atol=1e-25)


@settings(max_examples=40, deadline=None)
@given(k=st.integers(1, 6), seed=st.integers(0, 10_000))
def test_cholesky_solve_matches_numpy(k, seed):
    gen = np.random.default_rng(seed)
    M = gen.normal(size=(k + 3, k))
    A = M.T @ M + 0.1 * np.eye(k)
    b = gen.normal(size=k)
    A_work, b_work = A.copy(), b.copy()
    assert cholesky_solve(A_work, b_work, k)
    np.testing.assert_allclose(b_work, np.linalg.solve(A, b), rtol=1e-8, atol=1e-10)


def test_sse_and_predict_pairs_match_numpy():
    csr, Y, bi = random_problem(3)
    gen = np.random.default_rng(0)
    X, bu = gen.normal(size=(csr.shape[0], Y.shape[1])), gen.normal(size=csr.shape[0])
    full = 2.5 + bu[:, None] + bi[None, :] + X @ Y.T
    rows = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))
    expected = float(((csr.data - full[rows, csr.indices]) ** 2).sum())
    assert explicit_sse(csr.indptr, csr.indices, csr.data, X, bu, Y, bi, 2.5, True) == pytest.approx(expected)
    u = np.array([0, 1, -1, 2, -1], dtype=np.int64)
    i = np.array([0, -1, 2, 3, -1], dtype=np.int64)
    out = np.empty(5)
    predict_pairs(u, i, X, bu, Y, bi, 2.5, True, out)
    np.testing.assert_allclose(out, [full[0, 0], 2.5 + bu[1], 2.5 + bi[2], full[2, 3], 2.5])


# ------------------------------------------------------------------------------------------- worked example
def test_worked_example_table_reproduced_by_given_factors():
    """The notes' U and V^T, pushed through the prediction kernel, give the table (rounded to 0.1)."""
    u, i = np.meshgrid(np.arange(4), np.arange(6), indexing="ij")
    out = np.empty(24)
    predict_pairs(u.ravel().astype(np.int64), i.ravel().astype(np.int64), U, np.zeros(4), VT.T.copy(), np.zeros(6),
                  0.0, False, out)
    np.testing.assert_allclose(np.round(out.reshape(4, 6), 1), TABLE, atol=1e-9)
    assert out.reshape(4, 6)[2, 3] == pytest.approx(1.6)  # "user 3, item 4: 1.6"


@pytest.mark.parametrize("biases", [False, True])
def test_worked_example_als_recovers_known_entries(biases):
    data = seed_interactions()
    model = ExplicitALS(factors=3, regularization=1e-3, iterations=200, biases=biases, regularization_scaling="none",
                        dtype="float64").fit(data)
    frame = data.to_frame()
    pred = model.predict(frame["user"], frame["item"])
    np.testing.assert_allclose(pred, frame["value"], atol=0.05)
    assert model.unknown_predictions_ == 0


# ------------------------------------------------------------------------------------------- training
def small_ratings(seed=0, n_users=60, n_items=40, d=3, density=0.3):
    """Ratings 1..5 from a planted low-rank model with biases plus noise."""
    gen = np.random.default_rng(seed)
    X, Y = gen.normal(size=(n_users, d)), gen.normal(size=(n_items, d))
    full = 3.5 + 0.5 * gen.normal(size=(n_users, 1)) + 0.5 * gen.normal(size=(1, n_items)) + 0.6 * X @ Y.T
    mask = gen.random((n_users, n_items)) < density
    u, i = np.nonzero(mask)
    r = np.clip(np.round(full[u, i] + 0.3 * gen.normal(size=len(u))), 1, 5)
    frame = pd.DataFrame({"user": [f"user{x}" for x in u], "item": [f"item{x}" for x in i], "rating": r})
    return frame


def frame_data(frame):
    return Interactions.from_frame(frame, user="user", item="item", value="rating")


@pytest.mark.parametrize("biases", [True, False])
@pytest.mark.parametrize("frequency_weighted", [True, False])
@pytest.mark.parametrize("bias_regularization", [None, 0.01])
def test_loss_never_increases(biases, frequency_weighted, bias_regularization):
    data = frame_data(small_ratings())
    reg = 0.05 if frequency_weighted else 0.5
    model = ExplicitALS(factors=4, regularization=reg, iterations=12, biases=biases,
                        regularization_scaling="count" if frequency_weighted else "none", dtype="float64",
                        bias_regularization=bias_regularization).fit(data)
    loss = np.array([h["loss"] for h in model.history_])
    assert len(loss) == 12
    assert np.all(np.diff(loss) <= 1e-9 * loss[:-1])
    assert loss[-1] < loss[0]


@pytest.mark.parametrize("frequency_weighted", [True, False])
@pytest.mark.parametrize("bias_regularization", [None, 0.02])
def test_history_loss_equals_objective_recomputed(frequency_weighted, bias_regularization):
    data = frame_data(small_ratings(1))
    model = ExplicitALS(factors=3, regularization=0.1, iterations=3, dtype="float64",
                        regularization_scaling="count" if frequency_weighted else "none",
                        bias_regularization=bias_regularization).fit(data)
    lam_b = 0.1 if bias_regularization is None else bias_regularization
    rows, cols, vals = data.coo()
    pred = model.global_bias_ + model.user_bias_[rows] + model.item_bias_[cols] + np.einsum(
        "ij,ij->i", model.user_factors_[rows], model.item_factors_[cols])
    n_u, n_i = data.user_counts(), data.item_counts()
    if not frequency_weighted:
        n_u, n_i = np.ones_like(n_u), np.ones_like(n_i)
    expected = ((vals - pred) ** 2).sum() + 0.1 * (
        n_u @ (model.user_factors_**2).sum(1) + n_i @ (model.item_factors_**2).sum(1)
    ) + lam_b * (n_u @ model.user_bias_**2 + n_i @ model.item_bias_**2)
    assert model.history_[-1]["loss"] == pytest.approx(expected, rel=1e-9)
    assert model.history_[-1]["rmse"] == pytest.approx(np.sqrt(np.mean((vals - pred) ** 2)), rel=1e-9)


def test_reproducible_by_seed_and_factor_layout():
    data = frame_data(small_ratings(2))
    a = ExplicitALS(factors=4, iterations=3, seed=7).fit(data)
    b = ExplicitALS(factors=4, iterations=3, seed=7).fit(data)
    c = ExplicitALS(factors=4, iterations=3, seed=8).fit(data)
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    assert not np.array_equal(a.user_factors_, c.user_factors_)
    assert a.user_factors_.dtype == np.float32 and a.user_factors_.flags.c_contiguous
    assert a.item_factors_.shape == (data.n_items, 4)
    assert ExplicitALS(dtype="float64", iterations=1).fit(data).item_factors_.dtype == np.float64


def test_training_loss_is_optional_and_changes_nothing_else():
    data = frame_data(small_ratings(2))
    on = ExplicitALS(factors=4, iterations=3).fit(data)
    off = ExplicitALS(factors=4, iterations=3, calculate_training_loss=False).fit(data)
    assert all({"loss", "rmse"} <= set(h) for h in on.history_)
    assert not any({"loss", "rmse"} & set(h) for h in off.history_) and len(off.history_) == 3
    np.testing.assert_array_equal(on.user_factors_, off.user_factors_)
    np.testing.assert_array_equal(on.item_bias_, off.item_bias_)
    with pytest.raises(InvalidParameterError, match="calculate_training_loss"):
        ExplicitALS(calculate_training_loss=1).fit(data)


def test_predict_external_ids_clipped_and_unknown_fallback():
    frame = small_ratings(3)
    data = frame_data(frame)
    model = ExplicitALS(factors=3, iterations=5).fit(data)
    lo, hi = model.rating_range_
    assert (lo, hi) == (frame.rating.min(), frame.rating.max())
    raw = model.predict(frame.user, frame.item, clip=False)
    clipped = model.predict(frame.user, frame.item)
    np.testing.assert_allclose(clipped, np.clip(raw, lo, hi))
    assert model.unknown_predictions_ == 0
    # unknown user -> mu + b_i ; unknown item -> mu + b_u ; both -> mu
    u0, i0 = frame.user.iloc[0], frame.item.iloc[0]
    ui, ii = data.user_index(u0), data.item_index(i0)
    out = model.predict(["nobody", u0, "nobody", u0], [i0, "new-item", "new-item", i0], clip=False)
    mu = model.global_bias_
    np.testing.assert_allclose(out[:3], [mu + model.item_bias_[ii], mu + model.user_bias_[ui], mu], rtol=1e-6)
    assert model.unknown_predictions_ == 3
    single = model.predict(u0, i0, clip=False)
    assert single.shape == (1,) and single[0] == pytest.approx(raw[0], rel=1e-6)
    with pytest.raises(InvalidParameterError, match="user_ids has 2 ids but item_ids has 1"):
        model.predict([u0, u0], [i0])


def test_no_bias_model_falls_back_to_training_mean():
    frame = small_ratings(4)
    model = ExplicitALS(factors=2, iterations=3, biases=False).fit(frame_data(frame))
    assert model.global_bias_ == 0.0
    np.testing.assert_allclose(model.predict(["ghost"], ["ghost"]), frame.rating.mean(), rtol=1e-6)


def test_validation_history_and_early_stopping():
    frame = small_ratings(5, n_users=80, n_items=50)
    gen = np.random.default_rng(0)
    test_mask = gen.random(len(frame)) < 0.2
    train, valid = frame_data(frame[~test_mask]), frame_data(frame[test_mask])  # different id maps on purpose
    model = ExplicitALS(factors=8, regularization=0.005, iterations=30, early_stopping_rounds=2).fit(train, validation=valid)
    val = [h["val_rmse"] for h in model.history_]
    assert all("val_rmse" in h for h in model.history_)
    best = int(np.argmin(val))
    assert model.best_iteration_ == best + 1
    assert len(val) <= 30 and len(val) - 1 - best <= 2
    sub = frame[test_mask]
    pred = model.predict(sub.user, sub.item)
    assert np.sqrt(np.mean((pred - sub.rating.to_numpy()) ** 2)) == pytest.approx(val[best], rel=1e-5)


def test_frequency_weighting_changes_the_solution():
    data = frame_data(small_ratings(6))
    a = ExplicitALS(factors=3, regularization=0.1, iterations=4, regularization_scaling="count").fit(data)
    b = ExplicitALS(factors=3, regularization=0.1, iterations=4, regularization_scaling="none").fit(data)
    assert not np.allclose(a.user_factors_, b.user_factors_)


def test_frequency_weighted_is_the_deprecated_spelling_of_count_scaling():
    data = frame_data(small_ratings(6))
    kw = dict(factors=3, regularization=0.1, iterations=4)
    count = ExplicitALS(**kw, regularization_scaling="count").fit(data)
    with pytest.warns(DeprecationWarning, match="regularization_scaling='count'"):
        legacy = ExplicitALS(**kw, frequency_weighted=True).fit(data)
    np.testing.assert_array_equal(legacy.user_factors_, count.user_factors_)
    none = ExplicitALS(**kw, frequency_weighted=False).fit(data)  # what older model files record
    np.testing.assert_array_equal(none.user_factors_, ExplicitALS(**kw).fit(data).user_factors_)
    with pytest.raises(InvalidParameterError, match="contradicts"):
        ExplicitALS(**kw, frequency_weighted=False, regularization_scaling="count").fit(data)
    with pytest.raises(InvalidParameterError, match="regularization_scaling"):
        ExplicitALS(**kw, regularization_scaling="rows").fit(data)


# ------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "params, message",
    [
        ({"factors": 0}, "factors must be >= 1"),
        ({"regularization": 0.0}, "regularization must be > 0"),
        ({"iterations": 0}, "iterations must be >= 1"),
        ({"dtype": "int8"}, "dtype must be 'float32' or 'float64'"),
        ({"num_threads": -1}, "num_threads must be >= 0"),
        ({"early_stopping_rounds": 0}, "early_stopping_rounds must be >= 1"),
        ({"bias_regularization": -2.0}, "bias_regularization must be > 0"),
    ],
)
def test_bad_parameters_are_named(params, message):
    with pytest.raises(InvalidParameterError, match=message):
        ExplicitALS(**params).fit(seed_interactions())


def test_bad_data_and_not_fitted():
    with pytest.raises(NotFittedError, match="ExplicitALS"):
        ExplicitALS().predict([1], [1])
    with pytest.raises(InvalidDataError, match="must be an mfrec.Interactions"):
        ExplicitALS().fit(R)
    no_values = Interactions.from_frame(pd.DataFrame({"user": [1, 2], "item": [1, 1]}), user="user", item="item")
    with pytest.raises(InvalidDataError, match="no rating values"):
        ExplicitALS().fit(no_values)


# ------------------------------------------------------------------------------------------- scenarios
def test_scenarios_scores_are_predictions():
    data = seed_interactions()
    model = ExplicitALS(factors=2, regularization=0.1, iterations=10).fit(data)
    rec = model.recommend("u1", k=3)
    assert list(rec.columns) == ["item", "score"] and len(rec) == 3
    assert not set(rec["item"]) & {"i1", "i4", "i6"}  # seen items excluded
    np.testing.assert_allclose(rec["score"], model.predict(["u1"] * 3, rec["item"], clip=False), rtol=1e-5)
    batch = model.recommend_batch(["u1", "u3"], k=2)
    assert list(batch.columns) == ["user", "item", "score", "rank"]
    assert list(batch["rank"]) == [1, 2, 1, 2]
    assert list(model.recommend_users("i2", k=2).columns) == ["user", "score"]
    assert list(model.similar_items("i1", k=2).columns) == ["item", "score"]
    assert list(model.similar_users("u1", k=2).columns) == ["user", "score"]
    with pytest.raises(UnknownIdError):
        model.recommend("nobody")
    # a new user with user 3's ratings is scored like a fitted user
    new = model.recommend_new_user(["i1", "i2", "i3", "i6"], [1, 5, 5, 5], k=2)
    assert list(new.columns) == ["item", "score"] and not set(new["item"]) & {"i1", "i2", "i3", "i6"}
    with pytest.raises(InvalidParameterError, match="needs the new user's ratings"):
        model.fold_in_user(["i1"])


def test_clone_and_params():
    model = ExplicitALS(factors=7, regularization=0.2)
    assert model.get_params()["factors"] == 7
    twin = clone(model, factors=3)
    assert twin.factors == 3 and twin.regularization == 0.2 and not hasattr(twin, "user_factors_")


def test_save_load_round_trip(tmp_path):
    data = seed_interactions()
    model = ExplicitALS(factors=2, iterations=3).fit(data)
    path = model.save(tmp_path / "als.mfrec")
    loaded = ExplicitALS.load(path)
    np.testing.assert_allclose(loaded.predict(["u1", "u2"], ["i2", "zz"]), model.predict(["u1", "u2"], ["i2", "zz"]))
    assert loaded.history_ == model.history_


# ------------------------------------------------------------------------------------------- real data
def test_movielens_u1_default_rmse():
    train, test = ml100k_fold(1)
    frame = test.to_frame()
    model = ExplicitALS().fit(train)
    pred = model.predict(frame["user"], frame["item"])
    assert model.unknown_predictions_ > 0  # u1.test holds items absent from u1.base
    assert np.sqrt(np.mean((pred - frame["value"].to_numpy()) ** 2)) < 0.93


@pytest.mark.parametrize("frequency_weighted", [False, True])
def test_fold_in_user_is_the_ridge_solve_with_bias_regularization(frequency_weighted):
    data = frame_data(small_ratings(3))
    reg = 0.05 if frequency_weighted else 0.7
    model = ExplicitALS(factors=3, regularization=reg, bias_regularization=0.03, iterations=4, dtype="float64",
                        regularization_scaling="count" if frequency_weighted else "none").fit(data)
    csr = data.matrix
    row = csr[2]
    items = data.item_ids[row.indices]
    emb = model.fold_in_user(items, row.data)
    X_ref, b_ref = reference_step(row.tocsr(), model.item_factors_, model.item_bias_, model.global_bias_, reg,
                                  frequency_weighted, True, 0.03)
    np.testing.assert_allclose(emb[:3], X_ref[0], rtol=1e-7, atol=1e-9)
    assert emb[3] == pytest.approx(b_ref[0] + model.global_bias_, rel=1e-9)
    assert emb[4] == 1.0
