"""First use: what a newcomer waits for, measured as whole processes of an installed mfrec.

Usage::

    python benchmarks/first_use.py --python .venv/bin/python                 # steps, demo, serve; 3 runs each
    python benchmarks/first_use.py --python OLD/bin/python --python NEW/bin/python --runs 3
    python benchmarks/first_use.py --python .venv/bin/python --only steps --cold

Each measurement is a fresh process of the environment given by ``--python`` (alternating between
environments), and reports CPU seconds (user + system of the process and its children) and wall seconds:

* ``steps``: the first steps of README's tour on the offline synthetic data: import mfrec, ``ImplicitALS()`` fit,
  recommend, fold-in (``recommend_new_user``) and evaluate, then ``ExplicitALS()`` fit and recommend;
* ``demo``: ``mfrec demo`` (the README's main command) into a temporary folder;
* ``serve``: ``mfrec serve`` on a saved model, from the start of the process until ``/health`` answers
  ("ready"), then the first ``POST /recommendations`` (a fold-in) and the first recommendation GET, each in ms.
  ``--read-only`` makes the installed package folder read-only for the serve runs (a container image, system
  site-packages) and runs it twice: the second start is what a read-only install pays every time.

``--cold`` points numba's cache at a new empty folder for every process (``NUMBA_CACHE_DIR``), which is what a
fresh install of a numba build meets; the compiled extension has nothing to compile and ignores it.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time

STEPS = r"""
import time
t0 = time.perf_counter()
import mfrec
from mfrec import datasets, split
data = datasets.synthetic(seed=0)
train, test = split.per_user_split(data.interactions, test_fraction=0.2, seed=0)
model = mfrec.ImplicitALS().fit(train)
user = train.user_index_map[0]
model.recommend(user, k=10)
model.recommend_new_user(list(train.item_index_map[:5]), k=10)
mfrec.evaluate(model, test, k=10)
explicit = mfrec.ExplicitALS().fit(train)
explicit.recommend(user, k=10)
print("steps-wall", time.perf_counter() - t0)
"""


def _run(cmd, env, cwd=None, timeout=900):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    res = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if res.returncode:
        raise RuntimeError(f"{cmd} failed ({res.returncode}):\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}")
    return cpu, wall, res.stdout


def _env(cold: bool) -> dict:
    env = dict(os.environ)
    if cold:
        env["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="mfrec-cold-numba-")
    return env


def measure_steps(py: str, cold: bool) -> dict:
    cpu, wall, _ = _run([py, "-c", STEPS], _env(cold))
    return {"steps cpu s": cpu, "steps wall s": wall}


def measure_demo(py: str, cold: bool) -> dict:
    mfrec = os.path.join(os.path.dirname(py), "mfrec")
    with tempfile.TemporaryDirectory() as tmp:
        cpu, wall, _ = _run([mfrec, "demo"], _env(cold), cwd=tmp)
    return {"demo cpu s": cpu, "demo wall s": wall}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(port, method, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    t = time.perf_counter()
    conn.request(method, path, body=None if body is None else json.dumps(body),
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    ms = (time.perf_counter() - t) * 1000
    conn.close()
    if resp.status != 200:
        raise RuntimeError(f"{method} {path}: {resp.status} {data[:300]!r}")
    return ms, json.loads(data)


def measure_serve(py: str, cold: bool, model: tuple, read_only_starts: int = 1) -> list[dict]:
    model_path, ids = model
    mfrec = os.path.join(os.path.dirname(py), "mfrec")
    out = []
    for _ in range(read_only_starts):
        port = _free_port()
        t0 = time.perf_counter()
        proc = subprocess.Popen([mfrec, "serve", model_path, "--port", str(port), "--no-access-log"],
                                env=_env(cold), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = t0 + 300
            while True:
                try:
                    _request(port, "GET", "/health")
                    break
                except (ConnectionError, OSError, RuntimeError):
                    if proc.poll() is not None:
                        raise RuntimeError(f"serve exited: {proc.stderr.read()[-2000:]}")
                    if time.perf_counter() > deadline:
                        raise RuntimeError("serve was not ready in 300 s")
                    time.sleep(0.02)
            ready = time.perf_counter() - t0
            fold_ms, _ = _request(port, "POST", "/recommendations", {"items": ids["items"], "k": 10})
            get_ms, _ = _request(port, "GET", f"/users/{ids['user']}/recommendations?k=10")
            out.append({"serve ready s": ready, "serve first fold-in ms": fold_ms, "serve first GET ms": get_ms})
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--python", action="append", help="an environment's interpreter (repeat)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", nargs="+", default=["steps", "demo", "serve"], choices=["steps", "demo", "serve"])
    ap.add_argument("--cold", action="store_true", help="an empty numba cache for every process")
    ap.add_argument("--read-only", action="store_true", help="serve from a read-only package folder, started twice")
    args = ap.parse_args()
    pythons = args.python or [sys.executable]
    results: dict[str, dict[str, list[float]]] = {p: {} for p in pythons}
    model_dir = tempfile.mkdtemp(prefix="mfrec-first-use-")
    models = {}
    if "serve" in args.only:
        for py in pythons:  # a model file per environment (synthetic data: ids 1..n)
            path = os.path.join(model_dir, f"model-{len(models)}.mfrec")
            _, _, printed = _run([py, "-c", "import json, mfrec; from mfrec import datasets; "
                                  "inter = datasets.synthetic(seed=0).interactions; "
                                  f"mfrec.ImplicitALS(iterations=3).fit(inter).save({path!r}); "
                                  "print(json.dumps({'items': [str(i) for i in inter.item_index_map[:3]], "
                                  "'user': str(inter.user_index_map[0])}))"], _env(False))
            models[py] = (path, json.loads(printed.strip().splitlines()[-1]))
    for rnd in range(args.runs):
        for py in pythons:
            values: dict[str, float] = {}
            if "steps" in args.only:
                values.update(measure_steps(py, args.cold))
            if "demo" in args.only:
                values.update(measure_demo(py, args.cold))
            if "serve" in args.only:
                pkg = None
                if args.read_only:
                    pkg = subprocess.run([py, "-c", "import mfrec, os; print(os.path.dirname(mfrec.__file__))"],
                                         capture_output=True, text=True).stdout.strip()
                    subprocess.run(["chmod", "-R", "a-w", pkg], check=True)
                try:
                    starts = measure_serve(py, args.cold, models[py], 2 if args.read_only else 1)
                finally:
                    if pkg:
                        subprocess.run(["chmod", "-R", "u+w", pkg], check=True)
                for i, s in enumerate(starts):
                    values.update({(k if i == 0 else f"{k} (2nd start)"): v for k, v in s.items()})
            for k, v in values.items():
                results[py].setdefault(k, []).append(v)
            print(f"run {rnd + 1} {py}: " + ", ".join(f"{k} {v:.2f}" for k, v in values.items()), flush=True)
    shutil.rmtree(model_dir, ignore_errors=True)
    import statistics

    print("\nmedians (min-max)")
    for py in pythons:
        print(py)
        for k, vals in results[py].items():
            print(f"  {k:<34} {statistics.median(vals):8.2f} ({min(vals):.2f}-{max(vals):.2f})")


if __name__ == "__main__":
    main()
