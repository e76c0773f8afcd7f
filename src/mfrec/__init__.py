"""mfrec: recommender systems by matrix factorization.

The public API is re-exported here; see README.md for a tour.
"""

from mfrec._version import __version__
from mfrec.data.interactions import Interactions, read_interactions
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

__all__ = [
    "__version__",
    "Interactions",
    "read_interactions",
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
