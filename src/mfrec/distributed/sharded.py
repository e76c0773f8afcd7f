"""Sharded distributed ALS: the factor rows stay on the workers; a block receives only the rows it references.

The broadcast layout (:class:`mfrec.distributed.dask.DaskExecutor`) gathers each side's factor matrix into the
client and sends it whole to every worker, so a model is capped by what one process holds. Here, as in Spark
MLlib's blocked ALS, the rows of block ``b`` of a side (users ``lo:hi`` and their factors) live on the worker
that holds the block's data, and nothing of size ``(m + n) d`` ever reaches the client.

Routes (worked out once, at set-up)
-----------------------------------
Block ``b`` of side ``s`` references the set ``cols_b`` of rows of the other side ``o`` (the distinct column
indices of its entries). :func:`localize` cuts ``cols_b`` by the other side's block boundaries into ``need[b][a]``
(rows of block ``a`` of ``o``, local to ``a``, sorted) and renumbers the block's entries to positions in
``cols_b``. Only the pairs ``(b, a)`` with a non-empty ``need`` are routes; the client keeps their sizes
(``B x B`` integers), the index arrays stay on the workers.

One half-step of side ``s``::

    for every route (b, a): a piece = own[o][a][need[b][a]]  (a task where own[o][a] lives), or, when block b
                            needs at least WHOLE_BLOCK_SHARE of block a's rows, own[o][a] itself
    for every block b:      own[s][b], sums_b = kernel(block_b, compact fixed rows, small, own[s][b])
                            (a task where block b lives; it copies its routes' rows into one compact matrix)
    on a worker: sums = sum_b sums_b   (the partial results plus plan.row_stats of the new rows: O(d^2))

The rows travel worker to worker (dask moves a task's inputs between workers directly); the client sends
``small`` (Grams, maps: O(d^2)) once per half-step and receives the one summed set, so its traffic does not grow
with the number of blocks. ``bytes_sent`` counts the rows delivered: per route ``|need[b][a]|``, or the whole
source block when it travels whole, times the row bytes, against ``n_workers (m + n) d`` for a broadcast. With
users in communities that use only their own items, each block references one block of the other side, and
``bytes_sent`` adds up to ``(m + n) d`` per iteration, ``1 / n_workers`` of the broadcast.

A whole block travels from its existing buffer (no copy waits on its worker; on the same worker it does not
move at all), where a taken piece is a copy that stays on the source worker until the receiving block is solved.
Memory per worker: its data blocks, its own rows of both sides, and during a half-step the rows received for its
blocks, the pieces taken for others, and one block's compact fixed matrix at a time.

Fault tolerance by replay
-------------------------
No process holds a checkpoint of the factors (holding one would be the copy this layout exists to avoid). The
starting rows are drawn deterministically from the seed, and every half-step's ``small`` inputs are logged on
the client (O(d^2) each). When a worker is lost, the executor rebuilds the lost data blocks and their routes,
scatters the starting rows again and replays the logged half-steps (ALS is deterministic: the rows come back
bit for bit), then reruns the failed half-step. A loss costs a replay of the iterations so far instead of a
copy of the factors kept all along.
"""

from __future__ import annotations

import contextlib
import operator
import time
import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from mfrec import _aligned
from mfrec._progress import report
from mfrec.exceptions import ModelFitError
from mfrec.models.training import RowBlock, add_partials

__all__ = ["ShardedExecutor", "localize", "shard_task", "compact_fixed", "WHOLE_BLOCK_SHARE"]

_OTHER = {"user": "item", "item": "user"}

#: a route that needs at least this share of its source block's rows sends the whole block, at most 1.25 times the
#: rows it needs (:meth:`ShardedExecutor._shipping`): on power-law data, where a block references ~90% of the
#: popular blocks, this keeps the source workers from holding a taken copy of their rows until the receivers are
#: solved (worker peak -24% to -35% for +10% bytes, docs/distributed.md)
WHOLE_BLOCK_SHARE = 0.8


# ============================================================================================ worker side
def localize(block: RowBlock, other_bounds: np.ndarray) -> tuple[RowBlock, list[np.ndarray]]:
    """A block with its column indices renumbered to positions in its compact fixed matrix, and its routes.

    ``cols`` = the sorted distinct columns of ``block`` (rows of the other side). Returns ``(local block,
    need)``: in the local block, entry ``j`` refers to row ``searchsorted(cols, indices[j])`` of the fixed
    matrix the half-step assembles; ``need[a]`` (int32, sorted) are the rows of the other side's block ``a``
    (``other_bounds[a]:other_bounds[a + 1]``), numbered from that block's start, in ``cols``.
    """
    from mfrec.distributed.dask import aligned

    cols = np.unique(block.indices)
    local = np.searchsorted(cols, block.indices).astype(np.int32)
    bounds = np.asarray(other_bounds, dtype=np.int64)
    cuts = np.searchsorted(cols, bounds)
    need = [(cols[cuts[a]:cuts[a + 1]] - bounds[a]).astype(np.int32) for a in range(len(bounds) - 1)]
    # the block stays for the whole fit: arrays a received frame left misaligned are copied once, here
    return replace(block, indices=local, indptr=aligned(block.indptr), values=aligned(block.values),
                   pref=aligned(block.pref), order=aligned(block.order), feats=aligned(block.feats)), need


def _sizes(localized) -> list[int]:
    return [len(n) for n in localized[1]]


def _take(rows: tuple, idx: np.ndarray) -> tuple:
    """The rows ``idx`` of a block's own arrays: one piece of another block's fixed matrix."""
    return tuple(np.take(a, idx, axis=0) for a in rows)


def _nonfinite(rows: tuple) -> int:
    return int(sum(a.size - np.count_nonzero(np.isfinite(a)) for a in rows))


def compact_fixed(sources: list[tuple[tuple, np.ndarray | None]]) -> tuple:
    """A block's compact fixed matrix from its routes, by increasing source block.

    Each source is ``(rows, idx)``: ``rows`` are a piece already taken (``idx`` None) or a whole source block whose
    rows ``idx`` the block references; either is copied once, straight into the one output array.
    """
    if len(sources) == 1 and sources[0][1] is None:
        return sources[0][0]
    first = sources[0][0]
    n = sum(len(rows[0]) if idx is None else len(idx) for rows, idx in sources)
    out = tuple(_aligned.empty((n, *a.shape[1:]), a.dtype) for a in first)
    at = 0
    for rows, idx in sources:
        k = len(rows[0]) if idx is None else len(idx)
        for dst, a in zip(out, rows):
            if idx is None:
                dst[at:at + k] = a
            else:
                # mode="clip": the indices are valid by construction, and numpy buffers ``out`` (one more copy of
                # the whole piece) in the default mode="raise"
                np.take(a, idx, axis=0, out=dst[at:at + k], mode="clip")
        at += k
    return out


def shard_task(kernel, row_stats, block: RowBlock, small: dict, prev, with_loss: bool, *sources):
    """One block's half-step where the block lives: ``(own rows, partial sums + row statistics)``.

    ``sources`` are the block's routes, ``(rows, idx)`` each (:func:`compact_fixed`), by increasing source block;
    ``prev`` the block's previous rows (solved in place) or None.
    """
    from mfrec.distributed.dask import _kernel_env, _own

    fixed = compact_fixed(list(sources))
    own = None if prev is None else tuple(_own(a) for a in prev)
    with _kernel_env():
        own, partial = kernel(block, fixed, small, own, with_loss)
        partial.update(row_stats(block, own, small))
    partial["nonfinite"] = _nonfinite(own)
    return own, partial


def _settle(rows: tuple) -> tuple:
    from mfrec.distributed.dask import _own

    return tuple(_own(a, align=True) for a in rows)


def _stats_task(row_stats, block: RowBlock, rows: tuple, small: dict) -> dict:
    return {**row_stats(block, rows, small), "nonfinite": _nonfinite(rows)}


def _wait(futures) -> None:
    from distributed import wait

    wait(futures)


def _sum_partials(*parts: dict) -> dict:
    return add_partials(list(parts))


def _small_bytes(small: dict) -> int:
    """Payload of a dict of O(d^2) inputs or sums: its arrays' bytes plus 8 per number."""
    return int(sum(v.nbytes if isinstance(v, np.ndarray) else 8 for v in small.values() if v is not None))


# ============================================================================================ the executor
class _Lost(Exception):
    """Internal: a worker was lost; the executor rebuilds and replays."""


@dataclass
class _Routes:
    """Set-up of one side: its localized blocks, their ``need`` futures and the route sizes."""

    blocks: list  # futures of the local RowBlocks
    need: list  # need[b][a]: future of the int32 rows of the other side's block a (None: no route)
    sizes: np.ndarray  # (B_s, B_o) rows per route


class ShardedExecutor:
    """Runs a plan's half-steps with the factor rows kept on the workers (module docstring).

    ``sides`` maps "user" / "item" to the raw blocks placed on the workers (:class:`mfrec.distributed.dask._Side`);
    ``gather``: at the end of the fit the client gathers the rows into the model (else they stay on the workers
    for :func:`mfrec.distributed.dask.save_sharded`). ``stats`` is the
    :class:`~mfrec.distributed.dask.BlockStats` being filled.
    """

    def __init__(self, client, sides: dict, max_restarts: int, stats, gather: bool = True) -> None:
        self.client, self.sides, self.max_restarts, self.stats, self.gather = client, sides, max_restarts, stats, gather
        self.routes: dict[str, _Routes] = {}
        self.own: dict[str, list] = {}
        self.holder: dict[str, list[str | None]] = {}
        self.log: list[tuple[str, dict]] = []  # every half-step's (side, small) since the start: the replay
        self._sent = self._received = self._client = 0
        self.row_bytes = 0

    # ------------------------------------------------------------------ driver interface
    def prepare(self, plan) -> None:
        """Routes, starting rows and their statistics (the plan's Grams of the starting factors)."""
        self.row_names = plan.row_names
        n_rows = sum(int(side.bounds[-1]) for side in self.sides.values())
        self.row_bytes = int(plan.theoretical_bytes) // max(n_rows, 1)
        for name in ("user", "item"):
            self._set_up_side(name, range(len(self.sides[name].futures)))
        self._start_rows(plan, report_stats=True)

    def session(self, plan) -> contextlib.AbstractContextManager:
        link = getattr(self.client, "dashboard_link", None)
        if link:
            report("dashboard", link=str(link))
        return self._session(plan)

    @contextlib.contextmanager
    def _session(self, plan):
        yield
        if self.gather:
            for name in ("user", "item"):
                plan.adopt(name, self.gathered(name))

    def half_step(self, plan, name: str, with_loss: bool) -> tuple[None, dict]:
        """One half-step of side ``name``; returns ``(None, summed partials and row statistics)``."""
        small = plan.small(name)
        self.log.append((name, small))
        attempts, lost = 0, False
        while True:
            try:
                if lost:
                    self._recover(plan)
                partial = self._half_step(plan, name, small, with_loss)
                break
            except _Lost as exc:
                attempts, lost = attempts + 1, True
                cause = exc.__cause__
                warnings.warn(f"a dask worker was lost ({type(cause).__name__}: {cause}); rebuilding its blocks and "
                              "replaying the fit's half-steps from the seeded start (the factors are sharded: no "
                              "process holds a copy to restart from)", RuntimeWarning, stacklevel=4)
                if attempts > self.max_restarts:
                    raise ModelFitError(
                        f"a half-step lost its dask workers {attempts} times in a row (last: {type(cause).__name__}: "
                        f"{cause}); the cluster is unstable — check the worker logs (memory limits?) or raise "
                        "max_restarts"
                    ) from cause
        bad = int(partial.pop("nonfinite", 0) or 0)
        if bad and not int(partial.get("failed", 0) or 0):
            raise ModelFitError(f"{plan.name}: training produced non-finite values in {name}_factors_ "
                                f"(iteration {len(self.stats.seconds) + 1}); {plan.nonfinite_hint}")
        return None, partial

    def end_iteration(self, started: float) -> None:
        self.stats.bytes_sent.append(self._sent)
        self.stats.bytes_received.append(self._received)
        self.stats.client_bytes.append(self._client)
        self.stats.seconds.append(time.perf_counter() - started)
        self._sent = self._received = self._client = 0

    # ------------------------------------------------------------------ results
    def gathered(self, name: str) -> tuple[np.ndarray, ...]:
        """Side ``name``'s rows gathered into this process (the end of a fit that fits in the client)."""
        parts = self.client.gather(self.own[name], direct=True)
        return tuple(_aligned.concatenate([p[j] for p in parts]) for j in range(len(parts[0])))

    def blocks_of(self, name: str) -> list[tuple[int, int, Any, str | None]]:
        """``(lo, hi, future of the rows, worker)`` of every block of side ``name`` (for a sharded save)."""
        bounds = self.sides[name].bounds
        return [(int(bounds[k]), int(bounds[k + 1]), self.own[name][k], self.holder[name][k])
                for k in range(len(self.own[name]))]

    # ------------------------------------------------------------------ set-up
    def _set_up_side(self, name: str, which) -> None:
        """Localize blocks ``which`` of side ``name`` where they live; keep their routes' futures and sizes."""
        c, side, other = self.client, self.sides[name], self.sides[_OTHER[name]]
        routes = self.routes.get(name)
        if routes is None:
            n = len(side.futures)
            routes = self.routes[name] = _Routes([None] * n, [[None] * len(other.futures) for _ in range(n)],
                                                 np.zeros((n, len(other.futures)), dtype=np.int64))
        localized = {k: c.submit(localize, side.futures[k], other.bounds, pure=False) for k in which}
        sizes = c.gather([c.submit(_sizes, f, pure=False) for f in localized.values()])
        for (k, loc), size in zip(localized.items(), sizes):
            routes.blocks[k] = c.submit(operator.getitem, loc, 0, pure=False)
            routes.sizes[k] = size
            needs = c.submit(operator.getitem, loc, 1, pure=False)
            routes.need[k] = [c.submit(operator.getitem, needs, a, pure=False) if s else None
                              for a, s in enumerate(size)]
        _wait([routes.blocks[k] for k in which] + [f for k in which for f in routes.need[k] if f is not None])
        for k in which:  # the raw block is rebuilt from its recipe if ever needed again: free its indices
            side.futures[k] = None
        self._locate(name)

    def _locate(self, name: str) -> None:
        keys = [f.key for f in self.routes[name].blocks]
        who = self.client.who_has(self.routes[name].blocks)
        self.holder[name] = [(sorted(who.get(k, ())) or [None])[0] for k in keys]

    def _start_rows(self, plan, report_stats: bool) -> None:
        """Scatter every block's starting rows to the worker of its data (drawn block by block, in order)."""
        c = self.client
        for name in ("user", "item"):
            draw, bounds = plan.initial_rows(name), self.sides[name].bounds
            futures = []
            for k in range(len(bounds) - 1):
                rows = draw(int(bounds[k]), int(bounds[k + 1]))
                self.stats.setup_bytes += int(sum(a.nbytes for a in rows))
                workers = None if self.holder[name][k] is None else [self.holder[name][k]]
                sent = c.scatter([rows], workers=workers, hash=False, direct=True)[0]
                # the received frame's buffer can be misaligned or read-only: settled once into the block's own
                # buffer, which the half-steps then solve in place
                futures.append(c.submit(_settle, sent, workers=workers, allow_other_workers=True, pure=False))
                del sent
                _wait(futures[-1:])
            self.own[name] = futures
        if report_stats:
            for name in ("user", "item"):
                stats = c.gather([c.submit(_stats_task, plan.row_stats, blk, rows, {}, pure=False)
                                  for blk, rows in zip(self.routes[name].blocks, self.own[name])])
                summed = add_partials(stats)
                if summed.pop("nonfinite", 0):
                    raise ModelFitError(f"{plan.name}: the starting {name} factors are not finite")
                plan.update(name, None, summed)

    # ------------------------------------------------------------------ one half-step
    def _half_step(self, plan, name: str, small: dict, with_loss: bool, counted: bool = True) -> dict:
        c, routes, other = self.client, self.routes[name], _OTHER[name]
        own_other = self.own[other]
        results, parts = [], []
        try:
            # the O(d^2) inputs go out once; the workers pass them on to each other
            small_f = c.scatter([small], hash=False)[0]
            whole, sent_rows = self._shipping(name)
            for b, blk in enumerate(routes.blocks):
                sources = []
                for a in range(len(own_other)):
                    if routes.need[b][a] is None:
                        continue
                    if whole[b, a]:  # most of block a: it travels as it is, the receiving task takes its rows
                        sources.append((own_other[a], routes.need[b][a]))
                    else:  # a few of its rows: taken where block a lives, only they travel
                        sources.append((c.submit(_take, own_other[a], routes.need[b][a], pure=False), None))
                if not sources:  # a block without entries (only cold rows): an empty fixed matrix of the right dtype
                    sources = [(own_other[0], np.empty(0, dtype=np.int32))]
                prev = self.own[name][b] if plan.warm_start else None
                workers = None if self.holder[name][b] is None else [self.holder[name][b]]
                res = c.submit(shard_task, plan.kernel, plan.row_stats, blk, small_f, prev, with_loss, *sources,
                               workers=workers, allow_other_workers=True, pure=False)
                results.append(res)
                parts.append(c.submit(operator.getitem, res, 1, pure=False))
            # the blocks' sums are added on a worker: the client receives one set per half-step
            summed = c.gather(c.submit(_sum_partials, *parts, pure=False), direct=True)
            rows = [c.submit(operator.getitem, res, 0, pure=False) for res in results]
            _wait(rows)
        except Exception as exc:  # noqa: BLE001 - filtered right below
            from mfrec.distributed.dask import _is_lost

            if not _is_lost(exc):
                raise
            raise _Lost() from exc
        self.own[name] = rows
        if counted:
            self._sent += sent_rows * self.row_bytes
            received = _small_bytes(summed)
            self._received += received
            self._client += received + _small_bytes(small)
        return summed

    def _shipping(self, name: str) -> tuple[np.ndarray, int]:
        """How side ``name``'s half-step ships rows: ``(whole, rows)``.

        ``whole`` (``(B_s, B_o)`` bool) marks the routes that need at least :data:`WHOLE_BLOCK_SHARE` of their
        source block's rows and send the block itself (dask ships the existing buffer: no copy waits on the source
        worker, and a block on the same worker moves not at all); the others send a piece taken where the source
        lives. ``rows``: the factor rows delivered to the blocks (whole blocks count whole).
        """
        sizes = self.routes[name].sizes
        block_rows = np.diff(np.asarray(self.sides[_OTHER[name]].bounds, dtype=np.int64))[None, :]
        whole = sizes >= WHOLE_BLOCK_SHARE * np.maximum(block_rows, 1)
        return whole, int(np.where(whole, block_rows, sizes).sum())

    # ------------------------------------------------------------------ recovery
    def _recover(self, plan) -> None:
        """After a lost worker: rebuild lost blocks and routes, restart the rows, replay the logged half-steps."""
        from mfrec.distributed.dask import _wait_for_workers

        self.stats.restarts += 1
        _wait_for_workers(self.client)
        self.own = {}
        for name in ("user", "item"):
            side, routes = self.sides[name], self.routes[name]
            lost = [k for k in range(len(side.futures)) if routes.blocks[k].status != "finished"
                    or any(f is not None and f.status != "finished" for f in routes.need[k])]
            for k in lost:
                side.futures[k] = side.rebuild[k]()
            if lost:
                self._set_up_side(name, lost)
            self._locate(name)
        self._start_rows(plan, report_stats=False)
        for name, small in self.log[:-1]:  # the logged half-steps before the one that failed
            self._half_step(plan, name, small, with_loss=False, counted=False)
