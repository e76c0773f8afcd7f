"""Argument preparation for the compiled kernels: read-only inputs are converted once, outputs are checked.

nanobind would silently convert an output array of the wrong dtype or layout into a temporary copy, and the
kernel's writes would be lost; :func:`out` refuses such an array instead. Inputs may be converted (a copy only
when the dtype or layout differs). A per-entry array that is one value broadcast over the entries (a zero-stride
view, as the models pass all-ones preferences) is passed as it is: the kernels read it through its stride.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def inp(a, dtype) -> np.ndarray:
    """A C-contiguous array of ``dtype`` with the values of ``a`` (no copy when it already is one)."""
    return np.ascontiguousarray(a, dtype=dtype)


def index(a) -> np.ndarray:
    """An index array as the kernels take it: int32 (column indices) unless it does not fit."""
    a = np.asarray(a)
    if a.dtype == np.int32 and a.flags.c_contiguous:
        return a
    return np.ascontiguousarray(a, dtype=np.int32)


def pointer(a) -> np.ndarray:
    """A CSR row pointer: int32 or int64 kept as is (C-contiguous), anything else as int64."""
    a = np.asarray(a)
    if a.dtype in (np.int32, np.int64):
        return np.ascontiguousarray(a)
    return np.ascontiguousarray(a, dtype=np.int64)


def positions(a) -> np.ndarray:
    """Entry positions (a visiting order): int32 or int64 kept as they are (int32 halves an order's memory up to
    2^31 entries), anything else as int64."""
    return pointer(a)


def per_entry(a, dtype) -> np.ndarray:
    """A 1-D per-entry array: a zero-stride broadcast of one value stays a view, anything else as :func:`inp`."""
    a = np.asarray(a)
    if a.ndim == 1 and a.dtype == dtype and (a.strides[0] == 0 or a.flags.c_contiguous):
        return a
    return np.ascontiguousarray(a, dtype=dtype)


def ratings(a) -> np.ndarray:
    """Rating values as the kernels take them: float32 kept as it is, anything else as float64 (no precision lost)."""
    a = np.asarray(a)
    return inp(a, np.float32 if a.dtype == np.float32 else np.float64)


def out(a, dtype, name: str) -> np.ndarray:
    """``a`` itself, which the kernel writes into: it must already be C-contiguous of ``dtype``."""
    ok = isinstance(a, np.ndarray) and a.dtype == np.dtype(dtype) and a.flags.c_contiguous and a.flags.writeable
    if not ok:
        if isinstance(a, np.ndarray):
            got = f"{a.dtype} {'C-contiguous' if a.flags.c_contiguous else 'strided'}"
        else:
            got = type(a).__name__
        raise TypeError(f"{name} must be a writeable C-contiguous {np.dtype(dtype)} array, got {got}")
    return a


@dataclass(frozen=True)
class Affine:
    """Per-entry values the kernels read as ``offset + scale * values[e]``, in the dtype of ``values``: the
    confidences ``1 + alpha r`` (or ``r``) of an implicit fit read straight from the stored values ``r``, with no
    array of nnz confidences. Indexing gives those numbers as a new array (for numpy code);
    :meth:`part` keeps a range lazy; :func:`per_entry_affine` hands the three to a kernel.

    A kernel computes ``offset + scale * v`` in the values' dtype with one fused multiply-add, so in float32 a
    confidence can differ by an ulp from :func:`mfrec.data.feedback.entry_confidence`'s, computed in float64.
    """

    values: np.ndarray
    offset: float = 0.0
    scale: float = 1.0

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, key) -> np.ndarray:
        t = self.values.dtype.type
        return t(self.offset) + t(self.scale) * self.values[key]

    @property
    def shape(self) -> tuple[int, ...]:
        return self.values.shape

    @property
    def dtype(self) -> np.dtype:
        return self.values.dtype

    @property
    def strides(self) -> tuple[int, ...]:
        return self.values.strides

    @property
    def nbytes(self) -> int:
        return int(self.values.nbytes)

    def part(self, lo: int, hi: int) -> Affine:
        """Entries ``lo:hi``, still read through ``offset + scale * v`` (a contiguous copy of the values)."""
        return Affine(np.ascontiguousarray(self.values[lo:hi]), self.offset, self.scale)

    def with_values(self, values: np.ndarray) -> Affine:
        """The same map over other stored values (the transposed side's)."""
        return Affine(values, self.offset, self.scale)


def per_entry_affine(a, dtype) -> tuple[np.ndarray, float, float]:
    """``(values, offset, scale)`` of a per-entry input a kernel reads as ``offset + scale * values[e]``: an
    :class:`Affine` as it is, any other array through :func:`per_entry` with ``(0, 1)``."""
    if isinstance(a, Affine):
        return per_entry(a.values, dtype), float(a.offset), float(a.scale)
    return per_entry(a, dtype), 0.0, 1.0

