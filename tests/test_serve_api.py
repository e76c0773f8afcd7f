"""The HTTP API's contract: response schemas, strict bodies, offline docs, closed admin, CORS, the page's routes."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from mfrec import Interactions, serve_schema as schema  # noqa: E402
from mfrec.exceptions import MfrecError  # noqa: E402
from mfrec.models.implicit import ImplicitALS  # noqa: E402
from mfrec.serve import create_app  # noqa: E402

TOKEN = "an-admin-token-of-32-characters!"


def _data(n_users=30, n_items=25, seed=0):
    rng = np.random.default_rng(seed)
    rows = [(f"u{u}", f"i{i}", 1.0 + rng.integers(0, 4)) for u in range(n_users) for i in range(n_items)
            if rng.random() < 0.3]
    return Interactions.from_frame(pd.DataFrame(rows, columns=["user", "item", "v"]), value="v")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("api") / "model.mfrec"
    ImplicitALS(factors=4, iterations=3).fit(_data()).save(
        path, extra={"item_titles": {"ids": ["i1", "i2", "i3"], "titles": ["Alien", "Brazil", "Casablanca"]}})
    return path


@pytest.fixture(scope="module")
def client(saved):
    with TestClient(create_app(saved, max_k=50, admin_token=TOKEN)) as c:
        yield c


@pytest.fixture(scope="module")
def no_admin(saved):
    with TestClient(create_app(saved, max_k=50)) as c:
        yield c


# ------------------------------------------------------------------------------------------- schema
ROUTES = {
    ("get", "/users/{user}/recommendations"): "UserRecommendations",
    ("get", "/items/{item}/users"): "ItemUsers",
    ("get", "/items/{item}/similar"): "SimilarItems",
    ("get", "/users/{user}/similar"): "SimilarUsers",
    ("post", "/recommendations"): "NewUserRecommendations",
    ("get", "/users/{user}/history"): "UserHistory",
    ("get", "/health"): "Health",
    ("post", "/admin/reload"): "Reloaded",
}


def test_every_route_documents_its_response_and_errors(client):
    spec = client.get("/openapi.json").json()
    for (method, route), name in ROUTES.items():
        op = spec["paths"][route][method]
        ok = op["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok == {"$ref": f"#/components/schemas/{name}"}, route
        if route not in ("/health",):
            assert any(code in op["responses"] for code in ("404", "401")), route
    assert "NewUser" in spec["components"]["schemas"]
    assert spec["components"]["schemas"]["NewUser"].get("additionalProperties") is False


def test_real_answers_validate_against_their_schemas(client):
    checks = [
        ("/users/u1/recommendations?k=5", schema.UserRecommendations),
        ("/items/i1/users?k=5", schema.ItemUsers),
        ("/items/i1/similar?k=5", schema.SimilarItems),
        ("/users/u1/similar?k=5", schema.SimilarUsers),
        ("/users/u1/history?k=5", schema.UserHistory),
        ("/health", schema.Health),
        ("/search/items?q=a", schema.IdSearch),
    ]
    for url, model in checks:
        r = client.get(url)
        assert r.status_code == 200, url
        model.model_validate(r.json())
    r = client.post("/recommendations", json={"items": ["i1", "i2"], "k": 3})
    assert len(schema.NewUserRecommendations.model_validate(r.json()).items) == 3
    r = client.get("/users/nobody/recommendations")
    assert r.status_code == 404 and isinstance(schema.Error.model_validate(r.json()).detail, str)


def test_an_unknown_body_key_is_a_422_naming_the_key(client):
    r = client.post("/recommendations", json={"items": ["i1"], "k": 3, "exclude": ["i2"]})
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert detail[0]["loc"] == ["body", "exclude"] and "extra" in detail[0]["type"]
    assert client.post("/recommendations", json={"items": ["i1"], "K": 3}).status_code == 422


# ------------------------------------------------------------------------------------------- docs offline
@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_api_docs_load_their_scripts_from_the_service_not_a_cdn(client, page):
    pytest.importorskip("fastapi_offline")
    html = client.get(page).text
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources and all(s.startswith("/") for s in sources), sources
    assert "cdn" not in html.lower() and "fonts.googleapis" not in html
    for src in sources:
        r = client.get(src)
        assert r.status_code == 200 and len(r.content) > (1000 if src.endswith(".js") else 0), src


# ------------------------------------------------------------------------------------------- admin
def test_admin_routes_do_not_exist_without_a_token(no_admin):
    assert no_admin.post("/admin/reload").status_code == 404
    assert no_admin.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 404
    assert "/admin/reload" not in no_admin.get("/openapi.json").json()["paths"]


def test_admin_reload_needs_the_bearer_token(client):
    r = client.post("/admin/reload")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert client.post("/admin/reload", headers={"Authorization": "Bearer wrong-token-wrong-token"}).status_code == 401
    assert client.post("/admin/reload", headers={"Authorization": TOKEN}).status_code == 401  # no scheme
    r = client.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200 and r.json()["status"] == "reloaded"


def test_a_short_admin_token_is_refused(saved):
    with pytest.raises(MfrecError, match="at least 16"):
        create_app(saved, admin_token="short")


# ------------------------------------------------------------------------------------------- CORS
def test_cors_is_off_by_default_and_configurable(client, saved):
    origin = {"Origin": "https://app.example.com"}
    assert "access-control-allow-origin" not in client.get("/health", headers=origin).headers
    with TestClient(create_app(saved, cors_origins=["https://app.example.com"])) as c:
        r = c.get("/users/u1/recommendations", headers=origin)
        assert r.headers["access-control-allow-origin"] == "https://app.example.com"
        pre = c.options("/recommendations", headers=origin | {"Access-Control-Request-Method": "POST"})
        assert pre.status_code == 200
        other = c.get("/health", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


# ------------------------------------------------------------------------------------------- the page's routes
def test_page_and_its_assets_are_served_from_the_package(client):
    html = client.get("/").text
    assert "<title>mfrec</title>" in html and "/static/page/app.js" in html
    assert "http://" not in html and "https://" not in html
    for asset in ("/static/page/app.js", "/static/page/style.css"):
        assert client.get(asset).status_code == 200


def test_catalog_history_and_search(client):
    info = client.get("/catalog").json()
    assert info["model_class"] == "ImplicitALS" and info["has_titles"] is True and info["items"] == 25
    hist = client.get("/users/u1/history?k=3").json()
    values = [e["value"] for e in hist["items"]]
    assert len(values) == min(3, hist["total"]) and values == sorted(values, reverse=True)
    users = [e["id"] for e in client.get("/search/users?q=u1").json()["results"]]
    assert users[0] == "u1" and set(users) >= {"u1", "u10", "u11"}
    titled = client.get("/search/items?q=casa").json()["results"]
    assert titled == [{"id": "i3", "title": "Casablanca"}]
    assert client.get("/search/items?q=x&limit=500").status_code == 422
    assert client.get("/users/nobody/history").status_code == 404


# ------------------------------------------------------------------------------------------- serve()'s defaults
def test_serve_defaults_are_the_fast_configuration(saved, monkeypatch):
    import inspect

    from mfrec import serve as serve_module

    params = inspect.signature(serve_module.serve).parameters
    assert params["access_log"].default is False and params["workers"].default is None
    assert 1 <= serve_module.default_workers() <= 4
    with pytest.raises(MfrecError, match="at least 16"):  # refused before anything starts
        serve_module.serve(saved, port=1, admin_token="short")


def test_the_cli_reads_the_admin_token_from_the_environment(saved, monkeypatch):
    from mfrec import serve as serve_module
    from mfrec.cli import main

    seen = {}
    monkeypatch.setattr(serve_module, "serve", lambda *a, **kw: seen.update(kw))
    monkeypatch.setenv("MFREC_ADMIN_TOKEN", TOKEN)
    assert main(["serve", str(saved), "--cors-origin", "https://a.example", "--index", "exact"]) == 0
    assert seen["admin_token"] == TOKEN and seen["cors_origins"] == ["https://a.example"]
    assert seen["index"] == "exact" and seen["workers"] is None and seen["access_log"] is False
    monkeypatch.delenv("MFREC_ADMIN_TOKEN")
    assert main(["serve", str(saved)]) == 0 and seen["admin_token"] is None
