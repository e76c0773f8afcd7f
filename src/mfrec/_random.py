"""The one seed entry point: int / SeedSequence / Generator / None -> numpy Generator."""

from __future__ import annotations

import numpy as np

from mfrec.exceptions import InvalidParameterError

SeedLike = int | np.random.SeedSequence | np.random.Generator | None


def rng(seed: SeedLike) -> np.random.Generator:
    """Return a ``numpy.random.Generator`` for ``seed`` (a Generator is passed through unchanged)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or isinstance(seed, np.random.SeedSequence):
        return np.random.default_rng(seed)
    if isinstance(seed, int | np.integer) and not isinstance(seed, bool):
        if seed < 0:
            raise InvalidParameterError(f"seed must be >= 0, got {seed}")
        return np.random.default_rng(int(seed))
    raise InvalidParameterError(f"seed must be an int, SeedSequence, Generator or None, got {type(seed).__name__}")


def int_seed(seed: SeedLike) -> int:
    """A 32-bit int derived from ``seed``, for numba kernels that seed their own generator."""
    return int(rng(seed).integers(0, 2**31 - 1))
