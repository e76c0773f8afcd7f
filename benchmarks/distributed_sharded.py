"""Sharded distributed ALS: bytes moved, client and worker peak memory, and agreement with the local fit.

Usage::

    python benchmarks/distributed_sharded.py --data community --users-per 4000 --items-per 1000 --per-user 8
    python benchmarks/distributed_sharded.py --data power-law --users 40000 --items 10000 --per-user 8
    # the memory-limited run: 4 workers, each limited to 0.9 of one copy of both factor matrices
    python benchmarks/distributed_sharded.py --data community --users-per 500000 --items-per 125000 --per-user 4 \\
        --factors 128 --workers 4 --memory-limit 0.9 --solver cg --iterations 2 --check-local

One process per run (this one is the client). It builds the data (``community``: users in 4 groups that use only
their group's items, :func:`mfrec.data.synthetic.community_interactions`; ``power-law``: the implicit benchmark's
matrix family), starts a ``LocalCluster`` of ``--workers`` processes (with ``--memory-limit F``: each worker's
dask memory limit is ``F`` times one copy of both factor matrices, with spilling and pausing off, so a worker
either fits or is killed), fits ``ImplicitALS`` with ``mfrec.distributed.fit`` in the chosen ``--layout`` and
prints, per iteration:

* ``bytes_sent / broadcast``: factor bytes delivered to blocks against a full broadcast, ``n_workers (m + n) d
  itemsize``;
* ``client_bytes / (m + n) d itemsize``: everything the client sent or received;
* the peak resident memory (VmHWM, reset before the fit) of every worker and of the client during the fit,
  in units of one copy of both factor matrices ``F = (m + n) d itemsize``.

The sharded fit saves its model as a sharded directory without gathering (the client never holds the factors);
with ``--check-local`` the model is then loaded and compared with a single-process fit of the same data:
largest factor difference and the share of sampled users whose top-10 is identical.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings

import numpy as np

# this folder holds distributed.py, named like the package: keep it off the import path
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
sys.path.insert(0, os.path.join(_here, "..", "src"))


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def _status(key: str) -> int:
    """A size from /proc/self/status in bytes (``VmHWM``: peak resident, ``VmRSS``: resident now)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _peak() -> int:
    return _status("VmHWM")


def _rss() -> int:
    return _status("VmRSS")


def _data(args):
    if args.data == "community":
        from mfrec.data.synthetic import community_interactions

        return community_interactions(4, args.users_per, args.items_per, args.per_user, seed=args.seed)
    import importlib.util

    spec = importlib.util.spec_from_file_location("_bench_matrices", os.path.join(_here, "_matrices.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.power_law(args.users, args.items, args.per_user, args.seed)


def paper_model(data, d: int, itemsize: int, blocks: int, workers: int, co_located: bool) -> dict:
    """The paper model of docs/distributed.md, from the degrees alone (no routes computed).

    Rows of a side fall into ``B`` nnz-balanced blocks of consecutive rows. A row of the other side with ``c``
    entries is referenced by ``B (1 - (1 - 1/B)^c)`` blocks on average when its entries land in blocks at random
    (power law: users are independent), and by exactly one block when its entries stay in one community. A route
    from source block ``a`` to a block that needs at least ``WHOLE_BLOCK_SHARE`` (0.8) of ``a``'s rows ships the
    whole block, otherwise just those rows; each row is ``r = d * itemsize`` bytes. The client moves ``4 (8 d^2 + ~40)`` bytes per
    iteration. Worker peak = idle process + its share of the blocks + its own rows of both sides + the received
    blocks of the larger half-step (none when the source block shares the worker, ``1 - 1/W`` of them when the
    sources are spread over all workers) + one block's compact fixed matrix.
    """
    from mfrec.distributed.dask import _boundaries
    from mfrec.distributed.sharded import WHOLE_BLOCK_SHARE

    csr = data.matrix.tocsr()
    csc = csr.T.tocsr()
    r = d * itemsize
    B = blocks

    def shipped(degrees, side_indptr) -> float:
        """Rows shipped in one half-step whose sources are the rows with these ``degrees``."""
        bounds = _boundaries(side_indptr, B)
        refs = B * (1.0 - (1.0 - 1.0 / B) ** degrees)  # blocks referencing each row
        total = 0.0
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            rows, per_block = hi - lo, refs[lo:hi].sum() / B  # rows of this source block one block needs
            total += B * (rows if per_block >= WHOLE_BLOCK_SHARE * rows else per_block)
        return total

    m, n = csr.shape
    user_half = shipped(np.diff(csc.indptr), csc.indptr)  # item rows shipped to the user blocks
    item_half = shipped(np.diff(csr.indptr), csr.indptr)  # user rows shipped to the item blocks
    return {"pieces_random": (user_half + item_half) * r, "pieces_local": (m + n) * r,
            "client": 4 * (8 * d * d + 40), "F": (m + n) * r,
            "largest_half_pieces": max(user_half, item_half) * r,
            "received": 0.0 if co_located else 1.0 - 1.0 / workers}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", choices=["community", "power-law"], default="community")
    p.add_argument("--users-per", type=int, default=4000)
    p.add_argument("--items-per", type=int, default=1000)
    p.add_argument("--users", type=int, default=40000)
    p.add_argument("--items", type=int, default=10000)
    p.add_argument("--per-user", type=int, default=8)
    p.add_argument("--factors", type=int, default=32)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--solver", default="cholesky")
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--blocks", type=int, default=4)
    p.add_argument("--layout", choices=["sharded", "broadcast"], default="sharded")
    p.add_argument("--memory-limit", type=float, default=None,
                   help="each worker's memory limit as a fraction of one copy of both factor matrices")
    p.add_argument("--check-local", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the result here")
    args = p.parse_args(argv)

    import dask
    import distributed

    from mfrec.distributed import fit
    from mfrec.models.implicit import ImplicitALS

    data = _data(args)
    m, n = data.matrix.shape
    itemsize = np.dtype(args.dtype).itemsize
    F = (m + n) * args.factors * itemsize
    kw = dict(factors=args.factors, iterations=args.iterations, solver=args.solver, dtype=args.dtype, seed=1)
    limit = "auto" if args.memory_limit is None else int(args.memory_limit * F)
    config = {"distributed.worker.memory.target": False, "distributed.worker.memory.spill": False,
              "distributed.worker.memory.pause": False, "distributed.worker.memory.terminate": 0.95}
    out = {"data": args.data, "users": m, "items": n, "nnz": int(data.nnz), "factors": args.factors,
           "dtype": args.dtype, "solver": args.solver, "workers": args.workers, "blocks": args.blocks,
           "layout": args.layout, "F_bytes": F, "worker_memory_limit": limit}
    print(json.dumps(out), flush=True)
    with dask.config.set(config), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                                           dashboard_address=None, memory_limit=limit)
        client = distributed.Client(cluster)
    folder = tempfile.mkdtemp(prefix="mfrec-sharded-")
    try:
        # compile the kernels on every worker first (not part of the measurement)
        from mfrec.data.synthetic import community_interactions

        fit(ImplicitALS(**{**kw, "iterations": 1}), community_interactions(2, 50, 20, 3), client, n_blocks=args.workers)
        idle = client.run(_rss)
        client.run(_reset_peak)
        _reset_peak()
        client_before = _rss()
        t0 = time.perf_counter()
        sharded = args.layout == "sharded"
        model = fit(ImplicitALS(**kw), data, client, n_blocks=args.blocks, layout=args.layout,
                    **({"gather": False, "path": os.path.join(folder, "model")} if sharded else {}))
        wall = time.perf_counter() - t0
        client_peak = _peak()
        worker_peaks = client.run(_peak)
    finally:
        client.close()
        cluster.close()
    s = model.distributed_stats_
    broadcast = s["n_workers"] * s["theoretical_bytes"]
    s_blocks = int(sum(s["block_bytes"]))
    out.update({
        "seconds_per_iteration": [round(x, 3) for x in s["seconds"]],
        "wall_seconds": round(wall, 2),
        "bytes_sent_over_broadcast": [round(b / broadcast, 4) for b in s["bytes_sent"]],
        "client_bytes_over_F": [round(b / s["theoretical_bytes"], 5) for b in s["client_bytes"]],
        "bytes_received_over_F": [round(b / s["theoretical_bytes"], 5) for b in s["bytes_received"]],
        "route_rows": s["route_rows"],
        "worker_idle_rss_over_F": sorted(round(v / F, 3) for v in idle.values()),
        "worker_peak_over_F": sorted(round(v / F, 3) for v in worker_peaks.values()),
        "worker_peak_bytes": sorted(worker_peaks.values()),
        "client_peak_minus_start_over_F": round((client_peak - client_before) / F, 3),
        "block_bytes_total": int(sum(s["block_bytes"])),
        "restarts": s["restarts"],
    })
    # blocks k of both sides share worker k mod W: a community's rows are then beside the block that needs them
    model_ = paper_model(data, args.factors, itemsize, args.blocks, args.workers, co_located=args.data == "community")
    pieces = model_["pieces_local"] if args.data == "community" else model_["pieces_random"]
    largest = (max(m, n) * args.factors * itemsize if args.data == "community" else model_["largest_half_pieces"])
    out["model"] = {
        "bytes_sent_over_broadcast": round(pieces / broadcast, 4),
        "client_bytes_over_F": round(model_["client"] / F, 5),
        "worker_peak_over_F": round((np.median(list(idle.values())) + s_blocks / args.workers + F / args.workers
                                     + model_["received"] * largest / args.workers + largest / args.blocks) / F, 3),
    }
    if args.check_local:
        import mfrec

        got = mfrec.load(os.path.join(folder, "model")) if sharded else model
        local = ImplicitALS(**kw).fit(data)
        users = data.user_ids[:: max(1, m // 200)]
        same = [list(got.recommend(u, k=10)["item"]) == list(local.recommend(u, k=10)["item"]) for u in users]
        out.update({
            "max_factor_difference": float(max(np.abs(got.user_factors_ - local.user_factors_).max(),
                                               np.abs(got.item_factors_ - local.item_factors_).max())),
            "same_top10_share": float(np.mean(same)), "users_compared": len(users),
        })
    print(json.dumps(out), flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
    return out


if __name__ == "__main__":
    main()
