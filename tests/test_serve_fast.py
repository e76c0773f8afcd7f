"""The fast GET layer of the service (``create_app(fast_routes=True)``, the default) answers exactly what the
plain FastAPI app answers: same status, same bytes, for well-formed and malformed requests alike."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("fastapi")

from mfrec import Interactions  # noqa: E402
from mfrec.models.implicit import ImplicitALS  # noqa: E402
from mfrec.serve import _FastRoutes, create_app  # noqa: E402

MAX_K = 20


def _model():
    rng = np.random.default_rng(3)
    rows = [(u, f"i{i}", 1.0 + rng.integers(0, 4)) for u in range(30) for i in range(25) if rng.random() < 0.3]
    data = Interactions.from_frame(pd.DataFrame(rows, columns=["user", "item", "v"]), value="v")
    return ImplicitALS(factors=4, iterations=2, seed=0).fit(data)


@pytest.fixture(scope="module", params=[False, True], ids=["thread-pool", "inline"])
def apps(request):
    model = _model()
    fast = create_app(model=model, max_k=MAX_K, inline=request.param)
    plain = create_app(model=model, max_k=MAX_K, inline=request.param, fast_routes=False)
    return fast, plain


def call(app, method: str, path: str, query: str = "") -> tuple[int, dict[bytes, bytes], bytes]:
    """One request straight through the ASGI interface: (status, headers, body)."""

    async def run():
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
                 "scheme": "http", "path": path, "raw_path": quote(path).encode(), "root_path": "",
                 "query_string": query.encode("latin-1"), "headers": [(b"host", b"test")],
                 "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {}}
        done = False

        async def receive():
            nonlocal done
            if not done:
                done = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await asyncio.sleep(3600)

        sent = []

        async def send(message):
            sent.append(message)

        await app(scope, receive, send)
        start = sent[0]
        return start["status"], dict(start["headers"]), b"".join(m.get("body", b"") for m in sent[1:])

    return asyncio.run(run())


def same(apps, method, path, query=""):
    fast, plain = apps
    got, want = call(fast, method, path, query), call(plain, method, path, query)
    assert got[0] == want[0], (path, query, got, want)
    assert got[2] == want[2], (path, query)
    assert got[1].get(b"content-type") == want[1].get(b"content-type")
    assert int(got[1][b"content-length"]) == len(got[2])
    return got


PATHS = ["/users/3/recommendations", "/items/i4/users", "/items/i4/similar", "/users/3/similar"]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("query", ["", "k=1", "k=5", f"k={MAX_K}", "k=5&exclude_seen=false", "exclude_seen=0",
                                   "exclude_seen=true&k=3", "k=4&other=x", "k=007"])
def test_well_formed_requests_give_the_same_200(apps, path, query):
    status, _, body = same(apps, "GET", path, query)
    assert status == 200 and body.startswith(b"{")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("query", ["k=0", f"k={MAX_K + 1}", "k=-1", "k=+5", "k=abc", "k=", "k=1e3", "k=5&k=6",
                                   "k=99999999999999999999", "exclude_seen=yes", "exclude_seen=True",
                                   "exclude_seen=maybe", "exclude_seen=", "k=%FF", "k=%D9%A1", "k=%31"])
def test_unusual_and_invalid_queries_get_fastapis_answer(apps, path, query):
    same(apps, "GET", path, query)


@pytest.mark.parametrize("path", ["/users/999/recommendations", "/users/abc/recommendations", "/items/nope/users",
                                  "/items/nope/similar", "/users/-1/similar", "/users/" + "7" * 300 + "/similar",
                                  "/users/3/recommendations/", "/users//recommendations", "/items/i 4/similar",
                                  "/health", "/nowhere"])
def test_unknown_ids_and_other_paths_get_fastapis_answer(apps, path):
    status, _, body = same(apps, "GET", path, "k=3")
    assert status != 200 or path == "/health"


def test_other_methods_are_left_to_fastapi(apps):
    for method in ("POST", "HEAD", "DELETE"):
        same(apps, method, "/users/3/recommendations", "k=3")


@settings(max_examples=80, deadline=None)
@given(
    path=st.sampled_from(PATHS + ["/users/0/recommendations", "/items/i0/similar", "/users/x/similar"]),
    pairs=st.lists(st.tuples(st.sampled_from(["k", "exclude_seen", "K", "x"]),
                             st.sampled_from(["", "0", "1", "2", "10", str(MAX_K), str(MAX_K + 1), "true", "false",
                                              "on", " 3", "3 ", "-0", "١"])), max_size=3),
)
def test_any_query_gives_the_same_answer(apps, path, pairs):
    same(apps, "GET", path, "&".join(f"{key}={quote(value)}" for key, value in pairs))


def test_the_layer_answers_well_formed_gets_itself_and_passes_the_rest_on():
    """With a downstream app that records what reaches it: the fast path really short-cuts FastAPI."""
    import re

    reached = []

    async def downstream(scope, receive, send):
        reached.append((scope["path"], scope["query_string"]))
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def body_of(ident, k, exclude_seen):
        if ident == "unknown":
            from mfrec.exceptions import UnknownIdError

            raise UnknownIdError("unknown user id 'unknown'")
        return f'{{"id": "{ident}", "k": {k}, "exclude_seen": {str(exclude_seen).lower()}}}'.encode()

    layer = _FastRoutes(downstream, [(re.compile(r"/users/([^/]+)/recommendations"), body_of, ("k", "exclude_seen"))],
                        max_k=50, inline=True)
    expected = b'{"id": "u1", "k": 10, "exclude_seen": true}'
    assert call(layer, "GET", "/users/u1/recommendations") == (
        200, {b"content-length": str(len(expected)).encode(), b"content-type": b"application/json"}, expected)
    assert call(layer, "GET", "/users/u1/recommendations", "k=7&exclude_seen=0")[2] == (
        b'{"id": "u1", "k": 7, "exclude_seen": false}')
    assert reached == []
    for query in ("k=51", "k=x", "exclude_seen=no", "k=1&k=2"):
        assert call(layer, "GET", "/users/u1/recommendations", query)[0] == 418
    assert call(layer, "GET", "/users/unknown/recommendations")[0] == 418
    assert call(layer, "POST", "/users/u1/recommendations")[0] == 418
    assert call(layer, "GET", "/users/u1/other")[0] == 418
    assert len(reached) == 7
