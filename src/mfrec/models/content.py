"""Attribute-aware models: :class:`ContentBased` filtering and the cold-start :class:`HybridALS`.

Both take attributes at fit time, ``fit(interactions, user_attributes=None, item_attributes=None)``, as an
:class:`mfrec.Attributes` or a DataFrame indexed by id (encoded by :func:`mfrec.data.attributes.encode_attributes`). Users and
items that appear in the attributes but not in the interactions become *known cold ids*: the model's id
maps (``interactions_``) are extended with them as empty rows/columns, so every method of
:class:`~mfrec.models.base.Recommender` (recommend, recommend_users, similar_*, allow-lists, evaluate)
works on them unchanged, and they get their vectors from their attributes alone.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

import numpy as np
import scipy.sparse as sp

from mfrec._params import check_choice, check_dtype, check_float, check_int
from mfrec._random import BlockDraws, rng
from mfrec.data.attribute_data import AttributeData, check_finite_values
from mfrec.data.feedback import entry_confidence
from mfrec.data.interactions import Interactions
from mfrec.exceptions import InvalidDataError, InvalidParameterError, ModelFitError
from mfrec.kernels.als_explicit import als_explicit_step
from mfrec.kernels.als_implicit import half_step, implicit_observed_loss
from mfrec.kernels.dense import rank_tolerance, solve_psd
from mfrec.kernels.hybrid import attribute_regression, map_system, neighbor_map, prior_half_step
from mfrec.kernels.threads import get_num_threads, single_threaded_blas
from mfrec.models.base import FactorModel
from mfrec.models.training import ALSPlan, RowBlock, check_factor_memory, run, threads_and_blas
from mfrec.persist import register_model

__all__ = ["ContentBased", "HybridALS"]

_FEEDBACK = ("explicit", "implicit", "auto")
_COLD_MAPS = ("neighbors", "linear")


# ============================================================================================ ContentBased
@register_model
class ContentBased(FactorModel):
    """Content-based filtering: a ridge regression per user of their feedback on item attributes.

    With ``f_i = [a_i, 1]`` the item attribute vector plus an intercept, user ``u``'s profile is

    * explicit feedback: ``w_u = argmin sum_{i in R(u)} (r_ui - mu - w . f_i)^2 + lambda ||w||^2
      = (F_u^T F_u + lambda I)^-1 F_u^T (r_u - mu)`` (``mu`` the global mean), the explicit ALS user
      half-step with the item factors fixed to ``F``;
    * implicit feedback: ``w_u = argmin sum_i c_ui (p_ui - w . f_i)^2 + lambda ||w||^2
      = (F^T C^u F + lambda I)^-1 F^T C^u p_u`` over all items with interactions (``c = 1 + alpha r``
      observed, ``c0`` unobserved; cold items are nobody's negatives), one implicit ALS user half-step
      (Hu et al. 2008) with ``Y = F``;

    and the score is ``s(u, i) = mu + w_u . f_i`` (``mu = 0`` for implicit). Items nobody interacted with
    (cold items, present only in ``item_attributes``) are scored from their attributes like any other.
    Users without interactions (cold users from ``user_attributes``) get the mean profile of the warm
    users. ``similar_items`` is the cosine of the attribute vectors ``a_i`` (item-to-item content
    similarity); ``similar_users`` the cosine of the profiles (intercept left out).

    Parameters
    ----------
    regularization : float, default 1.0
        ``lambda > 0``.
    feedback : {"auto", "explicit", "implicit"}, default "auto"
        "auto": explicit when the interactions carry values, implicit otherwise.
    alpha : float, default 1.0
        Implicit confidence scale.
    unobserved_confidence : float, default 1.0
        ``c0`` (implicit).

    Attributes
    ----------
    user_factors_ : ndarray (n_users, F + 1) float32
        Profiles ``w_u``; the last column is the intercept with ``mu`` folded in.
    item_factors_ : ndarray (n_items, F + 1) float32
        ``[a_i, 1]``.
    item_feature_names_ : list of str
    global_mean_ : float
    feedback_ : str
    """

    def __init__(
        self,
        regularization: float = 1.0,
        feedback: str = "auto",
        alpha: float = 1.0,
        unobserved_confidence: float = 1.0,
    ) -> None:
        self.regularization = regularization
        self.feedback = feedback
        self.alpha = alpha
        self.unobserved_confidence = unobserved_confidence

    def fit(self, interactions: Interactions, user_attributes: Any = None, item_attributes: Any = None) -> ContentBased:
        """Fit one ridge profile per user; returns ``self``.

        Parameters
        ----------
        interactions : Interactions
        user_attributes : Attributes or DataFrame, optional
            Only used to add cold users (ids without interactions) to the model's id map.
        item_attributes : Attributes or DataFrame
            Required: the item attribute vectors ``a_i``.
        """
        lam = check_float("regularization", self.regularization, 0.0, strict_min=True)
        mode = check_choice("feedback", self.feedback, _FEEDBACK)
        alpha = check_float("alpha", self.alpha, 0.0)
        c0 = check_float("unobserved_confidence", self.unobserved_confidence, 0.0)
        if item_attributes is None:
            raise InvalidDataError("ContentBased.fit needs item_attributes (the item vectors profiles are built on)")
        data = AttributeData(interactions, user_attributes, item_attributes, "ContentBased")
        inter = data.interactions
        check_finite_values(inter, "ContentBased")
        if mode == "auto":
            mode = "explicit" if inter.has_values else "implicit"
        n_users, n_items = inter.shape
        F1 = np.hstack([data.item_features, np.ones((n_items, 1))])  # f_i = [a_i, 1]
        d = F1.shape[1]
        csr = inter.matrix
        X = np.zeros((n_users, d), dtype=np.float64)
        mu = 0.0
        with single_threaded_blas():
            if mode == "explicit":
                mu = float(csr.data.mean())
                bias = np.zeros(1)
                bad = als_explicit_step(csr.indptr, csr.indices, csr.data.astype(np.float32), F1, np.zeros(n_items),
                                        mu, lam, False, False, X, bias)
            else:
                conf = entry_confidence(csr.data, "linear", alpha, 1.0, inter.entry_name)
                # cold items (no interactions) are not negatives of anyone: keep them out of c0 F^T F
                rated = np.bincount(csr.indices, minlength=n_items) > 0
                F_loss = F1 if rated.all() else np.where(rated[:, None], F1, 0.0)
                failed = half_step(csr.indptr, csr.indices, conf, np.ones_like(conf), F_loss, X, c0=c0, reg=lam,
                                   solver="cholesky")
                bad = int(failed.sum())
        if bad:
            raise ModelFitError(f"ContentBased: {bad} user systems were not positive definite; increase regularization")
        warm = np.diff(csr.indptr) > 0
        if (~warm).any():  # cold users: the mean profile of the warm users
            X[~warm] = X[warm].mean(axis=0)
        X[:, -1] += mu  # s = mu + w . f = (w + mu e_last) . f since the last feature is 1
        if not np.isfinite(X).all():
            raise ModelFitError("ContentBased: profiles are not finite; increase regularization")
        self.user_factors_ = np.ascontiguousarray(X, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(F1, dtype=np.float32)
        self.item_feature_names_ = list(data.item_feature_names)
        self.global_mean_ = mu
        self.feedback_ = mode
        self.interactions_ = inter
        return self

    def _similarity_vectors(self, kind: str) -> np.ndarray:
        # attribute vectors a_i (intercept dropped) and profiles w_u (intercept dropped)
        m = self.item_factors_ if kind == "item" else self.user_factors_
        return self._cached(f"sim_{kind}", (m,), lambda: np.ascontiguousarray(m[:, :-1]))

    def fold_in_user(self, items: Iterable[Hashable], values: Iterable[float] | None = None) -> np.ndarray:
        """Profile ``(F + 1,)`` of a new user from their items, the same closed form as in ``fit``."""
        idx, vals = self._fold_in_inputs(items, values)
        lam = float(self.regularization)
        F1 = self.item_factors_.astype(np.float64)
        Fs = F1[idx]
        d = F1.shape[1]
        if self.feedback_ == "explicit":
            A = Fs.T @ Fs + lam * np.eye(d)
            b = Fs.T @ (vals.astype(np.float64) - self.global_mean_)
        else:
            conf = entry_confidence(vals, "linear", float(self.alpha), 1.0, self._fold_in_namer(idx))
            c0 = float(self.unobserved_confidence)
            A = c0 * (F1.T @ F1) + lam * np.eye(d) + Fs.T @ ((conf - c0)[:, None] * Fs)
            b = Fs.T @ conf
        # minimum norm when collinear attributes and a tiny lambda make A singular (F1^T F1 sums every item)
        w = solve_psd(A, b, rcond=rank_tolerance(d, terms=F1.shape[0]))
        w[-1] += self.global_mean_
        return w.astype(np.float32)

    @property
    def predicts_ratings(self) -> bool:
        """Only an explicit-feedback fit predicts ratings; an implicit one predicts preferences."""
        return getattr(self, "feedback_", None) == "explicit"

    def predict(self, user_ids: Iterable[Hashable], item_ids: Iterable[Hashable]) -> np.ndarray:
        """``mu + w_u . f_i`` of paired known ids, ``(n,)`` float64 (explicit feedback)."""
        self._check_fitted()
        u, i = self._pairs(user_ids, item_ids)
        X, Y = self.user_factors_.astype(np.float64), self.item_factors_.astype(np.float64)
        return np.einsum("ij,ij->i", X[u], Y[i])


# ============================================================================================ HybridALS
@register_model
class HybridALS(FactorModel):
    """Matrix factorization whose factors are tied to attributes, for cold-start users and items.

    Factors are a free part plus a linear map of the attributes,

    .. math:: x_u = p_u + W^T a_u, \\qquad y_i = q_i + E^T b_i

    (a side without attributes has only the free part; with ``free_factors=False`` the free parts are
    absent, ``x_u = W^T a_u``, ``y_i = E^T b_i``). The objective is

    .. math::
        \\sum_{u,i} w_{ui} (t_{ui} - x_u \\cdot y_i)^2 + \\lambda (\\|P\\|^2 + \\|Q\\|^2)
        + \\lambda_a (\\|W\\|^2 + \\|E\\|^2)

    with implicit feedback (``w = c_ui = 1 + alpha r_ui`` observed, ``c0`` unobserved, ``t = p_ui`` in {0, 1};
    Hu et al. 2008) or explicit feedback (observed pairs only, ``w = 1``, ``t = r_ui - mu``). Writing
    ``p_u = x_u - W^T a_u`` it is fitted by exact block coordinate descent (alternating least squares):

    * rows, ``W`` fixed: ``x_u = (Y^T C^u Y + lambda I)^-1 (Y^T C^u t_u + lambda W^T a_u)``
      (:func:`mfrec.kernels.hybrid.prior_ridge_rows`; with ``W = 0`` the plain ALS step);
    * map, ``X`` fixed: ``W = (A^T A + lambda_a / lambda I)^-1 A^T X`` over the rows with interactions;
    * without free factors, ``W = argmin sum w (t - a_u^T W y_i)^2 + lambda_a ||W||^2`` by conjugate
      gradient (:func:`mfrec.kernels.hybrid.attribute_regression`).

    This is the attribute-to-factor mapping of Gantner et al. (2010) and the regression-based latent
    factors of Agarwal & Chen (2009), fitted jointly. Each iteration updates the items (then ``E``) and then
    the users (then ``W``).

    Ids without interactions (cold ids from the attributes) are not part of the loss. After the fit their
    factors come from their attributes, so recommend / recommend_users / similar_items / similar_users all
    work for them:

    * ``cold_map="neighbors"`` (default): the kernel-weighted mean of the factors of the ``neighbors`` warm
      ids nearest in attribute space, ``y = sum_j w_j y_j / sum_j w_j``, ``w_j = exp(-||b - b_j||^2 / h)``
      (the kNN attribute-to-factor map of Gantner et al. 2010;
      :func:`mfrec.kernels.hybrid.neighbor_map`). It follows non-linear effects of attribute combinations
      that a linear map cannot: on ml-100k cold items (genres + year) it lifts ndcg@10 from 0.257 (linear)
      to 0.311, where the per-user linear ContentBased reaches 0.256 (docs/benchmarks.md);
    * ``cold_map="linear"``: ``W^T a_u`` / ``E^T b_i``, the fitted linear maps (free part 0).

    With ``free_factors=False`` every factor is ``W^T a`` / ``E^T b`` by definition and ``cold_map`` is not used.

    Parameters
    ----------
    factors : int, default 32
    regularization : float, default 0.1
        ``lambda`` of the free parts (> 0).
    alpha : float, default 1.0
        Implicit confidence scale.
    attribute_regularization : float, default 1.0
        ``lambda_a`` of the attribute maps (> 0).
    free_factors : bool, default True
    cold_map : {"neighbors", "linear"}, default "neighbors"
        How ids without interactions get factors from their attributes (see above).
    neighbors : int, default 100
        ``k`` of the neighbour map.
    bandwidth : float, default 1.0
        ``h`` of the neighbour map's Gaussian weights, in squared attribute units (one-hot attributes
        differ by 1 per differing category; numeric ones are standardised by :class:`mfrec.Attributes`);
        ``inf`` averages the ``k`` neighbours evenly.
    feedback : {"implicit", "explicit", "auto"}, default "implicit"
    iterations : int, default 15
    unobserved_confidence : float, default 1.0
        ``c0`` (implicit).
    seed : int, SeedSequence, Generator or None, default 0
        Initial factors ~ U[0, 0.01): users, then items (the same draws as ``ImplicitALS``).
    dtype : {"float32", "float64"}, default "float32"
        Storage of the fitted factors (the solves run in float64).

    Attributes
    ----------
    user_factors_, item_factors_ : ndarray (n, factors)
        Full factors ``x_u``, ``y_i`` (cold ids included).
    user_attribute_map_, item_attribute_map_ : ndarray (F, factors) float64 or None
        ``W`` and ``E``.
    user_features_, item_features_ : ndarray (n, F) float32 or None
        The encoded attributes, rows aligned with the id maps.
    user_feature_names_, item_feature_names_ : list of str
    global_mean_ : float
        ``mu`` (explicit; 0 for implicit).
    rating_range_ : list of two floats
    history_ : list of dict
        ``iteration``, ``loss``, ``seconds`` per iteration.
    """

    def __init__(
        self,
        factors: int = 32,
        regularization: float = 0.1,
        alpha: float = 1.0,
        attribute_regularization: float = 1.0,
        free_factors: bool = True,
        feedback: str = "implicit",
        iterations: int = 15,
        unobserved_confidence: float = 1.0,
        seed: Any = 0,
        dtype: str = "float32",
        cold_map: str = "neighbors",
        neighbors: int = 100,
        bandwidth: float = 1.0,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.attribute_regularization = attribute_regularization
        self.free_factors = free_factors
        self.cold_map = cold_map
        self.neighbors = neighbors
        self.bandwidth = bandwidth
        self.feedback = feedback
        self.iterations = iterations
        self.unobserved_confidence = unobserved_confidence
        self.seed = seed
        self.dtype = dtype

    # ------------------------------------------------------------------ fit
    def fit(self, interactions: Interactions, user_attributes: Any = None, item_attributes: Any = None, *,
            client: Any = None) -> HybridALS:
        """Fit by alternating least squares; returns ``self``.

        Parameters
        ----------
        interactions : Interactions
        user_attributes, item_attributes : Attributes or DataFrame indexed by id, optional
            Ids present here but not in ``interactions`` become known cold ids.
        client : distributed.Client, optional
            Fit on a dask cluster (:func:`mfrec.distributed.fit`): row blocks and their attribute rows stay on
            the workers, the same kernels run per block, and the result equals the single-process fit to
            float tolerance (``free_factors=True`` only).

        Raises
        ------
        InvalidDataError
            Empty or invalid interactions / attributes (naming the id at fault).
        InvalidParameterError
            ``free_factors=False`` without attributes on some side.
        ModelFitError
            Non-finite factors or a system that was not positive definite.
        """
        if client is not None:  # the same plan, run by the dask executor
            from mfrec.distributed import fit as distributed_fit

            return distributed_fit(self, interactions, client, user_attributes=user_attributes,
                                   item_attributes=item_attributes)
        return run(self._als_plan(interactions, user_attributes=user_attributes, item_attributes=item_attributes))

    def _als_plan(self, data: Any, validation: Any = None, *, user_attributes: Any = None,
                  item_attributes: Any = None, sharded: bool = False) -> _HybridPlan:
        """The plan of a fit (:mod:`mfrec.models.training`); no validation data (it must be None);
        ``sharded``: the factors live on the workers until the end of the fit."""
        if validation is not None:
            raise InvalidParameterError("HybridALS takes no validation data")
        return _HybridPlan(self, self._prepare_fit(data, user_attributes, item_attributes), sharded)

    def _finish_fit(self, setup: dict[str, Any], X: np.ndarray, Y: np.ndarray, W: np.ndarray | None,
                    E: np.ndarray | None, history: list[dict[str, Any]]) -> HybridALS:
        """Set the fitted attributes from the final factors and maps (shared with the distributed fit).

        ``setup`` is :meth:`_prepare_fit`'s dict; with free factors the cold rows (no interactions, which hold
        ``W^T a`` / ``E^T b`` here) are first recomputed by :meth:`_cold_factors`. Raises ModelFitError on
        non-finite factors.
        """
        A, B, data = setup["A"], setup["B"], setup["data"]
        if setup["free"]:
            X = self._cold_factors(X, A, np.diff(setup["u_side"][0]) > 0)
            Y = self._cold_factors(Y, B, np.diff(setup["i_side"][0]) > 0)
        dt = setup["dt"]
        self.user_factors_ = np.ascontiguousarray(X, dtype=dt)
        self.item_factors_ = np.ascontiguousarray(Y, dtype=dt)
        if not (np.isfinite(self.user_factors_).all() and np.isfinite(self.item_factors_).all()):
            raise ModelFitError("HybridALS: factors are not finite; increase regularization or use dtype='float64'")
        self.user_attribute_map_ = W
        self.item_attribute_map_ = E
        self.user_features_ = None if A is None else A.astype(np.float32)
        self.item_features_ = None if B is None else B.astype(np.float32)
        self.user_feature_names_ = list(data.user_feature_names)
        self.item_feature_names_ = list(data.item_feature_names)
        self.global_mean_ = setup["mu"]
        self.feedback_ = setup["mode"]
        csr = setup["inter"].matrix
        self.rating_range_ = [float(csr.data.min()), float(csr.data.max())]
        self.history_ = history
        self.interactions_ = setup["inter"]
        return self

    def _prepare_fit(self, interactions: Interactions, user_attributes: Any, item_attributes: Any) -> dict[str, Any]:
        """Validated hyperparameters and per-entry arrays of a fit (shared with the distributed fit).

        Returns a dict with ``d, lam, lam_a, alpha, c0, dt, free, iterations, mode, mu, data`` (the
        :class:`AttributeData`), ``inter``, ``u_side`` / ``i_side`` (``(indptr, indices, w, t)`` of the user rows
        and of the item rows, per-entry weights and targets) and the attribute matrices ``A``, ``B`` (or None).
        """
        d = check_int("factors", self.factors, minimum=1)
        lam = check_float("regularization", self.regularization, 0.0, strict_min=True)
        alpha = check_float("alpha", self.alpha, 0.0)
        lam_a = check_float("attribute_regularization", self.attribute_regularization, 0.0, strict_min=True)
        if not isinstance(self.free_factors, bool | np.bool_):
            raise InvalidParameterError(f"free_factors must be True or False, got {self.free_factors!r}")
        free = bool(self.free_factors)
        mode = check_choice("feedback", self.feedback, _FEEDBACK)
        iterations = check_int("iterations", self.iterations, minimum=1)
        c0 = check_float("unobserved_confidence", self.unobserved_confidence, 0.0)
        dt = check_dtype("dtype", self.dtype)
        self._cold_map_params()
        data = AttributeData(interactions, user_attributes, item_attributes, "HybridALS")
        if not free and (data.user_features is None or data.item_features is None):
            raise InvalidParameterError(
                "free_factors=False needs both user_attributes and item_attributes (every factor comes from attributes)"
            )
        inter = data.interactions
        check_finite_values(inter, "HybridALS")
        if mode == "auto":
            mode = "explicit" if inter.has_values else "implicit"
        csr = inter.matrix
        mu = 0.0
        if mode == "implicit":
            weight = entry_confidence(csr.data, "linear", alpha, 1.0, inter.entry_name)
            target = np.ones(csr.nnz)
        else:
            mu = float(csr.data.mean())
            weight = np.ones(csr.nnz)
            target = csr.data.astype(np.float64) - mu
            c0 = 0.0
        # items x users with the per-entry arrays permuted alongside (explicit zeros kept)
        perm = sp.csr_matrix((np.arange(csr.nnz, dtype=np.float64) + 1, csr.indices, csr.indptr), shape=csr.shape)
        t = perm.T.tocsr()
        order = t.data.astype(np.int64) - 1
        u_side = (csr.indptr, csr.indices, weight, target)
        i_side = (t.indptr, t.indices, weight[order], target[order])
        return dict(d=d, lam=lam, lam_a=lam_a, alpha=alpha, c0=float(c0), dt=dt, free=free, iterations=iterations,
                    mode=mode, mu=mu, data=data, inter=inter, u_side=u_side, i_side=i_side,
                    A=data.user_features, B=data.item_features)

    def _cold_map_params(self) -> tuple[str, int, float]:
        """Validated ``(cold_map, neighbors, bandwidth)``."""
        kind = check_choice("cold_map", self.cold_map, _COLD_MAPS)
        k = check_int("neighbors", self.neighbors, minimum=1)
        h = check_float("bandwidth", self.bandwidth, 0.0, strict_min=True)
        return kind, k, h

    def _cold_factors(self, F: np.ndarray, feats: np.ndarray | None, warm: np.ndarray) -> np.ndarray:
        """Factors ``F`` (n, d) with the rows of ids without interactions recomputed from their attributes.

        ``cold_map="linear"`` keeps ``F`` (the fit already set cold rows to ``W^T a``); ``"neighbors"`` replaces
        them by :func:`mfrec.kernels.hybrid.neighbor_map` over the warm rows. A side without attributes has no
        cold rows. Also the last step of a distributed fit, on the gathered factors.
        """
        kind, k, h = self._cold_map_params()
        if feats is None or kind == "linear" or warm.all() or not warm.any():
            return F
        cold = ~warm
        out = np.array(F, copy=True)
        out[cold] = neighbor_map(feats[cold], feats[warm], F[warm], k=k, bandwidth=h)
        return out

    # ------------------------------------------------------------------ scoring
    def _user_embeddings(self, user_idx: np.ndarray) -> np.ndarray:
        X = self.user_factors_[np.asarray(user_idx)]
        if not self.global_mean_:
            return X
        return np.hstack([X, np.full((len(X), 1), self.global_mean_, dtype=X.dtype)])  # [x_u, mu]

    def _item_embeddings(self) -> np.ndarray:
        if not self.global_mean_:
            return self.item_factors_
        Y = self.item_factors_
        return self._cached(
            "item_embeddings", (Y,), lambda: np.ascontiguousarray(np.hstack([Y, np.ones((len(Y), 1), Y.dtype)]))
        )

    @property
    def predicts_ratings(self) -> bool:
        """Only an explicit-feedback fit predicts ratings; an implicit one predicts preferences."""
        return getattr(self, "feedback_", None) == "explicit"

    def predict(self, user_ids: Iterable[Hashable], item_ids: Iterable[Hashable]) -> np.ndarray:
        """``mu + x_u . y_i`` of paired known ids (cold ids included), ``(n,)`` float64.

        Explicit feedback: clipped to the training range. Implicit: the predicted preference, unclipped.
        """
        self._check_fitted()
        u, i = self._pairs(user_ids, item_ids)
        pred = self.global_mean_ + np.einsum(
            "ij,ij->i", self.user_factors_[u].astype(np.float64), self.item_factors_[i].astype(np.float64)
        )
        if self.feedback_ == "explicit":
            lo, hi = self.rating_range_
            pred = np.clip(pred, lo, hi)
        return pred

    def fold_in_user(self, items: Iterable[Hashable], values: Iterable[float] | None = None) -> np.ndarray:
        """Factors ``(factors,)`` of a new user without attributes from their items (free part only).

        ``x = (Y^T C Y + lambda I)^-1 Y^T C t`` with the trained item factors: implicit confidences from
        ``values`` (default 1 each), or explicit targets ``values - mu`` (values required).
        """
        idx, vals = self._fold_in_inputs(items, values)
        Y = self.item_factors_.astype(np.float64)
        Ys = Y[idx]
        d = Y.shape[1]
        lam = float(self.regularization)
        if self.feedback_ == "implicit":
            conf = entry_confidence(vals, "linear", float(self.alpha), 1.0, self._fold_in_namer(idx))
            c0 = float(self.unobserved_confidence)
            Amat = c0 * (Y.T @ Y) + lam * np.eye(d) + Ys.T @ ((conf - c0)[:, None] * Ys)
            b = Ys.T @ conf
        else:
            if values is None:
                raise InvalidDataError("HybridALS with explicit feedback needs the values (ratings) to fold in a user")
            Amat = Ys.T @ Ys + lam * np.eye(d)
            b = Ys.T @ (vals.astype(np.float64) - self.global_mean_)
        # minimum norm where Amat is numerically singular (Y^T Y sums every item)
        return solve_psd(Amat, b, rcond=rank_tolerance(d, terms=Y.shape[0])).astype(np.float32)

    def attribute_factors(self, user_attributes: Any = None, item_attributes: Any = None) -> np.ndarray:
        """Factors ``(n, factors)`` from attributes alone, by the model's ``cold_map``.

        ``"neighbors"``: the kernel-weighted mean of the nearest warm ids' factors (as the fit does for cold
        ids); ``"linear"`` (or ``free_factors=False``): ``features @ map``. Pass exactly one of ``user_attributes`` / ``item_attributes`` as an array ``(n, F)`` encoded like
        ``user_features_`` / ``item_features_`` (for example ``Attributes.transform(df).toarray()``).
        """
        self._check_fitted()
        if (user_attributes is None) == (item_attributes is None):
            raise InvalidParameterError("pass exactly one of user_attributes, item_attributes")
        feats, M, what = (
            (user_attributes, self.user_attribute_map_, "user")
            if user_attributes is not None
            else (item_attributes, self.item_attribute_map_, "item")
        )
        if M is None:
            raise InvalidParameterError(f"this model was fitted without {what} attributes")
        feats = np.asarray(feats.toarray() if sp.issparse(feats) else feats, dtype=np.float64)
        if feats.ndim != 2 or feats.shape[1] != M.shape[0]:
            raise InvalidDataError(f"{what} attributes must have shape (n, {M.shape[0]}), got {feats.shape}")
        if not np.isfinite(feats).all():
            raise InvalidDataError(f"{what} attributes contain NaN or infinite values")
        kind, k, h = self._cold_map_params()
        if kind == "linear" or not self.free_factors:
            return (feats @ M).astype(self.user_factors_.dtype)
        csr = self.interactions_.matrix
        if what == "user":
            warm, ref, F = np.diff(csr.indptr) > 0, self.user_features_, self.user_factors_
        else:
            warm, ref, F = np.bincount(csr.indices, minlength=csr.shape[1]) > 0, self.item_features_, self.item_factors_
        out = neighbor_map(feats, ref[warm].astype(np.float64), F[warm], k=k, bandwidth=h)
        return out.astype(self.user_factors_.dtype)


# ============================================================================================ HybridALS as a plan
def hybrid_block(block: RowBlock, fixed: tuple, small: dict, own: None, with_loss: bool) -> tuple[tuple, dict]:
    """One HybridALS (free factors) half-step on a block: every row with entries solved with its prior.

    With ``m_u = M^T a_u`` (``M`` = ``small["M"]`` (F, d) and ``a_u`` the block's attribute rows; zero without
    attributes), ``x_u = (G0 + sum_i (w_ui - c0) y_i y_i^T)^-1 (sum_i w_ui t_ui y_i + lambda m_u)`` with ``G0 =
    c0 Y^T Y + lambda I`` (:func:`mfrec.kernels.hybrid.prior_half_step`). Rows without entries (cold ids) are
    not part of the loss and come back as zeros. Partial sums: ``failed`` rows, ``AtX`` = ``A_b^T X_b`` (F, d)
    (the cold rows are 0, so over the warm rows) and, with ``with_loss``, the observed loss
    ``sum_{(u,i) in block} [w_ui (t_ui - x_u . y_i)^2 - c0 (x_u . y_i)^2]``.
    """
    (Y,) = fixed
    M, c0 = small["M"], small["c0"]
    n_rows, d = block.stop - block.start, Y.shape[1]
    # the prior is the buffer the solve writes into: prior_ridge_rows reads all of row u's prior before it
    # writes row u (and leaves failed rows at m_u), so one (n_rows, d) array serves as both
    X = np.ascontiguousarray(block.feats @ M) if M is not None else np.zeros((n_rows, d))
    failed = prior_half_step(block.indptr, block.indices, block.values, block.pref, Y, X, X, c0=c0, reg=small["lam"],
                             YtY=small.get("YtY"), n_fixed=small.get("n_fixed"))
    X[np.diff(block.indptr) == 0] = 0.0
    loss = implicit_observed_loss(block.indptr, block.indices, block.values, block.pref, X, Y, c0) if with_loss else 0.0
    AtX = None if M is None else block.feats.T @ X
    return (X,), {"failed": int(failed.sum()), "AtX": AtX, "loss": float(loss)}


def hybrid_row_stats(block: RowBlock, rows: tuple, small: dict) -> dict:
    """What a sharded HybridALS fit needs of a block's new rows: ``gram`` = ``X_b^T X_b`` (float64 (d, d); the
    cold rows are 0, so over the warm rows): the next half-step's ``c0 X^T X`` and the loss's dense terms."""
    return {"gram": rows[0].T @ rows[0]}


def hybrid_map_block(block: RowBlock, fixed: tuple, small: dict, own: None, with_loss: bool) -> tuple[tuple, dict]:
    """HybridALS without free factors: the side's map ``M = argmin sum w (t - a_u^T M y_i)^2 + lambda_a ||M||^2``
    by conjugate gradient over the whole side (one block: the regression couples every row), then ``x_u = M^T a_u``
    for every row. Partial results: the new ``M`` and, with ``with_loss``, the observed loss."""
    (Y,) = fixed
    ip, warm = block.indptr, np.diff(block.indptr) > 0
    rows = np.flatnonzero(warm)
    sub_ip = np.concatenate([[0], np.cumsum(np.diff(ip)[rows])]).astype(np.int64)
    M, _ = attribute_regression(sub_ip, block.indices, block.values, block.pref, block.feats[rows], Y, small["M"],
                                c0=small["c0"], reg=small["lam_a"])
    X = block.feats @ M
    loss = implicit_observed_loss(ip, block.indices, block.values, block.pref, X, Y, small["c0"]) if with_loss else 0.0
    return (X,), {"M": M, "loss": float(loss)}


class _HybridPlan(ALSPlan):
    """HybridALS: items then users, each side followed by its attribute map, in float64.

    State: the factors with the rows of cold ids (no interactions) at 0 during the fit, so they stay out of
    ``c0 Y^T Y`` and of the loss (without free factors they are ``M^T a``, and the fixed side zeroes them). The map
    of a side with free factors is ``M = (A_w^T A_w + lambda_a / lambda I)^-1 A_w^T X_w`` from the summed
    ``A_b^T X_b`` (``A_w^T A_w`` over the warm rows is formed once). At the end cold ids get ``M^T a`` and then the
    model's cold map.
    """

    name = "HybridALS"
    order = ("item", "user")
    loss_side = "user"
    warm_start = False
    nonfinite_hint = "increase regularization"
    row_stats = staticmethod(hybrid_row_stats)
    model_can_stay_sharded = False  # the cold-id step at the end needs both factor matrices

    def __init__(self, model: HybridALS, setup: dict[str, Any], sharded: bool = False) -> None:
        self.model, self.s, self.iterations = model, setup, setup["iterations"]
        d, dt, self.free = setup["d"], setup["dt"], setup["free"]
        self.lam, self.lam_a, self.c0 = setup["lam"], setup["lam_a"], setup["c0"]
        self.feats = {"user": setup["A"], "item": setup["B"]}
        self.parts = {"user": setup["u_side"], "item": setup["i_side"]}
        self.warm = {name: np.diff(self.parts[name][0]) > 0 for name in ("user", "item")}
        n = {name: len(self.warm[name]) for name in ("user", "item")}
        F = max((A.shape[1] for A in self.feats.values() if A is not None), default=0)
        check_factor_memory("HybridALS", d, n["user"], n["item"], 8, get_num_threads(), extra=3.0 * F * (F + d) * 8)
        gen = rng(model.seed)
        self.sharded, self.n = sharded, n
        # ImplicitALS's start (its draws in the factor dtype: users, then items), solved in float64
        self._draws = {name: BlockDraws(gen, n[name], d, 0.01, dt, "random") for name in ("user", "item")}
        self.F: dict[str, np.ndarray | None] = {name: None for name in ("user", "item")}
        self._gram: dict[str, np.ndarray] = {}  # sharded: X^T X of each side, summed from the blocks
        self._atx: dict[str, np.ndarray | None] = {}
        self.maps: dict[str, np.ndarray | None] = {}
        self.grams: dict[str, tuple[np.ndarray, float] | None] = {}
        self.ratio = ratio = self.lam_a / self.lam
        for name in ("user", "item"):
            if not sharded:
                self.F[name] = self.initial_rows(name)(0, n[name])[0]
            A = self.feats[name]
            self.maps[name] = None if A is None else np.zeros((A.shape[1], d))
            if A is None or not self.free:
                self.grams[name] = None
                continue
            self.grams[name] = map_system(A[self.warm[name]], ratio)
        if not self.free:
            self.not_distributable = ("HybridALS(free_factors=False) is not distributed yet (its attribute "
                                      "regression is one global conjugate-gradient solve); fit it without client=, "
                                      "or use free_factors=True")
        self.theoretical_bytes = (n["user"] + n["item"]) * d * 8
        self._observed = 0.0

    @property
    def kernel(self):  # type: ignore[override]
        return hybrid_block if self.free else hybrid_map_block

    def side(self, name: str) -> RowBlock:
        ip, ix, w, t = self.parts[name]
        return RowBlock(0, len(ip) - 1, ip, ix, w, t, None, self.feats[name])

    def fixed(self, name: str) -> tuple[np.ndarray, ...]:
        other = "item" if name == "user" else "user"
        F, warm = self.F[other], self.warm[other]
        # without free factors the cold rows hold M^T a: they must not enter c0 Y^T Y
        return (F if self.free or warm.all() else np.where(warm[:, None], F, 0.0),)

    def small(self, name: str) -> dict[str, Any]:
        small = {"M": self.maps[name], "c0": self.c0, "lam": self.lam, "lam_a": self.lam_a}
        if self.sharded:  # the blocks see only the fixed rows they reference: the whole side's Gram comes along
            other = "item" if name == "user" else "user"
            small.update(YtY=self._gram[other], n_fixed=self.n[other])
        return small

    def initial_rows(self, name: str):
        """ImplicitALS's start in float64, the rows of cold ids at 0 (they stay out of ``c0 Y^T Y``)."""
        draws, warm = self._draws[name], self.warm[name]

        def rows(lo: int, hi: int):
            F = draws.rows(lo, hi).astype(np.float64)
            F[~warm[lo:hi]] = 0.0
            return (F,)

        return rows

    def adopt(self, name: str, rows: tuple) -> None:
        self.F[name] = rows[0]

    def update(self, name: str, own: tuple | None, partial: dict) -> None:
        if own is None:
            self._gram[name], self._atx[name] = partial["gram"], partial.get("AtX")
        else:
            self.adopt(name, own)
        if "AtX" not in partial and "M" not in partial:  # a sharded fit's starting statistics
            return
        if not self.free:
            self.maps[name] = partial["M"]
        elif self.grams[name] is not None:
            G, rcond = self.grams[name]
            self.maps[name] = solve_psd(G, partial["AtX"], rcond=rcond)
        if name == self.loss_side:
            self._observed = float(partial["loss"])

    def failure_message(self, name: str, n_failed: int) -> str:
        return f"HybridALS: {n_failed} {name} systems were not positive definite; increase regularization"

    def entry(self) -> dict[str, float]:
        """``observed + c0 <X_w^T X_w, Y_w^T Y_w> + lambda ||free parts||^2 + lambda_a ||maps||^2``."""
        if self.sharded:
            return self._sharded_entry()
        Xw, Yw = self.F["user"][self.warm["user"]], self.F["item"][self.warm["item"]]
        loss = self._observed + (self.c0 * float(np.sum((Xw.T @ Xw) * (Yw.T @ Yw))) if self.c0 else 0.0)
        if self.free:
            for name, Fw in (("user", Xw), ("item", Yw)):
                M = self.maps[name]
                P = Fw if M is None else Fw - self.feats[name][self.warm[name]] @ M
                loss += self.lam * float(np.sum(P * P))
        loss += self.lam_a * sum(float(np.sum(M * M)) for M in self.maps.values() if M is not None)
        return {"loss": float(loss)}

    def _sharded_entry(self) -> dict[str, float]:
        """:meth:`entry` from the summed block statistics: with ``G = X_w^T X_w`` and ``A_w^T X_w`` (the
        ``AtX`` the map was solved from), ``||X_w - A_w M||^2 = tr G - 2 <A_w^T X_w, M> + <A_w^T A_w M, M>``."""
        loss = self._observed + (self.c0 * float(np.sum(self._gram["user"] * self._gram["item"])) if self.c0 else 0.0)
        for name in ("user", "item"):
            G, M = self._gram[name], self.maps[name]
            pen = float(np.trace(G))
            if M is not None:
                AtA = self.grams[name][0] - self.ratio * np.eye(M.shape[0])
                pen += -2.0 * float(np.sum(self._atx[name] * M)) + float(np.sum((AtA @ M) * M))
            loss += self.lam * pen
        loss += self.lam_a * sum(float(np.sum(M * M)) for M in self.maps.values() if M is not None)
        return {"loss": float(loss)}

    def publish(self) -> None:
        if self.F["user"] is None:  # a sharded fit: the rows are on the workers
            return
        dt = self.s["dt"]
        self.model.user_factors_ = self.F["user"].astype(dt)
        self.model.item_factors_ = self.F["item"].astype(dt)

    def local_context(self):
        return threads_and_blas(None, blas_single=True)

    def finish(self, history: list, best_iteration: int) -> None:
        X, Y = self.F["user"], self.F["item"]
        for name, F in (("user", X), ("item", Y)):
            A, M, cold = self.feats[name], self.maps[name], ~self.warm[name]
            if self.free and A is not None and cold.any():
                F[cold] = A[cold] @ M  # the linear map; the model's cold map may then replace it
        self.model._finish_fit(self.s, X, Y, self.maps["user"], self.maps["item"], history)
