"""Kernels of the attribute-tied factorization (:class:`mfrec.models.content.HybridALS`).

Compiled kernels (:mod:`mfrec.kernels._native`) and numpy on plain arrays; they know nothing of ids, pandas or
attributes tables.

Row solve with a prior
----------------------
With the other side ``Y`` (n_cols, d) fixed, each row minimises a weighted ridge problem whose penalty pulls
it towards a prior vector ``m_u`` (in the hybrid model ``m_u = W^T a_u``, the attribute part of the factor)::

    x_u = argmin_x  sum_{i} w_ui (t_ui - x . y_i)^2 + lambda ||x - m_u||^2
        = (G0 + sum_{i in R(u)} (w_ui - c0) y_i y_i^T)^-1 (sum_{i in R(u)} w_ui t_ui y_i + lambda m_u)

with ``G0 = c0 Y^T Y + lambda I``. Implicit feedback (Hu et al. 2008): ``w = c_ui`` (confidence), ``t = p_ui``,
``c0`` the weight of every unobserved pair. Explicit feedback: ``w = 1``, ``t = r_ui - mu``, ``c0 = 0``. With
``m_u = 0`` this is exactly the implicit ALS half-step of :mod:`mfrec.kernels.als_implicit` (and the explicit
half-step without biases). Rows without entries are *cold*: they are not part of the loss, so their free
part is 0 and ``x_u = m_u``.

Neighbour map for cold ids
--------------------------
A linear map ``E^T b`` can only express a cold item's factor as a linear function of its attributes. The
kernel-weighted nearest-neighbour map of Gantner et al. (2010) instead averages the factors of the ``k`` warm
ids closest in attribute space::

    y_cold = sum_{j in N_k(b)} w_j y_j / sum_j w_j,   w_j = exp(-||b - b_j||^2 / h)

(Nadaraya-Watson regression over the ``k`` nearest neighbours), which follows non-linear effects of
attribute combinations (for example a genre that is popular in one decade only).

Attribute regression without free factors
-----------------------------------------
When ``x_u = W^T a_u`` exactly (no free part), the user half-step is a ridge regression of the feedback on the
features ``a_u (x) y_i``::

    W = argmin_W  sum_{u,i} w_ui (t_ui - a_u^T W y_i)^2 + lambda_a ||W||_F^2

whose normal equations ``H(W) = B`` read ``H(W) = A^T Z(W) + lambda_a W`` with ``Z_u = G_u W^T a_u``,
``G_u = c0 Y^T Y + sum_{i in R(u)} (w_ui - c0) y_i y_i^T`` and ``B = A^T (T Y)``, ``T`` the sparse matrix of
``w_ui t_ui``. :func:`attribute_regression` solves them by conjugate gradient, matrix-free in
O(nnz d + n F d + F d^2) per step (Hestenes & Stiefel 1952), warm-started from the previous ``W``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from mfrec.kernels import _args, _native
from mfrec.kernels.dense import rank_tolerance, solve_psd

__all__ = ["prior_ridge_rows", "prior_half_step", "attribute_regression", "map_system", "ridge_map", "neighbor_map"]


def prior_ridge_rows(indptr, indices, weight, target, Y, G0, c0, reg, prior, X, failed) -> None:
    """Per-row ``x_u = (G0 + sum (w - c0) y y^T)^-1 (sum w t y + reg m_u)``; empty rows get ``x_u = m_u``.

    Parameters
    ----------
    indptr : int32/int64 (n_rows + 1,); indices : int32 (nnz,)
        CSR pattern; rows are the side being solved.
    weight, target : float64 (nnz,)
        ``w_ui`` and ``t_ui`` of every stored entry.
    Y : float64 (n_cols, d), C-contiguous
        Fixed factors of the other side.
    G0 : float64 (d, d)
        ``c0 Y^T Y + reg I``.
    c0 : float
        Weight of an unobserved pair (0 for explicit feedback).
    reg : float
        ``lambda``, the weight of the pull towards the prior.
    prior : float64 (n_rows, d)
        ``m_u`` per row (zeros: plain ALS).
    X : float64 (n_rows, d)
        Output, overwritten row by row.
    failed : uint8 (n_rows,)
        Set to 1 where the system was not numerically positive definite (``X[u]`` then unchanged).
    """
    _native.prior_ridge_rows(_args.pointer(indptr), _args.index(indices), _args.inp(weight, np.float64),
                             _args.inp(target, np.float64), _args.inp(Y, np.float64), _args.inp(G0, np.float64),
                             float(c0), float(reg), _args.inp(prior, np.float64), _args.out(X, np.float64, "X"),
                             _args.out(failed, np.uint8, "failed"))


def prior_half_step(indptr, indices, weight, target, Y, X, prior, *, c0: float, reg: float,
                    YtY: np.ndarray | None = None, n_fixed: int | None = None) -> np.ndarray:
    """Update every row of ``X`` in place by :func:`prior_ridge_rows`; returns the ``failed`` mask (uint8).

    ``YtY``: ``Y^T Y`` (float64 (d, d)) of the whole fixed side when ``Y`` holds only the rows that ``indices``
    reference (a sharded fit), with ``n_fixed`` its number of rows; by default both come from ``Y``.
    Rows the kernel finds numerically singular are solved again by minimum-norm least squares
    (:func:`mfrec.kernels.dense.solve_psd`); only rows whose system is not finite stay marked.
    """
    G0 = (Y.T @ Y if YtY is None else np.array(YtY, dtype=np.float64)) * float(c0)
    G0[np.diag_indices_from(G0)] += reg
    failed = np.zeros(X.shape[0], dtype=np.uint8)
    prior_ridge_rows(indptr, indices, weight, target, Y, np.ascontiguousarray(G0), float(c0), float(reg),
                     prior, X, failed)
    # rows numerically singular in the kernel (lambda lost in rounding): minimum-norm least squares, in numpy
    rcond = rank_tolerance(Y.shape[1], Y.dtype, Y.shape[0] if n_fixed is None else n_fixed)  # G0: every row of Y
    for u in np.flatnonzero(failed):
        lo, hi = int(indptr[u]), int(indptr[u + 1])
        Ys = Y[indices[lo:hi]].astype(np.float64)
        w = weight[lo:hi].astype(np.float64)
        A = G0 + Ys.T @ ((w - c0)[:, None] * Ys)  # A = c0 Y^T Y + reg I + sum (w - c0) y y^T
        x = solve_psd(A, reg * prior[u] + Ys.T @ (w * target[lo:hi]), rcond=rcond)  # b = reg m_u + sum w t y
        if np.isfinite(x).all():
            X[u] = x
            failed[u] = 0
    return failed


def map_system(A: np.ndarray, ratio: float) -> tuple[np.ndarray, float]:
    """``(A^T A + ratio I, rcond)``: the matrix of :func:`ridge_map` (F, F) float64 and the rank tolerance its
    solve uses. It depends on the attributes only, so a fit forms it once and solves it every half-step."""
    F = A.shape[1]
    G = np.asarray(A.T @ A, dtype=np.float64)
    G[np.diag_indices(F)] += ratio
    return G, rank_tolerance(F, A.dtype, A.shape[0])


def ridge_map(A: np.ndarray, X: np.ndarray, ratio: float) -> np.ndarray:
    """``W = (A^T A + ratio I)^-1 A^T X``: the attribute-to-factor map (F, d) of rows ``A`` (n, F) onto ``X``.

    It minimises ``lambda sum_u ||x_u - W^T a_u||^2 + lambda_a ||W||^2`` with ``ratio = lambda_a / lambda``.
    Collinear attributes with a ratio lost in rounding make the system singular: then the minimum-norm
    least-squares map (:func:`mfrec.kernels.dense.solve_psd`).
    """
    G, rcond = map_system(A, ratio)
    return solve_psd(G, A.T @ X, rcond=rcond)


def attribute_regression(
    indptr, indices, weight, target, A, Y, W0, *, c0: float, reg: float, max_iter: int = 200, tol: float = 1e-10
) -> tuple[np.ndarray, int]:
    """Solve ``W = argmin sum_{u,i} w_ui (t_ui - a_u^T W y_i)^2 + reg ||W||^2`` by matrix-free CG.

    Parameters
    ----------
    indptr, indices, weight, target
        CSR (rows = the side with attributes ``A``) of the stored entries and their ``w_ui``, ``t_ui``.
    A : float64 (n_rows, F)
        Attributes of the rows (rows without entries still count through ``c0`` when ``c0 > 0``;
        the caller passes only the rows that belong to the loss).
    Y : float64 (n_cols, d)
        Fixed factors of the other side.
    W0 : float64 (F, d)
        Warm start.
    c0, reg : float
        Unobserved weight and ``lambda_a > 0``.
    max_iter : int
        CG iterations at most (the system has ``F d`` unknowns, so ``F d`` steps are exact in exact arithmetic).
    tol : float
        Stop when ``||r|| <= tol * ||B||``.

    Returns
    -------
    W : float64 (F, d)
    iterations : int
    """
    n_rows = len(indptr) - 1
    S = sp.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(n_rows, Y.shape[0]))
    rows = np.repeat(np.arange(n_rows), np.diff(indptr))
    dw = weight - c0
    YtY = Y.T @ Y

    def apply(W: np.ndarray) -> np.ndarray:
        # H(W) = A^T Z + reg W,  Z_u = c0 YtY m_u + sum_{i in R(u)} (w - c0) (m_u . y_i) y_i,  m_u = W^T a_u
        M = A @ W
        s = np.einsum("ij,ij->i", M[rows], Y[indices])
        S.data = dw * s
        Z = c0 * (M @ YtY) + S @ Y
        return A.T @ Z + reg * W

    S.data = weight * target
    B = A.T @ (S @ Y)
    W = np.array(W0, dtype=np.float64, copy=True)
    r = B - apply(W)
    p = r.copy()
    rr = float(np.sum(r * r))
    bnorm = float(np.sqrt(np.sum(B * B)))
    limit = (tol * bnorm) ** 2
    it = 0
    while it < max_iter and rr > limit and rr > 0.0:
        Hp = apply(p)
        pHp = float(np.sum(p * Hp))
        if not pHp > 0.0:  # guard: H is SPD for reg > 0; a non-positive curvature means NaN/inf input
            break
        step = rr / pHp
        W += step * p
        r -= step * Hp
        rr_new = float(np.sum(r * r))
        p = r + (rr_new / rr) * p
        rr = rr_new
        it += 1
    return W, it


def neighbor_map(
    query: np.ndarray, reference: np.ndarray, values: np.ndarray, *, k: int, bandwidth: float, block: int = 1024
) -> np.ndarray:
    """Kernel-weighted mean of the ``values`` of each query's ``k`` nearest reference rows (Euclidean).

    ``out_q = sum_{j in N_k(q)} w_qj v_j / sum_j w_qj`` with ``w_qj = exp(-(||q - r_j||^2 - min_j ||q - r_j||^2)
    / bandwidth)``: subtracting each query's smallest squared distance changes no normalised weight and keeps
    the nearest neighbour's weight at 1, so far-away queries never underflow to 0 / 0.

    Parameters
    ----------
    query : float64 (n_query, F)
        Attributes of the ids that need values (the cold ids).
    reference : float64 (n_ref, F)
        Attributes of the ids whose values are known (the warm ids), ``n_ref >= 1``.
    values : (n_ref, d)
        Their values (factors).
    k : int
        Neighbours per query (clipped to ``n_ref``).
    bandwidth : float
        ``h > 0``, in squared attribute units; ``inf`` gives the plain mean of the k neighbours.
    block : int
        Queries per block: memory is ``O(block * n_ref)``.

    Returns
    -------
    ndarray (n_query, d), dtype of ``values``.
    """
    n_query = query.shape[0]
    n_ref = reference.shape[0]
    k = min(int(k), n_ref)
    out = np.empty((n_query, values.shape[1]), dtype=values.dtype)
    ref_sq = np.einsum("ij,ij->i", reference, reference)
    vals = values.astype(np.float64, copy=False)
    for lo in range(0, n_query, block):
        q = query[lo:lo + block]
        # squared distances through one matrix product; clipped at 0 against rounding
        dist = np.einsum("ij,ij->i", q, q)[:, None] + ref_sq[None, :] - 2.0 * (q @ reference.T)
        np.maximum(dist, 0.0, out=dist)
        if k < n_ref:
            near = np.argpartition(dist, k - 1, axis=1)[:, :k]
            dk = np.take_along_axis(dist, near, axis=1)
        else:
            near = np.broadcast_to(np.arange(n_ref), dist.shape)
            dk = dist
        w = np.exp(-(dk - dk.min(axis=1, keepdims=True)) / bandwidth)
        w /= w.sum(axis=1, keepdims=True)
        out[lo:lo + block] = np.einsum("qk,qkd->qd", w, vals[near])
    return out
