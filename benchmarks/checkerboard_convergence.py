"""Convergence per iteration on implicit's checkerboard test: mfrec's ImplicitALS against implicit's ALS.

The matrix is the one of implicit's own recommender tests (``get_checker_board(50)``): even users liked every
even item, odd users every odd item, the diagonal withheld. Both libraries fit it with the same settings
(factors, regularization, confidence ``1 + alpha`` on the observed cells and 1 elsewhere, CG or Cholesky,
float64, one thread) and after every iteration the same objective is computed here from their factors, densely
in numpy:

    L = sum_{u,i} c_ui (p_ui - x_u . y_i)^2 + lambda (||X||^2 + ||Y||^2)

Each library runs in its own fresh process (``--worker mfrec|implicit``), seeds alternating; the table gives the
median loss over the seeds at iterations 1, 2, 5, 10, 15, 30, 50, 100, and, for mfrec, how many iterations it
needs to reach the loss implicit has after 15.

Usage::

    python benchmarks/checkerboard_convergence.py --implicit-python /path/to/venv-with-implicit/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np
import scipy.sparse as sp

AT = [1, 2, 5, 10, 15, 30, 50, 100]
SETTINGS = [  # factors, regularization, alpha
    (8, 0.05, 0.0), (64, 0.05, 0.0), (32, 0.05, 1.0), (32, 20.0, 0.1),
]


def checker_board(n: int = 50) -> sp.csr_matrix:
    dense = np.zeros((n, n))
    for i in range(n):
        dense[i, i % 2::2] = 1.0
    return sp.csr_matrix(dense - np.eye(n))


def objective(U, V, P, C, reg) -> float:
    return float((C * (P - U @ V.T) ** 2).sum() + reg * ((U**2).sum() + (V**2).sum()))


def worker(library: str, factors: int, reg: float, alpha: float, seed: int, solver: str, iterations: int) -> list:
    board = checker_board()
    P = board.toarray()
    C = 1.0 + alpha * P
    losses = []
    if library == "mfrec":
        import mfrec

        # one fit of `iterations`, the factors after each iteration taken from the callback
        def record(iteration, seconds, entry):
            losses.append(objective(model.user_factors_, model.item_factors_, P, C, reg))

        model = mfrec.ImplicitALS(factors=factors, regularization=reg, alpha=alpha, iterations=iterations, seed=seed,
                                  solver=solver, cg_steps=3, dtype="float64", num_threads=1)
        model.fit(board, callback=record, show_progress=False)
    else:
        from implicit.cpu.als import AlternatingLeastSquares

        model = AlternatingLeastSquares(factors=factors, regularization=reg, iterations=1, random_state=seed,
                                        use_cg=solver == "cg", dtype=np.float64, num_threads=1)
        for _ in range(iterations):  # implicit keeps its factors between fits: one more iteration each
            model.fit(board * (1.0 + alpha), show_progress=False)
            losses.append(objective(model.user_factors, model.item_factors, P, C, reg))
    return losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--implicit-python", required="--worker" not in sys.argv,
                        help="a Python with implicit installed (the bench extra)")
    parser.add_argument("--mfrec-python", default=sys.executable)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--solver", default="cg", choices=["cg", "cholesky"])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--args", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, *json.loads(args.args))))
        return
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    print(f"checkerboard 50 x 50, solver {args.solver}, float64, 1 thread, median over {args.seeds} seeds")
    print(f"{'factors':>7} {'lambda':>6} {'alpha':>5}  {'library':8} " + " ".join(f"{a:>8}" for a in AT)
          + "   iterations to implicit's 15")
    for factors, reg, alpha in SETTINGS:
        curves: dict[str, list] = {"mfrec": [], "implicit": []}
        for seed in range(args.seeds):
            order = ("mfrec", "implicit") if seed % 2 == 0 else ("implicit", "mfrec")
            for library in order:
                python = args.mfrec_python if library == "mfrec" else args.implicit_python
                cmd = [python, __file__, "--worker", library, "--args",
                       json.dumps([factors, reg, alpha, seed, args.solver, max(AT)])]
                curves[library].append(json.loads(subprocess.run(cmd, capture_output=True, text=True, env=env,
                                                                 check=True).stdout))
        target = np.median([c[14] for c in curves["implicit"]])
        for library, runs in curves.items():
            med = np.median(np.array(runs), axis=0)
            reach = ""
            if library == "mfrec":
                hit = np.nonzero(med <= target * (1 + 1e-6))[0]
                reach = f"{hit[0] + 1}" if len(hit) else f"> {max(AT)}"
            print(f"{factors:>7} {reg:>6} {alpha:>5}  {library:8} " + " ".join(f"{med[a - 1]:8.2f}" for a in AT)
                  + f"   {reach}")


if __name__ == "__main__":
    main()
