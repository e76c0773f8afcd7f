"""Explicit-feedback matrix factorization: :class:`ExplicitALS` and :class:`SGDFactorization`.

Both fit the biased model of Koren, Bell & Volinsky (2009)

    r_hat_ui = mu + b_u + b_i + x_u . y_i

to observed ratings by minimising

    L = sum_{(u,i) in Omega} (r_ui - r_hat_ui)^2 + sum_u (lambda_u ||x_u||^2 + lambda_bu b_u^2)
                                                  + sum_i (lambda_i ||y_i||^2 + lambda_bi b_i^2)

(``lambda_u = lambda_i = regularization`` with ``regularization_scaling="none"``, or ``regularization * n`` for
a row with n ratings with ``"count"``, the ALS-WR penalty of Zhou et al. 2008 and Spark MLlib; the bias penalties
use ``bias_regularization``, which defaults to ``regularization``, scaled the same way). The classic per-rating
SGD step penalises a row once per rating, so it is the ``"count"`` objective: SGDFactorization's default.

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
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from mfrec import _aligned
from mfrec._params import check_bool, check_choice, check_dtype, check_float, check_int
from mfrec._random import rng
from mfrec.data.interactions import Interactions
from mfrec.exceptions import InvalidDataError, InvalidParameterError, ModelFitError
from mfrec.kernels import _args
from mfrec.kernels.als_explicit import als_explicit_step, explicit_sse, predict_pairs
from mfrec.kernels.sgd import row_table, sgd_epoch_shuffled, shuffle_keys, svdpp_effective, svdpp_epoch_shuffled
from mfrec.kernels.slices import column_counts, transpose
from mfrec.models import training
from mfrec.models.base import FactorModel
from mfrec.kernels.threads import get_num_threads
from mfrec.models.training import (
    ALSPlan,
    RowBlock,
    Tracker,
    all_finite,
    check_factor_memory,
    column_slicer,
    row_block,
    run,
    threads_and_blas,
)
from mfrec.persist import register_model

#: ``regularization_scaling``: lambda as it is, or times each row's number of ratings.
_SCALINGS = ("none", "count")
#: ExplicitALS's bias penalty with uniform scaling (``bias_regularization="auto"``): biases want less shrinkage than
#: factors; chosen on inner holdouts of ml-100k ``u1.base`` (RMSE 0.9206 vs 0.9231 with lambda_b = lambda = 10) and
#: of the synthetic demo's training part (0.7635 vs 0.7788; Biases: 0.7717), docs/benchmarks.md.
AUTO_BIAS_REGULARIZATION = 3.0

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
            "bias_regularization": self._bias_reg(),
            "iterations": check_int(self._iteration_param, getattr(self, self._iteration_param), minimum=1),
            "dtype": check_dtype("dtype", self.dtype),
            "early_stopping_rounds": None
            if self.early_stopping_rounds is None
            else check_int("early_stopping_rounds", self.early_stopping_rounds, minimum=1),
            "calculate_training_loss": check_bool("calculate_training_loss", self.calculate_training_loss),
        }

    def _count_scaled(self) -> bool:
        """True when lambda is multiplied by each row's rating count (``regularization_scaling="count"``).

        ExplicitALS's older ``frequency_weighted=True`` is the same switch (with a DeprecationWarning); both set
        to disagreeing values is an error. None means ``"none"`` (the command line reads ``none`` as None).
        """
        scaling = self.regularization_scaling
        scaling = check_choice("regularization_scaling", "none" if scaling is None else scaling, _SCALINGS)
        legacy = getattr(self, "frequency_weighted", None)
        if legacy is None or bool(legacy) == (scaling == "count"):
            return scaling == "count"
        if legacy and scaling == "none":
            warnings.warn("frequency_weighted=True is the older spelling of regularization_scaling='count'",
                          DeprecationWarning, stacklevel=4)
            return True
        raise InvalidParameterError(
            "frequency_weighted=False contradicts regularization_scaling='count'; set only regularization_scaling")

    @staticmethod
    def _check_data(interactions: Any, name: str = "interactions", n_entries: int | None = None) -> Interactions:
        """``interactions`` checked for an explicit fit (``n_entries``: their count, when the ratings themselves
        stay on a cluster's workers and ``interactions`` holds only the id maps)."""
        if not isinstance(interactions, Interactions):
            raise InvalidDataError(
                f"{name} must be an mfrec.Interactions (build one with Interactions.from_frame or "
                f"read_interactions), got {type(interactions).__name__}"
            )
        if (interactions.nnz if n_entries is None else n_entries) == 0:
            raise InvalidDataError(f"{name} hold no ratings: nothing to fit")
        if not interactions.has_values:
            raise InvalidDataError(
                f"{name} have no rating values (no value column was given); explicit models need ratings"
            )
        return interactions

    def _start_fit(self, interactions: Interactions, dtype: np.dtype, summary: dict | None = None) -> None:
        """The fitted attributes known before training; ``summary`` (``n``, ``min``, ``max``, ``sum`` of the
        ratings) stands in for ``interactions``' values when they stay on a cluster's workers."""
        self.interactions_ = interactions
        if summary is None:
            data = interactions.matrix.data
            self.rating_range_ = [float(data.min()), float(data.max())]
            self.rating_mean_ = float(np.mean(data, dtype=np.float64))
        else:
            self.rating_range_ = [float(summary["min"]), float(summary["max"])]
            self.rating_mean_ = float(summary["sum"]) / max(int(summary["n"]), 1)
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
        """lambda_b: ``bias_regularization``; ``regularization`` when it is None; for ``"auto"`` (ExplicitALS's
        default) :data:`AUTO_BIAS_REGULARIZATION` with uniform scaling and ``regularization`` with count scaling."""
        value = self.bias_regularization
        if isinstance(value, str) and value == "auto":
            value = None if self._count_scaled() else AUTO_BIAS_REGULARIZATION
        if value is None:
            return float(check_float("regularization", self.regularization, minimum=0.0, strict_min=True))
        return float(check_float("bias_regularization", value, minimum=0.0, strict_min=True))

    @staticmethod
    def _penalty_scales(csr, frequency_weighted: bool) -> tuple[np.ndarray, np.ndarray]:
        """Per-row penalty scales ``(s_u, s_i)``: ones, or each row's rating count (at least 1) when weighted."""
        return (penalty_scale(np.diff(csr.indptr), frequency_weighted),
                penalty_scale(column_counts(csr.indptr, csr.indices, csr.shape[1]), frequency_weighted))

    def _loss_from_sse(self, sse: float, reg: float, scales: tuple[np.ndarray, np.ndarray], nnz: int):
        """(L, training RMSE): the objective of the module docstring given its squared-error part ``sse``."""
        pu, bu = penalty_sums(self.user_factors_, self.user_bias_, scales[0])
        pi, bi = penalty_sums(self.item_factors_, self.item_bias_, scales[1])
        return self._loss_from_parts(sse, reg, pu + pi, bu + bi, nnz)

    def _loss_from_parts(self, sse: float, reg: float, penalty: float, bias_penalty: float, nnz: int):
        """(L, training RMSE) from the squared error and the scaled penalty sums of both sides
        (:func:`penalty_sums`): ``sse + lambda penalty (+ lambda_b bias_penalty)``."""
        loss = float(sse + reg * penalty)
        if self.biases:  # lambda_b (b_u^2, b_i^2), scaled like the factor penalty
            loss += self._bias_reg() * float(bias_penalty)
        return loss, float(np.sqrt(sse / max(nnz, 1)))

    def _objective(self, csr, reg: float, frequency_weighted: bool) -> tuple[float, float]:
        """(L, training RMSE) for the current factors."""
        sse = explicit_sse(
            csr.indptr, csr.indices, csr.data, self.user_factors_, self.user_bias_, self.item_factors_,
            self.item_bias_, float(self.global_bias_), bool(self.biases),
        )
        return self._loss_from_sse(sse, reg, self._penalty_scales(csr, frequency_weighted), csr.nnz)

    def _validation_rmse(self, val) -> float:
        """RMSE of the current model on the validation pairs (unknown ids fall back to the biases)."""
        pred = self._predict_idx(val[0], val[1])
        return float(np.sqrt(np.mean((pred - val[2]) ** 2)))

    def _check_finite(self) -> None:
        for name in ("user_factors_", "item_factors_", "user_bias_", "item_bias_"):
            if not all_finite(getattr(self, name)):
                raise ModelFitError(
                    f"{type(self).__name__}: training produced non-finite values in {name}; increase "
                    "regularization, lower the learning rate, or use dtype='float64'"
                )

    def _train_loop(self, step, n_iter: int, val, patience: int | None, objective, with_loss: bool) -> None:
        """Run ``step()`` (one SGD epoch) up to ``n_iter`` times with the bookkeeping of every fit
        (:class:`mfrec.models.training.Tracker`: history, progress events, early stopping on validation RMSE);
        ``objective()`` after every epoch when ``with_loss``, else a check of the factors."""
        started = time.perf_counter()
        tracker = Tracker(self, type(self).__name__, n_iter, self._state_names, "val_rmse", False, patience)
        for it in range(1, n_iter + 1):
            step()
            entry: dict[str, Any] = {"iteration": it}
            if not with_loss:  # no pass over the ratings: the factors themselves are checked
                self._check_finite()
            else:
                loss, rmse = objective()
                if not np.isfinite(loss):
                    self._check_finite()
                    raise ModelFitError(
                        f"{type(self).__name__}: the training loss became non-finite at iteration {it}; increase "
                        "regularization or lower the learning rate"
                    )
                entry.update(loss=loss, rmse=rmse)
            if val is not None:
                entry["val_rmse"] = self._validation_rmse(val)
            entry["seconds"] = time.perf_counter() - started
            if tracker.record(entry):
                break
        tracker.restore()
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
        ``bias_regularization`` when it is set; both lambdas times the number of ratings with
        ``regularization_scaling="count"``). ``values`` are the ratings (required: explicit models need
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
        scale = max(len(idx), 1) if self._count_scaled() else 1
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

    Minimises ``sum_{(u,i) observed} (r_ui - mu - b_u - b_i - x_u . y_i)^2 + lambda_u ||x_u||^2 + lambda_bu b_u^2
    + lambda_i ||y_i||^2 + lambda_bi b_i^2`` by alternating exact ridge solves: with the items fixed, every user's
    ``[x_u, b_u]`` is ``(F^T F + lambda_u I)^-1 F^T t`` with features ``F = [y_i, 1]`` and targets
    ``t = r_ui - mu - b_i`` over the user's ratings, and symmetrically for items (Koren et al. 2009;
    Zhou et al. 2008). Each half-step minimises the objective exactly, so the training loss never increases.

    Parameters
    ----------
    factors : int, default 5
        Latent dimension d >= 1.
    regularization : float, default 10.0
        lambda > 0, applied to every row's factors ``||x_u||^2`` (and to its bias unless
        ``bias_regularization`` is given). With ``regularization_scaling="count"`` a row with n ratings uses
        ``lambda * n`` instead (then lambda ~ 0.05-0.15 is the useful range on MovieLens).
    iterations : int, default 25
        ALS sweeps (one user half-step + one item half-step each).
    biases : bool, default True
        Learn ``mu + b_u + b_i``; False fits the plain ``x_u . y_i``.
    bias_regularization : float, None or "auto", default "auto"
        lambda_b > 0 penalising ``b_u^2`` and ``b_i^2`` (Surprise's ``reg_bu``/``reg_bi``), scaled by the row's
        count like lambda with ``regularization_scaling="count"``; None uses ``regularization``; ``"auto"`` is
        3 with uniform scaling (biases want less shrinkage than factors) and ``regularization`` with count
        scaling.
    regularization_scaling : {"none", "count"}, default "none"
        ``"count"`` multiplies both lambdas by each row's number of ratings (ALS-WR, Zhou et al. 2008, as in
        Spark MLlib): heavy raters are shrunk in proportion to their evidence.
    frequency_weighted : bool or None, default None
        Deprecated spelling of ``regularization_scaling="count"`` (True), kept so older code and model files
        work.
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
    calculate_training_loss : bool, default True
        Compute the objective and the training RMSE every iteration (one pass over the ratings after the item
        half-step); False leaves ``loss`` and ``rmse`` out of ``history_`` (non-finite factors are still caught).

    Defaults were chosen on an inner holdout of MovieLens-100K ``u1.base`` only (docs/benchmarks-history.md,
    "Explicit feedback"; the bias penalty: docs/benchmarks.md, "Defaults").
    """

    def __init__(
        self,
        factors: int = 5,
        regularization: float = 10.0,
        iterations: int = 25,
        biases: bool = True,
        frequency_weighted: bool | None = None,
        seed: Any = 0,
        dtype: str = "float32",
        num_threads: int = 0,
        early_stopping_rounds: int | None = None,
        bias_regularization: float | str | None = "auto",
        regularization_scaling: str = "none",
        calculate_training_loss: bool = True,
    ) -> None:
        self.calculate_training_loss = calculate_training_loss
        self.regularization_scaling = regularization_scaling
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
        if client is not None:  # the same plan, run by the dask executor
            if validation is not None:
                raise InvalidParameterError("validation is not supported with client=...; fit without it")
            from mfrec.distributed import fit as distributed_fit

            return distributed_fit(self, interactions, client)
        return run(self._als_plan(interactions, validation))

    def _als_plan(self, data: Any, validation: Any = None, *, entries_on_workers: bool = False,
                  sharded: bool = False, entry_summary: dict | None = None) -> _ExplicitPlan:
        """The plan of a fit (:mod:`mfrec.models.training`); the raw ratings are the kernel's entries, so
        ``entries_on_workers`` changes nothing; ``sharded``: the factors live on the workers;
        ``entry_summary`` (``n``, ``min``, ``max``, ``sum`` of the ratings): ``data`` holds only the id maps (an
        empty pattern: the ratings stay on the workers and the seen items go to a sharded model directory)."""
        return _ExplicitPlan(self, data, validation, sharded, entry_summary)


def explicit_block(block: RowBlock, fixed: tuple, small: dict, own: tuple, with_loss: bool) -> tuple[tuple, dict]:
    """One ExplicitALS half-step on a block: rows ``own = (X, b)`` re-solved in place against ``fixed = (Y, c)``.

    Each row's ``[x_u, b_u]`` is the exact ridge solution of :func:`mfrec.kernels.als_explicit.als_explicit_step`;
    ``small``: ``mu``, ``reg``, ``fw``, ``biases``, ``breg``. Partial sums: ``failed`` rows and, with
    ``with_loss``, the block's squared error ``sum (r_ui - mu - b_u - c_i - x_u . y_i)^2`` after the solve.
    """
    (Y, c), (X, b) = fixed, own
    mu, biases = small["mu"], small["biases"]
    bad = als_explicit_step(block.indptr, block.indices, block.values, Y, c, mu, small["reg"], small["fw"], biases,
                            X, b, small["breg"])
    sse = explicit_sse(block.indptr, block.indices, block.values, X, b, Y, c, mu, biases) if with_loss else 0.0
    return (X, b), {"failed": int(bad), "sse": float(sse)}


def _row_weighted_column_sums(indptr, indices, row_weight: np.ndarray, n_cols: int, piece: int = 1 << 11
                              ) -> np.ndarray:
    """``out[j] = sum of row_weight[u] over the rows u holding column j`` (float64 (n_cols,)), a piece of rows of
    about ``piece`` entries at a time (one ``np.bincount`` over all entries held 16 bytes per entry; a piece,
    32 KiB)."""
    out = np.zeros(n_cols)
    n_rows, u0 = len(indptr) - 1, 0
    while u0 < n_rows:
        u1 = min(n_rows, max(u0 + 1, int(np.searchsorted(indptr, indptr[u0] + piece, side="right")) - 1))
        lo, hi = int(indptr[u0]), int(indptr[u1])
        if hi > lo:
            out += np.bincount(indices[lo:hi], weights=np.repeat(row_weight[u0:u1], np.diff(indptr[u0:u1 + 1])),
                               minlength=n_cols)
        u0 = u1
    return out


def penalty_scale(counts: np.ndarray, frequency_weighted: bool) -> np.ndarray:
    """Per-row penalty scale ``s`` (float64): each row's rating count (at least 1) when weighted, else ones."""
    if not frequency_weighted:
        return np.ones(len(counts))
    return np.maximum(counts, 1).astype(np.float64)


def weighted_square_sum(a: np.ndarray, weight: np.ndarray) -> float:
    """``sum_r weight[r] ||a[r]||^2`` in float64 for ``a`` of shape (n,) or (n, d): rows converted a piece of
    1/64 of ``a`` (2048 to 65536 values) at a time. A float64 copy of ``a``, or ``np.einsum``'s conversion
    buffers (three of 8192 values), took a tenth of a small fit's memory beside its factors (MovieLens-100K;
    pieces of 1/16 still took 0.06x there). The cost is a Python round per piece: 0.5-0.8 ms more per SGD
    epoch with the loss on MovieLens-100K (against one einsum), tens of ms per 64M values."""
    a = np.asarray(a)
    rows = a.reshape(len(a), -1)
    step = max(1, min(1 << 16, max(1 << 11, rows.size // 64)) // max(1, rows.shape[1]))
    total = 0.0
    for lo in range(0, len(rows), step):
        piece = rows[lo:lo + step].astype(np.float64)
        total += float(np.asarray(weight[lo:lo + step], dtype=np.float64) @ np.einsum("ij,ij->i", piece, piece))
    return total


def penalty_sums(X: np.ndarray, b: np.ndarray, scale: np.ndarray) -> tuple[float, float]:
    """``(sum_u s_u ||x_u||^2, sum_u s_u b_u^2)`` in float64: one side's part of the explicit penalties."""
    return weighted_square_sum(X, scale), weighted_square_sum(b, scale)


def explicit_row_stats(block: RowBlock, rows: tuple, small: dict) -> dict:
    """What a sharded ExplicitALS fit needs of a block's new rows ``(X_b, b_b)``: their :func:`penalty_sums`
    ``penalty`` and ``bias_penalty``, scaled as in :meth:`_ExplicitModel._penalty_scales`."""
    # (the starting rows' statistics are taken without ``small``: their penalties are replaced before any loss)
    penalty, bias_penalty = penalty_sums(*rows, penalty_scale(np.diff(block.indptr), bool(small.get("fw"))))
    return {"penalty": penalty, "bias_penalty": bias_penalty}


class _ExplicitPlan(ALSPlan):
    """ExplicitALS: users then items (users start at 0, items at N(0, 0.1^2)); the squared error comes from the
    item half-step, the penalties from the factors (scaled by the row counts when frequency-weighted)."""

    name = "ExplicitALS"
    order = ("user", "item")
    loss_side = "item"
    kernel = staticmethod(explicit_block)
    state_names = _ExplicitModel._state_names
    nonfinite_hint = "increase regularization or lower the learning rate"
    row_stats = staticmethod(explicit_row_stats)
    row_names = {"user": ("user_factors_", "user_bias_"), "item": ("item_factors_", "item_bias_")}

    def __init__(self, model: ExplicitALS, data: Any, validation: Any, sharded: bool = False,
                 entry_summary: dict | None = None) -> None:
        p = model._check_common()
        self.threads = check_int("num_threads", model.num_threads, minimum=0)
        inter = model._check_data(data, n_entries=None if entry_summary is None else int(entry_summary["n"]))
        dt, d = p["dtype"], p["factors"]
        model._start_fit(inter, dt, entry_summary)
        self.model, self.inter, self.iterations = model, inter, p["iterations"]
        self.nnz = inter.nnz if entry_summary is None else int(entry_summary["n"])
        self.compute_loss = p["calculate_training_loss"]
        self.val = model._validation_pairs(validation)
        if self.val is not None:
            self.val_key, self.patience = "val_rmse", p["early_stopping_rounds"]
        csr = inter.matrix
        n_users, n_items = csr.shape
        itemsize, threads = np.dtype(dt).itemsize, self.threads or get_num_threads()
        gen = rng(model.seed)
        self.sharded, self.d, self.dt = sharded, d, dt
        if sharded:  # the rows are drawn block by block (in order: one normal stream), where they will live
            # the stream's start is kept, not the generator: a sharded fit that lost a worker draws them again
            self._draw_start = (type(gen.bit_generator), gen.bit_generator.state)
            self._penalties: dict[str, tuple[float, float]] = {}
            model.user_factors_ = model.item_factors_ = model.user_bias_ = model.item_bias_ = None
        else:
            check_factor_memory("ExplicitALS", d, n_users, n_items, itemsize, threads,
                                extra=(n_users + n_items) * itemsize + (2 * d + 3) * 8.0 * threads)
            model.user_factors_ = _aligned.zeros((n_users, d), dt)
            model.item_factors_ = _aligned.normal(gen, 0.1, (n_items, d), dt)
            model.user_bias_ = np.zeros(n_users, dtype=dt)
            model.item_bias_ = np.zeros(n_items, dtype=dt)
        self.reg, self.fw = p["regularization"], model._count_scaled()
        self._small = {"mu": float(model.global_bias_), "reg": self.reg, "fw": self.fw,
                       "biases": bool(model.biases), "breg": model._bias_reg()}
        self._scales: tuple[np.ndarray, np.ndarray] | None = None  # the loss's penalty scales, taken when first needed
        self.theoretical_bytes = (n_users + n_items) * (d + 1) * np.dtype(dt).itemsize
        self._sides: dict[str, RowBlock] = {}
        self._slicer: Any = None  # ColumnSlices, or False: the item side is built whole
        self._sse = 0.0

    def side(self, name: str) -> RowBlock:
        if name not in self._sides:
            m = self.inter.matrix
            if name == "user":
                indptr, indices, ratings = m.indptr, m.indices, m.data
            else:  # the items' ratings in one transpose (as a slice of all columns)
                indptr, indices, (ratings,) = transpose(m.indptr, m.indices, m.shape[1], [_args.ratings(m.data)])
            self._sides[name] = row_block(indptr, indices, ratings, None, 0, len(indptr) - 1)
        return self._sides[name]

    def sliced(self, name: str) -> bool:
        # the item side (a transposed copy of the ratings) in slices of columns on a large matrix
        if name != "item" or self.sharded:
            return False
        if self._slicer is None:
            rating_bytes = 4 if self.inter.matrix.data.dtype == np.float32 else 8  # as _args.ratings keeps them
            self._slicer = column_slicer(self.inter.matrix, 4 + rating_bytes, self.theoretical_bytes,
                                         max_slices=training.EXPLICIT_MAX_SLICES) or False
        return bool(self._slicer)

    def slices(self, name: str) -> Iterator[RowBlock]:
        for a, b, indptr, indices, values in self._slicer.passes([_args.ratings(self.inter.matrix.data)]):
            block = RowBlock(a, b, indptr, indices, values[0])
            del indptr, indices, values
            yield block
            del block

    def _rows(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        m = self.model
        return (m.user_factors_, m.user_bias_) if name == "user" else (m.item_factors_, m.item_bias_)

    def fixed(self, name: str) -> tuple[np.ndarray, ...]:
        return self._rows("item" if name == "user" else "user")

    def small(self, name: str) -> dict[str, Any]:
        return self._small

    def own(self, name: str) -> tuple[np.ndarray, ...]:
        return self._rows(name)

    def initial_rows(self, name: str):
        """Users start at 0; items at ``N(0, 0.1^2)`` drawn in order, block after block (the same values as the
        local fit's one draw: numpy's normal stream does not depend on how it is cut)."""
        d, dt = self.d, self.dt
        if name == "user":
            return lambda lo, hi: (_aligned.zeros((hi - lo, d), dt), np.zeros(hi - lo, dtype=dt))
        bit_type, state = self._draw_start
        bits = bit_type()
        bits.state = state
        gen, at = np.random.Generator(bits), [0]

        def rows(lo: int, hi: int):
            if lo != at[0]:
                raise ValueError(f"item rows must be drawn in order: asked for {lo}:{hi} after {at[0]}")
            at[0] = hi
            return (_aligned.normal(gen, 0.1, (hi - lo, d), dt),
                    np.zeros(hi - lo, dtype=dt))

        return rows

    def adopt(self, name: str, rows: tuple) -> None:
        setattr(self.model, f"{name}_factors_", rows[0])
        setattr(self.model, f"{name}_bias_", rows[1])

    def update(self, name: str, own: tuple | None, partial: dict) -> None:
        if own is None:
            self._penalties[name] = (float(partial["penalty"]), float(partial["bias_penalty"]))
        else:
            self.adopt(name, own)
        if name == self.loss_side and "sse" in partial:
            self._sse = float(partial["sse"])

    def failure_message(self, name: str, n_failed: int) -> str:
        return (f"ExplicitALS: {n_failed} ridge systems were not positive definite (non-finite factors?); "
                "increase regularization or use dtype='float64'")

    def entry(self) -> dict[str, float]:
        """The objective of the module docstring and the training RMSE."""
        if self.sharded:  # the penalties come summed from the blocks
            (pu, bu), (pi, bi) = self._penalties["user"], self._penalties["item"]
            loss, rmse = self.model._loss_from_parts(self._sse, self.reg, pu + pi, bu + bi, self.nnz)
        else:
            if self._scales is None:  # (a fit without the training loss holds no per-row scales)
                self._scales = self.model._penalty_scales(self.inter.matrix, self.fw)
            loss, rmse = self.model._loss_from_sse(self._sse, self.reg, self._scales, self.nnz)
        return {"loss": loss, "rmse": rmse}

    def validate(self) -> float:
        return self.model._validation_rmse(self.val)

    def check_finite(self, iteration: int) -> None:
        if not self.sharded:  # (a sharded executor counts the non-finite values of every block it solves)
            self.model._check_finite()

    def local_context(self):
        return threads_and_blas(self.threads, blas_single=True)

    def finish(self, history: list, best_iteration: int) -> None:
        if self.model.user_factors_ is not None:  # a sharded fit saved without gathering holds none
            self.model._check_finite()


@register_model
class SGDFactorization(_ExplicitModel):
    """Biased matrix factorization (Funk / Koren "SVD") by stochastic gradient descent.

    Each epoch visits the ratings in a fresh random order (drawn from ``seed``) and, with
    ``e = r_ui - (mu + b_u + b_i + x_u . y_i)``, steps ``b_u += lr (e - lambda_b b_u)``,
    ``b_i += lr (e - lambda_b b_i)``, ``x_u += lr (e y_i - lambda x_u)``, ``y_i += lr (e x_u - lambda y_i)``:
    the negative gradient of ``1/2 e^2 + 1/2 lambda_b (b_u^2 + b_i^2) + 1/2 lambda (||x_u||^2 + ||y_i||^2)``
    (Koren, Bell & Volinsky 2009). Epoch ``t`` (from 1) uses the step ``lr * learning_rate_decay^(t-1)``
    (the per-epoch decay of Koren's Netflix-prize SGD and MyMediaLite). Summed over an epoch, that classic step
    penalises a user with n ratings n times: it minimises the count-scaled objective
    ``SSE + lambda sum_u n_u ||x_u||^2 + lambda sum_i n_i ||y_i||^2 (+ lambda_b ...)``, which is why its useful
    lambda (~0.02-0.1) is ExplicitALS's with ``regularization_scaling="count"``, not its uniform 10.
    ``history_`` reports the objective being minimised after every epoch. Epochs run sequentially, so a seed
    reproduces the factors exactly.

    Parameters
    ----------
    factors : int, default 50
    learning_rate : float, default 0.015
        Step size gamma > 0.
    regularization : float, default 0.1
        lambda > 0 on the factors (and on the biases unless ``bias_regularization`` is given), applied in every
        per-rating step.
    regularization_scaling : {"count", "none"}, default "count"
        ``"count"``: the classic step above (Funk, Surprise), whose summed penalty is ``lambda n_u ||x_u||^2``.
        ``"none"``: each step of row ``u`` uses ``lambda / n_u`` (and ``lambda_b / n_u``), so the summed penalty
        is the uniform ``lambda ||x_u||^2`` of ExplicitALS's default.
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
        ``SSE + lambda (||P||^2 + ||Y||^2 + ||Z||^2) + lambda_b (||b_u||^2 + ||b_i||^2)`` with every row's norm
        weighted by its count (``"count"``: ``z_j`` is stepped once per user of item j) or not (``"none"``).
    init_std : float, default 0.1
        Initial factors ~ N(0, init_std^2); biases start at 0.
    seed : int, SeedSequence, Generator or None, default 0
    dtype : {"float32", "float64"}, default "float32"
    early_stopping_rounds : int or None, default None
        With ``validation`` given to :meth:`fit`: stop after this many epochs without a better validation RMSE
        and keep the best epoch's factors.
    calculate_training_loss : bool, default True
        Compute the objective and the training RMSE after every epoch (one pass over the ratings); False leaves
        ``loss`` and ``rmse`` out of ``history_`` (non-finite factors are still caught every epoch).

    Defaults were chosen on an inner holdout of MovieLens-100K ``u1.base`` only (docs/benchmarks-history.md, "Explicit feedback").
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
        regularization_scaling: str = "count",
        calculate_training_loss: bool = True,
    ) -> None:
        self.calculate_training_loss = calculate_training_loss
        self.regularization_scaling = regularization_scaling
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
        n_users, n_items = csr.shape
        d = p["factors"]
        gen = rng(self.seed)
        self.user_factors_ = _aligned.normal(gen, init_std, (n_users, d), dtype)
        self.item_factors_ = _aligned.normal(gen, init_std, (n_items, d), dtype)
        self.user_bias_ = np.zeros(n_users, dtype=dtype)
        self.item_bias_ = np.zeros(n_items, dtype=dtype)
        reg, mu, biases = p["regularization"], float(self.global_bias_), bool(self.biases)
        breg = self._bias_reg()
        epoch = [0]
        count = self._count_scaled()
        # per-step multipliers of lambda: 1 (count-scaled sum: no per-row arrays) or 1/n (uniform sum)
        steps = (None, None) if count else tuple(1.0 / w for w in self._penalty_scales(csr, True))

        if self.implicit_feedback:
            self._fit_svdpp(csr, gen, init_std, lr, decay, reg, breg, mu, biases, val, p, count, steps)
            return self

        # the CSR as it is, the row of each rating from a table of a 16th of its entries, each epoch's order from
        # four keys: no per-rating array beside the data (a users and an order array took 8 bytes per rating)
        indptr = csr.indptr.astype(np.int64)
        row_at = row_table(indptr)
        ratings = _args.inp(csr.data, np.float32)

        def step() -> None:
            keys = shuffle_keys(gen)
            step_size = lr * decay ** epoch[0]  # gamma_t = gamma * decay^(t-1)
            epoch[0] += 1
            sgd_epoch_shuffled(indptr, row_at, csr.indices, ratings, keys, self.user_factors_, self.user_bias_,
                               self.item_factors_, self.item_bias_, mu, step_size, reg, breg, biases, *steps)

        self._train_loop(step, p["iterations"], val, p["early_stopping_rounds"],
                         lambda: self._objective(csr, reg, count), p["calculate_training_loss"])
        return self

    def _fit_svdpp(self, csr, gen, init_std, lr, decay, reg, breg, mu, biases, val, p, count, steps) -> None:
        """SVD++ training: the explicit user factors ``P`` and the implicit item factors ``Z`` live here; the model's
        ``user_factors_`` become the effective factors ``P + S Z`` (``S``: the users x items pattern scaled by
        ``|N(u)|^-1/2``, never formed).

        The epochs step ``P`` in place, in the array the fit started with. The effective factors are formed
        after every epoch only for a validation set (and early stopping, which needs one), into one array kept
        for the fit; the training loss forms them a sixteenth of the users at a time; otherwise they are formed
        once, at the end, over ``P`` itself: a fit holds no users x d array beside ``P`` unless it has to."""
        dtype = self.user_factors_.dtype
        n_users, n_items = csr.shape
        indptr = csr.indptr.astype(np.int64)
        indices = np.ascontiguousarray(csr.indices, dtype=np.int32)
        P = self.user_factors_
        Z = _aligned.normal(gen, init_std, (n_items, P.shape[1]), dtype)
        scratch = np.empty((2, P.shape[1]), dtype=np.float64)
        with_loss = p["calculate_training_loss"]
        every_epoch = val is not None  # the validation reads the effective factors after every epoch
        effective_buffer: list[np.ndarray] = []
        epoch = [0]

        def step() -> None:
            # both visiting orders (users; each user's ratings) from eight keys, computed as the epoch goes: no
            # per-rating arrays (a permutation, its grouping by user and each entry's user took 12 bytes per rating)
            keys = shuffle_keys(gen, 8)
            step_size = lr * decay ** epoch[0]
            epoch[0] += 1
            svdpp_epoch_shuffled(indptr, indices, csr.data, keys, P, self.user_bias_, self.item_factors_,
                                 self.item_bias_, Z, mu, step_size, reg, breg, biases, True, scratch, *steps,
                                 z_reg_per_rating=count)
            if every_epoch:
                if not effective_buffer:
                    effective_buffer.append(_aligned.empty(P.shape, dtype))
                self.user_factors_ = svdpp_effective(indptr, indices, P, Z, out=effective_buffer[0])
            elif not all_finite(Z):  # the end-of-epoch check reads P (as user_factors_); Z is checked here
                raise ModelFitError(
                    f"{type(self).__name__}: training produced non-finite values in the implicit item factors; "
                    "increase regularization, lower the learning rate, or use dtype='float64'")

        penalty_weights: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

        def effective_sse() -> float:
            """The squared error at the effective factors: those formed after the epoch when there are, else
            formed a piece of users at a time (1/16 of them) into one small buffer: no users x d array."""
            args = (self.user_bias_, self.item_factors_, self.item_bias_, mu, biases)
            if self.user_factors_ is not P:
                return explicit_sse(indptr, indices, csr.data, self.user_factors_, *args)
            step = max(1, -(-n_users // 16))
            buf = _aligned.empty((min(step, n_users), P.shape[1]), dtype)
            total = 0.0
            for lo in range(0, n_users, step):
                hi = min(n_users, lo + step)
                part = svdpp_effective(indptr[lo:hi + 1], indices, P[lo:hi], Z, out=buf[:hi - lo])
                total += explicit_sse(indptr[lo:hi + 1], indices, csr.data, part, self.user_bias_[lo:hi], *args[1:])
            return total

        def objective() -> tuple[float, float]:
            if not penalty_weights:  # only a fit with the training loss needs them
                s_u, s_i = self._penalty_scales(csr, count)
                # z_j's weight: per rating, every rating of a user of j (the sum of their counts); else once
                s_z = (_row_weighted_column_sums(indptr, indices, np.diff(indptr).astype(np.float64), n_items)
                       if count else s_i)
                # counts and sums of counts: whole numbers, exact in float32 below 2^24 (half the per-row bytes)
                exact = max(float(w.max(initial=0.0)) for w in (s_u, s_i, s_z)) < 2**24
                penalty_weights.append(tuple(w.astype(np.float32) if exact else w for w in (s_u, s_i, s_z)))
            s_u, s_i, s_z = penalty_weights[0]
            sse = effective_sse()
            sq = weighted_square_sum
            loss = sse + reg * (sq(P, s_u) + sq(self.item_factors_, s_i) + sq(Z, s_z))
            if biases:
                loss += breg * (sq(self.user_bias_, s_u) + sq(self.item_bias_, s_i))
            return float(loss), float(np.sqrt(sse / max(csr.nnz, 1)))

        self._train_loop(step, p["iterations"], val, p["early_stopping_rounds"], objective, with_loss)
        if self.user_factors_ is P:  # no epoch formed them: the effective factors once, over P
            svdpp_effective(indptr, indices, P, Z, out=P)
            self._check_finite()
