"""SGD kernels for biased matrix factorization (Funk 2006; Koren, Bell & Volinsky 2009, eq. 5).

Pure numba functions on plain arrays. The per-rating objective is

    f_ui = 1/2 (r_ui - mu - b_u - b_i - x_u . y_i)^2 + 1/2 lambda_b (b_u^2 + b_i^2) + 1/2 lambda (||x_u||^2 + ||y_i||^2)

(``lambda_b``: the bias regularization, Surprise's ``reg_bu = reg_bi``; the classic formulation has
``lambda_b = lambda``) and with the error ``e_ui = r_ui - r_hat_ui`` its negative gradient gives the classic
updates (step gamma):

    b_u <- b_u + gamma (e_ui - lambda_b b_u)
    b_i <- b_i + gamma (e_ui - lambda_b b_i)
    x_u <- x_u + gamma (e_ui y_i - lambda x_u)
    y_i <- y_i + gamma (e_ui x_u - lambda y_i)      (x_u before its own update: a simultaneous step)

An epoch visits every rating once in the order given by ``order`` (a permutation the caller draws from the
model's seeded generator), sequentially, so a seed reproduces the factors bit for bit.
"""

from __future__ import annotations

from numba import njit

from mfrec.kernels.als_explicit import _CACHE

__all__ = ["sgd_epoch"]


# fastmath: only reassociation/contraction (vectorized dot products); no NaN/inf assumptions.
@njit(nogil=True, cache=_CACHE, fastmath={"reassoc", "contract"})
def sgd_epoch(users, items, ratings, order, X, bu, Y, bi, mu, lr, reg, bias_reg, biases):
    """One SGD epoch over the ratings in ``order``; updates ``X, bu, Y, bi`` in place.

    Parameters
    ----------
    users, items : int32 arrays, shape (nnz,)
        Row (user) and column (item) index of each rating.
    ratings : float32 array, shape (nnz,)
    order : int64 array, shape (nnz,)
        The visiting order (a permutation of ``range(nnz)``).
    X : float array, shape (n_users, d);  bu : shape (n_users,)
    Y : float array, shape (n_items, d);  bi : shape (n_items,)
    mu : float
        Global offset (the training mean with biases).
    lr, reg, bias_reg : float
        Step size gamma, factor regularization lambda and bias regularization lambda_b.
    biases : bool
        Learn ``b_u, b_i`` (otherwise they are left untouched and not added).

    Returns
    -------
    float
        Sum of squared errors ``e_ui^2`` seen during the epoch (each measured just before its update).
    """
    d = X.shape[1]
    sse = 0.0
    for n in range(order.shape[0]):
        p = order[n]
        u = users[p]
        i = items[p]
        xr = X[u]  # row views: the loops below vectorize
        yr = Y[i]
        dot = 0.0
        for j in range(d):
            dot += xr[j] * yr[j]
        pred = mu + dot  # r_hat_ui = mu + b_u + b_i + x_u . y_i
        if biases:
            pred += bu[u] + bi[i]
        e = ratings[p] - pred  # e_ui = r_ui - r_hat_ui
        sse += e * e
        if biases:
            bu[u] += lr * (e - bias_reg * bu[u])  # b_u <- b_u + gamma (e - lambda_b b_u)
            bi[i] += lr * (e - bias_reg * bi[i])  # b_i <- b_i + gamma (e - lambda_b b_i)
        for j in range(d):
            xo = xr[j]
            yo = yr[j]
            xr[j] = xo + lr * (e * yo - reg * xo)  # x_u <- x_u + gamma (e y_i - lambda x_u)
            yr[j] = yo + lr * (e * xo - reg * yo)  # y_i <- y_i + gamma (e x_u - lambda y_i), old x_u
    return sse

