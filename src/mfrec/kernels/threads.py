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

__all__ = ["get_num_threads", "set_num_threads", "limit_threads", "max_threads", "single_threaded_blas"]


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


_CONTROLLER: list = []  # threadpoolctl's ThreadpoolController, made at the first single_threaded_blas()


def single_threaded_blas():
    """A context in which BLAS runs on one thread (threadpoolctl), from one controller kept for the process.

    ``threadpoolctl.threadpool_limits`` finds the loaded libraries again at every call: 1 ms each, a few dozen
    times per iteration of a sliced ALS fit, and the Python objects of that scan were the peak of a small fit's
    traced memory. The controller is made at the first call, after ``import mfrec`` has loaded numpy's and
    scipy's BLAS (a BLAS loaded later in the process is not limited)."""
    if not _CONTROLLER:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0].limit(limits=1, user_api="blas")
