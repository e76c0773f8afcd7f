"""Load benchmark of `mfrec serve` on loopback: open-loop arrivals at a fixed rate, latency percentiles.

What it does (bounded in count and time, loopback only):

1. builds a model with 50k items and 64 factors (ImplicitALS, one iteration on a random power-law matrix:
   the factor values do not matter for latency, the shapes do) and saves it;
2. starts `mfrec serve MODEL` in its own process on 127.0.0.1 and waits for /health;
3. open loop: requests arrive as a Poisson process at --rate per second for --seconds (at most --rate x
   --seconds requests), a mix of the scenarios (70% items for a user, 10% users for an item, 10% similar
   items, 10% fold-in POST); each request's latency is measured from its scheduled send time, so a
   server that falls behind is charged for the queueing (no coordinated omission);
4. closed loop: --concurrency clients send back to back for --seconds to find the throughput ceiling;
5. prints throughput, p50/p90/p99/max latency and errors per phase, as text or --json, with the machine's
   load during each phase (1-minute load average, busy share of all cores): on a shared machine other work
   competes for the same cores, and the percentiles mean little without it.

Run:  python benchmarks/serve.py [--rate 200 --seconds 15 --items 50000 --factors 64]
Needs the `serve` extra (fastapi, uvicorn) and httpx.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def build_model(path: Path, n_users: int, n_items: int, factors: int, nnz_per_user: int, seed: int,
                index: str | None = None, iterations: int = 1) -> dict:
    import mfrec

    from _matrices import power_law

    data = power_law(n_users, n_items, nnz_per_user, seed)
    model = mfrec.ImplicitALS(factors=factors, iterations=iterations, seed=seed).fit(data)
    stats = {}
    if index == "hnsw":  # built once here and saved with the model: the server reopens it without a rebuild
        model.build_index("hnsw", graphs=["recommend", "similar_items"])
        stats = model.index_["graphs"]
    model.save(path)
    return stats


def start_server(model: Path, port: int, workers: int | None = None, access_log: bool = False,
                 index: str | None = None) -> subprocess.Popen:
    """`mfrec serve` with its defaults except what is given (workers: one per core up to 4; no access log)."""
    cmd = [sys.executable, "-m", "mfrec", "serve", str(model), "--host", "127.0.0.1", "--port", str(port)]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    if access_log:
        cmd.append("--access-log")
    if index is not None:
        cmd += ["--index", index]
    env = dict(os.environ)
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


async def wait_ready(base_url: str, workers: int = 1, deadline_s: float = 120.0) -> None:
    """Until /health has answered from ``workers`` distinct worker processes (each warms up before serving;
    a fresh connection per probe lets the kernel hand it to any worker that accepts)."""
    import httpx

    seen: set[int] = set()
    start = time.perf_counter()
    while time.perf_counter() - start < deadline_s:
        try:
            async with httpx.AsyncClient(base_url=base_url, timeout=5) as probe:
                response = await probe.get("/health")
            if response.status_code == 200:
                seen.add(response.json().get("worker"))
                if len(seen) >= workers:
                    return
        except Exception:
            pass
        await asyncio.sleep(0.05 if seen else 0.2)
    raise RuntimeError(f"server did not become ready ({len(seen)} of {workers} workers answered)")


def make_request(rng: np.random.Generator, n_users: int, n_items: int):
    draw = rng.random()
    if draw < 0.7:
        return "GET", f"/users/{rng.integers(n_users)}/recommendations?k=10", None
    if draw < 0.8:
        return "GET", f"/items/{rng.integers(n_items)}/users?k=10", None
    if draw < 0.9:
        return "GET", f"/items/{rng.integers(n_items)}/similar?k=10", None
    items = [int(i) for i in rng.integers(0, n_items, size=5)]
    return "POST", "/recommendations", {"items": items, "k": 10}


class _Response:
    def __init__(self, status_code: int) -> None:
        self.status_code = status_code


class RawClient:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams: a pool of ``size`` connections.

    httpx costs about a millisecond of CPU per request, which on a 2-core machine is taken from the server
    being measured; this client parses only the status line and Content-Length.

    Like every keep-alive client (httpx, browsers), it re-sends a request once on a fresh connection when a
    *reused* connection turns out to have been closed by the server before any response byte arrived (the
    server closes connections idle for 5 s); those retries are counted in ``stale_retries``, and the latency
    of the retried request includes both attempts. Any other failure is counted by kind in ``failures``.
    """

    def __init__(self, host: str, port: int, size: int) -> None:
        self.host, self.port, self.size = host, port, size
        self._idle: asyncio.Queue = asyncio.Queue()
        self._opened = 0
        self.stale_retries = 0
        self.failures: dict[str, int] = {}

    async def _connection(self, fresh: bool = False):
        if fresh or (self._idle.empty() and self._opened < self.size):
            self._opened += 1
            reader, writer = await asyncio.open_connection(self.host, self.port)
            return reader, writer, False
        reader, writer = await self._idle.get()
        return reader, writer, True

    async def request(self, method: str, url: str, body: dict | None = None, fresh: bool = False) -> _Response:
        reader, writer, reused = await self._connection(fresh)
        answered = False
        try:
            payload = b"" if body is None else json.dumps(body).encode()
            head = f"{method} {url} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: {len(payload)}\r\n"
            if body is not None:
                head += "Content-Type: application/json\r\n"
            writer.write(head.encode() + b"\r\n" + payload)
            await writer.drain()
            status_line = await reader.readline()
            if not status_line:
                raise ConnectionResetError("connection closed before the status line")
            answered = True
            status = int(status_line.split()[1])
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
        except Exception as exc:
            writer.close()
            self._opened -= 1
            if reused and not answered and isinstance(exc, ConnectionError | asyncio.IncompleteReadError):
                self.stale_retries += 1
                return await self.request(method, url, body, fresh=True)
            self.failures[type(exc).__name__] = self.failures.get(type(exc).__name__, 0) + 1
            raise
        self._idle.put_nowait((reader, writer))
        if status != 200:
            self.failures[f"HTTP {status}"] = self.failures.get(f"HTTP {status}", 0) + 1
        return _Response(status)

    def take_counts(self) -> dict:
        """Stale-connection retries and failures since the last call (then reset)."""
        counts = {"stale_retries": self.stale_retries, "failures": dict(self.failures)}
        self.stale_retries, self.failures = 0, {}
        return counts

    async def get(self, url: str) -> _Response:
        return await self.request("GET", url)

    async def aclose(self) -> None:
        while not self._idle.empty():
            _, writer = self._idle.get_nowait()
            writer.close()


async def send(client, method, url, body):
    if method == "GET":
        return await client.get(url)
    if isinstance(client, RawClient):
        return await client.request("POST", url, body)
    return await client.post(url, json=body)


async def open_loop(client, rate: float, seconds: float, n_users: int, n_items: int, seed: int, max_inflight: int):
    rng = np.random.default_rng(seed)
    n = int(rate * seconds)
    arrivals = np.cumsum(rng.exponential(1.0 / rate, size=n))
    latencies = np.full(n, np.nan)
    errors = 0
    slots = asyncio.Semaphore(max_inflight)  # requests beyond this wait here; their wait counts in the latency
    start = time.perf_counter()

    async def one(j: int) -> None:
        nonlocal errors
        method, url, body = make_request(np.random.default_rng(seed * 100003 + j), n_users, n_items)
        async with slots:
            try:
                response = await send(client, method, url, body)
                if response.status_code != 200:
                    errors += 1
            except Exception:
                errors += 1
        latencies[j] = time.perf_counter() - (start + arrivals[j])  # from the scheduled time

    tasks = []
    for j in range(n):  # the dispatcher creates each request at its arrival time (open loop)
        delay = start + arrivals[j] - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(j)))
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - start
    return latencies, errors, wall


async def closed_loop(client, concurrency: int, seconds: float, n_users: int, n_items: int, seed: int):
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        nonlocal errors
        rng = np.random.default_rng(seed + w)
        while time.perf_counter() < stop:
            method, url, body = make_request(rng, n_users, n_items)
            t0 = time.perf_counter()
            try:
                response = await send(client, method, url, body)
                errors += response.status_code != 200
            except Exception:
                errors += 1
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return np.array(latencies), errors, time.perf_counter() - start


def machine_sample() -> tuple[float, float] | None:
    """(busy, total) CPU jiffies of the whole machine from /proc/stat (None off Linux)."""
    try:
        with open("/proc/stat") as f:
            fields = [float(x) for x in f.readline().split()[1:]]
    except OSError:
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def machine_load(before: tuple[float, float] | None) -> dict:
    """What else the machine was doing during a phase: the 1-minute load average at its end and the busy share
    of all cores over the phase (server, generator *and* anything else running; 100% = every core busy)."""
    after = machine_sample()
    out = {"load_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None, "cpu_busy_pct": None}
    if before is not None and after is not None and after[1] > before[1]:
        out["cpu_busy_pct"] = round(100 * (after[0] - before[0]) / (after[1] - before[1]), 1)
    return out


def summarize(name: str, latencies: np.ndarray, errors: int, wall: float) -> dict:
    ms = latencies[np.isfinite(latencies)] * 1000
    return {
        "phase": name,
        "requests": int(len(latencies)),
        "errors": int(errors),
        "throughput_rps": round(len(latencies) / wall, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p90_ms": round(float(np.percentile(ms, 90)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
    }


async def run(args) -> dict:

    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "serve-bench.mfrec"
        t0 = time.perf_counter()
        index_stats = build_model(model, args.users, args.items, args.factors, args.nnz_per_user, args.seed,
                                  args.index, args.iterations)
        build_s = time.perf_counter() - t0
        server = start_server(model, args.port, args.workers, args.access_log, args.index)
        from mfrec.serve import default_workers

        workers = args.workers or default_workers()
        try:
            start_wait = time.perf_counter()
            await wait_ready(f"http://127.0.0.1:{args.port}", workers)
            ready_s = time.perf_counter() - start_wait
            client = RawClient("127.0.0.1", args.port, args.max_connections)
            try:
                # warm-up: a few requests of each kind (the server JIT-warms at start; this warms connections)
                await closed_loop(client, 2, 1.0, args.users, args.items, args.seed + 999)
                client.take_counts()
                sample = machine_sample()
                results = [
                    summarize(f"open loop {args.rate:g}/s", *await open_loop(
                        client, args.rate, args.seconds, args.users, args.items, args.seed, args.max_connections))
                    | client.take_counts() | machine_load(sample),
                ]
                sample = machine_sample()
                results.append(
                    summarize(f"closed loop x{args.concurrency}", *await closed_loop(
                        client, args.concurrency, args.seconds, args.users, args.items, args.seed))
                    | client.take_counts() | machine_load(sample))
            finally:
                await client.aclose()
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
    import mfrec

    return {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
        "python": platform.python_version(),
        "mfrec": mfrec.__version__,
        "model": {"users": args.users, "items": args.items, "factors": args.factors, "build_seconds": round(build_s, 1),
                  "index": args.index or "exact", "index_graphs": index_stats,
                  "server_ready_seconds": round(ready_s, 1), "workers": workers},
        "results": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--nnz-per-user", type=int, default=20)
    parser.add_argument("--rate", type=float, default=200.0, help="open-loop arrivals per second")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each phase (bounded)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-connections", type=int, default=16, help="requests in flight at most")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--workers", type=int, default=None, help="`mfrec serve --workers` (default: its own)")
    parser.add_argument("--access-log", action="store_true", help="`mfrec serve --access-log`")
    parser.add_argument("--index", choices=["exact", "hnsw"], default=None,
                        help="hnsw: build the recommend and similar-items graphs into the model file, serve --index hnsw")
    parser.add_argument("--iterations", type=int, default=1, help="ALS iterations of the benchmark model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.seconds > 120 or args.rate * args.seconds > 50_000:
        parser.error("keep the run bounded: --seconds <= 120 and rate x seconds <= 50000")
    report = asyncio.run(run(args))
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"machine: {report['machine']}; python {report['python']}; mfrec {report['mfrec']}")
    m = report["model"]
    print(f"model: ImplicitALS, {m['users']:,} users x {m['items']:,} items, {m['factors']} factors; "
          f"index {m['index']} {m['index_graphs'] or ''}; {m['workers']} workers ready in {m['server_ready_seconds']} s")
    print(f"{'phase':<22} {'requests':>8} {'errors':>6} {'req/s':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
          f"{'max ms':>8} {'stale':>5} {'load':>5} {'busy%':>5}  failures")
    for r in report["results"]:
        print(f"{r['phase']:<22} {r['requests']:>8} {r['errors']:>6} {r['throughput_rps']:>8} {r['p50_ms']:>8} "
              f"{r['p90_ms']:>8} {r['p99_ms']:>8} {r['max_ms']:>8} {r['stale_retries']:>5} {r['load_1min']!s:>5} "
              f"{r['cpu_busy_pct']!s:>5}  {r['failures'] or ''}")
    print("load: 1-minute load average at the end of the phase; busy%: share of all cores busy during it "
          "(anything above what this benchmark itself uses is other work competing for the cores)")


if __name__ == "__main__":
    main()
