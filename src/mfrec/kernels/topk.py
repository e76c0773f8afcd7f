"""Exact top-k selection over score blocks, with per-row exclusions and an allow-mask.

Two layers, plain arrays only (no ids, no pandas):

* :func:`select_topk` — compiled kernel, rows in parallel. Each row keeps a bounded min-heap of the
  ``k`` best candidates *inside its own output row* (nothing is allocated per row), so the cost is
  ``O(n log k)`` per row and never a full sort.
* :func:`topk_dot` — the driver for factor models: scores ``U @ V.T`` one block of users at a time with a
  single BLAS GEMM (``np.dot`` into a preallocated float32 buffer), then runs :func:`select_topk` on the
  block. Memory is bounded by the block, never ``(n_users, n_items)``.
* :func:`topk_scores` — the same selection for an already computed dense score block.

Ordering contract (deterministic, identical to a stable numpy reference)::

    candidate a ranks before b  <=>  score_a > score_b  or  (score_a == score_b and index_a < index_b)

Scores are compared at float32 precision (the dtype of the returned scores). NaN scores are ranked as ``-inf`` (they stay candidates, ranked last). An item is a candidate of row ``r``
when ``allowed[item]`` is true (or no mask is given) and ``item`` is not among the stored column indices of
row ``r`` of the exclusion CSR (values are ignored: an explicit stored zero still excludes). Rows with fewer
than ``k`` candidates return fewer results: the remaining slots hold item ``-1`` and score ``-inf`` and
``counts[r]`` says how many are real.
"""

from __future__ import annotations

import numpy as np

from mfrec.kernels import _args, _native

__all__ = ["select_topk", "topk_scores", "topk_dot", "DEFAULT_BLOCK_BYTES"]

#: Size of the float32 score buffer used per block of users by :func:`topk_dot` (64 MiB).
DEFAULT_BLOCK_BYTES = 64 * 1024 * 1024


#: fewer rows than this are scanned on the calling thread alone: for one user per HTTP request waking the thread
#: pool costs more than the scan itself (measured with numba's pool: 4.5 ms vs 0.5 ms for 1 x 50k, busy 2-core box)
SERIAL_ROWS = 4


def _select(scores, row_offset, excl_indptr, excl_indices, allowed, use_allowed, k, out_items, out_scores, out_counts):
    """Top-k of every row of ``scores`` into ``out_*[row_offset + r]`` (see :func:`select_topk`), compiled.

    ``excl_indptr`` / ``excl_indices`` are indexed by the *global* row ``row_offset + r`` and must have sorted
    column indices within each row (duplicates are harmless). The kernel keeps a bounded min-heap of the ``k``
    best candidates inside each output row (nothing allocated per row), ``O(n log k)`` per row.
    """
    _native.select_rows(scores, int(row_offset), excl_indptr, excl_indices, allowed, bool(use_allowed), int(k),
                        _args.out(out_items, np.int32, "items"), _args.out(out_scores, np.float32, "scores"),
                        _args.out(out_counts, np.int32, "counts"))


def _prepare_exclusions(n_rows: int, excl_indptr, excl_indices) -> tuple[np.ndarray, np.ndarray]:
    """Validated int64 indptr / int32 indices with sorted rows (empty pattern when both are None)."""
    if excl_indptr is None:
        return np.zeros(n_rows + 1, dtype=np.int64), np.zeros(0, dtype=np.int32)
    indptr = np.ascontiguousarray(excl_indptr, dtype=np.int64)
    indices = np.ascontiguousarray(excl_indices, dtype=np.int32)
    if indptr.shape != (n_rows + 1,):
        raise ValueError(f"exclusion indptr has shape {indptr.shape}, expected ({n_rows + 1},)")
    if indptr[0] != 0 or indptr[-1] > len(indices) or np.any(np.diff(indptr) < 0):
        raise ValueError("exclusion indptr is not a valid CSR row pointer")
    indices = indices[: indptr[-1]]
    if len(indices) and indices.min() < 0:
        raise ValueError("exclusion indices must be >= 0")
    # rows must be sorted for the kernel's merge walk; a decrease is only allowed where a new row starts
    if len(indices) > 1:
        decreases = np.flatnonzero(np.diff(indices) < 0) + 1  # positions p with indices[p] < indices[p-1]
        if len(decreases) and not np.isin(decreases, indptr).all():
            import scipy.sparse as sp

            m = sp.csr_matrix(
                (np.ones(len(indices), dtype=np.int8), indices, indptr), shape=(n_rows, int(indices.max()) + 1)
            )
            m.has_sorted_indices = False
            m.sort_indices()
            indptr = m.indptr.astype(np.int64)
            indices = m.indices.astype(np.int32)
    return indptr, indices


def _prepare_allowed(n_cols: int, allowed) -> tuple[np.ndarray, bool]:
    if allowed is None:
        return np.ones(1, dtype=np.bool_), False
    mask = np.ascontiguousarray(allowed, dtype=np.bool_)
    if mask.shape != (n_cols,):
        raise ValueError(f"allowed mask has shape {mask.shape}, expected ({n_cols},)")
    return mask, True


def select_topk(scores, k, excl_indptr=None, excl_indices=None, allowed=None, *, out=None, row_offset=0):
    """Top-k of each row of a dense score block, with exclusions and an allow-mask.

    Parameters
    ----------
    scores : numpy.ndarray, shape (b, n)
        One row of scores per query; compared at float32 precision (other dtypes are cast once).
    k : int
        Number of results per row, ``k >= 1``.
    excl_indptr, excl_indices : numpy.ndarray, optional
        CSR pattern of shape ``(b_total, n)``: ``excl_indices[excl_indptr[g]:excl_indptr[g + 1]]`` are the
        columns excluded from global row ``g = row_offset + r``. Rows need not be sorted (they are sorted
        here when they are not).
    allowed : numpy.ndarray of bool, shape (n,), optional
        Only columns with ``allowed[j]`` true are candidates.
    out : tuple (items, scores, counts), optional
        Preallocated outputs of shapes ``(b_total, k)`` int32, ``(b_total, k)`` float32 and ``(b_total,)``
        int32 to fill at rows ``row_offset:row_offset + b``.
    row_offset : int
        First global row of this block (used with ``out`` and the exclusion pattern).

    Returns
    -------
    items : numpy.ndarray, shape (b_total, k), int32
        Column indices, best first; ``-1`` past ``counts[r]``.
    top_scores : numpy.ndarray, shape (b_total, k), float32
        Their scores; ``-inf`` past ``counts[r]``.
    counts : numpy.ndarray, shape (b_total,), int32
        Number of real results per row, ``min(k, candidates)``.
    """
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D, got shape {scores.shape}")
    # selection runs at float32 precision (the output dtype): scores equal in float32 tie -> lower index
    scores = np.ascontiguousarray(scores, dtype=np.float32)
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    b, n = scores.shape
    if out is None:
        total = b + row_offset
        out = (np.empty((total, k), np.int32), np.empty((total, k), np.float32), np.zeros(total, np.int32))
    items, top, counts = out
    total = items.shape[0]
    indptr, indices = _prepare_exclusions(total, excl_indptr, excl_indices)
    mask, use_mask = _prepare_allowed(n, allowed)
    if b:
        _select(scores, np.int64(row_offset), indptr, indices, mask, use_mask, np.int64(k), items, top, counts)
    return items, top, counts


def topk_scores(scores, k, excl_indptr=None, excl_indices=None, allowed=None):
    """Top-k of a dense score block; alias of :func:`select_topk` without the block plumbing."""
    return select_topk(scores, k, excl_indptr, excl_indices, allowed)


def topk_dot(user_vectors, item_vectors, k, excl_indptr=None, excl_indices=None, allowed=None, *,
             block_bytes: int = DEFAULT_BLOCK_BYTES):
    """Exact top-k of ``scores = user_vectors @ item_vectors.T`` without materializing all scores.

    Users are processed in blocks of ``B = max(1, block_bytes // (4 n))`` rows: for each block one GEMM
    ``S = U[block] @ V.T`` is written into a reused float32 buffer of shape ``(B, n)`` (``np.dot(..., out=)``),
    then :func:`select_topk` picks the ``k`` best candidates of every row in parallel.

    Parameters
    ----------
    user_vectors : numpy.ndarray, shape (b, d)
        Query vectors (cast to float32).
    item_vectors : numpy.ndarray, shape (n, d)
        Candidate vectors (cast to float32 once).
    k : int
        Results per query, ``k >= 1``; the outputs have ``min(k, n)`` columns.
    excl_indptr, excl_indices : numpy.ndarray, optional
        CSR pattern ``(b, n)`` of excluded candidates per query.
    allowed : numpy.ndarray of bool, shape (n,), optional
        Allow-mask over candidates.
    block_bytes : int
        Size budget of the score buffer.

    Returns
    -------
    items, scores, counts
        As in :func:`select_topk`: int32 ``(b, k')``, float32 ``(b, k')``, int32 ``(b,)`` with
        ``k' = min(k, n)``.
    """
    U = np.asarray(user_vectors)
    V = np.asarray(item_vectors)
    if U.ndim != 2 or V.ndim != 2 or U.shape[1] != V.shape[1]:
        raise ValueError(f"user vectors {U.shape} and item vectors {V.shape} do not align")
    U = np.ascontiguousarray(U, dtype=np.float32)
    V = np.ascontiguousarray(V, dtype=np.float32)
    b, n = U.shape[0], V.shape[0]
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    kk = max(1, min(k, n))
    items = np.empty((b, kk), np.int32)
    top = np.empty((b, kk), np.float32)
    counts = np.zeros(b, np.int32)
    if b == 0 or n == 0:
        items[:] = -1
        top[:] = -np.inf
        return items, top, counts
    indptr, indices = _prepare_exclusions(b, excl_indptr, excl_indices)
    mask, use_mask = _prepare_allowed(n, allowed)
    block = int(max(1, min(b, block_bytes // (4 * n))))
    buf = np.empty((block, n), dtype=np.float32)
    Vt = V.T  # F-ordered view: BLAS handles the transpose, no copy
    for start in range(0, b, block):
        stop = min(b, start + block)
        S = buf[: stop - start]
        np.dot(U[start:stop], Vt, out=S)  # S[r, j] = u_r . v_j  (one GEMM per block)
        _select(S, np.int64(start), indptr, indices, mask, use_mask, np.int64(kk), items, top, counts)
    return items, top, counts
