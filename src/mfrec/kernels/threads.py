"""Threads of the compiled kernels (:mod:`mfrec.kernels._native`): one persistent pool per process.

The pool starts with ``MFREC_NUM_THREADS`` threads (else ``NUMBA_NUM_THREADS`` or ``OMP_NUM_THREADS``, else the
CPUs this process may run on). Its workers sleep between kernels, so they never compete with BLAS or another
library while mfrec is idle. BLAS threads and kernel threads must not oversubscribe the cores: the drivers hold
BLAS to one thread while the row kernels run (threadpoolctl).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from mfrec.kernels import _native

__all__ = ["get_num_threads", "set_num_threads", "limit_threads", "max_threads"]


def get_num_threads() -> int:
    """Threads the parallel kernels use now."""
    return int(_native.get_num_threads())


def max_threads() -> int:
    """The pool's starting size (environment or CPU count): the most :func:`set_num_threads` is meant to ask for."""
    return int(_native.default_num_threads())


def set_num_threads(n: int) -> None:
    """Use ``n >= 1`` threads in the parallel kernels from now on (process-wide)."""
    n = int(n)
    if n < 1:
        raise ValueError(f"the number of threads must be >= 1, got {n}")
    _native.set_num_threads(n)


@contextmanager
def limit_threads(n: int | None) -> Iterator[int]:
    """Run the block with ``n`` kernel threads (``None``: unchanged), then restore the previous number."""
    old = get_num_threads()
    if n is not None:
        set_num_threads(max(1, int(n)))
    try:
        yield get_num_threads()
    finally:
        set_num_threads(old)
