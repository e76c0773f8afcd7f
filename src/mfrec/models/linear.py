"""Linear baselines: :class:`GlobalLinear` (non-personalized regression on attributes) and :class:`PureSVD`.

Neither is iterative: both are one closed-form computation (a ridge solve, a truncated SVD).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from mfrec._params import check_choice, check_dtype, check_float, check_int
from mfrec._random import int_seed, rng
from mfrec.data.interactions import Interactions
from mfrec.exceptions import InvalidDataError, InvalidParameterError, ModelFitError
from mfrec.kernels.dense import rank_tolerance, solve_psd
from mfrec.models.base import FactorModel, Recommender
from mfrec.data.attribute_data import AttributeData
from mfrec.persist import register_model

__all__ = ["GlobalLinear", "PureSVD"]


# ============================================================================================ GlobalLinear
@register_model
class GlobalLinear(Recommender):
    """One linear regression of the feedback on user and item attributes: ``r_hat = b + w_u . a_u + w_i . a_i``.

    The weights minimise the ridge objective over the observed pairs (intercept not penalised)

    .. math:: \\sum_{(u,i) \\in R} (r_{ui} - b - w^T [a_u; a_i])^2 + \\lambda \\|w\\|^2

    solved in closed form, ``w = (Z_c^T Z_c + lambda I)^-1 Z_c^T (r - mean r)`` with ``Z`` the ``nnz x (F_u +
    F_i)`` design of rows ``[a_u; a_i]`` and ``Z_c`` its column-centred version (then ``b = mean r - mean(Z) w``).

    This is the textbook *non-personalized* model: the user term ``w_u . a_u`` is the same for every item, so
    every user's ranking of the items is the same (``b + w_i . a_i``, minus what the user has seen); two users
    with identical attributes get identical lists *and* identical scores. Keep it as the baseline that shows
    what personalization (factor models, :class:`~mfrec.models.content.ContentBased`) adds. ``recommend_users``
    orders users by ``w_u . a_u``, the same for every item. Cold ids from the attributes are scored like any
    other. ``similar_items`` / ``similar_users`` are cosines of the attribute vectors.

    Parameters
    ----------
    regularization : float, default 1.0
        ``lambda >= 0``. At 0 with collinear attributes (every complete one-hot group is collinear with the
        intercept) the system is singular and the minimum-norm least-squares weights are returned
        (:func:`mfrec.kernels.dense.solve_psd`): the fitted values are the least-squares fit either way.

    Attributes
    ----------
    intercept_ : float
    user_weights_ : ndarray (F_u,) float64 or None
    item_weights_ : ndarray (F_i,) float64 or None
    user_features_, item_features_ : ndarray (n, F) float32 or None
    user_offset_ : ndarray (n_users,) float64
        ``w_u . a_u`` per user.
    item_score_ : ndarray (n_items,) float64
        ``b + w_i . a_i`` per item.
    rating_range_ : list of two floats
    """

    def __init__(self, regularization: float = 1.0) -> None:
        self.regularization = regularization

    def fit(self, interactions: Interactions, user_attributes: Any = None, item_attributes: Any = None) -> GlobalLinear:
        """Solve the ridge regression; returns ``self``. At least one attribute table is required."""
        lam = check_float("regularization", self.regularization, 0.0)
        if user_attributes is None and item_attributes is None:
            raise InvalidDataError("GlobalLinear.fit needs user_attributes and/or item_attributes")
        data = AttributeData(interactions, user_attributes, item_attributes, "GlobalLinear")
        inter = data.interactions
        rows, cols, vals = inter.coo()
        r = np.asarray(vals, dtype=np.float64)
        if not np.isfinite(r).all():
            pos = int(np.flatnonzero(~np.isfinite(r))[0])
            raise InvalidDataError(
                f"GlobalLinear: value {r[pos]} of user {inter.user_index_map[rows[pos]]!r}, item "
                f"{inter.item_index_map[cols[pos]]!r} is not finite"
            )
        A = data.user_features if data.user_features is not None else np.zeros((inter.n_users, 0))
        B = data.item_features if data.item_features is not None else np.zeros((inter.n_items, 0))
        Fu = A.shape[1]
        n = len(r)
        # Gram of Z = [A[rows], B[cols]] without forming Z: A^T D_u A, A^T N B, B^T D_i B (N = pattern counts)
        n_u = np.bincount(rows, minlength=inter.n_users).astype(np.float64)
        n_i = np.bincount(cols, minlength=inter.n_items).astype(np.float64)
        N = sp.csr_matrix((np.ones(n), (rows, cols)), shape=inter.shape)
        G = np.block([[A.T @ (n_u[:, None] * A), A.T @ (N @ B)], [(N @ B).T @ A, B.T @ (n_i[:, None] * B)]])
        zbar = np.concatenate([A.T @ n_u, B.T @ n_i]) / n
        zr = np.concatenate([A.T @ np.bincount(rows, r, inter.n_users), B.T @ np.bincount(cols, r, inter.n_items)])
        rbar = float(r.mean())
        # centred: Z_c^T Z_c = Z^T Z - n zbar zbar^T,  Z_c^T (r - rbar) = Z^T r - n zbar rbar
        Gc = G - n * np.outer(zbar, zbar)
        Gc[np.diag_indices_from(Gc)] += lam
        rhs = zr - n * zbar * rbar
        # lambda = 0 with collinear features (one-hot groups sum to the intercept's column) is singular: the
        # minimum-norm least-squares weights then, detected by the condition number, not by an exception
        w = solve_psd(Gc, rhs, rcond=rank_tolerance(len(rhs), terms=n))
        if not np.isfinite(w).all():
            raise ModelFitError("GlobalLinear: the weights are not finite; increase regularization")
        b = rbar - float(zbar @ w)
        self.intercept_ = b
        self.user_weights_ = w[:Fu] if data.user_features is not None else None
        self.item_weights_ = w[Fu:] if data.item_features is not None else None
        self.user_features_ = None if data.user_features is None else data.user_features.astype(np.float32)
        self.item_features_ = None if data.item_features is None else data.item_features.astype(np.float32)
        self.user_offset_ = A @ w[:Fu]
        self.item_score_ = b + B @ w[Fu:]
        self.rating_range_ = [float(r.min()), float(r.max())]
        self.interactions_ = inter
        return self

    def _check_fitted(self) -> None:
        super()._check_fitted()
        if getattr(self, "item_score_", None) is None:
            from mfrec.exceptions import NotFittedError

            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit(interactions) first")

    def _scores(self, user_idx: np.ndarray) -> np.ndarray:
        """``(b, n_items)`` float32: ``w_u . a_u + b + w_i . a_i``."""
        off = self.user_offset_[np.asarray(user_idx)]
        return (off[:, None] + self.item_score_[None, :]).astype(np.float32)

    def _item_scores(self, item_idx: np.ndarray) -> np.ndarray:
        """``(b, n_users)`` float32."""
        return (self.item_score_[np.asarray(item_idx)][:, None] + self.user_offset_[None, :]).astype(np.float32)

    def predict(self, user_ids: Iterable[Hashable], item_ids: Iterable[Hashable]) -> np.ndarray:
        """``b + w_u . a_u + w_i . a_i`` of paired known ids, clipped to the training range, ``(n,)`` float64."""
        self._check_fitted()
        u, i = self._pairs(user_ids, item_ids)
        lo, hi = self.rating_range_
        return np.clip(self.user_offset_[u] + self.item_score_[i], lo, hi)

    def _similarity_vectors(self, kind: str) -> Any:
        feats = self.item_features_ if kind == "item" else self.user_features_
        if feats is not None:
            return feats
        m = self.interactions_.matrix  # no attributes on that side: co-occurrence of the binary pattern
        pattern = self._cached(
            "pattern", (m,), lambda: sp.csr_matrix((np.ones(m.nnz, np.float32), m.indices, m.indptr), shape=m.shape)
        )
        return pattern.T.tocsr() if kind == "item" else pattern

    def fold_in_user(self, items: Iterable[Hashable], values: Iterable[float] | None = None) -> np.ndarray:
        """A new user has no attributes here: validates the items and returns the user term ``(1,)`` = 0."""
        self._fold_in_inputs(items, values)
        return np.zeros(1)

    def _new_user_scores(self, vector: np.ndarray) -> np.ndarray:
        return (float(np.asarray(vector).ravel()[0]) + self.item_score_).astype(np.float32)


# ============================================================================================ PureSVD
@register_model
class PureSVD(FactorModel):
    """Truncated SVD of the zero-filled interaction matrix (Cremonesi, Koren & Turrin 2010).

    With ``R ~= U_k S_k V_k^T`` the rank-``k`` truncated SVD of the users x items matrix (missing entries
    are 0), the score is the rank-``k`` reconstruction

    .. math:: \\hat r_{ui} = (U_k S_k)_u \\cdot (V_k)_i = r_u V_k V_k^T e_i

    so ``user_factors_ = U_k S_k`` and ``item_factors_ = V_k``; a new user's factors are the projection
    ``r V_k`` (:meth:`fold_in_user`), exactly what a training user's row gives. Computed by ARPACK
    (``scipy.sparse.linalg.svds``, Lanczos) or by randomized SVD (Halko, Martinsson & Tropp 2011,
    ``sklearn.utils.extmath.randomized_svd``). Signs are fixed so that the largest-magnitude entry of every
    ``V`` column is positive, making the factors reproducible.

    Parameters
    ----------
    factors : int, default 50
        ``k``; ARPACK needs ``k < min(n_users, n_items)``.
    solver : {"arpack", "randomized"}, default "arpack"
    binary : bool, default False
        Factorize the 0/1 interaction pattern instead of the values.
    seed : int, SeedSequence, Generator or None, default 0
        Starting vector (ARPACK) or random projection (randomized).
    n_iter : int, default 7
        Power iterations of the randomized solver.
    dtype : {"float32", "float64"}, default "float32"

    Attributes
    ----------
    user_factors_ : ndarray (n_users, k) ``U_k S_k``
    item_factors_ : ndarray (n_items, k) ``V_k``
    singular_values_ : ndarray (k,) float64, descending
    """

    def __init__(
        self,
        factors: int = 50,
        solver: str = "arpack",
        binary: bool = False,
        seed: Any = 0,
        n_iter: int = 7,
        dtype: str = "float32",
    ) -> None:
        self.factors = factors
        self.solver = solver
        self.binary = binary
        self.seed = seed
        self.n_iter = n_iter
        self.dtype = dtype

    def fit(self, interactions: Interactions) -> PureSVD:
        """Compute the truncated SVD; returns ``self``."""
        k = check_int("factors", self.factors, minimum=1)
        solver = check_choice("solver", self.solver, ("arpack", "randomized"))
        n_iter = check_int("n_iter", self.n_iter, minimum=0)
        dt = check_dtype("dtype", self.dtype)
        if not isinstance(interactions, Interactions):
            raise InvalidDataError(
                f"PureSVD.fit expects an mfrec Interactions, got {type(interactions).__name__}"
            )
        if interactions.nnz == 0:
            raise InvalidDataError("PureSVD.fit: the interactions are empty")
        m = interactions.matrix
        values = np.ones(m.nnz) if self.binary else np.asarray(m.data, dtype=np.float64)
        if not np.isfinite(values).all():
            rows, cols, _ = interactions.coo()
            pos = int(np.flatnonzero(~np.isfinite(values))[0])
            raise InvalidDataError(
                f"PureSVD: value {values[pos]} of user {interactions.user_index_map[rows[pos]]!r}, item "
                f"{interactions.item_index_map[cols[pos]]!r} is not finite"
            )
        R = sp.csr_matrix((values, m.indices, m.indptr), shape=m.shape)
        limit = min(R.shape) - 1 if solver == "arpack" else min(R.shape)
        if k > limit:
            raise InvalidParameterError(
                f"factors must be <= {limit} for solver={solver!r} on a {R.shape[0]} x {R.shape[1]} matrix, got {k}"
            )
        gen = rng(self.seed)
        if solver == "arpack":
            v0 = gen.uniform(-1.0, 1.0, size=min(R.shape))
            U, s, Vt = spla.svds(R, k=k, v0=v0, solver="arpack")
            order = np.argsort(-s, kind="stable")
            U, s, Vt = U[:, order], s[order], Vt[order]
        else:
            from sklearn.utils.extmath import randomized_svd

            U, s, Vt = randomized_svd(R, n_components=k, n_iter=n_iter, random_state=int_seed(gen))
        # deterministic signs: the largest-|.| entry of every right singular vector is positive
        flip = np.sign(Vt[np.arange(k), np.argmax(np.abs(Vt), axis=1)])
        flip[flip == 0] = 1.0
        U, Vt = U * flip, Vt * flip[:, None]
        user = U * s
        if not (np.isfinite(user).all() and np.isfinite(Vt).all()):
            raise ModelFitError("PureSVD: the SVD did not converge to finite factors")
        self.user_factors_ = np.ascontiguousarray(user, dtype=dt)
        self.item_factors_ = np.ascontiguousarray(Vt.T, dtype=dt)
        self.singular_values_ = np.asarray(s, dtype=np.float64)
        self.interactions_ = interactions
        return self

    def fold_in_user(self, items: Iterable[Hashable], values: Iterable[float] | None = None) -> np.ndarray:
        """``r V_k`` ``(k,)``: the projection of a new user's row (values default to 1; ones when ``binary``)."""
        idx, vals = self._fold_in_inputs(items, values)
        if self.binary:
            vals = np.ones_like(vals)
        V = self.item_factors_.astype(np.float64)
        return (vals.astype(np.float64) @ V[idx]).astype(self.item_factors_.dtype)

    #: the reconstruction of the zero-filled matrix is a ranking score, not a rating
    predicts_ratings = False

    def predict(self, user_ids: Iterable[Hashable], item_ids: Iterable[Hashable]) -> np.ndarray:
        """The rank-k reconstruction ``(U_k S_k V_k^T)_ui`` of paired known ids, ``(n,)`` float64."""
        self._check_fitted()
        u, i = self._pairs(user_ids, item_ids)
        return np.einsum("ij,ij->i", self.user_factors_[u].astype(np.float64), self.item_factors_[i].astype(np.float64))
