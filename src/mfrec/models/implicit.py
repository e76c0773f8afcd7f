"""Implicit-feedback matrix factorization by alternating least squares (Hu, Koren & Volinsky 2008).

The model minimises, over ALL user-item pairs,

    L(X, Y) = sum_{u,i} c_ui (p_ui - x_u . y_i)^2 + lambda (sum_u ||x_u||^2 + sum_i ||y_i||^2)

where ``p_ui = 1`` for a stored interaction (or the preference given by an ``ImplicitFeedback``) and 0
otherwise, and the confidence ``c_ui`` of a stored interaction with value ``r_ui`` is

* ``confidence="linear"``: ``c_ui = 1 + alpha r_ui`` (Hu et al.),
* ``confidence="log"``:    ``c_ui = 1 + alpha log(1 + r_ui / eps)``,
* ``confidence="given"``:  ``c_ui = r_ui`` as is (e.g. the worked example of ``seed-example.md``),

while an unobserved pair weighs ``c0 = unobserved_confidence`` (1 in Hu et al.; 0 in the worked example).
With one side fixed every row has the closed form ``x_u = (Y^T C^u Y + lambda I)^-1 Y^T C^u p_u``, computed
with ``Y^T C^u Y = c0 Y^T Y + Y^T (C^u - c0 I) Y`` so a half-step costs O(nnz d^2 + n d^3) (exact,
Cholesky) or O(cg_steps (nnz d + n d^2)) (conjugate gradient, warm-started; Takacs, Pilaszy & Tikk 2011).
``solver="gd"`` takes one full-batch gradient step per half-step with the exact line-search step size (the
loss is a convex quadratic in each block, so every step provably lowers it): a cross-check and a baseline.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Hashable, Iterable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from mfrec import _aligned
from mfrec._params import check_bool, check_choice, check_dtype, check_float, check_int
from mfrec._random import BlockDraws, rng, uniform_matrix
from mfrec.data.feedback import CONFIDENCE_PIECE, entry_confidence
from mfrec.data.interactions import Interactions, show_id
from mfrec.exceptions import InvalidDataError, InvalidParameterError, ModelFitError, UnknownIdError
from mfrec.evaluation.metrics import ndcg_at_k  # pure array math, no model imports
from mfrec.kernels._args import Affine
from mfrec.kernels.als_implicit import (
    factor_gram,
    gd_half_step,
    half_step,
    implicit_loss,
    implicit_observed_loss,
    row_order,
)
from mfrec.kernels.dense import rank_tolerance, solve_psd
from mfrec.kernels.slices import ColumnSlices, transpose
from mfrec.kernels.threads import get_num_threads, single_threaded_blas
from mfrec.models.base import FactorModel
from mfrec.models.training import (
    ALSPlan,
    RowBlock,
    all_finite,
    check_factor_memory,
    column_slicer,
    row_block,
    run,
    threads_and_blas,
)
from mfrec.persist import register_model

__all__ = ["ImplicitALS"]

_SOLVERS = ("cg", "cholesky", "gd")
_CONFIDENCES = ("linear", "log", "given")


def _feedback_parts(data: Any) -> tuple[Interactions, np.ndarray | None, float | None]:
    """(interactions, preferences or None, unobserved confidence or None) of an Interactions / ImplicitFeedback.

    An ``ImplicitFeedback`` (``mfrec.data.feedback``) is recognised by duck typing: it carries an
    ``Interactions`` (attribute ``interactions``) whose values are the confidences ``c_ui``, a per-entry
    preference array (``preference`` or ``preferences``) aligned with ``interactions.matrix.data``, and
    ``unobserved_confidence``.
    """
    if isinstance(data, Interactions):
        return data, None, None
    inner = getattr(data, "interactions", None)
    c0 = getattr(data, "unobserved_confidence", None)
    if isinstance(inner, Interactions) and c0 is not None:
        pref = getattr(data, "preference", None)
        if pref is None:
            pref = getattr(data, "preferences", None)
        if pref is None:
            pref = np.ones(inner.nnz)
        return inner, np.asarray(pref, dtype=np.float64), float(c0)
    raise InvalidDataError(
        f"expected an Interactions or ImplicitFeedback, got {type(data).__name__}; build one with "
        "Interactions.from_frame(...)"
    )


def _all_ones(n: int, dtype: Any) -> np.ndarray:
    """A read-only length-``n`` array of ones that takes no memory (stride 0): p_ui = 1 for every stored pair."""
    return np.broadcast_to(np.ones(1, dtype=dtype), (n,))


@register_model
class ImplicitALS(FactorModel):
    """Implicit-feedback ALS (Hu, Koren & Volinsky 2008) with exact, conjugate-gradient and gradient solvers.

    Parameters
    ----------
    factors : int, default 32
        Latent dimension ``d``.
    regularization : float, default 5.0
        ``lambda`` (> 0), the same for users and items.
    alpha : float, default 0.03
        Confidence scale of ``"linear"`` and ``"log"`` confidence (>= 0). Raw play counts reach thousands, so
        their useful alpha is small. implicit's convention (the values are the confidences) is
        ``confidence="given"``.

    The defaults (factors 32, lambda 5, alpha 0.03) were chosen on inner holdouts of the training parts of
    ml-100k and lastfm-2k only (``benchmarks/implicit_defaults.py``; docs/benchmarks.md, "Defaults"): test
    ndcg@10 0.429 / 0.216, where the former defaults (64, 0.05, 1) gave 0.348 / 0.128.
    iterations : int, default 15
        Sweeps; each updates the item factors (users fixed), then the user factors (items fixed), so the
        last update of a user is its exact closed form given the final items (what fold-in recomputes).
    solver : {"cg", "cholesky", "gd"}, default "cg"
        Per-row exact Cholesky solve, ``cg_steps`` warm-started conjugate-gradient steps, or one full-batch
        gradient step with exact line search.
    cg_steps : int, default 3
    confidence : {"linear", "log", "given"}, default "linear"
        How stored values ``r_ui`` become confidences (see the module docstring). Negative values are
        refused. Ignored when fitting an ``ImplicitFeedback`` (its values are the confidences).
    eps : float, default 1.0
        Scale of ``"log"`` confidence.
    unobserved_confidence : float, default 1.0
        ``c0``, the weight of a pair without interaction (an ``ImplicitFeedback`` brings its own).
    seed : int, SeedSequence, Generator or None, default 0
        Initial factors ~ U[0, 0.01) (implicit's scheme: see :func:`mfrec._random.uniform_matrix`). Row solves
        are independent, so the result does not depend on the number of threads.
    dtype : {"float32", "float64"}, default "float32"
        Storage and arithmetic of the factors (the exact solver factorises each row's system in this dtype and
        retries a row that is not positive definite in float32 in float64).
    num_threads : int, default 0
        kernel threads (0: the pool's, :mod:`mfrec.kernels.threads`); BLAS is limited to one thread inside the
        parallel kernels.
    early_stopping_rounds : int or None, default None
        With ``validation``: stop after this many iterations without a better validation ndcg@``validation_k``
        and keep the best iteration's factors.
    validation_k : int, default 10
    calculate_training_loss : bool, default True
        Compute the loss L every iteration (``history_["loss"]``): one more pass over each user's entries, in the
        user half-step while the row is in cache (measured cost in ``docs/benchmarks.md``). False (implicit's
        default) leaves ``loss`` out of ``history_``; non-finite factors are still caught every iteration.

    Attributes
    ----------
    user_factors_ : ndarray (n_users, factors), ``dtype``, C-contiguous
    item_factors_ : ndarray (n_items, factors), ``dtype``, C-contiguous
    history_ : list of dict
        Per iteration: ``iteration``, ``loss`` (the full weighted loss L, computed in O(nnz d + (m + n) d^2);
        absent with ``calculate_training_loss=False``),
        ``seconds`` (cumulative), and ``val_ndcg`` when validation data was given.
    best_iteration_ : int
    unobserved_confidence_ : float
        The ``c0`` used in training (and in fold-in).
    confidence_mode_ : str
        The confidence rule used ("given" when trained on an ``ImplicitFeedback``).
    """

    def __init__(
        self,
        factors: int = 32,
        regularization: float = 5.0,
        alpha: float = 0.03,
        iterations: int = 15,
        solver: str = "cg",
        cg_steps: int = 3,
        confidence: str = "linear",
        eps: float = 1.0,
        unobserved_confidence: float = 1.0,
        seed: Any = 0,
        dtype: str = "float32",
        num_threads: int = 0,
        early_stopping_rounds: int | None = None,
        validation_k: int = 10,
        calculate_training_loss: bool = True,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.solver = solver
        self.cg_steps = cg_steps
        self.confidence = confidence
        self.eps = eps
        self.unobserved_confidence = unobserved_confidence
        self.seed = seed
        self.dtype = dtype
        self.num_threads = num_threads
        self.early_stopping_rounds = early_stopping_rounds
        self.validation_k = validation_k
        self.calculate_training_loss = calculate_training_loss

    # ------------------------------------------------------------------ validation
    def _checked_params(self) -> dict[str, Any]:
        p = {
            "factors": check_int("factors", self.factors, minimum=1),
            "regularization": check_float("regularization", self.regularization, 0.0, strict_min=True),
            "alpha": check_float("alpha", self.alpha, 0.0),
            "iterations": check_int("iterations", self.iterations, minimum=1),
            "solver": check_choice("solver", self.solver, _SOLVERS),
            "cg_steps": check_int("cg_steps", self.cg_steps, minimum=1),
            "confidence": check_choice("confidence", self.confidence, _CONFIDENCES),
            "eps": check_float("eps", self.eps, 0.0, strict_min=True),
            "unobserved_confidence": check_float("unobserved_confidence", self.unobserved_confidence, 0.0),
            "dtype": check_dtype("dtype", self.dtype),
            "num_threads": check_int("num_threads", self.num_threads, minimum=0),
            "validation_k": check_int("validation_k", self.validation_k, minimum=1),
            "calculate_training_loss": check_bool("calculate_training_loss", self.calculate_training_loss),
        }
        esr = self.early_stopping_rounds
        p["early_stopping_rounds"] = None if esr is None else check_int("early_stopping_rounds", esr, minimum=1)
        return p

    def _confidence_of(self, values: np.ndarray, mode: str, who, dtype: Any = np.float64, keep: bool = True
                       ) -> np.ndarray | None:
        """c_ui (``dtype``) from values r_ui by this model's rule (:func:`mfrec.data.feedback.entry_confidence`;
        ``keep=False`` checks the values only)."""
        return entry_confidence(values, mode, float(self.alpha), float(self.eps), who, dtype=dtype, keep=keep)

    def _one_confidence(self, inter: Interactions, mode: str, dtype: Any) -> np.ndarray | None:
        """When every stored value is the same (binary feedback), its confidence broadcast over the entries with
        stride 0 (no array of nnz confidences; the kernels read it through its stride); else None. A value the
        rule rejects is left to the full pass, whose error counts the entries."""
        values = inter.matrix.data
        if not len(values):
            return None
        first = values[:1]
        for lo in range(0, len(values), CONFIDENCE_PIECE):
            if not (values[lo:lo + CONFIDENCE_PIECE] == first).all():  # (NaN never equals: the full pass reports it)
                return None
        try:
            one = self._confidence_of(first, mode, inter.entry_name, dtype=dtype)
        except InvalidDataError:
            return None
        return np.broadcast_to(one, (len(values),))

    def _prepare(self, data: Any, p: dict[str, Any], read_from_values: bool = False
                 ) -> tuple[Interactions, Any, np.ndarray, float, str]:
        """(interactions, conf, pref, c0, mode) with conf/pref per stored entry in the factor dtype.

        ``read_from_values``: where the rule is affine (``linear``: ``1 + alpha r``; ``given``: ``r``) and the
        factors are float32 like the stored values, ``conf`` is an :class:`~mfrec.kernels._args.Affine` over the
        stored values (checked, not copied): the kernels compute each confidence as they read it, and the fit
        holds no array of nnz confidences (4 bytes per entry, 0.27x of data + factors on the benchmark matrix).
        """
        inter, pref, c0 = _feedback_parts(data)
        mode = "given" if pref is not None else p["confidence"]
        c0 = p["unobserved_confidence"] if c0 is None else check_float("unobserved_confidence", c0, 0.0)
        dt = p["dtype"]
        conf = self._one_confidence(inter, mode, dt)
        values = inter.matrix.data
        if conf is None and read_from_values and mode in _AFFINE_RULES and np.dtype(dt) == values.dtype:
            self._confidence_of(values, mode, inter.entry_name, keep=False)
            conf = Affine(values, *_AFFINE_RULES[mode](float(self.alpha)))
        if conf is None:
            conf = self._confidence_of(values, mode, inter.entry_name, dtype=dt)
        if pref is None or (pref.shape == (inter.nnz,) and np.all(pref == 1)):
            pref = _all_ones(inter.nnz, dt)
        elif pref.shape != (inter.nnz,) or not np.isfinite(pref).all():
            raise InvalidDataError(f"preferences must be {inter.nnz} finite values aligned with the interactions")
        else:
            pref = np.ascontiguousarray(pref, dtype=dt)
        return inter, conf, pref, c0, mode

    # ------------------------------------------------------------------ fit
    def fit(self, interactions: Any, validation: Interactions | None = None, *, client: Any = None) -> ImplicitALS:
        """Fit on implicit feedback (on a dask cluster when ``client`` is given).

        Parameters
        ----------
        interactions : Interactions or ImplicitFeedback
            Users x items; stored values become confidences by ``confidence`` (an ``ImplicitFeedback`` brings
            its own confidences, preferences and unobserved confidence).
        validation : Interactions, optional
            Held-out interactions (any id maps; unknown ids are ignored). Adds ``val_ndcg`` (ndcg@validation_k,
            training items excluded) to ``history_`` and enables ``early_stopping_rounds``.
        client : distributed.Client, optional
            Fit on this dask cluster with :func:`mfrec.distributed.fit` (the same plan and kernels on row blocks
            held by the workers; ``interactions`` may then also be a ``mfrec.distributed.DaskInteractions``). Not
            combinable with ``validation``.

        Returns
        -------
        self

        Raises
        ------
        InvalidDataError
            Negative or non-finite values (naming the user and item), no interactions at all.
        ModelFitError
            The factors became non-finite or a system was not positive definite.
        """
        if client is not None:  # the same plan, run by the dask executor
            if validation is not None:
                raise InvalidParameterError("validation is not supported with client=...; fit without it")
            from mfrec.distributed import fit as distributed_fit

            return distributed_fit(self, interactions, client)
        return run(self._als_plan(interactions, validation))

    def _als_plan(self, data: Any, validation: Any = None, *, entries_on_workers: bool = False,
                  sharded: bool = False, entry_summary: dict | None = None) -> _ImplicitPlan:
        """The plan of a fit (:mod:`mfrec.models.training`); ``entries_on_workers``: ``data`` holds raw values
        and the confidences are computed block by block where the blocks live (a cluster fit of a dask log);
        ``sharded``: the factors live on the workers (the plan keeps their Grams, not the matrices);
        ``entry_summary`` (``n``: the number of entries): ``data`` holds only the id maps (an empty pattern: the
        entries stay on the workers and the seen items go to a sharded model directory)."""
        return _ImplicitPlan(self, data, validation, entries_on_workers, sharded, entry_summary)

    def _check_finite(self, it: int) -> None:
        for name in ("user_factors_", "item_factors_"):
            if not all_finite(getattr(self, name)):
                raise ModelFitError(
                    f"ImplicitALS: training produced non-finite values in {name} (iteration {it}); increase "
                    "regularization, lower alpha, or use dtype='float64'"
                )

    def _validation_truth(self, validation: Any, k: int):
        """(user_idx, CSR of held-out items, rows aligned with user_idx) in the training index space, or None."""
        if validation is None:
            return None
        vinter, _, _ = _feedback_parts(validation)
        mapped, _ = vinter.reindex(self.interactions_.user_index_map, self.interactions_.item_index_map)
        m = mapped.matrix
        users = np.flatnonzero(np.diff(m.indptr) > 0).astype(np.int32)
        if len(users) == 0:
            warnings.warn("validation data shares no user and item with the training data; ignored", stacklevel=3)
            return None
        return users, m[users]

    def _validation_ndcg(self, val, k: int) -> float:
        users, truth = val
        seen_ptr, seen_idx = self._seen_pattern(users)
        top, _ = self._topk_pattern(users, k, seen_ptr, seen_idx, None)
        return float(ndcg_at_k(top, truth, k))

    # ------------------------------------------------------------------ closed-form fold-in
    def _solve_against(self, Y: np.ndarray, idx: np.ndarray, conf: np.ndarray) -> np.ndarray:
        """``(c0 Y^T Y + lambda I + Y_S^T (C_S - c0) Y_S)^-1 Y_S^T c_S`` (p = 1) in float64, returned in dtype."""
        reg = float(self.regularization)
        c0 = float(self.unobserved_confidence_)
        # Y^T Y is the expensive part (n d^2) and the same for every fold-in against this Y: cache it
        gram = self._cached(f"gram_{id(Y)}", (Y,), lambda: Y.astype(np.float64).T @ Y.astype(np.float64))
        A = c0 * gram
        A[np.diag_indices_from(A)] += reg
        Ys = Y[idx].astype(np.float64)
        A += Ys.T @ ((conf - c0)[:, None] * Ys)
        b = Ys.T @ conf
        # numerically singular (more factors than the data pins down, lambda lost in rounding): minimum norm
        x = solve_psd(A, b, rcond=rank_tolerance(len(b), Y.dtype, Y.shape[0]))  # Y^T Y sums every row of Y
        if not np.isfinite(x).all():
            raise ModelFitError("ImplicitALS: the fold-in system is not finite (check the values and the factors)")
        return x.astype(Y.dtype)

    def fold_in_user(self, items: Iterable[Hashable], values: Iterable[float] | None = None) -> np.ndarray:
        """Factor vector ``(factors,)`` of a user not in training, from the items they interacted with.

        Exact closed form with the item factors fixed, ``x = (c0 Y^T Y + lambda I + Y_S^T (C_S - c0 I) Y_S)^-1
        Y_S^T c_S`` where ``c_S`` are the confidences of ``values`` (default 1 each) under the trained
        confidence rule. Folding in a training user's own row reproduces its factors (exactly after the
        Cholesky solver, approximately after CG/GD).
        """
        idx, vals = self._fold_in_inputs(items, values)
        conf = self._confidence_of(vals, self.confidence_mode_, lambda pos: f"item {show_id(list(items)[pos])}")
        return self._solve_against(self.item_factors_, idx, conf)

    def fold_in_item(self, users: Iterable[Hashable], values: Iterable[float] | None = None) -> np.ndarray:
        """Factor vector ``(factors,)`` of an item not in training from the (known) users who interacted with it.

        The same closed form as :meth:`fold_in_user` with the user factors fixed.
        """
        self._check_fitted()
        ids = list(users) if not isinstance(users, str) else [users]
        if not ids:
            raise InvalidDataError("a new item needs at least one known user to fold in")
        try:
            idx = np.asarray(self.interactions_.user_index(ids), dtype=np.int64)
        except UnknownIdError as exc:
            raise UnknownIdError(f"users: {exc}") from None
        if len(np.unique(idx)) != len(idx):
            raise InvalidDataError("a user is given more than once")
        vals = np.ones(len(idx)) if values is None else np.asarray(list(values), dtype=np.float64).ravel()
        if vals.shape != idx.shape:
            raise InvalidDataError(f"{len(vals)} values given for {len(idx)} users")
        conf = self._confidence_of(vals, self.confidence_mode_, lambda pos: f"user {show_id(ids[pos])}")
        return self._solve_against(self.user_factors_, idx, conf)

    # ------------------------------------------------------------------ explanations
    def explain(self, user: Hashable, item: Hashable, k: int | None = None) -> pd.DataFrame:
        """Why ``item`` scores as it does for ``user``: the share of each of the user's items (Hu, Koren & Volinsky
        2008, section 5).

        With the item factors fixed, the user's exact factor is ``x_u = W^u Y^T C^u p_u`` where
        ``W^u = (Y^T C^u Y + lambda I)^-1``, so the score splits over the user's items ``j``:
        ``y_i . x_u = sum_j s_ij c_uj`` with the user-specific similarity ``s_ij = y_i^T W^u y_j``.

        Parameters
        ----------
        user, item : ids known to the model
        k : int, optional
            Keep the ``k`` largest contributions (default: all of the user's items).

        Returns
        -------
        pandas.DataFrame
            Columns ``item`` (the user's item j), ``contribution`` (``s_ij c_uj``), ``similarity`` (``s_ij``) and
            ``confidence`` (``c_uj``), largest contribution first. The contributions of all items sum to the score
            of the exact solve, which is the model's score after the Cholesky solver (CG and GD approximate it).
            Preferences are taken as 1 (a model trained on an ``ImplicitFeedback`` with zero preferences keeps
            those entries' confidences but not their preference).
        """
        self._check_fitted()
        u = self._user_idx(user)
        i = self._item_idx(item)
        m = self.interactions_.matrix
        lo, hi = int(m.indptr[u]), int(m.indptr[u + 1])
        idx = m.indices[lo:hi]
        conf = self._confidence_of(m.data[lo:hi], self.confidence_mode_, self.interactions_.entry_name)
        Y = self.item_factors_
        c0, reg = float(self.unobserved_confidence_), float(self.regularization)
        gram = self._cached(f"gram_{id(Y)}", (Y,), lambda: Y.astype(np.float64).T @ Y.astype(np.float64))
        Ys = Y[idx].astype(np.float64)
        A = c0 * gram + Ys.T @ ((conf - c0)[:, None] * Ys)
        A[np.diag_indices_from(A)] += reg
        sims = solve_psd(A, Ys.T, rcond=rank_tolerance(A.shape[0], Y.dtype, Y.shape[0])).T @ Y[i].astype(np.float64)
        frame = pd.DataFrame({"item": self.interactions_.item_index_map.take(idx).to_numpy(),
                              "contribution": sims * conf, "similarity": sims, "confidence": conf})
        frame = frame.sort_values("contribution", ascending=False, kind="stable").reset_index(drop=True)
        return frame if k is None else frame.head(check_int("k", k, minimum=1))

    # ------------------------------------------------------------------ incremental updates
    def partial_fit_users(self, interactions: Interactions) -> ImplicitALS:
        """Recompute (or add) the factors of the users in ``interactions`` by the closed form, items fixed.

        ``interactions`` holds the *complete* current history of each user it lists (their rows replace the
        training rows); users it does not list keep their factors. New user ids extend the id map. Every item
        must be known to the model (fold new items in first with :meth:`partial_fit_items`).
        """
        return self._partial_fit(interactions, side="user")

    def partial_fit_items(self, interactions: Interactions) -> ImplicitALS:
        """Recompute (or add) the factors of the items in ``interactions`` (users x items), users fixed.

        The mirror of :meth:`partial_fit_users`: the given columns replace the training columns of those items,
        new item ids extend the id map, every user must be known.
        """
        return self._partial_fit(interactions, side="item")

    def _partial_fit(self, data: Any, side: str) -> ImplicitALS:
        self._check_fitted()
        p = self._checked_params()
        inter, conf, pref, _, _ = self._prepare(data, {**p, "confidence": self.confidence_mode_})
        model = self.interactions_
        own_map = model.user_index_map if side == "user" else model.item_index_map
        fixed_map = model.item_index_map if side == "user" else model.user_index_map
        data_own = inter.user_index_map if side == "user" else inter.item_index_map
        data_fixed = inter.item_index_map if side == "user" else inter.user_index_map
        other = "item" if side == "user" else "user"
        fixed_codes = fixed_map.get_indexer(data_fixed)
        rows, cols, vals = inter.coo()
        own_e, fixed_e = (rows, cols) if side == "user" else (cols, rows)
        unknown = fixed_codes[fixed_e] < 0
        if unknown.any():
            bad = data_fixed[fixed_e[np.flatnonzero(unknown)[0]]]
            raise UnknownIdError(
                f"unknown {other} id {show_id(bad)} in partial_fit_{side}s ({int(unknown.sum())} entries); "
                f"add new {other}s first with partial_fit_{other}s"
            )
        new_ids = data_own[own_map.get_indexer(data_own) < 0]
        full_map = own_map.append(pd.Index(new_ids)) if len(new_ids) else own_map
        own_codes = full_map.get_indexer(data_own)
        # CSR over the listed rows (in data order) against the fixed side
        r_local, f_global = own_e.astype(np.int64), fixed_codes[fixed_e].astype(np.int64)
        n_listed = len(data_own)
        order = np.lexsort((f_global, r_local))
        sub = sp.csr_matrix((np.arange(1, len(order) + 1, dtype=np.float64), (r_local[order], f_global[order])),
                            shape=(n_listed, len(fixed_map)))
        pos = sub.data.astype(np.int64) - 1  # sorted CSR entry -> position in `order`
        entry = order[pos]
        s_conf = np.ascontiguousarray(conf[entry])
        s_pref = np.ascontiguousarray(pref[entry])
        Y = self.item_factors_ if side == "user" else self.user_factors_
        Xs = _aligned.zeros((n_listed, Y.shape[1]), Y.dtype)
        ip = sub.indptr.astype(np.int64)
        failed = half_step(ip, sub.indices.astype(np.int32), s_conf, s_pref, Y, Xs, c0=self.unobserved_confidence_,
                           reg=p["regularization"], solver="cholesky")
        if failed.any() or not np.isfinite(Xs).all():
            raise ModelFitError(f"ImplicitALS: partial_fit_{side}s produced non-finite factors; increase regularization")
        attr = "user_factors_" if side == "user" else "item_factors_"
        old = getattr(self, attr)
        grown = _aligned.zeros((len(full_map), old.shape[1]), old.dtype)
        grown[: len(old)] = old
        grown[own_codes] = Xs
        setattr(self, attr, grown)
        # the training interactions: the listed rows/columns replace the old ones
        m_rows, m_cols, m_vals = model.coo()
        m_own = m_rows if side == "user" else m_cols
        keep = ~np.isin(m_own, own_codes)
        new_own = own_codes[own_e].astype(np.int64)
        new_fixed = fixed_codes[fixed_e].astype(np.int64)
        all_own = np.concatenate([m_own[keep].astype(np.int64), new_own])
        all_fixed = np.concatenate([(m_cols if side == "user" else m_rows)[keep].astype(np.int64), new_fixed])
        all_vals = np.concatenate([m_vals[keep], vals]).astype(np.float32)
        if side == "user":
            shape, ur, ic = (len(full_map), len(fixed_map)), all_own, all_fixed
            users, items = full_map, fixed_map
        else:
            shape, ur, ic = (len(fixed_map), len(full_map)), all_fixed, all_own
            users, items = fixed_map, full_map
        matrix = sp.csr_matrix((all_vals, (ur, ic)), shape=shape)
        matrix.sort_indices()
        self.interactions_ = Interactions(matrix, users, items, has_values=model.has_values)
        self._invalidate_caches()
        return self


# ============================================================================================ the fit as a plan
def implicit_block(block: RowBlock, fixed: tuple, small: dict, own: tuple, with_loss: bool) -> tuple[tuple, dict]:
    """One ImplicitALS half-step on a block of rows: ``own[0]`` (n_rows, d) solved in place against ``fixed[0]``.

    ``small``: ``YtY`` (:func:`factor_gram` of the fixed side, float64 (d, d)), ``c0``, ``reg``, ``solver``,
    ``cg_steps``. Partial sums: ``failed`` rows and, with ``with_loss``, the block's observed loss
    ``sum_{(u,i) in block} [c_ui (p_ui - s_ui)^2 - c0 s_ui^2]`` (summed by the half-step while each row is in cache).
    """
    (Y,), (X,) = fixed, own
    pref = block.pref if block.pref is not None else _all_ones(block.nnz, X.dtype)
    c0, reg, YtY = small["c0"], small["reg"], small["YtY"]
    if small["solver"] == "gd":
        gd_half_step(block.indptr, block.indices, block.values, pref, Y, X, c0=c0, reg=reg, YtY=YtY)
        loss = implicit_observed_loss(block.indptr, block.indices, block.values, pref, X, Y, c0) if with_loss else 0.0
        return (X,), {"failed": 0, "loss": float(loss)}
    row_loss = np.zeros(X.shape[0], dtype=np.float64) if with_loss else None
    failed = half_step(block.indptr, block.indices, block.values, pref, Y, X, c0=c0, reg=reg, solver=small["solver"],
                       cg_steps=small["cg_steps"], order=block.order, row_loss=row_loss, YtY=YtY)
    return (X,), {"failed": int(failed.sum()), "loss": float(np.sum(row_loss)) if with_loss else 0.0}


def implicit_row_stats(block: RowBlock, rows: tuple, small: dict) -> dict:
    """What a sharded ImplicitALS fit needs of a block's new rows ``X_b``: ``gram`` = ``X_b^T X_b`` (float64
    (d, d)); summed over blocks it is ``X^T X``, the next half-step's ``G0`` and the loss's dense terms."""
    return {"gram": factor_gram(rows[0])}


def confidence_block(block: RowBlock, side: int, users: pd.Index, items: pd.Index, *, mode: str, alpha: float,
                     eps: float, dtype: str) -> RowBlock:
    """A raw block (values r_ui) with its confidences c_ui in ``dtype`` and its row schedule; errors name the pair."""
    rows = np.repeat(np.arange(block.start, block.stop), np.diff(block.indptr))

    def who(pos: int) -> str:
        r, c = rows[pos], block.indices[pos]
        u, i = (users[r], items[c]) if side == 0 else (users[c], items[r])
        return f"user {show_id(u)}, item {show_id(i)}"

    conf = entry_confidence(block.values, mode, alpha, eps, who, dtype=dtype)
    return RowBlock(block.start, block.stop, block.indptr, block.indices, conf, None, row_order(block.indptr))


class _ImplicitPlan(ALSPlan):
    """ImplicitALS: items then users, warm-started rows, the loss from the user half-step's sums and the Grams.

    Each factor Gram ``X^T X`` / ``Y^T Y`` is computed once per iteration (float64 (d, d)): for the loss and for
    the next half-step's ``G0 = c0 Y^T Y + lambda I``, which every block then forms in O(d^2).
    """

    name = "ImplicitALS"
    order = ("item", "user")
    loss_side = "user"
    row_order = True
    kernel = staticmethod(implicit_block)
    state_names = ("user_factors_", "item_factors_")
    nonfinite_hint = "increase regularization or use dtype='float64'"
    maximize = True

    row_stats = staticmethod(implicit_row_stats)

    def __init__(self, model: ImplicitALS, data: Any, validation: Any, entries_on_workers: bool,
                 sharded: bool = False, entry_summary: dict | None = None) -> None:
        p = model._checked_params()
        if entries_on_workers:
            inter, conf, pref = data, None, None
            c0, mode = p["unobserved_confidence"], p["confidence"]
        else:
            inter, conf, pref, c0, mode = model._prepare(data, p, read_from_values=True)
        if (inter.nnz if entry_summary is None else int(entry_summary["n"])) == 0:
            raise InvalidDataError("no interactions to fit")
        self.model, self.p, self.inter, self.c0, self.mode = model, p, inter, float(c0), mode
        self.compute_loss = p["calculate_training_loss"]
        self._conf, self._pref = conf, pref
        self.iterations = p["iterations"]
        dt, d = p["dtype"], p["factors"]
        n_users, n_items = inter.matrix.shape
        model.interactions_ = inter
        model.unobserved_confidence_ = float(c0)
        model.confidence_mode_ = mode
        threads = p["num_threads"] or get_num_threads()
        gen = rng(model.seed)
        self.sharded = sharded
        if sharded:  # the rows are drawn block by block, where they will live
            self._draws = {name: BlockDraws(gen, n, d, 0.01, dt, "random")
                           for name, n in (("user", n_users), ("item", n_items))}
            model.user_factors_ = model.item_factors_ = None
        else:
            check_factor_memory("ImplicitALS", d, n_users, n_items, np.dtype(dt).itemsize, threads)
            model.user_factors_ = uniform_matrix(gen, n_users, d, 0.01, dt, threads)  # U[0, 0.01), as implicit
            model.item_factors_ = uniform_matrix(gen, n_items, d, 0.01, dt, threads)
        self.val = model._validation_truth(validation, p["validation_k"])
        if self.val is not None:
            self.val_key, self.patience = "val_ndcg", p["early_stopping_rounds"]
        self.theoretical_bytes = (n_users + n_items) * d * np.dtype(dt).itemsize
        self._small = {"c0": self.c0, "reg": p["regularization"], "solver": p["solver"], "cg_steps": p["cg_steps"]}
        self._sides: dict[str, RowBlock] = {}
        self._slicer: ColumnSlices | None | bool = None  # (False: the side is built whole)
        self._grams: dict[str, np.ndarray] = {}
        self._observed = 0.0

    def side(self, name: str) -> RowBlock:
        if name not in self._sides:
            csr = self.inter.matrix
            if name == "user":
                indptr, indices, conf, pref = csr.indptr, csr.indices, self._conf, self._pref
            else:  # the items' entries in one transpose, with the per-entry arrays that differ per entry
                indptr, indices, values = transpose(csr.indptr, csr.indices, csr.shape[1], self._carried())
                conf, pref = self._item_entries(values, len(indices))
            self._sides[name] = row_block(indptr, indices, conf, pref, 0, len(indptr) - 1, with_order=True)
        return self._sides[name]

    def _carried(self) -> list[np.ndarray]:
        """The per-entry arrays the item side takes in its transposed order: the confidences (or the values an
        :class:`Affine` reads them from) and the preferences, each unless one value stands for all (stride 0)."""
        conf = self._conf.values if isinstance(self._conf, Affine) else self._conf
        return [a for a in (conf, self._pref) if a.strides != (0,)]

    def _item_entries(self, values: list[np.ndarray], nnz: int) -> tuple[Any, np.ndarray]:
        """``(conf, pref)`` of ``nnz`` item-side entries from :meth:`_carried`'s arrays transposed (``values``);
        one value for all entries stays one value (stride 0)."""
        conf, pref = self._conf, self._pref
        rest = iter(values)
        if conf.strides == (0,):
            c = np.broadcast_to(conf[:1], (nnz,))
        else:
            c = conf.with_values(next(rest)) if isinstance(conf, Affine) else next(rest)
        pr = np.broadcast_to(pref[:1], (nnz,)) if pref.strides == (0,) else next(rest)
        return c, pr

    def sliced(self, name: str) -> bool:
        # the item side (a transposed copy of the data) in slices of columns on a large matrix; the gd solver
        # takes one step size for the whole side, so its side stays whole
        if name != "item" or self.p["solver"] == "gd":
            return False
        if self._slicer is None:
            entry_bytes = 4 + sum(a.dtype.itemsize for a in self._carried())
            self._slicer = column_slicer(self.inter.matrix, entry_bytes, self.theoretical_bytes) or False
        return bool(self._slicer)

    def slices(self, name: str) -> Iterator[RowBlock]:
        for a, b, indptr, indices, values in self._slicer.passes(self._carried()):
            conf, pref = self._item_entries(values, len(indices))
            block = RowBlock(a, b, indptr, indices, conf, pref, row_order(indptr))
            del indptr, indices, values, conf, pref
            yield block
            del block

    def entry_transform(self):
        return functools.partial(confidence_block, mode=self.mode, alpha=float(self.model.alpha),
                                 eps=float(self.model.eps), dtype=self.p["dtype"])

    def _factors(self, name: str) -> np.ndarray:
        return self.model.user_factors_ if name == "user" else self.model.item_factors_

    def _gram(self, name: str) -> np.ndarray:
        if name not in self._grams:
            with single_threaded_blas():
                self._grams[name] = factor_gram(self._factors(name))
        return self._grams[name]

    def fixed(self, name: str) -> tuple[np.ndarray, ...]:
        return (self._factors(_OTHER[name]),)

    def small(self, name: str) -> dict[str, Any]:
        return {**self._small, "YtY": self._gram(_OTHER[name])}

    def own(self, name: str) -> tuple[np.ndarray, ...]:
        return (self._factors(name),)

    def initial_rows(self, name: str):
        draws = self._draws[name]
        return lambda lo, hi: (draws.rows(lo, hi),)

    def adopt(self, name: str, rows: tuple) -> None:
        setattr(self.model, f"{name}_factors_", rows[0])
        self._grams.pop(name, None)

    def update(self, name: str, own: tuple | None, partial: dict) -> None:
        if own is None:
            self._grams[name] = partial["gram"]
        else:
            self.adopt(name, own)
        if name == self.loss_side and "loss" in partial:
            self._observed = float(partial["loss"])

    def entry(self) -> dict[str, float]:
        m = self.model
        loss = implicit_loss(None, None, None, None, m.user_factors_, m.item_factors_, self.c0,
                             self.p["regularization"], observed=self._observed, XtX=self._gram("user"),
                             YtY=self._gram("item"))
        return {"loss": loss}

    def validate(self) -> float:
        return self.model._validation_ndcg(self.val, self.p["validation_k"])

    def check_finite(self, iteration: int) -> None:
        if not self.sharded:  # (a sharded executor counts the non-finite values of every block it solves)
            self.model._check_finite(iteration)

    def local_context(self):
        return threads_and_blas(self.p["num_threads"], blas_single=False)

    def finish(self, history: list, best_iteration: int) -> None:
        if self.model.user_factors_ is not None:  # a sharded fit saved without gathering holds none
            self.model._check_finite(best_iteration)


_OTHER = {"user": "item", "item": "user"}
#: confidence rules that are affine in the stored value r: (offset, scale) of c = offset + scale r, given alpha
_AFFINE_RULES = {"linear": lambda alpha: (1.0, alpha), "given": lambda alpha: (0.0, 1.0),
                 "identity": lambda alpha: (0.0, 1.0)}
