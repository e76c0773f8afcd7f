"""Implicit-ALS kernels against dense numpy references built over ALL (u, i) pairs."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from mfrec.kernels import _native
from mfrec.kernels import als_implicit as K
from mfrec.kernels.linalg import (
    cholesky_upper_inplace,
    cholesky_upper_solve_inplace,
    gram_apply,
    matmul_rows4,
    matvec_rows,
)
from mfrec.kernels.threads import limit_threads


def random_problem(seed, m=13, n=9, d=4, density=0.35, dtype=np.float64, c0=1.0, pref_frac=1.0):
    rng = np.random.default_rng(seed)
    dense = (rng.random((m, n)) < density).astype(float)
    dense[0, :] = 0.0  # an empty row
    csr = sp.csr_matrix(dense)
    nnz = csr.nnz
    conf = (c0 + rng.random(nnz) * 3).astype(dtype)
    pref = np.where(rng.random(nnz) < pref_frac, 1.0, 0.0).astype(dtype)
    X = rng.normal(scale=0.3, size=(m, d)).astype(dtype)
    Y = rng.normal(scale=0.3, size=(n, d)).astype(dtype)
    return csr.indptr.astype(np.int32), csr.indices.astype(np.int32), conf, pref, X, Y


def dense_cp(indptr, indices, conf, pref, shape, c0):
    """Dense C (c0 where unobserved) and P (0 where unobserved)."""
    C = np.full(shape, c0, dtype=np.float64)
    P = np.zeros(shape)
    for u in range(shape[0]):
        for e in range(indptr[u], indptr[u + 1]):
            C[u, indices[e]] = conf[e]
            P[u, indices[e]] = pref[e]
    return C, P


def dense_loss(C, P, X, Y, reg):
    S = X.astype(np.float64) @ Y.astype(np.float64).T
    return float(np.sum(C * (P - S) ** 2) + reg * (np.sum(X.astype(float) ** 2) + np.sum(Y.astype(float) ** 2)))


def dense_solve(C, P, Y, reg):
    """Reference half-step: x_u = (Y^T C^u Y + reg I)^-1 Y^T C^u p_u, one dense solve per row."""
    Y = Y.astype(np.float64)
    out = np.empty((C.shape[0], Y.shape[1]))
    for u in range(C.shape[0]):
        A = Y.T @ (C[u][:, None] * Y) + reg * np.eye(Y.shape[1])
        out[u] = np.linalg.solve(A, Y.T @ (C[u] * P[u]))
    return out


def test_linalg_helpers_match_numpy():
    rng = np.random.default_rng(0)
    M = rng.normal(size=(7, 7))
    A = M @ M.T + 7 * np.eye(7)
    b = rng.normal(size=7)
    out = np.empty(7)
    matvec_rows(A, b, out)
    np.testing.assert_allclose(out, A @ b, rtol=1e-12)
    U = A.copy()
    assert cholesky_upper_inplace(U, 7)
    np.testing.assert_allclose(np.triu(U), np.linalg.cholesky(A).T, rtol=1e-12)
    z = b.copy()
    cholesky_upper_solve_inplace(U, z, 7)
    np.testing.assert_allclose(z, np.linalg.solve(A, b), rtol=1e-10)
    bad = -np.eye(3)
    assert not cholesky_upper_inplace(bad, 3)
    nan = np.full((2, 2), np.nan)
    assert not cholesky_upper_inplace(nan, 2)


@pytest.mark.parametrize("c0", [1.0, 0.0, 0.3])
@pytest.mark.parametrize("pref_frac", [1.0, 0.6])
def test_cholesky_rows_equal_dense_solve(c0, pref_frac):
    indptr, indices, conf, pref, X, Y = random_problem(1, c0=c0, pref_frac=pref_frac)
    reg = 0.1
    C, P = dense_cp(indptr, indices, conf, pref, X.shape[:1] + Y.shape[:1], c0)
    expected = dense_solve(C, P, Y, reg)
    out = X.copy()
    failed = K.half_step(indptr, indices, conf, pref, Y, out, c0=c0, reg=reg, solver="cholesky")
    assert not failed.any()
    np.testing.assert_allclose(out, expected, rtol=1e-9, atol=1e-10)
    # the same through the BLAS long-row path
    out2 = X.copy()
    K.half_step(indptr, indices, conf, pref, Y, out2, c0=c0, reg=reg, solver="cholesky", long_row=0)
    np.testing.assert_allclose(out2, expected, rtol=1e-9, atol=1e-10)
    # ... accumulated over gathered blocks of 3 entries (rows longer than a block)
    out3 = X.copy()
    failed3 = np.zeros(X.shape[0], np.uint8)
    K._solve_long_rows(indptr, indices, conf, pref, Y, K.gram_base(Y, c0, reg), c0, np.arange(X.shape[0]), out3,
                       failed3, block=3)
    assert not failed3.any() and np.diff(indptr).max() > 3
    np.testing.assert_allclose(out3, expected, rtol=1e-9, atol=1e-10)


def test_cholesky_rows_float32_close_to_float64():
    indptr, indices, conf, pref, X, Y = random_problem(2, m=40, n=30, d=16)
    C, P = dense_cp(indptr, indices, conf, pref, (40, 30), 1.0)
    expected = dense_solve(C, P, Y, 0.05)
    out = X.astype(np.float32)
    K.half_step(indptr, indices, conf.astype(np.float32), pref.astype(np.float32), Y.astype(np.float32), out,
                c0=1.0, reg=0.05, solver="cholesky")
    np.testing.assert_allclose(out, expected, rtol=1e-3, atol=1e-4)


def test_half_step_minimises_dense_loss_and_is_row_optimal():
    indptr, indices, conf, pref, X, Y = random_problem(3)
    reg = 0.2
    C, P = dense_cp(indptr, indices, conf, pref, (13, 9), 1.0)
    out = X.copy()
    K.half_step(indptr, indices, conf, pref, Y, out, c0=1.0, reg=reg, solver="cholesky")
    base = dense_loss(C, P, out, Y, reg)
    rng = np.random.default_rng(9)
    for _ in range(10):  # any perturbation of the solved block increases the loss
        assert dense_loss(C, P, out + 1e-3 * rng.normal(size=out.shape), Y, reg) > base


@pytest.mark.parametrize("c0", [1.0, 0.0])
def test_cg_converges_to_cholesky(c0):
    indptr, indices, conf, pref, X, Y = random_problem(4, m=20, n=15, d=6, c0=c0, pref_frac=0.7)
    exact = X.copy()
    K.half_step(indptr, indices, conf, pref, Y, exact, c0=c0, reg=0.1, solver="cholesky")
    cg = X.copy()
    K.half_step(indptr, indices, conf, pref, Y, cg, c0=c0, reg=0.1, solver="cg", cg_steps=30)
    np.testing.assert_allclose(cg, exact, rtol=1e-7, atol=1e-8)
    # d CG steps solve a d x d SPD system exactly (in exact arithmetic): close after 6 steps
    cg6 = X.copy()
    K.half_step(indptr, indices, conf, pref, Y, cg6, c0=c0, reg=0.1, solver="cg", cg_steps=6)
    np.testing.assert_allclose(cg6, exact, rtol=1e-5, atol=1e-6)


def test_cg_guards_zero_residual_and_never_increases_row_loss():
    indptr, indices, conf, pref, X, Y = random_problem(5)
    exact = X.copy()
    K.half_step(indptr, indices, conf, pref, Y, exact, c0=1.0, reg=0.1, solver="cholesky")
    again = exact.copy()  # starting at the solution: residual ~0, must not divide by zero
    K.half_step(indptr, indices, conf, pref, Y, again, c0=1.0, reg=0.1, solver="cg", cg_steps=3)
    assert np.isfinite(again).all()
    np.testing.assert_allclose(again, exact, atol=1e-10)
    C, P = dense_cp(indptr, indices, conf, pref, (13, 9), 1.0)
    cur = X.copy()
    prev = dense_loss(C, P, cur, Y, 0.1)
    for _ in range(3):
        K.half_step(indptr, indices, conf, pref, Y, cur, c0=1.0, reg=0.1, solver="cg", cg_steps=1)
        now = dense_loss(C, P, cur, Y, 0.1)
        assert now <= prev + 1e-12
        prev = now


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), c0=st.sampled_from([0.0, 0.5, 1.0]), d=st.integers(1, 6))
def test_loss_identity_matches_dense(seed, c0, d):
    indptr, indices, conf, pref, X, Y = random_problem(seed, d=d, c0=c0, pref_frac=0.8)
    C, P = dense_cp(indptr, indices, conf, pref, (13, 9), c0)
    got = K.implicit_loss(indptr, indices, conf, pref, X, Y, c0, 0.3)
    assert got == pytest.approx(dense_loss(C, P, X, Y, 0.3), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("d", [16, 32, 64, 128])
def test_observed_loss_vector_paths_match_numpy(dtype, d):
    """The observed loss for d of whole 64-byte vectors (the shuffle-tree kernel; rows of 0..20 entries cover the
    eight-entry groups and the single tail) against numpy in float64."""
    rng = np.random.default_rng(d)
    lengths = np.arange(21)
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    indices = np.concatenate([np.sort(rng.choice(30, size=k, replace=False)) for k in lengths]).astype(np.int32)
    conf = (1 + 3 * rng.random(len(indices))).astype(dtype)
    pref = (rng.random(len(indices)) < 0.7).astype(dtype)
    X = rng.normal(scale=0.3, size=(len(lengths), d)).astype(dtype)
    Y = rng.normal(scale=0.3, size=(30, d)).astype(dtype)
    rows = np.repeat(np.arange(len(lengths)), lengths)
    s_ui = np.einsum("ij,ij->i", X[rows].astype(np.float64), Y[indices].astype(np.float64))
    expect = float(np.sum(conf * (pref - s_ui) ** 2 - 0.5 * s_ui ** 2))
    tol = 1e-12 if dtype == np.float64 else 1e-5
    assert K.implicit_observed_loss(indptr, indices, conf, pref, X, Y, 0.5) == pytest.approx(expect, rel=tol)


def test_gradient_matches_finite_differences_and_gd_step_decreases():
    indptr, indices, conf, pref, X, Y = random_problem(6, c0=0.5, pref_frac=0.7)
    reg, c0 = 0.2, 0.5
    C, P = dense_cp(indptr, indices, conf, pref, (13, 9), c0)
    sparse = np.empty_like(X)
    K.implicit_observed_grad(indptr, indices, conf, pref, X, Y, c0, sparse)
    G = 2 * (X @ K.gram_base(Y, c0, reg) + sparse)
    S = X @ Y.T
    dense_grad = -2 * (C * (P - S)) @ Y + 2 * reg * X
    np.testing.assert_allclose(G, dense_grad, rtol=1e-10, atol=1e-12)
    cur = X.copy()
    prev = dense_loss(C, P, cur, Y, reg)
    t = K.gd_half_step(indptr, indices, conf, pref, Y, cur, c0=c0, reg=reg)
    assert t > 0
    now = dense_loss(C, P, cur, Y, reg)
    assert now < prev
    # exact line search: the step is the minimiser along -G
    for f in (0.9, 1.1):
        trial = X - f * t * G
        assert dense_loss(C, P, trial, Y, reg) >= now - 1e-12


def test_transpose_entries_matches_scipy():
    indptr, indices, conf, *_ = random_problem(7, m=30, n=20)
    it, jt, perm = K.transpose_entries(indptr, indices, 20)
    ref = sp.csr_matrix((conf, indices, indptr), shape=(30, 20)).T.tocsr()
    ref.sort_indices()
    np.testing.assert_array_equal(it, ref.indptr)
    np.testing.assert_array_equal(jt, ref.indices)
    np.testing.assert_allclose(conf[perm], ref.data)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), m=st.integers(0, 30), n=st.integers(1, 25), density=st.floats(0, 1),
       wide=st.booleans())
def test_transpose_pattern_matches_scipy(seed, m, n, density, wide):
    """The pattern-only transpose (int32 or int64 pointers in) equals scipy's, rows increasing in each column;
    empty rows, empty columns and an empty matrix included."""
    from mfrec.kernels.slices import transpose

    rng = np.random.default_rng(seed)
    csr = sp.csr_matrix((rng.random((m, n)) < density).astype(np.float32))
    indptr = csr.indptr.astype(np.int64 if wide else np.int32)
    it, jt, _ = transpose(indptr, csr.indices.astype(np.int32), n)
    ref = csr.T.tocsr()
    ref.sort_indices()
    assert it.dtype == np.int64 and jt.dtype == np.int32
    np.testing.assert_array_equal(it, ref.indptr)
    np.testing.assert_array_equal(jt, ref.indices)


def test_row_order_long_rows_first():
    indptr = np.array([0, 1, 5, 5, 7])
    np.testing.assert_array_equal(K.row_order(indptr), [1, 3, 0, 2])


def _gram_apply_runner(indptr, indices, conf, pref, c0, Y, x, out, with_b):
    gram_apply(int(indptr[0]), int(indptr[1]), indices, conf, pref, float(c0), Y, x, out, with_b)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("d", [1, 3, 4, 7, 16, 32, 64, 128])
def test_gram_apply_and_matvec_rows_match_numpy(dtype, d):
    """The blocked CG helpers against plain numpy (row lengths 0..20 cover the 8-entry sweeps and the rest; d of
    2, 4 and 8 whole 64-byte vectors take the vector kernel with its shuffle-tree sums, other d the generic one)."""
    run = _gram_apply_runner
    rng = np.random.default_rng(d)
    Y = rng.normal(size=(24, d)).astype(dtype)
    x = rng.normal(size=d).astype(dtype)
    c0 = dtype(0.5)
    for length in range(21):  # 8-entry sweeps, then a 4-entry sweep, then single entries
        idx = rng.choice(24, size=length, replace=False).astype(np.int32)
        conf = (1 + rng.random(length)).astype(dtype)
        pref = rng.integers(0, 2, size=length).astype(dtype)
        Yg = Y[idx].astype(np.float64)
        s = Yg @ x.astype(np.float64)
        w = conf.astype(np.float64) - 0.5
        start = rng.normal(size=d).astype(dtype)
        tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
        out = start.copy()
        run(np.array([0, length]), idx, conf, pref, c0, Y, x, out, False)
        np.testing.assert_allclose(out, start + Yg.T @ (w * s), **tol)
        out = start.copy()
        run(np.array([0, length]), idx, conf, pref, c0, Y, x, out, True)
        np.testing.assert_allclose(out, start + Yg.T @ (conf * pref - w * s), **tol)
    M = rng.normal(size=(d, d)).astype(dtype)
    G = M + M.T
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    out = np.full(d, np.nan, dtype=dtype)
    matvec_rows(G, x, out)
    np.testing.assert_allclose(out, G.astype(np.float64) @ x, **tol)
    # four rows at once (the lock-step CG groups): out[q] = G x_q
    x4 = rng.normal(size=(4, d)).astype(dtype)
    out4 = np.full((4, d), np.nan, dtype=dtype)
    matmul_rows4(x4, G, out4)
    np.testing.assert_allclose(out4, x4.astype(np.float64) @ G.astype(np.float64).T, **tol)


# ------------------------------------------------------------------ blocked upper Cholesky (d = 128 work)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [1, 3, 7, 8, 9, 16, 17, 40, 65, 128])
@pytest.mark.parametrize("padded", [False, True])
def test_cholesky_upper_matches_numpy(dtype, n, padded):
    """Eight-pivot blocked right-looking factor (every remainder of n mod 8) against numpy, upper triangle only.

    Unpadded rows of odd length take the entry-by-entry version, which must never read or write the strict lower
    triangle; rows padded to whole 64-byte vectors take the whole-vector version, whose strict lower triangle and
    padding columns are scratch: filled with NaN here, they must not leak into the factor or the solution.
    """
    rng = np.random.default_rng(n)
    M = rng.normal(size=(n, n))
    A = M @ M.T + n * np.eye(n)
    b = rng.normal(size=n)
    width = 64 // np.dtype(dtype).itemsize
    lda = -(-n // width) * width if padded else n
    work = np.full((n, lda), np.nan, dtype=dtype)
    work[:, :n] = np.triu(A)
    work[np.tril_indices(n, -1)] = np.nan  # the strict lower triangle must never be read
    assert cholesky_upper_inplace(work, n)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-5, atol=2e-5 * np.sqrt(n))
    np.testing.assert_allclose(np.triu(np.nan_to_num(work[:, :n])), np.linalg.cholesky(A).T, **tol)
    if lda % width:  # the entry-by-entry version leaves it as it was
        assert np.isnan(work[np.tril_indices(n, -1)]).all()
    z = b.astype(dtype)
    cholesky_upper_solve_inplace(work, z, n)
    np.testing.assert_allclose(z, np.linalg.solve(A, b), **tol)


def test_cholesky_upper_rejects_indefinite_and_nan():
    for bad in (-np.eye(3), np.diag([1.0, 2.0, -1.0, 4.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]), np.full((9, 9), np.nan)):
        assert not cholesky_upper_inplace(bad.copy(), bad.shape[0])
    # positive definite in exact arithmetic but a zero pivot at position 8 (first trailing row after a panel)
    A = np.eye(10)
    A[8, 8] = 0.0
    assert not cholesky_upper_inplace(A, 10)


@pytest.mark.parametrize("d", [8, 13, 32])
def test_cholesky_rows_float32_blocked_factor_close_to_dense(d):
    """The float32 path (float32 Gram and factor) at d not a multiple of 8 against the float64 dense solve."""
    indptr, indices, conf, pref, X, Y = random_problem(11 + d, m=30, n=60, d=d, density=0.5, pref_frac=0.8)
    C, P = dense_cp(indptr, indices, conf, pref, (30, 60), 1.0)
    expected = dense_solve(C, P, Y, 0.5)
    out = X.astype(np.float32)
    failed = K.half_step(indptr, indices, conf.astype(np.float32), pref.astype(np.float32), Y.astype(np.float32),
                         out, c0=1.0, reg=0.5, solver="cholesky")
    assert not failed.any()
    np.testing.assert_allclose(out, expected, rtol=2e-3, atol=2e-4)


def test_cholesky_rows_report_indefinite_rows_and_leave_them_untouched():
    """Negative confidences can make A_u indefinite: the row is flagged (after the float64 retry), X[u] kept."""
    indptr, indices, conf, pref, X, Y = random_problem(12, m=6, n=8, d=3, density=0.9)
    conf = conf.copy()
    conf[indptr[1] : indptr[2]] = -50.0  # row 1: c_ui - c0 hugely negative
    for dtype in (np.float64, np.float32):
        out = X.astype(dtype)
        failed = K.half_step(indptr, indices, conf.astype(dtype), pref.astype(dtype), Y.astype(dtype), out,
                             c0=1.0, reg=0.1, solver="cholesky")
        assert failed[1] == 1 and failed.sum() == 1
        np.testing.assert_array_equal(out[1], X[1].astype(dtype))
        assert np.isfinite(out).all()


# --------------------------------------------------------------- lock-step CG (four rows per group, d = 128 work)
def reference_cg(indptr, indices, conf, pref, Y, X, c0, reg, steps):
    """Independent numpy CG per row in float64: dense A_u and b_u, the kernel's warm start and guards."""
    Y = Y.astype(np.float64)
    G0 = c0 * Y.T @ Y + reg * np.eye(Y.shape[1])
    out = X.astype(np.float64).copy()
    for u in range(len(indptr) - 1):
        s, e = indptr[u], indptr[u + 1]
        Yu = Y[indices[s:e]]
        c = conf[s:e].astype(np.float64)
        A = G0 + Yu.T @ ((c - c0)[:, None] * Yu)
        b = Yu.T @ (c * pref[s:e])
        x = out[u].copy()
        r = b - A @ x
        p = r.copy()
        rs = r @ r
        for _ in range(steps):
            if not rs > 1e-30:
                break
            Ap = A @ p
            pAp = p @ Ap
            if not pAp > 0:
                break
            a = rs / pAp
            x += a * p
            r -= a * Ap
            rs_new = r @ r
            p = r + rs_new / rs * p
            rs = rs_new
        out[u] = x
    return out


def uneven_problem(seed, m, n, d, dtype):
    """Rows of lengths 0, 1, 2, ... (unequal within every group of four) in a shuffled row order."""
    rng = np.random.default_rng(seed)
    lengths = rng.permutation(np.arange(m) % (n + 1))
    lengths[rng.integers(m)] = 0
    lengths[rng.integers(m)] = 1
    rows = np.repeat(np.arange(m), lengths)
    cols = np.concatenate([np.sort(rng.choice(n, size=k, replace=False)) for k in lengths])
    csr = sp.csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(m, n))
    nnz = csr.nnz
    conf = (1.0 + 3.0 * rng.random(nnz)).astype(dtype)
    pref = (rng.random(nnz) < 0.8).astype(dtype)
    X = rng.normal(scale=0.3, size=(m, d)).astype(dtype)
    Y = rng.normal(scale=0.3, size=(n, d)).astype(dtype)
    return csr.indptr.astype(np.int32), csr.indices.astype(np.int32), conf, pref, X, Y


@pytest.mark.parametrize("m", [1, 3, 4, 5, 11, 37])  # groups of 4 with a short last group
@pytest.mark.parametrize("lockstep_max", [0, 5, 10_000])  # all rows alone, mixed, all in groups
def test_lockstep_cg_matches_reference_cg(m, lockstep_max):
    """Every grouping gives the iterates of an independent per-row CG (1, 2 and 3 warm-started steps)."""
    indptr, indices, conf, pref, X, Y = uneven_problem(m, m, n=12, d=6, dtype=np.float64)
    for steps in (1, 2, 3):
        out = X.copy()
        K.half_step(indptr, indices, conf, pref, Y, out, c0=0.5, reg=0.1, solver="cg", cg_steps=steps,
                    lockstep_max=lockstep_max)
        np.testing.assert_allclose(out, reference_cg(indptr, indices, conf, pref, Y, X, 0.5, 0.1, steps),
                                   rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("m", [1, 3, 5, 37])
@pytest.mark.parametrize("window_rows", [1, 3, 12, 1000])  # one fixed row per window ... one window in all
@pytest.mark.parametrize("chunk_bytes", [1, 10 ** 9])  # a chunk per row, or as few chunks as threads
def test_windowed_cg_matches_reference_cg(m, window_rows, chunk_bytes, monkeypatch):
    """Long rows advanced in chunks over windows of the fixed side give the iterates of a per-row CG."""
    monkeypatch.setattr(K, "WINDOW_CHUNK_BYTES", chunk_bytes)
    indptr, indices, conf, pref, X, Y = uneven_problem(m + 100, m, n=12, d=6, dtype=np.float64)
    for steps in (0, 1, 3):
        out = X.copy()
        K.half_step(indptr, indices, conf, pref, Y, out, c0=0.5, reg=0.1, solver="cg", cg_steps=steps,
                    window_row_bytes=1, window_bytes=window_rows * 6 * 8)
        np.testing.assert_allclose(out, reference_cg(indptr, indices, conf, pref, Y, X, 0.5, 0.1, steps),
                                   rtol=1e-10, atol=1e-12)


def test_window_plan_takes_the_long_rows_in_balanced_chunks():
    """Rows whose factors exceed the byte limit are windowed, dealt to at least one chunk per worker in snake
    order; the chunks partition them and carry similar entry counts."""
    lengths = np.array([100, 90, 80, 70, 60, 50, 40, 5, 4, 0])
    order = np.arange(len(lengths))[::-1].copy()  # any row numbering: the plan follows `order`
    n_long, rows, chunk_start = K.window_plan(order, lengths, d=8, itemsize=4, n_workers=2, row_bytes=40 * 32 - 1)
    assert n_long == 7
    assert sorted(rows) == sorted(order[:7])
    assert chunk_start[0] == 0 and chunk_start[-1] == 7 and len(chunk_start) == 3
    pos = {r: i for i, r in enumerate(order)}
    loads = [sum(lengths[pos[r]] for r in rows[a:b]) for a, b in zip(chunk_start[:-1], chunk_start[1:])]
    assert max(loads) - min(loads) <= lengths[0] - lengths[6]
    assert K.window_plan(order, lengths, d=8, itemsize=4, n_workers=2, row_bytes=10 ** 9) is None
    # a cache budget smaller than the rows' vectors asks for more chunks than workers
    _, _, many = K.window_plan(order, lengths, d=8, itemsize=4, n_workers=2, row_bytes=1, chunk_bytes=4 * 8 * 4)
    assert len(many) - 1 == 9  # one row per chunk (the empty row is never long)


@pytest.mark.parametrize("n_workers", [1, 2, 3])
def test_mixed_cg_gives_each_row_the_iterates_of_its_own_kernel(n_workers):
    """Windowed chunks and short rows in one job: bit for bit what the two kernels give one after the other."""
    indptr, indices, conf, pref, X, Y = uneven_problem(3, 41, n=30, d=32, dtype=np.float32)
    G0 = (0.5 * Y.T.astype(np.float64) @ Y + 0.1 * np.eye(32)).astype(np.float32)
    order = K.row_order(indptr)
    lengths = np.diff(indptr)[order]
    n_long, long_rows, chunk_start = K.window_plan(order, lengths, 32, 4, n_workers, row_bytes=20 * 32 * 4,
                                                   shared=True)
    short = order[n_long:]
    n_single = int(np.searchsorted(-lengths[n_long:], -25, side="left"))
    apart, loss_apart = X.copy(), np.zeros(len(X))
    K.implicit_cg_windowed(indptr, indices, conf, pref, Y, G0, 0.5, 3, long_rows, chunk_start, 7, n_workers, apart,
                           loss_apart)
    K.implicit_cg_rows(indptr, indices, conf, pref, Y, G0, 0.5, 3, short, n_single, n_workers, apart, loss_apart)
    together, loss_together = X.copy(), np.zeros(len(X))
    K.implicit_cg_mixed(indptr, indices, conf, pref, Y, G0, 0.5, 3, long_rows, chunk_start, 7, short, n_single,
                        n_workers, together, loss_together)
    np.testing.assert_array_equal(together, apart)
    np.testing.assert_array_equal(loss_together, loss_apart)
    # either part alone
    only_short = X.copy()
    K.implicit_cg_mixed(indptr, indices, conf, pref, Y, G0, 0.5, 3, np.zeros(0, np.int64), np.zeros(1, np.int64), 7,
                        order, 0, n_workers, only_short, np.zeros(0))
    rows_alone = X.copy()
    K.implicit_cg_rows(indptr, indices, conf, pref, Y, G0, 0.5, 3, order, 0, n_workers, rows_alone, np.zeros(0))
    np.testing.assert_array_equal(only_short, rows_alone)


def test_shared_window_plan_takes_as_many_chunks_as_the_long_rows_share_of_the_work():
    lengths = np.array([100, 90, 80] + [10] * 73)  # long rows: 270 of 1000 entries
    order = np.arange(len(lengths))
    plan = K.window_plan(order, lengths, d=8, itemsize=4, n_workers=2, row_bytes=50 * 32, shared=True)
    assert plan[0] == 3 and len(plan[2]) - 1 == 1  # 27 % of the work: one chunk beside the short rows
    plan = K.window_plan(order, lengths, d=8, itemsize=4, n_workers=8, row_bytes=50 * 32, shared=True)
    assert len(plan[2]) - 1 == 3  # ceil(8 x 0.27) = 3 chunks
    plan = K.window_plan(order, lengths, d=8, itemsize=4, n_workers=2, row_bytes=50 * 32)
    assert len(plan[2]) - 1 == 2  # alone, the long rows take every worker


def test_lockstep_cg_float32_d128_close_to_reference():
    """The d = 128 float32 path (8-entry sparse sweeps, 4 x 4 dense blocks) against the float64 reference."""
    indptr, indices, conf, pref, X, Y = uneven_problem(7, 23, n=40, d=128, dtype=np.float32)
    out = X.copy()
    K.half_step(indptr, indices, conf, pref, Y, out, c0=1.0, reg=0.5, solver="cg", cg_steps=3)
    ref = reference_cg(indptr, indices, conf, pref, Y, X, 1.0, 0.5, 3)
    np.testing.assert_allclose(out, ref, rtol=2e-3, atol=2e-4 * np.abs(ref).max())
    # the grouping changes the speed, not the result
    single = X.copy()
    K.half_step(indptr, indices, conf, pref, Y, single, c0=1.0, reg=0.5, solver="cg", cg_steps=3, lockstep_max=0)
    np.testing.assert_allclose(out, single, rtol=1e-5, atol=1e-6)
    windowed = X.copy()
    K.half_step(indptr, indices, conf, pref, Y, windowed, c0=1.0, reg=0.5, solver="cg", cg_steps=3,
                window_row_bytes=1, window_bytes=7 * 128 * 4)
    np.testing.assert_allclose(windowed, ref, rtol=2e-3, atol=2e-4 * np.abs(ref).max())


def test_lockstep_cg_stops_each_row_on_its_own():
    """A converged row (zero residual) in a group stops and stays finite while its group-mates keep iterating."""
    indptr, indices, conf, pref, X, Y = uneven_problem(3, 8, n=10, d=5, dtype=np.float64)
    exact = X.copy()
    K.half_step(indptr, indices, conf, pref, Y, exact, c0=1.0, reg=0.1, solver="cholesky")
    start = X.copy()
    start[::2] = exact[::2]  # half the rows start at their solution (residual ~0)
    out = start.copy()
    K.half_step(indptr, indices, conf, pref, Y, out, c0=1.0, reg=0.1, solver="cg", cg_steps=3)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[::2], exact[::2], atol=1e-10)
    np.testing.assert_allclose(out, reference_cg(indptr, indices, conf, pref, Y, start, 1.0, 0.1, 3), atol=1e-10)
    # a NaN in one row's factors is confined to that row
    bad = X.copy()
    bad[1, 0] = np.nan
    K.half_step(indptr, indices, conf, pref, Y, bad, c0=1.0, reg=0.1, solver="cg", cg_steps=3)
    keep = np.ones(8, dtype=bool)
    keep[1] = False
    np.testing.assert_allclose(bad[keep], reference_cg(indptr, indices, conf, pref, Y, X, 1.0, 0.1, 3)[keep],
                               atol=1e-10)


@pytest.mark.parametrize("threads", [1, 2])
def test_work_queue_hands_out_every_item_exactly_once(threads):
    """The row kernels' dynamic schedule: every work item is taken by exactly one worker."""
    with limit_threads(threads):
        for n, workers in ((0, 2), (1, 3), (100_000, 2), (7, 16)):
            np.testing.assert_array_equal(_native.work_queue_counts(n, workers), np.ones(n, dtype=np.int64))


def test_half_steps_equal_single_and_multi_threaded():
    """Dynamic scheduling changes which thread solves a row, never the row's result (both solvers)."""
    indptr, indices, conf, pref, X, Y = uneven_problem(5, 61, n=30, d=8, dtype=np.float32)
    out = {}
    windowed = {"window_row_bytes": 20 * 8 * 4, "window_bytes": 7 * 8 * 4}  # rows over 20 entries windowed
    for threads in (1, 2):
        with limit_threads(threads):
            for solver, kw in (("cg", {}), ("cholesky", {}), ("cg", windowed)):
                res = X.copy()
                K.half_step(indptr, indices, conf, pref, Y, res, c0=1.0, reg=0.3, solver=solver, cg_steps=3, **kw)
                out[threads, solver, len(kw)] = res
    for key in ("cg", 0), ("cholesky", 0), ("cg", 2):
        np.testing.assert_array_equal(out[(1,) + key], out[(2,) + key])


@pytest.mark.parametrize("solver, kw", [
    ("cholesky", {}),
    ("cholesky", {"long_row": 3}),  # long rows through the gathered-BLAS path, in blocks
    ("cg", {}),
    ("cg", {"lockstep_max": 0}),  # every row alone
    ("cg", {"lockstep_max": 5}),  # mixed
    ("cg", {"window_row_bytes": 5 * 9 * 8, "window_bytes": 4 * 9 * 8}),  # rows over 5 entries windowed
])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_half_step_row_loss_is_each_rows_observed_loss_at_its_new_factors(solver, kw, dtype):
    """``row_loss`` filled by the half-step equals a per-row loss computed densely afterwards from the result."""
    indptr, indices, conf, pref, X, Y = uneven_problem(11, 29, n=14, d=9, dtype=dtype)
    c0 = 0.5
    row_loss = np.full(X.shape[0], np.nan)  # every entry must be written, empty rows with 0
    K.half_step(indptr, indices, conf, pref, Y, X, c0=c0, reg=0.1, solver=solver, cg_steps=2, row_loss=row_loss,
                **kw)
    Xd, Yd = X.astype(np.float64), Y.astype(np.float64)
    expect = np.zeros(X.shape[0])
    for u in range(X.shape[0]):
        s, e = indptr[u], indptr[u + 1]
        sc = Yd[indices[s:e]] @ Xd[u]
        expect[u] = np.sum(conf[s:e] * (pref[s:e] - sc) ** 2 - c0 * sc ** 2)
    tol = 1e-10 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(row_loss, expect, rtol=tol, atol=tol)
    whole = K.implicit_observed_loss(indptr, indices, conf, pref, X, Y, c0)
    assert np.sum(row_loss) == pytest.approx(whole, rel=tol, abs=tol)
    # the full loss from the fused sum equals the one from a separate pass
    assert K.implicit_loss(indptr, indices, conf, pref, X, Y, c0, 0.1, observed=np.sum(row_loss)) == \
        pytest.approx(K.implicit_loss(indptr, indices, conf, pref, X, Y, c0, 0.1), rel=tol)


def test_long_row_loss_over_several_blocks():
    """The BLAS path's loss, gathered in blocks smaller than the row, against the dense per-row loss."""
    indptr, indices, conf, pref, X, Y = uneven_problem(4, 30, n=40, d=5, dtype=np.float64)
    order = K.row_order(indptr)
    failed = np.zeros(30, dtype=np.uint8)
    row_loss = np.zeros(30)
    G0 = K.gram_base(Y, 1.0, 0.2)
    K._solve_long_rows(indptr, indices, conf, pref, Y, G0, 1.0, order[:3], X, failed, row_loss, block=7)
    for u in order[:3]:
        s, e = indptr[u], indptr[u + 1]
        assert e - s > 7
        sc = Y[indices[s:e]] @ X[u]
        assert row_loss[u] == pytest.approx(np.sum(conf[s:e] * (pref[s:e] - sc) ** 2 - sc ** 2), rel=1e-12)
    assert not row_loss[order[3:]].any()


def test_half_step_rejects_a_bad_row_loss_buffer():
    indptr, indices, conf, pref, X, Y = uneven_problem(1, 6, n=5, d=3, dtype=np.float64)
    with pytest.raises(ValueError, match="row_loss"):
        K.half_step(indptr, indices, conf, pref, Y, X, c0=1.0, reg=0.1, solver="cg", row_loss=np.zeros(5))


def test_single_threaded_blas_limits_every_blas_and_restores_it():
    from threadpoolctl import threadpool_info

    from mfrec.kernels.threads import single_threaded_blas

    before = {i["filepath"]: i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}
    assert before, "numpy's and scipy's BLAS are loaded with mfrec"
    for _ in range(2):  # the controller is made once and reused
        with single_threaded_blas():
            inside = {i["filepath"]: i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}
            assert set(inside) == set(before) and set(inside.values()) == {1}
        assert {i["filepath"]: i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"} == before
