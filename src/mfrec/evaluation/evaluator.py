"""Evaluate a fitted model on held-out interactions: rating errors and top-k ranking quality.

:func:`evaluate` speaks the models' array-level hooks (``_topk``, ``_scores``) so that it scores users in
blocks with the same code as ``recommend``; see :mod:`mfrec.models.base` for the hook contract.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import scipy.sparse as sp

from mfrec._params import check_float, check_int
from mfrec.data.interactions import Interactions
from mfrec.evaluation import metrics as M
from mfrec.exceptions import InvalidParameterError

__all__ = ["evaluate", "METRICS", "LOWER_IS_BETTER", "metric_key"]

#: every metric :func:`evaluate` knows, by base name
METRICS: tuple[str, ...] = ("rmse", "mae", "precision", "recall", "ndcg", "map", "mrr", "hit_rate", "auc", "coverage")
#: metrics where smaller is better (all others: larger is better)
LOWER_IS_BETTER: frozenset[str] = frozenset({"rmse", "mae"})
_AT_K = ("precision", "recall", "ndcg", "map", "hit_rate", "coverage")
_RANKING = ("precision", "recall", "ndcg", "map", "mrr", "hit_rate")

#: budget of one dense score block for AUC, in bytes
_AUC_BLOCK_BYTES = 64 * 2**20


def _base_name(name: str) -> str:
    if not isinstance(name, str):
        raise InvalidParameterError(f"metric names must be strings, got {name!r}")
    base = name.split("@", 1)[0].strip().lower()
    if base not in METRICS:
        raise InvalidParameterError(f"unknown metric {name!r}; known metrics: {', '.join(METRICS)}")
    return base


def metric_key(name: str, k: int) -> str:
    """The result key of a metric: ``"ndcg"`` -> ``"ndcg@10"`` for ``k=10``; ``"rmse"``, ``"mrr"``, ``"auc"`` as is.

    A name that already carries ``@k`` must carry this ``k``.
    """
    base = _base_name(name)
    if "@" in name:
        given = name.split("@", 1)[1].strip()
        if given != str(k):
            raise InvalidParameterError(f"metric {name!r} asks for k={given} but k={k}")
    return f"{base}@{k}" if base in _AT_K else base


def _has_predict(model: Any) -> bool:
    """True when the model predicts ratings (``predicts_ratings``; explicit models)."""
    return bool(getattr(model, "predicts_ratings", False))


def evaluate(
    model: Any,
    test: Interactions,
    *,
    train: Interactions | None = None,
    k: int = 10,
    metrics: Iterable[str] | None = None,
    relevance_threshold: float | None = None,
) -> dict[str, float | int]:
    """Score a fitted model on test interactions.

    The test entries are first expressed in the model's id space with
    ``test.reindex(model.interactions_.user_index_map, model.interactions_.item_index_map)``; entries whose
    user or item the model does not know are dropped from every metric and counted in
    ``"unknown_user_entries"`` / ``"unknown_item_entries"`` (an entry with both unknown counts in both).

    Rating metrics (``rmse``, ``mae``) compare ``model.predict`` with the test values on the known entries;
    they are reported only when the model implements ``predict`` (explicit models) and ``test`` has values.

    Ranking metrics (see :mod:`mfrec.evaluation.metrics`) use, for every user with at least one relevant
    test entry, the model's top ``k`` among the items the user has *not* seen in ``train``:
    ``model._topk(users, k, exclude=train_rows)``. A test entry is relevant when
    ``value >= relevance_threshold`` (every entry when the threshold is None). ``auc`` ranks all
    non-training items of the user from ``model._scores`` (in blocks of users to bound memory): positives
    are the relevant test items, negatives every other non-training item. ``coverage@k`` is the fraction of
    the model's items appearing in some evaluated user's list.

    Parameters
    ----------
    model : Recommender
        Fitted; must set ``interactions_`` and implement ``_topk`` and ``_scores``.
    test : Interactions
        Held-out interactions, in any id maps.
    train : Interactions, optional
        The items to exclude from each user's ranking; default ``model.interactions_``. Expressed in the
        model's id space the same way as ``test``.
    k : int >= 1
        List length of the ranking metrics.
    metrics : iterable of str, optional
        Subset of ``rmse, mae, precision, recall, ndcg, map, mrr, hit_rate, auc, coverage`` (``"ndcg@10"``
        spellings accepted); default all.
    relevance_threshold : float, optional
        Minimum test value of a relevant item (e.g. 4 for star ratings).

    Returns
    -------
    dict
        ``"rmse"``, ``"mae"`` (explicit models), ``"precision@k"``, ``"recall@k"``, ``"ndcg@k"``,
        ``"map@k"``, ``"mrr"``, ``"hit_rate@k"``, ``"auc"``, ``"coverage@k"`` (those asked for), and
        ``"n_users"`` (users evaluated by the ranking metrics), ``"n_test"`` (known test entries),
        ``"unknown_user_entries"``, ``"unknown_item_entries"``. A metric with no user to average over is
        NaN.
    """
    model._check_fitted()
    k = check_int("k", k, minimum=1)
    if not isinstance(test, Interactions):
        raise InvalidParameterError(f"test must be an Interactions, got {type(test).__name__}")
    if relevance_threshold is not None:
        relevance_threshold = check_float("relevance_threshold", relevance_threshold)
    names = None if metrics is None else ([metrics] if isinstance(metrics, str) else list(metrics))
    wanted = list(METRICS) if names is None else [_base_name(m) for m in names]
    for name in names or ():
        metric_key(name, k)  # a mismatched "@k" is an error
    known: Interactions = model.interactions_
    users_map, items_map = known.user_index_map, known.item_index_map

    # entries the model cannot score
    rows, cols, _ = test.coo()
    user_known = users_map.get_indexer(test.user_index_map) >= 0
    item_known = items_map.get_indexer(test.item_index_map) >= 0
    unknown_user = int((~user_known[rows]).sum())
    unknown_item = int((~item_known[cols]).sum())
    mapped, _ = test.reindex(users_map, items_map)
    if train is None:
        train_m = known.matrix
    else:
        if not isinstance(train, Interactions):
            raise InvalidParameterError(f"train must be an Interactions or None, got {type(train).__name__}")
        train_m = train.reindex(users_map, items_map)[0].matrix

    result: dict[str, float | int] = {}
    # ----------------------------------------------------------------- rating errors
    if ("rmse" in wanted or "mae" in wanted) and test.has_values and _has_predict(model) and mapped.nnz:
        u, i, v = mapped.coo()
        try:
            pred = np.asarray(model.predict(users_map.take(u), items_map.take(i)), dtype=np.float64)
        except NotImplementedError:
            pred = None
        if pred is not None:
            if "rmse" in wanted:
                result["rmse"] = M.rmse(v, pred)
            if "mae" in wanted:
                result["mae"] = M.mae(v, pred)

    # ----------------------------------------------------------------- ranking
    tm = mapped.matrix
    if relevance_threshold is None:
        relevant = np.ones(tm.nnz, np.float32)
    else:
        relevant = (tm.data >= relevance_threshold).astype(np.float32)
    # copies: eliminate_zeros works in place and must not touch the arrays of ``mapped``
    truth = sp.csr_matrix((relevant, tm.indices.copy(), tm.indptr.copy()), shape=tm.shape)
    truth.eliminate_zeros()  # stored pattern = relevant test items
    users = np.flatnonzero(np.diff(truth.indptr) > 0).astype(np.int32)
    truth_u = truth[users]
    exclude_u = sp.csr_matrix(train_m)[users]
    need_topk = any(name in wanted for name in _RANKING + ("coverage",))
    if need_topk:
        if len(users):
            items, _ = model._topk(users, k, exclude=exclude_u)
            items = np.asarray(items, dtype=np.int64)
            if items.shape[1] < k:  # fewer candidates than k: pad with "no recommendation"
                items = np.hstack([items, np.full((len(users), k - items.shape[1]), -1, np.int64)])
        else:
            items = np.full((0, k), -1, np.int64)
        ranking = M.ranking_metrics(items, truth_u, k)
        for name in _RANKING:
            if name in wanted:
                result[metric_key(name, k)] = ranking[name]
        if "coverage" in wanted:
            result[metric_key("coverage", k)] = M.catalog_coverage_at_k(items, known.n_items, k)
    if "auc" in wanted:
        values = np.full(len(users), np.nan)
        block = max(1, _AUC_BLOCK_BYTES // (8 * max(1, known.n_items)))
        for start in range(0, len(users), block):
            stop = min(len(users), start + block)
            scores = model._scores(users[start:stop])
            values[start:stop] = M.auc(scores, truth_u[start:stop], exclude_u[start:stop], per_user=True)
        ok = ~np.isnan(values)
        result["auc"] = float(values[ok].mean()) if ok.any() else float("nan")
    result["n_users"] = int(len(users))
    result["n_test"] = int(mapped.nnz)
    result["unknown_user_entries"] = unknown_user
    result["unknown_item_entries"] = unknown_item
    return result
