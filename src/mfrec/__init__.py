"""mfrec: recommender systems by matrix factorization.

The public API is re-exported here and nothing else happens in this module; see README.md for a tour.
"""

from mfrec import datasets, metrics, split
from mfrec._version import __version__
from mfrec.data.attributes import Attributes
from mfrec.data.examples import seed_example
from mfrec.data.feedback import (
    ImplicitFeedback,
    PseudoRatingRule,
    confidence,
    events_to_explicit,
    events_to_implicit,
    explicit_to_implicit,
)
from mfrec.data.interactions import Interactions, read_interactions
from mfrec.data.split import Split
from mfrec.evaluation import GridSearch, RandomSearch, cross_validate, evaluate
from mfrec.exceptions import (
    DatasetError,
    InvalidDataError,
    InvalidParameterError,
    MfrecError,
    MissingExtraError,
    ModelFileError,
    ModelFitError,
    NotFittedError,
    UnknownIdError,
)
from mfrec.models import (
    Biases,
    ContentBased,
    ExplicitALS,
    FactorModel,
    GlobalLinear,
    HybridALS,
    ImplicitALS,
    Popularity,
    PureSVD,
    Recommender,
    SGDFactorization,
    clone,
)
from mfrec.persist import load

__all__ = [
    "__version__",
    # data
    "Interactions",
    "read_interactions",
    "Attributes",
    "ImplicitFeedback",
    "PseudoRatingRule",
    "confidence",
    "explicit_to_implicit",
    "events_to_implicit",
    "events_to_explicit",
    "seed_example",
    "datasets",
    "split",
    "Split",
    # models
    "Recommender",
    "FactorModel",
    "ImplicitALS",
    "ExplicitALS",
    "SGDFactorization",
    "Popularity",
    "Biases",
    "GlobalLinear",
    "PureSVD",
    "ContentBased",
    "HybridALS",
    "clone",
    "load",
    # evaluation
    "metrics",
    "evaluate",
    "cross_validate",
    "GridSearch",
    "RandomSearch",
    # errors
    "MfrecError",
    "InvalidDataError",
    "InvalidParameterError",
    "NotFittedError",
    "UnknownIdError",
    "ModelFitError",
    "ModelFileError",
    "DatasetError",
    "MissingExtraError",
]


def __getattr__(name: str):
    """``mfrec.plots`` on first use: matplotlib is imported only by those who draw."""
    if name == "plots":
        import importlib

        return importlib.import_module("mfrec.plots")
    raise AttributeError(f"module 'mfrec' has no attribute {name!r}")
