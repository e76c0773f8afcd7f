"""Explicit-feedback ALS kernels: one exact ridge solve per CSR row, rows in parallel.

Pure numba functions on plain arrays (CSR ``indptr``/``indices``/``data``, factor matrices, bias
vectors); they know nothing of ids or pandas. :class:`mfrec.models.explicit.ExplicitALS` validates its
inputs once and calls these on trusted, contiguous arrays.

The model (Koren, Bell & Volinsky 2009) predicts ``r_ui ~ mu + b_u + b_i + x_u . y_i`` and the objective is

    L = sum_{(u,i) in Omega} (r_ui - mu - b_u - b_i - x_u . y_i)^2
        + sum_u (lambda_u ||x_u||^2 + lambda_bu b_u^2) + sum_i (lambda_i ||y_i||^2 + lambda_bi b_i^2)

with ``lambda_u = lambda`` (uniform) or ``lambda_u = lambda * n_u`` (frequency-weighted regularization,
"ALS-WR", Zhou et al. 2008; what Spark MLlib does), ``n_u`` the number of ratings of row ``u``; the bias
penalty ``lambda_bu`` is ``lambda_b`` scaled the same way (``lambda_b = lambda`` unless given separately,
like Surprise's ``reg_bu``/``reg_bi``).

With the other side fixed, each row's unknowns ``z_u = [x_u, b_u]`` enter linearly through the augmented
features ``f_i = [y_i, 1]`` and targets ``t_ui = r_ui - mu - b_i``, so the exact minimiser is the ridge solve

    z_u = (F_u^T F_u + D_u)^-1 F_u^T t_u          (F_u: the rows f_i, i in Omega_u; D_u = diag(lambda_u I_d, lambda_bu))

one closed form per row, solved here by a Cholesky factorisation in float64. Without biases ``f_i = y_i``,
``t_ui = r_ui - mu`` and ``z_u = x_u``. The item half-step is the same function on the transposed CSR with
the roles of the two sides swapped. Each half-step minimises L exactly over one block of unknowns, so L
never increases from one half-step to the next.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from mfrec.kernels._numba import CACHE
from mfrec.kernels.dense import rank_tolerance, solve_psd
from mfrec.kernels.linalg import pivot_floor

__all__ = ["als_explicit_step", "explicit_ridge_rows", "explicit_row_system", "explicit_sse", "predict_pairs",
           "cholesky_solve"]

#: rows are cut into this many contiguous chunks for the parallel loop (enough to balance 64+ threads)
_N_CHUNKS = 1024


@njit(nogil=True, cache=CACHE)
def cholesky_solve(A, b, k):
    """Solve ``A z = b`` in place for symmetric positive definite ``A`` (k x k, float64).

    Only the lower triangle of ``A`` is read; on return it holds the Cholesky factor ``L`` (A = L L^T) and
    ``b`` holds ``z``. Returns False (leaving ``b`` undefined) when a pivot is at most
    :func:`mfrec.kernels.linalg.pivot_floor`, i.e. ``A`` is singular or numerically so (or NaN).
    """
    floor = pivot_floor(A, k)
    # A = L L^T, column by column (Cholesky-Banachiewicz)
    for j in range(k):
        s = A[j, j]
        for p in range(j):
            s -= A[j, p] * A[j, p]
        if not s > floor:  # also catches NaN
            return False
        d = np.sqrt(s)
        A[j, j] = d
        for i in range(j + 1, k):
            s = A[i, j]
            for p in range(j):
                s -= A[i, p] * A[j, p]
            A[i, j] = s / d
    # L w = b (forward substitution)
    for i in range(k):
        s = b[i]
        for p in range(i):
            s -= A[i, p] * b[p]
        b[i] = s / A[i, i]
    # L^T z = w (back substitution)
    for i in range(k - 1, -1, -1):
        s = b[i]
        for p in range(i + 1, k):
            s -= A[p, i] * b[p]
        b[i] = s / A[i, i]
    return True


def als_explicit_step(indptr, indices, data, other, other_bias, mu, reg, frequency_weighted, biases,
                      target, target_bias, bias_reg=-1.0) -> int:
    """One ALS half-step: re-solve every row of ``target`` (and ``target_bias``) given the other side.

    The rows are solved by :func:`explicit_ridge_rows` (numba, Cholesky per row); a row whose normal matrix
    is numerically singular there (a ``lambda`` lost in rounding against huge ratings or factors) is solved
    again here by minimum-norm least squares (:func:`explicit_row_system`, :func:`mfrec.kernels.dense.solve_psd`).
    Arguments as :func:`explicit_ridge_rows`. Returns the number of rows left unchanged because their system
    is not finite (NaN/inf in the inputs); zero otherwise.
    """
    failed = np.zeros(indptr.shape[0] - 1, dtype=np.uint8)
    explicit_ridge_rows(indptr, indices, data, other, other_bias, mu, reg, frequency_weighted, biases, target,
                        target_bias, failed, bias_reg)
    bad = 0
    for u in np.flatnonzero(failed):
        A, b = explicit_row_system(indptr, indices, data, other, other_bias, mu, reg, frequency_weighted, biases,
                                   bias_reg, u)
        z = solve_psd(A, b, rcond=rank_tolerance(len(b), terms=int(indptr[u + 1] - indptr[u])))
        if not np.isfinite(z).all():
            bad += 1
            continue
        d = other.shape[1]
        target[u] = z[:d]
        if biases:
            target_bias[u] = z[d]
    return bad


def explicit_row_system(indptr, indices, data, other, other_bias, mu, reg, frequency_weighted, biases, bias_reg,
                        u) -> tuple[np.ndarray, np.ndarray]:
    """Row ``u``'s normal equations ``(F_u^T F_u + D_u, F_u^T t_u)`` in float64 (numpy): the dense reference.

    ``A`` is (k, k) with both triangles filled and ``b`` is (k,), ``k = d + 1`` with biases, else ``d``.
    """
    lo, hi = int(indptr[u]), int(indptr[u + 1])
    idx = indices[lo:hi]
    d = other.shape[1]
    F = other[idx].astype(np.float64)
    t = data[lo:hi].astype(np.float64) - mu
    if biases:
        F = np.hstack([F, np.ones((hi - lo, 1))])  # f_i = [y_i, 1]
        t = t - other_bias[idx]
    scale = max(hi - lo, 1) if frequency_weighted else 1
    A = F.T @ F
    A[np.arange(d), np.arange(d)] += reg * scale
    if biases:
        A[d, d] += (bias_reg if bias_reg >= 0.0 else reg) * scale
    return A, F.T @ t


# fastmath: contraction only (fused multiply-add in the rank-1 updates); no NaN/inf assumptions.
@njit(parallel=True, nogil=True, cache=CACHE, fastmath={"contract"})
def explicit_ridge_rows(indptr, indices, data, other, other_bias, mu, reg, frequency_weighted, biases,
                        target, target_bias, failed, bias_reg=-1.0):
    """Re-solve every row of ``target`` (and ``target_bias``) given the other side, by Cholesky per row.

    Parameters
    ----------
    indptr : int32 or int64 array, shape (n_rows + 1,)
    indices : int32 array, shape (nnz,)
        Column of each rating (an index into ``other``).
    data : float32 array, shape (nnz,)
        The ratings ``r``.
    other : float array, shape (n_cols, d)
        Fixed factors of the other side (``Y`` in the user step, ``X`` in the item step).
    other_bias : float array, shape (n_cols,)
        Fixed biases of the other side (ignored when ``biases`` is False).
    mu : float
        Global offset subtracted from every rating (the training mean with biases, usually 0 without).
    reg : float
        lambda > 0.
    frequency_weighted : bool
        Use ``lambda * max(n_u, 1)`` for a row with ``n_u`` ratings (Zhou et al. 2008) instead of ``lambda``.
    biases : bool
        Solve ``[x_u, b_u]`` against features ``[y_i, 1]`` and targets ``r - mu - b_i`` (k = d + 1), or
        ``x_u`` against ``y_i`` and ``r - mu`` (k = d).
    target : float array, shape (n_rows, d), written in place
    target_bias : float array, shape (n_rows,), written in place when ``biases``
    failed : uint8 array, shape (n_rows,)
        Set to 1 for each row whose normal matrix was not numerically positive definite (row left unchanged).
    bias_reg : float, optional
        lambda_b > 0 for the bias unknown ``b_u`` (Surprise's ``reg_bu`` / ``reg_bi``): the diagonal of the
        ridge matrix is ``lambda_u`` for the d factor entries and ``lambda_b`` (times ``max(n_u, 1)`` when
        frequency-weighted) for the bias entry. Negative (the default) means ``lambda_b = lambda``.

    Returns
    -------
    int
        The number of rows marked in ``failed``. Zero unless the inputs hold NaN/inf or lambda is tiny against
        huge ratings.
    """
    n_rows = indptr.shape[0] - 1
    d = other.shape[1]
    k = d + 1 if biases else d
    n_chunks = min(n_rows, _N_CHUNKS)  # scratch is allocated once per chunk, not per row
    failures = 0
    for c in prange(n_chunks):
        # scratch hoisted out of the row loop: one set per chunk of rows
        A = np.empty((k, k), dtype=np.float64)
        b = np.empty(k, dtype=np.float64)
        f = np.empty(k, dtype=np.float64)
        start = c * n_rows // n_chunks
        stop = (c + 1) * n_rows // n_chunks
        for u in range(start, stop):
            A[:, :] = 0.0
            b[:] = 0.0
            for p in range(indptr[u], indptr[u + 1]):
                i = indices[p]
                for j in range(d):
                    f[j] = other[i, j]
                t = data[p] - mu  # t_ui = r_ui - mu (- b_i)
                if biases:
                    f[d] = 1.0  # f_i = [y_i, 1]
                    t -= other_bias[i]
                for a in range(k):  # A += f_i f_i^T (lower triangle), b += f_i t_ui
                    fa = f[a]
                    b[a] += fa * t
                    Aa = A[a]
                    for q in range(a + 1):
                        Aa[q] += fa * f[q]
            n_u = indptr[u + 1] - indptr[u]
            scale = max(n_u, 1) if frequency_weighted else 1
            lam = reg * scale
            for a in range(d):  # + lambda_u I on the factor block
                A[a, a] += lam
            if biases:  # + lambda_b on the bias entry
                A[d, d] += (bias_reg if bias_reg >= 0.0 else reg) * scale
            if cholesky_solve(A, b, k):  # z_u = (F^T F + D_u)^-1 F^T t
                for j in range(d):
                    target[u, j] = b[j]
                if biases:
                    target_bias[u] = b[d]
            else:
                failed[u] = 1
                failures += 1
    return failures


@njit(parallel=True, nogil=True, cache=CACHE, fastmath={"reassoc", "contract"})
def explicit_sse(indptr, indices, data, X, bu, Y, bi, mu, biases):
    """Sum of squared errors ``sum_{(u,i) in Omega} (r_ui - mu - b_u - b_i - x_u . y_i)^2`` in float64.

    CSR rows are users (``X``, ``bu``); columns are items (``Y``, ``bi``). Biases are ignored when
    ``biases`` is False. Parallel over users.
    """
    n_rows = indptr.shape[0] - 1
    d = X.shape[1]
    total = 0.0
    for u in prange(n_rows):
        s = 0.0
        xr = X[u]
        for p in range(indptr[u], indptr[u + 1]):
            i = indices[p]
            yr = Y[i]
            dot = 0.0
            for j in range(d):
                dot += xr[j] * yr[j]
            pred = mu + dot
            if biases:
                pred += bu[u] + bi[i]
            e = data[p] - pred
            s += e * e
        total += s
    return total


@njit(parallel=True, nogil=True, cache=CACHE)
def predict_pairs(user_idx, item_idx, X, bu, Y, bi, mu, biases, out):
    """``out[n] = mu + b_u + b_i + x_u . y_i`` for pairs ``(user_idx[n], item_idx[n])``; index -1 = unknown.

    An unknown user (or item) contributes neither factors nor bias: the prediction falls back to
    ``mu + b_i`` (or ``mu + b_u``, or ``mu`` when both are unknown). ``out`` is float64, shape (n,).
    """
    d = X.shape[1]
    for n in prange(user_idx.shape[0]):
        u = user_idx[n]
        i = item_idx[n]
        pred = mu
        if biases:
            if u >= 0:
                pred += bu[u]
            if i >= 0:
                pred += bi[i]
        if u >= 0 and i >= 0:
            for j in range(d):
                pred += X[u, j] * Y[i, j]
        out[n] = pred
