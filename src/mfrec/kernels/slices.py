"""A CSR's columns transposed a slice at a time: the item side of an ALS fit without a whole transposed copy.

An ALS item half-step solves each item against the users that rated it, so it reads the interactions item by
item: the transpose of the user-major CSR the fit is given. A whole transposed copy costs 4 bytes per entry for
the pattern (and 4 or 8 more per per-entry array: ratings, confidences, preferences) for the whole fit: 0.27x of
data + factors on the implicit benchmark at d = 64, 0.5x for ExplicitALS's ratings. :class:`ColumnSlices` holds
only the slice being solved: columns ``[a, b)`` holding about a fraction of the entries, transposed by
:func:`transpose_columns`, which walks each row from where the previous slice left it.

Each entry is visited once per pass over all slices, plus one look per row per slice (the column counts per row
range are taken once): about the work of a whole transpose, repeated each iteration instead of once per fit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from mfrec.kernels import _args, _native
from mfrec.kernels.threads import get_num_threads

__all__ = ["ColumnSlices", "SliceBuffers", "column_counts", "slice_bounds", "transpose", "transpose_columns"]

def _part_counts(indptr, indices, n_cols: int, n_parts: int) -> np.ndarray:
    """Entries per column in each of ``n_parts`` row ranges (rows ``m t / n_parts`` on): int32 (n_parts, n_cols),
    counted in compiled code with no per-entry temporary (``np.bincount`` holds its input as int64: 32 MB for 4M
    int32 indices, ExplicitALS's peak on that matrix)."""
    if len(indices) and (int(indices.min()) < 0 or int(indices.max()) >= int(n_cols)):
        raise ValueError(f"column indices must lie in [0, {int(n_cols)})")
    out = np.empty((int(n_parts), int(n_cols)), dtype=np.int32)
    _native.count_columns(indptr, indices, out)
    return out


def column_counts(indptr, indices, n_cols: int) -> np.ndarray:
    """Entries per column of a CSR (int64 (n_cols,)), with no per-entry temporary (:func:`_part_counts`)."""
    return _part_counts(_args.pointer(indptr), _args.index(indices), n_cols, 1)[0].astype(np.int64)


def transpose(indptr, indices, n_cols: int, values: Sequence[np.ndarray] = ()
              ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """The whole transpose of a CSR with sorted column indices, ``(indptr_T, indices_T, values_T)`` as
    :func:`transpose_columns` gives them for columns ``[0, n_cols)``, in new arrays: the item side of a fit built
    at once (the kernel threads fill their row ranges in parallel; no int64 permutation or per-entry temporary)."""
    indptr, indices = _args.pointer(indptr), _args.index(indices)
    m = len(indptr) - 1
    n_parts = max(1, min(get_num_threads(), max(m, 1)))
    return transpose_columns(indptr, indices, 0, int(n_cols), np.zeros(m, dtype=np.int32), len(indices), values,
                             n_parts=n_parts, part_counts=_part_counts(indptr, indices, n_cols, n_parts))


def slice_bounds(col_counts: np.ndarray, n_slices: int, max_cols: int | None = None) -> np.ndarray:
    """Cut columns ``0..n`` into about ``n_slices`` consecutive slices of balanced entries.

    ``col_counts``: entries per column (n,). Returns int64 boundaries ``[0, b_1, ..., n]``, increasing (no slice
    without columns): slice k ends at the first column where the cumulative entries reach ``k / n_slices`` of the
    total (a column longer than a slice makes its slice longer, and fewer slices), and a slice wider than
    ``max_cols`` columns is cut into narrower ones.
    """
    counts = np.asarray(col_counts, dtype=np.int64)
    n = len(counts)
    if n == 0:
        return np.zeros(1, dtype=np.int64)
    cum = np.cumsum(counts)
    total = int(cum[-1])
    cuts = np.searchsorted(cum, [total * k / max(1, int(n_slices)) for k in range(1, max(1, int(n_slices)))],
                           side="left") + 1
    bounds = np.unique(np.concatenate([[0], np.clip(cuts, 1, n), [n]]))
    if max_cols is not None:
        max_cols = max(1, int(max_cols))
        bounds = np.unique(np.concatenate([np.arange(lo, hi, max_cols) for lo, hi in zip(bounds[:-1], bounds[1:])]
                                          + [[n]]))
    return bounds.astype(np.int64)


def transpose_columns(indptr, indices, a: int, b: int, taken: np.ndarray, nnz: int,
                      values: Sequence[np.ndarray] = (), n_parts: int | None = None,
                      part_counts: np.ndarray | None = None, buffers: SliceBuffers | None = None
                      ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Columns ``[a, b)`` of a CSR with sorted column indices, transposed: ``(indptr_T, indices_T, values_T)``.

    ``indptr_T``: int64 (b - a + 1,) from 0; ``indices_T``: int32 (nnz,), the row numbers of each column,
    increasing; ``values_T``: each array of ``values`` (at most two, one dtype: float32 or float64, one value per
    stored entry) in the same order. ``taken`` (int32 (m,), written): how many entries of row ``u`` lie at
    columns below ``a``, which the call moves to those below ``b``; start it at zeros and take the slices in
    increasing column order. ``nnz``: the slice's entries (from the column counts); entries that disagree (``taken``
    elsewhere, columns not increasing in a row) are a ``ValueError``: before anything is written when the slice
    is counted here, with ``taken`` spoilt when ``part_counts`` stood in for the count (no write ever lands
    outside the new arrays). ``n_parts`` row ranges are counted and filled in parallel (default:
    the kernel threads); the result does not depend on it. ``part_counts`` (int32 (n_parts, n_cols), rows cut as
    ``m t / n_parts``): each column's entries per part, taken once (:class:`ColumnSlices`) instead of counted.
    ``buffers``: the results are views of these (large enough; a later call overwrites them) instead of new
    arrays.
    """
    indptr, indices = _args.pointer(indptr), _args.index(indices)
    if len(values) > 2:
        raise ValueError("transpose_columns carries at most two per-entry arrays")
    dtypes = {np.asarray(v).dtype for v in values}
    if len(dtypes) > 1 or (dtypes and not dtypes <= {np.dtype(np.float32), np.dtype(np.float64)}):
        raise TypeError("the per-entry arrays must share one dtype, float32 or float64; got "
                        f"{sorted(map(str, dtypes))}")
    dt = np.asarray(values[0]).dtype if values else np.dtype(np.float32)
    vals = [_args.inp(v, dt) for v in values]
    m = len(indptr) - 1
    taken = _args.out(taken, np.int32, "taken")
    if taken.shape != (m,):
        raise ValueError(f"taken must hold one count per row ({m}), got {taken.shape}")
    if nnz < 0:
        raise ValueError(f"a slice holds no fewer than 0 entries, got {nnz}")
    n_parts = max(1, min(int(n_parts or get_num_threads()), max(m, 1)))
    if part_counts is None:
        part_counts = np.zeros(0, dtype=np.int32)
    elif part_counts.dtype != np.int32 or part_counts.ndim != 2 or part_counts.shape[0] != n_parts \
            or part_counts.shape[1] < int(b) or not part_counts.flags.c_contiguous:
        raise ValueError(f"part_counts must be C-contiguous int32 ({n_parts}, >= {b}), got {part_counts.dtype} "
                         f"{part_counts.shape}")
    w, nnz = int(b) - int(a), int(nnz)
    if buffers is None:
        buffers = SliceBuffers(nnz, w, n_parts, len(vals), dt)
    elif not buffers.fits(nnz, w, n_parts, len(vals), dt):
        raise ValueError(f"buffers too small for columns {a}:{b} ({nnz} entries)")
    counts = buffers.counts[:2 * n_parts * max(w, 1)]
    out_indptr, out_indices = buffers.indptr[:w + 1], buffers.indices[:nnz]
    outs = [v[:nnz] for v in buffers.values[:len(vals)]]
    none = np.zeros(0, dtype=dt)
    ok = _native.transpose_columns(indptr, indices, int(a), int(b), taken, vals[0] if vals else none,
                                   vals[1] if len(vals) > 1 else none, out_indptr, out_indices,
                                   outs[0] if outs else none, outs[1] if len(outs) > 1 else none, counts, part_counts,
                                   part_counts.shape[-1] if part_counts.ndim == 2 else 0, n_parts)
    if not ok:  # (found before any write when the slice is counted here, else the outputs are dropped)
        raise ValueError(f"columns {a}:{b} do not hold {nnz} entries past those taken (unsorted column indices, "
                         "or slices not taken in increasing order?)")
    return out_indptr, out_indices, outs


class SliceBuffers:
    """Room for the arrays of a transposed slice of up to ``nnz`` entries and ``width`` columns with
    ``n_values`` per-entry arrays of ``dtype``: reused slice after slice, pass after pass, so a sliced fit
    allocates them once (new arrays for every slice left freed blocks in the heap that the allocator did not
    give back: ExplicitALS's resident peak grew by 25 MB on 4M ratings)."""

    def __init__(self, nnz: int, width: int, n_parts: int, n_values: int, dtype) -> None:
        self.dtype, self.n_parts = np.dtype(dtype), int(n_parts)
        self.indptr = np.empty(int(width) + 1, dtype=np.int64)
        self.indices = np.empty(int(nnz), dtype=np.int32)
        self.values = [np.empty(int(nnz), dtype=self.dtype) for _ in range(int(n_values))]
        self.counts = np.empty(2 * self.n_parts * max(int(width), 1), dtype=np.int64)

    def fits(self, nnz: int, width: int, n_parts: int, n_values: int, dtype) -> bool:
        return (nnz <= len(self.indices) and width + 1 <= len(self.indptr) and n_values <= len(self.values)
                and (n_values == 0 or np.dtype(dtype) == self.dtype)
                and 2 * n_parts * max(width, 1) <= len(self.counts))


class ColumnSlices:
    """The columns of a CSR (m x n, sorted column indices) as about ``n_slices`` transposed slices of balanced
    entries, one held at a time.

    ``passes(values)`` yields ``(a, b, indptr_T, indices_T, values_T)`` for every slice in column order (see
    :func:`transpose_columns`), in buffers that the slices share; each pass over the slices starts its count of
    the entries taken per row (int32) afresh. Taken once, here: each column's entries in each of ``n_parts`` row
    ranges (int32 (n_parts, n): the count pass a slice would otherwise make), which also size the slices. A slice
    spans at most ``max(1024, nnz / n_slices / 8)`` columns, so its per-column scratch stays small beside its
    entries.

    ``bounds``: int64 slice boundaries ``[0, ..., n]``.
    """

    def __init__(self, indptr, indices, n_cols: int, n_slices: int, n_parts: int | None = None) -> None:
        self.indptr, self.indices = _args.pointer(indptr), _args.index(indices)
        m = len(self.indptr) - 1
        self.n_parts = max(1, min(int(n_parts or get_num_threads()), max(m, 1)))
        self.part_counts = _part_counts(self.indptr, self.indices, n_cols, self.n_parts)
        counts = self.part_counts.sum(axis=0, dtype=np.int64)
        max_cols = max(1024, len(self.indices) // max(1, int(n_slices)) // 8)
        self.bounds = slice_bounds(counts, n_slices, max_cols)
        self.sizes = np.add.reduceat(counts, self.bounds[:-1]) if len(counts) else np.zeros(1, dtype=np.int64)
        self._buffers: SliceBuffers | None = None
        self._taken: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.bounds) - 1

    def entries(self, k: int) -> int:
        """Entries in slice ``k``."""
        return int(self.sizes[k])

    def passes(self, values: Sequence[np.ndarray] = ()
               ) -> Iterator[tuple[int, int, np.ndarray, np.ndarray, list[np.ndarray]]]:
        """One pass over all slices in column order. A slice's arrays are views of buffers kept for the next
        slices and passes (one slice's room, taken at the first pass): the next slice overwrites them."""
        dt = np.asarray(values[0]).dtype if len(values) else np.dtype(np.float32)
        need = (int(self.sizes.max(initial=0)), int(np.diff(self.bounds).max(initial=0)), self.n_parts, len(values),
                dt)
        if self._buffers is None or not self._buffers.fits(*need):
            self._buffers = None  # (freed before the new room is taken)
            self._buffers = SliceBuffers(*need)
        if self._taken is None:
            self._taken = np.empty(len(self.indptr) - 1, dtype=np.int32)
        self._taken[:] = 0
        for k in range(len(self)):
            a, b = int(self.bounds[k]), int(self.bounds[k + 1])
            yield (a, b, *transpose_columns(self.indptr, self.indices, a, b, self._taken, self.entries(k), values,
                                            n_parts=self.n_parts, part_counts=self.part_counts,
                                            buffers=self._buffers))
