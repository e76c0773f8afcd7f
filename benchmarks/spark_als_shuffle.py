"""Spark MLlib ALS beside the sharded layout's paper model: bytes shuffled per iteration on the same matrix.

Usage (two environments: mfrec's writes the matrix, a Spark one measures; Spark is the ``bench`` extra only)::

    .venv/bin/python benchmarks/spark_als_shuffle.py write --users 200000 --items 50000 --per-user 8 --out m.npz
    /path/to/spark-venv/bin/python benchmarks/spark_als_shuffle.py measure m.npz --rank 64 --blocks 4

``write`` saves the power-law matrix of ``benchmarks/_matrices.py`` (rows, cols, values) and prints the sharded
layout's paper-model bytes per iteration for that matrix (``distributed_sharded.paper_model``). ``measure`` fits
``pyspark.ml.recommendation.ALS`` (implicit, ``local[2]``, ``numUserBlocks = numItemBlocks = --blocks``) with 1
and with 3 iterations, each in a fresh Spark session, reads the shuffle bytes written by every stage from Spark's
status REST API, and prints ``(total(3) - total(1)) / 2``: the bytes one iteration shuffles (set-up, the
rating blocks' own shuffle, is the same in both runs and cancels).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request

import numpy as np

_here = os.path.dirname(os.path.abspath(__file__))


def write(args) -> None:
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
    sys.path.insert(0, os.path.join(_here, "..", "src"))
    import importlib.util

    def sibling(name):
        spec = importlib.util.spec_from_file_location(f"_bench_{name}", os.path.join(_here, f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    data = sibling("_matrices").power_law(args.users, args.items, args.per_user, args.seed)
    coo = data.matrix.tocoo()
    np.savez(args.out, rows=coo.row.astype(np.int32), cols=coo.col.astype(np.int32), vals=coo.data)
    model = sibling("distributed_sharded").paper_model(data, args.rank, 4, args.blocks, args.blocks, False)
    print(json.dumps({"users": data.matrix.shape[0], "items": data.matrix.shape[1], "nnz": int(data.nnz),
                      "rank": args.rank, "blocks": args.blocks,
                      "mfrec_sharded_bytes_per_iteration": model["pieces_random"]}))


def _shuffle_bytes(ui: str) -> int:
    with urllib.request.urlopen(f"{ui}/api/v1/applications") as fh:
        app = json.load(fh)[0]["id"]
    with urllib.request.urlopen(f"{ui}/api/v1/applications/{app}/stages?status=complete") as fh:
        stages = json.load(fh)
    return int(sum(s.get("shuffleWriteBytes", 0) for s in stages))


def _fit(path: str, rank: int, blocks: int, iterations: int) -> dict:
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master("local[2]").appName("mfrec-shuffle")
             .config("spark.driver.memory", "8g").config("spark.ui.enabled", "true")
             .config("spark.sql.shuffle.partitions", str(blocks)).getOrCreate())
    try:
        m = np.load(path)
        frame = spark.createDataFrame(
            list(zip(m["rows"].tolist(), m["cols"].tolist(), m["vals"].astype(float).tolist())),
            ["user", "item", "rating"]).repartition(blocks).cache()
        frame.count()
        before = _shuffle_bytes(spark.sparkContext.uiWebUrl)
        t0 = time.perf_counter()
        ALS(rank=rank, maxIter=iterations, regParam=0.1, implicitPrefs=True, alpha=1.0, numUserBlocks=blocks,
            numItemBlocks=blocks, userCol="user", itemCol="item", ratingCol="rating", seed=0).fit(frame)
        seconds = time.perf_counter() - t0
        time.sleep(1.0)  # the status store catches up with the last stage
        return {"shuffle": _shuffle_bytes(spark.sparkContext.uiWebUrl) - before, "seconds": seconds}
    finally:
        spark.stop()


def measure(args) -> None:
    if args.iterations is not None:  # one fit (the child process)
        print(json.dumps(_fit(args.npz, args.rank, args.blocks, args.iterations)))
        return
    import subprocess

    runs = {}
    for n in (1, 3):
        out = subprocess.run([sys.executable, __file__, "measure", args.npz, "--rank", str(args.rank), "--blocks",
                              str(args.blocks), "--iterations", str(n)], capture_output=True, text=True, check=True)
        runs[n] = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps({"rank": args.rank, "blocks": args.blocks, "runs": runs,
                      "spark_shuffle_bytes_per_iteration": (runs[3]["shuffle"] - runs[1]["shuffle"]) / 2,
                      "spark_seconds_per_iteration": (runs[3]["seconds"] - runs[1]["seconds"]) / 2}))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("--users", type=int, default=200_000)
    w.add_argument("--items", type=int, default=50_000)
    w.add_argument("--per-user", type=int, default=8)
    w.add_argument("--rank", type=int, default=64)
    w.add_argument("--blocks", type=int, default=4)
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--out", required=True)
    m = sub.add_parser("measure")
    m.add_argument("npz")
    m.add_argument("--rank", type=int, default=64)
    m.add_argument("--blocks", type=int, default=4)
    m.add_argument("--iterations", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    write(args) if args.cmd == "write" else measure(args)


if __name__ == "__main__":
    main()
