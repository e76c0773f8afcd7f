"""Cross-validation and hyperparameter search over any mfrec estimator.

An estimator is anything with ``get_params()``, ``set_params(**p)`` and ``fit(interactions)`` that
:func:`~mfrec.evaluation.evaluator.evaluate` can score (the :class:`~mfrec.models.base.Recommender`
contract). Candidates are cloned before fitting, so the estimator passed in is never modified.

Search only ever splits the data given to ``fit``: keep your own test set out of it and score the
selected ``best_estimator_`` on that test set afterwards.
"""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mfrec._params import check_int
from mfrec._random import SeedLike, int_seed
from mfrec.data.interactions import Interactions
from mfrec.data.split import Split, kfold
from mfrec._progress import quiet, report
from mfrec.evaluation.evaluator import LOWER_IS_BETTER, _base_name, evaluate, metric_key
from mfrec.exceptions import InvalidParameterError, ModelFitError

__all__ = ["cross_validate", "GridSearch", "RandomSearch"]


# ---------------------------------------------------------------------------------------------- helpers
def _clone(estimator: Any, params: Mapping[str, Any] | None = None) -> Any:
    """A new unfitted estimator with the same hyperparameters (``params`` override some)."""
    params = dict(params or {})
    if not (hasattr(estimator, "get_params") and hasattr(estimator, "fit")):
        raise InvalidParameterError(
            f"{type(estimator).__name__} is not an estimator: it needs get_params(), set_params() and fit()"
        )
    try:
        from mfrec.models.base import clone
    except ImportError:  # pragma: no cover - the models layer is always there in a full install
        clone = None
    if clone is not None:
        try:
            return clone(estimator, **params)
        except InvalidParameterError:
            raise
        except Exception:  # estimators outside the Recommender hierarchy: fall back below
            pass
    new = type(estimator)(**estimator.get_params())
    if params:
        new.set_params(**params)
    return new


def _edge_warnings(candidates: list[dict[str, Any]], best: dict[str, Any]) -> list[str]:
    """One line per numeric hyperparameter whose best value is the smallest or largest searched (3+ values):
    the optimum may lie beyond the grid, and the line says which way to extend it."""
    out = []
    for name, value in best.items():
        values = sorted({c[name] for c in candidates if isinstance(c.get(name), int | float)
                         and not isinstance(c.get(name), bool)})
        if len(values) < 3 or not isinstance(value, int | float) or isinstance(value, bool):
            continue
        if value == values[0]:
            out.append(f"the best {name}={value:g} is the smallest value searched ({values[0]:g}..{values[-1]:g}); "
                       f"extend the grid below it")
        elif value == values[-1]:
            out.append(f"the best {name}={value:g} is the largest value searched ({values[0]:g}..{values[-1]:g}); "
                       f"extend the grid above it")
    return out


def _folds(data: Interactions, cv: Any, seed: SeedLike) -> list[tuple[Interactions, Interactions]]:
    """Materialize ``cv`` (an int, or an iterable of Splits / (train, test) pairs) as a list of pairs."""
    if isinstance(cv, bool):
        raise InvalidParameterError(f"cv must be an int >= 2 or a list of (train, test) pairs, got {cv!r}")
    if isinstance(cv, int | np.integer):
        if not isinstance(data, Interactions):
            raise InvalidParameterError(f"data must be an Interactions, got {type(data).__name__}")
        check_int("cv", cv, minimum=2)
        return [(s.train, s.test) for s in kfold(data, n_splits=int(cv), seed=seed)]
    if isinstance(cv, Split):
        cv = [cv]
    try:
        pairs = list(cv)
    except TypeError:
        raise InvalidParameterError(
            f"cv must be an int >= 2 or an iterable of (train, test) pairs, got {type(cv).__name__}"
        ) from None
    if not pairs:
        raise InvalidParameterError("cv holds no (train, test) pair")
    out = []
    for f, pair in enumerate(pairs):
        try:
            train, test = pair
        except (TypeError, ValueError):
            raise InvalidParameterError(f"cv[{f}] is not a (train, test) pair") from None
        if not (isinstance(train, Interactions) and isinstance(test, Interactions)):
            raise InvalidParameterError(f"cv[{f}]: train and test must both be Interactions")
        out.append((train, test))
    return out


def _fit_params(fit_params: Mapping[str, Any] | None) -> dict[str, Any]:
    if fit_params is None:
        return {}
    if not isinstance(fit_params, Mapping):
        raise InvalidParameterError(f"fit_params must be a dict of fit() keyword arguments, got {type(fit_params).__name__}")
    return dict(fit_params)


def _describe(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in params.items()) or "default parameters"


def _run_fold(
    estimator: Any,
    params: Mapping[str, Any],
    fold: int,
    train: Interactions,
    test: Interactions,
    eval_kwargs: Mapping[str, Any],
    fit_params: Mapping[str, Any],
) -> dict[str, Any]:
    """Clone, fit on ``train``, evaluate on ``test``; a failing fit becomes a ModelFitError naming the fold."""
    model = _clone(estimator, params)
    t0 = time.perf_counter()
    try:
        with quiet():  # the search shows its own progress, not one bar per fold
            model.fit(train, **fit_params)
    except Exception as exc:
        raise ModelFitError(
            f"fold {fold}: fitting {type(estimator).__name__}({_describe(model.get_params())}) failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    t1 = time.perf_counter()
    scores = evaluate(model, test, train=train, **eval_kwargs)
    scores["fit_time"] = t1 - t0
    scores["score_time"] = time.perf_counter() - t1
    return scores


def _worker_init(threads: int) -> None:
    """Give each worker process its share of the cores (kernel x BLAS threads must not oversubscribe)."""
    from threadpoolctl import threadpool_limits

    from mfrec.kernels.threads import set_num_threads

    threadpool_limits(threads)
    set_num_threads(max(1, threads))


def _run_many(tasks: list[tuple], n_jobs: int) -> list[dict[str, Any]]:
    """Run ``_run_fold`` tasks in order, in worker processes when ``n_jobs > 1``.

    Workers are *spawned* (not forked): forking a process whose kernel or BLAS thread pools are
    running is unsafe. Each worker gets ``cores // n_jobs`` threads.
    """
    if n_jobs == 1 or len(tasks) <= 1:
        results = []
        for done, task in enumerate(tasks, 1):
            results.append(_run_fold(*task))
            report("task", done=done, total=len(tasks), what="fold")
        return results
    import multiprocessing
    import os

    workers = min(n_jobs, len(tasks))
    threads = max(1, (os.cpu_count() or 1) // workers)
    ctx = multiprocessing.get_context("spawn")
    try:
        with concurrent.futures.ProcessPoolExecutor(
            max_workers=workers, mp_context=ctx, initializer=_worker_init, initargs=(threads,)
        ) as pool:
            futures = [pool.submit(_run_fold, *t) for t in tasks]
            results = []
            for done, future in enumerate(futures, 1):
                results.append(future.result())
                report("task", done=done, total=len(tasks), what="fold")
            return results
    except concurrent.futures.process.BrokenProcessPool as exc:
        raise ModelFitError(
            f"a worker process died while fitting ({exc}); run with n_jobs=1 to see the error"
        ) from exc


def _n_jobs(n_jobs: Any) -> int:
    import os

    n_jobs = check_int("n_jobs", n_jobs)
    if n_jobs == -1:
        return os.cpu_count() or 1
    if n_jobs < 1:
        raise InvalidParameterError(f"n_jobs must be >= 1 or -1 (all cores), got {n_jobs}")
    return n_jobs


def _table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame.index.name = "fold"
    numeric = frame.select_dtypes("number")
    summary = pd.DataFrame([numeric.mean(), numeric.std(ddof=0)], index=["mean", "std"])
    table = pd.concat([frame, summary])
    table.index.name = "fold"  # concat drops the name when the indexes differ
    return table


# ---------------------------------------------------------------------------------------------- API
def cross_validate(
    estimator: Any,
    data: Interactions | None,
    cv: int | Iterable[Any] = 5,
    metrics: Iterable[str] | None = None,
    n_jobs: int = 1,
    k: int = 10,
    seed: SeedLike = 0,
    relevance_threshold: float | None = None,
    fit_params: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Fit a fresh clone of ``estimator`` on each training fold and evaluate it on the matching test fold.

    Parameters
    ----------
    estimator : estimator
        Unfitted template (never modified): cloned per fold with the same hyperparameters.
    data : Interactions
        Split with :func:`mfrec.data.split.kfold` when ``cv`` is an int (may be None when ``cv`` is a list).
    cv : int >= 2 or iterable of Split / (train, test) pairs
        Number of folds, or the folds themselves.
    metrics : iterable of str, optional
        Metric names for :func:`~mfrec.evaluation.evaluator.evaluate` (default all it can compute).
    n_jobs : int
        Folds run in this many worker processes (``-1``: one per core). The estimator and data must then
        be picklable, i.e. defined at module level.
    k : int
        List length of the ranking metrics.
    seed : int, SeedSequence, Generator or None
        Seed of the fold assignment when ``cv`` is an int.
    relevance_threshold : float, optional
        Passed to :func:`evaluate`.
    fit_params : dict, optional
        Keyword arguments of every fold's ``fit``, e.g. ``{"user_attributes": ua, "item_attributes": ia}``
        for ContentBased / HybridALS. Attribute tables are indexed by id, so each fold sees the same tables;
        ids absent from a training fold become cold ids of that fold's model.

    Returns
    -------
    pandas.DataFrame
        One row per fold (index 0..n-1) then rows ``"mean"`` and ``"std"`` (population std); columns are
        the keys :func:`evaluate` returns plus ``fit_time`` and ``score_time`` (seconds).

    Raises
    ------
    ModelFitError
        When fitting a fold fails; the message names the fold and the parameters.
    """
    n_jobs = _n_jobs(n_jobs)
    folds = _folds(data, cv, seed)
    eval_kwargs = {"k": k, "metrics": metrics, "relevance_threshold": relevance_threshold}
    _clone(estimator)  # fail early on a non-estimator
    fit_params = _fit_params(fit_params)
    rows = _run_many(
        [(estimator, {}, f, tr, te, eval_kwargs, fit_params) for f, (tr, te) in enumerate(folds)], n_jobs
    )
    return _table(rows)


class _BaseSearch:
    """Shared machinery of :class:`GridSearch` and :class:`RandomSearch`."""

    def __init__(
        self,
        estimator: Any,
        metric: str,
        cv: int | Iterable[Any],
        metrics: Iterable[str] | None,
        k: int,
        n_jobs: int,
        seed: SeedLike,
        refit: bool,
        relevance_threshold: float | None,
    ) -> None:
        self.estimator = estimator
        self.metric = metric
        self.cv = cv
        self.metrics = metrics
        self.k = k
        self.n_jobs = n_jobs
        self.seed = seed
        self.refit = refit
        self.relevance_threshold = relevance_threshold

    def _candidates(self) -> list[dict[str, Any]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def fit(self, data: Interactions, **fit_params: Any) -> _BaseSearch:
        """Cross-validate every candidate on folds of ``data`` only, then refit the best on all of ``data``.

        ``fit_params`` go to every fit (folds and refit), e.g. ``user_attributes=`` / ``item_attributes=``
        for ContentBased and HybridALS. Every candidate sees the same folds. Sets ``results_``, ``best_params_``, ``best_score_``,
        ``best_index_`` and (with ``refit``) ``best_estimator_``; returns ``self``.
        """
        if not isinstance(data, Interactions):
            raise InvalidParameterError(f"data must be an Interactions, got {type(data).__name__}")
        k = check_int("k", self.k, minimum=1)
        n_jobs = _n_jobs(self.n_jobs)
        key = metric_key(self.metric, k)
        base = _base_name(self.metric)
        given = [self.metrics] if isinstance(self.metrics, str) else self.metrics
        metrics = None if given is None else sorted({*map(_base_name, given), base})
        candidates = self._candidates()
        if not candidates:
            raise InvalidParameterError("the parameter space holds no candidate")
        for params in candidates:
            _clone(self.estimator, params)  # unknown parameter names fail before any fit
        folds = _folds(data, self.cv, self.seed)
        eval_kwargs = {"k": k, "metrics": metrics, "relevance_threshold": self.relevance_threshold}
        tasks = [
            (self.estimator, params, f, tr, te, eval_kwargs, fit_params)
            for params in candidates
            for f, (tr, te) in enumerate(folds)
        ]
        scores = _run_many(tasks, n_jobs)
        rows = []
        n = len(folds)
        for c, params in enumerate(candidates):
            fold_scores = pd.DataFrame(scores[c * n : (c + 1) * n])
            if key not in fold_scores.columns:
                raise InvalidParameterError(
                    f"metric {key!r} is not available for {type(self.estimator).__name__} "
                    f"(evaluate returned {', '.join(map(str, fold_scores.columns))}); rmse/mae need a model "
                    "with predict() and test values"
                )
            row: dict[str, Any] = dict(params)
            numeric = fold_scores.select_dtypes("number")
            for col in numeric.columns:
                row[f"{col}_mean"] = float(numeric[col].mean())
                row[f"{col}_std"] = float(numeric[col].std(ddof=0))
            rows.append(row)
        results = pd.DataFrame(rows)
        means = results[f"{key}_mean"].to_numpy(dtype=np.float64)
        lower = base in LOWER_IS_BETTER
        order_key = np.where(np.isnan(means), np.inf, means if lower else -means)
        results["rank"] = pd.Series(order_key).rank(method="min").astype(int).to_numpy()
        best = int(np.argmin(order_key))  # first of equals: candidate order breaks ties
        self.results_ = results
        self.best_index_ = best
        self.best_params_ = dict(candidates[best])
        self.best_score_ = float(means[best])
        self.scoring_key_ = key
        self.edge_warnings_ = _edge_warnings(candidates, self.best_params_)
        for message in self.edge_warnings_:
            warnings.warn(message, UserWarning, stacklevel=2)
        if self.refit:
            model = _clone(self.estimator, self.best_params_)
            try:
                with quiet():
                    model.fit(data, **fit_params)
            except Exception as exc:
                raise ModelFitError(
                    f"refitting the best candidate ({_describe(self.best_params_)}) on all data failed: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            self.best_estimator_ = model
        return self


class GridSearch(_BaseSearch):
    """Exhaustive search over a grid of constructor arguments, selected by cross-validation.

    Parameters
    ----------
    estimator : estimator
        Template; candidates are clones with some parameters replaced.
    param_grid : dict of name -> list of values, or a list of such dicts
        As :class:`sklearn.model_selection.ParameterGrid` (every combination of every dict).
    metric : str
        Selection metric (``"rmse"``, ``"ndcg"``, ``"ndcg@10"``, ...): lowest wins for rmse/mae, highest
        otherwise; ties go to the earlier candidate.
    cv : int >= 2 or iterable of Split / (train, test) pairs
        Folds of the data passed to :meth:`fit` (k-fold over entries when an int).
    metrics : iterable of str, optional
        Metrics to report besides ``metric`` (default: all :func:`evaluate` computes).
    k, n_jobs, seed, relevance_threshold
        As in :func:`cross_validate`.
    refit : bool
        Refit the best candidate on all the data given to :meth:`fit` as ``best_estimator_``.

    Attributes
    ----------
    results_ : pandas.DataFrame
        One row per candidate: its parameters as columns, ``<metric>_mean`` / ``<metric>_std`` over the
        folds for every reported key (``rmse_mean``, ``ndcg@10_std``, ``fit_time_mean``, ...), and ``rank``
        (1 = best on ``metric``).
    best_params_ : dict
    best_score_ : float
        Mean of ``metric`` over the folds for the best candidate.
    best_estimator_ : estimator
        The best candidate refitted on all the data (when ``refit``).
    """

    def __init__(
        self,
        estimator: Any,
        param_grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Sequence[Any]]],
        metric: str = "rmse",
        cv: int | Iterable[Any] = 3,
        metrics: Iterable[str] | None = None,
        k: int = 10,
        n_jobs: int = 1,
        seed: SeedLike = 0,
        refit: bool = True,
        relevance_threshold: float | None = None,
    ) -> None:
        super().__init__(estimator, metric, cv, metrics, k, n_jobs, seed, refit, relevance_threshold)
        self.param_grid = param_grid

    def _candidates(self) -> list[dict[str, Any]]:
        try:
            from sklearn.model_selection import ParameterGrid  # lazy: keeps `import mfrec` light

            return [dict(p) for p in ParameterGrid(self.param_grid)]
        except (TypeError, ValueError) as exc:
            raise InvalidParameterError(f"param_grid: {exc}") from None


class RandomSearch(_BaseSearch):
    """Random search: ``n_iter`` candidates drawn from lists or scipy distributions.

    Parameters
    ----------
    estimator : estimator
    param_distributions : dict of name -> list or scipy.stats distribution (anything with ``rvs``)
        As :class:`sklearn.model_selection.ParameterSampler`: lists are sampled uniformly (without
        replacement when every entry is a list), distributions with their ``rvs``.
    n_iter : int >= 1
        Number of candidates (fewer when an all-list space is smaller).
    metric, cv, metrics, k, n_jobs, refit, relevance_threshold
        As in :class:`GridSearch`.
    seed : int, SeedSequence, Generator or None
        Seeds both the candidate draws and the folds: the same seed gives the same search.

    Attributes
    ----------
    results_, best_params_, best_score_, best_estimator_
        As in :class:`GridSearch`.
    """

    def __init__(
        self,
        estimator: Any,
        param_distributions: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        n_iter: int = 10,
        metric: str = "rmse",
        cv: int | Iterable[Any] = 3,
        metrics: Iterable[str] | None = None,
        k: int = 10,
        n_jobs: int = 1,
        seed: SeedLike = 0,
        refit: bool = True,
        relevance_threshold: float | None = None,
    ) -> None:
        super().__init__(estimator, metric, cv, metrics, k, n_jobs, seed, refit, relevance_threshold)
        self.param_distributions = param_distributions
        self.n_iter = n_iter

    def _candidates(self) -> list[dict[str, Any]]:
        n_iter = check_int("n_iter", self.n_iter, minimum=1)
        random_state = int_seed(self.seed)
        try:
            from sklearn.model_selection import ParameterSampler

            sampler = ParameterSampler(self.param_distributions, n_iter=n_iter, random_state=random_state)
            return [{k: (v.item() if isinstance(v, np.generic) else v) for k, v in p.items()} for p in sampler]
        except (TypeError, ValueError) as exc:
            raise InvalidParameterError(f"param_distributions: {exc}") from None
