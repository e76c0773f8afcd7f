"""Small in-register linear-algebra helpers for the per-row ALS solves (numba, no allocation).

These work on caller-provided scratch so a parallel kernel allocates once per chunk of rows, never per row.
Reductions are compiled with ``fastmath={"reassoc", "contract"}`` so they vectorise; the NaN/inf checks the
solvers rely on are kept (no ``nnan``/``ninf`` flags), and the tests compare every helper against numpy.
"""

from __future__ import annotations

import os

import numpy as np
from numba import njit

__all__ = ["cholesky_inplace", "cholesky_solve_inplace", "dot", "symv_lower", "axpy"]

_FM = {"reassoc", "contract"}


def _cache_ok() -> bool:
    here = os.path.dirname(os.path.abspath(__file__))
    target = os.path.join(here, "__pycache__")
    return os.access(target if os.path.isdir(target) else here, os.W_OK)


CACHE = _cache_ok()


@njit(nogil=True, cache=CACHE, fastmath=_FM, inline="always")
def dot(a, b, n):
    """``sum_k a[k] b[k]`` over the first ``n`` entries (accumulated in the dtype of ``a``)."""
    s = a.dtype.type(0.0)
    for k in range(n):
        s += a[k] * b[k]
    return s


@njit(nogil=True, cache=CACHE, fastmath=_FM, inline="always")
def axpy(alpha, x, y, n):
    """``y[:n] += alpha * x[:n]`` in place."""
    for k in range(n):
        y[k] += alpha * x[k]


@njit(nogil=True, cache=CACHE, fastmath=_FM)
def symv_lower(A, x, out, n):
    """``out = A x`` for symmetric ``A`` of which only the lower triangle (``A[i, j]``, ``j <= i``) is valid.

    Row-major traversal: ``out_i = sum_{j<=i} A_ij x_j + sum_{j<i} A_ij x_j`` scattered to ``out_j``.
    """
    for i in range(n):
        out[i] = 0.0
    for i in range(n):
        xi = x[i]
        s = A[i, i] * xi
        for j in range(i):
            a = A[i, j]
            s += a * x[j]
            out[j] += a * xi
        out[i] += s


@njit(nogil=True, cache=CACHE, fastmath=_FM)
def cholesky_inplace(A, n):
    """Overwrite the lower triangle of SPD ``A`` (n x n) with ``L``, ``A = L L^T`` (Cholesky-Crout, row-wise).

    Only ``A[i, j]`` with ``j <= i`` is read. Returns False when a pivot is not positive (``A`` not numerically
    positive definite, or NaN), leaving ``A`` partly overwritten.
    """
    for i in range(n):
        for j in range(i + 1):
            s = A[i, j]
            # s = A_ij - sum_{p<j} L_ip L_jp    (contiguous rows i and j: a vectorised dot product)
            for p in range(j):
                s -= A[i, p] * A[j, p]
            if i == j:
                if not s > 0.0:  # also catches NaN
                    return False
                A[i, i] = np.sqrt(s)
            else:
                A[i, j] = s / A[j, j]
    return True


@njit(nogil=True, cache=CACHE, fastmath=_FM)
def cholesky_solve_inplace(L, b, n):
    """Solve ``L L^T z = b`` given the factor from :func:`cholesky_inplace`; ``b`` is overwritten by ``z``."""
    for i in range(n):  # L w = b
        s = b[i]
        for p in range(i):
            s -= L[i, p] * b[p]
        b[i] = s / L[i, i]
    for i in range(n - 1, -1, -1):  # L^T z = w
        s = b[i]
        for p in range(i + 1, n):
            s -= L[p, i] * b[p]
        b[i] = s / L[i, i]
