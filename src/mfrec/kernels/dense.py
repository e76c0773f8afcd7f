"""Dense symmetric solves that notice rank deficiency by the numbers (numpy + LAPACK).

Every closed form in mfrec ends in a symmetric positive semi-definite system ``A x = b``: a ridge Gram matrix
``Z^T Z + lambda I``, a fold-in system ``c0 Y^T Y + lambda I + Y_S^T (C_S - c0) Y_S``, an attribute map. With
``lambda = 0``, collinear attributes, more factors than rated items or a ``lambda`` lost in rounding, ``A`` is
singular or numerically so. Waiting for an exception does not detect that: LU with partial pivoting
(``np.linalg.solve``) meets a pivot of rounding noise instead of an exact zero and returns finite nonsense.

:func:`solve_psd` decides by the numbers. It factorises ``A = U^T U`` (LAPACK ``potrf``) and estimates the
reciprocal condition number from the factor (LAPACK ``pocon``, 1-norm); when the factorisation fails or
``rcond <= tol`` the system is solved instead by minimum-norm least squares through the symmetric
eigendecomposition ``A = V diag(s) V^T`` (LAPACK ``syevd``, rank-revealing), with eigenvalues below
``tol s_max`` treated as zero:

    x = A^+ b = sum_{s_k > tol s_max} v_k (v_k . b) / s_k

the pseudo-inverse solution, which is also the limit of the ridge solution ``(A + t I)^-1 b`` as ``t -> 0``.

The threshold is numpy's ``lstsq`` / ``matrix_rank`` cut-off, ``tol = max(M, N) eps``, for the design matrix the
Gram matrix sums: :func:`rank_tolerance` takes the number of rows summed (``terms``), because a Gram matrix of
``m`` rows carries rounding of order ``m eps`` and an eigenvalue of that size is noise, not information (with
``n eps`` alone, a Gram of 411 rows and 3 exactly collinear columns kept a noise eigenvalue of 7e-16 relative
and returned weights of 1e6). An ``A`` with an eigenvalue below ``-sqrt(tol) s_max`` is indefinite, not singular:
the quadratic it belongs to has no minimum, and the solve reports it (NaN) instead of returning a stationary
point; negative eigenvalues above that are rounding and are dropped with the zero ones. The compiled row kernels
check their Cholesky pivots against ``n eps max(diag)`` (:func:`mfrec.kernels.linalg.pivot_floor`) and hand the
rows they reject to these solves.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

__all__ = ["rank_tolerance", "solve_psd", "is_numerically_singular"]


def rank_tolerance(n: int, dtype: np.dtype | type = np.float64, terms: int = 0) -> float:
    """Below this size relative to the largest, an eigenvalue of an ``(n, n)`` Gram matrix counts as zero.

    ``max(n eps_dtype, max(n, terms) eps_64)``: ``terms`` is the number of rows the Gram matrix sums (its rounding
    grows with them) and ``dtype`` the precision its products ran in (a float32 product resolves nothing finer
    than ``n eps_32``, whatever dtype it is stored in).
    """
    n = max(int(n), 1)
    return max(n * float(np.finfo(dtype).eps), max(n, int(terms)) * float(np.finfo(np.float64).eps))


def _cholesky_if_well_conditioned(A: np.ndarray, tol: float) -> np.ndarray | None:
    """The upper Cholesky factor of ``A``, or None when ``A`` is not numerically positive definite."""
    potrf, pocon = scipy.linalg.lapack.get_lapack_funcs(("potrf", "pocon"), (A,))
    U, info = potrf(A, lower=False, clean=True, overwrite_a=False)
    if info != 0:
        return None
    anorm = float(np.abs(A).sum(axis=0).max())
    if not anorm > 0.0:
        return None
    rcond, info = pocon(U, anorm, uplo="U")
    if info != 0 or not rcond > tol:
        return None
    return U


def is_numerically_singular(A: np.ndarray, rcond: float | None = None) -> bool:
    """True when symmetric ``A`` (n, n) is not numerically positive definite (see :func:`solve_psd`)."""
    A = np.asarray(A, dtype=np.float64)
    tol = rank_tolerance(A.shape[0]) if rcond is None else float(rcond)
    return A.shape[0] > 0 and _cholesky_if_well_conditioned(A, tol) is None


def solve_psd(A: np.ndarray, b: np.ndarray, *, rcond: float | None = None) -> np.ndarray:
    """Solve ``A x = b`` for symmetric positive semi-definite ``A``; the minimum-norm least-squares ``x`` if singular.

    Parameters
    ----------
    A : array (n, n)
        Symmetric (both triangles filled), positive semi-definite up to rounding. Converted to float64.
    b : array (n,) or (n, k)
    rcond : float, optional
        Relative size below which ``A`` counts as singular (reciprocal condition number for the Cholesky path,
        relative eigenvalue for the least-squares path). Default ``n eps`` (float64); pass
        ``rank_tolerance(n, dtype, terms)`` for a Gram matrix summed over ``terms`` rows or in float32.

    Returns
    -------
    x : ndarray float64, the shape of ``b``
        ``A^-1 b`` by Cholesky when ``A`` is well conditioned, else ``A^+ b`` by eigendecomposition. Non-finite
        ``A`` or ``b``, or an indefinite ``A``, gives all-NaN ``x``, so that the caller's finiteness check
        reports it with the model's advice.
    """
    A = np.asarray(A, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    n = A.shape[0]
    if A.shape != (n, n) or b.shape[0] != n:
        raise ValueError(f"solve_psd: A must be (n, n) and b (n,) or (n, k), got {A.shape} and {b.shape}")
    if n == 0:
        return np.zeros_like(b)
    if not (np.isfinite(A).all() and np.isfinite(b).all()):
        return np.full(b.shape, np.nan)
    tol = rank_tolerance(n) if rcond is None else float(rcond)
    U = _cholesky_if_well_conditioned(A, tol)
    if U is not None:
        return scipy.linalg.cho_solve((U, False), b, check_finite=False)
    s, V = scipy.linalg.eigh(A, check_finite=False, driver="evd")
    top = float(np.abs(s).max())
    if s[0] < -np.sqrt(tol) * top:  # indefinite beyond rounding: no minimum-norm *minimiser* exists
        return np.full(b.shape, np.nan)
    keep = s > tol * top
    Vk = V[:, keep]
    coef = Vk.T @ b
    coef /= s[keep] if b.ndim == 1 else s[keep][:, None]
    return Vk @ coef
