"""Approximate top-k against exact: recall@10, recommend_batch time, index build time and memory.

1. a power-law implicit matrix (``--users`` x ``--items``, ``--nnz-per-user`` interactions each, item popularity
   ~ rank^-0.8) and an ImplicitALS fit on it (``--factors``, ``--iterations``: real factors, since how well a
   graph finds the top items depends on their structure);
2. exact ``recommend_batch`` for ``--queries`` users (seen items excluded), then ``build_index("hnsw")`` for the
   ``recommend`` graph, with its build seconds, the graph's bytes and the process's resident-memory growth;
3. for each ``expansion_search`` (ef): approximate ``recommend_batch`` for the same users, recall@10 against the
   exact lists, and the time ratio approx / exact. Timings alternate exact and approximate, ``--rounds`` rounds,
   median; both run in this process (one library, the same top-k code after the candidates).

Usage::

    python benchmarks/ann.py --items 200000 --factors 64            # the issue's 200k-item target
    python benchmarks/ann.py --items 1000000 --ef 64 128 --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time

import numpy as np

import mfrec
from _matrices import power_law
from mfrec.kernels.threads import get_num_threads


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def recall(approx, exact) -> float:
    a = approx.groupby("user")["item"].apply(set)
    e = exact.groupby("user")["item"].apply(set)
    return float(np.mean([len(a[u] & e[u]) / len(e[u]) for u in e.index]))


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--nnz-per-user", type=int, default=20)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--ef", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--connectivity", type=int, default=16)
    parser.add_argument("--expansion-add", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json")
    args = parser.parse_args()

    t_fit, model = timed(lambda: mfrec.ImplicitALS(factors=args.factors, iterations=args.iterations,
                                                    seed=args.seed).fit(power_law(args.users, args.items,
                                                                                  args.nnz_per_user, args.seed),
                                                                        show_progress=False))
    users = list(model.interactions_.user_ids[:args.queries])
    exact = model.recommend_batch(users, k=args.k)
    rss0 = rss_mb()
    t_build, _ = timed(lambda: model.build_index("hnsw", graphs=["recommend"], connectivity=args.connectivity,
                                                 expansion_add=args.expansion_add))
    graph = model.index_["graphs"]["recommend"]
    result = {"machine": platform.processor() or platform.machine(), "threads": get_num_threads(),
              "items": args.items, "users": args.users, "factors": args.factors, "fit_seconds": round(t_fit, 1),
              "queries": len(users), "k": args.k, "connectivity": args.connectivity,
              "expansion_add": args.expansion_add, "build_seconds": round(t_build, 2),
              "index_mb": round(graph["bytes"] / 2**20, 1), "rss_growth_mb": round(rss_mb() - rss0, 1),
              "factors_mb": round(model.item_factors_.nbytes / 2**20, 1), "runs": []}
    print(f"{args.items:,} items x {args.factors} factors (fit {t_fit:.0f} s); index build {t_build:.1f} s, "
          f"graph {result['index_mb']} MB (item factors {result['factors_mb']} MB), "
          f"RSS +{result['rss_growth_mb']} MB")
    for ef in args.ef:
        for graph_obj in model._ann.values():
            graph_obj.index.expansion_search = ef
        model.index_["expansion_search"] = ef
        t_exact, t_approx = [], []
        approx = None
        for _ in range(args.rounds):
            saved = model.__dict__.pop("_ann")
            t, _ = timed(lambda: model.recommend_batch(users, k=args.k))
            t_exact.append(t)
            model._ann = saved
            t, approx = timed(lambda: model.recommend_batch(users, k=args.k))
            t_approx.append(t)
        row = {"ef": ef, "recall_at_k": round(recall(approx, exact), 4),
               "exact_seconds": round(float(np.median(t_exact)), 3),
               "approx_seconds": round(float(np.median(t_approx)), 3)}
        row["ratio"] = round(row["approx_seconds"] / row["exact_seconds"], 3)
        result["runs"].append(row)
        print(f"  ef {ef:4d}: recall@{args.k} {row['recall_at_k']:.4f}   recommend_batch({len(users)} users) "
              f"exact {row['exact_seconds']:.3f} s, approximate {row['approx_seconds']:.3f} s: {row['ratio']:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
