"""HTTP recommendation service: a FastAPI app over a saved model (extra ``serve``).

Endpoints (all JSON)::

    GET  /health                                  liveness, model class, creation time and digest, worker pid
    GET  /model                                   the model file's manifest
    GET  /users/{user}/recommendations?k=10&exclude_seen=true
    GET  /items/{item}/users?k=10                 users most likely to want the item
    GET  /items/{item}/similar?k=10
    GET  /users/{user}/similar?k=10
    POST /recommendations                         {"items": [...], "values": [...]?, "k": 10}: fold-in of a new user
    POST /admin/reload                            re-read the model file and swap it in (bearer token; else 404)
    GET  /users/{user}/history?k=50               the user's training items
    GET  /search/users?q=  /search/items?q=       ids (and titles) for the web page
    GET  /catalog                                 model class, numbers of users and items, titles or not
    GET  /  /docs  /redoc                         the web page and the API docs (offline: mfrec.serve_pages)

The whole API, with a curl example per endpoint, is in docs/http.md.

Unknown ids answer 404 with ``{"detail": ...}``; invalid parameters 422; ``k`` is capped by ``max_k``; request
bodies over ``max_body_bytes`` answer 413 (the bytes are counted as they stream, Content-Length is not trusted).
Scoring endpoints are plain ``def`` functions: FastAPI runs them in its thread pool, so the event loop stays free.
Well-formed GETs of the four scoring routes are answered by a thin ASGI layer in front of FastAPI
(:class:`_FastRoutes`) that calls the same body functions; anything else (bad parameters, unknown ids, other
routes) falls through to FastAPI, so answers, errors and the OpenAPI schema are FastAPI's.
The model is loaded and its kernels JIT-warmed before the server accepts requests.

Reloading builds the new model completely, then replaces one reference: requests in flight finish on the old
model, later ones use the new one; a broken file leaves the old model serving (the reload answers 500 with why).

Several worker processes (``serve(..., workers=N)``, ``mfrec serve --workers N``) share the listening socket;
each loads the model and limits itself to one BLAS and one kernel thread (the processes are the parallelism).
A reload request reaches only the worker that receives it, so each worker also watches the model file
(``watch_interval`` seconds, by default 1 s with several workers) and swaps in a new file on its own; saves
are atomic renames, so a changed file is always a complete one. SIGHUP makes uvicorn replace the workers one
at a time (each replacement is ready before the old one retires).
"""


import asyncio
import contextlib
import functools
import json
import logging
import os
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mfrec.exceptions import MfrecError, UnknownIdError, clip, one_line, require_extra
from mfrec.serve_schema import MAX_FOLD_IN_VALUE

__all__ = ["create_app", "ModelHolder", "serve"]

DEFAULT_MAX_K = 1000
DEFAULT_MAX_BODY = 1 << 20  # 1 MiB
DEFAULT_WATCH_INTERVAL = 1.0  # seconds, with several workers
_CONFIG_ENV = "MFREC_SERVE_CONFIG"  # serve() -> worker processes
_log = logging.getLogger("mfrec.serve")


class ModelHolder:
    """The model being served, its manifest and item titles; swapped atomically on reload."""

    def __init__(self, path: str | Path | None = None, model: Any = None, index: str | None = None) -> None:
        if (path is None) == (model is None):
            raise ValueError("give exactly one of path or model")
        if index not in (None, "exact", "hnsw"):
            raise MfrecError(f"index must be 'exact' or 'hnsw', got {clip(index)}")
        self.index = index  # None: as the model file has it; "hnsw": built at load when the file has none
        self.path = None if path is None else Path(path)
        self.loaded_signature: tuple[int, int, int] | None = None
        self._lock = threading.Lock()
        self._state: tuple[Any, dict[str, Any], dict[Any, str]] = (None, {}, {})
        if model is not None:
            self._state = self._prepare(model, getattr(model, "manifest_", {}))
        else:
            self.reload()

    def _prepare(self, model: Any, manifest: dict[str, Any]) -> tuple[Any, dict[str, Any], dict[Any, str]]:
        if self.index == "exact" and getattr(model, "index_", None):
            model.build_index("exact")
        elif self.index == "hnsw" and not getattr(model, "index_", None):
            if not hasattr(model, "build_index"):
                raise MfrecError(f"{type(model).__name__} has no factors to index; serve it with --index exact")
            import time

            start = time.perf_counter()
            model.build_index("hnsw")
            _log.warning("mfrec: built the HNSW index at load in %.1f s (save the model with it to skip this: "
                         "model.build_index('hnsw'); model.save(...))", time.perf_counter() - start)
        titles_meta = (manifest.get("extra") or {}).get("item_titles") or {}
        titles = dict(zip(titles_meta.get("ids", []), titles_meta.get("titles", [])))
        try:
            warm_up(model)
        except MfrecError:
            raise
        except Exception as exc:  # noqa: BLE001 - a model that cannot answer a query is not swapped in
            raise MfrecError(f"the model fails its warm-up queries ({one_line(f'{type(exc).__name__}: {exc}', 140)})") from exc
        return model, manifest, titles

    def reload(self) -> dict[str, Any]:
        """Load the file again and swap it in; raises (old model kept) if the new file is bad."""
        if self.path is None:
            raise MfrecError("this service was started from an in-memory model: nothing to reload")
        from mfrec.persist import load

        signature = self.file_signature()  # before reading: a newer file seen later triggers another reload
        model = load(self.path)
        state = self._prepare(model, model.manifest_)
        with self._lock:
            self._state = state
            self.loaded_signature = signature
        return state[1]

    def file_signature(self) -> tuple[int, int, int] | None:
        """``(inode, size, mtime_ns)`` of the model file, None when it is missing (or no file is served).

        An atomic save (write a temporary file, rename it over the old one) always changes the inode.
        """
        if self.path is None:
            return None
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def reload_if_changed(self) -> bool:
        """Reload when the file's signature differs from the loaded one; True when a new model was swapped in.

        A broken new file is logged and remembered (not retried until the file changes again); the old model
        keeps serving.
        """
        signature = self.file_signature()
        if signature is None or signature == self.loaded_signature:
            return False
        try:
            self.reload()
        except Exception as exc:  # noqa: BLE001 - any failed swap: log one line, keep serving and watching
            _log.error("mfrec: the model file changed but cannot be served, old model kept: %s", _reason(exc))
            with self._lock:
                self.loaded_signature = signature
            return False
        return True

    @property
    def state(self) -> tuple[Any, dict[str, Any], dict[Any, str]]:
        return self._state  # one reference read: consistent (model, manifest, titles) triple


def warm_up(model: Any) -> None:
    """Run each scenario once before the first request (loads and touches everything a request uses)."""
    data = getattr(model, "interactions_", None)
    if data is None or data.n_users == 0 or data.n_items == 0:
        return
    user, item = data.user_ids[0], data.item_ids[0]
    for call in (
        lambda: model.recommend(user, k=1),
        lambda: model.recommend_users(item, k=1),
        lambda: model.similar_items(item, k=1),
        lambda: model.similar_users(user, k=1),
        lambda: model.recommend_new_user([item], k=1),
    ):
        try:
            call()
        except (MfrecError, NotImplementedError):
            pass


_INT_ID = re.compile(r"-?(?:0|[1-9][0-9]*)")
_FLOAT_ID = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")


def parse_id(raw: str, index: pd.Index) -> Any:
    """Turn a path/body id into the model's id type (ints stay ints when the model's ids are ints).

    Numeric ids are parsed strictly: the exact ASCII decimal form (``42``, ``-7``; floats also ``2.5``, ``1e3``),
    so ``1_0``, ``+1``, `` 1 ``, ``01`` and non-ASCII digits are unknown ids, not other users' ids.
    """
    if isinstance(raw, str) and index.dtype.kind in "iu":
        if not _INT_ID.fullmatch(raw):
            raise UnknownIdError(f"unknown id {clip(raw)}")
        return int(raw)
    if isinstance(raw, str) and index.dtype.kind == "f":
        if not _FLOAT_ID.fullmatch(raw):
            raise UnknownIdError(f"unknown id {clip(raw)}")
        return float(raw)
    if not isinstance(raw, str) and index.dtype == object:
        return str(raw) if str(raw) in index else raw
    return raw


def model_digest(manifest: dict[str, Any]) -> str | None:
    """16 hex digits identifying a saved model: SHA-256 over its arrays' names and checksums (None in memory)."""
    import hashlib

    arrays = manifest.get("arrays") or {}
    pairs = sorted((str(name), str(meta.get("sha256"))) for name, meta in arrays.items() if isinstance(meta, dict))
    if not pairs:
        return None
    return hashlib.sha256(json.dumps(pairs).encode()).hexdigest()[:16]


def _json_id(x: Any) -> Any:
    return x.item() if isinstance(x, np.generic) else x


def _rows(frame: pd.DataFrame, key: str, titles: dict[Any, str] | None = None) -> list[dict[str, Any]]:
    return _rows_of(frame[key].to_numpy(), frame["score"].to_numpy(), key, titles)


class NonFiniteScores(MfrecError):
    """The model produced NaN or infinite scores for a query: answered 500, never serialised as JSON."""


def _rows_of(ids: np.ndarray, scores: np.ndarray, key: str, titles: dict[Any, str] | None = None) -> list[dict[str, Any]]:
    if not np.isfinite(scores).all():
        raise NonFiniteScores("the model produced non-finite scores for this query; its factors or the fold-in "
                              "values are out of range")
    out = []
    for ident, score in zip(ids.tolist(), scores.tolist()):
        row = {key: _json_id(ident), "score": float(score)}
        if titles:
            title = titles.get(ident)
            if title is not None:
                row["title"] = title
        out.append(row)
    return out


def _dumps(payload: dict[str, Any]) -> bytes:
    """UTF-8 JSON of an already JSON-ready dict (what the scoring endpoints send)."""
    return json.dumps(payload, ensure_ascii=False).encode("utf-8")


def _fast_json(body: bytes):
    """The scoring endpoints' FastAPI response: the pre-built JSON bytes as they are (skips FastAPI's
    per-field re-encoding and validation, a measurable share of a ~2 ms request)."""
    from starlette.responses import Response

    return Response(body, media_type="application/json")


_TRUE, _FALSE = frozenset({"true", "1"}), frozenset({"false", "0"})


class _FastRoutes:
    """ASGI layer in front of FastAPI for the hot GET scoring routes.

    A ``GET`` whose path matches one of ``routes`` and whose query string is plainly well formed (``k`` a
    decimal integer in ``1..max_k``, ``exclude_seen`` one of ``true/false/1/0``, each at most once, the id at
    most 256 characters) is answered here: the same body function the FastAPI route calls, its JSON bytes
    sent with two ASGI messages. Everything else — other routes, unusual spellings (``k=+5``,
    ``exclude_seen=yes``), invalid values, repeated parameters, unknown ids and any other :class:`MfrecError`
    — falls through to the FastAPI app, which gives its usual answer (422 with pydantic's details, 404 ...).
    So the responses, the OpenAPI schema and the error contract are FastAPI's by construction; what is saved
    is FastAPI's routing, dependency solving and validation on the 200 path (measured in-process: 1.8-1.96 ms
    -> ~1.5 ms per items-for-a-user request, 50k items x 64 factors).

    ``inline``: call the body function on the event loop (worker processes), else in anyio's thread pool
    (the same pool and limiter FastAPI's ``def`` endpoints use).
    """

    def __init__(self, app: Any, routes: list[tuple[Any, Any, tuple[str, ...]]], max_k: int, inline: bool) -> None:
        self.app, self.routes, self.max_k, self.inline = app, routes, max_k, inline

    def _params(self, query: bytes, allowed: tuple[str, ...]) -> dict[str, Any] | None:
        """``{"k": int, "exclude_seen": bool}`` (defaults 10 and True) or None when FastAPI should judge."""
        from urllib.parse import parse_qsl

        out: dict[str, Any] = {}
        if query:
            try:
                pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
            except ValueError:
                return None
            for key, value in pairs:
                if key not in allowed:
                    continue  # FastAPI ignores unknown query parameters too
                if key in out:
                    return None
                if key == "k":
                    if not (value.isascii() and value.isdigit() and len(value) <= 9):
                        return None
                    k = int(value)
                    if not 1 <= k <= self.max_k:
                        return None
                    out["k"] = k
                elif value in _TRUE or value in _FALSE:
                    out[key] = value in _TRUE
                else:
                    return None
        out.setdefault("k", 10)
        if "exclude_seen" in allowed:
            out.setdefault("exclude_seen", True)
        return out

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not scope.get("root_path"):
            path = scope["path"]
            for pattern, body_of, allowed in self.routes:
                match = pattern.fullmatch(path)
                if match is None:
                    continue
                ident = match.group(1)
                params = self._params(scope.get("query_string", b""), allowed) if len(ident) <= 256 else None
                if params is None:
                    break
                try:
                    if self.inline:
                        body = body_of(ident, **params)
                    else:
                        import anyio.to_thread

                        body = await anyio.to_thread.run_sync(functools.partial(body_of, ident, **params))
                except MfrecError:
                    break  # unknown id etc.: FastAPI's route and exception handlers answer
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-length", str(len(body)).encode()),
                                        (b"content-type", b"application/json")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


class _BodyLimit:
    """ASGI middleware: refuse request bodies over ``limit`` bytes, counting what actually streams in."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._reject(send)
            return
        seen = 0
        timed_out = False

        async def guarded_send(message: dict) -> None:
            if not timed_out:  # after a 408 the app's own answer (to a disconnect) is dropped
                await send(message)

        async def limited_receive() -> dict:
            nonlocal seen, timed_out
            try:  # a client that stops sending its body holds a worker: answer 408 after BODY_TIMEOUT seconds
                message = await asyncio.wait_for(receive(), BODY_TIMEOUT)
            except asyncio.TimeoutError:
                await self._reject(send, 408, b'{"detail":"request body not received in time"}')
                timed_out = True
                return {"type": "http.disconnect"}
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge()
            return message

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _TooLarge:
            await self._reject(send)
        except Exception:
            if not timed_out:
                raise

    async def _reject(self, send: Any, status: int = 413, body: bytes = b'{"detail":"request body too large"}') -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


#: seconds a request body may take to arrive (each chunk); headers are bounded by uvicorn's own limits
BODY_TIMEOUT = 15.0


def create_app(
    model_path: str | Path | None = None,
    *,
    model: Any = None,
    max_k: int = DEFAULT_MAX_K,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    worker_threads: int = 4,
    watch_interval: float | None = None,
    inline: bool = False,
    fast_routes: bool = True,
    admin_token: str | None = None,
    cors_origins: list[str] | tuple[str, ...] = (),
    index: str | None = None,
):
    """Build the FastAPI application serving ``model_path`` (or an in-memory fitted ``model``).

    ``admin_token``: ``POST /admin/reload`` exists only with a token and answers only a request carrying
    ``Authorization: Bearer <token>`` (401 otherwise); without one it is 404 (reload with SIGHUP or the file
    watcher). ``cors_origins``: browser origins allowed to call the API (none by default: CORS off).
    ``index``: ``"hnsw"`` serves approximate top-k (the model file's index, or one built at load), ``"exact"``
    scores every item; None serves the file as it is.

    ``watch_interval``: poll the model file every so many seconds and swap in a changed file (None: only
    ``POST /admin/reload`` and SIGHUP reload). ``inline``: run the scoring endpoints on the event loop instead
    of the thread pool — right when several worker processes are the parallelism (it saves the thread hand-off
    and GIL ping-pong per request: p99 15 -> 12 ms at 200 req/s with 2 workers), wrong for a single process,
    where a ~2 ms request would stall every other connection. ``fast_routes``: answer well-formed GETs of
    the four scoring routes in a thin ASGI layer before FastAPI (see :class:`_FastRoutes`; same responses,
    ~0.3-0.4 ms less CPU per request); False serves everything through FastAPI.
    """
    fastapi = require_extra("fastapi", "serve")
    from fastapi import Body, FastAPI, Header, Path as PathParam, Query, Request
    from fastapi.responses import JSONResponse

    from mfrec import serve_schema as schema
    from mfrec.serve_pages import add_pages

    if admin_token is not None and (not isinstance(admin_token, str) or len(admin_token) < 16):
        raise MfrecError("the admin token must be a string of at least 16 characters (e.g. `openssl rand -hex 16`)")

    holder = ModelHolder(model_path, model, index=index)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        # Scoring is CPU-bound and holds the GIL most of the time: a few worker threads serve as many requests
        # per second as 40 and avoid GIL thrashing (p99 latency), the rest wait in the queue.
        import anyio.to_thread

        anyio.to_thread.current_default_thread_limiter().total_tokens = worker_threads
        watcher = None
        if watch_interval and holder.path is not None:
            watcher = asyncio.create_task(_watch(holder, float(watch_interval)))
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher

    app = FastAPI(
        lifespan=lifespan,
        title="mfrec",
        description="Recommendations from a matrix-factorization model: items for a user, users for an item, "
        "similar items and users, and fold-in for new users.",
        version=__import__("mfrec").__version__,
        docs_url=None,  # served offline by mfrec.serve_pages, never from a CDN
        redoc_url=None,
    )
    app.state.holder = holder
    errors = {404: {"model": schema.Error, "description": "unknown id"},
              422: {"model": schema.Error, "description": "invalid parameter or body"}}

    @app.exception_handler(UnknownIdError)
    async def _unknown(_: Request, exc: UnknownIdError):
        return JSONResponse(status_code=404, content={"detail": str(exc)})

    from fastapi.exceptions import RequestValidationError

    @app.exception_handler(RequestValidationError)
    async def _malformed(_: Request, exc: RequestValidationError):
        # FastAPI's own answer echoes the input, which may hold NaN/Infinity (not JSON: it then failed with a 500)
        # or megabytes; the location, message and type say what is wrong
        errors = [{"loc": [str(x)[:80] for x in e.get("loc", ())], "msg": str(e.get("msg", ""))[:200],
                   "type": str(e.get("type", ""))[:80]} for e in exc.errors()[:20]]
        return JSONResponse(status_code=422, content={"detail": errors})

    @app.exception_handler(MfrecError)
    async def _invalid(_: Request, exc: MfrecError):
        status = 500 if isinstance(exc, NonFiniteScores) else 422
        return JSONResponse(status_code=status, content={"detail": str(exc)})

    K = Query(10, ge=1, le=max_k, description=f"number of results (1..{max_k})")

    def scoring(fn):
        """Register ``fn`` as is (FastAPI runs a plain function in its thread pool) or, inline, as a coroutine
        with the same signature (FastAPI reads the parameters through ``__wrapped__``)."""
        if not inline:
            return fn

        @functools.wraps(fn)
        async def on_the_loop(*args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs)

        return on_the_loop

    NewUser = schema.new_user_body(max_k)

    @app.get("/health", response_model=schema.Health)
    def health() -> dict[str, Any]:
        model, manifest, _ = holder.state
        return {"status": "ok", "model_class": type(model).__name__, "created": manifest.get("created"),
                "model_digest": model_digest(manifest), "worker": os.getpid()}

    @app.get("/model", response_model=dict[str, Any])
    def model_manifest() -> dict[str, Any]:
        _, manifest, _ = holder.state
        extra = {k: v for k, v in (manifest.get("extra") or {}).items() if k != "item_titles"}
        if isinstance(extra.get("dataset"), str):  # files saved before 0.2 may hold the training file's full path
            extra["dataset"] = Path(extra["dataset"]).name
        return {k: v for k, v in manifest.items() if k != "extra"} | {"extra": extra}

    def recommendations_body(user: str, k: int = 10, exclude_seen: bool = True) -> bytes:
        model, _, titles = holder.state
        uid = parse_id(user, model.interactions_.user_index_map)
        item_ids, scores = model.recommend_arrays(uid, k=k, exclude_seen=exclude_seen)
        return _dumps({"user": _json_id(uid), "items": _rows_of(item_ids, scores, "item", titles)})

    def item_users_body(item: str, k: int = 10) -> bytes:
        model, _, titles = holder.state
        iid = parse_id(item, model.interactions_.item_index_map)
        frame = model.recommend_users(iid, k=k)
        return _dumps({"item": _json_id(iid), "title": titles.get(iid), "users": _rows(frame, "user")})

    def item_similar_body(item: str, k: int = 10) -> bytes:
        model, _, titles = holder.state
        iid = parse_id(item, model.interactions_.item_index_map)
        frame = model.similar_items(iid, k=k)
        return _dumps({"item": _json_id(iid), "title": titles.get(iid), "items": _rows(frame, "item", titles)})

    def user_similar_body(user: str, k: int = 10) -> bytes:
        model, _, _ = holder.state
        uid = parse_id(user, model.interactions_.user_index_map)
        frame = model.similar_users(uid, k=k)
        return _dumps({"user": _json_id(uid), "users": _rows(frame, "user")})

    @app.get("/users/{user}/recommendations", response_model=schema.UserRecommendations, responses=errors)
    @scoring
    def user_recommendations(
        user: str = PathParam(..., max_length=256), k: int = K, exclude_seen: bool = Query(True)
    ) -> dict[str, Any]:
        return _fast_json(recommendations_body(user, k, exclude_seen))

    @app.get("/items/{item}/users", response_model=schema.ItemUsers, responses=errors)
    @scoring
    def item_users(item: str = PathParam(..., max_length=256), k: int = K) -> dict[str, Any]:
        return _fast_json(item_users_body(item, k))

    @app.get("/items/{item}/similar", response_model=schema.SimilarItems, responses=errors)
    @scoring
    def item_similar(item: str = PathParam(..., max_length=256), k: int = K) -> dict[str, Any]:
        return _fast_json(item_similar_body(item, k))

    @app.get("/users/{user}/similar", response_model=schema.SimilarUsers, responses=errors)
    @scoring
    def user_similar(user: str = PathParam(..., max_length=256), k: int = K) -> dict[str, Any]:
        return _fast_json(user_similar_body(user, k))

    @app.post("/recommendations", response_model=schema.NewUserRecommendations, responses=errors)
    @scoring
    def new_user_recommendations(body: NewUser = Body(...)) -> dict[str, Any]:
        model, _, titles = holder.state
        index = model.interactions_.item_index_map
        items = [parse_id(str(i), index) for i in body.items]
        if body.values is not None and len(body.values) != len(items):
            raise MfrecError(f"values has {len(body.values)} entries but items has {len(items)}")
        frame = model.recommend_new_user(items, values=body.values, k=body.k)
        return _fast_json(_dumps({"items": _rows(frame, "item", titles)}))

    if admin_token is not None:
        import hmac

        expected = f"Bearer {admin_token}".encode()

        @app.post("/admin/reload", response_model=schema.Reloaded,
                  responses={401: {"model": schema.Error, "description": "no or wrong bearer token"},
                             500: {"model": schema.Error, "description": "reload failed, old model kept"}})
        def reload(authorization: str | None = Header(None, description="Bearer <admin token>")) -> Any:
            if not hmac.compare_digest((authorization or "").encode(), expected):
                return JSONResponse(status_code=401, content={"detail": "admin endpoints need the bearer token"},
                                    headers={"WWW-Authenticate": "Bearer"})
            try:
                manifest = holder.reload()
            except Exception as exc:  # noqa: BLE001 - the old model keeps serving whatever went wrong
                return JSONResponse(status_code=500,
                                    content={"detail": f"reload failed, old model kept: {_reason(exc)}"})
            return {"status": "reloaded", "created": manifest.get("created")}

    add_pages(app, holder, max_k=max_k, errors=errors)

    del fastapi
    if fast_routes:
        import re

        app.add_middleware(_FastRoutes, max_k=max_k, inline=inline, routes=[
            (re.compile(r"/users/([^/]+)/recommendations"), recommendations_body, ("k", "exclude_seen")),
            (re.compile(r"/items/([^/]+)/users"), item_users_body, ("k",)),
            (re.compile(r"/items/([^/]+)/similar"), item_similar_body, ("k",)),
            (re.compile(r"/users/([^/]+)/similar"), user_similar_body, ("k",)),
        ])
    if cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    if max_body_bytes:  # added last: the outermost layer, it sees every request first
        app.add_middleware(_BodyLimit, limit=max_body_bytes)
    return app


async def _watch(holder: ModelHolder, interval: float) -> None:
    """Background task: every ``interval`` seconds, swap in the model file if it changed (load in a thread).

    It never ends on an error: a failed swap is logged (one line) by ``reload_if_changed``, anything else here too.
    """
    import anyio.to_thread

    while True:
        await asyncio.sleep(interval)
        try:
            if holder.file_signature() != holder.loaded_signature:
                await anyio.to_thread.run_sync(holder.reload_if_changed)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - keep watching
            _log.error("mfrec: watching the model file failed, still watching: %s", _reason(exc))


def check_listen_address(host: str, port: int) -> None:
    """Refuse, before starting, a port outside 1..65535, a host that does not resolve, or an address this process
    cannot listen on (in use, not local, no permission): one :class:`MfrecError` line instead of uvicorn's log."""
    import socket

    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise MfrecError(f"port must be an integer in 1..65535, got {clip(port)}")
    if not isinstance(host, str) or not host or len(host) > 253:
        raise MfrecError(f"host must be a name or an IP address, got {clip(host)}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise MfrecError(f"host {clip(host)} does not resolve ({exc})") from None
    family, kind, proto, _, address = infos[0]
    try:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        raise MfrecError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None


def _reason(exc: BaseException) -> str:
    """One line saying why, for logs and HTTP bodies: absolute paths cut to the file name, at most 200 chars."""
    text = str(exc) if isinstance(exc, MfrecError) else f"{type(exc).__name__}: {exc}"
    return one_line(re.sub(r"(?<![\w.])/(?:[^/\s:'\"]+/)+([^/\s:'\"]+)", r"\1", text))


_THREAD_LIMITS: list[Any] = []  # held for the process's lifetime


def _one_thread_per_process(kernels_too: bool) -> None:
    """One BLAS thread (and one kernel thread) in this process: requests, not kernels, run in parallel.

    Multi-threaded BLAS calls from many request threads at once contend for the same worker threads
    (measured: ~30 req/s instead of hundreds). numpy must already be imported (it is: this module imports it),
    or the limit would find no BLAS library to limit.
    """
    from threadpoolctl import threadpool_limits

    _THREAD_LIMITS.append(threadpool_limits(limits=1, user_api="blas"))
    if kernels_too:
        from mfrec.kernels.threads import set_num_threads

        set_num_threads(1)


def app_from_environment():
    """The uvicorn app factory of each worker process of ``serve(..., workers > 1)`` (config from the env)."""
    config = json.loads(os.environ[_CONFIG_ENV])
    _one_thread_per_process(kernels_too=True)
    return create_app(config["model_path"], max_k=config["max_k"], max_body_bytes=config["max_body_bytes"],
                      watch_interval=config["watch_interval"], inline=True, admin_token=config.get("admin_token"),
                      cors_origins=config.get("cors_origins", ()), index=config.get("index"))


def default_workers() -> int:
    """``mfrec serve``'s default number of worker processes: one per core this process may use, at most 4."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 4))


def serve(model_path: str | Path, host: str = "127.0.0.1", port: int = 8000, *, max_k: int = DEFAULT_MAX_K,
          max_body_bytes: int = DEFAULT_MAX_BODY, log_level: str = "info", workers: int | None = None,
          watch_interval: float | None = None, access_log: bool = False, admin_token: str | None = None,
          cors_origins: list[str] | tuple[str, ...] = (), index: str | None = None) -> None:
    """Run the service with uvicorn (blocking).

    Parameters
    ----------
    model_path : path
        A model file written by ``model.save`` / ``mfrec train``.
    host, port : bind address (127.0.0.1 by default: this machine only).
    max_k, max_body_bytes : caps on ``k`` and on request bodies.
    workers : int, optional
        Worker processes sharing the socket (each holds the model; one BLAS and one kernel thread each).
        Default :func:`default_workers`: one per core, at most 4 (on 2 cores, 2 workers cut the p99 at
        200 req/s from 28 to 13.5 ms against one, docs/benchmarks.md).
    watch_interval : float, optional
        Seconds between checks of the model file (swap in a changed file); default 1 s with several
        workers, off with one (reload with ``POST /admin/reload`` or SIGHUP).
    access_log : bool, default False
        uvicorn's per-request log line (off by default: it costs latency on every request).
    admin_token : str, optional
        Enables ``POST /admin/reload`` for requests with ``Authorization: Bearer <token>`` (see :func:`create_app`).
    cors_origins : list of str
        Browser origins allowed to call the API (none: CORS off).
    index : {"exact", "hnsw"}, optional
        Approximate top-k (:meth:`mfrec.models.base.FactorModel.build_index`): the file's index or one built at
        load; ``"exact"`` ignores a saved index; None serves the file as it is.

    SIGHUP reloads the model file (one worker) or replaces the workers one at a time (several).
    """
    uvicorn = require_extra("uvicorn", "serve")
    import signal

    if workers is None:
        workers = default_workers()

    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise MfrecError(f"workers must be an integer >= 1, got {workers!r}")
    if watch_interval is not None and not watch_interval > 0:
        raise MfrecError(f"watch_interval must be > 0 seconds, got {watch_interval!r}")
    check_listen_address(host, port)
    if admin_token is not None and len(admin_token) < 16:
        raise MfrecError("the admin token must be at least 16 characters (e.g. `openssl rand -hex 16`)")
    if workers > 1:
        from mfrec.persist import load

        load(model_path)  # a bad file fails here, once, with its message, not in every worker
        os.environ[_CONFIG_ENV] = json.dumps({
            "model_path": str(Path(model_path).resolve()), "max_k": max_k, "max_body_bytes": max_body_bytes,
            "watch_interval": DEFAULT_WATCH_INTERVAL if watch_interval is None else watch_interval,
            "admin_token": admin_token, "cors_origins": list(cors_origins), "index": index,
        })
        uvicorn.run("mfrec.serve:app_from_environment", factory=True, host=host, port=port, workers=workers,
                    log_level=log_level, access_log=access_log)
        return
    _one_thread_per_process(kernels_too=False)
    app = create_app(model_path, max_k=max_k, max_body_bytes=max_body_bytes, watch_interval=watch_interval,
                     admin_token=admin_token, cors_origins=cors_origins, index=index)
    if hasattr(signal, "SIGHUP"):
        def _on_hup(signum: int, frame: Any) -> None:
            try:
                app.state.holder.reload()
            except Exception as exc:  # noqa: BLE001 - keep serving the old model
                print(f"mfrec: reload failed, old model kept: {_reason(exc)}", flush=True)

        signal.signal(signal.SIGHUP, _on_hup)
    uvicorn.run(app, host=host, port=port, log_level=log_level, workers=1, access_log=access_log)
