"""The worked example of the course notes the project started from, as data.

Four users and six items; ids are **1-based** as in the notes (users 1..4, items 1..6), so
"user 3, item 4" of the notes is ``ratings.user_index(3), ratings.item_index(4)`` (dense row 2,
column 3). The dense arrays (``R``, ``U``, ``V``, ``UVt``, ``P``, ``C``) are 0-based as numpy is::

    R = | 1 ? ? 2 ? 1 |      U = | 0.3 0.7 |     V^T = | 1 10 11 10 4 20 |
        | ? 2 3 ? 2 1 |          | 0.3 0.5 |           | 1 -1 -2 -1 1 -4 |
        | 1 5 5 ? ? 5 |          | 0.2 0.4 |
        | ? ? 2 ? ? 3 |          | 0.2 0.1 |

``U V^T`` (d = 2) is an illustration, not an optimum; where ``R`` is unknown its entries are the
predictions (user 3, item 4: 1.6). The implicit part gives a binary preference ``P`` (1 where ``R`` is
known) and a confidence ``C`` as is, zero where ``P`` is zero: unobserved pairs carry no weight
(``unobserved_confidence = 0``), unlike Hu, Koren & Volinsky (2008) where they weigh 1.

Objectives of the notes (``Omega`` = the known entries of ``R``):

* explicit: ``sum_{(i,j) in Omega} (r_ij - u_i . v_j)^2 + lambda (sum_i ||u_i||^2 + sum_j ||v_j||^2)``
* implicit: ``sum_{i,j} C_ij (P_ij - u_i . v_j)^2 + lambda (sum_i ||u_i||^2 + sum_j ||v_j||^2)``
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mfrec._params import check_float
from mfrec.data.feedback import ImplicitFeedback
from mfrec.data.interactions import Interactions
from mfrec.exceptions import InvalidParameterError

__all__ = ["SeedExample", "seed_example"]

_NAN = np.nan
_R = (
    (1, _NAN, _NAN, 2, _NAN, 1),
    (_NAN, 2, 3, _NAN, 2, 1),
    (1, 5, 5, _NAN, _NAN, 5),
    (_NAN, _NAN, 2, _NAN, _NAN, 3),
)
_U = ((0.3, 0.7), (0.3, 0.5), (0.2, 0.4), (0.2, 0.1))
_VT = ((1, 10, 11, 10, 4, 20), (1, -1, -2, -1, 1, -4))
_P = (
    (1, 0, 0, 1, 0, 1),
    (0, 1, 1, 0, 1, 1),
    (1, 1, 1, 0, 0, 1),
    (0, 0, 1, 0, 0, 1),
)
_C = (
    (0.85, 0, 0, 0.34, 0, 0.98),
    (0, 0.37, 0.10, 0, 0.63, 0.01),
    (0.45, 0.42, 0.43, 0, 0, 0.23),
    (0, 0, 0.26, 0, 0, 0.88),
)


@dataclass(frozen=True, eq=False)
class SeedExample:
    """The 4 x 6 worked example; arrays are read-only float64.

    Attributes
    ----------
    R : numpy.ndarray, shape (4, 6)
        Ratings, NaN where unknown.
    U : numpy.ndarray, shape (4, 2)
        User factors ``u_i`` (rows).
    V : numpy.ndarray, shape (6, 2)
        Item factors ``v_j`` (rows); the notes print ``V^T``.
    UVt : numpy.ndarray, shape (4, 6)
        The exact product ``U V^T``.
    P : numpy.ndarray, shape (4, 6)
        Binary preferences.
    C : numpy.ndarray, shape (4, 6)
        Confidences, 0 where ``P`` is 0.
    ratings : Interactions
        The 13 known entries of ``R``; user ids 1..4, item ids 1..6.
    implicit : ImplicitFeedback
        ``P`` and ``C`` as is (13 stored pairs, same ids), ``unobserved_confidence = 0``.
    user_ids, item_ids : tuple of int
        ``(1, 2, 3, 4)`` and ``(1, ..., 6)``.
    """

    R: np.ndarray
    U: np.ndarray
    V: np.ndarray
    UVt: np.ndarray
    P: np.ndarray
    C: np.ndarray
    ratings: Interactions
    implicit: ImplicitFeedback
    user_ids: tuple[int, ...]
    item_ids: tuple[int, ...]

    @property
    def known(self) -> np.ndarray:
        """Boolean mask (4, 6) of the known ratings ``Omega``."""
        return ~np.isnan(self.R)

    def explicit_objective(self, U: np.ndarray, V: np.ndarray, regularization: float) -> float:
        """``sum_{(i,j) in Omega} (r_ij - u_i . v_j)^2 + lambda (||U||_F^2 + ||V||_F^2)``.

        ``U`` is (4, d), ``V`` is (6, d); ``regularization`` is ``lambda >= 0``.
        """
        U, V, lam = self._factors(U, V, regularization)
        residual = np.where(self.known, np.nan_to_num(self.R) - U @ V.T, 0.0)
        return float((residual**2).sum() + lam * ((U**2).sum() + (V**2).sum()))

    def implicit_objective(self, U: np.ndarray, V: np.ndarray, regularization: float) -> float:
        """``sum_{i,j} C_ij (P_ij - u_i . v_j)^2 + lambda (||U||_F^2 + ||V||_F^2)`` over all pairs."""
        U, V, lam = self._factors(U, V, regularization)
        return float((self.C * (self.P - U @ V.T) ** 2).sum() + lam * ((U**2).sum() + (V**2).sum()))

    def _factors(self, U: np.ndarray, V: np.ndarray, regularization: float) -> tuple[np.ndarray, np.ndarray, float]:
        U = np.asarray(U, dtype=np.float64)
        V = np.asarray(V, dtype=np.float64)
        if U.ndim != 2 or V.ndim != 2 or U.shape[0] != 4 or V.shape[0] != 6 or U.shape[1] != V.shape[1]:
            raise InvalidParameterError(f"U must be (4, d) and V (6, d), got {U.shape} and {V.shape}")
        return U, V, check_float("regularization", regularization, minimum=0.0)


def _frozen(rows) -> np.ndarray:
    arr = np.array(rows, dtype=np.float64)
    arr.setflags(write=False)
    return arr


def seed_example() -> SeedExample:
    """The worked example of the course notes (see the module docstring), built fresh on each call.

    Returns
    -------
    SeedExample
        ``R`` (4, 6) with NaN for unknown, ``U`` (4, 2), ``V`` (6, 2), ``UVt = U @ V.T``, ``P`` and ``C``
        (4, 6), ``ratings`` (Interactions of the known entries, ids 1-based) and ``implicit``
        (ImplicitFeedback of ``P`` and ``C``, ``unobserved_confidence = 0``).

    Examples
    --------
    >>> ex = seed_example()
    >>> round(float(ex.UVt[ex.ratings.user_index(3), ex.ratings.item_index(4)]), 6)
    1.6
    >>> ex.ratings.nnz, ex.implicit.nnz
    (13, 13)
    """
    R, U, C, P = _frozen(_R), _frozen(_U), _frozen(_C), _frozen(_P)
    V = _frozen(np.array(_VT, dtype=np.float64).T)
    UVt = U @ V.T
    UVt.setflags(write=False)
    user_ids = tuple(range(1, R.shape[0] + 1))
    item_ids = tuple(range(1, R.shape[1] + 1))
    rows, cols = np.nonzero(~np.isnan(R))
    frame = pd.DataFrame(
        {"user": np.array(user_ids)[rows], "item": np.array(item_ids)[cols], "rating": R[rows, cols]}
    )
    ratings = Interactions.from_frame(
        frame, value="rating", duplicates="error", user_ids=user_ids, item_ids=item_ids
    )
    implicit = ImplicitFeedback.from_dense(P, C, unobserved_confidence=0.0, user_ids=user_ids, item_ids=item_ids)
    return SeedExample(R, U, V, UVt, P, C, ratings, implicit, user_ids, item_ids)
