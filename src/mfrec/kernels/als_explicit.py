"""Explicit-feedback ALS kernels: one exact ridge solve per CSR row, rows in parallel.

Compiled kernels (:mod:`mfrec.kernels._native`) on plain arrays (CSR ``indptr``/``indices``/``data``, factor
matrices, bias vectors); they know nothing of ids or pandas. :class:`mfrec.models.explicit.ExplicitALS` validates its
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

one closed form per row, solved here by a Cholesky factorisation in float64. A row with fewer ratings than
unknowns (``0 < n_u < k``) is solved in its dual form, the ``n_u x n_u`` system

    z_u = D_u^-1 F_u^T w,   (F_u D_u^-1 F_u^T + I) w = t_u          (the same z_u; eigenvalues >= 1)

eight rows of equal length at a time, one per lane of a 64-byte vector, so its Gram, factorisation and solves run
on whole vectors; longer rows gather their factor rows and build ``F_u^T F_u`` with register-tiled products.
Without biases ``f_i = y_i``,
``t_ui = r_ui - mu`` and ``z_u = x_u``. The item half-step is the same function on the transposed CSR with
the roles of the two sides swapped. Each half-step minimises L exactly over one block of unknowns, so L
never increases from one half-step to the next.
"""

from __future__ import annotations

import numpy as np

from mfrec.kernels import _args, _native
from mfrec.kernels.dense import rank_tolerance, solve_psd
from mfrec.kernels.linalg import cholesky_upper_inplace, cholesky_upper_solve_inplace

__all__ = ["als_explicit_step", "explicit_ridge_rows", "explicit_row_system", "explicit_sse", "predict_pairs",
           "cholesky_solve"]

def cholesky_solve(A, b, k) -> bool:
    """Solve ``A z = b`` in place for symmetric positive definite ``A`` (k x k, float64; both triangles filled).

    On return the upper triangle of ``A`` holds the Cholesky factor ``U`` (``A = U^T U``) and ``b`` holds ``z``.
    Returns False (leaving ``b`` undefined) when a pivot is at most :func:`mfrec.kernels.linalg.pivot_floor`, i.e.
    ``A`` is singular or numerically so (or NaN). This is the solve :func:`explicit_ridge_rows` runs per row.
    """
    A = _args.out(A, np.float64, "A")
    b = _args.out(b, np.float64, "b")
    if not cholesky_upper_inplace(A, int(k)):
        return False
    cholesky_upper_solve_inplace(A, b, int(k))
    return True


def als_explicit_step(indptr, indices, data, other, other_bias, mu, reg, frequency_weighted, biases,
                      target, target_bias, bias_reg=-1.0) -> int:
    """One ALS half-step: re-solve every row of ``target`` (and ``target_bias``) given the other side.

    The rows are solved by :func:`explicit_ridge_rows` (compiled, Cholesky per row); a row whose normal matrix
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
    dt = other.dtype
    return int(_native.explicit_ridge_rows(
        _args.pointer(indptr), _args.index(indices), _args.ratings(data),
        _args.inp(other, dt), _args.inp(other_bias, dt), float(mu), float(reg), bool(frequency_weighted), bool(biases),
        _args.out(target, dt, "target"), _args.out(target_bias, dt, "target_bias"), _args.out(failed, np.uint8, "failed"),
        float(bias_reg)))


def explicit_sse(indptr, indices, data, X, bu, Y, bi, mu, biases) -> float:
    """Sum of squared errors ``sum_{(u,i) in Omega} (r_ui - mu - b_u - b_i - x_u . y_i)^2`` in float64.

    CSR rows are users (``X``, ``bu``); columns are items (``Y``, ``bi``). Biases are ignored when
    ``biases`` is False. Parallel over users.
    """
    dt = X.dtype
    return float(_native.explicit_sse(
        _args.pointer(indptr), _args.index(indices), _args.ratings(data),
        _args.inp(X, dt), _args.inp(bu, dt), _args.inp(Y, dt), _args.inp(bi, dt), float(mu), bool(biases)))


def predict_pairs(user_idx, item_idx, X, bu, Y, bi, mu, biases, out) -> None:
    """``out[n] = mu + b_u + b_i + x_u . y_i`` for pairs ``(user_idx[n], item_idx[n])``; index -1 = unknown.

    An unknown user (or item) contributes neither factors nor bias: the prediction falls back to
    ``mu + b_i`` (or ``mu + b_u``, or ``mu`` when both are unknown). ``out`` is float64, shape (n,).
    """
    dt = X.dtype
    _native.predict_pairs(_args.inp(user_idx, np.int64), _args.inp(item_idx, np.int64), _args.inp(X, dt),
                          _args.inp(bu, dt), _args.inp(Y, dt), _args.inp(bi, dt), float(mu), bool(biases),
                          _args.out(out, np.float64, "out"))
