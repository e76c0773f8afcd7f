"""Accuracy and ranking metrics on plain arrays.

Rating metrics take two arrays of equal length. Ranking metrics are vectorized over users and take

* ``top_k``: ``(n_users, k)`` integer array of recommended item indices per user, best first; ``-1`` pads
  a row that has fewer than ``k`` recommendations (the padding never counts as a hit);
* ``truth``: a scipy sparse matrix ``(n_users, n_items)`` whose rows are aligned with ``top_k``; its stored
  pattern (not its values) marks the relevant items ``T_u`` of each user.

Users with an empty ``T_u`` are **skipped**: they contribute neither to the mean nor to the count (with
``per_user=True`` their value is NaN). When no user is left, the mean is NaN.

Per user, with ``rel_j = 1`` when the item at rank ``j`` (1-based) is in ``T_u``, and ``k`` the number of
columns of ``top_k`` (or the ``k`` argument, which truncates it):

=====================  ==========================================================================
precision@k            ``sum_j rel_j / k``
recall@k               ``sum_j rel_j / |T_u|``
ndcg@k                 ``DCG / IDCG``, ``DCG = sum_j rel_j / log2(j + 1)``, ``IDCG`` the same over
                       ``min(|T_u|, k)`` hits in the first ranks (binary relevance)
map@k                  ``sum_j P@j rel_j / min(|T_u|, k)`` (average precision at k)
mrr                    ``1 / rank of the first hit`` in the list, 0 without a hit
hit_rate@k             1 if any hit, else 0
=====================  ==========================================================================

:func:`auc` works on full score rows instead, and :func:`catalog_coverage_at_k` on the lists alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from mfrec.exceptions import InvalidDataError, InvalidParameterError

__all__ = [
    "rmse",
    "mae",
    "precision_at_k",
    "recall_at_k",
    "ndcg_at_k",
    "map_at_k",
    "mrr",
    "hit_rate_at_k",
    "auc",
    "catalog_coverage_at_k",
    "ranking_metrics",
]


# ---------------------------------------------------------------------------------------------- ratings
def _pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if t.shape != p.shape:
        raise InvalidDataError(f"y_true has {t.size} values but y_pred has {p.size}")
    if t.size == 0:
        raise InvalidDataError("no values to compare (y_true and y_pred are empty)")
    for name, arr in (("y_true", t), ("y_pred", p)):
        bad = ~np.isfinite(arr)
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise InvalidDataError(f"{name}[{pos}] is {arr[pos]} (values must be finite)")
    return t, p


def rmse(y_true: Any, y_pred: Any) -> float:
    """Root mean squared error ``sqrt(mean((y_true - y_pred)^2))`` of two arrays of the same length."""
    t, p = _pair(y_true, y_pred)
    return float(np.sqrt(np.mean((t - p) ** 2)))


def mae(y_true: Any, y_pred: Any) -> float:
    """Mean absolute error ``mean(|y_true - y_pred|)`` of two arrays of the same length."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(np.abs(t - p)))


# ---------------------------------------------------------------------------------------------- ranking
def _truth_csr(truth: Any, n_rows: int | None, name: str = "truth", other: str = "top_k") -> sp.csr_matrix:
    if not sp.issparse(truth):
        raise InvalidDataError(f"{name} must be a scipy sparse matrix (users x items), got {type(truth).__name__}")
    m = sp.csr_matrix(truth)
    if n_rows is not None and m.shape[0] != n_rows:
        raise InvalidDataError(f"{name} has {m.shape[0]} rows but {other} has {n_rows}: rows must be aligned")
    m = m.copy() if not m.has_sorted_indices else m
    m.sort_indices()
    return m


def _check_topk(top_k: Any, n_items: int, k: int | None) -> np.ndarray:
    arr = np.asarray(top_k)
    if arr.ndim != 2:
        raise InvalidDataError(f"top_k must be a 2-D array (n_users, k), got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise InvalidDataError(f"top_k must hold integer item indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if k is not None:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise InvalidParameterError(f"k must be an integer >= 1, got {k!r}")
        arr = arr[:, : int(k)]
    bad = (arr < -1) | (arr >= n_items)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise InvalidDataError(
            f"top_k[{r}, {c}] = {arr[r, c]} is not an item index in [0, {n_items}) (or -1 for padding)"
        )
    if arr.shape[1] > 1:
        s = np.sort(arr, axis=1)
        dup = (s[:, 1:] == s[:, :-1]) & (s[:, 1:] >= 0)
        if dup.any():
            r, c = np.argwhere(dup)[0]
            raise InvalidDataError(f"top_k row {r} recommends item {s[r, c + 1]} more than once")
    return arr


def _hits(top_k: np.ndarray, truth: sp.csr_matrix) -> np.ndarray:
    """Boolean ``(n_users, k)``: is ``top_k[u, j]`` a stored entry of ``truth[u]``?"""
    n_users, n_items = truth.shape
    rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(truth.indptr))
    truth_keys = rows * n_items + truth.indices  # sorted: CSR rows ascending, indices sorted
    keys = np.arange(n_users, dtype=np.int64)[:, None] * n_items + top_k
    pos = np.searchsorted(truth_keys, keys)
    pos = np.minimum(pos, max(0, len(truth_keys) - 1))
    found = (truth_keys[pos] == keys) if len(truth_keys) else np.zeros(keys.shape, dtype=bool)
    return found & (top_k >= 0)


def _prepare(top_k: Any, truth: Any, k: int | None) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """(hits (n, k) bool, |T_u| int64, k, evaluated-user mask)."""
    t = _truth_csr(truth, np.asarray(top_k).shape[0] if np.ndim(top_k) == 2 else None)
    arr = _check_topk(top_k, t.shape[1], k)
    kk = int(k) if k is not None else arr.shape[1]
    if kk < 1:
        raise InvalidDataError("top_k has no columns (k must be >= 1)")
    n_true = np.diff(t.indptr).astype(np.int64)
    return _hits(arr, t), n_true, kk, n_true > 0


def _finish(values: np.ndarray, users: np.ndarray, per_user: bool) -> float | np.ndarray:
    out = np.where(users, values, np.nan).astype(np.float64)
    if per_user:
        return out
    return float(np.mean(out[users])) if users.any() else float("nan")


def _pad(hits: np.ndarray, k: int) -> np.ndarray:
    """Hits widened with misses to ``k`` columns when the lists are shorter than ``k``."""
    if hits.shape[1] >= k:
        return hits
    return np.hstack([hits, np.zeros((hits.shape[0], k - hits.shape[1]), dtype=bool)])


def precision_at_k(top_k: Any, truth: Any, k: int | None = None, *, per_user: bool = False) -> float | np.ndarray:
    """Mean over users of ``hits_u / k`` (a short list still divides by ``k``).

    Parameters
    ----------
    top_k : array of int, shape (n_users, k0)
        Recommended item indices, best first, ``-1`` padding.
    truth : scipy sparse matrix, shape (n_users, n_items)
        Relevant items (stored pattern), rows aligned with ``top_k``.
    k : int, optional
        Cut-off; defaults to ``k0`` (a larger ``k`` counts the missing ranks as misses).
    per_user : bool
        Return the ``(n_users,)`` float64 values (NaN for users with empty truth) instead of the mean.

    Returns
    -------
    float in [0, 1] (NaN when no user has truth), or numpy.ndarray
    """
    hits, _, kk, users = _prepare(top_k, truth, k)
    return _finish(hits.sum(axis=1) / kk, users, per_user)


def recall_at_k(top_k: Any, truth: Any, k: int | None = None, *, per_user: bool = False) -> float | np.ndarray:
    """Mean over users of ``hits_u / |T_u|``. Parameters as :func:`precision_at_k`."""
    hits, n_true, _, users = _prepare(top_k, truth, k)
    return _finish(hits.sum(axis=1) / np.maximum(n_true, 1), users, per_user)


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))  # 1 / log2(j + 1), j = 1..k


def ndcg_at_k(top_k: Any, truth: Any, k: int | None = None, *, per_user: bool = False) -> float | np.ndarray:
    """Mean over users of ``DCG@k / IDCG@k`` with binary relevance.

    ``DCG = sum_{j<=k} rel_j / log2(j + 1)``; ``IDCG = sum_{j <= min(|T_u|, k)} 1 / log2(j + 1)``.
    Parameters as :func:`precision_at_k`.
    """
    hits, n_true, kk, users = _prepare(top_k, truth, k)
    disc = _discounts(kk)
    dcg = hits.astype(np.float64) @ disc[: hits.shape[1]]
    idcg = np.concatenate([[0.0], np.cumsum(disc)])[np.minimum(n_true, kk)]
    return _finish(dcg / np.where(idcg > 0, idcg, 1.0), users, per_user)


def map_at_k(top_k: Any, truth: Any, k: int | None = None, *, per_user: bool = False) -> float | np.ndarray:
    """Mean average precision: ``AP@k = sum_j P@j rel_j / min(|T_u|, k)``. Parameters as :func:`precision_at_k`."""
    hits, n_true, kk, users = _prepare(top_k, truth, k)
    h = hits.astype(np.float64)
    prec_at_j = np.cumsum(h, axis=1) / np.arange(1, h.shape[1] + 1)
    ap = (prec_at_j * h).sum(axis=1) / np.maximum(np.minimum(n_true, kk), 1)
    return _finish(ap, users, per_user)


def mrr(top_k: Any, truth: Any, k: int | None = None, *, per_user: bool = False) -> float | np.ndarray:
    """Mean reciprocal rank of the first hit in the list (0 without a hit). Parameters as :func:`precision_at_k`."""
    hits, _, _, users = _prepare(top_k, truth, k)
    any_hit = hits.any(axis=1)
    first = np.argmax(hits, axis=1) + 1
    return _finish(np.where(any_hit, 1.0 / first, 0.0), users, per_user)


def hit_rate_at_k(top_k: Any, truth: Any, k: int | None = None, *, per_user: bool = False) -> float | np.ndarray:
    """Fraction of users with at least one relevant item in their list. Parameters as :func:`precision_at_k`."""
    hits, _, _, users = _prepare(top_k, truth, k)
    return _finish(hits.any(axis=1).astype(np.float64), users, per_user)


def ranking_metrics(top_k: Any, truth: Any, k: int | None = None, *, per_user: bool = False) -> dict[str, Any]:
    """precision, recall, ndcg, map, mrr and hit_rate at once (the hits are computed once).

    Returns
    -------
    dict
        Keys ``precision``, ``recall``, ``ndcg``, ``map``, ``mrr``, ``hit_rate``; values as the single
        functions return them.
    """
    hits, n_true, kk, users = _prepare(top_k, truth, k)
    h = hits.astype(np.float64)
    n_hit = h.sum(axis=1)
    disc = _discounts(kk)
    idcg = np.concatenate([[0.0], np.cumsum(disc)])[np.minimum(n_true, kk)]
    prec_at_j = np.cumsum(h, axis=1) / np.arange(1, h.shape[1] + 1)
    first = np.argmax(hits, axis=1) + 1
    values = {
        "precision": n_hit / kk,
        "recall": n_hit / np.maximum(n_true, 1),
        "ndcg": (h @ disc[: h.shape[1]]) / np.where(idcg > 0, idcg, 1.0),
        "map": (prec_at_j * h).sum(axis=1) / np.maximum(np.minimum(n_true, kk), 1),
        "mrr": np.where(hits.any(axis=1), 1.0 / first, 0.0),
        "hit_rate": hits.any(axis=1).astype(np.float64),
    }
    return {name: _finish(v, users, per_user) for name, v in values.items()}


def auc(
    scores: Any,
    truth: Any,
    exclude: Any = None,
    *,
    per_user: bool = False,
) -> float | np.ndarray:
    """Per-user ROC AUC from full score rows: the fraction of (positive, negative) pairs ordered right.

    For user ``u`` the candidates are all items not in ``exclude[u]`` (the training items); positives
    ``P_u`` are the candidates in ``truth[u]``, negatives ``N_u`` the other candidates, and

    ``AUC_u = (#{(p, n): s_up > s_un} + 1/2 #{(p, n): s_up = s_un}) / (|P_u| |N_u|)``,

    computed with average ranks (Mann-Whitney U): ``(sum_{p in P_u} rank_p - |P_u|(|P_u|+1)/2) / (|P_u||N_u|)``.
    Users with no positive or no negative candidate are skipped.

    Parameters
    ----------
    scores : array of float, shape (n_users, n_items)
        Dense scores (NaN is an error; +-inf are ordinary values).
    truth : scipy sparse matrix, shape (n_users, n_items)
        Relevant items (stored pattern).
    exclude : scipy sparse matrix, shape (n_users, n_items), optional
        Items that are not candidates (stored pattern), e.g. each user's training items.
    per_user : bool
        Return the ``(n_users,)`` values (NaN for skipped users) instead of the mean.

    Returns
    -------
    float in [0, 1] (NaN when every user is skipped), or numpy.ndarray
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        raise InvalidDataError(f"scores must be a 2-D array (n_users, n_items), got shape {s.shape}")
    nan = np.isnan(s)
    if nan.any():
        r, c = np.argwhere(nan)[0]
        raise InvalidDataError(f"scores[{r}, {c}] is NaN")
    t = _truth_csr(truth, s.shape[0], other="scores")
    if t.shape[1] != s.shape[1]:
        raise InvalidDataError(f"truth has {t.shape[1]} columns but scores {s.shape[1]}")
    pos = _pattern_dense(t)
    if exclude is not None:
        e = _truth_csr(exclude, s.shape[0], "exclude", "scores")
        if e.shape != s.shape:
            raise InvalidDataError(f"exclude has shape {e.shape}, scores {s.shape}")
        excluded = _pattern_dense(e)
        s = np.where(excluded, np.nan, s)
        pos &= ~excluded
    else:
        excluded = np.zeros(s.shape, dtype=bool)
    n_cand = (~excluded).sum(axis=1)
    n_pos = pos.sum(axis=1)
    n_neg = n_cand - n_pos
    users = (n_pos > 0) & (n_neg > 0)
    values = np.full(s.shape[0], np.nan)
    if users.any():
        # the average rank of each positive among the candidates, from one sort of the row: candidates below it,
        # plus half of those tied with it (itself included), plus one half. Only the positives are ranked.
        big = np.where(excluded, np.inf, s)
        ordered = np.sort(big, axis=1)
        for u in np.flatnonzero(users):
            row = ordered[u, : n_cand[u]]
            ps = s[u, pos[u]]
            below = np.searchsorted(row, ps, side="left")
            upto = np.searchsorted(row, ps, side="right")
            rank_sum = float(np.sum(below + (upto - below + 1) / 2.0))
            p, n = float(n_pos[u]), float(n_neg[u])
            values[u] = (rank_sum - p * (p + 1) / 2) / (p * n)
    return _finish(values, users, per_user)


def _pattern_dense(m: sp.csr_matrix) -> np.ndarray:
    """Dense bool of the stored pattern (explicit zeros included)."""
    out = np.zeros(m.shape, dtype=bool)
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    out[rows, m.indices] = True
    return out


def catalog_coverage_at_k(top_k: Any, n_items: int, k: int | None = None) -> float:
    """Fraction of the ``n_items`` catalog that appears in at least one top-k list (padding ignored).

    Parameters
    ----------
    top_k : array of int, shape (n_users, k0)
    n_items : int >= 1
    k : int, optional
        Cut-off (defaults to all columns).
    """
    if isinstance(n_items, bool) or not isinstance(n_items, int | np.integer) or n_items < 1:
        raise InvalidParameterError(f"n_items must be an integer >= 1, got {n_items!r}")
    arr = _check_topk(top_k, int(n_items), k)
    return float(len(np.unique(arr[arr >= 0])) / n_items)
