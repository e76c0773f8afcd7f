"""Implicit-feedback ALS kernels (Hu, Koren & Volinsky 2008; CG after Takacs, Pilaszy & Tikk 2011).

Pure numba/numpy functions on plain arrays: a CSR pattern ``indptr, indices`` (rows are the side being
solved), per-entry confidences ``conf`` (c_ui) and preferences ``pref`` (p_ui, usually 1) aligned with
``indices``, the fixed factor matrix ``Y`` (n_cols, d) and the output ``X`` (n_rows, d). They know nothing
of ids or pandas; :class:`mfrec.models.implicit.ImplicitALS` validates once and calls them on trusted,
contiguous arrays.

Objective (all pairs; c0 is the confidence of an unobserved pair, p = 0 there; c0 = 1 in Hu et al.)::

    L = sum_{u,i} c_ui (p_ui - x_u . y_i)^2 + lambda (sum_u ||x_u||^2 + sum_i ||y_i||^2)

With Y fixed, each row's exact minimiser is ``x_u = A_u^-1 b_u`` with::

    A_u = sum_i c_ui y_i y_i^T + lambda I = c0 Y^T Y + lambda I + sum_{i in R(u)} (c_ui - c0) y_i y_i^T
    b_u = sum_{i in R(u)} c_ui p_ui y_i

so a half-step costs O(nnz d^2 + n d^3) exactly (Cholesky) or O(steps (nnz d + n d^2)) by conjugate gradient.
``G0 = c0 Y^T Y + lambda I`` is computed once per half-step (one GEMM) and shared by every row.

The loss itself is evaluated without touching the dense matrix::

    L = sum_{(u,i) observed} [c_ui (p_ui - s_ui)^2 - c0 s_ui^2] + c0 <X^T X, Y^T Y>_F + lambda (||X||^2 + ||Y||^2)

(s_ui = x_u . y_i), because sum_{all} s^2 = trace(X^T X Y^T Y): O(nnz d + (m + n) d^2).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange
from threadpoolctl import threadpool_limits

from mfrec.kernels.dense import rank_tolerance, solve_psd
from mfrec.kernels.linalg import (
    CACHE,
    axpy,
    cholesky_upper_inplace,
    cholesky_upper_solve_inplace,
    dot,
    dot8,
    fetch_add,
    gram_apply,
    matvec_rows,
    prefer_wide_vectors,
)

__all__ = [
    "implicit_cholesky_rows",
    "implicit_cg_rows",
    "implicit_observed_loss",
    "implicit_observed_grad",
    "implicit_observed_curvature",
    "gram_base",
    "factor_gram",
    "implicit_loss",
    "half_step",
    "gd_half_step",
    "row_order",
    "transpose_entries",
]

_FM = {"reassoc", "contract"}
#: rows with more entries than this go to the BLAS path of the exact solver (gathered GEMM); measured here the
#: register-blocked numba kernel was as fast up to ~16k entries per row, so only very long rows take it
LONG_ROW = 65536
#: CG rows with more entries than this are solved one at a time, shorter ones four at a time in lock-step
#: (four rows' ``Y_u``, 4 x 256 x 512 B at d = 128 float32, still fit the 1 MiB L2 between CG steps)
LOCKSTEP_MAX = 256


# ------------------------------------------------------------------------------------------- per-row loss
@njit(nogil=True, cache=CACHE, fastmath=_FM, inline="always")
def observed_row_loss(start, end, indices, conf, pref, c0, Y, x, n):
    """``sum_{e in [start, end)} [c_e (p_e - s_e)^2 - c0 s_e^2]`` with ``s_e = x . Y[indices[e]]`` (float64).

    The observed part of one row's loss (see the module docstring). ``s_e`` is a dot product in the factor
    dtype, eight entries per sweep over ``x`` (:func:`mfrec.kernels.linalg.dot8`); the per-entry terms are
    summed in float64. ``c0`` is a float.
    """
    acc = 0.0
    e = start
    while e + 8 <= end:
        s0, s1, s2, s3, s4, s5, s6, s7 = dot8(Y, indices, e, x, n)
        for q in range(8):
            sq = np.float64(s0 if q == 0 else s1 if q == 1 else s2 if q == 2 else s3 if q == 3 else
                            s4 if q == 4 else s5 if q == 5 else s6 if q == 6 else s7)
            diff = pref[e + q] - sq
            acc += conf[e + q] * diff * diff - c0 * sq * sq
        e += 8
    while e < end:
        sq = np.float64(dot(x, Y[indices[e]], n))
        diff = pref[e] - sq
        acc += conf[e] * diff * diff - c0 * sq * sq
        e += 1
    return acc


# ----------------------------------------------------------------------------------------------- exact solve
@njit(parallel=True, cache=CACHE, fastmath=_FM)
def implicit_cholesky_rows(indptr, indices, conf, pref, Y, G0, c0, rows, n_workers, X, failed, row_loss):
    """Exact per-row solve ``x_u = (G0 + sum_i (c_ui - c0) y_i y_i^T)^-1 sum_i c_ui p_ui y_i`` for ``rows``.

    Parameters
    ----------
    indptr : int32/int64 (n_rows + 1,); indices : int32 (nnz,)
        CSR pattern, rows = the side solved here.
    conf, pref : (nnz,) float, same dtype as ``Y``
        c_ui and p_ui per stored entry.
    Y : (n_cols, d) float32/float64, C-contiguous
        Fixed factors of the other side.
    G0 : (d, d) float64
        ``c0 Y^T Y + lambda I`` (only the upper triangle is read).
    c0 : float
        Confidence of unobserved pairs.
    rows : (r,) int64
        Rows to solve, longest first: each thread takes the next row from a shared atomic counter
        (:func:`mfrec.kernels.linalg.fetch_add`), so the long rows are spread first and the short ones even out
        the end (dynamic scheduling, as OpenMP's ``schedule(dynamic)``).
    n_workers : int
        Parallel workers, one per numba thread (``numba.get_num_threads()``, passed in: reading it inside
        the kernel would stop numba from caching the compiled kernel).
    X : (n_rows, d) same dtype as ``Y``
        Output; rows not listed are left untouched.
    failed : (n_rows,) uint8
        Set to 1 where ``A_u`` was not numerically positive definite (``X[u]`` is then left unchanged).
    row_loss : (n_rows,) float64, or (0,) for none
        When given, ``row_loss[u]`` is set to the observed part of row ``u``'s loss at its new ``x_u``
        (:func:`observed_row_loss`), computed while the row's factors are still in cache: summed, it replaces
        a separate :func:`implicit_observed_loss` pass over the whole matrix after the half-step.

    Notes
    -----
    The Gram update ``sum (c - c0) y y^T`` is accumulated in the dtype of ``Y`` four entries at a time
    (register blocking: one load/store of ``A_jk`` per four rank-1 updates), only the upper triangle. The
    blocked Cholesky factorisation (:func:`mfrec.kernels.linalg.cholesky_upper_inplace`) and the triangular
    solves run in the dtype of ``Y`` on per-thread scratch: for float32 factors ``A_u`` already carries the
    float32 rounding of the Gram accumulation, and a backward-stable float32 Cholesky adds an error of the
    same order (at d = 128 it is ~1.6x faster than float64). A row whose ``A_u`` is not positive definite in
    float32 is refactorised in float64 before it is reported in ``failed``.
    """
    d = Y.shape[1]
    n = rows.shape[0]
    cz = Y.dtype.type(c0)  # weights in the factor dtype: the rank-1 updates must not run in float64
    with_loss = row_loss.shape[0] > 0
    next_row = np.zeros(1, dtype=np.int64)  # the work queue: index into rows of the next row to take
    for _w in prange(max(1, min(n_workers, n))):  # one worker per thread, scratch per worker
        prefer_wide_vectors()
        Af = np.empty((d, d), dtype=Y.dtype)
        A = np.empty((d, d), dtype=Y.dtype)
        A64 = np.empty((d, d), dtype=np.float64)
        bf = np.empty(d, dtype=Y.dtype)
        b = np.empty(d, dtype=Y.dtype)
        b64 = np.empty(d, dtype=np.float64)
        while True:
            t = fetch_add(next_row, 0, 1)
            if t >= n:
                break
            u = rows[t]
            for j in range(d):
                bf[j] = 0.0
                aj = Af[j, j:]
                for k in range(d - j):
                    aj[k] = 0.0
            start = indptr[u]
            end = indptr[u + 1]
            e = start
            # four rank-1 updates per sweep over the upper triangle: A += sum_q w_q y_q y_q^T
            # (row slices indexed from 0: see linalg.cholesky_upper_inplace on why)
            while e + 4 <= end:
                y0 = Y[indices[e]]
                y1 = Y[indices[e + 1]]
                y2 = Y[indices[e + 2]]
                y3 = Y[indices[e + 3]]
                w0 = conf[e] - cz
                w1 = conf[e + 1] - cz
                w2 = conf[e + 2] - cz
                w3 = conf[e + 3] - cz
                v0 = conf[e] * pref[e]
                v1 = conf[e + 1] * pref[e + 1]
                v2 = conf[e + 2] * pref[e + 2]
                v3 = conf[e + 3] * pref[e + 3]
                for j in range(d):
                    a0 = w0 * y0[j]
                    a1 = w1 * y1[j]
                    a2 = w2 * y2[j]
                    a3 = w3 * y3[j]
                    aj = Af[j, j:]
                    z0 = y0[j:]
                    z1 = y1[j:]
                    z2 = y2[j:]
                    z3 = y3[j:]
                    for k in range(d - j):
                        aj[k] += a0 * z0[k] + a1 * z1[k] + a2 * z2[k] + a3 * z3[k]
                    # b += c p y
                    bf[j] += v0 * y0[j] + v1 * y1[j] + v2 * y2[j] + v3 * y3[j]
                e += 4
            while e < end:
                y0 = Y[indices[e]]
                w0 = conf[e] - cz
                v0 = conf[e] * pref[e]
                for j in range(d):
                    a0 = w0 * y0[j]
                    aj = Af[j, j:]
                    z0 = y0[j:]
                    for k in range(d - j):
                        aj[k] += a0 * z0[k]
                    bf[j] += v0 * y0[j]
                e += 1
            for j in range(d):
                b[j] = bf[j]
                aj = A[j, j:]
                fj = Af[j, j:]
                gj = G0[j, j:]
                for k in range(d - j):
                    aj[k] = gj[k] + fj[k]  # A = G0 + sum (c - c0) y y^T, rounded to the factor dtype
            # A = U^T U (blocked right-looking, in the factor dtype), then U^T U x = b
            if cholesky_upper_inplace(A, d):
                cholesky_upper_solve_inplace(A, b, d)
                for j in range(d):
                    X[u, j] = b[j]
                if with_loss:
                    row_loss[u] = observed_row_loss(start, end, indices, conf, pref, c0, Y, X[u], d)
                continue
            # not positive definite in the factor dtype: retry in float64 before giving up on the row
            for j in range(d):
                b64[j] = bf[j]
                aj = A64[j, j:]
                fj = Af[j, j:]
                gj = G0[j, j:]
                for k in range(d - j):
                    aj[k] = gj[k] + fj[k]
            if cholesky_upper_inplace(A64, d):
                cholesky_upper_solve_inplace(A64, b64, d)
                for j in range(d):
                    X[u, j] = b64[j]
            else:
                failed[u] = 1
            if with_loss:
                row_loss[u] = observed_row_loss(start, end, indices, conf, pref, c0, Y, X[u], d)


# ------------------------------------------------------------------------------------- conjugate gradient
@njit(parallel=True, cache=CACHE, fastmath=_FM)
def implicit_cg_rows(indptr, indices, conf, pref, Y, G0, c0, steps, rows, n_single, n_workers, X, row_loss):
    """``steps`` conjugate-gradient iterations on ``A_u x_u = b_u`` per row, warm-started from ``X[u]``.

    Parameters
    ----------
    indptr, indices, conf, pref, Y, c0
        As :func:`implicit_cholesky_rows`.
    G0 : (d, d) same dtype as ``Y``
        The full symmetric ``c0 Y^T Y + lambda I``.
    steps : int
        CG iterations per row (Takacs et al. 2011 use 2-4).
    rows : (r,) int64
        Rows to update, longest first (:func:`row_order`).
    n_single : int
        The first ``n_single`` entries of ``rows`` (the long rows) are solved one at a time; the rest in
        *groups of four consecutive entries* (similar lengths) advanced in lock-step, the last group possibly
        shorter. Work item ``g`` is single row ``g`` for ``g < n_single``, else group ``g - n_single``; each
        thread takes the next work item from a shared atomic counter (dynamic scheduling, longest first).
    n_workers : int
        As :func:`implicit_cholesky_rows`.
    X : (n_rows, d) same dtype as ``Y``
        Updated in place; rows not listed are left untouched.
    row_loss : (n_rows,) float64, or (0,) for none
        As :func:`implicit_cholesky_rows`: the observed part of each listed row's loss at its new ``x_u``,
        from one more sweep over the row's ``Y_u`` right after its last CG step (from L2 for all but the
        long rows).

    Notes
    -----
    Plain CG per row (``r = b - A x``, ``p = r``; ``a = r.r / p.A p``, ``x += a p``, ``r -= a A p``,
    ``p = r + (r'.r' / r.r) p``), with ``A p = G0 p + sum_i (c_ui - c0)(y_i . p) y_i``: O(d^2 + n_u d) per
    step; the first residual's dense term ``G0 x`` is computed the same way in the first pass over the row
    (no separate ``X G0`` GEMM, which ran single-threaded and held an n_rows x d array). In a group of four
    the dense term of all four rows is one 4 x d by d x d GEMM by BLAS (``np.dot`` into the group's scratch;
    BLAS is held to one thread by :func:`half_step`): ``G0``, 64 KiB at d = 128 float32, is read once per
    four rows, and BLAS's kernel ran 2-3x the FMA rate of the hand-blocked numba loop it replaced
    (30 against 17 GFMA/s at d = 128, 47 against 17 at d = 64, one core). Each row keeps its own scalars, so
    the iterates are exactly those of four independent CGs. Long rows are not grouped: the ``Y_u`` of four long
    rows would not stay in L2 between the CG steps, one row's does. Divisions are guarded per row: a row stops
    (keeps its current ``x``) once its residual is ~0 or NaN or ``p^T A p`` is not positive (implicit issues
    #19, #106), while the others of its group go on.
    """
    d = Y.shape[1]
    n = rows.shape[0]
    n_items = n_single + (n - n_single + 3) // 4
    dt = Y.dtype
    cz = dt.type(c0)  # per-entry coefficients stay in the factor dtype (no float64 promotion)
    with_loss = row_loss.shape[0] > 0
    next_item = np.zeros(1, dtype=np.int64)  # the work queue: the next work item to take
    for _w in prange(max(1, min(n_workers, n_items))):  # one worker per thread, scratch per worker
        prefer_wide_vectors()
        x = np.zeros((4, d), dtype=dt)
        r = np.zeros((4, d), dtype=dt)
        p = np.zeros((4, d), dtype=dt)
        Ap = np.zeros((4, d), dtype=dt)
        rs = np.zeros(4, dtype=dt)
        live = np.zeros(4, dtype=np.bool_)
        while True:
            g = fetch_add(next_item, 0, 1)
            if g >= n_items:
                break
            if g < n_single:
                t0 = g
                nq = 1
            else:
                t0 = n_single + 4 * (g - n_single)
                nq = min(4, n - t0)
            for q in range(4):
                xq = x[q]
                if q >= nq:  # padding slot: zero vectors, never updated or stored
                    for j in range(d):
                        xq[j] = 0.0
                        p[q, j] = 0.0
                    live[q] = False
                    continue
                u = rows[t0 + q]
                for j in range(d):
                    xq[j] = X[u, j]
            # dense part of the first residual, r_q = -G0 x_q, in the same pass (no separate X G0 sweep)
            if nq == 1:
                matvec_rows(G0, x[0], r[0], d)
            else:
                np.dot(x, G0, r)  # r_q = x_q G0 = (G0 x_q)^T: G0 is symmetric
            for q in range(nq):
                u = rows[t0 + q]
                xq = x[q]
                rq = r[q]
                pq = p[q]
                for j in range(d):
                    rq[j] = -rq[j]
                # r = b - A x = sum_i [c p - (c - c0) (y.x)] y_i - G0 x
                gram_apply(indptr[u], indptr[u + 1], indices, conf, pref, cz, Y, xq, rq, d, True)
                s = dt.type(0.0)
                for j in range(d):
                    pq[j] = rq[j]
                    s += rq[j] * rq[j]
                rs[q] = s
                live[q] = True
            for _ in range(steps):
                n_live = 0
                for q in range(nq):
                    if live[q] and not rs[q] > 1e-30:  # converged (or NaN): no division by ~0
                        live[q] = False
                    if live[q]:
                        n_live += 1
                if n_live == 0:
                    break
                # Ap_q = G0 p_q (a stopped row's Ap is computed but unused)
                if nq == 1:
                    matvec_rows(G0, p[0], Ap[0], d)
                else:
                    np.dot(p, G0, Ap)
                for q in range(nq):
                    if not live[q]:
                        continue
                    u = rows[t0 + q]
                    pq = p[q]
                    Apq = Ap[q]
                    # Ap += sum_i (c - c0)(y.p) y
                    gram_apply(indptr[u], indptr[u + 1], indices, conf, pref, cz, Y, pq, Apq, d, False)
                    pAp = dot(pq, Apq, d)
                    if not pAp > 0.0:
                        live[q] = False
                        continue
                    a = rs[q] / pAp
                    xq = x[q]
                    rq = r[q]
                    rs_new = dt.type(0.0)
                    for j in range(d):
                        xq[j] += a * pq[j]
                        rq[j] -= a * Apq[j]
                        rs_new += rq[j] * rq[j]
                    beta = rs_new / rs[q]
                    for j in range(d):
                        pq[j] = rq[j] + beta * pq[j]
                    rs[q] = rs_new
            for q in range(nq):
                u = rows[t0 + q]
                for j in range(d):
                    X[u, j] = x[q, j]
                if with_loss:
                    row_loss[u] = observed_row_loss(indptr[u], indptr[u + 1], indices, conf, pref, c0, Y, x[q], d)


# ---------------------------------------------------------------------------------- loss and its gradient
@njit(parallel=True, cache=CACHE, fastmath=_FM)
def implicit_observed_loss(indptr, indices, conf, pref, X, Y, c0):
    """``sum_{observed (u, i)} [c_ui (p_ui - s_ui)^2 - c0 s_ui^2]`` with ``s_ui = x_u . y_i`` (float64).

    Added to ``c0 <X^T X, Y^T Y>`` and the regularisation it gives the full loss (see module docstring); one
    :func:`observed_row_loss` per row.
    """
    n_rows = X.shape[0]
    d = X.shape[1]
    total = 0.0
    for u in prange(n_rows):
        prefer_wide_vectors()
        total += observed_row_loss(indptr[u], indptr[u + 1], indices, conf, pref, c0, Y, X[u], d)
    return total


@njit(parallel=True, cache=CACHE, fastmath=_FM)
def implicit_observed_grad(indptr, indices, conf, pref, X, Y, c0, out):
    """``out[u] = sum_{i in R(u)} [(c_ui - c0) s_ui - c_ui p_ui] y_i``, the sparse half of ``(A_u x_u - b_u)``.

    The full gradient of ``L`` in ``x_u`` is ``2 (G0 x_u + out[u])`` with ``G0 = c0 Y^T Y + lambda I``.
    """
    n_rows = X.shape[0]
    d = X.shape[1]
    for u in prange(n_rows):
        o = out[u]
        for j in range(d):
            o[j] = 0.0
        x = X[u]
        for e in range(indptr[u], indptr[u + 1]):
            y = Y[indices[e]]
            s = dot(x, y, d)
            axpy((conf[e] - c0) * s - conf[e] * pref[e], y, o, d)


@njit(parallel=True, cache=CACHE, fastmath=_FM)
def implicit_observed_curvature(indptr, indices, conf, G, Y, c0):
    """``sum_u sum_{i in R(u)} (c_ui - c0) (y_i . g_u)^2`` (float64): the sparse part of ``sum_u g_u^T A_u g_u``."""
    n_rows = G.shape[0]
    d = G.shape[1]
    total = 0.0
    for u in prange(n_rows):
        acc = 0.0
        g = G[u]
        for e in range(indptr[u], indptr[u + 1]):
            s = np.float64(dot(g, Y[indices[e]], d))
            acc += (conf[e] - c0) * s * s
        total += acc
    return total


# ------------------------------------------------------------------------------------- python-level drivers
def factor_gram(Y: np.ndarray) -> np.ndarray:
    """``Y^T Y`` as float64 (d, d): one product in the factor dtype (numpy runs ``A.T @ A`` as a SYRK), promoted."""
    return (Y.T @ Y).astype(np.float64)


def gram_base(Y: np.ndarray, c0: float, reg: float, YtY: np.ndarray | None = None) -> np.ndarray:
    """``G0 = c0 Y^T Y + lambda I`` as float64 (d, d); ``YtY`` (:func:`factor_gram`) when already computed."""
    G = factor_gram(Y) if YtY is None else np.array(YtY, dtype=np.float64, copy=True)
    G *= c0
    G[np.diag_indices_from(G)] += reg
    return G


def implicit_loss(indptr, indices, conf, pref, X, Y, c0: float, reg: float, observed: float | None = None,
                  XtX: np.ndarray | None = None, YtY: np.ndarray | None = None) -> float:
    """The full weighted loss ``L`` over all pairs in O(nnz d + (m + n) d^2) (see module docstring).

    ``observed``: the observed part (:func:`implicit_observed_loss`) if already known, e.g. the sum of the
    ``row_loss`` a :func:`half_step` on ``X`` filled in; then only the O((m + n) d^2) dense terms are computed.
    ``XtX``, ``YtY``: :func:`factor_gram` of ``X`` and ``Y`` if already computed (the fit reuses them for the
    next half-steps' ``G0``), leaving O(d^2) work.
    """
    if observed is None:
        observed = implicit_observed_loss(indptr, indices, conf, pref, X, Y, c0)
    obs = float(observed)
    XtX = factor_gram(X) if XtX is None else XtX
    YtY = factor_gram(Y) if YtY is None else YtY
    pattern_all = float(c0 * np.sum(XtX * YtY))
    norms = float(reg * (np.trace(XtX) + np.trace(YtY)))
    return float(obs + pattern_all + norms)


def row_order(indptr: np.ndarray) -> np.ndarray:
    """Row indices sorted by decreasing length (int64): long rows first, for load balance."""
    lengths = np.diff(indptr)
    return np.argsort(-lengths, kind="stable").astype(np.int64)


def transpose_entries(indptr, indices, n_cols: int):
    """CSR of the transpose: ``(indptr_T, indices_T, perm)`` with ``perm`` mapping new entry -> old entry.

    Per-entry arrays follow with ``conf_T = conf[perm]``. Column indices of the result are sorted.
    """
    nnz = len(indices)
    rows = np.repeat(np.arange(len(indptr) - 1, dtype=np.int64), np.diff(indptr))
    perm = np.argsort(indices, kind="stable")  # stable: rows stay ascending within each column
    counts = np.bincount(indices, minlength=n_cols)
    indptr_t = np.zeros(n_cols + 1, dtype=np.int64 if nnz > np.iinfo(np.int32).max else np.int32)
    np.cumsum(counts, out=indptr_t[1:])
    return indptr_t, rows[perm].astype(np.int32), perm


#: entries per gathered block of a long row: two (block, d) scratch arrays (8 MiB each at d = 128 float32)
#: instead of two copies of the whole row's factors (134k x 128 x 4 B = 69 MB each on the issue's matrix)
LONG_ROW_BLOCK = 16384


def _solve_long_rows(indptr, indices, conf, pref, Y, G0, c0, long_rows, X, failed, row_loss=None,
                     block: int = LONG_ROW_BLOCK) -> None:
    """Exact solves of long rows by gathered GEMM (BLAS with all its threads): ``Y_u^T W_u Y_u``.

    The Gram matrix and right-hand side are accumulated over blocks of ``block`` entries so that the gathered
    factors never take more than two ``(block, d)`` arrays. ``row_loss`` as in :func:`implicit_cholesky_rows`
    (one more blocked pass: ``s = Y_u x_u``).
    """
    cz = Y.dtype.type(c0)
    for u in long_rows:
        s, e = indptr[u], indptr[u + 1]
        A = np.array(G0, dtype=np.float64, copy=True)
        b = np.zeros(Y.shape[1], dtype=np.float64)
        for lo in range(s, e, block):
            hi = min(e, lo + block)
            Yg = Y[indices[lo:hi]]  # (<= block, d) gathered block
            w = (conf[lo:hi] - cz).astype(Y.dtype)
            A += (Yg.T @ (Yg * w[:, None])).astype(np.float64)
            b += (Yg.T @ (conf[lo:hi] * pref[lo:hi]).astype(Y.dtype)).astype(np.float64)
        # Cholesky, or minimum norm where A_u is numerically singular at the precision of the products above
        # (they run in the factor dtype) and of G0 (a Gram over every row of Y)
        x = solve_psd(A, b, rcond=rank_tolerance(len(b), Y.dtype, Y.shape[0]))
        if not np.isfinite(x).all():
            failed[u] = 1
            continue
        X[u] = x
        if row_loss is not None and len(row_loss):
            acc = 0.0
            for lo in range(s, e, block):
                hi = min(e, lo + block)
                sc = (Y[indices[lo:hi]] @ X[u]).astype(np.float64)
                diff = pref[lo:hi] - sc
                acc += float(np.sum(conf[lo:hi] * diff * diff - c0 * sc * sc))
            row_loss[u] = acc


def half_step(
    indptr,
    indices,
    conf,
    pref,
    Y,
    X,
    *,
    c0: float,
    reg: float,
    solver: str,
    cg_steps: int = 3,
    order: np.ndarray | None = None,
    long_row: int = LONG_ROW,
    lockstep_max: int = LOCKSTEP_MAX,
    row_loss: np.ndarray | None = None,
    YtY: np.ndarray | None = None,
) -> np.ndarray:
    """One ALS half-step: update every row of ``X`` (in place) with ``Y`` fixed; returns the ``failed`` mask.

    ``solver="cholesky"`` solves exactly; rows longer than ``long_row`` use a gathered BLAS GEMM for their
    Gram matrix (with the BLAS threads), the rest the register-blocked numba kernel with BLAS limited to one
    thread so numba threads x BLAS threads never exceed the cores. ``solver="cg"`` runs ``cg_steps``
    warm-started CG iterations per row, rows of at most ``lockstep_max`` entries four at a time in lock-step
    (:func:`implicit_cg_rows`; the grouping changes the speed, not the iterates). ``order`` (from
    :func:`row_order`) may be passed to reuse it.

    ``row_loss``, a float64 array of ``X.shape[0]``, receives the observed part of each row's loss at its new
    factors (see :func:`implicit_cholesky_rows`), computed while the row is in cache: its sum is the
    ``observed`` argument of :func:`implicit_loss`, which then needs no pass over the matrix of its own.
    ``YtY``: :func:`factor_gram` of ``Y`` if the caller has it (saves one product of ``Y``).
    """
    if order is None:
        order = row_order(indptr)
    failed = np.zeros(X.shape[0], dtype=np.uint8)
    if row_loss is None:
        row_loss = np.zeros(0, dtype=np.float64)
    elif row_loss.shape != (X.shape[0],) or row_loss.dtype != np.float64:
        raise ValueError(f"row_loss must be a float64 array of shape ({X.shape[0]},), got {row_loss.dtype} "
                         f"{row_loss.shape}")
    else:
        row_loss[:] = 0.0  # rows without entries (and rows not in order) contribute nothing
    # G0 = c0 Y^T Y + lambda I with single-threaded BLAS: after a call on a 2-thread OpenBLAS pool its worker
    # keeps spinning (~0.1 s, measured: a d = 128 CG item half-step took 0.30 s CPU instead of 0.17 s) and
    # competes with the numba threads that follow; one thread costs a few ms more on the GEMM itself
    with threadpool_limits(limits=1, user_api="blas"):
        G0 = gram_base(Y, c0, reg, YtY)
    if solver == "cholesky":
        lengths = np.diff(indptr)[order]
        n_long = int(np.searchsorted(-lengths, -long_row, side="left"))  # order is by decreasing length
        if n_long:
            _solve_long_rows(indptr, indices, conf, pref, Y, G0, c0, order[:n_long], X, failed, row_loss)
        rest = order[n_long:]
        if len(rest):
            with threadpool_limits(limits=1, user_api="blas"):
                implicit_cholesky_rows(indptr, indices, conf, pref, Y, G0, c0, rest, numba.get_num_threads(), X,
                                       failed, row_loss)
    elif solver == "cg":
        G0f = G0.astype(Y.dtype)
        lengths = np.diff(indptr)[order]
        n_single = int(np.searchsorted(-lengths, -lockstep_max, side="left"))  # rows longer than that
        with threadpool_limits(limits=1, user_api="blas"):
            implicit_cg_rows(indptr, indices, conf, pref, Y, G0f, c0, int(cg_steps), order, n_single,
                             numba.get_num_threads(), X, row_loss)
    else:  # pragma: no cover - validated by the model
        raise ValueError(f"unknown solver {solver!r}")
    if failed.any():
        _resolve_singular_rows(indptr, indices, conf, pref, Y, G0, c0, X, failed, row_loss)
    return failed


def _resolve_singular_rows(indptr, indices, conf, pref, Y, G0, c0, X, failed, row_loss) -> None:
    """Solve the rows the Cholesky kernel rejected by minimum-norm least squares; clear them in ``failed``.

    Row ``u``'s system in float64 (numpy): ``A_u = G0 + Y_u^T (C_u - c0 I) Y_u``, ``b_u = Y_u^T C_u p_u``, with
    ``G0 = c0 Y^T Y + lambda I`` (d, d). ``Y^T Y`` is a product over every row of ``Y`` in the factor dtype,
    which sets the rank threshold (:func:`mfrec.kernels.dense.rank_tolerance`). Rows whose system holds NaN/inf,
    or is indefinite, stay marked (the model reports them). ``row_loss`` as in :func:`implicit_cholesky_rows`.
    """
    rcond = rank_tolerance(Y.shape[1], Y.dtype, Y.shape[0])
    for u in np.flatnonzero(failed):
        lo, hi = int(indptr[u]), int(indptr[u + 1])
        Ys = Y[indices[lo:hi]].astype(np.float64)
        c = conf[lo:hi].astype(np.float64)
        p = pref[lo:hi].astype(np.float64)
        A = G0 + Ys.T @ ((c - c0)[:, None] * Ys)
        x = solve_psd(A, Ys.T @ (c * p), rcond=rcond)
        if not np.isfinite(x).all():
            continue
        X[u] = x
        failed[u] = 0
        if len(row_loss):
            s = Ys @ x
            row_loss[u] = float(np.sum(c * (p - s) ** 2 - c0 * s * s))


def gd_half_step(indptr, indices, conf, pref, Y, X, *, c0: float, reg: float, YtY: np.ndarray | None = None) -> float:
    """One full-batch gradient step on the block ``X`` (``Y`` fixed) with the exact line-search step size.

    With ``Y`` fixed, ``L`` is a convex quadratic in ``X``: ``L(X - t G) = L(X) - t ||G||^2 + t^2 sum_u g_u^T A_u
    g_u``, so ``t* = ||G||^2 / (2 sum_u g_u^T A_u g_u)`` decreases ``L`` (strictly unless ``G = 0``). The gradient
    ``g_u = 2 (G0 x_u + sum_i [(c - c0) s - c p] y_i)`` and the curvature both cost O(nnz d + m d^2).
    Returns the step size used.
    """
    G0 = gram_base(Y, c0, reg, YtY).astype(X.dtype)  # YtY: factor_gram(Y) if the caller has it
    sparse = np.empty_like(X)
    implicit_observed_grad(indptr, indices, conf, pref, X, Y, c0, sparse)
    G = 2.0 * (X @ G0 + sparse)
    G = np.ascontiguousarray(G, dtype=X.dtype)
    gg = float(np.sum(G.astype(np.float64) ** 2))
    if not gg > 0.0:
        return 0.0
    curv = float(np.sum((G @ G0).astype(np.float64) * G)) + float(
        implicit_observed_curvature(indptr, indices, conf, G, Y, c0)
    )
    if not curv > 0.0:
        return 0.0
    t = gg / (2.0 * curv)
    X -= X.dtype.type(t) * G
    return t
