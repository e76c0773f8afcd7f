"""SGD kernels for biased matrix factorization (Funk 2006; Koren, Bell & Volinsky 2009, eq. 5).

Compiled kernels (:mod:`mfrec.kernels._native`) on plain arrays. The per-rating objective is

    f_ui = 1/2 (r_ui - mu - b_u - b_i - x_u . y_i)^2 + 1/2 lambda_b (b_u^2 + b_i^2) + 1/2 lambda (||x_u||^2 + ||y_i||^2)

(``lambda_b``: the bias regularization, Surprise's ``reg_bu = reg_bi``; the classic formulation has
``lambda_b = lambda``) and with the error ``e_ui = r_ui - r_hat_ui`` its negative gradient gives the classic
updates (step gamma):

    b_u <- b_u + gamma (e_ui - lambda_b b_u)
    b_i <- b_i + gamma (e_ui - lambda_b b_i)
    x_u <- x_u + gamma (e_ui y_i - lambda x_u)
    y_i <- y_i + gamma (e_ui x_u - lambda y_i)      (x_u before its own update: a simultaneous step)

Summed over an epoch, row ``u`` is penalised once per rating, so the classic step minimises
``sum_ui e_ui^2 + lambda sum_u n_u ||x_u||^2 + ...``: count-scaled regularization. Optional per-row multipliers
``s_u``, ``s_i`` of both lambdas (``user_scale``, ``item_scale``; default 1) change that: ``s = 1/n`` gives
the uniform penalty ``lambda ||x_u||^2`` of ExplicitALS.

An epoch visits every rating once in the order given by ``order`` (a permutation the caller draws from the
model's seeded generator), sequentially, so a seed reproduces the factors bit for bit. The dot product and the
factor updates run in the factor dtype (the update as ``x (1 - gamma lambda s_u) + (gamma e) y``: two
multiply-adds per entry on whole vectors); the error, the biases and the step coefficients in float64.
"""

from __future__ import annotations

import numpy as np

from mfrec.kernels import _args, _native

__all__ = ["sgd_epoch", "svdpp_epoch"]


def _scales(user_scale, item_scale, n_users: int, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """The per-row penalty multipliers as float64 arrays of the right lengths (ones when None)."""
    out = []
    for name, a, n in (("user_scale", user_scale, n_users), ("item_scale", item_scale, n_items)):
        a = np.ones(n) if a is None else _args.inp(a, np.float64)
        if a.shape != (n,):
            raise ValueError(f"{name} must have shape ({n},), got {a.shape}")
        out.append(a)
    return out[0], out[1]


def sgd_epoch(users, items, ratings, order, X, bu, Y, bi, mu, lr, reg, bias_reg, biases, user_scale=None,
              item_scale=None) -> float:
    """One SGD epoch over the ratings in ``order``; updates ``X, bu, Y, bi`` in place.

    Parameters
    ----------
    users, items : int32 arrays, shape (nnz,)
        Row (user) and column (item) index of each rating.
    ratings : float32 array, shape (nnz,)
    order : int32 or int64 array, shape (nnz,)
        The visiting order (a permutation of ``range(nnz)``).
    X : float array, shape (n_users, d);  bu : shape (n_users,)
    Y : float array, shape (n_items, d);  bi : shape (n_items,)
    mu : float
        Global offset (the training mean with biases).
    lr, reg, bias_reg : float
        Step size gamma, factor regularization lambda and bias regularization lambda_b.
    biases : bool
        Learn ``b_u, b_i`` (otherwise they are left untouched and not added).
    user_scale : float64 array, shape (n_users,), optional;  item_scale : shape (n_items,), optional
        Multipliers ``s_u``, ``s_i`` of lambda and lambda_b in each step of that row (default 1: the classic step).

    Returns
    -------
    float
        Sum of squared errors ``e_ui^2`` seen during the epoch (each measured just before its update).
    """
    dt = X.dtype
    su, si = _scales(user_scale, item_scale, X.shape[0], Y.shape[0])
    return float(_native.sgd_epoch(_args.index(users), _args.index(items), _args.inp(ratings, np.float32),
                                   _args.positions(order), _args.out(X, dt, "X"), _args.out(bu, dt, "bu"),
                                   _args.out(Y, dt, "Y"), _args.out(bi, dt, "bi"), float(mu), float(lr), float(reg),
                                   float(bias_reg), bool(biases), su, si))


def svdpp_epoch(indptr, indices, ratings, positions, user_order, P, bu, Y, bi, Z, mu, lr, reg, bias_reg, biases,
                implicit, scratch, user_scale=None, item_scale=None, z_reg_per_rating=False) -> float:
    """One SVD++ epoch (Koren 2008), user by user; updates ``P, bu, Y, bi, Z`` in place.

    The model adds to every user the normalised sum of the *implicit* factors ``z_j`` of the items the user rated,
    ``N(u)`` (here: the user's training items), with ``s_u = |N(u)|^(-1/2)``::

        r_hat_ui = mu + b_u + b_i + y_i . (p_u + s_u sum_{j in N(u)} z_j)

    For each user (in ``user_order``) the implicit sum ``c_u = s_u sum_j z_j`` is formed once; every rating of
    the user (in the order ``positions[indptr[u]:indptr[u+1]]``) then takes the classic step, with
    ``e = r_ui - r_hat_ui`` and ``q_u = p_u + c_u``::

        b_u <- b_u + gamma (e - lambda_b b_u);   b_i <- b_i + gamma (e - lambda_b b_i)
        p_u <- p_u + gamma (e y_i - lambda p_u); y_i <- y_i + gamma (e q_u - lambda y_i)

    and, once per user (the batched update of MyMediaLite / LibRec, which avoids re-forming ``c_u`` after every
    rating), ``z_j <- z_j + gamma (s_u sum_i e_ui y_i - lambda z_j)`` for ``j in N(u)``, with the ``y_i``
    and errors seen during the pass. For a user with one rating this is exactly minus ``gamma`` times the
    gradient of ``1/2 e^2 + 1/2 lambda_b (b_u^2 + b_i^2) + 1/2 lambda (||p_u||^2 + ||y_i||^2 + ||z_j||^2)``.

    Parameters
    ----------
    indptr : int64 (n_users + 1,); indices : int32 (nnz,); ratings : float32 (nnz,)
        The training CSR (users x items).
    positions : int32 or int64 (nnz,)
        For every user, a permutation of its own CSR range (the visiting order of its ratings):
        :func:`group_by_row` of a permutation of all entries.
    user_order : int64 (n_users,)
        The order in which users are visited.
    P : (n_users, d);  bu : (n_users,);  Y : (n_items, d);  bi : (n_items,);  Z : (n_items, d)
    mu, lr, reg, bias_reg : float
    biases, implicit : bool
        ``implicit=False`` skips ``z`` entirely (then this is plain biased SGD, in user-grouped order).
    scratch : float64 (2, d)
        Work space for ``c_u`` and ``sum_i e_ui y_i``.
    user_scale : float64 (n_users,), optional;  item_scale : float64 (n_items,), optional
        Multipliers of lambda and lambda_b per row, as in :func:`sgd_epoch` (``z_j`` takes ``item_scale[j]``: it
        is stepped once per user of ``j``).
    z_reg_per_rating : bool, default False
        Multiply ``z_j``'s penalty step by ``|N(u)|``: the per-rating (count-scaled) objective, in which every rating
        of ``u`` penalises ``lambda ||z_j||^2`` for all ``j in N(u)`` (Koren 2008; Surprise's ``SVDpp``, which steps
        every ``z_j`` after every rating). False: once per user, the uniform objective's step (with
        ``item_scale = 1/n_j``).

    Returns
    -------
    float
        Sum of squared errors seen during the epoch.
    """
    dt = P.dtype
    su, si = _scales(user_scale, item_scale, P.shape[0], Y.shape[0])
    return float(_native.svdpp_epoch(
        _args.inp(indptr, np.int64), _args.index(indices), _args.inp(ratings, np.float32), _args.positions(positions),
        _args.inp(user_order, np.int64), _args.out(P, dt, "P"), _args.out(bu, dt, "bu"), _args.out(Y, dt, "Y"),
        _args.out(bi, dt, "bi"), _args.out(Z, dt, "Z"), float(mu), float(lr), float(reg), float(bias_reg), bool(biases),
        bool(implicit), su, si, _args.out(scratch, np.float64, "scratch"), bool(z_reg_per_rating)))


def group_by_row(perm, row_of, indptr, out=None) -> np.ndarray:
    """``perm`` (a permutation of the entries, int32 or int64) stably grouped by row:
    ``perm[np.argsort(row_of[perm], kind="stable")]`` by one counting pass, without that expression's three
    temporaries of nnz int64 each.

    Parameters
    ----------
    perm : int32 or int64 (nnz,)
    row_of : int32 (nnz,)
        The row of each entry (``np.repeat(np.arange(n_rows), np.diff(indptr))``).
    indptr : int64 (n_rows + 1,)
        The CSR row pointer the entries belong to (row ``u`` holds ``indptr[u + 1] - indptr[u]`` of them).
    out : array like ``perm``, optional
        Where to write (a new array otherwise).

    Returns
    -------
    ndarray like ``perm``: row ``u``'s entries, in the order ``perm`` visits them, at ``indptr[u]:indptr[u + 1]``.
    """
    perm = _args.positions(perm)
    row_of, indptr = _args.index(row_of), _args.inp(indptr, np.int64)
    if len(row_of) != len(perm) or indptr[-1] != len(perm):
        raise ValueError(f"group_by_row: {len(perm)} positions, {len(row_of)} rows of entries and a pointer to "
                         f"{indptr[-1]} entries must agree")
    if out is None:
        out = np.empty_like(perm)
    if len(out) != len(perm) or not _native.group_by_row(perm, row_of, indptr, _args.out(out, perm.dtype, "out")):
        raise ValueError("group_by_row: perm must be a permutation of range(nnz) and row_of[e] the row (by indptr) "
                         "of entry e")
    return out
