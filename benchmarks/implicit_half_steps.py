"""ImplicitALS CG half-steps alone: where an iteration's time goes, each measurement in its own fresh process.

The figures of `docs/benchmarks-history.md` ("CG half-steps: long rows windowed ...") and of `docs/kernels.md`
come from this script. It times :func:`mfrec.kernels.als_implicit.half_step` on the issue's matrix
(``implicit_als.power_law_matrix``, 200k users x 50k items, 9.4M nnz; ``--small``: 20k x 5k) with random factors,
float32, confidence 2 for every stored entry:

* ``user``: the user half (items' factors fixed), ``--steps`` CG steps (0 leaves the first pass alone: the one
  that gathers every row's factors from memory);
* ``item``: the item half, long rows windowed as in a fit;
* ``item-nowindow``: the item half with every row gathered on its own (``window_row_bytes`` out of reach);
* ``item-long`` / ``item-rest``: the windowed rows alone and the rest alone (the split of ``item``).

The factor matrices are copied to start a 64-byte cache line, as the models allocate them; ``--misalign 16`` puts
them 16 bytes past one instead (where numpy's own large arrays start), the comparison of ``docs/kernels.md``.

Usage::

    python benchmarks/implicit_half_steps.py --d 128 --rounds 3
    python benchmarks/implicit_half_steps.py --d 64 --steps 0 --which user item   # first passes only
    python benchmarks/implicit_half_steps.py --which user item --misalign 16      # rows 16 bytes past a line

Each (measurement, round) runs in a new interpreter; the measurements take turns within a round. Prints one line
per run and the medians with their spread.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WHICH = ("user", "item", "item-nowindow", "item-long", "item-rest")


def placed(a, misalign: int):
    """A copy of ``a`` whose data start ``misalign`` bytes past a 64-byte cache line."""
    import numpy as np

    buf = np.empty(a.nbytes + 128, np.uint8)
    at = (-buf.ctypes.data) % 64 + misalign
    out = buf[at:at + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def child(which: str, d: int, steps: int, small: bool, reps: int, misalign: int = 0) -> list[float]:
    import numpy as np

    sys.path.insert(0, HERE)
    from implicit_als import power_law_matrix

    from mfrec.kernels import als_implicit as K
    from mfrec.kernels.threads import get_num_threads

    C = power_law_matrix(*((20_000, 5_000) if small else (200_000, 50_000)))
    C.data[:] = 2.0
    if which != "user":
        C = C.T.tocsr()  # items x users: the item half solves the rows of the transpose
    rng = np.random.default_rng(0)
    fixed = rng.random((C.shape[1], d), dtype=np.float32) * np.float32(0.1)
    start = rng.random((C.shape[0], d), dtype=np.float32) * np.float32(0.1)
    fixed = placed(fixed, misalign)
    conf, pref = C.data, np.broadcast_to(np.float32(1), (C.nnz,))
    order = K.row_order(C.indptr)
    G0 = K.gram_base(fixed, 1.0, 0.05).astype(np.float32)
    none = np.zeros(0)
    times = []
    for _ in range(reps):
        X = placed(start, misalign)
        t = time.perf_counter()
        if which in ("user", "item"):
            K.half_step(C.indptr, C.indices, conf, pref, fixed, X, c0=1.0, reg=0.05, solver="cg", cg_steps=steps,
                        order=order)
        elif which == "item-nowindow":
            K.half_step(C.indptr, C.indices, conf, pref, fixed, X, c0=1.0, reg=0.05, solver="cg", cg_steps=steps,
                        order=order, window_row_bytes=1 << 62)
        else:
            lengths = np.diff(C.indptr)[order]
            plan = K.window_plan(order, lengths, d, 4, get_num_threads())
            n_long = 0 if plan is None else plan[0]
            if which == "item-long" and plan is not None:
                window = K.WINDOW_BYTES // (d * 4)
                K.implicit_cg_windowed(C.indptr, C.indices, conf, pref, fixed, G0, 1.0, steps, plan[1], plan[2],
                                       window, get_num_threads(), X, none)
            elif which == "item-rest":
                rest = order[n_long:]
                n_single = int(np.searchsorted(-lengths[n_long:], -K.LOCKSTEP_MAX, side="left"))
                K.implicit_cg_rows(C.indptr, C.indices, conf, pref, fixed, G0, 1.0, steps, rest, n_single,
                                   get_num_threads(), X, none)
        times.append(time.perf_counter() - t)
    return times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--steps", type=int, default=3, help="CG steps (0: the first pass alone)")
    ap.add_argument("--which", nargs="+", choices=WHICH, default=list(WHICH))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=2, help="half-steps per process (the best counts)")
    ap.add_argument("--small", action="store_true", help="20k x 5k instead of 200k x 50k")
    ap.add_argument("--misalign", type=int, default=0,
                    help="bytes past a 64-byte line where the factor matrices start (0: on a line, as in a fit)")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.d, args.steps, args.small, args.reps, args.misalign)))
        return 0
    results: dict[str, list[float]] = {w: [] for w in args.which}
    for rnd in range(args.rounds):
        for which in args.which:
            cmd = [args.python, os.path.abspath(__file__), "--child", which, "--d", str(args.d), "--steps",
                   str(args.steps), "--reps", str(args.reps), "--misalign", str(args.misalign)] + \
                (["--small"] if args.small else [])
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            best = min(json.loads(out.strip().splitlines()[-1]))
            results[which].append(best)
            print(f"round {rnd + 1} load {os.getloadavg()[0]:.2f}  {which:14s} {best:.3f} s", flush=True)
    print(f"\nd = {args.d}, {args.steps} CG steps, {args.rounds} rounds (best of {args.reps} per process), factor "
          f"matrices {args.misalign} bytes past a cache line")
    for which, ts in results.items():
        ts = sorted(ts)
        print(f"  {which:14s} median {ts[len(ts) // 2]:.3f} s  ({ts[0]:.3f}-{ts[-1]:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
