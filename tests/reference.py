"""Dense numpy reference fits: the ALS models written out on full matrices, row by row, with numpy.linalg.

This is the project's oracle for whole fits (as implicit checks its native ALS against its numpy version):
nothing here shares code with ``mfrec.models`` or ``mfrec.kernels``. Every user-item pair is a cell of a dense
array, every row update is ``numpy.linalg.solve`` of the normal equations written from the objective, and the
loss is summed over the whole matrix. It is slow (O(m n d^2) per iteration) and meant for tiny data.

Only the starting factors come from the model's own seeding (``mfrec._random``): the reference takes them as
arguments, so a test can give both fits the same start and compare every iteration's loss and the final factors.

Shapes: ``R`` is the dense (m, n) float64 matrix of stored values with ``mask`` (m, n) bool marking the
stored cells (a stored 0 is still stored).
"""

from __future__ import annotations

import numpy as np


def dense(interactions) -> tuple[np.ndarray, np.ndarray]:
    """``(R, mask)`` of an ``Interactions``: values as a dense float64 array and the stored-cell mask."""
    m = interactions.matrix.tocoo()
    R = np.zeros(m.shape)
    mask = np.zeros(m.shape, dtype=bool)
    R[m.row, m.col] = m.data
    mask[m.row, m.col] = True
    return R, mask


# ============================================================================================ implicit ALS
def implicit_loss(C, P, X, Y, reg) -> float:
    """``sum_{u,i} c_ui (p_ui - x_u . y_i)^2 + reg (||X||^2 + ||Y||^2)`` over every cell."""
    return float(np.sum(C * (P - X @ Y.T) ** 2) + reg * (np.sum(X * X) + np.sum(Y * Y)))


def implicit_als(R, mask, X0, Y0, *, reg, alpha=1.0, c0=1.0, iterations=3):
    """Hu, Koren & Volinsky ALS, items first: ``y_i = (X^T C_i X + reg I)^-1 X^T C_i p_i``, then the users.

    ``c_ui = 1 + alpha r_ui`` on stored cells and ``c0`` elsewhere; ``p_ui = 1`` on stored cells.
    Returns ``(X, Y, losses)`` with the loss after each iteration.
    """
    C = np.where(mask, 1.0 + alpha * R, c0)
    P = mask.astype(float)
    X, Y = X0.astype(float).copy(), Y0.astype(float).copy()
    d = X.shape[1]
    losses = []
    for _ in range(iterations):
        for i in range(Y.shape[0]):
            c = C[:, i]
            Y[i] = np.linalg.solve(X.T @ (c[:, None] * X) + reg * np.eye(d), X.T @ (c * P[:, i]))
        for u in range(X.shape[0]):
            c = C[u]
            X[u] = np.linalg.solve(Y.T @ (c[:, None] * Y) + reg * np.eye(d), Y.T @ (c * P[u]))
        losses.append(implicit_loss(C, P, X, Y, reg))
    return X, Y, losses


# ============================================================================================ explicit ALS
def explicit_loss(R, mask, X, Y, bu, bi, mu, reg, breg, frequency_weighted=False) -> float:
    """``sum_obs (r - mu - b_u - b_i - x.y)^2 + sum_u s_u (reg ||x_u||^2 + breg b_u^2) + (items alike)``.

    ``s`` is 1, or the row's number of ratings (at least 1) when frequency-weighted.
    """
    E = np.where(mask, R - mu - bu[:, None] - bi[None, :] - X @ Y.T, 0.0)
    su = np.maximum(mask.sum(1), 1) if frequency_weighted else np.ones(len(X))
    si = np.maximum(mask.sum(0), 1) if frequency_weighted else np.ones(len(Y))
    pen = su @ (reg * np.sum(X * X, 1) + breg * bu**2) + si @ (reg * np.sum(Y * Y, 1) + breg * bi**2)
    return float(np.sum(E * E) + pen)


def _ridge_rows(R, mask, F_other, b_other, mu, reg, breg, fw):
    """Every row's ``[x, b]`` minimising its squared error plus ``s (reg ||x||^2 + breg b^2)``."""
    d = F_other.shape[1]
    X = np.zeros((R.shape[0], d))
    b = np.zeros(R.shape[0])
    for u in range(R.shape[0]):
        S = np.flatnonzero(mask[u])
        s = max(len(S), 1) if fw else 1
        F = np.hstack([F_other[S], np.ones((len(S), 1))])
        t = R[u, S] - mu - b_other[S]
        D = np.diag([reg * s] * d + [breg * s])
        z = np.linalg.solve(F.T @ F + D, F.T @ t)
        X[u], b[u] = z[:d], z[d]
    return X, b


def explicit_als(R, mask, Y0, *, reg, breg=None, frequency_weighted=False, iterations=3):
    """Biased explicit ALS, users first (users start at 0, biases at 0, ``mu`` the mean stored rating).

    Returns ``(X, Y, bu, bi, mu, losses)``.
    """
    breg = reg if breg is None else breg
    mu = float(R[mask].mean())
    Y = Y0.astype(float).copy()
    bi = np.zeros(len(Y))
    losses = []
    for _ in range(iterations):
        X, bu = _ridge_rows(R, mask, Y, bi, mu, reg, breg, frequency_weighted)
        Y, bi = _ridge_rows(R.T, mask.T, X, bu, mu, reg, breg, frequency_weighted)
        losses.append(explicit_loss(R, mask, X, Y, bu, bi, mu, reg, breg, frequency_weighted))
    return X, Y, bu, bi, mu, losses


# ============================================================================================ hybrid ALS
def hybrid_loss(C, P, X, Y, A, W, B, E, reg, reg_a, warm_u, warm_i) -> float:
    """Implicit HybridALS objective over the warm rows: ``sum c (p - x.y)^2 + reg (||X - A W||^2 + ||Y - B E||^2)
    + reg_a (||W||^2 + ||E||^2)`` (a side without attributes has no map: its free part is the factor)."""
    Xw, Yw = X[warm_u], Y[warm_i]
    fit = np.sum(C[np.ix_(warm_u, warm_i)] * (P[np.ix_(warm_u, warm_i)] - Xw @ Yw.T) ** 2)
    Pu = Xw - (A[warm_u] @ W if W is not None else 0.0)
    Pi = Yw - (B[warm_i] @ E if E is not None else 0.0)
    pen = reg * (np.sum(Pu * Pu) + np.sum(Pi * Pi))
    pen += reg_a * sum(float(np.sum(M * M)) for M in (W, E) if M is not None)
    return float(fit + pen)


def hybrid_als(R, mask, A, B, X0, Y0, *, reg, reg_a, alpha=1.0, c0=1.0, iterations=3):
    """Implicit HybridALS with free factors, items first, each side followed by its attribute map.

    Rows: ``x_u = (Y^T C_u Y + reg I)^-1 (Y^T C_u p_u + reg W^T a_u)`` over the warm items. Map:
    ``W = argmin reg ||X_w - A_w W||^2 + reg_a ||W||^2`` by ``numpy.linalg.lstsq`` on the stacked system.
    Rows without stored cells (cold ids) take no part; at the end they are ``W^T a`` (the linear cold map).
    ``A`` / ``B`` may be None (no attributes on that side). Returns ``(X, Y, W, E, losses)``.
    """
    C = np.where(mask, 1.0 + alpha * R, c0)
    P = mask.astype(float)
    warm_u, warm_i = mask.any(1), mask.any(0)
    X, Y = X0.astype(float).copy(), Y0.astype(float).copy()
    X[~warm_u], Y[~warm_i] = 0.0, 0.0
    d = X.shape[1]
    W = None if A is None else np.zeros((A.shape[1], d))
    E = None if B is None else np.zeros((B.shape[1], d))

    def rows(own, other, CC, PP, feats, M, warm, other_warm):
        prior = np.zeros_like(own) if M is None else feats @ M
        Ow = other[other_warm]
        for u in np.flatnonzero(warm):
            c, p = CC[u, other_warm], PP[u, other_warm]
            own[u] = np.linalg.solve(Ow.T @ (c[:, None] * Ow) + reg * np.eye(d), Ow.T @ (c * p) + reg * prior[u])
        if M is not None:
            F = feats[warm]
            stacked = np.vstack([np.sqrt(reg) * F, np.sqrt(reg_a) * np.eye(F.shape[1])])
            target = np.vstack([np.sqrt(reg) * own[warm], np.zeros((F.shape[1], d))])
            M = np.linalg.lstsq(stacked, target, rcond=None)[0]
        return own, M

    losses = []
    for _ in range(iterations):
        Y, E = rows(Y, X, C.T, P.T, B, E, warm_i, warm_u)
        X, W = rows(X, Y, C, P, A, W, warm_u, warm_i)
        losses.append(hybrid_loss(C, P, X, Y, A, W, B, E, reg, reg_a, warm_u, warm_i))
    if A is not None:
        X[~warm_u] = A[~warm_u] @ W
    if B is not None:
        Y[~warm_i] = B[~warm_i] @ E
    return X, Y, W, E, losses
