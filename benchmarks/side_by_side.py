"""mfrec against its peers, each library in its own fresh process, alternating: the speed tables of
``docs/benchmarks.md``.

Suites (``python benchmarks/side_by_side.py SUITE --competitor-python ENV/bin/python``):

* ``implicit``: mfrec ``ImplicitALS`` against implicit's CPU ``AlternatingLeastSquares`` on the full-size power-law
  matrix (``implicit_als.power_law_matrix``: 200k users x 50k items, 9.4M nnz), confidence 1 + r, lambda 0.05,
  CG (3 steps) and Cholesky at d = 64 and 128, three iterations, the median of iterations 2 and 3. Both without the
  training loss (implicit's default); mfrec once more with it, for its cost (``+loss`` rows).
* ``explicit``: mfrec ``ExplicitALS`` against Spark MLlib ALS (explicit, ``local[2]``) on synthetic ratings
  (100k x 20k, 4M ratings from a planted rank-8 model), rank 64, no biases, lambda 0.1 scaled by each row's count
  (Spark's ALS-WR objective: mfrec ``regularization_scaling="count"``). Spark's seconds per iteration are
  ``(t(1 + K) - t(1)) / K`` from fits of 1 and 1 + K iterations after a warm-up fit (its job setup cancels); mfrec's from
  ``history_``. ``--with-50m`` adds mfrec alone on 1M x 100k, 50M ratings (the issue's second size; Spark would
  take hours there).
* ``sgd``: mfrec ``SGDFactorization`` against Surprise ``SVD`` (100 factors, 20 epochs, lr 0.005, lambda 0.02,
  Surprise's defaults) and SVD++ (``implicit_feedback=True`` against ``SVDpp``: 20 factors, 20 epochs, lr 0.007)
  on MovieLens-100K ``u1.base``, test RMSE on ``u1.test``; seconds per epoch = fit seconds / epochs for both
  (set-up included). mfrec without the per-epoch training loss (Surprise computes none), and once with it.

Method (the guide's): every measurement process is new; each round runs a float32 GEMM (numpy, 4096^2, all
cores, best of 5) for the peak, then the two libraries, mfrec first in odd rounds and the competitor first in even
ones, so the competitor's time can be compared between "ran first" and "ran after mfrec" (in separate processes
the two should agree; in one process they did not). Memory: the process's peak resident set during the fit
(``/proc/self/clear_refs`` resets it before the fit, ``VmHWM`` after) above its resident set before the fit, plus
the input matrix, as a multiple of (input matrix + factors); workers run with ``MALLOC_MMAP_THRESHOLD_=65536`` so that
freed buffers leave the resident set. Spark's JVM is another process: no memory figure.

Usage::

    python benchmarks/side_by_side.py implicit --competitor-python /tmp/bench/bin/python --rounds 3
    python benchmarks/side_by_side.py explicit --competitor-python /tmp/bench/bin/python --rounds 3 --with-50m
    python benchmarks/side_by_side.py sgd --competitor-python /tmp/bench/bin/python --rounds 3
    python benchmarks/side_by_side.py implicit --small --rounds 1     # a quick look (20k x 5k)
    python benchmarks/side_by_side.py implicit --configs "cg d=128" --competitor-python ...   # one row of the table

The competitor's environment needs numpy, scipy, pandas and the competitor (``pip install implicit
scikit-surprise pyspark``, Java for Spark); it does not need mfrec: the data generators here use numpy only.
Raw results go to ``--out`` (JSON lines), the summary table to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


# ============================================================================================ data (numpy only)
def power_law_matrix(n_users: int, n_items: int, seed: int = 0):
    """The ImplicitALS benchmark matrix (``implicit_als.power_law_matrix``, imported by path: no mfrec import)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_ials", os.path.join(HERE, "implicit_als.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.power_law_matrix(n_users, n_items, seed=seed)


def planted_ratings(n_users: int, n_items: int, nnz: int, seed: int = 0):
    """About ``nnz`` distinct ratings 1..5 from a planted rank-8 model, as a float32 CSR (int32 indices)."""
    import scipy.sparse as sp

    gen = np.random.default_rng(seed)
    keys = np.unique(gen.integers(0, n_users * n_items, size=nnz, dtype=np.int64))
    users, items = (keys // n_items).astype(np.int32), (keys % n_items).astype(np.int32)
    del keys
    X = gen.normal(size=(n_users, 8)).astype(np.float32)
    Y = gen.normal(size=(n_items, 8)).astype(np.float32)
    r = np.empty(len(users), dtype=np.float32)
    for start in range(0, len(users), 5_000_000):
        sl = slice(start, start + 5_000_000)
        r[sl] = np.einsum("ij,ij->i", X[users[sl]], Y[items[sl]]) * 0.3 + 3.5
    np.clip(np.rint(r + gen.normal(0.0, 0.5, size=len(r)).astype(np.float32)), 1, 5, out=r)
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=n_users), out=indptr[1:])
    return sp.csr_matrix((r, items, indptr), shape=(n_users, n_items))


def cached(name: str, build):
    """``build()`` (a scipy.sparse matrix) saved once under ``$MFREC_BENCH_CACHE`` (default: the system's temporary
    folder) and loaded by every later process: each measurement runs in a fresh process without regenerating."""
    import tempfile

    import scipy.sparse as sp

    folder = os.environ.get("MFREC_BENCH_CACHE") or os.path.join(tempfile.gettempdir(), "mfrec-bench-data")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name + ".npz")
    if not os.path.exists(path):
        tmp = path + f".{os.getpid()}.npz"
        sp.save_npz(tmp, build(), compressed=False)
        os.replace(tmp, path)
    m = sp.load_npz(path).tocsr()
    m.indices = m.indices.astype(np.int32, copy=False)
    return m


def ml100k_fold(k: int = 1):
    """``(train, test)`` frames (user, item, rating) of MovieLens-100K ``u{k}``; None when the data is absent."""
    import pandas as pd

    roots = [os.environ.get("MFREC_SHARED_DATA", ""), os.path.join(ROOT, "..", "shared", "data")]
    for root in roots:
        base = os.path.join(root, "ml-100k", f"u{k}.base")
        if root and os.path.exists(base):
            names = ["user", "item", "rating", "ts"]
            read = lambda p: pd.read_csv(p, sep="\t", names=names)[["user", "item", "rating"]]  # noqa: E731
            return read(base), read(os.path.join(root, "ml-100k", f"u{k}.test"))
    return None


# ============================================================================================ measuring
def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class PeakMemory:
    """Peak resident set of this process inside the block above the resident set at its start (bytes)."""

    def __enter__(self):
        self.before = _status_kb("VmRSS")
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")  # resets VmHWM to the current resident set
            self.ok = True
        except OSError:
            self.ok = False
        return self

    def __exit__(self, *exc):
        self.extra = max(0, _status_kb("VmHWM") - self.before) * 1024 if self.ok else float("nan")
        return False


def csr_bytes(m) -> int:
    return int(m.data.nbytes + m.indices.nbytes + m.indptr.nbytes)


def memory_entry(mem: PeakMemory, data_bytes: int, factor_bytes: int) -> dict:
    return {"data_mb": data_bytes / 2**20, "factors_mb": factor_bytes / 2**20, "fit_extra_mb": mem.extra / 2**20,
            "memory_ratio": (data_bytes + mem.extra) / (data_bytes + factor_bytes)}


# ============================================================================================ workers
def configs(suite: str, lib: str, with_50m: bool = False) -> list[str]:
    """The measurements of a suite, one fresh process each."""
    if suite == "implicit":
        names = ["cg d=64", "cholesky d=64", "cg d=128", "cholesky d=128"]
        return names + (["cg d=64 +loss", "cholesky d=64 +loss"] if lib == "mfrec" else [])
    if suite == "explicit":
        return ["4m ratings d=64"] + (["50m ratings d=64"] if with_50m and lib == "mfrec" else [])
    return ["SVD (100 factors)", "SVD++ (20 factors)"] + (["SVD (100 factors) +loss"] if lib == "mfrec" else [])


def implicit_config(config: str) -> tuple[str, int, bool]:
    """``"cg d=64 +loss"`` -> ``("cg", 64, True)``."""
    solver, factors = config.split()[:2]
    return solver, int(factors[2:]), config.endswith("+loss")


def worker_gemm() -> dict:
    n = 4096
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = a.T.copy()
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(5))
    return {"gflops": 2 * n**3 / best / 1e9}


def _timed(f) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def implicit_data(small: bool):
    size = (20_000, 5_000) if small else (200_000, 50_000)
    m = cached("power_law_%dx%d" % size, lambda: power_law_matrix(*size))
    warm = cached("power_law_2000x500_s1", lambda: power_law_matrix(2_000, 500, seed=1))
    return m, warm


def worker_implicit(lib: str, config: str, small: bool, threads: int) -> dict:
    m, warm = implicit_data(small)
    solver, d, loss = implicit_config(config)
    shape = {"nnz": int(m.nnz), "shape": list(m.shape)}
    factor_bytes = (m.shape[0] + m.shape[1]) * d * 4
    if lib == "mfrec":
        import mfrec

        inter, winter = mfrec.Interactions.from_matrix(m), mfrec.Interactions.from_matrix(warm)
        kw = dict(factors=d, regularization=0.05, alpha=1.0, solver=solver, cg_steps=3, num_threads=threads,
                  calculate_training_loss=loss)
        mfrec.ImplicitALS(iterations=1, **kw).fit(winter)
        with PeakMemory() as mem:
            model = mfrec.ImplicitALS(iterations=3, **kw).fit(inter)
        per_iter = np.diff([0.0] + [h["seconds"] for h in model.history_])
        return {"s_per_iter": float(np.median(per_iter[1:])), **shape, **memory_entry(mem, csr_bytes(m), factor_bytes)}
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, "blas")  # implicit's recommendation (it warns otherwise)
    from implicit.cpu.als import AlternatingLeastSquares

    conf = m.copy()
    conf.data = (1.0 + conf.data).astype(np.float32)  # confidence 1 + r, as mfrec's alpha = 1
    wconf = warm.copy()
    wconf.data = (1.0 + wconf.data).astype(np.float32)
    del m
    kw = dict(factors=d, regularization=0.05, use_cg=solver == "cg", num_threads=threads, random_state=0)  # CG: 3 steps
    AlternatingLeastSquares(iterations=1, **kw).fit(wconf, show_progress=False)
    stamps: list[float] = []
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        AlternatingLeastSquares(iterations=3, **kw).fit(
            conf, show_progress=False, callback=lambda *a: stamps.append(time.perf_counter()))
    per_iter = np.diff([t0] + stamps)
    return {"s_per_iter": float(np.median(per_iter[1:])), **shape, **memory_entry(mem, csr_bytes(conf), factor_bytes)}


EXPLICIT_RANK = 64  # mfrec's factors and Spark's rank, the "d=64" of the configuration names
EXPLICIT_SIZE = {"4m": (100_000, 20_000, 4_000_000), "50m": (1_000_000, 100_000, 50_000_000),
                 "small": (10_000, 2_000, 200_000)}


def worker_explicit(lib: str, config: str, small: bool, threads: int, extra_iterations: int = 2) -> dict:
    size = EXPLICIT_SIZE["small" if small else config.split()[0]]
    m = cached("planted_%dx%d_%d" % size, lambda: planted_ratings(*size))
    shape = {"nnz": int(m.nnz), "shape": list(m.shape)}
    if lib != "mfrec":
        return {**_spark_explicit(m, threads, extra_iterations), **shape}
    import mfrec

    kw = dict(factors=EXPLICIT_RANK, regularization=0.1, biases=False, regularization_scaling="count",
              num_threads=threads, calculate_training_loss=False)
    mfrec.ExplicitALS(iterations=1, **kw).fit(mfrec.Interactions(planted_ratings(2_000, 500, 20_000, 1)))
    inter = mfrec.Interactions(m)
    with PeakMemory() as mem:
        model = mfrec.ExplicitALS(iterations=3, **kw).fit(inter)
    per_iter = np.diff([0.0] + [h["seconds"] for h in model.history_])
    return {"s_per_iter": float(np.median(per_iter[1:])), **shape,
            **memory_entry(mem, csr_bytes(m), (m.shape[0] + m.shape[1]) * EXPLICIT_RANK * 4)}


def _spark_explicit(m, threads: int, extra: int) -> dict:  # pragma: no cover - needs pyspark and Java
    import pandas as pd
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master(f"local[{threads}]").config("spark.driver.memory", "12g")
             .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", str(2 * threads))
             .config("spark.sql.execution.arrow.pyspark.enabled", "true")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    coo = m.tocoo()
    frame = pd.DataFrame({"user": coo.row.astype(np.int32), "item": coo.col.astype(np.int32),
                          "rating": coo.data.astype(np.float32)})
    sdf = spark.createDataFrame(frame).repartition(2 * threads).cache()
    sdf.count()
    times = {}
    for iters in (1, 1, 1 + extra):  # the first fit warms the JVM (it ran longer than a 3-iteration fit)
        als = ALS(rank=EXPLICIT_RANK, regParam=0.1, maxIter=iters, userCol="user", itemCol="item",
                  ratingCol="rating", seed=0, implicitPrefs=False, nonnegative=False, coldStartStrategy="nan")
        t0 = time.perf_counter()
        model = als.fit(sdf)
        model.userFactors.count()  # the fit is lazy in parts: force the factors
        times[iters] = time.perf_counter() - t0
    spark.stop()
    return {"s_per_iter": (times[1 + extra] - times[1]) / extra, "fit_1_iteration_s": times[1]}


def worker_sgd(lib: str, config: str) -> dict:
    fold = ml100k_fold(1)
    if fold is None:
        raise SystemExit("the sgd suite needs MovieLens-100K: set MFREC_SHARED_DATA to the folder holding ml-100k")
    train, test = fold
    svdpp, loss = config.startswith("SVD++"), config.endswith("+loss")
    factors, lr, epochs = (20, 0.007, 20) if svdpp else (100, 0.005, 20)
    if lib == "mfrec":
        import mfrec

        tr = mfrec.Interactions.from_frame(train, user="user", item="item", value="rating")
        make = lambda e: mfrec.SGDFactorization(  # noqa: E731
            factors=factors, epochs=e, learning_rate=lr, regularization=0.02, bias_regularization=0.02,
            init_std=0.1, regularization_scaling="count", implicit_feedback=svdpp, seed=0,
            calculate_training_loss=loss)
        make(1).fit(tr)
        with PeakMemory() as mem:
            t0 = time.perf_counter()
            model = make(epochs).fit(tr)
            seconds = time.perf_counter() - t0
        pred = model.predict(test["user"].to_numpy(), test["item"].to_numpy())
        factor_bytes = (tr.n_users + tr.n_items) * (factors + 1) * 4 + (tr.n_items * factors * 4 if svdpp else 0)
        mem_entry = memory_entry(mem, csr_bytes(tr.matrix), factor_bytes)
        # at 1.7 MB of data and factors the resident set moves by whole heap blocks: the same fit again, traced
        import tracemalloc

        tracemalloc.start()
        make(epochs).fit(tr)
        traced = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        mem_entry["traced_ratio"] = (csr_bytes(tr.matrix) + traced) / (csr_bytes(tr.matrix) + factor_bytes)
    else:
        from surprise import SVD, Dataset, Reader, SVDpp

        trainset = Dataset.load_from_df(train, Reader(rating_scale=(1, 5))).build_full_trainset()
        algo = (SVDpp if svdpp else SVD)(n_factors=factors, n_epochs=epochs, lr_all=lr, reg_all=0.02, random_state=0)
        with PeakMemory() as mem:
            t0 = time.perf_counter()
            algo.fit(trainset)
            seconds = time.perf_counter() - t0
        pred = np.array([algo.predict(u, i).est for u, i in zip(test["user"], test["item"])])
        mem_entry = {"fit_extra_mb": mem.extra / 2**20}
    err = float(np.sqrt(np.mean((pred - test["rating"].to_numpy()) ** 2)))
    return {"s_per_iter": seconds / epochs, "rmse": err, **mem_entry}


# ============================================================================================ driver
def flops(suite: str, config: str, entry: dict) -> float | None:
    """The work of one iteration by the issue's model (None where it has none)."""
    if suite == "explicit":
        (n_u, n_i), nnz, k = entry["shape"], entry["nnz"], EXPLICIT_RANK
        return 2 * nnz * k**2 + (n_u + n_i) * k**3 / 3
    if suite == "implicit":
        (n_u, n_i), nnz = entry["shape"], entry["nnz"]
        solver, d, _ = implicit_config(config)
        if solver == "cholesky":
            return 2 * nnz * d**2 + (n_u + n_i) * d**3 / 3
        return 4 * (2 * (n_u + n_i) * d**2 + 8 * nnz * d)
    return None


def run_worker(args, lib: str, python: str, config: str = "") -> dict:
    """One measurement in a fresh ``python`` process; its JSON result."""
    cmd = [python, os.path.abspath(__file__), args.suite, "--worker", lib, "--config", config,
           "--threads", str(args.threads)] + (["--small"] if args.small else [])
    t = time.perf_counter()
    # glibc returns every block over 64 KiB to the system when it is freed, so the resident set before a fit holds no
    # freed-but-kept heap from loading the data (which would hide the fit's own allocations from VmHWM); the
    # same for both libraries
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if res.returncode:
        raise SystemExit(f"{lib} {config} ({python}) failed:\n{res.stderr[-4000:]}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    shown = f"{out['s_per_iter']:.3f} s/iter" if "s_per_iter" in out else f"{out['gflops']:.0f} GFLOP/s"
    print(f"  {lib:<14} {config:<22} {shown}  ({time.perf_counter() - t:.0f} s)", flush=True)
    return out


def summarise(args, rounds: list[dict]) -> str:
    comp = {"implicit": "implicit", "explicit": "Spark MLlib", "sgd": "Surprise"}[args.suite]
    peaks = [r["gemm"]["gflops"] for r in rounds]
    lines = [f"GEMM peak (float32, numpy, {args.threads} threads): median {np.median(peaks):.0f} GFLOP/s "
             f"({min(peaks):.0f}-{max(peaks):.0f})", "",
             f"| configuration | mfrec s/iter | {comp} s/iter | mfrec / {comp} | {comp}: first / after mfrec | "
             "mfrec % of GEMM peak | memory (mfrec, competitor) | quality (mfrec, competitor) |",
             "|---|---|---|---|---|---|---|---|"]
    fmt = lambda v: f"{np.median(v):.3g} ({min(v):.3g}-{max(v):.3g})" if v else "—"  # noqa: E731
    for config in rounds[0]["mfrec"]:
        def values(who: str, key: str, first: str | None = None) -> list[float]:
            """``key`` of ``config`` for ``who`` in every round that has it (whose order starts with ``first``)."""
            return [r[who][config][key] for r in rounds if key in r.get(who, {}).get(config, {})
                    and (first is None or r["order"][0] == first)]

        mine, theirs = values("mfrec", "s_per_iter"), values("competitor", "s_per_iter")
        ratio = f"**{np.median(mine) / np.median(theirs):.2f}**" if theirs else "—"
        first, after = values("competitor", "s_per_iter", "competitor"), values("competitor", "s_per_iter", "mfrec")
        order = f"{np.median(first):.3g} / {np.median(after):.3g}" if first and after else "—"
        f = flops(args.suite, config, rounds[0]["mfrec"][config])
        pct = [f / s / 1e9 / p * 100 for s, p in zip(mine, peaks)] if f else []
        pct_s = f"{np.median(pct):.1f} % ({min(pct):.1f}-{max(pct):.1f})" if pct else "—"
        mem_m, mem_c = values("mfrec", "memory_ratio"), values("competitor", "memory_ratio")
        mem = (f"{np.median(mem_m):.2f}x" if mem_m else "—") + ", " + (f"{np.median(mem_c):.2f}x" if mem_c else "—")
        q_m, q_c = values("mfrec", "rmse"), values("competitor", "rmse")
        quality = f"RMSE {np.median(q_m):.4f}, {np.median(q_c):.4f}" if q_m and q_c else "—"
        lines.append(f"| {config} | {fmt(mine)} | {fmt(theirs)} | {ratio} | {order} | {pct_s} | {mem} | {quality} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("suite", choices=["implicit", "explicit", "sgd"])
    ap.add_argument("--competitor-python", default=None, help="the interpreter of the competitor's environment")
    ap.add_argument("--python", default=sys.executable, help="mfrec's interpreter (default: this one)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--small", action="store_true", help="small data, for a quick look")
    ap.add_argument("--with-50m", action="store_true", help="explicit: mfrec alone at 50M ratings too")
    ap.add_argument("--out", default=None, help="append the raw results here (JSON lines)")
    ap.add_argument("--configs", nargs="+", default=None, metavar="TEXT",
                    help="only the configurations whose name contains one of these (e.g. 'cg d=128')")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--config", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        if args.worker == "gemm":
            result = worker_gemm()
        elif args.suite == "implicit":
            result = worker_implicit(args.worker, args.config, args.small, args.threads)
        elif args.suite == "explicit":
            result = worker_explicit(args.worker, args.config, args.small, args.threads)
        else:
            result = worker_sgd(args.worker, args.config)
        print(json.dumps(result))
        return 0
    rounds = []
    for rnd in range(args.rounds):
        order = ["mfrec", "competitor"] if rnd % 2 == 0 else ["competitor", "mfrec"]
        if not args.competitor_python:
            order = ["mfrec"]
        print(f"round {rnd + 1}: load {os.getloadavg()[0]:.2f}", flush=True)
        entry = {"suite": args.suite, "round": rnd + 1, "order": order, "load": os.getloadavg(),
                 "gemm": run_worker(args, "gemm", args.python), "mfrec": {}, "competitor": {}}
        for config in configs(args.suite, "mfrec", args.with_50m):
            if args.configs and not any(c in config for c in args.configs):
                continue
            for who in order:
                if who == "competitor" and config not in configs(args.suite, "peer"):
                    continue
                python = args.python if who == "mfrec" else args.competitor_python
                entry[who][config] = run_worker(args, "mfrec" if who == "mfrec" else "peer", python, config)
        rounds.append(entry)
        if args.out:
            with open(args.out, "a") as fh:
                fh.write(json.dumps(entry) + "\n")
    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.threads} threads, "
          f"{args.rounds} rounds, suite {args.suite}{' (small)' if args.small else ''}")
    print(summarise(args, rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
