"""What ``mfrec serve`` shows a person: the web page at ``/``, the offline API docs, and the page's lookups.

* ``GET /`` — one page (``mfrec/web/index.html``, plain HTML, CSS and JavaScript shipped in the package, no CDN):
  pick a user and see their history and recommendations; click an item for similar items and the users most
  likely to want it; or start from scratch with a few items (fold-in). ``/?user=U`` opens user U.
* ``GET /docs`` and ``GET /redoc`` — Swagger UI and ReDoc over ``/openapi.json``, their scripts served from the
  ``fastapi-offline`` package (part of the ``serve`` extra), so they work without network.
* ``GET /catalog``, ``GET /users/{user}/history``, ``GET /search/users``, ``GET /search/items`` — what the page
  needs beyond the scoring routes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mfrec.exceptions import MfrecError

WEB_DIR = Path(__file__).with_name("web")
MAX_SEARCH = 50


def _docs_assets() -> Path | None:
    """The folder of Swagger UI's and ReDoc's scripts (``fastapi_offline/static``), or None when not installed."""
    try:
        import fastapi_offline
    except ImportError:
        return None
    folder = Path(fastapi_offline.__file__).with_name("static")
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


def add_pages(app: Any, holder: Any, *, max_k: int, errors: dict) -> None:
    """Register the page, the offline docs and the page's lookup routes on ``app`` (see the module docstring)."""
    from fastapi import Path as PathParam, Query
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
    from starlette.staticfiles import StaticFiles

    from mfrec import serve_schema as schema
    from mfrec.serve import _json_id, parse_id

    app.mount("/static/page", StaticFiles(directory=WEB_DIR), name="page")
    assets = _docs_assets()
    if assets is not None:
        app.mount("/static/docs", StaticFiles(directory=assets), name="docs-assets")

    def docs_page(render: Any, **assets_urls: str) -> Any:
        """Swagger UI or ReDoc over this app's schema, their scripts served from ``/static/docs``."""
        if assets is None:
            return JSONResponse(status_code=503, content={
                "detail": "the API docs need the fastapi-offline package: pip install 'mfrec[serve]'"})
        return render(openapi_url=app.openapi_url, title="mfrec API", **assets_urls)

    @app.get("/docs", include_in_schema=False)
    def swagger() -> Any:
        return docs_page(get_swagger_ui_html, swagger_js_url="/static/docs/swagger-ui-bundle.js",
                         swagger_css_url="/static/docs/swagger-ui.css", swagger_favicon_url="/static/docs/favicon.png")

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> Any:
        return docs_page(get_redoc_html, redoc_js_url="/static/docs/redoc.standalone.js",
                         redoc_favicon_url="/static/docs/favicon.png", with_google_fonts=False)

    @app.get("/", include_in_schema=False)
    def page() -> Any:
        return FileResponse(WEB_DIR / "index.html", media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Any:
        return HTMLResponse(status_code=204)

    @app.get("/catalog")
    def catalog() -> dict[str, Any]:
        """What the model knows: its class, how many users and items, whether it has titles."""
        model, manifest, titles = holder.state
        inter = model.interactions_
        return {"model_class": type(model).__name__, "users": int(inter.n_users), "items": int(inter.n_items),
                "has_titles": bool(titles), "dataset": (manifest.get("extra") or {}).get("dataset"),
                "max_k": max_k}

    @app.get("/users/{user}/history", response_model=schema.UserHistory, responses=errors)
    def user_history(user: str = PathParam(..., max_length=256),
                     k: int = Query(50, ge=1, le=max_k, description=f"at most this many items (1..{max_k})")) -> Any:
        """The user's training items, largest value first (ties by item order)."""
        model, _, titles = holder.state
        inter = model.interactions_
        uid = parse_id(user, inter.user_index_map)
        row = inter.matrix[inter.user_index(uid)]  # an unknown id: UnknownIdError, a 404
        order = np.argsort(-row.data, kind="stable")[:k]
        ids = inter.item_index_map.to_numpy()[row.indices[order]]
        items = []
        for item, value in zip(ids.tolist(), row.data[order].tolist()):
            entry = {"item": _json_id(item), "value": float(value)}
            if titles and titles.get(item) is not None:
                entry["title"] = titles[item]
            items.append(entry)
        return {"user": _json_id(uid), "total": int(row.nnz), "items": items}

    searchable: dict[str, tuple] = {}  # side -> (index, titles, ids, lower-case ids, lower-case titles or None)

    def _search_text(side: str, index: Any, titles: dict | None) -> tuple:
        """The lower-case texts searched for ``side``, built once per served model (a reload brings new objects)."""
        hit = searchable.get(side)
        if hit is None or hit[0] is not index or hit[1] is not titles:
            ids = index.to_numpy()
            lowered_titles = None
            if titles:
                lowered_titles = np.char.lower(np.array([str(titles.get(i, "")) for i in ids.tolist()], dtype=str))
            hit = searchable[side] = (index, titles, ids, np.char.lower(ids.astype(str)), lowered_titles)
        return hit

    def _search(side: str, index: Any, q: str, limit: int, titles: dict | None) -> list[dict[str, Any]]:
        """Ids whose text starts with ``q`` first, then ids or titles containing it (case-insensitive)."""
        text = q.strip().lower()
        _, _, ids, as_text, title_text = _search_text(side, index, titles)
        if not text:
            hits = np.arange(min(limit, len(ids)))
        else:
            starts = np.flatnonzero(np.char.startswith(as_text, text))
            hits = list(starts[:limit])
            if len(hits) < limit:
                seen = set(hits)
                contains = (np.char.find(as_text, text) >= 0)
                if title_text is not None:
                    contains |= np.char.find(title_text, text) >= 0
                hits += [i for i in np.flatnonzero(contains) if i not in seen][:limit - len(hits)]
        out = []
        for i in hits:
            ident = ids[int(i)]
            entry = {"id": _json_id(ident)}
            if titles and titles.get(ident) is not None:
                entry["title"] = titles[ident]
            out.append(entry)
        return out

    Q = Query("", max_length=200, description="text to look for")
    LIMIT = Query(20, ge=1, le=MAX_SEARCH, description=f"at most this many results (1..{MAX_SEARCH})")

    @app.get("/search/users", response_model=schema.IdSearch, responses=errors)
    def search_users(q: str = Q, limit: int = LIMIT) -> Any:
        """User ids starting with (then containing) ``q``."""
        model, _, _ = holder.state
        return {"results": _search("user", model.interactions_.user_index_map, q, limit, None)}

    @app.get("/search/items", response_model=schema.IdSearch, responses=errors)
    def search_items(q: str = Q, limit: int = LIMIT) -> Any:
        """Item ids starting with ``q``, then ids or titles containing it."""
        model, _, titles = holder.state
        return {"results": _search("item", model.interactions_.item_index_map, q, limit, titles)}

    if not (WEB_DIR / "index.html").is_file():  # a broken install, not a user error
        raise MfrecError(f"the web page is missing from the package ({WEB_DIR}); reinstall mfrec")
