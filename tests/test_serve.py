"""The HTTP service, driven with a real HTTP client against a real uvicorn on loopback."""

from __future__ import annotations

import json
import threading
import time

import httpx
import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from conftest import free_port, running_server  # noqa: E402
from mfrec import Interactions  # noqa: E402
from mfrec.models.implicit import ImplicitALS  # noqa: E402
from mfrec.serve import ModelHolder, create_app  # noqa: E402

ADMIN_TOKEN = "test-admin-token-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _data(n_users=40, n_items=30, seed=0, item_prefix="i"):
    rng = np.random.default_rng(seed)
    rows = [(u, f"{item_prefix}{i}", 1.0 + rng.integers(0, 4)) for u in range(n_users) for i in range(n_items)
            if rng.random() < 0.25]
    return Interactions.from_frame(pd.DataFrame(rows, columns=["user", "item", "v"]), value="v")


@pytest.fixture(scope="module", params=[False, True], ids=["thread-pool", "inline"])
def server(tmp_path_factory, request):
    path = tmp_path_factory.mktemp("serve") / "model.mfrec"
    model = ImplicitALS(factors=4, iterations=3, seed=0).fit(_data())
    model.save(path, extra={"item_titles": {"ids": ["i1", "i2"], "titles": ["One", "Two"]}})
    app = create_app(path, max_k=50, max_body_bytes=4096, inline=request.param, admin_token=ADMIN_TOKEN)
    with running_server(app, lifespan="off") as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client, path, model


def test_health_model_and_openapi(server):
    client, _, _ = server
    assert client.get("/health").json()["status"] == "ok"
    manifest = client.get("/model").json()
    assert manifest["model_class"] == "ImplicitALS" and manifest["params"]["factors"] == 4
    assert "item_titles" not in manifest["extra"]
    schema = client.get("/openapi.json").json()
    for route in ("/users/{user}/recommendations", "/items/{item}/users", "/items/{item}/similar",
                  "/users/{user}/similar", "/recommendations", "/health", "/model"):
        assert route in schema["paths"]


def test_scenarios_match_the_library(server):
    client, _, model = server
    body = client.get("/users/3/recommendations", params={"k": 5}).json()
    expected = model.recommend(3, k=5)
    assert [r["item"] for r in body["items"]] == expected["item"].tolist()
    assert np.allclose([r["score"] for r in body["items"]], expected["score"], atol=1e-5)
    seen = set(model.interactions_.item_ids[model.interactions_.matrix[model.interactions_.user_index(3)].indices])
    assert not seen & {r["item"] for r in body["items"]}
    assert client.get("/items/i1/users", params={"k": 3}).json()["title"] == "One"
    similar = client.get("/items/i2/similar", params={"k": 4}).json()
    assert len(similar["items"]) == 4 and "i2" not in [r["item"] for r in similar["items"]]
    assert len(client.get("/users/5/similar", params={"k": 2}).json()["users"]) == 2
    fold = client.post("/recommendations", json={"items": ["i1", "i2", "i3"], "k": 5}).json()
    assert len(fold["items"]) == 5 and not {"i1", "i2", "i3"} & {r["item"] for r in fold["items"]}


def test_error_codes(server):
    client, _, _ = server
    assert client.get("/users/999/recommendations").status_code == 404
    assert client.get("/users/notanint/recommendations").status_code == 404
    assert "unknown" in client.get("/items/nope/similar").json()["detail"]
    assert client.get("/users/3/recommendations", params={"k": 0}).status_code == 422
    assert client.get("/users/3/recommendations", params={"k": 10**9}).status_code == 422
    assert client.get("/users/3/recommendations", params={"k": "many"}).status_code == 422
    assert client.post("/recommendations", content=b"{not json", headers={"content-type": "application/json"}).status_code == 422
    assert client.post("/recommendations", json={"items": []}).status_code == 422
    assert client.post("/recommendations", json={"items": ["zzz"]}).status_code == 404
    assert client.post("/recommendations", json={"items": ["i1"], "values": [1, 2]}).status_code == 422
    huge = json.dumps({"items": ["i1"] * 5000})
    assert client.post("/recommendations", content=huge, headers={"content-type": "application/json"}).status_code == 413


def test_survives_a_burst_of_malformed_requests(server):
    client, _, _ = server
    codes = []
    for j in range(60):
        kind = j % 4
        if kind == 0:
            r = client.post("/recommendations", content=b"\x00\xff" * (j + 1), headers={"content-type": "application/json"})
        elif kind == 1:
            r = client.get(f"/users/{10**6 + j}/recommendations")
        elif kind == 2:
            r = client.get("/items/i1/similar", params={"k": -j})
        else:
            r = client.post("/recommendations", content=b"x" * 10000, headers={"content-type": "application/json"})
        codes.append(r.status_code)
    assert set(codes) <= {404, 413, 422}
    start = time.perf_counter()
    assert client.get("/users/3/recommendations").status_code == 200
    assert time.perf_counter() - start < 2.0


def test_reload_swaps_the_model_atomically(server):
    client, path, _ = server
    before = client.get("/model").json()["params"]["factors"]
    ImplicitALS(factors=6, iterations=2, seed=1).fit(_data(seed=1)).save(path)
    assert client.post("/admin/reload", headers=ADMIN).json()["status"] == "reloaded"
    assert client.get("/model").json()["params"]["factors"] == 6 != before
    path.write_bytes(b"garbage")  # a broken file: the old model keeps serving
    response = client.post("/admin/reload", headers=ADMIN)
    assert response.status_code == 500 and "old model kept" in response.json()["detail"]
    assert client.get("/users/3/recommendations").status_code == 200


def test_holder_follows_the_file_and_keeps_the_old_model_on_a_broken_one(tmp_path, caplog):
    path = tmp_path / "m.mfrec"
    ImplicitALS(factors=3, iterations=2, seed=0).fit(_data()).save(path)
    holder = ModelHolder(path)
    assert holder.reload_if_changed() is False  # unchanged file: nothing to do
    ImplicitALS(factors=5, iterations=2, seed=1).fit(_data(seed=1)).save(path)
    assert holder.reload_if_changed() is True
    assert holder.state[0].factors == 5
    path.write_bytes(b"not a model")
    with caplog.at_level("ERROR", logger="mfrec.serve"):
        assert holder.reload_if_changed() is False
    assert holder.state[0].factors == 5 and "old model kept" in caplog.text
    assert holder.reload_if_changed() is False  # the broken file is not retried until it changes again


def _health_by_worker(base_url: str, want: int, deadline_s: float, digest: str | None = None) -> dict[int, str]:
    """Fresh connections until ``want`` workers answered /health (with ``digest``, if given)."""
    seen: dict[int, str] = {}
    deadline = time.time() + deadline_s
    while time.time() < deadline:
        try:
            body = httpx.get(f"{base_url}/health", timeout=5).json()
            seen[body["worker"]] = body["model_digest"]
        except httpx.HTTPError:
            pass
        done = [w for w, d in seen.items() if digest is None or d == digest]
        if len(done) >= want:
            return seen
        time.sleep(0.02)
    raise AssertionError(f"workers seen: {seen}")


def test_several_workers_share_the_port_and_follow_the_model_file(tmp_path):
    """`mfrec serve --workers 2`: both processes answer; a new file is swapped in by both without errors."""
    import subprocess
    import sys

    from mfrec.persist import load
    from mfrec.serve import model_digest

    path = tmp_path / "m.mfrec"
    ImplicitALS(factors=3, iterations=2, seed=0).fit(_data()).save(path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mfrec", "serve", str(path), "--port", str(port), "--workers", "2", "--watch", "0.2",
         "--no-access-log"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        first = _health_by_worker(base, 2, deadline_s=90)
        assert len(set(first.values())) == 1
        errors: list[int] = []
        stop = threading.Event()

        def hammer() -> None:
            while not stop.is_set():  # a fresh connection per request: any worker may answer
                try:
                    status = httpx.get(f"{base}/users/3/recommendations", timeout=10).status_code
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))
                    continue
                if status != 200:
                    errors.append(status)

        thread = threading.Thread(target=hammer, daemon=True)
        thread.start()
        ImplicitALS(factors=5, iterations=2, seed=1).fit(_data(seed=1)).save(path)
        digest = model_digest(load(path).manifest_)
        assert digest not in first.values()
        after = _health_by_worker(base, 2, deadline_s=30, digest=digest)
        stop.set()
        thread.join(timeout=10)
        assert sum(d == digest for d in after.values()) >= 2 and not errors
        assert httpx.get(f"{base}/model", timeout=5).json()["params"]["factors"] == 5
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_serve_refuses_a_bad_worker_count_and_a_bad_file_once(tmp_path):
    from mfrec.exceptions import MfrecError, ModelFileError
    from mfrec.serve import serve

    with pytest.raises(MfrecError, match="workers"):
        serve(tmp_path / "x.mfrec", workers=0)
    bad = tmp_path / "bad.mfrec"
    bad.write_bytes(b"garbage")
    with pytest.raises(ModelFileError, match="bad.mfrec"):
        serve(bad, workers=2)
