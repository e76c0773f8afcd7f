"""Explicit-feedback matrix factorization: :class:`ExplicitALS` and :class:`SGDFactorization`.

Both fit the biased model of Koren, Bell & Volinsky (2009)

    r_hat_ui = mu + b_u + b_i + x_u . y_i

to observed ratings by minimising

    L = sum_{(u,i) in Omega} (r_ui - r_hat_ui)^2 + sum_u (lambda_u ||x_u||^2 + lambda_bu b_u^2)
                                                  + sum_i (lambda_i ||y_i||^2 + lambda_bi b_i^2)

(``lambda_u = lambda_i = regularization``, or ``regularization * n`` for a row with n ratings when
frequency-weighted; the bias penalties use ``bias_regularization``, which defaults to ``regularization``,
scaled the same way)

(``mu`` is the training mean, held fixed; with ``biases=False`` the model is the plain ``x_u . y_i`` with no
``mu`` and no biases). :class:`ExplicitALS` alternates exact ridge solves per user and per item
(:mod:`mfrec.kernels.als_explicit`); :class:`SGDFactorization` runs shuffled stochastic-gradient epochs
(:mod:`mfrec.kernels.sgd`).

Predictions are made in the caller's own ids and clipped to the training rating range. A user or item the
model has never seen is not an error: its factors and bias are taken as zero, so the prediction falls back to
``mu + b_i`` (unknown user), ``mu + b_u`` (unknown item) or ``mu`` (both); without biases it is the training
mean. Every fallback is counted in ``unknown_predictions_`` (pairs of the last :meth:`predict` call).

For ranking (the four scenarios of the shared model base) the models expose augmented embeddings
``[x_u, b_u + mu, 1] . [y_i, 1, b_i] = r_hat_ui``, so recommendation scores are the (unclipped) predicted
ratings.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from mfrec._params import check_dtype, check_float, check_int
from mfrec._random import rng
from mfrec.data.interactions import Interactions
from mfrec.exceptions import InvalidDataError, InvalidParameterError, ModelFitError
from mfrec._progress import report
from mfrec.kernels.als_explicit import als_explicit_step, explicit_sse, predict_pairs
from mfrec.kernels.sgd import sgd_epoch, svdpp_epoch
from mfrec.kernels.threads import limit_threads
from mfrec.models.base import FactorModel
from mfrec.persist import register_model

__all__ = ["ExplicitALS", "SGDFactorization"]


class _ExplicitModel(FactorModel):
    """Shared plumbing of the explicit models: data checks, prediction with fallbacks, history, early stopping.

    Fitted attributes
    -----------------
    interactions_ : Interactions
        The training data (id maps, seen items).
    user_factors_ : ndarray, shape (n_users, factors), ``dtype``, C-contiguous
    item_factors_ : ndarray, shape (n_items, factors), ``dtype``, C-contiguous
    user_bias_ : ndarray, shape (n_users,)  (zeros when ``biases=False``)
    item_bias_ : ndarray, shape (n_items,)  (zeros when ``biases=False``)
    global_bias_ : float
        ``mu``: the training mean with biases, 0 without.
    rating_mean_ : float
        Mean training rating (the fallback of a model without biases).
    rating_range_ : list of two floats
        [min, max] training rating; predictions are clipped to it.
    history_ : list of dict
        One entry per iteration/epoch: ``iteration``, ``loss`` (the objective L above), ``rmse`` (training),
        ``val_rmse`` (when validation data was given) and ``seconds`` (cumulative fit time).
    best_iteration_ : int
        The iteration whose factors were kept (the last one, or the best on validation with early stopping).
    unknown_predictions_ : int
        How many pairs of the last :meth:`predict` call involved an unknown user or item (bias fallback).
    """

    _iteration_param = "iterations"

    # ------------------------------------------------------------------ shared checks
    def _check_common(self) -> dict[str, Any]:
        return {
            "factors": check_int("factors", self.factors, minimum=1),
            "regularization": check_float("regularization", self.regularization, minimum=0.0, strict_min=True),
            "bias_regularization": None
            if self.bias_regularization is None
            else check_float("bias_regularization", self.bias_regularization, minimum=0.0, strict_min=True),
            "iterations": check_int(self._iteration_param, getattr(self, self._iteration_param), minimum=1),
            "dtype": check_dtype("dtype", self.dtype),
            "early_stopping_rounds": None
            if self.early_stopping_rounds is None
            else check_int("early_stopping_rounds", self.early_stopping_rounds, minimum=1),
        }

    @staticmethod
    def _check_data(interactions: Any, name: str = "interactions") -> Interactions:
        if not isinstance(interactions, Interactions):
            raise InvalidDataError(
                f"{name} must be an mfrec.Interactions (build one with Interactions.from_frame or "
                f"read_interactions), got {type(interactions).__name__}"
            )
        if interactions.nnz == 0:
            raise InvalidDataError(f"{name} hold no ratings: nothing to fit")
        if not interactions.has_values:
            raise InvalidDataError(
                f"{name} have no rating values (no value column was given); explicit models need ratings"
            )
        return interactions

    def _start_fit(self, interactions: Interactions, dtype: np.dtype) -> None:
        data = interactions.matrix.data
        self.interactions_ = interactions
        self.rating_range_ = [float(data.min()), float(data.max())]
        self.rating_mean_ = float(np.mean(data, dtype=np.float64))
        self.global_bias_ = self.rating_mean_ if self.biases else 0.0
        self.history_ = []
        self.unknown_predictions_ = 0

    def _validation_pairs(self, validation: Interactions | None):
        """(user_idx, item_idx, ratings) of the validation data in the training index space (-1 = unknown)."""
        if validation is None:
            return None
        validation = self._check_data(validation, "validation")
        rows, cols, vals = validation.coo()
        u_map = self.interactions_.user_index_map.get_indexer(validation.user_index_map).astype(np.int32)
        i_map = self.interactions_.item_index_map.get_indexer(validation.item_index_map).astype(np.int32)
        return u_map[rows], i_map[cols], vals.astype(np.float64)

    def _predict_idx(self, user_idx: np.ndarray, item_idx: np.ndarray, clip: bool = True) -> np.ndarray:
        """Predictions for index pairs (-1 = unknown -> bias fallback), float64, clipped when ``clip``."""
        out = np.empty(len(user_idx), dtype=np.float64)
        predict_pairs(
            np.ascontiguousarray(user_idx, dtype=np.int64),
            np.ascontiguousarray(item_idx, dtype=np.int64),
            self.user_factors_,
            self.user_bias_,
            self.item_factors_,
            self.item_bias_,
            float(self.global_bias_),
            bool(self.biases),
            out,
        )
        if not self.biases:
            out[(user_idx < 0) | (item_idx < 0)] = self.rating_mean_
        if clip:
            np.clip(out, self.rating_range_[0], self.rating_range_[1], out=out)
        return out

    def _bias_reg(self) -> float:
        """lambda_b: ``bias_regularization``, or ``regularization`` when it is None."""
        return float(self.regularization if self.bias_regularization is None else self.bias_regularization)

    def _objective(self, csr, reg: float, frequency_weighted: bool) -> tuple[float, float]:
        """(L, training RMSE) for the current factors."""
        sse = explicit_sse(
            csr.indptr, csr.indices, csr.data, self.user_factors_, self.user_bias_, self.item_factors_,
            self.item_bias_, float(self.global_bias_), bool(self.biases),
        )
        s_u = np.ones(csr.shape[0])
        s_i = np.ones(csr.shape[1])
        if frequency_weighted:
            s_u = np.maximum(np.diff(csr.indptr), 1).astype(np.float64)
            s_i = np.maximum(np.bincount(csr.indices, minlength=csr.shape[1]), 1).astype(np.float64)
        norms_u = np.einsum("ij,ij->i", self.user_factors_, self.user_factors_, dtype=np.float64)
        norms_i = np.einsum("ij,ij->i", self.item_factors_, self.item_factors_, dtype=np.float64)
        loss = float(sse + reg * (s_u @ norms_u + s_i @ norms_i))
        if self.biases:  # lambda_b (b_u^2, b_i^2), scaled like the factor penalty
            breg = self._bias_reg()
            loss += breg * float(s_u @ self.user_bias_.astype(np.float64) ** 2
                                 + s_i @ self.item_bias_.astype(np.float64) ** 2)
        return loss, float(np.sqrt(sse / max(csr.nnz, 1)))

    def _record(self, iteration: int, loss: float, rmse: float, val, started: float) -> float | None:
        entry: dict[str, Any] = {"iteration": iteration, "loss": loss, "rmse": rmse}
        val_rmse = None
        if val is not None:
            pred = self._predict_idx(val[0], val[1])
            val_rmse = float(np.sqrt(np.mean((pred - val[2]) ** 2)))
            entry["val_rmse"] = val_rmse
        entry["seconds"] = time.perf_counter() - started
        self.history_.append(entry)
        report("iteration", model=type(self).__name__, total=getattr(self, self._iteration_param), **entry)
        return val_rmse

    def _check_finite(self) -> None:
        for name in ("user_factors_", "item_factors_", "user_bias_", "item_bias_"):
            if not np.isfinite(getattr(self, name)).all():
                raise ModelFitError(
                    f"{type(self).__name__}: training produced non-finite values in {name}; increase "
                    "regularization, lower the learning rate, or use dtype='float64'"
                )

    def _train_loop(self, step, n_iter: int, val, patience: int | None, objective) -> None:
        """Run ``step()`` up to ``n_iter`` times, recording history; early-stop on validation RMSE."""
        started = time.perf_counter()
        best = (np.inf, 0, None)
        for it in range(1, n_iter + 1):
            step()
            loss, rmse = objective()
            if not np.isfinite(loss):
                self._check_finite()
                raise ModelFitError(
                    f"{type(self).__name__}: the training loss became non-finite at iteration {it}; increase "
                    "regularization or lower the learning rate"
                )
            val_rmse = self._record(it, loss, rmse, val, started)
            self.best_iteration_ = it
            if val_rmse is not None and patience is not None:
                if val_rmse < best[0]:
                    state = tuple(getattr(self, a).copy() for a in self._state_names)
                    best = (val_rmse, it, state)
                elif it - best[1] >= patience:
                    break
        if best[2] is not None and best[1] != self.best_iteration_:
            for name, arr in zip(self._state_names, best[2]):
                setattr(self, name, arr)
            self.best_iteration_ = best[1]
        self._check_finite()

    _state_names = ("user_factors_", "item_factors_", "user_bias_", "item_bias_")

    # ------------------------------------------------------------------ public inference
    def predict(self, user_ids: Any, item_ids: Any, clip: bool = True) -> np.ndarray:
        """Predicted ratings for pairs given in the caller's own ids.

        Parameters
        ----------
        user_ids, item_ids : id or sequence of ids, same length
            External ids; a pair whose user or item is unknown falls back to the biases (see the module
            docstring) and is counted in ``unknown_predictions_``.
        clip : bool
            Clip to the training rating range ``rating_range_`` (default True).

        Returns
        -------
        numpy.ndarray of float64, shape (n_pairs,)
        """
        self._check_fitted()
        u, i = self._pairs(user_ids, item_ids, unknown="ignore")
        u, i = u.astype(np.int64), i.astype(np.int64)
        self.unknown_predictions_ = int(((u < 0) | (i < 0)).sum())
        return self._predict_idx(u, i, clip=clip)

    # ------------------------------------------------------------------ embeddings for the shared base
    def _user_embeddings(self, user_idx: np.ndarray) -> np.ndarray:
        """``[x_u, b_u + mu, 1]`` (biases) or ``x_u``; dot with :meth:`_item_embeddings` gives r_hat_ui."""
        x = self.user_factors_[user_idx]
        if not self.biases:
            return x
        extra = np.empty((len(x), 2), dtype=x.dtype)
        extra[:, 0] = self.user_bias_[user_idx] + self.global_bias_
        extra[:, 1] = 1.0
        return np.ascontiguousarray(np.hstack([x, extra]))

    def _item_embeddings(self) -> np.ndarray:
        """``[y_i, 1, b_i]`` (biases) or ``y_i``, shape (n_items, d') ."""
        y = self.item_factors_
        if not self.biases:
            return y
        extra = np.empty((len(y), 2), dtype=y.dtype)
        extra[:, 0] = 1.0
        extra[:, 1] = self.item_bias_
        return np.ascontiguousarray(np.hstack([y, extra]))

    def fold_in_user(self, items: Any, values: Any = None) -> np.ndarray:
        """Factors of a new user from their ratings, by the same closed-form ridge solve as an ALS user step.

        Solves ``min (r_i - mu - b_u - b_i - x . y_i)^2 + lambda (||x||^2 + b_u^2)`` over the rated items
        (an unknown or repeated item, or a non-finite rating, raises; ``b_u`` is penalised by
        ``bias_regularization`` when it is set). ``values`` are the ratings (required: explicit models need
        them). Returns the user embedding ``[x, b_u + mu, 1]`` (biases) or ``x``, so that its dot with the item
        embeddings is the predicted rating.
        """
        if values is None:
            raise InvalidParameterError(
                f"{type(self).__name__}.fold_in_user needs the new user's ratings (values=...)"
            )
        idx, vals = self._fold_in_inputs(items, values)  # unknown / repeated items and non-finite values raise
        idx = idx.astype(np.int64)
        values = vals.astype(np.float64)
        order = np.argsort(idx, kind="stable")
        indptr = np.array([0, len(idx)], dtype=np.int64)
        d = self.user_factors_.shape[1]
        x = np.zeros((1, d), dtype=np.float64)
        b = np.zeros(1, dtype=np.float64)
        scale = max(len(idx), 1) if getattr(self, "frequency_weighted", False) else 1
        als_explicit_step(
            indptr, idx[order].astype(np.int32), values[order].astype(np.float32),
            self.item_factors_.astype(np.float64), self.item_bias_.astype(np.float64), float(self.global_bias_),
            float(self.regularization) * scale, False, bool(self.biases), x, b, self._bias_reg() * scale,
        )
        if not self.biases:
            return x[0].astype(self.user_factors_.dtype)
        return np.r_[x[0], b[0] + self.global_bias_, 1.0].astype(self.user_factors_.dtype)


@register_model
class ExplicitALS(_ExplicitModel):
    """Biased matrix factorization of explicit ratings by alternating least squares.

    Minimises ``sum_{(u,i) observed} (r_ui - mu - b_u - b_i - x_u . y_i)^2 + lambda_u (||x_u||^2 + b_u^2)
    + lambda_i (||y_i||^2 + b_i^2)`` by alternating exact ridge solves: with the items fixed, every user's
    ``[x_u, b_u]`` is ``(F^T F + lambda_u I)^-1 F^T t`` with features ``F = [y_i, 1]`` and targets
    ``t = r_ui - mu - b_i`` over the user's ratings, and symmetrically for items (Koren et al. 2009;
    Zhou et al. 2008). Each half-step minimises the objective exactly, so the training loss never increases.

    Parameters
    ----------
    factors : int, default 5
        Latent dimension d >= 1.
    regularization : float, default 10.0
        lambda > 0, applied to every row's factors ``||x_u||^2`` (and to its bias unless
        ``bias_regularization`` is given). With ``frequency_weighted=True`` a row with n ratings uses
        ``lambda * n`` instead (then lambda ~ 0.1-0.15 is the useful range on MovieLens).
    iterations : int, default 25
        ALS sweeps (one user half-step + one item half-step each).
    biases : bool, default True
        Learn ``mu + b_u + b_i``; False fits the plain ``x_u . y_i``.
    bias_regularization : float or None, default None
        lambda_b > 0 penalising ``b_u^2`` and ``b_i^2`` (Surprise's ``reg_bu``/``reg_bi``), scaled by the row's
        count like lambda when ``frequency_weighted``; None uses ``regularization`` (the objective of the
        issue). Biases usually want less shrinkage than factors.
    frequency_weighted : bool, default False
        Scale lambda by each row's number of ratings (ALS-WR, Zhou et al. 2008, as in Spark MLlib).
    seed : int, SeedSequence, Generator or None, default 0
        Initial item factors ~ N(0, 0.1^2); the solves are deterministic, so a seed reproduces the model
        exactly, whatever the number of threads.
    dtype : {"float32", "float64"}, default "float32"
        Storage of the factors (the solves accumulate in float64).
    num_threads : int, default 0
        kernel threads for the solves (0 = the pool's, :mod:`mfrec.kernels.threads`).
    early_stopping_rounds : int or None, default None
        With ``validation`` given to :meth:`fit`: stop after this many iterations without a better validation
        RMSE and keep the best iteration's factors.

    Defaults were chosen on an inner holdout of MovieLens-100K ``u1.base`` only (see docs/benchmarks.md).
    """

    def __init__(
        self,
        factors: int = 5,
        regularization: float = 10.0,
        iterations: int = 25,
        biases: bool = True,
        frequency_weighted: bool = False,
        seed: Any = 0,
        dtype: str = "float32",
        num_threads: int = 0,
        early_stopping_rounds: int | None = None,
        bias_regularization: float | None = None,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.iterations = iterations
        self.biases = biases
        self.bias_regularization = bias_regularization
        self.frequency_weighted = frequency_weighted
        self.seed = seed
        self.dtype = dtype
        self.num_threads = num_threads
        self.early_stopping_rounds = early_stopping_rounds

    def fit(
        self, interactions: Interactions, validation: Interactions | None = None, *, client: Any = None
    ) -> ExplicitALS:
        """Fit on explicit ratings; ``validation`` (any id maps) adds ``val_rmse`` to ``history_``.

        With a dask ``client`` the same half-steps run per row block on the cluster
        (:func:`mfrec.distributed.fit`; no validation there).

        Returns
        -------
        self
        """
        if client is not None:  # thin delegation: the distributed driver runs the same kernels per block
            if validation is not None:
                raise InvalidParameterError("validation is not supported with client=...; fit without it")
            from mfrec.distributed import fit as distributed_fit

            return distributed_fit(self, interactions, client)
        p = self._check_common()
        threads = check_int("num_threads", self.num_threads, minimum=0)
        interactions = self._check_data(interactions)
        dtype = p["dtype"]
        self._start_fit(interactions, dtype)
        val = self._validation_pairs(validation)
        csr = interactions.matrix
        csc = csr.T.tocsr()  # items x users, for the item half-step
        n_users, n_items = csr.shape
        d = p["factors"]
        gen = rng(self.seed)
        self.user_factors_ = np.zeros((n_users, d), dtype=dtype)
        self.item_factors_ = np.ascontiguousarray(gen.normal(0.0, 0.1, size=(n_items, d)).astype(dtype))
        self.user_bias_ = np.zeros(n_users, dtype=dtype)
        self.item_bias_ = np.zeros(n_items, dtype=dtype)
        reg, fw, mu, biases = p["regularization"], bool(self.frequency_weighted), float(self.global_bias_), bool(self.biases)
        breg = self._bias_reg()

        def step() -> None:
            bad = als_explicit_step(csr.indptr, csr.indices, csr.data, self.item_factors_, self.item_bias_, mu,
                                    reg, fw, biases, self.user_factors_, self.user_bias_, breg)
            bad += als_explicit_step(csc.indptr, csc.indices, csc.data, self.user_factors_, self.user_bias_, mu,
                                     reg, fw, biases, self.item_factors_, self.item_bias_, breg)
            if bad:
                raise ModelFitError(
                    f"ExplicitALS: {bad} ridge systems were not positive definite (non-finite factors?); "
                    "increase regularization or use dtype='float64'"
                )

        with limit_threads(threads or None), threadpool_limits(limits=1, user_api="blas"):
            self._train_loop(step, p["iterations"], val, p["early_stopping_rounds"],
                             lambda: self._objective(csr, reg, fw))
        return self


@register_model
class SGDFactorization(_ExplicitModel):
    """Biased matrix factorization (Funk / Koren "SVD") by stochastic gradient descent.

    Each epoch visits the ratings in a fresh random order (drawn from ``seed``) and, with
    ``e = r_ui - (mu + b_u + b_i + x_u . y_i)``, steps ``b_u += lr (e - lambda_b b_u)``,
    ``b_i += lr (e - lambda_b b_i)``, ``x_u += lr (e y_i - lambda x_u)``, ``y_i += lr (e x_u - lambda y_i)``:
    the negative gradient of ``1/2 e^2 + 1/2 lambda_b (b_u^2 + b_i^2) + 1/2 lambda (||x_u||^2 + ||y_i||^2)``
    (Koren, Bell & Volinsky 2009). Epoch ``t`` (from 1) uses the step ``lr * learning_rate_decay^(t-1)``
    (the per-epoch decay of Koren's Netflix-prize SGD and MyMediaLite). ``history_`` reports the full
    objective of the module docstring (uniform lambda) after every epoch. Epochs run sequentially, so a seed
    reproduces the factors exactly.

    Parameters
    ----------
    factors : int, default 50
    learning_rate : float, default 0.015
        Step size gamma > 0.
    regularization : float, default 0.1
        lambda > 0 on the factors (and on the biases unless ``bias_regularization`` is given).
    epochs : int, default 30
    biases : bool, default True
    bias_regularization : float or None, default None
        lambda_b > 0 on ``b_u`` and ``b_i`` (Surprise's ``reg_bu``/``reg_bi``); None uses ``regularization``.
    learning_rate_decay : float in (0, 1], default 1.0
        The step is multiplied by this after every epoch (1 = constant step).
    implicit_feedback : bool, default False
        SVD++ (Koren 2008): every user's factor becomes ``p_u + |N(u)|^-1/2 sum_{j in N(u)} z_j`` with learned
        implicit item factors ``z_j`` over the items ``N(u)`` the user rated in training (penalised by lambda),
        trained user by user (:func:`mfrec.kernels.sgd.svdpp_epoch`: users in a fresh random order each epoch,
        each user's ratings shuffled). After ``fit`` ``user_factors_`` holds that *effective* user factor, so
        prediction, the four scenarios and persistence are unchanged; :meth:`fold_in_user` still solves the
        plain ridge problem for ``x`` (it does not form a new user's implicit sum). ``history_["loss"]`` is
        ``SSE + lambda (||P||^2 + ||Y||^2 + ||Z||^2) + lambda_b (||b_u||^2 + ||b_i||^2)``.
    init_std : float, default 0.1
        Initial factors ~ N(0, init_std^2); biases start at 0.
    seed : int, SeedSequence, Generator or None, default 0
    dtype : {"float32", "float64"}, default "float32"
    early_stopping_rounds : int or None, default None
        With ``validation`` given to :meth:`fit`: stop after this many epochs without a better validation RMSE
        and keep the best epoch's factors.

    Defaults were chosen on an inner holdout of MovieLens-100K ``u1.base`` only (see docs/benchmarks.md).
    """

    _iteration_param = "epochs"

    def __init__(
        self,
        factors: int = 50,
        learning_rate: float = 0.015,
        regularization: float = 0.1,
        epochs: int = 30,
        biases: bool = True,
        init_std: float = 0.1,
        seed: Any = 0,
        dtype: str = "float32",
        early_stopping_rounds: int | None = None,
        bias_regularization: float | None = None,
        learning_rate_decay: float = 1.0,
        implicit_feedback: bool = False,
    ) -> None:
        self.implicit_feedback = implicit_feedback
        self.factors = factors
        self.learning_rate = learning_rate
        self.bias_regularization = bias_regularization
        self.learning_rate_decay = learning_rate_decay
        self.regularization = regularization
        self.epochs = epochs
        self.biases = biases
        self.init_std = init_std
        self.seed = seed
        self.dtype = dtype
        self.early_stopping_rounds = early_stopping_rounds

    def fit(self, interactions: Interactions, validation: Interactions | None = None) -> SGDFactorization:
        """Fit on explicit ratings; ``validation`` (any id maps) adds ``val_rmse`` to ``history_``.

        Returns
        -------
        self
        """
        p = self._check_common()
        lr = check_float("learning_rate", self.learning_rate, minimum=0.0, strict_min=True)
        decay = check_float("learning_rate_decay", self.learning_rate_decay, minimum=0.0, maximum=1.0,
                            strict_min=True)
        init_std = check_float("init_std", self.init_std, minimum=0.0)
        interactions = self._check_data(interactions)
        dtype = p["dtype"]
        self._start_fit(interactions, dtype)
        val = self._validation_pairs(validation)
        csr = interactions.matrix
        users, items, ratings = interactions.coo()
        users = np.ascontiguousarray(users, dtype=np.int32)
        n_users, n_items = csr.shape
        d = p["factors"]
        gen = rng(self.seed)
        self.user_factors_ = np.ascontiguousarray(gen.normal(0.0, init_std, size=(n_users, d)).astype(dtype))
        self.item_factors_ = np.ascontiguousarray(gen.normal(0.0, init_std, size=(n_items, d)).astype(dtype))
        self.user_bias_ = np.zeros(n_users, dtype=dtype)
        self.item_bias_ = np.zeros(n_items, dtype=dtype)
        reg, mu, biases = p["regularization"], float(self.global_bias_), bool(self.biases)
        breg = self._bias_reg()
        nnz = len(ratings)
        epoch = [0]

        if self.implicit_feedback:
            self._fit_svdpp(csr, gen, init_std, lr, decay, reg, breg, mu, biases, val, p)
            return self

        def step() -> None:
            order = gen.permutation(nnz)
            step_size = lr * decay ** epoch[0]  # gamma_t = gamma * decay^(t-1)
            epoch[0] += 1
            sgd_epoch(users, items, ratings, order, self.user_factors_, self.user_bias_, self.item_factors_,
                      self.item_bias_, mu, step_size, reg, breg, biases)

        self._train_loop(step, p["iterations"], val, p["early_stopping_rounds"],
                         lambda: self._objective(csr, reg, False))
        return self

    def _fit_svdpp(self, csr, gen, init_std, lr, decay, reg, breg, mu, biases, val, p) -> None:
        """SVD++ training: ``P`` (explicit user factors) and ``Z`` (implicit item factors) live here; after every
        epoch ``user_factors_ = P + S Z`` with ``S`` the users x items pattern scaled by ``|N(u)|^-1/2``."""
        import scipy.sparse as sp

        dtype = self.user_factors_.dtype
        n_users, n_items = csr.shape
        indptr = csr.indptr.astype(np.int64)
        indices = np.ascontiguousarray(csr.indices, dtype=np.int32)
        counts = np.diff(indptr)
        P = self.user_factors_.copy()
        Z = np.ascontiguousarray(gen.normal(0.0, init_std, size=(n_items, P.shape[1])).astype(dtype))
        scale = 1.0 / np.sqrt(np.maximum(counts, 1))
        S = sp.csr_matrix((np.repeat(scale, counts).astype(dtype), indices, indptr), shape=(n_users, n_items))
        row_of = np.repeat(np.arange(n_users, dtype=np.int64), counts)
        scratch = np.empty((2, P.shape[1]), dtype=np.float64)
        epoch = [0]

        def effective() -> None:
            self.user_factors_ = np.ascontiguousarray((P + S @ Z).astype(dtype))

        def step() -> None:
            perm = gen.permutation(csr.nnz)
            positions = perm[np.argsort(row_of[perm], kind="stable")]  # each user's range, shuffled
            user_order = gen.permutation(n_users).astype(np.int64)
            step_size = lr * decay ** epoch[0]
            epoch[0] += 1
            svdpp_epoch(indptr, indices, csr.data, positions, user_order, P, self.user_bias_, self.item_factors_,
                        self.item_bias_, Z, mu, step_size, reg, breg, biases, True, scratch)
            effective()

        def objective() -> tuple[float, float]:
            sse = explicit_sse(indptr, indices, csr.data, self.user_factors_, self.user_bias_, self.item_factors_,
                               self.item_bias_, mu, biases)
            loss = sse + reg * sum(float(np.sum(a.astype(np.float64) ** 2)) for a in (P, self.item_factors_, Z))
            if biases:
                loss += breg * float(np.sum(self.user_bias_.astype(np.float64) ** 2)
                                     + np.sum(self.item_bias_.astype(np.float64) ** 2))
            return float(loss), float(np.sqrt(sse / max(csr.nnz, 1)))

        effective()
        self._train_loop(step, p["iterations"], val, p["early_stopping_rounds"], objective)
