"""Factor matrices whose data start a 64-byte cache line.

The compiled kernels gather factor rows and load them 64 bytes at a time. numpy's large arrays start 16 bytes past
a line (malloc's header), so every such load spans two lines and a row of d float32 (d a multiple of 16) touches
one line more than it needs: on the CG half-steps of `benchmarks/implicit_half_steps.py` the user half took 0.85 s
at 16 bytes past a line against 0.68 s aligned (d = 128; d = 64: 0.36 against 0.30 s, item half 0.47 against
0.32 s). The models allocate their factors here; the kernels accept any alignment.
"""

from __future__ import annotations

from typing import Any

import numpy as np

LINE = 64


def empty(shape: int | tuple[int, ...], dtype: Any) -> np.ndarray:
    """An uninitialised C-contiguous array of ``shape`` and ``dtype`` starting a cache line (a view of a byte
    buffer 64 bytes longer than the data)."""
    dtype = np.dtype(dtype)
    shape = (int(shape),) if np.isscalar(shape) else tuple(int(s) for s in shape)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    buf = np.empty(nbytes + LINE, dtype=np.uint8)
    at = (-buf.ctypes.data) % LINE
    return buf[at:at + nbytes].view(dtype).reshape(shape)


def zeros(shape: int | tuple[int, ...], dtype: Any) -> np.ndarray:
    """As :func:`empty`, filled with zeros."""
    out = empty(shape, dtype)
    out.fill(0)
    return out


def is_aligned(a: np.ndarray) -> bool:
    """True when ``a`` is C-contiguous and its data start a cache line."""
    return a.flags.c_contiguous and a.ctypes.data % LINE == 0


def copy(a: Any, dtype: Any = None) -> np.ndarray:
    """A new C-contiguous array of ``dtype`` (default: ``a``'s) with the values of ``a``, starting a cache line."""
    a = np.asarray(a)
    out = empty(a.shape, a.dtype if dtype is None else dtype)
    out[...] = a
    return out


def aligned(a: Any, dtype: Any = None) -> np.ndarray:
    """``a`` as a C-contiguous array of ``dtype`` (default: its own) starting a cache line; ``a`` itself when it
    already is one, else one :func:`copy`."""
    a = np.asarray(a)
    if (dtype is None or a.dtype == np.dtype(dtype)) and is_aligned(a):
        return a
    return copy(a, dtype)


def normal(gen: np.random.Generator, std: float, shape: tuple[int, int], dtype: Any, piece: int = 1 << 13
           ) -> np.ndarray:
    """``gen.normal(0, std, size=shape).astype(dtype)`` into an aligned array, drawn ``piece`` values at a time (the
    same values and the same state of ``gen`` afterwards: numpy's normal stream does not depend on how it is cut)
    without the whole float64 draw in memory (a piece: 64 KiB of float64; at 2^16 values its 512 KiB were 0.3x of
    MovieLens-100K's data and SGD factors)."""
    out = empty(shape, dtype)
    flat = out.reshape(-1)
    for lo in range(0, flat.size, piece):
        hi = min(lo + piece, flat.size)
        flat[lo:hi] = gen.normal(0.0, std, size=hi - lo)
    return out


def concatenate(parts: list[np.ndarray]) -> np.ndarray:
    """``np.concatenate(parts)`` (along the first axis) into an aligned array."""
    first = parts[0]
    out = empty((sum(len(p) for p in parts), *first.shape[1:]), np.result_type(*parts))
    return np.concatenate(parts, out=out)
