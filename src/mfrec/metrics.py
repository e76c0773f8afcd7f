"""``mfrec.metrics``: rating and ranking metrics (see :mod:`mfrec.evaluation.metrics`)."""

from mfrec.evaluation.metrics import (
    auc,
    catalog_coverage_at_k,
    hit_rate_at_k,
    mae,
    map_at_k,
    mrr,
    ndcg_at_k,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
    rmse,
)

__all__ = [
    "auc",
    "catalog_coverage_at_k",
    "hit_rate_at_k",
    "mae",
    "map_at_k",
    "mrr",
    "ndcg_at_k",
    "precision_at_k",
    "ranking_metrics",
    "recall_at_k",
    "rmse",
]
