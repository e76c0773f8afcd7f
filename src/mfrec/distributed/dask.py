"""The same ALS on dask.distributed workers: row blocks stay on the workers, only factor matrices move.

Layout
------
The users x items matrix ``R`` (m x n, nnz entries) is cut into ``B`` *user blocks* (contiguous ranges of users
with their CSR rows; the column indices stay global item indices) and ``B`` *item blocks* (contiguous ranges of
items with their rows of ``R^T``). Boundaries balance the number of entries per block. Each block is sent to the
workers once (``client.scatter``, or computed there from a dask DataFrame) and stays there for the whole fit.

One iteration of :class:`~mfrec.models.implicit.ImplicitALS` (items first, as in the local fit) is::

    broadcast X (m x d)   ->  every item block b: Y_b = half_step(R^T_b, X, Y_b)   ->  gather Y (n x d)
    broadcast Y (n x d)   ->  every user block b: X_b = half_step(R_b, Y, X_b)     ->  gather X (m x d)

where ``half_step`` is :func:`mfrec.kernels.als_implicit.half_step`, the very kernel of the single-process fit
(there is one ALS, not two). A worker forms ``G0 = c0 Y^T Y + lambda I`` from the broadcast ``Y`` itself
(O(n d^2), the same computation as the local fit, so the result does not depend on the blocking), and the
user-block task also returns its part of the observed loss
``sum_{(u,i) in block} [c_ui (p_ui - s_ui)^2 - c0 s_ui^2]``; the client adds ``c0 <X^T X, Y^T Y>`` and the
penalty. Per iteration the client therefore receives ``(m + n) d`` factor values and sends ``(m + n) d`` to each
worker that holds blocks (``(m + n) d * 4`` bytes per broadcast in float32). :class:`~mfrec.models.explicit.ExplicitALS`
runs the same scheme with :func:`mfrec.kernels.als_explicit.als_explicit_step` (users first, then items; the
biases travel with the factors, and the item-block tasks return their squared error).

Warm starts (CG) use the previous result of the same block, which already sits on the worker that holds the
block, so it does not travel again; the task solves in place into it and returns it.

:class:`~mfrec.models.content.HybridALS` (free factors) runs :func:`mfrec.kernels.hybrid.prior_half_step` per
block with the priors ``W^T a_u`` formed on the worker from the block's attribute rows and the map ``W``
(F x d); the client solves ``W = (A^T A + r I)^-1 A^T X`` from the per-block sums ``A_b^T A_b`` (once) and
``A_b^T X_b`` (every half-step), and gives cold ids their factors at the end (``HybridALS._cold_factors``).

Memory per worker: its blocks, its own factor rows, one broadcast factor matrix (released, and waited for,
before the next broadcast): at most the blocks plus two factor matrices (docs/distributed.md).

Fault tolerance
---------------
After every half-step the client holds both factor matrices: that is the per-iteration checkpoint. When a worker
dies mid-fit, the half-step's tasks fail or their blocks are lost; the fit then rebuilds every lost block
(re-scattered from the client's copy, or recomputed from the dask DataFrame graph), re-broadcasts the factors of
the checkpoint and runs the half-step again (``max_restarts`` times at most). ALS half-steps are deterministic
given the fixed side, so the final factors are the same as without the failure.

Security: dask workers unpickle the tasks they are sent. Run clusters on a private network or with TLS
(docs/distributed.md).
"""

from __future__ import annotations

import contextlib
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from mfrec._params import check_choice, check_int
from mfrec._progress import report
from mfrec._random import normal_matrix, rng
from mfrec.data.interactions import Interactions, show_id
from mfrec.exceptions import InvalidDataError, InvalidParameterError, ModelFitError, require_extra
from mfrec.kernels.dense import rank_tolerance, solve_psd

__all__ = ["fit", "DaskInteractions", "from_dask_dataframe", "read_parquet", "local_client", "cluster_client",
           "worker_memory", "BlockStats"]

#: exceptions that mean "a worker (or the data it held) went away", after which the fit recovers
_LOST_NAMES = {"KilledWorker", "FutureCancelledError", "CancelledError", "CommClosedError", "FutureLostError",
               "StreamClosedError", "AllExit"}

_KERNEL_LOCK = threading.Lock()


def _distributed():
    return require_extra("distributed", "distributed")


# ============================================================================================ worker side
@dataclass
class _Block:
    """One block: rows ``start:stop`` of a CSR side, local ``indptr`` (int64), global column ``indices`` (int32).

    ``values`` are the per-entry numbers the kernel consumes: confidences c_ui (implicit) or ratings r_ui
    (explicit); ``pref`` the implicit preferences p_ui (None: all ones); ``order`` rows longest first.
    ``feats`` (HybridALS) are the attribute rows ``a_u`` of the block's rows, float64 (n_rows, F): they live on
    the worker with the block, so the prior ``W^T a_u`` is formed there and only ``W`` (F x d) travels.
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
        extra = 0 if self.pref is None else self.pref.nbytes
        extra += 0 if self.order is None else self.order.nbytes
        extra += 0 if self.feats is None else self.feats.nbytes
        return int(self.indptr.nbytes + self.indices.nbytes + self.values.nbytes + extra)


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


def _prev(x):
    """The factor rows of a previous task result (a tuple whose first item is them) or an array."""
    return x[0] if isinstance(x, tuple) else x


def _own(a: np.ndarray) -> np.ndarray:
    """The warm-start buffer itself, to be solved in place and returned as the task's result.

    The previous result of a block is referenced by nothing but the task that consumes it (the driver drops
    its future as soon as the new one exists, and a lost worker makes the driver re-scatter the rows from
    the client's checkpoint), so overwriting it keeps one copy of the block's own rows on the worker instead
    of two. A read-only buffer (a deserialised frame that could not be reused) is copied once.
    """
    if a.flags.writeable and a.flags.c_contiguous:
        return a
    return np.array(a, copy=True, order="C")


def _implicit_task(block: _Block, Y: np.ndarray, prev, c0: float, reg: float, solver: str, cg_steps: int,
                   with_loss: bool):
    """Implicit half-step on one block: ``(X_b, n_failed, observed_loss_b)`` (see the module docstring)."""
    from mfrec.kernels.als_implicit import gd_half_step, half_step, implicit_observed_loss

    X = _own(_prev(prev))  # solved in place: the result is the warm-start buffer
    pref = block.pref if block.pref is not None else np.broadcast_to(np.ones(1, dtype=X.dtype), (block.nnz,))
    with _kernel_env():
        if solver == "gd":
            gd_half_step(block.indptr, block.indices, block.values, pref, Y, X, c0=c0, reg=reg)
            n_failed = 0
            loss = float(implicit_observed_loss(block.indptr, block.indices, block.values, pref, X, Y, c0)) \
                if with_loss else 0.0
        else:
            # the half-step sums each row's observed loss while the row is in cache (no second pass)
            row_loss = np.zeros(X.shape[0], dtype=np.float64) if with_loss else None
            failed = half_step(block.indptr, block.indices, block.values, pref, Y, X, c0=c0, reg=reg,
                               solver=solver, cg_steps=cg_steps, order=block.order, row_loss=row_loss)
            n_failed = int(failed.sum())
            loss = float(np.sum(row_loss)) if with_loss else 0.0
    return X, n_failed, loss


def _explicit_task(block: _Block, other: np.ndarray, other_bias: np.ndarray, prev, mu: float, reg: float,
                   fw: bool, biases: bool, breg: float, with_sse: bool):
    """Explicit half-step on one block: ``(X_b, b_b, n_failed, sse_b)``."""
    from mfrec.kernels.als_explicit import als_explicit_step, explicit_sse

    X = _own(prev[0])  # solved in place, like the implicit task
    b = _own(prev[1])
    with _kernel_env():
        bad = int(als_explicit_step(block.indptr, block.indices, block.values, other, other_bias, mu, reg, fw,
                                    biases, X, b, breg))
        sse = float(explicit_sse(block.indptr, block.indices, block.values, X, b, other, other_bias, mu, biases)) \
            if with_sse else 0.0
    return X, b, bad, sse


def _hybrid_gram_task(block: _Block):
    """``A_b^T A_b`` (F x F, float64) over the block's rows with entries (the warm rows), or None.

    Summed over blocks on the client it is the ``A^T A`` of the map ``W = (A^T A + r I)^-1 A^T X``; it does not
    change during the fit, so it is computed once.
    """
    if block.feats is None:
        return None
    A = block.feats[np.diff(block.indptr) > 0]
    return A.T @ A


def _hybrid_task(block: _Block, other: np.ndarray, M: np.ndarray | None, c0: float, reg: float, with_loss: bool):
    """HybridALS (free factors) half-step on one block: ``(X_b, n_failed, A_b^T X_b, observed_loss_b)``.

    With ``m_u = M^T a_u`` the prior of each row (zero without attributes), every row with entries gets
    ``x_u = (G0 + sum_i (w_ui - c0) y_i y_i^T)^-1 (sum_i w_ui t_ui y_i + lambda m_u)``, ``G0 = c0 Y^T Y +
    lambda I`` formed here from the broadcast ``other`` (:func:`mfrec.kernels.hybrid.prior_half_step`, the
    kernel of the single-process fit). Rows without entries (cold ids) are not part of the loss: they are
    returned as zeros, and the client gives them their attribute factors at the end of the fit.

    Parameters
    ----------
    block : _Block
        ``values`` = ``w_ui``, ``pref`` = ``t_ui`` (float64), ``feats`` = attribute rows or None.
    other : float64 (n_cols, d)
        The fixed side, cold rows zeroed (they must not enter ``c0 Y^T Y``).
    M : float64 (F, d) or None
        The current attribute map of this side.
    c0, reg : float
        Unobserved weight and ``lambda``.
    with_loss : bool
        Also return ``sum_{(u,i) in block} [w_ui (t_ui - x_u . y_i)^2 - c0 (x_u . y_i)^2]``.

    Returns
    -------
    X_b : float64 (n_rows, d)
    n_failed : int
        Rows whose system was not numerically positive definite.
    AtX : float64 (F, d) or None
        ``A_b^T X_b`` over the warm rows (the cold rows of ``X_b`` are 0, so over all rows).
    loss : float
    """
    from mfrec.kernels.als_implicit import implicit_observed_loss
    from mfrec.kernels.hybrid import prior_half_step

    n_rows, d = block.stop - block.start, other.shape[1]
    # the prior m_u = M^T a_u is the buffer the solve writes into: prior_ridge_rows reads all of row u's
    # prior before it writes row u (and leaves failed rows at m_u), so one (n_rows, d) array serves as both
    X = np.ascontiguousarray(block.feats @ M) if M is not None else np.zeros((n_rows, d))
    with _kernel_env():
        failed = prior_half_step(block.indptr, block.indices, block.values, block.pref, other, X, X, c0=c0,
                                 reg=reg)
        X[np.diff(block.indptr) == 0] = 0.0
        loss = float(implicit_observed_loss(block.indptr, block.indices, block.values, block.pref, X, other, c0)) \
            if with_loss else 0.0
    AtX = None if M is None else block.feats.T @ X
    return X, int(failed.sum()), AtX, loss


def _block_nbytes(block: _Block) -> int:
    return block.nbytes


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


def _make_block(indptr, indices, values, pref, start: int, stop: int, with_order: bool) -> _Block:
    from mfrec.kernels.als_implicit import row_order

    s, e = int(indptr[start]), int(indptr[stop])
    # int32 row pointers when they fit (the dtype of the local fit)
    ip_dt = np.int32 if e - s < np.iinfo(np.int32).max else np.int64
    ip = (np.asarray(indptr[start:stop + 1], dtype=np.int64) - s).astype(ip_dt)
    blk = _Block(start, stop, ip, np.ascontiguousarray(indices[s:e], dtype=np.int32),
                 np.ascontiguousarray(values[s:e]),
                 None if pref is None else np.ascontiguousarray(pref[s:e]))
    if with_order:
        blk.order = row_order(ip)
    return blk


@dataclass
class _Side:
    """The blocks of one side on the cluster: boundaries, futures, and how to rebuild a lost one."""

    bounds: np.ndarray
    futures: list
    rebuild: list[Callable[[], Any]]
    nnz: list[int] = field(default_factory=list)

    def ranges(self):
        return [(int(self.bounds[k]), int(self.bounds[k + 1])) for k in range(len(self.bounds) - 1)]


def _scatter_side(client, csr_parts, bounds, with_order: bool, feats: np.ndarray | None = None) -> _Side:
    """Scatter the blocks of a CSR side (``(indptr, indices, values, pref)``), one future per block.

    ``feats`` (n_rows, F), optional: attribute rows; each block carries its own rows of them.
    """
    indptr, indices, values, pref = csr_parts
    futures, rebuild, nnz = [], [], []
    for k in range(len(bounds) - 1):
        start, stop = int(bounds[k]), int(bounds[k + 1])

        def make(start=start, stop=stop):
            blk = _make_block(indptr, indices, values, pref, start, stop, with_order)
            if feats is not None:
                blk.feats = np.ascontiguousarray(feats[start:stop], dtype=np.float64)
            return client.scatter(blk, hash=False, direct=True)

        futures.append(make())
        rebuild.append(make)
        nnz.append(int(indptr[stop] - indptr[start]))
    return _Side(bounds, futures, rebuild, nnz)


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
              side: int, *pieces) -> _Block:
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
    return _Block(start, stop, m.indptr.astype(ip_dt), m.indices.astype(np.int32), m.data.astype(np.float32))


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
        futures = client.compute(blocks)
        rebuild = [(lambda blk=blk: client.compute(blk)) for blk in blocks]
        sides.append(_Side(bounds, futures, rebuild))
    return users, items, sides[0], sides[1]


# ============================================================================================ the driver
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


def _is_lost(exc: BaseException) -> bool:
    return type(exc).__name__ in _LOST_NAMES or "lost" in str(exc).lower() or "killed" in str(exc).lower()


class _Driver:
    """Runs half-steps over blocks with the client's factor checkpoint and lost-block recovery."""

    def __init__(self, client, max_restarts: int, stats: BlockStats, on_iteration=None) -> None:
        self.client = client
        self.max_restarts = max_restarts
        self.stats = stats
        self.on_iteration = on_iteration
        self._sent = 0
        self._received = 0

    def n_holders(self) -> int:
        return max(1, len(self.client.scheduler_info(n_workers=-1)["workers"]))

    def broadcast(self, arrays):
        self._sent += sum(a.nbytes for a in arrays) * self.n_holders()
        return [self.client.scatter(a, broadcast=True, hash=False, direct=True) for a in arrays]

    def release(self, futures, timeout: float = 10.0) -> None:
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

    def heal(self, side: _Side, prev: list) -> None:
        """Rebuild lost blocks of ``side``; forget warm starts (they come back from the checkpoint)."""
        for k, fut in enumerate(side.futures):
            if fut.status != "finished":
                side.futures[k] = side.rebuild[k]()
        prev[:] = [None] * len(prev)

    def run(self, side: _Side, submit_block, prev: list, initial_rows, gather_parts: int):
        """Submit one task per block (``submit_block(k, block_future, prev_k)``), gather, recover on loss.

        ``prev[k]`` is the previous result future of block ``k`` (warm start) or None, in which case
        ``initial_rows(k)`` (rows of the checkpoint, on the client) is scattered; with ``initial_rows=None``
        the tasks take no warm start (``prev_k`` is None) and their results are not kept on the workers once
        gathered. Returns the gathered results.
        After a lost worker it rebuilds the lost blocks and raises :class:`_Restart` (the caller reruns the
        half-step with a fresh broadcast of the checkpoint).
        """
        while True:
            try:
                futs = []
                for k, blk in enumerate(side.futures):
                    p = prev[k]
                    if p is None and initial_rows is not None:
                        # a copy: the task solves into it in place, and an in-process worker (inproc://)
                        # would otherwise receive a view of the client's checkpoint itself
                        rows = tuple(np.array(r, copy=True) for r in initial_rows(k))
                        self._sent += sum(r.nbytes for r in rows)
                        p = self.client.scatter(rows, hash=False, direct=True)
                    futs.append(submit_block(k, blk, p))
                # drop the previous results now: each is referenced only by the task that overwrites it
                prev[:] = [None] * len(prev)
                results = self.client.gather(futs, direct=True)
            except Exception as exc:  # noqa: BLE001 - filtered right below
                if not _is_lost(exc):
                    raise
                self.stats.restarts += 1
                warnings.warn(f"a dask worker was lost ({type(exc).__name__}: {exc}); rebuilding its blocks and "
                              "rerunning the half-step from the last checkpoint", RuntimeWarning, stacklevel=4)
                self._wait_for_workers()
                self.heal(side, prev)
                raise _Restart() from exc
            if initial_rows is not None:
                prev[:] = futs
            self._received += sum(sum(np.asarray(r).nbytes for r in res[:gather_parts]) for res in results)
            return results

    def _wait_for_workers(self, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while not self.client.scheduler_info(n_workers=-1)["workers"]:
            if time.monotonic() > end:
                raise ModelFitError("all dask workers are gone; the fit cannot continue")
            time.sleep(0.25)

    def end_iteration(self, started: float) -> None:
        self.stats.bytes_sent.append(self._sent)
        self.stats.bytes_received.append(self._received)
        self.stats.seconds.append(time.perf_counter() - started)
        self._sent = self._received = 0


class _Restart(Exception):
    """Internal: a half-step must be rerun from the checkpoint (its factor broadcast is stale)."""


def _n_blocks(client, n_blocks: int | None) -> int:
    if n_blocks is None:
        nthreads = client.nthreads()
        return max(1, len(nthreads))
    return check_int("n_blocks", n_blocks, minimum=1)


def _dashboard(client) -> None:
    link = getattr(client, "dashboard_link", None)
    if link:
        report("dashboard", link=str(link))


def _with_retries(driver: _Driver, half: Callable[[], None]) -> None:
    """Run ``half`` (broadcast + blocks + gather), rerunning it from the checkpoint after a lost worker.

    Raises ``ModelFitError`` (chained to the dask error) after ``driver.max_restarts`` reruns of one half-step.
    """
    attempts = 0
    while True:
        try:
            half()
            return
        except _Restart as restart:
            attempts += 1
            if attempts > driver.max_restarts:
                cause = restart.__cause__
                raise ModelFitError(
                    f"a half-step lost its dask workers {attempts} times in a row (last: {type(cause).__name__}: "
                    f"{cause}); the cluster is unstable — check the worker logs (memory limits?) or raise "
                    "max_restarts"
                ) from cause


def _fit_implicit(model, data, client, n_blocks, max_restarts, on_iteration):
    p = model._checked_params()
    if p["early_stopping_rounds"] is not None:
        raise InvalidParameterError("early_stopping_rounds needs validation data, which the distributed fit "
                                    "does not take; fit without it")
    dt, d, reg, solver, steps = p["dtype"], p["factors"], p["regularization"], p["solver"], p["cg_steps"]
    B = _n_blocks(client, n_blocks)
    if isinstance(data, DaskInteractions):
        users, items, uside, iside = _dask_blocks(client, data, B)
        mode, c0 = p["confidence"], p["unobserved_confidence"]
        inter = _collect_interactions(client, uside, users, items)  # raw values, before they become confidences
        uside, iside = (_prepare_implicit_side(client, s, model, mode, dt, users, items, side)
                        for side, s in ((0, uside), (1, iside)))
    else:
        inter, conf, pref, c0, mode = model._prepare(data, p)
        if inter.nnz == 0:
            raise InvalidDataError("no interactions to fit")
        csr = inter.matrix
        t = sp.csr_matrix((conf, csr.indices, csr.indptr), shape=csr.shape).T.tocsr()
        pref_t = None
        if pref.strides == (0,):
            pref_u = None
        else:
            pref_u = pref
            pref_t = sp.csr_matrix((pref, csr.indices, csr.indptr), shape=csr.shape).T.tocsr().data
        uside = _scatter_side(client, (csr.indptr, csr.indices, conf, pref_u), _boundaries(csr.indptr, B), True)
        iside = _scatter_side(client, (t.indptr, t.indices, t.data, pref_t), _boundaries(t.indptr, B), True)
    n_users, n_items = len(inter.user_index_map), len(inter.item_index_map)
    model.interactions_ = inter
    model.unobserved_confidence_ = float(c0)
    model.confidence_mode_ = mode
    gen = rng(model.seed)
    X = normal_matrix(gen, n_users, d, 0.01, dt)  # the local fit's start (same seed, same values)
    Y = normal_matrix(gen, n_items, d, 0.01, dt)
    model.history_ = []
    model.best_iteration_ = 0
    stats = _new_stats(client, uside, iside, (n_users + n_items) * d * np.dtype(dt).itemsize)
    drv = _Driver(client, max_restarts, stats)
    prev_u: list = [None] * len(uside.futures)
    prev_i: list = [None] * len(iside.futures)
    state = {"X": X, "Y": Y, "obs": 0.0}
    started = time.perf_counter()

    def check(results, side):
        failed = sum(r[1] for r in results)
        if failed:
            raise ModelFitError(f"ImplicitALS: {failed} {side} systems were not positive definite (non-finite "
                                "factors?); increase regularization or use dtype='float64'")

    def item_half():
        (Xf,) = drv.broadcast([state["X"]])
        res = drv.run(iside, lambda k, blk, pv: client.submit(
            _implicit_task, blk, Xf, pv, c0, reg, solver, steps, False, pure=False),
            prev_i, lambda k: (state["Y"][slice(*iside.ranges()[k])],), 1)
        drv.release([Xf])
        check(res, "item")
        state["Y"] = np.ascontiguousarray(np.concatenate([r[0] for r in res]))

    def user_half():
        (Yf,) = drv.broadcast([state["Y"]])
        res = drv.run(uside, lambda k, blk, pv: client.submit(
            _implicit_task, blk, Yf, pv, c0, reg, solver, steps, True, pure=False),
            prev_u, lambda k: (state["X"][slice(*uside.ranges()[k])],), 1)
        drv.release([Yf])
        check(res, "user")
        state["X"] = np.ascontiguousarray(np.concatenate([r[0] for r in res]))
        state["obs"] = float(sum(r[2] for r in res))

    _dashboard(client)
    for it in range(1, p["iterations"] + 1):
        t0 = time.perf_counter()
        _with_retries(drv, item_half)
        _with_retries(drv, user_half)
        Xs, Ys = state["X"], state["Y"]
        XtX = (Xs.T @ Xs).astype(np.float64)
        YtY = (Ys.T @ Ys).astype(np.float64)
        loss = float(state["obs"] + c0 * np.sum(XtX * YtY) + reg * (np.trace(XtX) + np.trace(YtY)))
        drv.end_iteration(t0)
        model.user_factors_, model.item_factors_ = Xs, Ys
        if not np.isfinite(loss):
            model._check_finite(it)
            raise ModelFitError(f"ImplicitALS: the training loss became non-finite at iteration {it}; increase "
                                "regularization or use dtype='float64'")
        entry = {"iteration": it, "loss": loss, "seconds": time.perf_counter() - started}
        model.history_.append(entry)
        model.best_iteration_ = it
        report("iteration", model="ImplicitALS", total=p["iterations"], **entry)
        if on_iteration is not None:
            on_iteration(it, model)
    model._check_finite(model.best_iteration_)
    model.distributed_stats_ = asdict(stats)  # plain JSON-able dict: the model file can hold it
    return model


def _implicit_prepare_task(block: _Block, model, mode: str, dt: str, users: pd.Index, items: pd.Index,
                           side: int) -> _Block:
    """Raw values -> confidences c_ui (the model's own rule and checks); errors name the user and item."""
    from mfrec.kernels.als_implicit import row_order

    rows = np.repeat(np.arange(block.start, block.stop), np.diff(block.indptr))

    def who(pos: int) -> str:
        r, c = rows[pos], block.indices[pos]
        u, i = (users[r], items[c]) if side == 0 else (users[c], items[r])
        return f"user {show_id(u)}, item {show_id(i)}"

    conf = model._confidence_of(block.values, mode, who).astype(dt)
    return _Block(block.start, block.stop, block.indptr, block.indices, conf, None, row_order(block.indptr))


def _prepare_implicit_side(client, side: _Side, model, mode, dt, users, items, which: int) -> _Side:
    raw = side.futures
    futures = [client.submit(_implicit_prepare_task, f, model, mode, dt, users, items, which, pure=False)
               for f in raw]
    client.gather(futures)  # surface validation errors now, with their message

    def rebuild(k):
        if raw[k].status != "finished":
            raw[k] = side.rebuild[k]()
        return client.submit(_implicit_prepare_task, raw[k], model, mode, dt, users, items, which, pure=False)

    return _Side(side.bounds, futures, [(lambda k=k: rebuild(k)) for k in range(len(futures))])


def _csr_parts(block: _Block):
    return block.indptr, block.indices, block.values


def _collect_interactions(client, side: _Side, users: pd.Index, items: pd.Index) -> Interactions:
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
    return Interactions(m, users, items)


def _new_stats(client, uside: _Side, iside: _Side, theoretical: int) -> BlockStats:
    sizes = client.gather([client.submit(_block_nbytes, f, pure=False) for f in uside.futures + iside.futures])
    return BlockStats(n_workers=len(client.scheduler_info(n_workers=-1)["workers"]),
                      n_user_blocks=len(uside.futures), n_item_blocks=len(iside.futures),
                      theoretical_bytes=int(theoretical), block_bytes=[int(s) for s in sizes])


def _fit_explicit(model, data, client, n_blocks, max_restarts, on_iteration):
    p = model._check_common()
    if p["early_stopping_rounds"] is not None:
        raise InvalidParameterError("early_stopping_rounds needs validation data, which the distributed fit "
                                    "does not take; fit without it")
    dt, d, reg = p["dtype"], p["factors"], p["regularization"]
    B = _n_blocks(client, n_blocks)
    if isinstance(data, DaskInteractions):
        if data.value is None:
            raise InvalidDataError("explicit models need ratings: give the value column")
        users, items, uside, iside = _dask_blocks(client, data, B)
        inter = _collect_interactions(client, uside, users, items)
        inter = model._check_data(inter)
    else:
        inter = model._check_data(data)
        csr = inter.matrix
        t = csr.T.tocsr()
        uside = _scatter_side(client, (csr.indptr, csr.indices, csr.data, None), _boundaries(csr.indptr, B), False)
        iside = _scatter_side(client, (t.indptr, t.indices, t.data, None), _boundaries(t.indptr, B), False)
    model._start_fit(inter, dt)
    n_users, n_items = inter.matrix.shape
    gen = rng(model.seed)
    st = {"X": np.zeros((n_users, d), dtype=dt),
          "Y": np.ascontiguousarray(gen.normal(0.0, 0.1, size=(n_items, d)).astype(dt)),
          "bu": np.zeros(n_users, dtype=dt), "bi": np.zeros(n_items, dtype=dt), "sse": 0.0}
    fw, mu, biases, breg = bool(model.frequency_weighted), float(model.global_bias_), bool(model.biases), \
        model._bias_reg()
    stats = _new_stats(client, uside, iside, (n_users + n_items) * (d + 1) * np.dtype(dt).itemsize)
    drv = _Driver(client, max_restarts, stats)
    prev_u: list = [None] * len(uside.futures)
    prev_i: list = [None] * len(iside.futures)

    def half(side, prev, fixed, fixed_b, own, own_b, with_sse):
        def go():
            F, Fb = drv.broadcast([st[fixed], st[fixed_b]])
            res = drv.run(side, lambda k, blk, pv: client.submit(
                _explicit_task, blk, F, Fb, pv, mu, reg, fw, biases, breg, with_sse, pure=False),
                prev, lambda k: (st[own][slice(*side.ranges()[k])], st[own_b][slice(*side.ranges()[k])]), 2)
            drv.release([F, Fb])
            bad = sum(r[2] for r in res)
            if bad:
                raise ModelFitError(f"ExplicitALS: {bad} ridge systems were not positive definite (non-finite "
                                    "factors?); increase regularization or use dtype='float64'")
            st[own] = np.ascontiguousarray(np.concatenate([r[0] for r in res]))
            st[own_b] = np.ascontiguousarray(np.concatenate([r[1] for r in res]))
            st["sse"] = float(sum(r[3] for r in res))
        return go

    s_u = np.ones(n_users)
    s_i = np.ones(n_items)
    if fw:
        s_u = np.maximum(np.diff(inter.matrix.indptr), 1).astype(np.float64)
        s_i = np.maximum(np.bincount(inter.matrix.indices, minlength=n_items), 1).astype(np.float64)
    _dashboard(client)
    started = time.perf_counter()
    for it in range(1, p["iterations"] + 1):
        t0 = time.perf_counter()
        _with_retries(drv, half(uside, prev_u, "Y", "bi", "X", "bu", False))
        _with_retries(drv, half(iside, prev_i, "X", "bu", "Y", "bi", True))
        drv.end_iteration(t0)
        model.user_factors_, model.item_factors_ = st["X"], st["Y"]
        model.user_bias_, model.item_bias_ = st["bu"], st["bi"]
        # the objective of ExplicitALS._objective, with the squared error summed over item blocks
        nu = np.einsum("ij,ij->i", st["X"], st["X"], dtype=np.float64)
        ni = np.einsum("ij,ij->i", st["Y"], st["Y"], dtype=np.float64)
        loss = float(st["sse"] + reg * (s_u @ nu + s_i @ ni))
        if biases:
            loss += breg * float(s_u @ st["bu"].astype(np.float64) ** 2 + s_i @ st["bi"].astype(np.float64) ** 2)
        if not np.isfinite(loss):
            model._check_finite()
            raise ModelFitError(f"ExplicitALS: the training loss became non-finite at iteration {it}; increase "
                                "regularization")
        rmse = float(np.sqrt(st["sse"] / max(inter.nnz, 1)))
        model._record(it, loss, rmse, None, started)
        model.best_iteration_ = it
        if on_iteration is not None:
            on_iteration(it, model)
    model._check_finite()
    model.distributed_stats_ = asdict(stats)  # plain JSON-able dict: the model file can hold it
    return model

def _hybrid_setup(model, data, user_attributes, item_attributes) -> dict[str, Any]:
    """Validated hyperparameters and per-entry arrays of a HybridALS fit: ``HybridALS._prepare_fit`` itself
    (one setup for both fits), after refusing what is not distributed."""
    if isinstance(data, DaskInteractions):
        raise InvalidParameterError("the distributed HybridALS fit takes in-memory Interactions (and attributes), "
                                    "not a dask DataFrame or Parquet input yet")
    if not isinstance(model.free_factors, bool | np.bool_):
        raise InvalidParameterError(f"free_factors must be True or False, got {model.free_factors!r}")
    if not model.free_factors:
        raise InvalidParameterError("HybridALS(free_factors=False) is not distributed yet (its attribute "
                                    "regression is one global conjugate-gradient solve); fit it without client=, "
                                    "or use free_factors=True")
    return model._prepare_fit(data, user_attributes, item_attributes)


def _fit_hybrid(model, data, client, n_blocks, max_restarts, on_iteration, user_attributes, item_attributes):
    """HybridALS with free factors: row blocks solve with their prior, the attribute maps from per-block sums.

    Per half-step (items first, like the local fit): broadcast the fixed side (cold rows zeroed) and pass the
    side's map ``M`` (F x d) to every block task (:func:`_hybrid_task`); gather the rows and ``A_b^T X_b``; the
    client solves ``M = (sum_b A_b^T A_b + lambda_a / lambda I)^-1 sum_b A_b^T X_b`` (``A_b^T A_b`` summed
    once at the start). Cold rows stay 0 during the fit (they are in no term of the loss) and get their
    factors at the end: ``M^T a`` and then the model's own cold-id step (``HybridALS._cold_factors``, the
    neighbour map), a call on the client on the gathered factors.
    """
    s = _hybrid_setup(model, data, user_attributes, item_attributes)
    d, lam, lam_a, c0, dt = s["d"], s["lam"], s["lam_a"], s["c0"], s["dt"]
    inter, A, B = s["inter"], s["A"], s["B"]
    csr = inter.matrix
    n_users, n_items = csr.shape
    B_ = _n_blocks(client, n_blocks)
    uside = _scatter_side(client, s["u_side"], _boundaries(s["u_side"][0], B_), False, A)
    iside = _scatter_side(client, s["i_side"], _boundaries(s["i_side"][0], B_), False, B)
    warm_u, warm_i = np.diff(s["u_side"][0]) > 0, np.diff(s["i_side"][0]) > 0
    ratio = lam_a / lam

    def gram(side: _Side, feats, warm):
        """``(A_w^T A_w + ratio I, rank tolerance)`` over the warm rows, as the local fit's ``ridge_map``."""
        if feats is None:
            return None
        parts = client.gather([client.submit(_hybrid_gram_task, f, pure=False) for f in side.futures])
        G = np.sum(parts, axis=0)
        G[np.diag_indices_from(G)] += ratio
        return G, rank_tolerance(G.shape[0], feats.dtype, int(warm.sum()))

    GA, GB = gram(uside, A, warm_u), gram(iside, B, warm_i)
    gen = rng(model.seed)
    # the local fit's draws (users, then items), solved in float64; cold rows 0 (not part of any term)
    X = normal_matrix(gen, n_users, d, 0.01, dt).astype(np.float64)
    Y = normal_matrix(gen, n_items, d, 0.01, dt).astype(np.float64)
    X[~warm_u] = 0.0
    Y[~warm_i] = 0.0
    st = {"X": X, "Y": Y, "W": None if A is None else np.zeros((A.shape[1], d)),
          "E": None if B is None else np.zeros((B.shape[1], d)), "obs": 0.0}
    stats = _new_stats(client, uside, iside, (n_users + n_items) * d * 8)
    drv = _Driver(client, max_restarts, stats)
    none_u: list = [None] * len(uside.futures)
    none_i: list = [None] * len(iside.futures)

    def half(side, prev, fixed, own, mkey, G, name, with_loss):
        def go():
            (F,) = drv.broadcast([st[fixed]])
            M = st[mkey]
            res = drv.run(side, lambda k, blk, pv: client.submit(
                _hybrid_task, blk, F, M, c0, lam, with_loss, pure=False), prev, None, 1)
            drv.release([F])
            failed = sum(r[1] for r in res)
            if failed:
                raise ModelFitError(f"HybridALS: {failed} {name} systems were not positive definite; increase "
                                    "regularization")
            st[own] = np.concatenate([r[0] for r in res])
            if G is not None:
                st[mkey] = solve_psd(G[0], np.sum([r[2] for r in res], axis=0), rcond=G[1])
            st["obs"] = float(sum(r[3] for r in res))
        return go

    def penalty(F, feats, M, warm):
        P = F[warm] if M is None else F[warm] - feats[warm] @ M
        return float(np.sum(P * P))

    history: list[dict[str, Any]] = []
    _dashboard(client)
    started = time.perf_counter()
    for it in range(1, s["iterations"] + 1):
        t0 = time.perf_counter()
        _with_retries(drv, half(iside, none_i, "X", "Y", "E", GB, "item", False))
        _with_retries(drv, half(uside, none_u, "Y", "X", "W", GA, "user", True))
        drv.end_iteration(t0)
        Xs, Ys, W, E = st["X"], st["Y"], st["W"], st["E"]
        # HybridALS._loss: observed part summed over the user blocks, the rest on the client
        loss = st["obs"] + (c0 * float(np.sum((Xs.T @ Xs) * (Ys.T @ Ys))) if c0 else 0.0)
        loss += lam * (penalty(Xs, A, W, warm_u) + penalty(Ys, B, E, warm_i))
        loss += lam_a * sum(float(np.sum(M * M)) for M in (W, E) if M is not None)
        if not np.isfinite(loss):
            raise ModelFitError(f"HybridALS: the loss became non-finite at iteration {it}; increase regularization")
        history.append({"iteration": it, "loss": float(loss), "seconds": time.perf_counter() - started})
        report("iteration", model="HybridALS", total=s["iterations"], **history[-1])
        if on_iteration is not None:
            model.history_ = history
            model.user_factors_, model.item_factors_ = Xs.astype(dt), Ys.astype(dt)
            on_iteration(it, model)
    X, Y, W, E = st["X"], st["Y"], st["W"], st["E"]
    # cold ids: M^T a (the linear map, as the local fit leaves them); the model's own end of fit then applies
    # its cold-id step and sets the fitted attributes
    if A is not None:
        X[~warm_u] = A[~warm_u] @ W
    if B is not None:
        Y[~warm_i] = B[~warm_i] @ E
    model._finish_fit(s, X, Y, W, E, history)
    model.distributed_stats_ = asdict(stats)  # plain JSON-able dict: the model file can hold it
    return model


def fit(model: Any, data: Any, client: Any, n_blocks: int | None = None, *, max_restarts: int = 3,
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
        balance load better at the price of one ``G0`` (O(n d^2)) per block.
    max_restarts : int, default 3
        How many times a half-step is rerun after a lost worker before the error propagates.
    on_iteration : callable ``(iteration, model)``, optional
        Called on the client after every iteration (the model holds that iteration's factors; for HybridALS
        the rows of cold ids are 0 until the end of the fit).
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
    The result equals the single-process fit with the same seed up to float rounding (the per-row solves are
    the same kernels on the same inputs; only the order of summation in ``Y^T Y`` and in the loss may differ).
    For HybridALS the attribute maps are solved on the client from per-block sums ``A_b^T A_b`` (once) and
    ``A_b^T X_b`` (every half-step), F x F and F x d each.
    """
    _distributed()
    from mfrec.models.content import HybridALS
    from mfrec.models.explicit import ExplicitALS
    from mfrec.models.implicit import ImplicitALS

    if not hasattr(client, "scatter") or not hasattr(client, "submit"):
        raise InvalidParameterError(f"client must be a distributed.Client, got {type(client).__name__}")
    max_restarts = check_int("max_restarts", max_restarts, minimum=0)
    if hasattr(model, "_invalidate_caches"):
        model._invalidate_caches()
    if isinstance(model, HybridALS):
        return _fit_hybrid(model, data, client, n_blocks, max_restarts, on_iteration, user_attributes,
                           item_attributes)
    if user_attributes is not None or item_attributes is not None:
        raise InvalidParameterError(f"user_attributes / item_attributes are for HybridALS, not "
                                    f"{type(model).__name__}")
    if isinstance(model, ImplicitALS):
        return _fit_implicit(model, data, client, n_blocks, max_restarts, on_iteration)
    if isinstance(model, ExplicitALS):
        return _fit_explicit(model, data, client, n_blocks, max_restarts, on_iteration)
    raise InvalidParameterError(
        f"distributed fitting supports ImplicitALS, ExplicitALS and HybridALS, not {type(model).__name__}"
    )


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
