"""Evaluation layer: metrics, evaluate, cross-validation and hyperparameter search."""

from mfrec.evaluation.evaluator import evaluate
from mfrec.evaluation.search import GridSearch, RandomSearch, cross_validate

__all__ = ["GridSearch", "RandomSearch", "cross_validate", "evaluate"]
