"""Hyperparameter validation in one place: constructors store, ``fit`` validates once.

Each rule names the parameter and the allowed range in its error, e.g.
``regularization must be >= 0, got -1``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from mfrec.exceptions import InvalidParameterError


def check_int(name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidParameterError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise InvalidParameterError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise InvalidParameterError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_float(
    name: str,
    value: Any,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    strict_min: bool = False,
) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise InvalidParameterError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise InvalidParameterError(f"{name} must be finite, got {value}")
    if minimum is not None and (value <= minimum if strict_min else value < minimum):
        raise InvalidParameterError(f"{name} must be {'>' if strict_min else '>='} {minimum:g}, got {value:g}")
    if maximum is not None and value > maximum:
        raise InvalidParameterError(f"{name} must be <= {maximum:g}, got {value:g}")
    return value


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    choices = tuple(choices)
    if value not in choices:
        raise InvalidParameterError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def check_dtype(name: str, value: Any) -> np.dtype:
    """'float32' or 'float64' (or the numpy dtypes)."""
    try:
        dt = np.dtype(value)
    except TypeError:
        dt = None
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise InvalidParameterError(f"{name} must be 'float32' or 'float64', got {value!r}")
    return dt
