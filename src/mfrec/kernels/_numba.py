"""numba settings shared by every kernel module.

``CACHE``: use numba's on-disk cache only where this package's folder is writable. A read-only install (system
site-packages, a container image) compiles on first use in each process instead of failing or warning.
"""

from __future__ import annotations

import os

__all__ = ["CACHE"]


def _cache_ok() -> bool:
    here = os.path.dirname(os.path.abspath(__file__))
    target = os.path.join(here, "__pycache__")
    return os.access(target if os.path.isdir(target) else here, os.W_OK)


CACHE = _cache_ok()
