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

An epoch visits every rating once, sequentially, in the order given by ``order`` (:func:`sgd_epoch`: a
permutation the caller draws) or computed from four keys the caller draws (:func:`sgd_epoch_shuffled`, which the
models use: no array of nnz positions); either way a seed reproduces the factors bit for bit. The dot product and the
factor updates run in the factor dtype (the update as ``x (1 - gamma lambda s_u) + (gamma e) y``: two
multiply-adds per entry on whole vectors); the error, the biases and the step coefficients in float64.
"""

from __future__ import annotations

import numpy as np

from mfrec.kernels import _args, _native

__all__ = ["sgd_epoch", "sgd_epoch_shuffled", "shuffled_order", "shuffle_keys", "row_table", "svdpp_epoch",
           "svdpp_epoch_shuffled", "svdpp_order", "svdpp_effective"]


def _scales(user_scale, item_scale, n_users: int, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """The per-row penalty multipliers as float64 arrays of the right lengths; an empty array for None (the
    kernels read it as 1 everywhere: no per-row array of ones)."""
    out = []
    for name, a, n in (("user_scale", user_scale, n_users), ("item_scale", item_scale, n_items)):
        if a is None:
            out.append(_NO_SCALE)
            continue
        a = _args.inp(a, np.float64)
        if a.shape != (n,):
            raise ValueError(f"{name} must have shape ({n},), got {a.shape}")
        out.append(a)
    return out[0], out[1]


_NO_SCALE = np.empty(0, dtype=np.float64)


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


#: entries per row_table step: the table takes a 16th of an int32 per rating
ROW_STEP = 16


def row_table(indptr) -> np.ndarray:
    """``row_at`` of :func:`sgd_epoch_shuffled`: the row holding entry ``ROW_STEP k`` for each k (int32)."""
    # row u holds the marked entries ROW_STEP k for k in [ceil(indptr[u] / ROW_STEP), ceil(indptr[u+1] / ROW_STEP)):
    # per-row arrays only (a search of every mark held two int64 arrays of the table's length)
    marks = -(-np.asarray(indptr, dtype=np.int64) // ROW_STEP)
    return np.repeat(np.arange(len(marks) - 1, dtype=np.int32), np.diff(marks))


def shuffle_keys(gen: np.random.Generator, n: int = 4) -> np.ndarray:
    """``n`` 32-bit keys drawn from ``gen``: one epoch's visiting order (four for :func:`shuffled_order`, eight
    for :func:`svdpp_epoch_shuffled`)."""
    return gen.integers(0, 2**32, size=n, dtype=np.uint64).astype(np.uint32)


def shuffled_order(n: int, keys) -> np.ndarray:
    """The visiting order :func:`sgd_epoch_shuffled` takes with ``keys``, written out (int64 (n,)): a permutation
    of ``range(n)`` computed position by position (a four-round Feistel network on ``ceil(log2 n)`` bits, with
    cycle walking into ``[0, n)``), for tests and inspection."""
    out = np.empty(int(n), dtype=np.int64)
    _native.shuffled_order(_keys(keys), out)
    return out


def _keys(keys, n: int = 4) -> np.ndarray:
    keys = np.ascontiguousarray(keys, dtype=np.uint32)
    if keys.shape != (n,):
        raise ValueError(f"keys must be {n} 32-bit integers, got shape {keys.shape}")
    return keys


def sgd_epoch_shuffled(indptr, row_at, items, ratings, keys, X, bu, Y, bi, mu, lr, reg, bias_reg, biases,
                       user_scale=None, item_scale=None) -> float:
    """:func:`sgd_epoch` over a CSR (``indptr``, ``items`` = its column indices, ``ratings`` = its values) in the
    order :func:`shuffled_order` gives with ``keys``, with no per-rating arrays besides the CSR's own.

    The row of entry ``p`` is found from ``row_at[p // ROW_STEP]`` (:func:`row_table`) and the pointers; the
    order is computed as the epoch goes. Equal to :func:`sgd_epoch` with ``users`` the CSR's row of each entry and
    ``order = shuffled_order(nnz, keys)`` (8 bytes per rating those two arrays take): bit for bit with float32
    factors, to rounding with float64 (the compiler may sum a dot product in another order in each loop).
    """
    dt = X.dtype
    su, si = _scales(user_scale, item_scale, X.shape[0], Y.shape[0])
    indptr = _args.inp(indptr, np.int64)
    nnz = int(indptr[-1])
    items, ratings, row_at = _args.index(items), _args.inp(ratings, np.float32), _args.index(row_at)
    if len(items) != nnz or len(ratings) != nnz or len(row_at) != -(-nnz // ROW_STEP) or len(indptr) != X.shape[0] + 1:
        raise ValueError(f"the CSR ({len(indptr) - 1} rows, {nnz} entries), its {len(items)} items, {len(ratings)} "
                         f"ratings, {len(row_at)} row_at values and {X.shape[0]} user rows disagree")
    return float(_native.sgd_epoch_shuffled(indptr, row_at, items, ratings, _keys(keys), _args.out(X, dt, "X"),
                                            _args.out(bu, dt, "bu"), _args.out(Y, dt, "Y"), _args.out(bi, dt, "bi"),
                                            float(mu), float(lr), float(reg), float(bias_reg), bool(biases), su, si))


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
        For every user, a permutation of its own CSR range (the visiting order of its ratings).
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


def svdpp_epoch_shuffled(indptr, indices, ratings, keys, P, bu, Y, bi, Z, mu, lr, reg, bias_reg, biases, implicit,
                         scratch, user_scale=None, item_scale=None, z_reg_per_rating=False) -> float:
    """:func:`svdpp_epoch` with its visiting orders computed from eight 32-bit ``keys`` as the epoch goes (no
    per-rating order arrays): the users in :func:`shuffled_order` ``(n_users, keys[:4])``'s order, and each user's
    ratings in the order of a shuffle of its own range whose keys mix ``keys[4:]`` with the user's number
    (:func:`svdpp_order` writes both out). Bit for bit :func:`svdpp_epoch` on those orders."""
    dt = P.dtype
    su, si = _scales(user_scale, item_scale, P.shape[0], Y.shape[0])
    indptr = _args.inp(indptr, np.int64)
    if len(indptr) != P.shape[0] + 1 or len(indices) != int(indptr[-1]) or len(ratings) != int(indptr[-1]):
        raise ValueError(f"the CSR ({len(indptr) - 1} rows, {int(indptr[-1])} entries), its {len(indices)} indices, "
                         f"{len(ratings)} ratings and {P.shape[0]} user rows disagree")
    return float(_native.svdpp_epoch_shuffled(
        indptr, _args.index(indices), _args.inp(ratings, np.float32), _keys(keys, 8), _args.out(P, dt, "P"),
        _args.out(bu, dt, "bu"), _args.out(Y, dt, "Y"), _args.out(bi, dt, "bi"), _args.out(Z, dt, "Z"), float(mu),
        float(lr), float(reg), float(bias_reg), bool(biases), bool(implicit), su, si,
        _args.out(scratch, np.float64, "scratch"), bool(z_reg_per_rating)))


def svdpp_order(indptr, keys) -> tuple[np.ndarray, np.ndarray]:
    """``(positions, user_order)``, int64: the visiting orders :func:`svdpp_epoch_shuffled` takes with ``keys``,
    as :func:`svdpp_epoch` takes them (for tests and inspection)."""
    indptr = _args.inp(indptr, np.int64)
    positions, user_order = np.empty(int(indptr[-1]), dtype=np.int64), np.empty(len(indptr) - 1, dtype=np.int64)
    _native.svdpp_order(indptr, _keys(keys, 8), positions, user_order)
    return positions, user_order


def svdpp_effective(indptr, indices, P, Z, out=None) -> np.ndarray:
    """SVD++'s effective user factors ``p_u + |N(u)|^-1/2 sum_{j in N(u)} z_j`` ((n_users, d), the dtype of
    ``P``; the sum in float64, as the epochs form it), written into ``out`` when given; no users x items matrix
    of the scales. ``out`` may be ``P`` itself: each row of ``P`` is read before its row of ``out`` is written."""
    dt = P.dtype
    indptr = _args.inp(indptr, np.int64)
    out = np.empty_like(P) if out is None else out
    if out.shape != P.shape or len(indptr) != P.shape[0] + 1 or Z.shape[1:] != P.shape[1:]:
        raise ValueError(f"P {P.shape}, Z {Z.shape}, out {out.shape} and the CSR's {len(indptr) - 1} rows disagree")
    _native.svdpp_effective(indptr, _args.index(indices), _args.inp(P, dt), _args.inp(Z, dt), _args.out(out, dt, "out"))
    return out
