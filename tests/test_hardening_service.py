"""The service against careless and hostile input (issue "Hardening", defects 2, 7, 18 and 19).

A real uvicorn on loopback for the HTTP cases; the file watcher through :class:`ModelHolder` and the ``_watch``
task itself. Every response body must be strict JSON (no NaN / Infinity) and no body may name a folder.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from conftest import running_server  # noqa: E402
from mfrec import Interactions, persist  # noqa: E402
from mfrec.models.implicit import ImplicitALS  # noqa: E402
from mfrec import serve as mserve  # noqa: E402
from mfrec.serve import ModelHolder, create_app  # noqa: E402

ADMIN_TOKEN = "test-admin-token-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _data(n_users=40, n_items=30, seed=0):
    rng = np.random.default_rng(seed)
    rows = [(u, f"i{i}", 1.0 + rng.integers(0, 4)) for u in range(n_users) for i in range(n_items)
            if rng.random() < 0.25]
    return Interactions.from_frame(pd.DataFrame(rows, columns=["user", "item", "v"]), value="v")


def _strict_json(text: str):
    def refuse(name):
        raise AssertionError(f"invalid JSON constant {name} in a response")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("deep") / "folder"
    folder.mkdir()
    path = folder / "model.mfrec"
    model = ImplicitALS(factors=4, iterations=3, seed=0).fit(_data())
    model.save(path, extra={"dataset": "/home/someone/private/train.csv"})  # as files saved before 0.2 did
    app = create_app(path, max_k=50, max_body_bytes=1 << 16, admin_token=ADMIN_TOKEN)
    with running_server(app, lifespan="off") as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client, path, model


# ------------------------------------------------------------------------------------- defect 18: strict ids
@pytest.mark.parametrize("raw", ["1_0", "+1", "%201%20", "01", "1.0", "\uff11", "\u0661", "0x1", "1e0", " 1"])
def test_integer_ids_are_parsed_exactly(server, raw):
    client, _, _ = server
    r = client.get(f"/users/{raw}/recommendations")
    assert r.status_code == 404, (raw, r.status_code, r.text)
    assert client.get("/users/1/recommendations").status_code == 200
    assert client.get("/users/10/recommendations").json()["user"] == 10


def test_ids_in_a_fold_in_body_are_parsed_the_same_way(server):
    client, _, _ = server
    assert client.post("/recommendations", json={"items": ["i1", "i2"]}).status_code == 200


# ------------------------------------------------------------------------------------- defect 7: strict JSON
@pytest.mark.parametrize("value", [1e300, -1e300, 1e7])
def test_fold_in_values_are_bounded(server, value):
    client, _, _ = server
    r = client.post("/recommendations", json={"items": ["i1"], "values": [value]})
    assert r.status_code == 422 and "1e+06" in r.text
    _strict_json(r.text)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_non_finite_scores_are_an_error_not_invalid_json(tmp_path):
    model = ImplicitALS(factors=4, iterations=2, seed=0).fit(_data())
    model.item_factors_ = np.full_like(model.item_factors_, 1e30)  # finite, but its products overflow float32
    model.user_factors_ = np.full_like(model.user_factors_, 1e30)
    path = tmp_path / "huge.mfrec"
    model.save(path)
    from fastapi.testclient import TestClient

    with TestClient(create_app(path, fast_routes=False)) as client:
        for url in ("/users/1/recommendations", "/items/i1/users", "/users/1/similar"):
            r = client.get(url)
            assert r.status_code in (200, 500), url
            _strict_json(r.text)
            if r.status_code == 500:
                assert "non-finite scores" in r.json()["detail"]


# ------------------------------------------------------------------------------------- defect 19: no paths
def test_no_absolute_path_in_the_model_description(server):
    client, _, _ = server
    body = client.get("/model").text
    assert "/home/" not in body and "train.csv" in body


def test_a_failed_reload_names_the_file_not_its_folder(server):
    client, path, model = server
    good = path.read_bytes()
    try:
        path.write_bytes(good[: len(good) // 2])
        r = client.post("/admin/reload", headers=ADMIN)
        assert r.status_code == 500 and "old model kept" in r.json()["detail"]
        assert str(path.parent) not in r.text and "model.mfrec" in r.text
        assert client.get("/users/1/recommendations").status_code == 200  # still serving
    finally:
        path.write_bytes(good)
        assert client.post("/admin/reload", headers=ADMIN).status_code == 200


# ------------------------------------------------------------------------------------- defect 2: the watcher
def _save(model, path):
    persist.save(model, path)
    return path


def test_the_watcher_survives_a_file_that_fails_its_warm_up(tmp_path, monkeypatch, caplog):
    data = _data()
    path = _save(ImplicitALS(factors=4, iterations=2, seed=0).fit(data), tmp_path / "m.mfrec")
    holder = ModelHolder(path)
    first = holder.state[0]

    real = mserve.warm_up

    def broken(model):
        if getattr(model, "seed", None) == 1:
            raise IndexError("index 10 is out of bounds for axis 0 with size 10")
        real(model)

    monkeypatch.setattr(mserve, "warm_up", broken)
    time.sleep(0.01)
    _save(ImplicitALS(factors=4, iterations=2, seed=1).fit(data), path)  # passes its checks, fails warm-up
    with caplog.at_level(logging.ERROR, logger="mfrec.serve"):
        assert holder.reload_if_changed() is False
    assert holder.state[0] is first
    assert "IndexError" in caplog.text and str(tmp_path) not in caplog.text
    time.sleep(0.01)
    _save(ImplicitALS(factors=4, iterations=2, seed=2).fit(data), path)  # a later good file is picked up
    assert holder.reload_if_changed() is True and holder.state[0].seed == 2


def test_the_watcher_survives_a_file_whose_shapes_disagree(tmp_path):
    data = _data()
    path = _save(ImplicitALS(factors=4, iterations=2, seed=0).fit(data), tmp_path / "m.mfrec")
    holder = ModelHolder(path)
    bad = ImplicitALS(factors=4, iterations=2, seed=1).fit(data)
    bad.user_factors_ = bad.user_factors_[:10]
    path2 = tmp_path / "other.mfrec"
    with pytest.raises(Exception):
        persist.save(bad, path2)  # refused at save now; forge the file the way a careless script would
    good = _save(ImplicitALS(factors=4, iterations=2, seed=1).fit(data), path2)
    manifest_parts = _forge_rows(good, n_rows=10)
    time.sleep(0.01)
    path.write_bytes(manifest_parts)
    assert holder.reload_if_changed() is False
    time.sleep(0.01)
    _save(ImplicitALS(factors=4, iterations=2, seed=3).fit(data), path)
    assert holder.reload_if_changed() is True and holder.state[0].seed == 3


def _forge_rows(path, n_rows):
    """The bytes of ``path`` with user_factors_ cut to ``n_rows`` rows, digests and checksum recomputed."""
    import hashlib
    import io
    import zipfile

    with zipfile.ZipFile(path) as zf:
        items = {n: zf.read(n) for n in zf.namelist()}
    manifest = json.loads(items.pop("manifest.json"))
    arr = np.lib.format.read_array(io.BytesIO(items["arrays/user_factors_.npy"]))[:n_rows]
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(arr))
    items["arrays/user_factors_.npy"] = buf.getvalue()
    manifest["arrays"]["user_factors_"].update(shape=list(arr.shape), nbytes=int(arr.nbytes),
                                               sha256=hashlib.sha256(buf.getvalue()).hexdigest())
    manifest["checksum"] = persist.manifest_checksum(manifest)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("manifest.json", json.dumps(manifest))
        for n, b in items.items():
            zf.writestr(n, b)
    return out.getvalue()


def test_the_watch_task_keeps_running_when_a_check_raises(tmp_path, caplog):
    data = _data()
    path = _save(ImplicitALS(factors=4, iterations=2, seed=0).fit(data), tmp_path / "m.mfrec")
    holder = ModelHolder(path)
    calls = {"n": 0}

    def flaky():
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("the disk went away for a moment")
        return None

    holder.file_signature = flaky  # type: ignore[method-assign]

    async def run():
        task = asyncio.create_task(mserve._watch(holder, 0.01))
        await asyncio.sleep(0.1)
        alive = not task.done()
        task.cancel()
        return alive

    with caplog.at_level(logging.ERROR, logger="mfrec.serve"):
        assert asyncio.run(run())
    assert calls["n"] >= 2 and "still watching" in caplog.text


# ------------------------------------------------------------------------------------- generated requests
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_segment = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/?#%"), min_size=1,
                   max_size=20)


@settings(max_examples=80, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["users/{}/recommendations", "items/{}/users", "items/{}/similar", "users/{}/similar"]),
       ident=_segment, k=st.one_of(st.none(), st.integers(-5, 10**6), st.text(max_size=6)))
def test_any_scoring_request_gets_a_client_status_and_strict_json(server, kind, ident, k):
    client, _, _ = server
    params = {} if k is None else {"k": k}
    from urllib.parse import quote

    r = client.get("/" + kind.format(quote(ident, safe="")), params=params)
    assert r.status_code in (200, 404, 422), (r.status_code, r.text)
    _strict_json(r.text)


@settings(max_examples=60, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
                         lambda c: st.lists(c, max_size=4) | st.dictionaries(st.sampled_from(
                             ["items", "values", "k", "x"]), c, max_size=4), max_leaves=12))
def test_any_fold_in_body_gets_a_client_status_and_strict_json(server, body):
    client, _, _ = server
    try:
        payload = json.dumps(body)
    except ValueError:
        return
    r = client.post("/recommendations", content=payload, headers={"content-type": "application/json"})
    assert r.status_code in (200, 404, 422), (r.status_code, r.text)
    _strict_json(r.text)


def test_a_body_that_never_arrives_is_cut_off(server, monkeypatch):
    client, _, _ = server
    monkeypatch.setattr(mserve, "BODY_TIMEOUT", 0.5)
    port = client.base_url.port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /recommendations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{")
        started = time.time()
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 408") and time.time() - started < 5


@pytest.mark.parametrize("raw", ['{"items": [-Infinity]}', '{"items": ["i1"], "values": [NaN]}',
                                 '{"items": {"items": [-Infinity]}}'])
def test_non_json_constants_in_a_body_are_a_422_in_strict_json(server, raw):
    """Found by the generated bodies: FastAPI's 422 echoed -inf back, could not serialise it, and answered 500."""
    client, _, _ = server
    r = client.post("/recommendations", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    _strict_json(r.text)
