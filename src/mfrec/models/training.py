"""The one training loop: every ALS model describes a fit as a plan, one driver runs it here or on a cluster.

A model's fit is a sequence of iterations; each iteration is a half-step per side (users, items) followed by the
loss. A half-step solves every row of one side with the other side fixed, and rows are independent, so a side
can be cut into row blocks and solved anywhere. An :class:`ALSPlan` says, for one model:

* the sides as CSR row blocks (:class:`RowBlock`) and the order of the half-steps;
* the *kernel*, a module-level function that solves one block of rows
  ``kernel(block, fixed, small, own, with_loss) -> (own, partial)``: ``fixed`` are the large arrays of the other
  side (what a cluster broadcasts), ``small`` the O(d^2) inputs (Gram matrices, attribute maps, scalars), ``own``
  the block's current rows (solved in place; None when the kernel does not warm-start), ``partial`` a dict of
  per-block sums (``failed`` rows, the ``loss`` part, ``A_b^T X_b``...) that the executor adds up over blocks;
* how the gathered rows and sums update the state (:meth:`ALSPlan.update`), the loss of an iteration
  (:meth:`ALSPlan.entry`) and the end of the fit (:meth:`ALSPlan.finish`).

:func:`run` is the driver: history, progress events, the non-finite and failed-row checks, validation and early
stopping live here once. An executor runs the half-steps; it has four methods: ``prepare(plan)`` (before the
clock starts), ``session(plan)`` (a context around the iterations), ``half_step(plan, side, with_loss) -> (rows,
summed partials)`` and ``end_iteration(started)``. :class:`LocalExecutor` passes each side whole to the kernel
(the kernels parallelise over rows on the thread pool); ``mfrec.distributed.dask.DaskExecutor`` runs one task
per block on dask workers. Both execute the same kernel on the same inputs, so a distributed fit equals the
local one to rounding.

:class:`Tracker` (history, events, early stopping) is also what the SGD models use for their epochs.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from mfrec._progress import report
from mfrec.exceptions import ModelFitError
from mfrec.kernels._args import Affine

__all__ = ["RowBlock", "row_block", "slice_count", "column_slicer", "ALSPlan", "LocalExecutor", "Tracker", "run",
           "add_partials", "check_factor_memory"]

Kernel = Callable[..., tuple[tuple, dict]]


# ============================================================================================ row blocks

#: The item side of a local fit on more than SLICE_ABOVE entries is solved in slices of columns (see
#: :meth:`ALSPlan.slices`): as many as keep one slice's transposed arrays within SLICE_SHARE of (data + factors),
#: 2 to MAX_SLICES, none under MIN_SLICE entries. Below SLICE_ABOVE the whole transposed side (8 MB of pattern at
#: most) is built once per fit. Each slice is transposed again every iteration (the whole pass: 0.055 s for the
#: pattern of the implicit benchmark, 200k x 50k with 9.4M entries, 0.10 s with values) and long items in
#: different slices share fewer passes over the fixed factors, so more slices cost time: there, CG at d = 64 in 6
#: slices took 3-15 % longer per iteration than whole, at d = 128 in 4 and Cholesky about the same; with values,
#: 6 slices about 30 % and 8 another 5-10 % (memory 1.12x -> 1.10x at d = 64; docs/benchmarks.md).
SLICE_ABOVE = 1 << 21
SLICE_SHARE = 0.05
MAX_SLICES = 8
MIN_SLICE = 1 << 18
#: ExplicitALS's cap: its rows are solved one by one (no passes shared between items), so a slice costs only its
#: transposition: 11 slices at 4M ratings took 0.82-0.93 s/iter against 0.82-0.83 in 6, memory 1.17x -> 1.12x
EXPLICIT_MAX_SLICES = 12


def slice_count(nnz: int, entry_bytes: int, base_bytes: int, max_slices: int | None = None) -> int | None:
    """Slices of a side of ``nnz`` entries whose transposed copy takes ``entry_bytes`` per entry, for a fit whose
    data and factors take ``base_bytes``, at most ``max_slices`` (default :data:`MAX_SLICES`); None when the side
    is built whole (see :data:`SLICE_ABOVE`)."""
    if nnz <= SLICE_ABOVE:
        return None
    wanted = -(-int(nnz) * int(entry_bytes) // max(1, int(SLICE_SHARE * base_bytes)))
    most = MAX_SLICES if max_slices is None else int(max_slices)
    return int(min(max(wanted, 2), most, max(2, int(nnz) // MIN_SLICE)))


def column_slicer(csr, entry_bytes: int, factor_bytes: int, max_slices: int | None = None):
    """The :class:`~mfrec.kernels.slices.ColumnSlices` of ``csr``'s columns (the item side) for a fit with
    ``factor_bytes`` of factors, or None when the side is built whole (:func:`slice_count`)."""
    from mfrec.kernels.slices import ColumnSlices

    data_bytes = sum(a.nbytes for a in (csr.indptr, csr.indices, csr.data))
    n_slices = slice_count(csr.nnz, entry_bytes, data_bytes + factor_bytes, max_slices)
    return None if n_slices is None else ColumnSlices(csr.indptr, csr.indices, csr.shape[1], n_slices)


def all_finite(a: np.ndarray) -> bool:
    """True when every value of ``a`` is finite, from its minimum and maximum (NaN propagates through both, an
    infinity is one of them): two reductions that allocate nothing (``np.isfinite(a).all()`` holds a boolean mask
    as large as ``a``: 12 MB for 200k x 64 factors, a tenth of a fit's memory)."""
    a = np.asarray(a)
    return a.size == 0 or bool(np.isfinite(a.max()) and np.isfinite(a.min()))


@dataclass
class RowBlock:
    """Rows ``start:stop`` of one side as CSR with per-entry arrays (a whole side is the block ``0:n_rows``).

    Attributes
    ----------
    start, stop : int
        The rows of the side this block holds.
    indptr : int32 or int64 (stop - start + 1,)
        Local row pointers (from 0).
    indices : int32 (nnz,)
        Global column indices (rows of the other side).
    values : (nnz,)
        The per-entry numbers the kernel consumes: confidences (implicit), ratings (explicit), weights (hybrid).
    pref : (nnz,) or None
        Second per-entry array: implicit preferences, hybrid targets (None: not used / all ones).
    order : int64 (stop - start,) or None
        Rows longest first (the implicit kernels' schedule).
    feats : float64 (stop - start, F) or None
        Attribute rows of the block's rows (HybridALS).
    """

    start: int
    stop: int
    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    pref: np.ndarray | None = None
    order: np.ndarray | None = None
    feats: np.ndarray | None = None

    @property
    def nnz(self) -> int:
        return int(len(self.indices))

    @property
    def nbytes(self) -> int:
        arrays = (self.indptr, self.indices, self.values, self.pref, self.order, self.feats)
        return int(sum(a.nbytes for a in arrays if a is not None and a.strides != (0,)))

    def rows(self, start: int, stop: int, with_order: bool = False) -> RowBlock:
        """The sub-block of rows ``start:stop`` (side coordinates), with copies of its entries."""
        return row_block(self.indptr, self.indices, self.values, self.pref, start - self.start,
                         stop - self.start, with_order, self.feats, offset=self.start)


def row_block(indptr, indices, values, pref, start: int, stop: int, with_order: bool = False,
              feats: np.ndarray | None = None, offset: int = 0) -> RowBlock:
    """Rows ``start:stop`` of a CSR ``(indptr, indices, values, pref)`` as a :class:`RowBlock` of copies.

    A stride-0 ``values`` or ``pref`` (one value for every entry, no memory) stays stride 0. ``offset`` is added to the block's row numbers.
    """
    from mfrec.kernels.als_implicit import row_order

    s, e = int(indptr[start]), int(indptr[stop])
    ip_dt = np.int32 if e - s < np.iinfo(np.int32).max else np.int64  # the local fit's dtype when it fits
    if s == 0 and np.asarray(indptr).dtype == ip_dt:  # the pointers as they are (a view: no copy per row)
        ip = np.asarray(indptr)[start:stop + 1]
    else:
        ip = (np.asarray(indptr[start:stop + 1], dtype=np.int64) - s).astype(ip_dt)

    def entries(a):  # a per-entry array's part; one value broadcast with stride 0 stays so (no memory)
        if a is None:
            return None
        if isinstance(a, Affine):  # values read through offset + scale v: the part stays so
            return a.part(s, e)
        return np.broadcast_to(a[:1], (e - s,)) if a.strides == (0,) else np.ascontiguousarray(a[s:e])

    return RowBlock(start + offset, stop + offset, ip, np.ascontiguousarray(indices[s:e], dtype=np.int32),
                    entries(values), entries(pref), row_order(ip) if with_order else None,
                    None if feats is None else np.ascontiguousarray(feats[start:stop], dtype=np.float64))


def add_partials(parts: list[dict]) -> dict:
    """Sum per-block partial results key by key (numbers and arrays alike; None stays None)."""
    out: dict = {}
    for part in parts:
        for key, value in part.items():
            if value is None:
                out.setdefault(key, None)
            elif out.get(key) is None:
                out[key] = value.copy() if isinstance(value, np.ndarray) else value
            else:
                out[key] = out[key] + value
    return out


# ============================================================================================ the plan
class ALSPlan:
    """One model's fit, step by step (subclasses live beside their models; see the module docstring).

    Class attributes a subclass sets: ``name`` (the model, for messages), ``order`` (the sides in half-step
    order), ``loss_side`` (the half-step whose blocks also return the observed loss), ``warm_start`` (blocks
    solve into their previous rows), ``row_order`` (blocks carry a longest-first schedule), ``kernel`` (the
    block function), ``state_names`` (model attributes that early stopping snapshots) and ``nonfinite_hint``.
    Instance attributes: ``compute_loss`` (False: no ``loss`` in the history, no loss pass over the data; the
    factors are scanned for non-finite values instead), ``model``, ``iterations``, ``val_key`` / ``maximize`` /
    ``patience`` (validation and early stopping; ``val_key`` None without validation data) and
    ``theoretical_bytes`` (one copy of both factor matrices, for the distributed statistics).
    """

    name = "ALS"
    order: tuple[str, str] = ("item", "user")
    loss_side = "user"
    warm_start = True
    row_order = False
    kernel: Kernel
    state_names: tuple[str, ...] = ()
    nonfinite_hint = "increase regularization"
    #: why this configuration cannot run on a cluster (None: it can)
    not_distributable: str | None = None
    #: compute the training loss every iteration (the models' ``calculate_training_loss``)
    compute_loss = True

    model: Any
    iterations: int
    val_key: str | None = None
    maximize = False
    patience: int | None = None
    theoretical_bytes = 0

    # -- data
    def side(self, name: str) -> RowBlock:
        """The whole side ``name`` ("user" or "item") as one block."""
        raise NotImplementedError

    def entry_transform(self):
        """For raw blocks built on a cluster: a picklable ``f(block, side, users, items) -> block`` that turns raw
        values into the kernel's per-entry arrays (and checks them), or None when the raw values are those."""
        return None

    def sliced(self, name: str) -> bool:
        """Whether a local fit solves side ``name`` a slice of rows at a time (:meth:`slices`) instead of as one
        block from :meth:`side`; the first call sets the slices up (before the clock of the first iteration)."""
        return False

    def slices(self, name: str) -> Iterator[RowBlock]:
        """Side ``name`` as consecutive row blocks built one at a time, each dropped before the next is built: a
        local half-step then holds one slice of the side's entries, not all of them (for the item side, a
        transposed copy of the data). Only for a :meth:`sliced` side whose kernel solves its ``own`` rows in place
        and whose partials add up over blocks."""
        raise NotImplementedError

    # -- one half-step
    def fixed(self, name: str) -> tuple[np.ndarray, ...]:
        """The other side's arrays the kernel reads (what a cluster broadcasts)."""
        raise NotImplementedError

    def small(self, name: str) -> dict[str, Any]:
        """The kernel's small inputs for a half-step of ``name``."""
        return {}

    def own(self, name: str) -> tuple[np.ndarray, ...] | None:
        """The current rows of side ``name`` (solved in place locally), or None (no warm start)."""
        return None

    def update(self, name: str, own: tuple[np.ndarray, ...] | None, partial: dict[str, Any]) -> None:
        """Take a half-step's result: the side's new rows and the summed partials (``failed`` removed).

        In a sharded fit ``own`` is None (the rows stay on the workers) and ``partial`` also holds the summed
        :attr:`row_stats` of the new rows, which stand in for the rows in the Grams and the loss.
        """
        raise NotImplementedError

    # -- sharded fits (mfrec.distributed.sharded: the factor rows never leave the workers)
    #: module-level ``f(block, rows, small) -> dict`` of the sums over a block's new rows that the plan needs
    #: instead of the rows themselves (Grams, penalties); None: the plan cannot run sharded
    row_stats: Callable[..., dict] | None = None
    #: set by the constructor of a sharded plan: the model holds no factor matrix until :meth:`adopt`
    sharded = False
    #: the model's attributes that hold each side's rows, in the order of the kernel's ``own`` arrays
    row_names: dict[str, tuple[str, ...]] = {"user": ("user_factors_",), "item": ("item_factors_",)}
    #: a sharded fit may end without gathering the rows (False: :meth:`finish` needs them whole)
    model_can_stay_sharded = True

    def initial_rows(self, name: str) -> Callable[[int, int], tuple[np.ndarray, ...]]:
        """``rows(lo, hi)``: the starting rows ``lo:hi`` of side ``name`` (the local fit's, without the whole
        matrix); called for increasing, contiguous ranges."""
        raise NotImplementedError

    def adopt(self, name: str, rows: tuple[np.ndarray, ...]) -> None:
        """Make the model hold side ``name``'s rows (a local half-step, or the gathered end of a sharded fit)."""
        raise NotImplementedError

    def failure_message(self, name: str, n_failed: int) -> str:
        return (f"{self.name}: {n_failed} {name} systems were not positive definite (non-finite factors?); "
                "increase regularization or use dtype='float64'")

    # -- one iteration
    def entry(self) -> dict[str, float]:
        """``{"loss": L, ...}`` after both half-steps of an iteration."""
        raise NotImplementedError

    def publish(self) -> None:
        """Make the model hold the current factors (before validation and ``on_iteration``)."""

    def validate(self) -> float:
        """The validation metric of the published model (called when ``val_key`` is set)."""
        raise NotImplementedError

    def check_finite(self, iteration: int) -> None:
        """Raise the model's own error naming the factor matrix that holds non-finite values, if one does."""

    def local_context(self) -> contextlib.AbstractContextManager:
        """Thread limits of a local fit."""
        return contextlib.nullcontext()

    def finish(self, history: list[dict[str, Any]], best_iteration: int) -> None:
        """Set the fitted attributes (after early stopping restored the best state, if it did)."""


# ============================================================================================ executors
class LocalExecutor:
    """Runs each half-step in this process, the whole side as one block (the kernels thread over rows)."""

    def prepare(self, plan: ALSPlan) -> None:
        """Build both sides (transpose, schedules) before the clock of the first iteration starts; a sliced side
        only counts its slices here (each is built in its half-step)."""
        for name in plan.order:
            if not plan.sliced(name):
                plan.side(name)

    def session(self, plan: ALSPlan) -> contextlib.AbstractContextManager:
        return plan.local_context()

    def half_step(self, plan: ALSPlan, name: str, with_loss: bool) -> tuple[tuple, dict]:
        fixed, small, own = plan.fixed(name), plan.small(name), plan.own(name)
        if not plan.sliced(name):
            return plan.kernel(plan.side(name), fixed, small, own, with_loss)
        parts = []
        for block in plan.slices(name):  # each slice's rows solved in place in views of the side's arrays
            parts.append(plan.kernel(block, fixed, small, tuple(a[block.start:block.stop] for a in own),
                                     with_loss)[1])
            del block  # before the next slice is built: one slice's entries at a time
        return own, add_partials(parts)

    def end_iteration(self, started: float) -> None:
        pass


# ============================================================================================ bookkeeping
class Tracker:
    """History, progress events and early stopping of a fit, one entry per iteration (or epoch).

    ``record(entry)`` appends ``entry`` to ``model.history_``, reports it as an ``"iteration"`` progress event and,
    with ``patience`` and a validation value under ``val_key``, keeps a copy of the model's ``state_names``
    attributes at the best value; it returns True when ``patience`` iterations passed without improvement.
    ``restore()`` puts the best state back and sets ``model.best_iteration_``.
    """

    def __init__(self, model: Any, name: str, total: int, state_names: tuple[str, ...] = (),
                 val_key: str | None = None, maximize: bool = False, patience: int | None = None) -> None:
        self.model, self.name, self.total = model, name, total
        self.state_names, self.val_key, self.maximize, self.patience = state_names, val_key, maximize, patience
        self.best: tuple[float, int, tuple | None] = (-np.inf, 0, None)
        self.last = 0
        model.history_ = []
        report("start", model=name, total=total)

    def record(self, entry: dict[str, Any]) -> bool:
        self.model.history_.append(entry)
        report("iteration", model=self.name, total=self.total, **entry)
        it = int(entry["iteration"])
        self.last = self.model.best_iteration_ = it
        value = entry.get(self.val_key) if self.val_key else None
        if value is None or self.patience is None:
            return False
        score = value if self.maximize else -value
        if score > self.best[0]:
            self.best = (score, it, tuple(getattr(self.model, a).copy() for a in self.state_names))
            return False
        return it - self.best[1] >= self.patience

    def restore(self) -> int:
        """Put back the best state when early stopping kept an earlier iteration; the kept iteration."""
        if self.best[2] is not None and self.best[1] != self.last:
            for name, arr in zip(self.state_names, self.best[2]):
                setattr(self.model, name, arr)
            self.model.best_iteration_ = self.best[1]
        return int(self.model.best_iteration_)


# ============================================================================================ the driver
def run(plan: ALSPlan, executor: Any = None, on_iteration: Callable[[int, Any], None] | None = None) -> Any:
    """Fit by ``plan`` with ``executor`` (default :class:`LocalExecutor`); returns the fitted model.

    Every iteration runs the half-steps in ``plan.order``, refuses failed rows (``ModelFitError`` naming the side),
    computes the loss (a non-finite loss is a ``ModelFitError`` that names the iteration; without
    ``plan.compute_loss``, non-finite factors are), adds the validation
    metric and the cumulative ``seconds``, records the entry (:class:`Tracker`) and calls
    ``on_iteration(iteration, model)``. Early stopping ends the loop and restores the best state.
    """
    executor = LocalExecutor() if executor is None else executor
    model = plan.model
    model.best_iteration_ = 0
    tracker = Tracker(model, plan.name, plan.iterations, plan.state_names, plan.val_key, plan.maximize,
                      plan.patience)
    executor.prepare(plan)
    started = time.perf_counter()
    with executor.session(plan):
        for it in range(1, plan.iterations + 1):
            t0 = time.perf_counter()
            for name in plan.order:
                own, partial = executor.half_step(plan, name, plan.compute_loss and name == plan.loss_side)
                failed = int(partial.pop("failed", 0) or 0)
                if failed:
                    raise ModelFitError(plan.failure_message(name, failed))
                plan.update(name, own, partial)
            executor.end_iteration(t0)
            entry: dict[str, Any] = {"iteration": it}
            if plan.compute_loss:
                entry.update(plan.entry())
                if not np.isfinite(entry["loss"]):
                    plan.publish()
                    plan.check_finite(it)
                    raise ModelFitError(f"{plan.name}: the training loss became non-finite at iteration {it}; "
                                        f"{plan.nonfinite_hint}")
            else:  # no loss to watch: the factors themselves are checked
                plan.publish()
                plan.check_finite(it)
            if plan.val_key is not None or on_iteration is not None:
                plan.publish()
            if plan.val_key is not None:
                entry[plan.val_key] = plan.validate()
            entry["seconds"] = time.perf_counter() - started
            stop = tracker.record(entry)
            if on_iteration is not None:
                on_iteration(it, model)
            if stop:
                break
    best = tracker.restore()
    plan.finish(model.history_, best)
    return model


@contextlib.contextmanager
def threads_and_blas(num_threads: int | None, blas_single: bool) -> Iterator[None]:
    """The kernels on ``num_threads`` pool threads (None: the pool's), BLAS on one thread when ``blas_single``."""
    from mfrec.kernels.threads import limit_threads, single_threaded_blas

    with limit_threads(num_threads or None):
        if blas_single:
            with single_threaded_blas():
                yield
        else:
            yield


def check_factor_memory(name: str, d: int, n_users: int, n_items: int, itemsize: int, threads: int = 1,
                        extra: float = 0.0) -> None:
    """Refuse a fit whose factors and per-thread d x d systems would not fit in the available memory.

    The estimate: both factor matrices ``(m + n) d itemsize``, the Grams and ``G0`` (3 d^2 float64) and one d x d
    float64 system per thread (the exact solvers' scratch), plus ``extra``. ``factors=100000`` on MovieLens-100K
    asks for ~80 GiB of d x d scratch alone: refused in one line instead of a MemoryError after minutes.
    """
    from mfrec._params import check_memory

    nbytes = (n_users + n_items) * d * itemsize + (3 + max(threads, 1)) * d * d * 8.0 + extra
    check_memory(f"{name} with factors={d} ({n_users} users, {n_items} items)", nbytes, "lower factors")
