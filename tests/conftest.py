"""Shared fixtures: where the real datasets live (../shared/data beside the checkout)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MFREC_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_dataset(name: str) -> Path:
    """Path of ../shared/data/NAME, or skip the test with a clear reason when it is absent."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"dataset {name!r} not found at {path} (tests read real data from ../shared/data)")
    return path


@pytest.fixture
def shared_data_dir() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent (tests read real data from ../shared/data)")
    return SHARED_DATA


def ml100k_fold(k: int):
    """(train, test) Interactions of the canonical MovieLens-100K fold u{k}.base / u{k}.test (skips when absent)."""
    from mfrec import read_interactions

    data = shared_dataset("ml-100k")
    names = ["user", "item", "rating", "timestamp"]
    return tuple(read_interactions(data / f"u{k}.{part}", names=names, header=False) for part in ("base", "test"))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(app, **config):
    """``app`` served by uvicorn in a thread on loopback (``config``: more ``uvicorn.Config`` options); yields the
    base URL, and stops the server on exit."""
    import threading
    import time

    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        assert time.time() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def client():
    """A 2-process dask ``LocalCluster`` (one thread each) and its client, per test module that asks for it."""
    import warnings

    distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed "
                                                            "(pip install 'mfrec[distributed]')")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None)
    c = distributed.Client(cluster)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


def worker_killer(client, at_iteration: int | None = 1):
    """An ``on_iteration`` callback that kills the first dask worker process (addresses sorted) after iteration
    ``at_iteration`` (None: after every iteration); its nanny starts a new, empty one. The callback's ``killed``
    lists the victims."""

    def kill(it, model) -> None:
        if at_iteration is not None and it != at_iteration:
            return
        victim = sorted(client.scheduler_info(n_workers=-1)["workers"])[0]
        kill.killed.append(victim)
        try:  # the worker process exits at once
            client.run(os._exit, 1, workers=[victim])
        except Exception:  # noqa: BLE001 - the connection to the dying worker closes under us
            pass

    kill.killed = []
    return kill
