"""implicit's ALS alone in this process (no mfrec imported): seconds per iteration on the full-size matrix.

Usage: ``python benchmarks/implicit_alone.py [--factors 64 128] [--solvers cg cholesky] [--iterations 3]``, in an
environment with ``implicit`` (the ``bench`` extra). It is the competitor half of a fresh-process comparison:
run it alternately with ``kernels_speed.py`` (or ``implicit_als.py``'s mfrec half) so that neither library runs
after the other in one process (in one process, implicit's Cholesky ran 1.85x slower after mfrec's numba
kernels). The matrix is ``implicit_als.power_law_matrix(200_000, 50_000)``, imported by path.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def power_law_matrix(*args, **kwargs):
    spec = importlib.util.spec_from_file_location("_ials", os.path.join(HERE, "implicit_als.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.power_law_matrix(*args, **kwargs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--factors", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--solvers", nargs="+", default=["cg", "cholesky"])
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--small", action="store_true")
    args = ap.parse_args()
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, "blas")  # implicit's own recommendation
    from implicit.cpu.als import AlternatingLeastSquares

    m = power_law_matrix(20_000, 5_000) if args.small else power_law_matrix(200_000, 50_000)
    conf = m.copy()
    conf.data = (1.0 + conf.data).astype(np.float32)  # mfrec's default confidence 1 + alpha r, alpha 1
    out = {}
    for d in args.factors:
        for solver in args.solvers:
            warm = AlternatingLeastSquares(factors=d, iterations=1, use_cg=solver == "cg", num_threads=args.threads,
                                           regularization=0.05, random_state=0)
            warm.fit(conf[:2000], show_progress=False)
            stamps = []
            model = AlternatingLeastSquares(factors=d, iterations=args.iterations, use_cg=solver == "cg",
                                            num_threads=args.threads, regularization=0.05, random_state=0)
            t0 = time.perf_counter()
            model.fit(conf, show_progress=False, callback=lambda *a: stamps.append(time.perf_counter()))
            per_iter = np.diff([t0] + stamps)
            out[f"implicit {solver} d={d} s/iter"] = float(np.median(per_iter[1:] if len(per_iter) > 1 else per_iter))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
