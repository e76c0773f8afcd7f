"""Explicit-feedback benchmark on the canonical MovieLens-100K folds u1..u5.

Reports, per model, the mean test RMSE over the five folds (``u{k}.base`` -> ``u{k}.test``) and the mean fit
seconds per fold:

* ``ExplicitALS()`` and ``SGDFactorization()`` with their documented defaults (mfrec);
* scikit-surprise ``SVD()`` and ``SVDpp()`` with their defaults (``--skip-svdpp`` to leave SVD++ out: it is slow);
* Spark MLlib ALS (rank 10, regParam 0.1, 15 iterations) when ``pyspark`` is importable.

mfrec's kernels are compiled at install time; one warm-up fit on ``u1.base`` per mfrec model still runs before
any timing (first touch of memory and caches).

Test rows whose user or item is absent from the training fold are predicted by every library's own fallback
(mfrec: the biases, counted in ``unknown_predictions_``; Surprise: the global mean / baseline) and kept in the
RMSE; Spark's NaN predictions for them are replaced by the training mean.

``--tune-defaults`` shows how the defaults were chosen: a grid over the hyperparameters, scored by the RMSE on a
random 10% inner holdout of ``u1.base`` (seed 0) — the test folds are never looked at.

Usage::

    python benchmarks/explicit_ml100k.py [--data ../shared/data/ml-100k] [--skip-svdpp] [--folds 1 2 3 4 5]
    python benchmarks/explicit_ml100k.py --tune-defaults
    python benchmarks/explicit_ml100k.py --scale 1000000 100000 50000000 --factors 64

``--scale`` times ExplicitALS on a synthetic explicit matrix (ratings from a planted low-rank model) and reports
seconds per iteration and the peak memory ``fit`` allocates on top of the data (tracemalloc), as a multiple of
the CSR matrix plus the factors.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

import mfrec
from mfrec.models.explicit import ExplicitALS, SGDFactorization

NAMES = ["user", "item", "rating", "timestamp"]
DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ml-100k"


def load_fold(data: Path, k: int) -> tuple[mfrec.Interactions, mfrec.Interactions]:
    train = mfrec.read_interactions(data / f"u{k}.base", names=NAMES, header=False)
    test = mfrec.read_interactions(data / f"u{k}.test", names=NAMES, header=False)
    return train, test


def rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred, dtype=np.float64) - truth) ** 2)))


# ------------------------------------------------------------------------------------------- runners
def run_mfrec(make, train, test) -> tuple[float, float, int]:
    frame = test.to_frame()
    model = make()
    t0 = time.perf_counter()
    model.fit(train)
    seconds = time.perf_counter() - t0
    pred = model.predict(frame["user"].to_numpy(), frame["item"].to_numpy())
    return rmse(pred, frame["value"].to_numpy()), seconds, model.unknown_predictions_


def run_surprise(algo_cls, train, test) -> tuple[float, float, int]:
    from surprise import Dataset, Reader

    df = train.to_frame()[["user", "item", "value"]]
    trainset = Dataset.load_from_df(df, Reader(rating_scale=(1, 5))).build_full_trainset()
    algo = algo_cls(random_state=0)
    t0 = time.perf_counter()
    algo.fit(trainset)
    seconds = time.perf_counter() - t0
    frame = test.to_frame()
    pred = [algo.predict(u, i).est for u, i in zip(frame["user"], frame["item"])]
    unknown = int((~frame["user"].isin(df["user"]) | ~frame["item"].isin(df["item"])).sum())
    return rmse(np.array(pred), frame["value"].to_numpy()), seconds, unknown


def run_spark(train, test, spark) -> tuple[float, float, int]:  # pragma: no cover - needs pyspark
    from pyspark.ml.recommendation import ALS

    tr = train.to_frame()[["user", "item", "value"]].astype({"user": int, "item": int, "value": float})
    te = test.to_frame()[["user", "item", "value"]].astype({"user": int, "item": int, "value": float})
    als = ALS(rank=10, regParam=0.1, maxIter=15, userCol="user", itemCol="item", ratingCol="value", seed=0)
    sdf = spark.createDataFrame(tr).cache()
    sdf.count()
    t0 = time.perf_counter()
    model = als.fit(sdf)
    seconds = time.perf_counter() - t0
    pred = model.transform(spark.createDataFrame(te)).toPandas()
    unknown = int(pred["prediction"].isna().sum())
    pred["prediction"] = pred["prediction"].fillna(tr["value"].mean()).clip(1, 5)
    return rmse(pred["prediction"].to_numpy(), pred["value"].to_numpy()), seconds, unknown


# ------------------------------------------------------------------------------------------- main run
def benchmark(data: Path, folds: list[int], skip_svdpp: bool) -> pd.DataFrame:
    rows = []
    models: dict[str, object] = {
        "mfrec ExplicitALS()": lambda tr, te: run_mfrec(ExplicitALS, tr, te),
        "mfrec SGDFactorization()": lambda tr, te: run_mfrec(SGDFactorization, tr, te),
    }
    try:
        from surprise import SVD, SVDpp

        models["surprise SVD()"] = lambda tr, te: run_surprise(SVD, tr, te)
        if not skip_svdpp:
            models["surprise SVDpp()"] = lambda tr, te: run_surprise(SVDpp, tr, te)
    except ImportError:
        print("scikit-surprise is not installed: skipping SVD / SVD++", file=sys.stderr)
    spark = None
    try:  # pragma: no cover - depends on the environment
        from pyspark.sql import SparkSession

        spark = SparkSession.builder.master("local[*]").appName("mfrec-bench").getOrCreate()
        models["spark ALS(rank=10, reg=0.1, 15 it)"] = lambda tr, te: run_spark(tr, te, spark)
    except ImportError:
        print("pyspark is not installed: skipping Spark MLlib ALS", file=sys.stderr)

    # warm-up: one fit per model before any timing (caches, first-touch of memory)
    tr1, _ = load_fold(data, folds[0])
    ExplicitALS().fit(tr1)
    SGDFactorization().fit(tr1)

    for k in folds:
        train, test = load_fold(data, k)
        for name, run in models.items():
            score, seconds, unknown = run(train, test)
            rows.append({"model": name, "fold": f"u{k}", "rmse": score, "fit_seconds": seconds, "unknown_rows": unknown})
            print(f"u{k}  {name:38s} RMSE {score:.4f}  fit {seconds:6.3f} s  ({unknown} test rows with unknown ids)",
                  flush=True)
    if spark is not None:  # pragma: no cover
        spark.stop()
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------- defaults
def inner_holdout(data: Path, fraction: float = 0.1, seed: int = 0):
    """A random ``fraction`` of u1.base as validation, the rest as training (same id maps)."""
    base = mfrec.read_interactions(data / "u1.base", names=NAMES, header=False)
    gen = np.random.default_rng(seed)
    mask = gen.random(base.nnz) < fraction
    return base.take(~mask), base.take(mask)


def tune_defaults(data: Path) -> pd.DataFrame:
    """Grid on the inner holdout of u1.base; the per-iteration validation curve picks the iteration count."""
    train, valid = inner_holdout(data)
    rows = []
    grids = {
        'ExplicitALS(regularization_scaling="count")': (
            lambda f, r: ExplicitALS(factors=f, regularization=r, iterations=25, regularization_scaling="count"),
            [5, 10, 20, 50],
            [0.05, 0.1, 0.15, 0.2, 0.3],
        ),
        'ExplicitALS(regularization_scaling="none")': (
            lambda f, r: ExplicitALS(factors=f, regularization=r, iterations=25, regularization_scaling="none"),
            [2, 3, 5, 8, 10, 20],
            [5.0, 7.0, 10.0, 12.0, 15.0, 20.0],
        ),
    }
    for lr in (0.007, 0.01, 0.015):
        grids[f"SGDFactorization(learning_rate={lr})"] = (
            lambda f, r, lr=lr: SGDFactorization(factors=f, regularization=r, learning_rate=lr, epochs=60),
            [20, 50, 100],
            [0.05, 0.1, 0.15],
        )
    for family, (make, factors, regs) in grids.items():
        for f, r in itertools.product(factors, regs):
            model = make(f, r)
            t0 = time.perf_counter()
            model.fit(train, validation=valid)
            curve = np.array([h["val_rmse"] for h in model.history_])
            best = int(np.argmin(curve))
            rows.append({"family": family, "factors": f, "regularization": r, "best_iterations": best + 1,
                         "val_rmse_best": float(curve[best]), "val_rmse_last": float(curve[-1]),
                         "seconds": time.perf_counter() - t0})
            print(json.dumps(rows[-1]), flush=True)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------- scale
def synthetic_ratings(n_users: int, n_items: int, nnz: int, seed: int = 0) -> mfrec.Interactions:
    """About ``nnz`` distinct (user, item) ratings 1..5 from a planted rank-8 biased model (``side_by_side.py``'s
    generator, which the peers' environments can run without mfrec)."""
    from side_by_side import planted_ratings

    return mfrec.Interactions(planted_ratings(n_users, n_items, nnz, seed))


def scale(n_users: int, n_items: int, nnz: int, factors: int, iterations: int) -> dict:
    """Seconds per ALS iteration and the memory fit allocates (tracemalloc: numpy buffers) on synthetic data."""
    import tracemalloc

    data = synthetic_ratings(n_users, n_items, nnz)
    m = data.matrix
    csr_bytes = m.data.nbytes + m.indices.nbytes + m.indptr.nbytes
    factor_bytes = (n_users + n_items) * (factors + 1) * 4  # float32 factors + biases
    ExplicitALS(factors=factors, iterations=1).fit(synthetic_ratings(100, 50, 1000))  # JIT warm-up
    tracemalloc.start()
    model = ExplicitALS(factors=factors, iterations=iterations).fit(data)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    seconds = np.diff([0.0] + [h["seconds"] for h in model.history_])
    result = {
        "n_users": n_users, "n_items": n_items, "nnz": int(data.nnz), "factors": factors,
        "seconds_per_iteration": float(np.mean(seconds)), "csr_mb": csr_bytes / 2**20,
        "factors_mb": factor_bytes / 2**20, "fit_peak_allocated_mb": peak / 2**20,
        "total_over_csr_plus_factors": (csr_bytes + peak) / (csr_bytes + factor_bytes),
    }
    print(json.dumps(result, indent=1))
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding u1.base .. u5.test")
    ap.add_argument("--folds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    ap.add_argument("--skip-svdpp", action="store_true", help="leave out Surprise SVD++ (slow)")
    ap.add_argument("--tune-defaults", action="store_true", help="re-run the grid that chose the defaults")
    ap.add_argument("--scale", type=int, nargs=3, metavar=("USERS", "ITEMS", "NNZ"), default=None,
                    help="time ExplicitALS(factors=--factors) on a synthetic matrix instead (e.g. 1000000 100000 50000000)")
    ap.add_argument("--factors", type=int, default=64, help="factors for --scale")
    ap.add_argument("--iterations", type=int, default=3, help="iterations for --scale")
    ap.add_argument("--json", type=Path, default=None, help="also write the raw rows as JSON here")
    args = ap.parse_args(argv)
    if args.scale:
        scale(*args.scale, factors=args.factors, iterations=args.iterations)
        return 0
    if not (args.data / "u1.base").is_file():
        print(f"MovieLens-100K folds not found in {args.data}", file=sys.stderr)
        return 2
    print(f"python {platform.python_version()}, numpy {np.__version__}, mfrec {mfrec.__version__}, "
          f"{os.cpu_count()} CPUs, kernel threads {__import__('mfrec.kernels.threads', fromlist=['x']).get_num_threads()}", flush=True)
    if args.tune_defaults:
        table = tune_defaults(args.data)
        with pd.option_context("display.width", 200, "display.max_rows", 200):
            for family, group in table.groupby("family", sort=False):
                print(f"\n{family}")
                print(group.sort_values("val_rmse_best").head(5).to_string(index=False))
    else:
        table = benchmark(args.data, args.folds, args.skip_svdpp)
        summary = table.groupby("model", sort=False).agg(
            rmse_mean=("rmse", "mean"), rmse_std=("rmse", "std"), fit_seconds_mean=("fit_seconds", "mean")
        )
        if "surprise SVD()" in summary.index:
            summary["fit_time_vs_surprise_svd"] = summary["fit_seconds_mean"] / summary.loc["surprise SVD()", "fit_seconds_mean"]
        with pd.option_context("display.width", 200, "display.float_format", "{:.4f}".format):
            print("\n" + summary.to_string())
    if args.json:
        args.json.write_text(table.to_json(orient="records", indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
