"""Estimators: ids in, ids out. Every model shares the recommend/similar/persist plumbing of ``base``."""

from mfrec.models.base import FactorModel, Recommender, clone
from mfrec.models.baselines import Biases, Popularity
from mfrec.models.explicit import ExplicitALS, SGDFactorization
from mfrec.models.implicit import ImplicitALS

__all__ = [
    "Biases",
    "ExplicitALS",
    "FactorModel",
    "ImplicitALS",
    "Popularity",
    "Recommender",
    "SGDFactorization",
    "clone",
]
