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


def check_bool(name: str, value: Any) -> bool:
    """True or False (numpy's bool too); anything else, 0 and 1 included, is refused."""
    if not isinstance(value, bool | np.bool_):
        raise InvalidParameterError(f"{name} must be True or False, got {value!r}")
    return bool(value)


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


def available_memory() -> int | None:
    """Bytes of memory this process may still allocate: the system's available memory (Linux ``MemAvailable``),
    lowered by a cgroup limit when there is one; None where neither can be read."""
    avail = None
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit_file, encoding="ascii") as fh:
                raw = fh.read().strip()
            if raw == "max":
                continue
            with open(usage_file, encoding="ascii") as fh:
                free = int(raw) - int(fh.read().strip())
            avail = free if avail is None else min(avail, free)
            break
        except (OSError, ValueError):
            continue
    return avail


def check_memory(what: str, nbytes: float, hint: str) -> None:
    """Refuse, before allocating, work whose memory estimate ``nbytes`` exceeds what the machine has available.

    One line naming ``what`` (the option and the sizes behind the estimate), the estimate and ``hint``
    (what to lower); nothing is checked where the available memory cannot be read.
    """
    avail = available_memory()
    if avail is not None and nbytes > avail:
        raise InvalidParameterError(
            f"{what} needs about {nbytes / 2**30:.1f} GiB, more than the {avail / 2**30:.1f} GiB this machine has "
            f"available; {hint}"
        )
