"""Implicit ALS: mfrec.ImplicitALS against ``implicit`` (0.7) in one process, same matrix and hyperparameters.

Usage::

    python benchmarks/implicit_als.py                 # small synthetic matrix (~20 s) + quality on shared data
    python benchmarks/implicit_als.py --full          # 200k x 50k, ~9.7M nnz, d=64 (minutes)
    python benchmarks/implicit_als.py --full --factors 128 --skip-quality
    python benchmarks/implicit_als.py --skip-quality --factors 64 128   # both d in one process
    python benchmarks/implicit_als.py --skip-speed --data-dir ../shared/data

Speed: seconds per iteration of both libraries (CG with 3 steps and Cholesky), their ratio, the FLOP rate of
each against the float32 GEMM peak measured here, and peak resident memory during fit against the size of
the CSR matrix (both orientations) plus the factor matrices.

Quality: ml-100k binarized and lastfm-2k with log confidence, per-user random 80/20 split, precision@10 and
ndcg@10 of both libraries computed by the same code (ours), training items excluded.
``implicit`` uses its own convention (confidence = alpha * value, unobserved 1); mfrec is run on the same
objective (``confidence="given"`` on the same matrix) and with the Hu et al. confidence ``1 + alpha r``.

``implicit`` is only imported here, never by mfrec.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

import numpy as np
import scipy.sparse as sp


def power_law_matrix(n_users, n_items, min_len=13, max_len=84, exponent=0.8, seed=0):
    """Users with uniform(min_len, max_len) items each; items drawn with p ~ rank^-exponent (duplicates merged)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(min_len, max_len + 1, size=n_users)
    p = np.arange(1, n_items + 1, dtype=np.float64) ** -exponent
    p /= p.sum()
    items = rng.choice(n_items, size=int(lengths.sum()), p=p).astype(np.int32)
    rows = np.repeat(np.arange(n_users, dtype=np.int32), lengths)
    m = sp.csr_matrix((np.ones(len(items), np.float32), (rows, items)), shape=(n_users, n_items))
    m.data[:] = 1.0  # merged duplicates count once
    m.sort_indices()
    return m


class PeakRSS:
    """Samples the resident set size (``/proc/self/statm``) every 5 ms; ``peak - base`` in bytes."""

    def __init__(self):
        self.page = os.sysconf("SC_PAGE_SIZE")

    def _rss(self):
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def __enter__(self):
        self.base = self.peak = self._rss()
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop:
            self.peak = max(self.peak, self._rss())
            time.sleep(0.005)

    def __exit__(self, *exc):
        self._stop = True
        self._t.join()
        self.peak = max(self.peak, self._rss())

    @property
    def delta(self):
        return self.peak - self.base


def gemm_peak(threads: int) -> float:
    """GFLOP/s of a float32 4096^2 matrix product (best of 3)."""
    from threadpoolctl import threadpool_limits

    a = np.random.default_rng(0).random((4096, 4096), dtype=np.float32)
    b = a.T.copy()
    best = np.inf
    with threadpool_limits(limits=threads, user_api="blas"):
        a @ b
        for _ in range(3):
            t = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t)
    return 2 * 4096**3 / best / 1e9


def flops(solver, nnz, m, n, d, steps=3):
    """FLOPs of one full iteration (both halves), the same model for both libraries (PERF-NOTES.md)."""
    if solver == "cholesky":
        return 2 * nnz * d * d + (m + n) * d**3 / 3
    return (steps + 1) * (2 * (m + n) * d * d + 8 * nnz * d)


def fit_mfrec(C, factors, reg, iters, solver, threads, confidence="given", alpha=1.0, seed=0):
    from mfrec import Interactions
    from mfrec.models.implicit import ImplicitALS

    model = ImplicitALS(factors=factors, regularization=reg, alpha=alpha, iterations=iters, solver=solver,
                        cg_steps=3, confidence=confidence, num_threads=threads, seed=seed)
    model.fit(Interactions(C))
    return model


def fit_implicit(C, factors, reg, iters, solver, threads, seed=0):
    """``implicit``'s CPU ALS with BLAS limited to one thread, as its own start-up check recommends (with a
    2-thread OpenBLAS pool it warns and runs slower: the fair comparison gives it its best configuration)."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    model = AlternatingLeastSquares(factors=factors, regularization=reg, alpha=1.0, iterations=iters,
                                    use_cg=solver == "cg", num_threads=threads, random_state=seed,
                                    calculate_training_loss=False)
    with threadpool_limits(limits=1, user_api="blas"):
        model.fit(C, show_progress=False)
    return model


def speed(args):
    """Speed table for every ``--factors`` value, in this process (so the ratios share one machine state)."""
    rows = []
    for d in args.factors:
        rows += speed_one(args, d)
    return rows


def speed_one(args, d):
    import numba

    numba.set_num_threads(args.threads)
    m, n = (200_000, 50_000) if args.full else (args.users, args.items)
    C = power_law_matrix(m, n, seed=0)
    C.data[:] = 2.0  # confidence 1 + alpha * 1 for both libraries ("given" to mfrec)
    csr_bytes = 2 * (C.data.nbytes + C.indices.nbytes + C.indptr.nbytes)
    factor_bytes = (m + n) * d * 4
    peak = gemm_peak(args.threads)
    lens = np.diff(C.indptr)
    item_lens = np.bincount(C.indices, minlength=n)
    print(f"matrix {m} x {n}, nnz {C.nnz:,}, longest user row {lens.max()}, longest item row {item_lens.max()}, "
          f"d={d}, threads={args.threads}")
    print(f"float32 GEMM peak: {peak:.0f} GFLOP/s")
    print(f"CSR (both orientations) + factors: {(csr_bytes + factor_bytes) / 2**20:.0f} MiB")
    # JIT warm-up outside the timings
    fit_mfrec(power_law_matrix(300, 200, seed=1), d, 0.05, 1, "cg", args.threads)
    fit_mfrec(power_law_matrix(300, 200, seed=1), d, 0.05, 1, "cholesky", args.threads)
    rows = []
    for solver in args.solvers:
        res = {}
        for lib, fn in (("implicit", fit_implicit), ("mfrec", fit_mfrec)):
            with PeakRSS() as mem:
                t = time.perf_counter()
                fn(C, d, 0.05, args.iterations, solver, args.threads)
                sec = (time.perf_counter() - t) / args.iterations
            gf = flops(solver, C.nnz, m, n, d) / sec / 1e9
            res[lib] = sec
            print(f"  {solver:8s} {lib:8s} {sec:7.3f} s/iter  {gf:6.1f} GFLOP/s ({100 * gf / peak:4.1f}% of peak)  "
                  f"peak RSS +{mem.delta / 2**20:.0f} MiB ({mem.delta / (csr_bytes + factor_bytes):.2f}x data)")
            sys.stdout.flush()
        print(f"  {solver:8s} d={d} ratio mfrec/implicit = {res['mfrec'] / res['implicit']:.2f}  "
              f"(load average {os.getloadavg()[0]:.1f})")
        rows.append((d, solver, res))
    return rows


# ------------------------------------------------------------------------------------------------ quality
def per_user_split(C: sp.csr_matrix, frac=0.2, seed=0):
    """Per-user random split: each user with >= 2 items puts round(frac * n_u) (>= 1) of them in test.

    TODO: switch to mfrec.data.split once it lands (same protocol).
    """
    rng = np.random.default_rng(seed)
    C = C.tocsr()
    test_mask = np.zeros(C.nnz, dtype=bool)
    for u in range(C.shape[0]):
        s, e = C.indptr[u], C.indptr[u + 1]
        n_u = e - s
        if n_u < 2:
            continue
        k = max(1, int(round(frac * n_u)))
        test_mask[s + rng.choice(n_u, size=k, replace=False)] = True
    rows = np.repeat(np.arange(C.shape[0]), np.diff(C.indptr))
    train = sp.csr_matrix((C.data[~test_mask], (rows[~test_mask], C.indices[~test_mask])), shape=C.shape)
    test = sp.csr_matrix((C.data[test_mask], (rows[test_mask], C.indices[test_mask])), shape=C.shape)
    train.sort_indices()
    test.sort_indices()
    return train, test


def ranking_metrics(X, Y, train, test, k=10):
    """precision@k and ndcg@k over users with test items, training items excluded (mfrec's top-k kernel).

    TODO: switch to mfrec.evaluation.metrics once it lands.
    """
    from mfrec.kernels.topk import topk_dot

    users = np.flatnonzero(np.diff(test.indptr) > 0)
    tr = train[users]
    top, _, _ = topk_dot(np.ascontiguousarray(X[users], np.float32), np.ascontiguousarray(Y, np.float32), k,
                         tr.indptr.astype(np.int64), tr.indices.astype(np.int32))
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    prec, ndcg = [], []
    for r, u in enumerate(users):
        rel = test.indices[test.indptr[u] : test.indptr[u + 1]]
        hits = np.isin(top[r], rel)
        prec.append(hits.sum() / k)
        ndcg.append(disc[hits].sum() / disc[: min(k, len(rel))].sum())
    return float(np.mean(prec)), float(np.mean(ndcg))


def quality(args):
    from mfrec.data.datasets import load

    out = []
    for name in ("ml-100k", "lastfm-2k"):
        try:
            ds = load(name, data_dir=args.data_dir, download=False)
        except Exception as exc:  # noqa: BLE001 - report and go on
            print(f"{name}: skipped ({exc})")
            continue
        R = ds.interactions.matrix.astype(np.float64)
        C = R.copy()
        C.data = np.ones_like(C.data) if name == "ml-100k" else np.log1p(C.data)  # binarized / log(1 + plays)
        C = C.astype(np.float32)
        train, test = per_user_split(C, 0.2, seed=0)
        print(f"{name}: {C.shape[0]} users x {C.shape[1]} items, train nnz {train.nnz}, test nnz {test.nnz}")
        common = dict(factors=64, reg=0.05, iters=15, threads=args.threads)
        for solver in ("cg", "cholesky"):
            imp = fit_implicit(train, common["factors"], common["reg"], common["iters"], solver, args.threads)
            uf, itf = imp.user_factors, imp.item_factors
            p, nd = ranking_metrics(np.asarray(uf), np.asarray(itf), train, test)
            print(f"  {solver:8s} implicit (c = alpha r)           p@10 {p:.3f}  ndcg@10 {nd:.3f}")
            out.append((name, solver, "implicit", p, nd))
            ours = fit_mfrec(train, common["factors"], common["reg"], common["iters"], solver, args.threads,
                             confidence="given")
            p, nd = ranking_metrics(ours.user_factors_, ours.item_factors_, train, test)
            print(f"  {solver:8s} mfrec    (same objective, given)  p@10 {p:.3f}  ndcg@10 {nd:.3f}")
            out.append((name, solver, "mfrec-given", p, nd))
            ours = fit_mfrec(train, common["factors"], common["reg"], common["iters"], solver, args.threads,
                             confidence="linear")
            p, nd = ranking_metrics(ours.user_factors_, ours.item_factors_, train, test)
            print(f"  {solver:8s} mfrec    (c = 1 + alpha r, HKV)    p@10 {p:.3f}  ndcg@10 {nd:.3f}")
            out.append((name, solver, "mfrec-linear", p, nd))
    return out


def solver_curves(args):
    """Full weighted loss versus seconds for the three solvers on the small synthetic matrix (``history_``)."""
    from mfrec import Interactions
    from mfrec.models.implicit import ImplicitALS

    C = power_law_matrix(args.users, args.items, seed=0)
    for solver, iters in (("cholesky", 6), ("cg", 6), ("gd", 30)):
        model = ImplicitALS(factors=args.factors[0], regularization=0.05, iterations=iters, solver=solver,
                            num_threads=args.threads, seed=0).fit(Interactions(C))
        pts = [(h["iteration"], h["seconds"], h["loss"]) for h in model.history_]
        shown = pts if len(pts) <= 6 else pts[:3] + pts[9::10]
        print(f"  {solver:8s} " + "  ".join(f"it{i} {s:.1f}s {loss:.4g}" for i, s, loss in shown))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", action="store_true", help="200k x 50k, ~9.7M nnz (minutes)")
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--items", type=int, default=5_000)
    ap.add_argument("--factors", type=int, nargs="+", default=[64], help="one or more d (speed; quality uses 64)")
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--solvers", nargs="+", default=["cg", "cholesky"], choices=["cg", "cholesky", "gd"])
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--curves", action="store_true", help="loss versus seconds of the three mfrec solvers")
    ap.add_argument("--data-dir", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    args = ap.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(args.threads))
    if not args.skip_speed:
        speed(args)
    if args.curves:
        solver_curves(args)
    if not args.skip_quality:
        quality(args)


if __name__ == "__main__":
    main()
