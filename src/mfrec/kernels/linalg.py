"""The compiled row-solve helpers, exposed for tests and for callers that solve one small system at a time.

The kernels themselves (:mod:`mfrec.kernels._native`, ``linalg.hpp``) use these inline; from Python each is one
call on a small array:

* :func:`cholesky_upper_inplace` ``(A, n) -> bool``: ``A = U^T U`` on the upper triangle of ``A[:n, :n]`` (float32
  or float64, C-contiguous), blocked right-looking, eight pivots per panel. False when a pivot is at most
  :func:`pivot_floor` (singular or numerically so, or NaN).
* :func:`cholesky_upper_solve_inplace` ``(U, b, n)``: solves ``U^T U z = b``, ``b`` overwritten by ``z``.
* :func:`pivot_floor` ``(A, n) -> float``: ``n eps max_k A_kk`` in the dtype of ``A``; a pivot at or below it counts as
  zero (numpy's ``lstsq`` rank cut-off, :func:`mfrec.kernels.dense.rank_tolerance`). Waiting for an exactly zero
  or negative pivot misses most singular systems: rounding leaves a tiny positive pivot.
* :func:`gram_apply` ``(start, end, indices, conf, pref, c0, Y, x, out, with_b)``: the sparse Gram term of one CSR
  row, ``out += sum_e w_e (y_e . x) y_e`` (``w_e = conf[e] - c0``), or with ``with_b``
  ``out += sum_e (conf_e pref_e - w_e (y_e . x)) y_e``; eight entries per sweep, the next eight rows prefetched.
* :func:`matmul_rows4` ``(x, G, out)``: ``out[q] = G x[q]`` for four rows ``x`` (4, d) and symmetric ``G`` (d, d),
  register-blocked (``G`` read once per four rows); :func:`matvec_rows` ``(G, p, out)`` the same for one row.

Reductions are compiled with reassociation and contraction (they vectorise) but no finite-math assumptions:
the NaN checks the solvers rely on are kept.
"""

from __future__ import annotations

from mfrec.kernels._native import (
    cholesky_upper_inplace,
    cholesky_upper_solve_inplace,
    gram_apply,
    matmul_rows4,
    matvec_rows,
    pivot_floor,
)

__all__ = ["cholesky_upper_inplace", "cholesky_upper_solve_inplace", "pivot_floor", "gram_apply", "matmul_rows4",
           "matvec_rows"]
