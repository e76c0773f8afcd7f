"""Distributed ImplicitALS on dask: bytes moved, seconds per iteration, worker memory, and a 1B paper estimate.

The broadcast layout by default (``--layout``); the sharded layout, mfrec's default, has its own script with its
paper model: ``benchmarks/distributed_sharded.py``.

Usage::

    python benchmarks/distributed.py                        # 100k x 20k, ~2M nnz, d=32 (a few minutes here)
    python benchmarks/distributed.py --users 500000 --items 50000 --min-len 10 --max-len 30   # ~10M nnz
    python benchmarks/distributed.py --workers 1 2 --factors 64 --solver cholesky

For the same synthetic power-law matrix (users with uniform(min_len, max_len) items, items ~ rank^-0.8) it fits

* the single-process ``ImplicitALS`` with ``--threads`` kernel threads (the baseline), and
* ``mfrec.distributed.fit`` on a ``LocalCluster`` of 1 and 2 worker processes (``--threads`` threads in all,
  split between the workers), after a small warm-up fit on the same cluster so JIT compilation is not timed,

and prints seconds per iteration, the factor bytes the client sent / received per iteration against the
theoretical ``(m + n) d * 4`` of one broadcast, the resident memory of every worker against its blocks plus two
factor matrices, and the compute throughput of the block tasks (stored entries per second per worker thread,
from dask's task stream). From those it writes a paper estimate of one iteration on 1B interactions with 16 and
64 workers (see ``estimate``).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import warnings

import numpy as np

# this file is named like the ``distributed`` package: keep its folder off the import path
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
sys.path.insert(0, os.path.join(_here, "..", "src"))

from mfrec.data.interactions import Interactions  # noqa: E402
from mfrec.models.implicit import ImplicitALS  # noqa: E402



def _sibling(name: str):
    """Load benchmarks/NAME.py by path (this folder is kept off sys.path, see above)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"_bench_{name}", os.path.join(_here, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


power_law_matrix = _sibling("implicit_als").power_law_matrix  # the implicit benchmark's matrix family


def loopback_bytes() -> int:
    """Bytes sent over the loopback interface so far (every process of a LocalCluster talks over it)."""
    import psutil

    nics = psutil.net_io_counters(pernic=True)
    return int(nics["lo"].bytes_sent) if "lo" in nics else 0


def mib(n):
    return n / 2**20


def _trace_start():
    import tracemalloc

    tracemalloc.start()
    tracemalloc.reset_peak()


def _trace_peak():
    import tracemalloc

    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def run_cluster(inter, n_workers, total_threads, kw, n_blocks, trace=False, layout="broadcast"):
    from distributed import Client, LocalCluster, get_task_stream

    from mfrec.distributed import fit, worker_memory

    tpw = max(1, total_threads // n_workers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=tpw, processes=True,
                               dashboard_address=None, memory_limit=0)
    with cluster, Client(cluster) as client:
        small = Interactions(inter.matrix[:2000])
        fit(ImplicitALS(**{**kw, "iterations": 1}), small, client, n_blocks=n_blocks,
            layout=layout)  # JIT warm-up on workers
        base = worker_memory(client)
        peak = dict(base)
        stop = threading.Event()

        def sample():  # peak resident memory of every worker during the fit, polled every 0.2 s
            while not stop.is_set():
                try:
                    for addr, v in worker_memory(client).items():
                        peak[addr] = max(peak.get(addr, 0), v)
                except Exception:  # noqa: BLE001 - a poll racing the end of the fit
                    pass
                stop.wait(0.2)

        poller = threading.Thread(target=sample, daemon=True)
        if trace:  # peak bytes allocated by Python/numpy on each worker (exact, unlike the sampled RSS)
            client.run(_trace_start)
        lo0 = loopback_bytes()
        poller.start()
        with get_task_stream(client) as ts:
            model = fit(ImplicitALS(**kw), inter, client, n_blocks=n_blocks, layout=layout)
        stop.set()
        poller.join()
        traced = client.run(_trace_peak) if trace else {}
        lo = loopback_bytes() - lo0
        compute = sum(sum(s["stop"] - s["start"] for s in t["startstops"] if s["action"] == "compute")
                      for t in ts.data if t["key"].startswith("block_task"))
    return model, compute, base, peak, tpw, lo, traced


def estimate(per_entry_s, per_row_s, bytes_per_s, nnz, m, n, d, workers, threads):
    """Seconds of one iteration on ``workers`` workers of ``threads`` threads (paper model, see docs).

    compute: both half-steps touch every entry once and every row once, spread over workers * threads
    (``per_entry_s``, ``per_row_s`` measured here per thread), plus one ``Y^T Y`` (n d^2) per block;
    transfer: the client/scheduler star sends (m + n) d * 4 bytes to each worker and receives it once,
    at ``bytes_per_s``.
    """
    slots = workers * threads
    compute = (2 * nnz * per_entry_s + (m + n) * per_row_s) / slots
    gram = (m + n) * d * d * 2 / 20e9  # X^T X and Y^T Y once per block (one block per worker), ~20 GFLOP/s
    transfer = (m + n) * d * 4 * (workers + 1) / bytes_per_s
    return compute, gram, transfer


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--min-len", type=int, default=5)
    ap.add_argument("--max-len", type=int, default=35)
    ap.add_argument("--factors", type=int, default=32)
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--solver", default="cg", choices=["cg", "cholesky"])
    ap.add_argument("--threads", type=int, default=2, help="threads in all (local kernel threads; split over workers)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--blocks-per-worker", type=int, default=1)
    ap.add_argument("--layout", default="broadcast", choices=["broadcast", "sharded"],
                    help="the cluster layout (this script's memory bound and 1B estimate are the broadcast "
                         "layout's; benchmarks/distributed_sharded.py measures the sharded one)")
    ap.add_argument("--trace-memory", action="store_true",
                    help="also measure each worker's peak traced allocations (tracemalloc) during the fit")
    ap.add_argument("--bandwidth-gbit", type=float, default=10.0, help="network for the paper estimate")
    args = ap.parse_args(argv)

    t = time.perf_counter()
    csr = power_law_matrix(args.users, args.items, args.min_len, args.max_len)
    inter = Interactions(csr)
    m, n, nnz, d = inter.n_users, inter.n_items, inter.nnz, args.factors
    theo = (m + n) * d * 4
    print(f"matrix {m} x {n}, nnz {nnz:,} (built in {time.perf_counter() - t:.1f} s); d={d}, solver={args.solver}, "
          f"{args.threads} threads; machine load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    kw = dict(factors=d, iterations=args.iterations, solver=args.solver, seed=0)

    ImplicitALS(**{**kw, "iterations": 1}).fit(Interactions(csr[:2000]))  # JIT warm-up
    local = ImplicitALS(**kw, num_threads=args.threads).fit(inter)
    secs = np.diff([0.0] + [h["seconds"] for h in local.history_])
    print(f"local        : {secs.mean():.2f} s/iter  (iterations {np.round(secs, 2).tolist()})")

    rows = []
    for w in args.workers:
        model, compute, base, rss, tpw, lo, traced = run_cluster(inter, w, args.threads, kw,
                                                                 w * args.blocks_per_worker, args.trace_memory,
                                                                 args.layout)
        st = argparse.Namespace(**model.distributed_stats_)
        s = np.asarray(st.seconds)
        diff = max(np.abs(model.user_factors_ - local.user_factors_).max(),
                   np.abs(model.item_factors_ - local.item_factors_).max())
        print(f"{w} worker(s) x {tpw} thread(s): {s.mean():.2f} s/iter (iterations {np.round(s, 2).tolist()}), "
              f"max |factor diff| vs local {diff:.2e}")
        print(f"    bytes/iter: received {mib(np.mean(st.bytes_received)):.1f} MiB, sent "
              f"{mib(np.mean(st.bytes_sent)):.1f} MiB; theoretical (m+n)d*4 = {mib(theo):.1f} MiB per broadcast "
              f"-> received {np.mean(st.bytes_received) / theo:.2f}x, sent {np.mean(st.bytes_sent) / theo:.2f}x")
        print(f"    measured on the loopback interface (all of client, scheduler, workers, whole fit incl. the "
              f"one-off block scatter): {mib(lo) / args.iterations:.1f} MiB/iter = {lo / args.iterations / theo:.2f}x"
              f" theoretical; blocks {mib(np.sum(st.block_bytes)):.1f} MiB in all")
        blocks = np.asarray(st.block_bytes)
        per_worker_blocks = blocks.sum() / w
        for addr in sorted(rss):
            print(f"    worker {addr}: peak RSS {mib(rss[addr]):.0f} MiB, +{mib(rss[addr] - base[addr]):.0f} MiB over "
                  f"before the fit ({mib(base[addr]):.0f} MiB); "
                  f"bound: its blocks ~{mib(per_worker_blocks):.0f} MiB + two factor matrices {mib(2 * theo):.0f} MiB")
            if addr in traced:
                print(f"        traced peak {mib(traced[addr]):.0f} MiB = blocks ~{mib(per_worker_blocks):.0f} MiB + "
                      f"{(traced[addr] - per_worker_blocks) / theo:.2f} factor matrices")
        thr = compute / (args.iterations * 2 * nnz) if nnz else float("nan")
        print(f"    task compute {compute:.2f} s in all = {thr * 1e9:.0f} ns per stored entry per half-step "
              f"per thread ({1 / thr / 1e6:.1f} M entries/s/thread)")
        rows.append((w, s.mean(), compute, thr))

    # paper estimate from the best measured per-entry time (the least disturbed run on this shared machine)
    thr = min(r[3] for r in rows)
    bw = args.bandwidth_gbit * 1e9 / 8
    big_nnz, big_m, big_n = 1_000_000_000, 50_000_000, 5_000_000
    print(f"\npaper estimate, 1B interactions, m = 50M users, n = 5M items, d = {d}, 16 threads per worker, "
          f"{args.bandwidth_gbit:g} Gbit/s, measured {thr * 1e9:.0f} ns/entry/thread; factor matrices "
          f"{(big_m + big_n) * d * 4 / 2**30:.1f} GiB per broadcast:")
    for workers in (16, 64):
        c, g, tr = estimate(thr, 0.0, bw, big_nnz, big_m, big_n, d, workers, 16)
        tree = 2 * (big_m + big_n) * d * 4 / bw  # one gather + one pipelined (tree / peer-to-peer) broadcast
        print(f"    {workers:3d} workers: compute {c:6.1f} s + Gram {g:4.1f} s + transfer {tr:6.1f} s (star, as "
              f"implemented) = {c + g + tr:6.1f} s/iter;  with a pipelined broadcast {c + g + tree:5.1f} s/iter")


if __name__ == "__main__":
    main()
