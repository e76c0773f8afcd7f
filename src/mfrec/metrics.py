"""``mfrec.metrics``: rating and ranking metrics.

The public import path (README, user code). The implementation is :mod:`mfrec.evaluation.metrics`, the path the
package's own modules use; both name the same objects (docs/architecture.md, "Import paths").
"""

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
