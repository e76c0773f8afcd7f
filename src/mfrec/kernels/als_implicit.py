"""Implicit-feedback ALS kernels (Hu, Koren & Volinsky 2008; CG after Takacs, Pilaszy & Tikk 2011).

Compiled kernels (:mod:`mfrec.kernels._native`) and numpy drivers on plain arrays: a CSR pattern
``indptr, indices`` (rows are the side being solved), per-entry confidences ``conf`` (c_ui) and preferences
``pref`` (p_ui, usually 1) aligned with ``indices``, the fixed factor matrix ``Y`` (n_cols, d) and the output
``X`` (n_rows, d). They know nothing of ids or pandas; :class:`mfrec.models.implicit.ImplicitALS` validates once and calls them on trusted,
contiguous arrays.

Objective (all pairs; c0 is the confidence of an unobserved pair, p = 0 there; c0 = 1 in Hu et al.)::

    L = sum_{u,i} c_ui (p_ui - x_u . y_i)^2 + lambda (sum_u ||x_u||^2 + sum_i ||y_i||^2)

With Y fixed, each row's exact minimiser is ``x_u = A_u^-1 b_u`` with::

    A_u = sum_i c_ui y_i y_i^T + lambda I = c0 Y^T Y + lambda I + sum_{i in R(u)} (c_ui - c0) y_i y_i^T
    b_u = sum_{i in R(u)} c_ui p_ui y_i

so a half-step costs O(nnz d^2 + n d^3) exactly (Cholesky) or O(steps (nnz d + n d^2)) by conjugate gradient.
``G0 = c0 Y^T Y + lambda I`` is computed once per half-step (one GEMM) and shared by every row.

The loss itself is evaluated without touching the dense matrix::

    L = sum_{(u,i) observed} [c_ui (p_ui - s_ui)^2 - c0 s_ui^2] + c0 <X^T X, Y^T Y>_F + lambda (||X||^2 + ||Y||^2)

(s_ui = x_u . y_i), because sum_{all} s^2 = trace(X^T X Y^T Y): O(nnz d + (m + n) d^2).
"""

from __future__ import annotations

import bisect

import numpy as np

from mfrec.kernels import _args, _native
from mfrec.kernels.dense import rank_tolerance, solve_psd
from mfrec.kernels.threads import get_num_threads, single_threaded_blas

__all__ = [
    "implicit_cholesky_rows",
    "implicit_cg_mixed",
    "implicit_cg_rows",
    "implicit_cg_windowed",
    "window_plan",
    "implicit_observed_loss",
    "implicit_observed_grad",
    "implicit_observed_curvature",
    "gram_base",
    "factor_gram",
    "implicit_loss",
    "half_step",
    "gd_half_step",
    "row_order",
    "transpose_entries",
]

#: rows with more entries than this go to the BLAS path of the exact solver (gathered GEMM); measured here the
#: register-blocked compiled kernel was as fast up to ~16k entries per row, so only very long rows take it
LONG_ROW = 65536
#: CG rows with more entries than this are solved one at a time, shorter ones four at a time in lock-step
#: (four rows' ``Y_u``, 4 x 256 x 512 B at d = 128 float32, 512 KiB, stay in a 1-2 MiB L2 between CG steps)
LOCKSTEP_MAX = 256
#: CG rows whose gathered factors take more than this many bytes (about a quarter of a core's L2) are solved in
#: chunks, windowed (:func:`implicit_cg_windowed`): their factors would not stay in cache between the CG passes
WINDOW_ROW_BYTES = 512 * 1024
#: the fixed factor rows of one window (a window's rows are read from memory once per pass for a whole chunk)
WINDOW_BYTES = 1024 * 1024
#: the per-row vectors of a chunk (x, r, p, A p) take at most this many bytes
WINDOW_CHUNK_BYTES = 1024 * 1024


def _common(indptr, indices, conf, pref, Y):
    """The CSR pattern and per-entry arrays as the compiled kernels take them (dtype of ``Y``): ``(indptr,
    indices, (conf, offset, scale), pref)``; ``conf`` may be an :class:`mfrec.kernels._args.Affine`."""
    dt = Y.dtype
    return (_args.pointer(indptr), _args.index(indices), _args.per_entry_affine(conf, dt),
            _args.per_entry(pref, dt))


# ----------------------------------------------------------------------------------------------- exact solve
def implicit_cholesky_rows(indptr, indices, conf, pref, Y, G0, c0, rows, n_workers, X, failed, row_loss):
    """Exact per-row solve ``x_u = (G0 + sum_i (c_ui - c0) y_i y_i^T)^-1 sum_i c_ui p_ui y_i`` for ``rows``.

    Parameters
    ----------
    indptr : int32/int64 (n_rows + 1,); indices : int32 (nnz,)
        CSR pattern, rows = the side solved here.
    conf, pref : (nnz,) float, same dtype as ``Y``
        c_ui and p_ui per stored entry (either may be one value broadcast with stride 0: binary feedback has one
        confidence for every entry, and the preferences are usually all one).
    Y : (n_cols, d) float32/float64, C-contiguous
        Fixed factors of the other side.
    G0 : (d, d) float64
        ``c0 Y^T Y + lambda I`` (only the upper triangle is read).
    c0 : float
        Confidence of unobserved pairs.
    rows : (r,) int32 (other integer arrays are converted)
        Rows to solve, longest first: each thread takes the next row from a shared atomic counter, so the long
        rows are spread first and the short ones even out the end (dynamic scheduling).
    n_workers : int
        Parallel workers (at most the pool's threads, :func:`mfrec.kernels.threads.get_num_threads`).
    X : (n_rows, d) same dtype as ``Y``
        Output; rows not listed are left untouched.
    failed : (n_rows,) uint8
        Set to 1 where ``A_u`` was not numerically positive definite (``X[u]`` is then left unchanged).
    row_loss : (n_rows,) float64, or (0,) for none
        When given, ``row_loss[u]`` is set to the observed part of row ``u``'s loss at its new ``x_u``,
        ``sum_i [c_ui (p_ui - s_ui)^2 - c0 s_ui^2]``, computed while the row's factors are still in cache: summed,
        it replaces a separate :func:`implicit_observed_loss` pass over the whole matrix after the half-step.

    Notes
    -----
    The Gram update ``sum (c - c0) y y^T`` is accumulated in the dtype of ``Y`` four entries at a time
    (register blocking: one load/store of ``A_jk`` per four rank-1 updates), only the upper triangle. The
    blocked Cholesky factorisation (eight pivots per panel) and the triangular solves run in the dtype of ``Y``
    on per-thread scratch: for float32 factors ``A_u`` already carries the float32 rounding of the Gram
    accumulation, and a backward-stable float32 Cholesky adds an error of the same order. A row whose pivots fall
    to ``d eps max(diag)`` in float32 is refactorised in float64 before it is reported in ``failed``.
    """
    ip, ix, cf, pr = _common(indptr, indices, conf, pref, Y)
    _native.implicit_cholesky_rows(ip, ix, *cf, pr, Y, _args.inp(G0, np.float64), float(c0), _args.inp(rows, np.int32),
                                   int(n_workers), _args.out(X, Y.dtype, "X"), _args.out(failed, np.uint8, "failed"),
                                   _args.out(row_loss, np.float64, "row_loss"))


# ------------------------------------------------------------------------------------- conjugate gradient
def implicit_cg_rows(indptr, indices, conf, pref, Y, G0, c0, steps, rows, n_single, n_workers, X, row_loss):
    """``steps`` conjugate-gradient iterations on ``A_u x_u = b_u`` per row, warm-started from ``X[u]``.

    Parameters
    ----------
    indptr, indices, conf, pref, Y, c0
        As :func:`implicit_cholesky_rows`.
    G0 : (d, d) same dtype as ``Y``
        The full symmetric ``c0 Y^T Y + lambda I``.
    steps : int
        CG iterations per row (Takacs et al. 2011 use 2-4).
    rows : (r,) int32 (other integer arrays are converted)
        Rows to update, longest first (:func:`row_order`).
    n_single : int
        The first ``n_single`` entries of ``rows`` (the long rows) are solved one at a time; the rest in
        *groups of four consecutive entries* (similar lengths) advanced in lock-step, the last group possibly
        shorter. Work item ``g`` is single row ``g`` for ``g < n_single``, else group ``g - n_single``; each
        thread takes the next work item from a shared atomic counter (dynamic scheduling, longest first).
    n_workers : int
        As :func:`implicit_cholesky_rows`.
    X : (n_rows, d) same dtype as ``Y``
        Updated in place; rows not listed are left untouched.
    row_loss : (n_rows,) float64, or (0,) for none
        As :func:`implicit_cholesky_rows`, from one more sweep over the row's ``Y_u`` right after its last CG step.

    Notes
    -----
    Plain CG per row (``r = b - A x``, ``p = r``; ``a = r.r / p.A p``, ``x += a p``, ``r -= a A p``,
    ``p = r + (r'.r' / r.r) p``), with ``A p = G0 p + sum_i (c_ui - c0)(y_i . p) y_i``: O(d^2 + n_u d) per
    step; the first residual's dense term ``G0 x`` is computed in the first pass over the row. In a group of four
    the dense term of all four rows is one register-blocked 4 x d by d x d product (``G0`` read once per four
    rows). Each row keeps its own scalars, so the iterates are exactly those of four independent CGs. Long rows
    are not grouped: the ``Y_u`` of four long rows would not stay in L2 between the CG steps, one row's does. The
    sparse sweep takes eight entries at a time and prefetches the factor rows of the next eight. Divisions are
    guarded per row: a row stops (keeps its current ``x``) once its residual is ~0 or NaN or ``p^T A p`` is not
    positive (implicit issues #19, #106), while the others of its group go on.
    """
    ip, ix, cf, pr = _common(indptr, indices, conf, pref, Y)
    _native.implicit_cg_rows(ip, ix, *cf, pr, Y, _args.inp(G0, Y.dtype), float(c0), int(steps),
                             _args.inp(rows, np.int32), int(n_single), int(n_workers), _args.out(X, Y.dtype, "X"),
                             _args.out(row_loss, np.float64, "row_loss"))


def implicit_cg_windowed(indptr, indices, conf, pref, Y, G0, c0, steps, rows, chunk_start, window, n_workers, X,
                         row_loss):
    """:func:`implicit_cg_rows` for long rows, in chunks advanced in lock-step over windows of the fixed side.

    Parameters
    ----------
    indptr, indices, conf, pref, Y, G0, c0, steps, X, row_loss
        As :func:`implicit_cg_rows`. ``indices`` should be sorted within each row for the windows to pay off;
        an unsorted row is still solved exactly (each entry is taken once, in the first window whose end
        passes it and every entry before it).
    rows : (r,) int32 (other integer arrays are converted)
        The rows to update, chunk after chunk: chunk ``c`` is ``rows[chunk_start[c]:chunk_start[c + 1]]``.
    chunk_start : (n_chunks + 1,) int64
        Chunk boundaries in ``rows`` (:func:`window_plan`); each chunk is one work item of one thread.
    window : int
        Rows of ``Y`` per window.

    Notes
    -----
    Each CG pass of a chunk (the first residual, each step's ``A p``, the loss) walks the windows
    ``[0, w), [w, 2w), ...`` of ``Y``'s rows; in each, every live row of the chunk takes its entries that fall
    inside (:func:`gram_apply` on that stretch of its entries) before the next window starts. A row too long for
    its ``Y_u`` to stay in L2 between passes streams it from memory on each pass when solved alone; windowed, a
    window's ``w d`` factor values are brought in once per pass for all the chunk's rows that touch them, and the
    chunk's ``x, r, p, A p`` stay in L2. Per row the terms are added in increasing column order, as alone, so the
    iterates are :func:`implicit_cg_rows`' up to where the eight-entry groups start; they do not depend on the
    chunks or the thread count.
    """
    ip, ix, cf, pr = _common(indptr, indices, conf, pref, Y)
    _native.implicit_cg_windowed(ip, ix, *cf, pr, Y, _args.inp(G0, Y.dtype), float(c0), int(steps),
                                 _args.inp(rows, np.int32), _args.inp(chunk_start, np.int64), int(window),
                                 int(n_workers), _args.out(X, Y.dtype, "X"), _args.out(row_loss, np.float64, "row_loss"))


def implicit_cg_mixed(indptr, indices, conf, pref, Y, G0, c0, steps, long_rows, chunk_start, window, short_rows,
                      n_single, n_workers, X, row_loss):
    """:func:`implicit_cg_windowed` on ``long_rows`` in the chunks ``chunk_start`` and :func:`implicit_cg_rows` on
    ``short_rows`` (its ``n_single`` first rows one at a time) as one parallel job.

    The work items, the chunks first and then the short rows' items, come from one atomic counter: a thread that
    finished a chunk takes short rows, so the long rows need no more chunks than their share of the work
    (``window_plan(..., shared=True)``), and fewer chunks read each window of ``Y`` fewer times per pass. Each row
    gets exactly the iterates of the kernel it would have had alone. Either part may be empty (no rows, or
    ``chunk_start == [0]``).
    """
    ip, ix, cf, pr = _common(indptr, indices, conf, pref, Y)
    _native.implicit_cg_mixed(ip, ix, *cf, pr, Y, _args.inp(G0, Y.dtype), float(c0), int(steps),
                              _args.inp(long_rows, np.int32), _args.inp(chunk_start, np.int64), int(window),
                              _args.inp(short_rows, np.int32), int(n_single), int(n_workers),
                              _args.out(X, Y.dtype, "X"), _args.out(row_loss, np.float64, "row_loss"))


def window_plan(order: np.ndarray, lengths_sorted: np.ndarray, d: int, itemsize: int, n_workers: int,
                row_bytes: int = WINDOW_ROW_BYTES, chunk_bytes: int | None = None, shared: bool = False,
                total: int | None = None):
    """The rows a CG half-step windows (:func:`implicit_cg_windowed`) and their chunks, or None when none is long.

    ``order``: rows longest first, ``lengths_sorted`` their lengths. The rows whose gathered factors exceed
    ``row_bytes`` are dealt in snake order (longest rows spread first) to chunks that carry similar numbers of
    entries: as many as the cache budget needs (``chunk_bytes``, default :data:`WINDOW_CHUNK_BYTES`, bounds each
    chunk's four per-row vectors) and at least ``n_workers``, or with ``shared`` (the chunks share the threads
    with the short rows, :func:`implicit_cg_mixed`) at least the long rows' share of the entries times
    ``n_workers``, rounded up: each chunk reads every window of ``Y`` once per pass, so fewer chunks read less.
    Returns ``(n_long, rows, chunk_start)``: ``order[:n_long]`` regrouped chunk by chunk and the chunk boundaries.

    ``lengths_sorted`` may hold only the first lengths (:func:`longest_lengths`), as long as it holds every row
    whose factors exceed ``row_bytes``; then ``total``, the entries of all rows of ``order``, is needed with
    ``shared`` (by default the sum of ``lengths_sorted``).
    """
    n_long = int(np.searchsorted(-lengths_sorted, -(row_bytes // (d * itemsize)), side="left"))
    if n_long == 0:
        return None
    budget = WINDOW_CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    least = int(n_workers)
    if shared:
        total = int(np.sum(lengths_sorted)) if total is None else int(total)
        least = max(1, -(-int(n_workers) * int(np.sum(lengths_sorted[:n_long])) // max(total, 1)))
    n_chunks = min(n_long, max(least, -(-n_long * 4 * d * itemsize // budget)))
    lap, pos = np.divmod(np.arange(n_long), n_chunks)
    chunk = np.where(lap % 2 == 0, pos, n_chunks - 1 - pos)
    by_chunk = np.argsort(chunk, kind="stable")
    chunk_start = np.zeros(n_chunks + 1, dtype=np.int64)
    np.cumsum(np.bincount(chunk, minlength=n_chunks), out=chunk_start[1:])
    return n_long, np.ascontiguousarray(order[:n_long][by_chunk], dtype=np.int32), chunk_start


# ---------------------------------------------------------------------------------- loss and its gradient
def implicit_observed_loss(indptr, indices, conf, pref, X, Y, c0) -> float:
    """``sum_{observed (u, i)} [c_ui (p_ui - s_ui)^2 - c0 s_ui^2]`` with ``s_ui = x_u . y_i`` (float64).

    Added to ``c0 <X^T X, Y^T Y>`` and the regularisation it gives the full loss (see module docstring). Rows are
    summed in fixed chunks, so the value does not depend on the number of threads.
    """
    ip, ix, cf, pr = _common(indptr, indices, conf, pref, Y)
    return float(_native.implicit_observed_loss(ip, ix, *cf, pr, _args.inp(X, Y.dtype), Y, float(c0)))


def implicit_observed_grad(indptr, indices, conf, pref, X, Y, c0, out) -> None:
    """``out[u] = sum_{i in R(u)} [(c_ui - c0) s_ui - c_ui p_ui] y_i``, the sparse half of ``(A_u x_u - b_u)``.

    The full gradient of ``L`` in ``x_u`` is ``2 (G0 x_u + out[u])`` with ``G0 = c0 Y^T Y + lambda I``.
    """
    ip, ix, cf, pr = _common(indptr, indices, conf, pref, Y)
    _native.implicit_observed_grad(ip, ix, *cf, pr, _args.inp(X, Y.dtype), Y, float(c0),
                                   _args.out(out, Y.dtype, "out"))


def implicit_observed_curvature(indptr, indices, conf, G, Y, c0) -> float:
    """``sum_u sum_{i in R(u)} (c_ui - c0) (y_i . g_u)^2`` (float64): the sparse part of ``sum_u g_u^T A_u g_u``."""
    ip, ix = _args.pointer(indptr), _args.index(indices)
    cf = _args.per_entry_affine(conf, Y.dtype)
    return float(_native.implicit_observed_curvature(ip, ix, *cf, _args.inp(G, Y.dtype), Y, float(c0)))


# ------------------------------------------------------------------------------------- python-level drivers
def factor_gram(Y: np.ndarray) -> np.ndarray:
    """``Y^T Y`` as float64 (d, d): one product in the factor dtype (numpy runs ``A.T @ A`` as a SYRK), promoted."""
    return (Y.T @ Y).astype(np.float64)


def gram_base(Y: np.ndarray, c0: float, reg: float, YtY: np.ndarray | None = None) -> np.ndarray:
    """``G0 = c0 Y^T Y + lambda I`` as float64 (d, d); ``YtY`` (:func:`factor_gram`) when already computed."""
    G = factor_gram(Y) if YtY is None else np.array(YtY, dtype=np.float64, copy=True)
    G *= c0
    G[np.diag_indices_from(G)] += reg
    return G


def implicit_loss(indptr, indices, conf, pref, X, Y, c0: float, reg: float, observed: float | None = None,
                  XtX: np.ndarray | None = None, YtY: np.ndarray | None = None) -> float:
    """The full weighted loss ``L`` over all pairs in O(nnz d + (m + n) d^2) (see module docstring).

    ``observed``: the observed part (:func:`implicit_observed_loss`) if already known, e.g. the sum of the
    ``row_loss`` a :func:`half_step` on ``X`` filled in; then only the O((m + n) d^2) dense terms are computed.
    ``XtX``, ``YtY``: :func:`factor_gram` of ``X`` and ``Y`` if already computed (the fit reuses them for the
    next half-steps' ``G0``), leaving O(d^2) work.
    """
    if observed is None:
        observed = implicit_observed_loss(indptr, indices, conf, pref, X, Y, c0)
    obs = float(observed)
    XtX = factor_gram(X) if XtX is None else XtX
    YtY = factor_gram(Y) if YtY is None else YtY
    pattern_all = float(c0 * np.sum(XtX * YtY))
    norms = float(reg * (np.trace(XtX) + np.trace(YtY)))
    return float(obs + pattern_all + norms)


def row_order(indptr: np.ndarray) -> np.ndarray:
    """Row indices sorted by decreasing length (int32, the kernels' row lists): long rows first, for load balance."""
    return np.argsort(-np.diff(indptr), kind="stable").astype(np.int32)


def longest_lengths(indptr: np.ndarray, order: np.ndarray, above: int) -> np.ndarray:
    """The lengths (int64) of the first rows of ``order`` (rows longest first, :func:`row_order`) that hold more
    than ``above`` entries, in that order.

    A binary search over ``order`` finds where they end, and only their lengths are read: no array over all
    rows (the half-steps' length arrays were a transient of 8-24 bytes per row at a fit's peak).
    """
    n = bisect.bisect_left(range(len(order)), True,
                           key=lambda k: int(indptr[order[k] + 1]) - int(indptr[order[k]]) <= above)
    head = order[:n]
    return np.asarray(indptr[head + 1], dtype=np.int64) - np.asarray(indptr[head], dtype=np.int64)


def transpose_entries(indptr, indices, n_cols: int):
    """CSR of the transpose: ``(indptr_T, indices_T, perm)`` with ``perm`` mapping new entry -> old entry.

    Per-entry arrays follow with ``conf_T = conf[perm]``. Column indices of the result are sorted.
    """
    nnz = len(indices)
    rows = np.repeat(np.arange(len(indptr) - 1, dtype=np.int64), np.diff(indptr))
    perm = np.argsort(indices, kind="stable")  # stable: rows stay ascending within each column
    counts = np.bincount(indices, minlength=n_cols)
    indptr_t = np.zeros(n_cols + 1, dtype=np.int64 if nnz > np.iinfo(np.int32).max else np.int32)
    np.cumsum(counts, out=indptr_t[1:])
    return indptr_t, rows[perm].astype(np.int32), perm


#: entries per gathered block of a long row: two (block, d) scratch arrays (1 MiB each at d = 128 float32)
#: instead of two copies of the whole row's factors (134k x 128 x 4 B = 69 MB each on the issue's matrix). At
#: 16384 entries the blocks were 0.06x of data + factors in the Cholesky fit's peak on that matrix (1.39x -> 1.33x
#: at d = 64, 1.31x -> 1.24x at d = 128 with 4096); 4096 -> 2048 took another 0.01x (the long rows hold 3 % of
#: the entries there, and GEMMs over 2048 rows run about as fast).
LONG_ROW_BLOCK = 2048


def _solve_long_rows(indptr, indices, conf, pref, Y, G0, c0, long_rows, X, failed, row_loss=None,
                     block: int = LONG_ROW_BLOCK) -> None:
    """Exact solves of long rows by gathered GEMM (BLAS with all its threads): ``Y_u^T W_u Y_u``.

    The Gram matrix and right-hand side are accumulated over blocks of ``block`` entries so that the gathered
    factors never take more than two ``(block, d)`` arrays. ``row_loss`` as in :func:`implicit_cholesky_rows`
    (one more blocked pass: ``s = Y_u x_u``).
    """
    cz = Y.dtype.type(c0)
    for u in long_rows:
        s, e = indptr[u], indptr[u + 1]
        A = np.array(G0, dtype=np.float64, copy=True)
        b = np.zeros(Y.shape[1], dtype=np.float64)
        for lo in range(s, e, block):
            hi = min(e, lo + block)
            Yg = Y[indices[lo:hi]]  # (<= block, d) gathered block
            w = (conf[lo:hi] - cz).astype(Y.dtype)
            A += (Yg.T @ (Yg * w[:, None])).astype(np.float64)
            b += (Yg.T @ (conf[lo:hi] * pref[lo:hi]).astype(Y.dtype)).astype(np.float64)
        # Cholesky, or minimum norm where A_u is numerically singular at the precision of the products above
        # (they run in the factor dtype) and of G0 (a Gram over every row of Y)
        x = solve_psd(A, b, rcond=rank_tolerance(len(b), Y.dtype, Y.shape[0]))
        if not np.isfinite(x).all():
            failed[u] = 1
            continue
        X[u] = x
        if row_loss is not None and len(row_loss):
            acc = 0.0
            for lo in range(s, e, block):
                hi = min(e, lo + block)
                sc = (Y[indices[lo:hi]] @ X[u]).astype(np.float64)
                diff = pref[lo:hi] - sc
                acc += float(np.sum(conf[lo:hi] * diff * diff - c0 * sc * sc))
            row_loss[u] = acc


def half_step(
    indptr,
    indices,
    conf,
    pref,
    Y,
    X,
    *,
    c0: float,
    reg: float,
    solver: str,
    cg_steps: int = 3,
    order: np.ndarray | None = None,
    long_row: int = LONG_ROW,
    lockstep_max: int = LOCKSTEP_MAX,
    row_loss: np.ndarray | None = None,
    YtY: np.ndarray | None = None,
    window_row_bytes: int = WINDOW_ROW_BYTES,
    window_bytes: int = WINDOW_BYTES,
) -> np.ndarray:
    """One ALS half-step: update every row of ``X`` (in place) with ``Y`` fixed; returns the ``failed`` mask.

    ``solver="cholesky"`` solves exactly; rows longer than ``long_row`` use a gathered BLAS GEMM for their
    Gram matrix (with the BLAS threads), the rest the register-blocked compiled kernel with BLAS limited to one
    thread so kernel threads x BLAS threads never exceed the cores. ``solver="cg"`` runs ``cg_steps``
    warm-started CG iterations per row, rows of at most ``lockstep_max`` entries four at a time in lock-step
    (:func:`implicit_cg_rows`; the grouping changes the speed, not the iterates). ``order`` (from
    :func:`row_order`) may be passed to reuse it.

    ``row_loss``, a float64 array of ``X.shape[0]``, receives the observed part of each row's loss at its new
    factors (see :func:`implicit_cholesky_rows`), computed while the row is in cache: its sum is the
    ``observed`` argument of :func:`implicit_loss`, which then needs no pass over the matrix of its own.
    ``YtY``: :func:`factor_gram` of ``Y`` if the caller has it (saves one product of ``Y``).

    The CG solver takes the rows whose gathered factors exceed ``window_row_bytes`` in chunks over windows of
    ``window_bytes`` of ``Y`` (:func:`window_plan`, :func:`implicit_cg_windowed`), the rest as above, both in one
    parallel job (:func:`implicit_cg_mixed`).
    """
    if order is None:
        order = row_order(indptr)
    failed = np.zeros(X.shape[0], dtype=np.uint8)
    if row_loss is None:
        row_loss = np.zeros(0, dtype=np.float64)
    elif row_loss.shape != (X.shape[0],) or row_loss.dtype != np.float64:
        raise ValueError(f"row_loss must be a float64 array of shape ({X.shape[0]},), got {row_loss.dtype} "
                         f"{row_loss.shape}")
    else:
        row_loss[:] = 0.0  # rows without entries (and rows not in order) contribute nothing
    # G0 = c0 Y^T Y + lambda I with single-threaded BLAS: after a call on a 2-thread OpenBLAS pool its worker
    # keeps spinning (~0.1 s, measured: a d = 128 CG item half-step took 0.30 s CPU instead of 0.17 s) and
    # competes with the kernel threads that follow; one thread costs a few ms more on the GEMM itself
    with single_threaded_blas():
        G0 = gram_base(Y, c0, reg, YtY)
    if solver == "cholesky":
        n_long = len(longest_lengths(indptr, order, long_row - 1))  # rows of at least long_row entries
        if n_long:
            _solve_long_rows(indptr, indices, conf, pref, Y, G0, c0, order[:n_long], X, failed, row_loss)
        rest = order[n_long:]
        if len(rest):
            with single_threaded_blas():
                implicit_cholesky_rows(indptr, indices, conf, pref, Y, G0, c0, rest, get_num_threads(), X,
                                       failed, row_loss)
    elif solver == "cg":
        G0f = G0.astype(Y.dtype)
        # the lengths of the rows the plan and the lock-step split look at: those longer than lockstep_max, and
        # every windowed row (longer than row_bytes of factors)
        window_rows = window_row_bytes // (Y.shape[1] * Y.dtype.itemsize)
        lengths = longest_lengths(indptr, order, min(int(lockstep_max), window_rows - 1))
        total = int(np.sum(np.asarray(indptr[order + 1], dtype=np.int64) - indptr[order])) if len(order) < \
            len(indptr) - 1 else int(indptr[-1]) - int(indptr[0])
        plan = window_plan(order, lengths, Y.shape[1], Y.dtype.itemsize, get_num_threads(), row_bytes=window_row_bytes,
                           shared=True, total=total)
        rest, rest_lengths = order, lengths
        window = max(1, window_bytes // (Y.shape[1] * Y.dtype.itemsize))
        long_rows, chunk_start = np.zeros(0, dtype=np.int32), np.zeros(1, dtype=np.int64)
        if plan is not None:
            n_long, long_rows, chunk_start = plan
            rest, rest_lengths = order[n_long:], lengths[n_long:]
        n_single = int(np.searchsorted(-rest_lengths, -lockstep_max, side="left"))  # rows longer than that
        with single_threaded_blas():
            implicit_cg_mixed(indptr, indices, conf, pref, Y, G0f, c0, int(cg_steps), long_rows, chunk_start, window,
                              rest, n_single, get_num_threads(), X, row_loss)
    else:  # pragma: no cover - validated by the model
        raise ValueError(f"unknown solver {solver!r}")
    if failed.any():
        _resolve_singular_rows(indptr, indices, conf, pref, Y, G0, c0, X, failed, row_loss)
    return failed


def _resolve_singular_rows(indptr, indices, conf, pref, Y, G0, c0, X, failed, row_loss) -> None:
    """Solve the rows the Cholesky kernel rejected by minimum-norm least squares; clear them in ``failed``.

    Row ``u``'s system in float64 (numpy): ``A_u = G0 + Y_u^T (C_u - c0 I) Y_u``, ``b_u = Y_u^T C_u p_u``, with
    ``G0 = c0 Y^T Y + lambda I`` (d, d). ``Y^T Y`` is a product over every row of ``Y`` in the factor dtype,
    which sets the rank threshold (:func:`mfrec.kernels.dense.rank_tolerance`). Rows whose system holds NaN/inf,
    or is indefinite, stay marked (the model reports them). ``row_loss`` as in :func:`implicit_cholesky_rows`.
    """
    rcond = rank_tolerance(Y.shape[1], Y.dtype, Y.shape[0])
    for u in np.flatnonzero(failed):
        lo, hi = int(indptr[u]), int(indptr[u + 1])
        Ys = Y[indices[lo:hi]].astype(np.float64)
        c = conf[lo:hi].astype(np.float64)
        p = pref[lo:hi].astype(np.float64)
        A = G0 + Ys.T @ ((c - c0)[:, None] * Ys)
        x = solve_psd(A, Ys.T @ (c * p), rcond=rcond)
        if not np.isfinite(x).all():
            continue
        X[u] = x
        failed[u] = 0
        if len(row_loss):
            s = Ys @ x
            row_loss[u] = float(np.sum(c * (p - s) ** 2 - c0 * s * s))


def gd_half_step(indptr, indices, conf, pref, Y, X, *, c0: float, reg: float, YtY: np.ndarray | None = None) -> float:
    """One full-batch gradient step on the block ``X`` (``Y`` fixed) with the exact line-search step size.

    With ``Y`` fixed, ``L`` is a convex quadratic in ``X``: ``L(X - t G) = L(X) - t ||G||^2 + t^2 sum_u g_u^T A_u
    g_u``, so ``t* = ||G||^2 / (2 sum_u g_u^T A_u g_u)`` decreases ``L`` (strictly unless ``G = 0``). The gradient
    ``g_u = 2 (G0 x_u + sum_i [(c - c0) s - c p] y_i)`` and the curvature both cost O(nnz d + m d^2).
    Returns the step size used.
    """
    G0 = gram_base(Y, c0, reg, YtY).astype(X.dtype)  # YtY: factor_gram(Y) if the caller has it
    sparse = np.empty_like(X)
    implicit_observed_grad(indptr, indices, conf, pref, X, Y, c0, sparse)
    G = 2.0 * (X @ G0 + sparse)
    G = np.ascontiguousarray(G, dtype=X.dtype)
    gg = float(np.sum(G.astype(np.float64) ** 2))
    if not gg > 0.0:
        return 0.0
    curv = float(np.sum((G @ G0).astype(np.float64) * G)) + float(
        implicit_observed_curvature(indptr, indices, conf, G, Y, c0)
    )
    if not curv > 0.0:
        return 0.0
    t = gg / (2.0 * curv)
    X -= X.dtype.type(t) * G
    return t
