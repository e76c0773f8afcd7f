"""Non-personalized and bias baselines: :class:`Popularity` and :class:`Biases`.

Both rank with the shared machinery of :class:`~mfrec.models.base.Recommender`; their similarities
(``similar_items`` / ``similar_users``) are co-occurrence cosines on the training interactions,

.. math:: \\cos(i, j) = |U_i \\cap U_j| / \\sqrt{|U_i| |U_j|}

where :math:`U_i` is the set of users who interacted with item :math:`i` (and symmetrically for users).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

import numpy as np
import scipy.sparse as sp

from mfrec._params import check_choice, check_float, check_int
from mfrec.data.interactions import Interactions
from mfrec.exceptions import InvalidDataError, ModelFitError
from mfrec.models.base import Recommender
from mfrec.persist import register_model

__all__ = ["Popularity", "Biases"]


def _check_interactions(interactions: Interactions, model: str) -> Interactions:
    if not isinstance(interactions, Interactions):
        raise InvalidDataError(
            f"{model}.fit expects an mfrec Interactions (Interactions.from_frame(...)), got {type(interactions).__name__}"
        )
    if interactions.nnz == 0:
        raise InvalidDataError(f"{model}.fit: the interactions are empty")
    return interactions


class _CooccurrenceSimilarity:
    """Mixin: similar_items / similar_users by cosine of the binary interaction pattern."""

    def _similarity_vectors(self, kind: str) -> sp.csr_matrix:
        m = self.interactions_.matrix

        def pattern() -> sp.csr_matrix:
            # binary users x items pattern; explicitly stored zeros are interactions too
            return sp.csr_matrix((np.ones(m.nnz, np.float32), m.indices, m.indptr), shape=m.shape)

        users_x_items = self._cached("binary_pattern", (m,), pattern)
        if kind == "user":
            return users_x_items
        return self._cached("binary_pattern_T", (m,), lambda: users_x_items.T.tocsr())


@register_model
class Popularity(_CooccurrenceSimilarity, Recommender):
    """Recommend the most popular items, the same for everyone (minus what each user has seen).

    Scores are ``s(u, i) = pop_i`` with ``pop_i = |{u : (u, i) observed}|`` (``by="count"``) or
    ``pop_i = sum_u r_ui`` (``by="sum"``, e.g. total play counts). ``recommend_users`` ranks users by
    their activity (number or sum of interactions), the user-side analogue. ``similar_items`` /
    ``similar_users`` use co-occurrence cosine (see the module docstring).

    Parameters
    ----------
    by : {"count", "sum"}
        Popularity as the number of interactions or as the sum of their values.

    Attributes
    ----------
    interactions_ : Interactions
    item_popularity_ : numpy.ndarray, shape (n_items,), float32
    user_activity_ : numpy.ndarray, shape (n_users,), float32
    """

    def __init__(self, by: str = "count") -> None:
        self.by = by

    def fit(self, interactions: Interactions) -> Popularity:
        """Count (or sum) the interactions of every item and user; returns ``self``."""
        check_choice("by", self.by, ("count", "sum"))
        data = _check_interactions(interactions, "Popularity")
        m = data.matrix
        if self.by == "count":
            self.item_popularity_ = data.item_counts().astype(np.float32)
            self.user_activity_ = data.user_counts().astype(np.float32)
        else:
            self.item_popularity_ = np.asarray(m.sum(axis=0), dtype=np.float64).ravel().astype(np.float32)
            self.user_activity_ = np.asarray(m.sum(axis=1), dtype=np.float64).ravel().astype(np.float32)
        self.interactions_ = data
        return self

    def _scores(self, user_idx: np.ndarray) -> np.ndarray:
        """``(b, n_items)``: every row is ``item_popularity_``."""
        return np.broadcast_to(self.item_popularity_, (len(user_idx), len(self.item_popularity_)))

    def _item_scores(self, item_idx: np.ndarray) -> np.ndarray:
        """``(b, n_users)``: every row is ``user_activity_``."""
        return np.broadcast_to(self.user_activity_, (len(item_idx), len(self.user_activity_)))

    def fold_in_user(self, items: Iterable[Hashable], values: Iterable[float] | None = None) -> np.ndarray:
        """Popularity has no user factors: validates the items and returns an empty vector ``(0,)``."""
        self._fold_in_inputs(items, values)
        return np.zeros(0, dtype=np.float32)

    def _new_user_scores(self, vector: np.ndarray) -> np.ndarray:
        return self.item_popularity_


@register_model
class Biases(_CooccurrenceSimilarity, Recommender):
    """Global mean plus regularized user and item biases: ``r_hat(u, i) = mu + b_u + b_i``.

    Minimizes, with ``mu`` the global mean of the training values,

    .. math:: \\sum_{(u,i) \\in R} (r_{ui} - \\mu - b_u - b_i)^2 + \\lambda (\\sum_u b_u^2 + \\sum_i b_i^2)

    by alternating exact block minimization (Koren 2010, "Factor in the neighbors", section 2.1):

    .. math::
        b_i \\leftarrow \\frac{\\sum_{u \\in R(i)} (r_{ui} - \\mu - b_u)}{\\lambda + |R(i)|}, \\qquad
        b_u \\leftarrow \\frac{\\sum_{i \\in R(u)} (r_{ui} - \\mu - b_i)}{\\lambda + |R(u)|}

    The objective is strictly convex for ``lambda > 0``, so the iteration converges to its unique minimizer.

    Parameters
    ----------
    regularization : float
        ``lambda >= 0`` (0 is allowed but then the minimizer is only unique up to a shift).
    iterations : int
        Maximum number of (item, user) sweeps, ``>= 1``.
    tol : float
        Stop when no bias moved by more than ``tol`` in a sweep.

    Attributes
    ----------
    interactions_ : Interactions
    global_mean_ : float
    user_bias_ : numpy.ndarray, shape (n_users,), float64
    item_bias_ : numpy.ndarray, shape (n_items,), float64
    rating_range_ : list of two floats
        ``[min, max]`` of the training values; :meth:`predict` clips to it.
    history_ : list of dict
        ``{"iteration", "loss", "rmse"}`` per sweep (loss = the objective above).
    """

    def __init__(self, regularization: float = 5.0, iterations: int = 20, tol: float = 1e-6) -> None:
        self.regularization = regularization
        self.iterations = iterations
        self.tol = tol

    def fit(self, interactions: Interactions) -> Biases:
        """Fit ``mu``, ``b_u`` and ``b_i`` to the stored values; returns ``self``."""
        lam = check_float("regularization", self.regularization, minimum=0.0)
        iterations = check_int("iterations", self.iterations, minimum=1)
        tol = check_float("tol", self.tol, minimum=0.0)
        data = _check_interactions(interactions, "Biases")
        users, items, values = data.coo()
        r = values.astype(np.float64)
        n_users, n_items = data.shape
        mu = float(r.mean())
        n_u = np.bincount(users, minlength=n_users).astype(np.float64)
        n_i = np.bincount(items, minlength=n_items).astype(np.float64)
        # a user/item without ratings gets bias 0 (0/0 guarded: denominators are >= 1 where counts are 0)
        den_u = np.where(n_u + lam > 0, n_u + lam, 1.0)
        den_i = np.where(n_i + lam > 0, n_i + lam, 1.0)
        b_u = np.zeros(n_users)
        b_i = np.zeros(n_items)
        resid = r - mu
        history = []
        for it in range(1, iterations + 1):
            # b_i = sum_{u in R(i)} (r_ui - mu - b_u) / (lambda + |R(i)|)
            new_i = np.bincount(items, weights=resid - b_u[users], minlength=n_items) / den_i
            # b_u = sum_{i in R(u)} (r_ui - mu - b_i) / (lambda + |R(u)|)
            new_u = np.bincount(users, weights=resid - new_i[items], minlength=n_users) / den_u
            change = max(np.abs(new_i - b_i).max(initial=0.0), np.abs(new_u - b_u).max(initial=0.0))
            b_i, b_u = new_i, new_u
            err = resid - b_u[users] - b_i[items]
            loss = float(err @ err + lam * (b_u @ b_u + b_i @ b_i))
            history.append({"iteration": it, "loss": loss, "rmse": float(np.sqrt(np.mean(err * err)))})
            if not np.isfinite(loss):
                raise ModelFitError("Biases: the biases became non-finite; check the values for extreme magnitudes")
            if change <= tol:
                break
        self.global_mean_ = mu
        self.user_bias_ = b_u
        self.item_bias_ = b_i
        self.rating_range_ = [float(r.min()), float(r.max())]
        self.history_ = history
        self.interactions_ = data
        return self

    def _scores(self, user_idx: np.ndarray) -> np.ndarray:
        """``(b, n_items)`` float32: ``mu + b_u + b_i`` (unclipped, so that rankings keep their order)."""
        ub = self.global_mean_ + self.user_bias_[np.asarray(user_idx)]
        return (ub[:, None] + self.item_bias_[None, :]).astype(np.float32)

    def _item_scores(self, item_idx: np.ndarray) -> np.ndarray:
        """``(b, n_users)`` float32: ``mu + b_u + b_i`` for the given items."""
        ib = self.global_mean_ + self.item_bias_[np.asarray(item_idx)]
        return (ib[:, None] + self.user_bias_[None, :]).astype(np.float32)

    def predict(self, user_ids: Iterable[Hashable], item_ids: Iterable[Hashable]) -> np.ndarray:
        """Predicted values ``mu + b_u + b_i`` of paired ids, clipped to the training range, ``(n,)`` float64.

        An unknown user or item contributes bias 0 (so an unknown pair predicts ``mu``).
        """
        self._check_fitted()
        u, i = self._pairs(user_ids, item_ids, unknown="ignore")
        b_u = np.where(u >= 0, self.user_bias_[np.maximum(u, 0)], 0.0)
        b_i = np.where(i >= 0, self.item_bias_[np.maximum(i, 0)], 0.0)
        pred = self.global_mean_ + b_u + b_i
        lo, hi = self.rating_range_
        return np.clip(np.asarray(pred, dtype=np.float64), lo, hi)

    def fold_in_user(self, items: Iterable[Hashable], values: Iterable[float] | None = None) -> np.ndarray:
        """The bias of a new user, ``(1,)``: ``b = sum_i (r_i - mu - b_i) / (lambda + n)``.

        Without ``values`` the ratings are unknown and the bias is 0 (the ranking does not depend on it).
        """
        idx, vals = self._fold_in_inputs(items, values)
        if values is None:
            return np.zeros(1)
        lam = float(self.regularization)
        b = float(np.sum(vals.astype(np.float64) - self.global_mean_ - self.item_bias_[idx]) / (lam + len(idx)))
        return np.array([b])

    def _new_user_scores(self, vector: np.ndarray) -> np.ndarray:
        return (self.global_mean_ + float(np.asarray(vector).ravel()[0]) + self.item_bias_).astype(np.float32)
