"""The cluster layer of distributed ALS: row blocks on dask.distributed workers, one task per block and half-step.

The fit itself is the model's plan run by the one driver (:mod:`mfrec.models.training`); this module is the
executor that runs a plan's half-steps on a cluster, plus what only a cluster needs: cutting the sides into blocks,
placing them, broadcasting the fixed side, restarts after a lost worker, statistics, and dask DataFrame / Parquet
input.

Layout
------
The users x items matrix ``R`` (m x n, nnz entries) is cut into ``B`` *user blocks* (contiguous ranges of users
with their CSR rows; the column indices stay global item indices) and ``B`` *item blocks* (contiguous ranges of
items with their rows of ``R^T``). Boundaries balance the number of entries per block. Each block is sent to the
workers once (``client.scatter``, or computed there from a dask DataFrame) and stays there for the whole fit.

One half-step of side ``s`` (e.g. the items of ImplicitALS) is::

    broadcast plan.fixed(s) (the other side's factors) -> every block b: plan.kernel(block_b, fixed, small, own_b)
    -> gather the rows of every block and add up the partial sums -> plan.update(s, rows, sums)

where ``small`` holds the O(d^2) inputs the client computed once (the Gram ``Y^T Y``, an attribute map) and
``own_b`` is the block's previous result, which already sits on the worker that computed it (warm start; the
kernel solves in place into it and returns it). Per iteration the client therefore receives the factor rows
``(m + n) d`` and sends the broadcast ``(m + n) d`` to each worker that holds blocks (docs/distributed.md).

Memory per worker: its blocks, its own factor rows, one broadcast factor matrix (released, and waited for,
before the next broadcast): at most the blocks plus two factor matrices (docs/distributed.md).

Fault tolerance
---------------
After every half-step the client holds both factor matrices: that is the per-iteration checkpoint. When a worker
dies mid-fit, the half-step's tasks fail or their blocks are lost; the executor then rebuilds every lost block
(re-scattered from the client's copy, or recomputed from the dask DataFrame graph), re-broadcasts the factors of
the checkpoint and runs the half-step again (``max_restarts`` times at most). ALS half-steps are deterministic
given the fixed side, so the final factors are the same as without the failure.

Security: dask workers unpickle the tasks they are sent. Run clusters on a private network or with TLS
(docs/distributed.md).
"""

from __future__ import annotations

import contextlib
import inspect
import shutil
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from mfrec import _aligned
from mfrec._params import check_choice, check_int
from mfrec._progress import report
from mfrec.data.interactions import Interactions, show_id
from mfrec.exceptions import InvalidDataError, InvalidParameterError, ModelFitError, require_extra
from mfrec.kernels._args import Affine
from mfrec.distributed.sharded import ShardedExecutor
from mfrec.persist_sharded import finish_directory, new_directory, write_pattern, write_shard
from mfrec.models.training import RowBlock, add_partials, run

__all__ = ["fit", "DaskInteractions", "from_dask_dataframe", "read_parquet", "local_client", "cluster_client",
           "worker_memory", "BlockStats", "DaskExecutor"]

#: exceptions that mean "a worker (or the data it held) went away", after which the fit recovers
_LOST_NAMES = {"KilledWorker", "FutureCancelledError", "CancelledError", "CommClosedError", "FutureLostError",
               "StreamClosedError", "AllExit"}

_KERNEL_LOCK = threading.Lock()


def _distributed():
    return require_extra("distributed", "distributed")


# ============================================================================================ worker side
@contextlib.contextmanager
def _kernel_env():
    """Kernel threads = this worker's threads; one kernel at a time per process (the pool runs one job at once)."""
    from mfrec.kernels.threads import limit_threads, max_threads

    try:
        n = int(_distributed().get_worker().state.nthreads)
    except Exception:  # not on a worker (tests calling the task directly)
        n = max_threads()
    with _KERNEL_LOCK, limit_threads(max(1, n)):
        yield


def _own(a: np.ndarray, align: bool = False) -> np.ndarray:
    """The warm-start buffer itself, to be solved in place and returned as the task's result.

    The previous result of a block is referenced by nothing but the task that consumes it (the executor drops
    its future as soon as the new one exists, and a lost worker makes it re-scatter the rows from the client's
    checkpoint), so overwriting it keeps one copy of the block's own rows on the worker instead of two. A
    read-only buffer (a deserialised frame that could not be reused) is copied once; with ``align`` also a
    misaligned one (a float32 array at an odd offset in a received frame, which numpy's matrix products copy, as
    float64, at every use: the sharded layout forms ``X_b^T X_b`` on the workers).
    """
    if a.flags.writeable and a.flags.c_contiguous and (a.flags.aligned or not align):
        return a
    return np.array(a, copy=True, order="C")


def aligned(a: Any) -> Any:
    """``a``, or an aligned copy of it when a deserialised frame left it misaligned (stride-0 arrays stay; an
    :class:`~mfrec.kernels._args.Affine` has its values aligned)."""
    if isinstance(a, Affine):
        return a.with_values(aligned(a.values))
    if a is None or a.flags.aligned or a.strides == (0,):
        return a
    return np.array(a, copy=True)


def block_task(kernel, block: RowBlock, small: dict, prev, with_loss: bool, *fixed: np.ndarray):
    """Run a plan's ``kernel`` on one block where the block lives: ``(own rows, partial sums)``.

    ``prev`` is the block's previous result ``(own, partial)`` (its rows are solved in place) or None (the kernel
    does not warm-start); ``fixed`` the broadcast arrays of the other side.
    """
    own = None if prev is None else tuple(_own(a) for a in prev[0])
    with _kernel_env():
        return kernel(block, tuple(fixed), small, own, with_loss)


def _transform_task(transform, block: RowBlock, side: int, users: pd.Index, items: pd.Index) -> RowBlock:
    return transform(block, side, users, items)


def _block_nbytes(block: RowBlock) -> int:
    return block.nbytes


def _csr_parts(block: RowBlock):
    return block.indptr, block.indices, block.values


def _rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


# ============================================================================================ blocking
def _boundaries(indptr: np.ndarray, n_blocks: int) -> np.ndarray:
    """``n_blocks + 1`` increasing row boundaries splitting a CSR side into contiguous, nnz-balanced ranges."""
    n_rows = len(indptr) - 1
    n_blocks = max(1, min(n_blocks, n_rows))
    nnz = int(indptr[-1])
    # cut where the cumulative count crosses k * nnz / B (plus an even split of rows when nnz is tiny)
    targets = (np.arange(1, n_blocks) * nnz) / n_blocks
    cuts = np.searchsorted(indptr[1:], targets, side="left") + 1
    bounds = np.unique(np.concatenate([[0], np.clip(cuts, 1, n_rows - 1) if n_rows > 1 else [], [n_rows]]))
    return bounds.astype(np.int64)



@dataclass
class _Side:
    """The blocks of one side on the cluster: boundaries, futures, and how to rebuild a lost one."""

    bounds: np.ndarray
    futures: list
    rebuild: list[Callable[[], Any]]

    def ranges(self):
        return [(int(self.bounds[k]), int(self.bounds[k + 1])) for k in range(len(self.bounds) - 1)]


def _placement(client) -> list[str]:
    """Where block ``k`` of either side goes first: worker ``k mod W`` (addresses sorted), so that user block
    ``k`` and item block ``k`` share a worker: with ids ordered by locality (communities, regions), the rows a
    block references then mostly live beside it."""
    return sorted(client.scheduler_info(n_workers=-1)["workers"])


def _scatter_side(client, whole: RowBlock, n_blocks: int, with_order: bool) -> _Side:
    """Scatter a side (one :class:`RowBlock`) as nnz-balanced blocks, one future per block (placed by
    :func:`_placement`; a block rebuilt after a lost worker goes wherever dask puts it)."""
    bounds = _boundaries(whole.indptr, n_blocks)
    workers = _placement(client)
    futures, rebuild = [], []
    for k in range(len(bounds) - 1):

        def make(start=int(bounds[k]), stop=int(bounds[k + 1]), where=None):
            return client.scatter(whole.rows(start, stop, with_order), hash=False, direct=True, workers=where)

        futures.append(make(where=[workers[k % len(workers)]] if workers else None))
        rebuild.append(make)
    return _Side(bounds, futures, rebuild)


def _transform_side(client, side: _Side, transform, which: int, users: pd.Index, items: pd.Index) -> _Side:
    """Raw blocks -> the plan's per-entry arrays, on the workers (``plan.entry_transform()``); errors surface now."""
    raw = list(side.futures)
    futures = [client.submit(_transform_task, transform, f, which, users, items, pure=False) for f in raw]
    client.gather(futures)  # surface validation errors now, with their message
    # the raw blocks are recomputed from the dask graph if a transformed one is ever lost: not kept beside them
    raw[:] = [None] * len(raw)
    side.futures[:] = [None] * len(raw)

    def rebuild(k):
        if raw[k] is None or raw[k].status != "finished":
            raw[k] = side.rebuild[k]()
        return client.submit(_transform_task, transform, raw[k], which, users, items, pure=False)

    return _Side(side.bounds, futures, [(lambda k=k: rebuild(k)) for k in range(len(futures))])


# ============================================================================================ dask DataFrame input
@dataclass
class DaskInteractions:
    """An interaction log held by dask (a dask DataFrame or a directory of Parquet files), not by this process.

    Build it with :func:`from_dask_dataframe` or :func:`read_parquet`; :func:`fit` then builds the id maps
    distributedly (``value_counts`` of the id columns, one small reduction per column), encodes each partition on
    the workers and assembles the user and item blocks there. Only the id maps and, at the end of the fit, the
    training pattern (for ``interactions_``: 12 bytes per entry) come to the client.

    Attributes
    ----------
    frame : dask.dataframe.DataFrame
    user, item : str
        Id columns.
    value : str or None
        Value column (None: every interaction counts 1).
    duplicates : {"sum", "error"}
        What a repeated (user, item) pair does.
    """

    frame: Any
    user: str
    item: str
    value: str | None = None
    duplicates: str = "sum"


def from_dask_dataframe(frame: Any, user: str = "user", item: str = "item", value: str | None = None,
                        duplicates: str = "sum") -> DaskInteractions:
    """Wrap a dask DataFrame of interactions (one row per event) for :func:`fit`.

    Raises
    ------
    InvalidDataError
        A named column is missing.
    """
    dd = require_extra("dask.dataframe", "distributed")
    if not isinstance(frame, dd.DataFrame):
        raise InvalidDataError(f"expected a dask DataFrame, got {type(frame).__name__}")
    check_choice("duplicates", duplicates, ("sum", "error"))
    for role, col in (("user", user), ("item", item), ("value", value)):
        if col is not None and col not in frame.columns:
            raise InvalidDataError(f"{role} column {col!r} is not in the frame (columns: {list(frame.columns)})")
    return DaskInteractions(frame, user, item, value, duplicates)


def read_parquet(path: str, user: str = "user", item: str = "item", value: str | None = None,
                 duplicates: str = "sum", **kwargs: Any) -> DaskInteractions:
    """A directory (or glob) of Parquet files as :class:`DaskInteractions`; ``kwargs`` go to ``dd.read_parquet``."""
    dd = require_extra("dask.dataframe", "distributed")
    cols = [c for c in (user, item, value) if c is not None]
    try:
        frame = dd.read_parquet(path, columns=cols, **kwargs)
    except (FileNotFoundError, OSError, ValueError, KeyError) as exc:
        raise InvalidDataError(f"cannot read Parquet interactions from {path!r}: {exc}") from None
    return from_dask_dataframe(frame, user, item, value, duplicates)


def _sorted_index(counts: pd.Series) -> pd.Index:
    ids = pd.Index(counts.index, name=None)
    # dask keeps string ids as pyarrow strings, while pandas builds a plain frame's id map in its own default string
    # dtype (object before pandas 3): one dtype for the same ids, so that local and distributed maps are equal
    default_str = pd.Index(["id"]).dtype
    if isinstance(ids.dtype, pd.StringDtype) and ids.dtype != default_str:
        ids = pd.Index(ids.to_numpy(dtype=object))
    try:
        return ids.sort_values()
    except TypeError:  # unorderable mixed ids
        return ids


def _encode_partition(part: pd.DataFrame, umap: pd.Index, imap: pd.Index, ubounds, ibounds, user: str,
                      item: str, value: str | None):
    """Codes of one partition, split by user block and by item block: ``(user_pieces, item_pieces)``."""
    u = umap.get_indexer(part[user])
    i = imap.get_indexer(part[item])
    if value is None:
        v = np.ones(len(part), dtype=np.float32)
    else:
        raw = pd.to_numeric(part[value], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(raw)
        if bad.any():
            p = int(np.flatnonzero(bad)[0])
            raise InvalidDataError(
                f"user {show_id(part[user].iloc[p])}, item {show_id(part[item].iloc[p])}: value "
                f"{part[value].iloc[p]!r} is not a finite number"
            )
        v = raw.astype(np.float32)
    ub = np.searchsorted(ubounds, u, side="right") - 1
    ib = np.searchsorted(ibounds, i, side="right") - 1
    upieces = [(u[ub == k], i[ub == k], v[ub == k]) for k in range(len(ubounds) - 1)]
    ipieces = [(i[ib == k], u[ib == k], v[ib == k]) for k in range(len(ibounds) - 1)]
    return upieces, ipieces


def _assemble(k: int, start: int, stop: int, n_cols: int, duplicates: str, users: pd.Index, items: pd.Index,
              side: int, *pieces) -> RowBlock:
    """CSR block of rows ``start:stop`` (canonical: sorted, duplicates summed or refused) from encoded pieces."""
    pieces = [p[side][k] for p in pieces]  # block k of side (0: users, 1: items) from every partition
    rows = np.concatenate([p[0] for p in pieces]).astype(np.int64) - start
    cols = np.concatenate([p[1] for p in pieces]).astype(np.int64)
    vals = np.concatenate([p[2] for p in pieces]).astype(np.float32)
    m = sp.coo_matrix((vals, (rows, cols)), shape=(stop - start, n_cols)).tocsr()
    if duplicates == "error" and m.nnz < len(vals):
        key = rows * n_cols + cols
        uniq, counts = np.unique(key, return_counts=True)
        k = uniq[np.argmax(counts > 1)]
        r, c = divmod(int(k), n_cols)
        a, b = (users[r + start], items[c]) if side == 0 else (users[c], items[r + start])
        raise InvalidDataError(f"user {show_id(a)}, item {show_id(b)} appears more than once (duplicates='error')")
    m.sum_duplicates()
    m.sort_indices()
    ip_dt = np.int32 if m.nnz < np.iinfo(np.int32).max else np.int64
    return RowBlock(start, stop, m.indptr.astype(ip_dt), m.indices.astype(np.int32), m.data.astype(np.float32))


def _dask_blocks(client, data: DaskInteractions, n_blocks: int):
    """(user_ids, item_ids, user _Side, item _Side) of raw-valued blocks computed on the workers."""
    import dask

    frame = data.frame
    missing = [frame[c].isna().sum() for c in (data.user, data.item)]
    ucounts, icounts, n_miss_u, n_miss_i = client.gather(client.compute(
        [frame[data.user].value_counts(), frame[data.item].value_counts(), *missing]))
    for col, n in ((data.user, n_miss_u), (data.item, n_miss_i)):
        if n:
            raise InvalidDataError(f"column {col!r}: {int(n)} ids are missing (NaN/empty)")
    users, items = _sorted_index(ucounts), _sorted_index(icounts)
    if len(users) == 0:
        raise InvalidDataError("no interactions to fit")
    # nnz-balanced boundaries from the per-id event counts (an upper bound of the entries after merging)
    uptr = np.concatenate([[0], np.cumsum(ucounts.reindex(users).to_numpy())])
    iptr = np.concatenate([[0], np.cumsum(icounts.reindex(items).to_numpy())])
    ub, ib = _boundaries(uptr, n_blocks), _boundaries(iptr, n_blocks)
    umap_d, imap_d = dask.delayed(users, pure=True), dask.delayed(items, pure=True)
    encoded = [dask.delayed(_encode_partition, pure=True)(part, umap_d, imap_d, ub, ib, data.user, data.item,
                                                          data.value)
               for part in frame.to_delayed()]
    sides = []
    for side, bounds, n_cols in ((0, ub, len(items)), (1, ib, len(users))):
        blocks = [dask.delayed(_assemble, pure=True)(k, int(bounds[k]), int(bounds[k + 1]), n_cols,
                                                     data.duplicates, umap_d, imap_d, side, *encoded)
                  for k in range(len(bounds) - 1)]
        workers = _placement(client)
        futures = [client.compute(blk, workers=[workers[k % len(workers)]] if workers else None,
                                  allow_other_workers=True) for k, blk in enumerate(blocks)]
        rebuild = [(lambda blk=blk: client.compute(blk)) for blk in blocks]
        sides.append(_Side(bounds, futures, rebuild))
    return users, items, sides[0], sides[1]




def _collect_interactions(client, side: _Side, users: pd.Index, items: pd.Index, has_values: bool) -> Interactions:
    """The training pattern on the client (``interactions_``: seen items for recommend) from the user blocks."""
    parts = client.gather(direct=True, futures=[client.submit(_csr_parts, f, pure=False) for f in side.futures])
    ptrs, idx, vals, offset = [np.zeros(1, dtype=np.int64)], [], [], 0
    for ip, ix, v in parts:
        ptrs.append(ip[1:] + offset)
        offset += int(ip[-1])
        idx.append(ix)
        vals.append(v)
    m = sp.csr_matrix((np.concatenate(vals).astype(np.float32), np.concatenate(idx), np.concatenate(ptrs)),
                      shape=(len(users), len(items)))
    return Interactions(m, users, items, has_values=has_values)


# ============================================================================================ the executor
@dataclass
class BlockStats:
    """What one distributed fit measured (``model.distributed_stats_`` holds it as a dict of these fields).

    Attributes
    ----------
    n_workers : int
    n_user_blocks, n_item_blocks : int
    bytes_sent : list of int
        Per iteration: factor bytes broadcast to the workers (every copy counted).
    bytes_received : list of int
        Per iteration: factor bytes gathered by the client.
    theoretical_bytes : int
        ``(m + n) d * itemsize``: one broadcast of both factor matrices.
    seconds : list of float
        Wall time of each iteration.
    restarts : int
        Half-steps rerun after a lost worker.
    block_bytes : list of int
        Size of every block (user blocks then item blocks) as stored on the workers.
    layout : {"sharded", "broadcast"}
        Where the factors lived during the fit (:func:`fit`'s ``layout``).
    client_bytes : list of int
        Per iteration: every byte of arrays and numbers the client sent or received (factor rows, the Grams and
        maps sent with the tasks, the per-block sums).
    route_rows : list of int
        Sharded layout: per block (user blocks then item blocks), the rows of the other side it references.
    setup_bytes : int
        Sharded layout: factor bytes the client sent before the first iteration (the starting rows: one copy of
        both factor matrices, block by block; again after a lost worker).
    """

    n_workers: int = 0
    n_user_blocks: int = 0
    n_item_blocks: int = 0
    bytes_sent: list = field(default_factory=list)
    bytes_received: list = field(default_factory=list)
    theoretical_bytes: int = 0
    seconds: list = field(default_factory=list)
    restarts: int = 0
    block_bytes: list = field(default_factory=list)
    layout: str = "broadcast"
    client_bytes: list = field(default_factory=list)
    route_rows: list = field(default_factory=list)
    setup_bytes: int = 0


def _is_lost(exc: BaseException) -> bool:
    return type(exc).__name__ in _LOST_NAMES or "lost" in str(exc).lower() or "killed" in str(exc).lower()


class _Restart(Exception):
    """Internal: a half-step must be rerun from the checkpoint (its factor broadcast is stale)."""


class DaskExecutor:
    """Runs a plan's half-steps on a dask cluster: one task per block, the client's factors as the checkpoint.

    ``sides`` maps "user" / "item" to the blocks already placed on the workers. The driver
    (:func:`mfrec.models.training.run`) calls :meth:`half_step` for every half-step of every iteration.
    """

    def __init__(self, client, sides: dict[str, _Side], max_restarts: int, stats: BlockStats) -> None:
        self.client, self.sides, self.max_restarts, self.stats = client, sides, max_restarts, stats
        self.prev = {name: [None] * len(side.futures) for name, side in sides.items()}
        self._sent = 0
        self._received = 0

    # ------------------------------------------------------------------ driver interface
    def prepare(self, plan) -> None:
        """Nothing to do: the blocks were placed on the workers when the executor was made."""

    def session(self, plan) -> contextlib.AbstractContextManager:
        link = getattr(self.client, "dashboard_link", None)
        if link:
            report("dashboard", link=str(link))
        return contextlib.nullcontext()

    def half_step(self, plan, name: str, with_loss: bool) -> tuple[tuple, dict]:
        """Broadcast ``plan.fixed(name)``, run ``plan.kernel`` on every block of side ``name``, gather.

        Returns the side's rows (the blocks' rows concatenated) and the partial sums added over the blocks. A lost
        worker reruns the half-step from the checkpoint, ``max_restarts`` times at most.
        """
        side, prev, out = self.sides[name], self.prev[name], {}
        kernel, small = plan.kernel, plan.small(name)
        current = plan.own(name) if plan.warm_start else None

        def initial(k: int):
            # a copy: the task solves into it in place, and an in-process worker (inproc://) would otherwise
            # receive a view of the client's checkpoint itself
            lo, hi = side.ranges()[k]
            return tuple(np.array(a[lo:hi], copy=True) for a in current), {}

        def go() -> None:
            fixed = self._broadcast(plan.fixed(name))
            out["results"] = self._run(side, prev, None if current is None else initial, lambda blk, pv: (
                self.client.submit(block_task, kernel, blk, small, pv, with_loss, *fixed, pure=False)))
            self._release(fixed)

        attempts = 0
        while True:
            try:
                go()
                break
            except _Restart as restart:
                attempts += 1
                if attempts > self.max_restarts:
                    cause = restart.__cause__
                    raise ModelFitError(
                        f"a half-step lost its dask workers {attempts} times in a row (last: {type(cause).__name__}: "
                        f"{cause}); the cluster is unstable — check the worker logs (memory limits?) or raise "
                        "max_restarts"
                    ) from cause
        results = out["results"]
        own = tuple(_aligned.concatenate([r[0][j] for r in results]) for j in range(len(results[0][0])))
        return own, add_partials([r[1] for r in results])

    def end_iteration(self, started: float) -> None:
        self.stats.bytes_sent.append(self._sent)
        self.stats.bytes_received.append(self._received)
        self.stats.client_bytes.append(self._sent + self._received)  # every factor byte passes the client
        self.stats.seconds.append(time.perf_counter() - started)
        self._sent = self._received = 0

    # ------------------------------------------------------------------ cluster mechanics
    def _n_holders(self) -> int:
        return max(1, len(self.client.scheduler_info(n_workers=-1)["workers"]))

    def _broadcast(self, arrays) -> list:
        self._sent += sum(a.nbytes for a in arrays) * self._n_holders()
        return [self.client.scatter(a, broadcast=True, hash=False, direct=True) for a in arrays]

    def _release(self, futures, timeout: float = 10.0) -> None:
        """Drop the client's hold on a half-step's broadcast and wait until the scheduler has forgotten it.

        The worker frees the broadcast copy of the fixed side as soon as the scheduler forgets its key, so the
        next half-step's broadcast never coexists with this one on a worker (memory: blocks plus two factor
        matrices, docs/distributed.md). Called after the half-step's results are gathered.
        """
        keys = [f.key for f in futures]
        for f in futures:
            f.release()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                if not any(self.client.who_has(keys).values()):
                    return
            except Exception:  # noqa: BLE001 - a lost scheduler connection surfaces in the next half-step
                return
            time.sleep(0.005)

    def _run(self, side: _Side, prev: list, initial, submit) -> list:
        """Submit one task per block (``submit(block_future, prev_k)``), gather, recover on a lost worker.

        ``prev[k]`` is the future of block ``k``'s previous result (warm start) or None, in which case
        ``initial(k)`` (rows of the checkpoint, on the client) is scattered; with ``initial=None`` the tasks take
        no warm start and their results are not kept on the workers once gathered. After a lost worker it
        rebuilds the lost blocks and raises :class:`_Restart` (the half-step reruns with a fresh broadcast).
        """
        try:
            futs = []
            for k, blk in enumerate(side.futures):
                p = prev[k]
                if p is None and initial is not None:
                    rows = initial(k)
                    self._sent += sum(r.nbytes for r in rows[0])
                    p = self.client.scatter(rows, hash=False, direct=True)
                futs.append(submit(blk, p))
            # drop the previous results now: each is referenced only by the task that overwrites it
            prev[:] = [None] * len(prev)
            results = self.client.gather(futs, direct=True)
        except Exception as exc:  # noqa: BLE001 - filtered right below
            if not _is_lost(exc):
                raise
            self.stats.restarts += 1
            warnings.warn(f"a dask worker was lost ({type(exc).__name__}: {exc}); rebuilding its blocks and "
                          "rerunning the half-step from the last checkpoint", RuntimeWarning, stacklevel=5)
            _wait_for_workers(self.client)
            for k, fut in enumerate(side.futures):  # rebuild lost blocks; warm starts come from the checkpoint
                if fut.status != "finished":
                    side.futures[k] = side.rebuild[k]()
            prev[:] = [None] * len(prev)
            raise _Restart() from exc
        if initial is not None:
            prev[:] = futs
        self._received += sum(_nbytes(res) for res in results)
        return results


def _wait_for_workers(client, timeout: float = 60.0) -> None:
    """Return once the cluster has a worker again; ModelFitError after ``timeout`` seconds without one."""
    end = time.monotonic() + timeout
    while not client.scheduler_info(n_workers=-1)["workers"]:
        if time.monotonic() > end:
            raise ModelFitError("all dask workers are gone; the fit cannot continue")
        time.sleep(0.25)


def _nbytes(result) -> int:
    """Factor bytes in a block's result ``(own rows, partial sums)``: the rows (the O(d^2) sums are not counted,
    so ``bytes_received`` keeps its meaning, the factor values the client gathered)."""
    return int(sum(np.asarray(a).nbytes for a in result[0]))


def _n_blocks(client, n_blocks: int | None) -> int:
    if n_blocks is None:
        return max(1, len(client.nthreads()))
    return check_int("n_blocks", n_blocks, minimum=1)


# ============================================================================================ fit
def fit(model: Any, data: Any, client: Any, n_blocks: int | None = None, *, layout: str = "sharded",
        gather: bool | str = "auto", path: Any = None, max_restarts: int = 3,
        on_iteration: Callable[[int, Any], None] | None = None, user_attributes: Any = None,
        item_attributes: Any = None) -> Any:
    """Fit ``model`` (ImplicitALS, ExplicitALS or HybridALS) on a dask.distributed cluster; returns it fitted.

    Parameters
    ----------
    model : ImplicitALS, ExplicitALS or HybridALS
        Unfitted or fitted; its hyperparameters are used as in ``model.fit``. Validation data and early
        stopping are not supported here; HybridALS only with ``free_factors=True``.
    data : Interactions, ImplicitFeedback (implicit only) or DaskInteractions
        In-memory data is cut into blocks on the client and scattered once; a :class:`DaskInteractions`
        (:func:`from_dask_dataframe`, :func:`read_parquet`) is encoded and blocked on the workers
        (ImplicitALS and ExplicitALS).
    client : distributed.Client
    n_blocks : int, optional
        Blocks per side (user blocks, item blocks); default: the number of workers. More blocks than workers
        balance load better.
    layout : {"sharded", "broadcast"}, default "sharded"
        ``"sharded"`` (:mod:`mfrec.distributed.sharded`): each block's factor rows stay on its worker, a block
        receives only the rows of the other side that its entries reference (worker to worker), and the client
        handles O(d^2) per block and half-step. ``"broadcast"``: the client gathers each side's factors and
        broadcasts them to every worker (fewer, larger messages; the client holds both factor matrices).
    gather : bool or "auto", default "auto"
        Sharded layout: gather the factors into the returned model at the end. ``"auto"``: when both factor
        matrices take at most half of this process's available memory. Without gathering, ``path`` is required
        and the returned model holds no factors (``user_factors_`` is None): load it with ``mfrec.load(path)``.
    path : str or path-like, optional
        Sharded layout: also save the model as a sharded model directory (:mod:`mfrec.persist_sharded`), each
        worker writing its blocks' rows; the workers must see this path too.
    max_restarts : int, default 3
        How many times a half-step is rerun after a lost worker before the error propagates.
    on_iteration : callable ``(iteration, model)``, optional
        Called on the client after every iteration. Broadcast layout: the model holds that iteration's factors
        (for HybridALS the rows of cold ids are 0 until the end of the fit). Sharded layout: the factors are on
        the workers; the model holds the history so far.
    user_attributes, item_attributes : Attributes or DataFrame indexed by id, optional
        HybridALS only, as in ``HybridALS.fit``. Each block carries its rows of them to its worker.

    Returns
    -------
    model
        With the same fitted attributes as a local fit (``interactions_``, ``user_factors_``,
        ``item_factors_``, ``history_`` with the loss, ``best_iteration_``, ...) plus
        ``distributed_stats_`` (a dict of the :class:`BlockStats` fields: bytes moved and seconds per iteration,
        block sizes, restarts).

    Notes
    -----
    The fit is the model's own plan (:mod:`mfrec.models.training`) run by :class:`DaskExecutor`: the same
    kernels on the same inputs as the single-process fit, so the result equals it with the same seed up to
    float rounding (only the order of summation in the loss and the attribute sums may differ).
    """
    _distributed()
    if not hasattr(client, "scatter") or not hasattr(client, "submit"):
        raise InvalidParameterError(f"client must be a distributed.Client, got {type(client).__name__}")
    max_restarts = check_int("max_restarts", max_restarts, minimum=0)
    check_choice("layout", layout, ("sharded", "broadcast"))
    if not (isinstance(gather, bool) or gather == "auto"):
        raise InvalidParameterError(f"gather must be True, False or 'auto', got {gather!r}")
    sharded = layout == "sharded"
    if not sharded and (path is not None or gather is False):
        raise InvalidParameterError("path= and gather=False are for layout='sharded' (the broadcast layout holds the "
                                    "factors in this process: save the returned model with model.save)")
    name = type(model).__name__
    if not hasattr(model, "_als_plan"):
        raise InvalidParameterError(
            f"distributed fitting supports ImplicitALS, ExplicitALS and HybridALS, not {name}")
    takes = inspect.signature(model._als_plan).parameters
    attributes = {}
    if user_attributes is not None or item_attributes is not None:
        if "user_attributes" not in takes:
            raise InvalidParameterError(f"user_attributes / item_attributes are for HybridALS, not {name}")
        attributes = {"user_attributes": user_attributes, "item_attributes": item_attributes}
    if getattr(model, "early_stopping_rounds", None) is not None:
        raise InvalidParameterError("early_stopping_rounds needs validation data, which the distributed fit "
                                    "does not take; fit without it")
    if hasattr(model, "_invalidate_caches"):
        model._invalidate_caches()
    B = _n_blocks(client, n_blocks)
    do_gather, pattern_dir, pattern = None, None, None
    if isinstance(data, DaskInteractions):
        if "entries_on_workers" not in takes:
            raise InvalidParameterError(f"the distributed {name} fit takes in-memory Interactions (and attributes), "
                                        "not a dask DataFrame or Parquet input yet")
        users, items, uside, iside = _dask_blocks(client, data, B)
        has_values = data.value is not None
        if sharded and gather is not True:
            # the entries stay on the workers: the plan gets the id maps and a summary of the entries (count, and
            # the rating range and sum an explicit model starts from); the user blocks write the seen items into
            # the model directory unless the fit ends by gathering the model here
            parts = client.gather([client.submit(_entry_summary, f, pure=False) for f in uside.futures])
            counts = [p["n"] for p in parts]
            summary = {"n": int(sum(counts)), "sum": float(sum(p["sum"] for p in parts)),
                       "min": min((p["min"] for p in parts if p["n"]), default=0.0),
                       "max": max((p["max"] for p in parts if p["n"]), default=0.0)}
            empty = sp.csr_matrix((len(users), len(items)), dtype=np.float32)
            plan = model._als_plan(Interactions(empty, users, items, has_values=has_values), entries_on_workers=True,
                                   sharded=True, entry_summary=summary)
            do_gather = _decide_gather(gather, path, plan, name)
            if do_gather:
                plan.inter = model.interactions_ = _collect_interactions(client, uside, users, items, has_values)
            else:
                pattern_dir = new_directory(path)
                pattern = _write_pattern(client, uside, counts, pattern_dir)
        else:
            inter = _collect_interactions(client, uside, users, items, has_values=has_values)
            plan = model._als_plan(inter, entries_on_workers=True, sharded=sharded)
        sides = {"user": uside, "item": iside}
        transform = plan.entry_transform()
        if transform is not None:
            sides = {key: _transform_side(client, side, transform, k, users, items)
                     for k, (key, side) in enumerate(sides.items())}
    else:
        plan = model._als_plan(data, sharded=sharded, **attributes)
        if plan.not_distributable:
            raise InvalidParameterError(plan.not_distributable)
        sides = {key: _scatter_side(client, plan.side(key), B, plan.row_order) for key in ("user", "item")}
    futures = sides["user"].futures + sides["item"].futures
    sizes = client.gather([client.submit(_block_nbytes, f, pure=False) for f in futures])
    stats = BlockStats(n_workers=len(client.scheduler_info(n_workers=-1)["workers"]),
                       n_user_blocks=len(sides["user"].futures), n_item_blocks=len(sides["item"].futures),
                       theoretical_bytes=int(plan.theoretical_bytes), block_bytes=[int(s) for s in sizes],
                       layout=layout)
    if not sharded:
        run(plan, DaskExecutor(client, sides, max_restarts, stats), on_iteration)
        model.distributed_stats_ = asdict(stats)  # plain JSON-able dict: the model file can hold it
        return model
    if do_gather is None:
        do_gather = _decide_gather(gather, path, plan, name)
    executor = ShardedExecutor(client, sides, max_restarts, stats, gather=do_gather)
    try:
        run(plan, executor, on_iteration)
        stats.route_rows = [int(n) for side in ("user", "item") for n in executor.routes[side].sizes.sum(axis=1)]
        model.distributed_stats_ = asdict(stats)
        if path is not None:
            save_sharded(model, executor, path, pattern_dir, pattern)
    except BaseException:
        if pattern_dir is not None:
            shutil.rmtree(pattern_dir, ignore_errors=True)
        raise
    return model


def _entry_summary(block: RowBlock) -> dict:
    """Count, sum, min and max of a raw block's values (what a fit needs of the entries it never collects)."""
    v = block.values
    if not len(v):
        return {"n": 0, "sum": 0.0, "min": 0.0, "max": 0.0}
    return {"n": int(len(v)), "sum": float(np.sum(v, dtype=np.float64)), "min": float(v.min()), "max": float(v.max())}


def _write_pattern(client, side: _Side, counts: list[int], folder) -> dict[str, list]:
    """The user blocks write the training pattern (the seen items) into ``folder``: ``{array: [shard entries]}``."""
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return _collect_shards(client, [client.submit(write_pattern, f, str(folder), k, int(offsets[k]), pure=False)
                                    for k, f in enumerate(side.futures)])


def _collect_shards(client, futures: list, shards: dict[str, list] | None = None) -> dict[str, list]:
    """Gather the shard entries that :func:`mfrec.persist_sharded.write_shard` / ``write_pattern`` tasks return
    (one dict per block) into ``{array: [entries, in block order]}``, added to ``shards``."""
    shards = {} if shards is None else shards
    for written in client.gather(futures):
        for key, entry in written.items():
            shards.setdefault(key, []).append(entry)
    return shards


def _decide_gather(gather: bool | str, path: Any, plan: Any, name: str) -> bool:
    """Whether a sharded fit gathers its factors into the client at the end (``fit``'s ``gather``)."""
    if plan.row_stats is None:
        raise InvalidParameterError(f"{name} cannot be fitted with layout='sharded'; use layout='broadcast'")
    if gather == "auto":
        import psutil

        gather = plan.theoretical_bytes <= 0.5 * psutil.virtual_memory().available
        if not gather and path is None:
            raise InvalidParameterError(
                f"the factor matrices ({plan.theoretical_bytes / 2**30:.1f} GiB) would take more than half of this "
                "process's available memory: give path= to save the model sharded from the workers")
    if not gather:
        if path is None:
            raise InvalidParameterError("gather=False keeps the factors on the workers: give path= to save them")
        if not plan.model_can_stay_sharded:
            raise InvalidParameterError(f"{name} must gather its factors at the end of the fit (its cold-id step "
                                        "needs them whole): use gather=True")
    return bool(gather)


def save_sharded(model: Any, executor: ShardedExecutor, path: Any, tmp: Any = None,
                 pattern: dict[str, list] | None = None) -> Any:
    """Write ``model`` as a sharded model directory at ``path``: each worker writes its blocks' rows, the client
    the id maps, the training pattern and the manifest (:mod:`mfrec.persist_sharded`). ``tmp``, ``pattern``: a
    directory the user blocks already wrote the training pattern into (a dask log that never came to the client)
    and its shard entries."""
    client = executor.client
    tmp = new_directory(path) if tmp is None else tmp
    try:
        shards: dict[str, list] = dict(pattern or {})
        for side in ("user", "item"):
            _collect_shards(client, [client.submit(write_shard, rows, executor.row_names[side], str(tmp), k, lo, hi,
                                                   workers=None if worker is None else [worker],
                                                   allow_other_workers=True, pure=False)
                                     for k, (lo, hi, rows, worker) in enumerate(executor.blocks_of(side))], shards)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return finish_directory(model, tmp, path, shards)


@contextlib.contextmanager
def local_client(n_workers: int = 2, threads_per_worker: int = 1, **kwargs: Any):
    """A ``LocalCluster`` of worker processes and its client (closed on exit): ``mfrec train --workers N``."""
    distributed = _distributed()
    n_workers = check_int("n_workers", n_workers, minimum=1)
    with distributed.LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker, processes=True,
                                  dashboard_address=kwargs.pop("dashboard_address", None), **kwargs) as cluster, \
            distributed.Client(cluster) as client:
        yield client


@contextlib.contextmanager
def cluster_client(scheduler: str | None = None, workers: int | None = None, **kwargs: Any):
    """The client behind ``mfrec train --scheduler ADDRESS`` / ``--workers N``; yields None when neither is given.

    ``scheduler`` connects to a running dask scheduler (``tcp://host:8786``, ``tls://...`` with a ``security=``
    keyword); ``workers`` starts a :func:`local_client` of that many worker processes. Giving both is an error.
    """
    if scheduler is not None and workers is not None:
        raise InvalidParameterError("give either a scheduler address or a number of local workers, not both")
    if scheduler is None and workers is None:
        yield None
        return
    distributed = _distributed()
    if workers is not None:
        with local_client(workers, **kwargs) as client:
            yield client
        return
    try:
        client = distributed.Client(scheduler, timeout=kwargs.pop("timeout", 30), **kwargs)
    except (OSError, TimeoutError, ValueError) as exc:
        raise InvalidParameterError(f"cannot connect to the dask scheduler at {scheduler!r}: {exc}") from None
    with client:
        yield client


def worker_memory(client) -> dict[str, int]:
    """Resident memory (bytes) of every worker process, by worker address."""
    return client.run(_rss)
