"""Estimators: ids in, ids out. Every model shares the recommend/similar/persist plumbing of ``base``."""

from mfrec.models.base import FactorModel, Recommender, clone
from mfrec.models.baselines import Biases, Popularity
from mfrec.models.content import ContentBased, HybridALS
from mfrec.models.explicit import ExplicitALS, SGDFactorization
from mfrec.models.implicit import ImplicitALS
from mfrec.models.linear import GlobalLinear, PureSVD

__all__ = [
    "Biases",
    "ContentBased",
    "ExplicitALS",
    "FactorModel",
    "GlobalLinear",
    "HybridALS",
    "ImplicitALS",
    "Popularity",
    "PureSVD",
    "Recommender",
    "SGDFactorization",
    "clone",
]
