"""mfrec's kernels as built in two (or more) environments, each run in its own fresh process, alternating.

Made to compare a change of kernel technology (the numba kernels against the compiled extension) on the same
machine and data: every measurement runs in a new interpreter of the environment under test, the environments
take turns, and each round repeats the whole set.

Usage::

    python benchmarks/kernels_speed.py --python OLD/bin/python --python NEW/bin/python --rounds 3
    python benchmarks/kernels_speed.py --python .venv/bin/python --small          # a quick look

What is timed (warm: one small fit first, so a run-time compiler has compiled everything it will):

* ImplicitALS, CG (3 steps) and Cholesky, d = 64 and 128, on ``implicit_als.power_law_matrix`` (200k x 50k,
  9.4M nnz with ``--full``, the default; ``--small``: 20k x 5k): seconds per iteration from ``history_``;
* ExplicitALS, d = 64, on a synthetic 100k x 20k matrix with 4M ratings (``--small``: 10k x 2k, 200k): s/iter;
* SGDFactorization, d = 64, one epoch over 1M ratings;
* top-k: ``recommend_batch`` of 20k users, k = 10, over 50k items (d = 64).

Prints one line per measurement and environment, then the medians and the ratio of each environment to the
first.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def child(small: bool, threads: int, implicit_only: bool = False) -> dict:
    import numpy as np
    import pandas as pd

    sys.path.insert(0, HERE)
    import mfrec
    from implicit_als import power_law_matrix

    out: dict[str, float] = {}
    m = power_law_matrix(20_000, 5_000) if small else power_law_matrix(200_000, 50_000)
    inter = mfrec.Interactions.from_matrix(m)
    # warm-up on a small matrix: whatever compiles at run time (a numba build) compiles here
    winter = mfrec.Interactions.from_matrix(power_law_matrix(2_000, 500, seed=1))
    for d in (64, 128):
        for solver in ("cg", "cholesky"):
            # the settings of every earlier run (lambda 0.05, alpha 1), not the model's defaults, which changed
            kw = dict(factors=d, solver=solver, num_threads=threads, regularization=0.05, alpha=1.0)
            mfrec.ImplicitALS(iterations=1, **kw).fit(winter)
            model = mfrec.ImplicitALS(iterations=3, **kw).fit(inter)
            secs = [h["seconds"] for h in model.history_]
            out[f"implicit {solver} d={d} s/iter"] = float(np.median(np.diff([0.0] + secs)[1:]))
    if implicit_only:
        return out
    # explicit ALS on random ratings
    rng = np.random.default_rng(0)
    n_u, n_i, nnz = (10_000, 2_000, 200_000) if small else (100_000, 20_000, 4_000_000)
    frame = pd.DataFrame({"user": rng.integers(0, n_u, nnz), "item": rng.integers(0, n_i, nnz),
                          "rating": rng.integers(1, 6, nnz).astype(np.float32)})
    ratings = mfrec.Interactions.from_frame(frame, value="rating", duplicates="last")
    mfrec.ExplicitALS(factors=64, iterations=1, num_threads=threads).fit(winter)
    model = mfrec.ExplicitALS(factors=64, iterations=3, num_threads=threads).fit(ratings)
    secs = [h["seconds"] for h in model.history_]
    out["explicit-als d=64 s/iter"] = float(np.median(np.diff([0.0] + secs)[1:]))
    sub = ratings if small else mfrec.Interactions.from_frame(frame.iloc[:1_000_000], value="rating",
                                                               duplicates="last")
    mfrec.SGDFactorization(factors=64, epochs=1).fit(winter)
    t = time.perf_counter()
    mfrec.SGDFactorization(factors=64, epochs=1).fit(sub)
    out["sgd d=64 s/epoch"] = time.perf_counter() - t
    # top-k over the implicit model's items
    model = mfrec.ImplicitALS(factors=64, iterations=1, num_threads=threads).fit(inter)
    users = inter.user_index_map[: 2_000 if small else 20_000]
    model.recommend_batch(users[:10], k=10)
    t = time.perf_counter()
    model.recommend_batch(users, k=10)
    out["top-k 10 batch s"] = time.perf_counter() - t
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--python", action="append", help="an environment's interpreter (repeat; the first is the base)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--implicit-only", action="store_true", help="only the ImplicitALS fits")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.small, args.threads, args.implicit_only)))
        return
    pythons = args.python or [sys.executable]
    results: dict[str, dict[str, list[float]]] = {p: {} for p in pythons}
    for rnd in range(args.rounds):
        for py in pythons:
            cmd = [py, os.path.abspath(__file__), "--child", "--threads", str(args.threads)]
            cmd += (["--small"] if args.small else []) + (["--implicit-only"] if args.implicit_only else [])
            res = subprocess.run(cmd, capture_output=True, text=True, cwd=os.path.dirname(HERE))
            if res.returncode:
                sys.exit(f"{py} failed:\n{res.stderr[-3000:]}")
            values = json.loads(res.stdout.strip().splitlines()[-1])
            for k, v in values.items():
                results[py].setdefault(k, []).append(v)
            print(f"round {rnd + 1} {py}: " + ", ".join(f"{k} {v:.3f}" for k, v in values.items()), flush=True)
    import numpy as np

    base = pythons[0]
    print("\nmedians (spread) and ratio to the first environment")
    for key in results[base]:
        line = [f"{key:<28}"]
        for py in pythons:
            vals = results[py][key]
            med = float(np.median(vals))
            ratio = med / float(np.median(results[base][key]))
            line.append(f"{med:8.3f} ({min(vals):.3f}-{max(vals):.3f}) x{ratio:.2f}")
        print("  ".join(line))


if __name__ == "__main__":
    main()
