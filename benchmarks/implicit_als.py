"""Implicit ALS: the quality of mfrec.ImplicitALS against ``implicit`` (0.7), same data and hyperparameters.

Usage::

    python benchmarks/implicit_als.py --data-dir ../shared/data        # quality (a few minutes)
    python benchmarks/implicit_als.py --skip-tune --seeds 0             # quality, issue's settings only
    python benchmarks/implicit_als.py --skip-quality --curves           # loss vs seconds of mfrec's 3 solvers

Speed is not measured here: it was, with both libraries in this one process, and implicit ran up to 1.85x slower
after mfrec than alone. ``side_by_side.py implicit`` times each library in its own fresh process, alternating.
The matrix family of those runs (``power_law_matrix``) is defined here.

Quality: ml-100k binarized and lastfm-2k with confidence log(1 + plays), ``mfrec.split.per_user_split``
(80/20, seed 0), precision@10 and ndcg@10 from ``mfrec.evaluate`` for both libraries (``implicit``'s factors
are wrapped in an ``mfrec.FactorModel``, so the top-k lists come from the same kernel, training items
excluded), at the issue's hyperparameters (factors 64, regularization 0.05, alpha 1, 15 iterations) over
``--seeds`` model initialisations. ``implicit`` uses its own convention (confidence = alpha * value,
unobserved 1); mfrec is run on the same objective (``confidence="given"`` on the same matrix) and with the
Hu et al. confidence ``1 + alpha r``. Then "better when tuned": ``mfrec.GridSearch`` (8 candidates, 3 folds,
ndcg@10) on the training part only, the best refitted on the training part and scored once on the test
part; the equivalent ``mfrec tune`` command line is printed (``--skip-tune`` leaves this out).

``implicit`` is only imported here, never by mfrec.
"""

from __future__ import annotations

import argparse
import os
import sys
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


def fit_mfrec(C, factors, reg, iters, solver, threads, confidence="given", alpha=1.0, seed=0):
    from mfrec import Interactions
    from mfrec.models.implicit import ImplicitALS

    model = ImplicitALS(factors=factors, regularization=reg, alpha=alpha, iterations=iters, solver=solver,
                        cg_steps=3, confidence=confidence, num_threads=threads, seed=seed)
    model.fit(Interactions(C))
    # seconds of each iteration alone (both half-steps and the loss), without the set-up before the first one
    ends = [h["seconds"] for h in model.history_]
    model.iteration_seconds_ = list(np.diff([0.0] + ends))
    return model


def fit_implicit(C, factors, reg, iters, solver, threads, seed=0):
    """``implicit``'s CPU ALS with BLAS limited to one thread, as its own start-up check recommends (with a
    2-thread OpenBLAS pool it warns and runs slower: the fair comparison gives it its best configuration)."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):  # construction runs implicit's BLAS check too
        model = AlternatingLeastSquares(factors=factors, regularization=reg, alpha=1.0, iterations=iters,
                                        use_cg=solver == "cg", num_threads=threads, random_state=seed,
                                        calculate_training_loss=False)
        seconds = []  # implicit's callback gets each iteration's own elapsed time (both half-steps)
        model.fit(C, show_progress=False, callback=lambda it, elapsed, loss: seconds.append(elapsed))
    model.iteration_seconds_ = seconds
    return model


# ------------------------------------------------------------------------------------------------ quality
#: the issue's protocol: both libraries at these hyperparameters
QUALITY_COMMON = dict(factors=64, regularization=0.05, alpha=1.0, iterations=15)
#: "better when tuned": 8 candidates, cross-validated on the training part only (CG solver, HKV confidence)
TUNE_GRID = {"factors": [32, 64], "regularization": [0.05, 5.0], "alpha": [1.0, 10.0]}

def _external_factor_model():
    """A :class:`mfrec.FactorModel` holding factors learned elsewhere, so that ``mfrec.evaluate`` scores them
    with exactly the code path (``_topk`` -> ``kernels.topk.topk_dot``, training items excluded) it uses for
    mfrec's own models. Defined lazily so ``--skip-quality`` never imports mfrec's model layer here."""
    from mfrec import FactorModel, InvalidDataError

    class ExternalFactors(FactorModel):
        """``s(u, i) = x_u . y_i`` from given ``user_factors`` (n_users, d) and ``item_factors`` (n_items, d)."""

        def __init__(self) -> None:
            pass

        def fit(self, interactions, user_factors=None, item_factors=None):
            X = np.ascontiguousarray(user_factors, dtype=np.float32)
            Y = np.ascontiguousarray(item_factors, dtype=np.float32)
            if X.shape != (interactions.n_users, Y.shape[1]) or Y.shape[0] != interactions.n_items:
                raise InvalidDataError(f"factor shapes {X.shape}, {Y.shape} do not match {interactions.shape}")
            self.interactions_ = interactions
            self.user_factors_, self.item_factors_ = X, Y
            return self

    return ExternalFactors


def _scores(model, test):
    import mfrec

    r = mfrec.evaluate(model, test, k=10, metrics=["precision", "ndcg"])
    return r["precision@10"], r["ndcg@10"]


def quality_data(name, data_dir):
    """(Interactions with the issue's values, description): ml-100k binarized, lastfm-2k log(1 + plays)."""
    from mfrec.data.datasets import load

    inter = load(name, data_dir=data_dir, download=False).interactions
    v = inter.matrix.data.astype(np.float64)
    v = np.ones_like(v) if name == "ml-100k" else np.log1p(v)
    return inter.with_values(v.astype(np.float32))


def quality(args):
    """Same split (``mfrec.split.per_user_split``, seed 0) and same evaluation (``mfrec.evaluate``) for both
    libraries, at the issue's hyperparameters over ``--seeds`` model initialisations; then a grid search on
    the training part only (``mfrec.GridSearch``, 3 folds) with the best candidate refitted and scored once."""
    import mfrec
    from mfrec.models.implicit import ImplicitALS

    External = _external_factor_model()
    c = QUALITY_COMMON
    out = []
    for name in ("ml-100k", "lastfm-2k"):
        try:
            data = quality_data(name, args.data_dir)
        except Exception as exc:  # noqa: BLE001 - report and go on
            print(f"{name}: skipped ({exc})")
            continue
        train, test = mfrec.split.per_user_split(data, test_fraction=0.2, seed=0)
        print(f"{name}: {data.n_users} users x {data.n_items} items, train nnz {train.nnz}, test nnz {test.nnz} "
              f"(per_user_split seed 0), model seeds {args.seeds}")
        for solver in ("cg", "cholesky"):
            runs = {"implicit": [], "mfrec-given": [], "mfrec-linear": []}
            for seed in args.seeds:
                imp = fit_implicit(train.matrix, c["factors"], c["regularization"], c["iterations"], solver,
                                   args.threads, seed=seed)
                runs["implicit"].append(_scores(External().fit(train, imp.user_factors, imp.item_factors), test))
                for conf in ("given", "linear"):
                    ours = ImplicitALS(**c, solver=solver, cg_steps=3, confidence=conf, num_threads=args.threads,
                                       seed=seed).fit(train)
                    runs[f"mfrec-{conf}"].append(_scores(ours, test))
            for lib, label in (("implicit", "implicit (c = alpha r)         "),
                               ("mfrec-given", "mfrec    (same objective, given)"),
                               ("mfrec-linear", "mfrec    (c = 1 + alpha r, HKV)  ")):
                a = np.array(runs[lib])
                print(f"  {solver:8s} {label} p@10 {a[0, 0]:.3f}  ndcg@10 {a[0, 1]:.3f}  (seed 0)   over seeds: "
                      f"p@10 {a[:, 0].mean():.4f} +- {a[:, 0].std():.4f}  ndcg@10 {a[:, 1].mean():.4f} +- "
                      f"{a[:, 1].std():.4f}")
                out.append((name, solver, lib, a))
            sys.stdout.flush()
        if not args.skip_tune:
            out.append((name, "tuned", tune(args, name, train, test), None))
    return out


def tune(args, name, train, test):
    """GridSearch over :data:`TUNE_GRID` on ``train`` only; the refitted best is scored on ``test``."""
    import mfrec
    from mfrec.models.implicit import ImplicitALS

    base = ImplicitALS(iterations=QUALITY_COMMON["iterations"], solver="cg", confidence="linear",
                       num_threads=args.threads, seed=0)
    t = time.perf_counter()
    search = mfrec.GridSearch(base, TUNE_GRID, metric="ndcg@10", cv=3, metrics=["precision", "ndcg"], seed=0)
    search.fit(train)
    sec = time.perf_counter() - t
    cols = list(TUNE_GRID) + ["precision@10_mean", "ndcg@10_mean", "ndcg@10_std", "rank"]
    print(f"  tuned on the training part only ({len(search.results_)} candidates x 3 folds, {sec:.0f} s):")
    print("    " + search.results_[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}")
          .replace("\n", "\n    "))
    p, nd = _scores(search.best_estimator_, test)
    print(f"  tuned    mfrec {search.best_params_}  cv ndcg@10 {search.best_score_:.4f}  "
          f"test p@10 {p:.3f}  ndcg@10 {nd:.3f}")
    # the gain is the hyperparameters', not the library's: implicit at the same values and the same objective
    # (its confidence is the stored value, so it is given 1 + alpha r and its own alpha 1)
    bp = search.best_params_
    hkv = 1.0 + bp["alpha"] * train.matrix.data.astype(np.float64)
    imp = fit_implicit(train.with_values(hkv).matrix, bp["factors"], bp["regularization"],
                       QUALITY_COMMON["iterations"], "cg", args.threads, seed=0)
    p_imp, nd_imp = _scores(_external_factor_model()().fit(train, imp.user_factors, imp.item_factors), test)
    print(f"  tuned    implicit at the same hyperparameters and objective      test p@10 {p_imp:.3f}  "
          f"ndcg@10 {nd_imp:.3f}")
    csv = os.path.relpath(os.path.join(args.tune_dir, f"{name}-train.csv"))
    os.makedirs(args.tune_dir, exist_ok=True)
    train.to_frame()[["user", "item", "value"]].to_csv(csv, index=False)
    grid = " ".join(f"{k}={','.join(map(str, v))}" for k, v in TUNE_GRID.items())
    print(f"  the same search from the command line (training part written to {csv}):\n"
          f"    mfrec tune {csv} --model implicit-als --metric ndcg@10 --cv 3 --seed 0 {grid} "
          f"iterations={QUALITY_COMMON['iterations']} solver=cg confidence=linear num_threads={args.threads}")
    sys.stdout.flush()
    return search.best_params_, search.best_score_, p, nd, p_imp, nd_imp


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
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--items", type=int, default=5_000)
    ap.add_argument("--factors", type=int, nargs="+", default=[64], help="d of --curves (quality uses 64)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-speed", action="store_true", help="accepted for old command lines; speed is not here")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--curves", action="store_true", help="loss versus seconds of the three mfrec solvers")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                    help="model initialisation seeds of the quality runs (the split is always seed 0)")
    ap.add_argument("--skip-tune", action="store_true", help="quality at the issue's hyperparameters only")
    ap.add_argument("--tune-dir", default=os.path.join(os.path.dirname(__file__), "..", "build", "bench-tune"),
                    help="where the training parts are written for the equivalent `mfrec tune` command")
    ap.add_argument("--data-dir", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    args = ap.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(args.threads))
    if args.curves:
        solver_curves(args)
    if not args.skip_quality:
        quality(args)


if __name__ == "__main__":
    main()
