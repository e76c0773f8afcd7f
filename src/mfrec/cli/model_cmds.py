"""``mfrec train | evaluate | tune | recommend | users-for-item | similar-items | similar-users | serve``."""

from __future__ import annotations

import argparse
import inspect
import ast
import sys
import time
from pathlib import Path
from typing import Any

from mfrec.cli._common import (
    MAX_CANDIDATES,
    MAX_CV,
    MAX_K,
    add_data_arguments,
    check_output_path,
    default_duplicates,
    bounded_float,
    bounded_int,
    load_data,
    print_json,
)
from mfrec.exceptions import InvalidParameterError

#: CLI model names -> (module, class name). Imported lazily so `mfrec --help` stays fast.
MODELS: dict[str, tuple[str, str]] = {
    "implicit-als": ("mfrec.models.implicit", "ImplicitALS"),
    "explicit-als": ("mfrec.models.explicit", "ExplicitALS"),
    "sgd": ("mfrec.models.explicit", "SGDFactorization"),
    "content": ("mfrec.models.content", "ContentBased"),
    "hybrid": ("mfrec.models.content", "HybridALS"),
    "popularity": ("mfrec.models.baselines", "Popularity"),
    "biases": ("mfrec.models.baselines", "Biases"),
}


def model_class(name: str) -> type:
    import importlib

    if name not in MODELS:
        raise InvalidParameterError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    module, cls = MODELS[name]
    try:
        return getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as exc:
        raise InvalidParameterError(f"model {name!r} is not available in this version of mfrec") from exc


def parse_value(text: str) -> Any:
    """'64' -> 64, '0.1' -> 0.1, 'true' -> True, 'cg' -> 'cg'."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_params(tokens: list[str], grid: bool = False) -> dict[str, Any]:
    """KEY=VALUE tokens (VALUE may be a comma list when ``grid``) -> dict."""
    params: dict[str, Any] = {}
    for token in tokens:
        if "=" not in token:
            raise InvalidParameterError(f"hyperparameter {token!r} must look like name=value")
        key, value = token.split("=", 1)
        key = key.strip().replace("-", "_")
        if not key.isidentifier():
            raise InvalidParameterError(f"hyperparameter name {key!r} is not valid")
        params[key] = [parse_value(v) for v in value.split(",") if v != ""] if grid else parse_value(value)
    return params


def build_model(name: str, params: dict[str, Any]) -> Any:
    cls = model_class(name)
    try:
        return cls(**params)
    except TypeError as exc:
        import inspect

        allowed = [p for p in inspect.signature(cls).parameters if p != "self"]
        raise InvalidParameterError(
            f"{exc}; {name} takes: {', '.join(allowed)}".replace(f"{cls.__name__}.__init__() ", "")
        ) from exc


def _progress(args: argparse.Namespace, kind: str, desc: str):
    """A progress bar for ``kind`` events: on a terminal, unless --quiet or --json."""
    from mfrec._progress import tqdm_listener

    quiet = getattr(args, "quiet", False) or getattr(args, "json", False)
    return tqdm_listener(kind, desc, enabled=not quiet and sys.stderr.isatty())


def _add_model_arguments(p: argparse.ArgumentParser, grid: bool = False) -> None:
    p.add_argument("--model", required=True, choices=sorted(MODELS), help="which model")
    p.add_argument(
        "params",
        nargs="*",
        default=[],
        metavar="NAME=VALUE",
        help="hyperparameters, e.g. factors=32 regularization=5 (see README: what regularization means per model)"
        + (" (comma lists form the grid: factors=16,32,64)" if grid else ""),
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print JSON for machines")


def _add_attribute_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("attributes (content and hybrid models)")
    g.add_argument("--user-attributes", help="CSV of user attributes, first column the user id")
    g.add_argument("--item-attributes", help="CSV of item attributes, first column the item id")


def _attributes(args: argparse.Namespace, dataset: Any, data: Any) -> dict[str, Any]:
    """Attribute keyword arguments for ``fit`` of content/hybrid models (empty for the others).

    A dataset's own attribute tables are encoded with its attribute spec (free-text columns left out: TF-IDF of
    titles makes ContentBased's per-user solve slow); files given on the command line are read as CSV indexed
    by their first column and encoded by inference (numbers, "a|b" labels, categories).
    """
    if args.model not in ("content", "hybrid"):
        return {}
    import pandas as pd

    from mfrec.data.attributes import Attributes

    kwargs: dict[str, Any] = {}
    for side, ids in (("user", data.user_ids), ("item", data.item_ids)):
        path = getattr(args, f"{side}_attributes", None)
        if path:
            try:
                kwargs[f"{side}_attributes"] = pd.read_csv(path, index_col=0)
            except (OSError, ValueError) as exc:
                raise InvalidParameterError(f"{path}: cannot read {side} attributes ({exc})") from exc
        elif dataset is not None and getattr(dataset, f"{side}_attributes", None) is not None:
            spec = {k: v for k, v in (getattr(dataset, f"{side}_attribute_spec", None) or {}).items() if k != "text"}
            if spec:
                frame = getattr(dataset, f"{side}_attributes")
                kwargs[f"{side}_attributes"] = Attributes.from_frame(frame, ids=ids, missing="zeros", extra="keep", **spec)
    if not kwargs:
        raise InvalidParameterError(
            f"model {args.model!r} needs attributes: use a dataset that has them (ml-100k, ...) or "
            "--user-attributes / --item-attributes"
        )
    return kwargs


def _add_split_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("evaluation split")
    g.add_argument("--split", default="per-user", choices=("per-user", "random", "temporal", "leave-one-out"),
                   help="how to hold out test data (default: per-user)")
    g.add_argument("--test-fraction", type=bounded_float(0.0, 1.0, open_low=True, open_high=True), default=0.2)
    g.add_argument("--test", help="a separate test file (same columns as DATA) instead of a split")
    g.add_argument("-k", type=bounded_int(1, MAX_K), default=10, help="cut-off of the ranking metrics (default 10)")
    g.add_argument("--relevance-threshold", type=float, default=None,
                   help="only test entries with value >= this count as relevant for ranking metrics")
    g.add_argument("--seed", type=bounded_int(0, 2**32 - 1), default=0)


def register(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="fit a model and save it to a file")
    add_data_arguments(train)
    _add_model_arguments(train)
    _add_attribute_arguments(train)
    train.add_argument("--out", required=True, help="model file to write (e.g. model.mfrec)")
    train.add_argument("--index", choices=["exact", "hnsw"], default="exact",
                       help="hnsw: also build HNSW graphs for approximate top-k and save them in the file, so "
                            "`mfrec serve` starts without building them ('ann' extra; factor models)")
    dist = train.add_argument_group("distributed training (implicit-als, explicit-als; needs the 'distributed' extra)")
    dist.add_argument("--scheduler", metavar="ADDRESS", help="a dask scheduler, e.g. tcp://HOST:8786")
    dist.add_argument("--workers", type=bounded_int(1, 1024), metavar="N",
                      help="fit on a local dask cluster of N worker processes")
    train.set_defaults(func=train_command)

    ev = sub.add_parser("evaluate", help="train on a split of DATA and report metrics on the held-out part")
    add_data_arguments(ev)
    _add_model_arguments(ev)
    _add_attribute_arguments(ev)
    _add_split_arguments(ev)
    ev.add_argument("--cv", type=bounded_int(2, MAX_CV), default=None,
                    help=f"k-fold cross-validation instead of one split (2..{MAX_CV} folds)")
    ev.add_argument("--plot", help="write the learning curve PNG to this path")
    ev.add_argument("--verbose", action="store_true", help="with --cv: every column (counts, times)")
    ev.set_defaults(func=evaluate_command)

    tune = sub.add_parser("tune", help="grid or random search over hyperparameters by cross-validation")
    add_data_arguments(tune)
    _add_model_arguments(tune, grid=True)
    _add_attribute_arguments(tune)
    tune.add_argument("--metric", default=None, help="metric to select on (default: rmse for explicit models, ndcg@k otherwise)")
    tune.add_argument("--cv", type=bounded_int(2, MAX_CV), default=3, help=f"folds (default 3, at most {MAX_CV})")
    tune.add_argument("--random", type=bounded_int(1, MAX_CANDIDATES), default=None, metavar="N",
                      help="random search with N candidates")
    tune.add_argument("-k", type=bounded_int(1, MAX_K), default=10)
    tune.add_argument("--seed", type=bounded_int(0, 2**32 - 1), default=0)
    tune.add_argument("--plot", help="write the CV heatmap PNG to this path")
    tune.add_argument("--out", help="refit the best configuration on all data and save it here")
    tune.add_argument("--verbose", action="store_true", help="every column of the results (stds, counts, times)")
    tune.set_defaults(func=tune_command)

    for name, (key, helptext) in _QUERIES.items():
        p = sub.add_parser(name, help=helptext)
        p.add_argument("model", metavar="MODEL", help=_MODEL_HELP)
        p.add_argument(f"--{key}", required=True, help=f"the {key} id")
        p.add_argument("-k", type=bounded_int(1, MAX_K), default=10)
        if name == "recommend":
            p.add_argument("--include-seen", action="store_true", help="also rank items the user already has")
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=query_command, query=name, id_key=key)

    srv = sub.add_parser("serve", help="serve a model over HTTP (needs the 'serve' extra)")
    srv.add_argument("model", metavar="MODEL", help=_MODEL_HELP)
    srv.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    srv.add_argument("--port", type=bounded_int(1, 65535), default=8000)
    srv.add_argument("--max-k", type=bounded_int(1, 100_000), default=1000)
    srv.add_argument("--max-body-bytes", type=bounded_int(1024, 1 << 30), default=1 << 20)
    srv.add_argument("--workers", type=bounded_int(1, 256), default=None,
                     help="worker processes sharing the port (default: one per core, at most 4)")
    srv.add_argument("--watch", type=bounded_float(0.0, 86400.0, open_low=True), default=None, metavar="SECONDS",
                     help="swap in a changed model file, checking every SECONDS (default: 1 with --workers > 1)")
    srv.add_argument("--access-log", action="store_true", help="a log line per request (off by default: it costs "
                                                                  "latency)")
    srv.add_argument("--no-access-log", action="store_true", help=argparse.SUPPRESS)  # the former switch, now default
    srv.add_argument("--admin-token", default=None, metavar="TOKEN",
                     help="enables POST /admin/reload for requests with 'Authorization: Bearer TOKEN' (at least 16 "
                          "characters; default: $MFREC_ADMIN_TOKEN; without a token the admin routes do not exist)")
    srv.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                     help="a browser origin allowed to call the API, e.g. https://app.example.com (repeat for more; "
                          "default: none, CORS off)")
    srv.add_argument("--index", choices=["exact", "hnsw"], default=None,
                     help="top-k by scoring every item (exact) or from an HNSW graph (hnsw: the 'ann' extra; the "
                          "model file's index, or one built at start); default: as the model file has it")
    srv.set_defaults(func=serve_command)


# ---------------------------------------------------------------------- commands
def _titles_extra(dataset: Any) -> dict[str, Any]:
    titles = getattr(dataset, "item_titles", None) if dataset is not None else None
    if titles is None or len(titles) == 0:
        return {}
    ids = [x.item() if hasattr(x, "item") else x for x in titles.index.tolist()]
    return {"item_titles": {"ids": ids, "titles": [str(t) for t in titles.tolist()]}}


def train_command(args: argparse.Namespace) -> int:
    from mfrec.persist import save

    check_output_path(args.out, "--out")
    data, dataset = load_data(args)
    model = build_model(args.model, parse_params(args.params))
    start = time.perf_counter()
    if args.scheduler or args.workers:
        if args.model not in ("implicit-als", "explicit-als", "hybrid"):
            raise InvalidParameterError(
                f"--scheduler/--workers train implicit-als, explicit-als and hybrid, not {args.model}")
        from mfrec.distributed import cluster_client
        from mfrec.distributed import fit as distributed_fit

        with cluster_client(args.scheduler, args.workers) as client:
            link = getattr(client, "dashboard_link", None)
            if link and not args.json:
                print(f"dask dashboard: {link}", file=sys.stderr)
            with _progress(args, "iteration", f"training {args.model} on dask"):
                model = distributed_fit(model, data, client, **_attributes(args, dataset, data))
    else:
        with _progress(args, "iteration", f"training {args.model}"):
            model.fit(data, **_attributes(args, dataset, data))
    seconds = time.perf_counter() - start
    index_seconds = None
    if args.index == "hnsw":
        if not hasattr(model, "build_index"):
            raise InvalidParameterError(f"--index hnsw needs a factor model; {args.model} has no factors to index")
        index_start = time.perf_counter()
        model.build_index("hnsw")
        index_seconds = round(time.perf_counter() - index_start, 3)
    path = save(model, args.out, extra={"dataset": _dataset_label(args.data)} | _titles_extra(dataset))
    result = {
        "model": args.model,
        "params": model.get_params(),
        "out": str(path),
        "fit_seconds": round(seconds, 3),
        "index": args.index,
        "index_seconds": index_seconds,
        "users": data.n_users,
        "items": data.n_items,
        "interactions": data.nnz,
    }
    history = getattr(model, "history_", None)
    if history:
        result["final"] = history[-1]
    if args.json:
        print_json(result)
    else:
        index = f", HNSW index built in {index_seconds:.2f} s" if index_seconds is not None else ""
        print(f"trained {args.model} on {data.n_users:,} users x {data.n_items:,} items "
              f"({data.nnz:,} interactions) in {seconds:.2f} s{index} -> {path}")
    return 0


def _split(data: Any, args: argparse.Namespace) -> tuple[Any, Any]:
    from mfrec.data import split as splits

    if args.split == "per-user":
        s = splits.per_user_split(data, test_fraction=args.test_fraction, seed=args.seed)
    elif args.split == "random":
        s = splits.random_split(data, test_fraction=args.test_fraction, seed=args.seed)
    elif args.split == "temporal":
        s = splits.temporal_split(data, cutoff=1.0 - args.test_fraction)
    else:
        s = splits.leave_k_out(data, k=1, seed=args.seed)
    return s.train, s.test


def evaluate_command(args: argparse.Namespace) -> int:
    from mfrec.evaluation.evaluator import evaluate

    check_output_path(args.plot, "--plot")
    data, dataset = load_data(args)
    params = parse_params(args.params)
    if args.cv:
        from mfrec.evaluation.search import cross_validate

        with _progress(args, "task", f"cross-validating {args.model}"):
            table = cross_validate(build_model(args.model, params), data, cv=args.cv, k=args.k, seed=args.seed,
                                   fit_params=_attributes(args, dataset, data))
        if args.json:
            print_json({"model": args.model, "params": params, "folds": table.reset_index().to_dict(orient="records")})
        else:
            shown = table if args.verbose else table[[c for c in table.columns if str(c).startswith(_TABLE_METRICS)]]
            print(shown.to_string(float_format=lambda v: f"{v:.4f}"))
        return 0
    if args.test:
        from mfrec.data.interactions import read_interactions

        train = data
        test = read_interactions(args.test, user=args.user, item=args.item, value=args.value,
                                 timestamp=args.timestamp, sep=args.sep, header=not args.no_header,
                                 names=[n.strip() for n in args.names.split(",")] if args.names else None,
                                 duplicates=args.duplicates or default_duplicates(args.model))
    else:
        train, test = _split(data, args)
    model = build_model(args.model, params)
    start = time.perf_counter()
    fit_kwargs = _attributes(args, dataset, train)
    if args.plot and "validation" in inspect.signature(model.fit).parameters:
        fit_kwargs["validation"] = test  # the learning curve then shows the held-out metric per iteration
    with _progress(args, "iteration", f"training {args.model}"):
        model.fit(train, **fit_kwargs)
    seconds = time.perf_counter() - start
    kwargs = {"k": args.k}
    if args.relevance_threshold is not None:
        kwargs["relevance_threshold"] = args.relevance_threshold
    metrics = evaluate(model, test, **kwargs)
    if args.plot and getattr(model, "history_", None):
        from mfrec import plots

        plots.learning_curve(model.history_, path=args.plot)
    result = {"model": args.model, "params": model.get_params(), "fit_seconds": round(seconds, 3)} | metrics
    if args.json:
        print_json(result)
    else:
        print(f"{args.model}  fit {seconds:.2f} s")
        for key, value in metrics.items():
            print(f"  {key:<14} {value:.4f}" if isinstance(value, float) else f"  {key:<14} {value}")
    return 0


def tune_command(args: argparse.Namespace) -> int:
    from mfrec.evaluation.search import GridSearch, RandomSearch

    check_output_path(args.out, "--out")
    check_output_path(args.plot, "--plot")
    grid = parse_params(args.params, grid=True)
    if not grid:
        raise InvalidParameterError("give at least one hyperparameter grid, e.g. factors=16,32,64")
    data, dataset = load_data(args)
    estimator = build_model(args.model, {})
    explicit = args.model in ("explicit-als", "sgd", "biases")
    metric = args.metric or ("rmse" if explicit else f"ndcg@{args.k}")
    if args.random:
        search = RandomSearch(estimator, grid, n_iter=args.random, metric=metric, cv=args.cv, k=args.k, seed=args.seed)
    else:
        search = GridSearch(estimator, grid, metric=metric, cv=args.cv, k=args.k, seed=args.seed)
    start = time.perf_counter()
    with _progress(args, "task", f"tuning {args.model}"):
        search.fit(data, **_attributes(args, dataset, data))
    seconds = time.perf_counter() - start
    if args.plot:
        from mfrec import plots

        keys = list(grid)
        x = "factors" if "factors" in grid else keys[0]
        y = "regularization" if "regularization" in grid and x != "regularization" else (keys[1] if len(keys) > 1 else x)
        plots.cv_heatmap(search.results_, x=x, y=y, metric=metric, path=args.plot)
    if args.out:
        from mfrec.persist import save

        save(search.best_estimator_, args.out, extra={"dataset": _dataset_label(args.data)} | _titles_extra(dataset),
             metrics={f"cv_{metric}": float(search.best_score_)})
    result = {
        "model": args.model,
        "metric": metric,
        "best_params": search.best_params_,
        "best_score": float(search.best_score_),
        "seconds": round(seconds, 2),
        "warnings": list(search.edge_warnings_),
        "results": search.results_.to_dict(orient="records"),
    }
    if args.json:
        print_json(result)
    else:
        table = search.results_ if args.verbose else _metric_table(search.results_, list(grid))
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        print(f"best {metric} = {search.best_score_:.4f} with {search.best_params_}")
    for message in search.edge_warnings_:
        print(f"mfrec: note: {message}", file=sys.stderr)
    return 0


_MODEL_HELP = ("a model file written by `mfrec train`, or a sharded model directory written by the workers of a "
               "distributed fit (mfrec.distributed.fit(..., path=DIR))")

#: what a search or cross-validation table shows by default (--verbose: every column, counts and times included)
_TABLE_METRICS = ("rmse", "mae", "precision@", "recall@", "ndcg@", "map@", "mrr", "hit_rate@", "auc")


def _metric_table(results: Any, params: list[str]) -> Any:
    """The hyperparameters, the mean of each metric and the rank: the columns a person compares."""
    means = [c for c in results.columns if c.endswith("_mean") and c[:-5].startswith(_TABLE_METRICS)]
    table = results[[*params, *means, *(["rank"] if "rank" in results.columns else [])]].copy()
    table.columns = [c[:-5] if c in means else c for c in table.columns]
    return table


def _load_model(path: str) -> Any:
    from mfrec.persist import load

    return load(Path(path))


def _titles(model: Any) -> dict[Any, str]:
    meta = (getattr(model, "manifest_", {}).get("extra") or {}).get("item_titles") or {}
    return dict(zip(meta.get("ids", []), meta.get("titles", [])))


def _print_frame(frame: Any, key: str, args: argparse.Namespace, titles: dict[Any, str], header: dict) -> None:
    rows = []
    for ident, score in zip(frame[key].tolist(), frame["score"].tolist()):
        row = {key: ident, "score": float(score)}
        if key == "item" and ident in titles:
            row["title"] = titles[ident]
        rows.append(row)
    if args.json:
        print_json(header | {"results": rows})
        return
    for rank, row in enumerate(rows, 1):
        title = f"  {row['title']}" if "title" in row else ""
        print(f"{rank:>3}. {row[key]!s:<12} {row['score']:>9.4f}{title}")


def _query_id(model: Any, raw: str, key: str) -> Any:
    from mfrec.serve import parse_id

    index = model.interactions_.user_index_map if key == "user" else model.interactions_.item_index_map
    return parse_id(raw, index)


#: the four scenarios: CLI name -> (the id it takes, help)
_QUERIES = {
    "recommend": ("user", "items for a user"),
    "users-for-item": ("item", "users most likely to want an item"),
    "similar-items": ("item", "items like an item"),
    "similar-users": ("user", "users like a user"),
}


def query_command(args: argparse.Namespace) -> int:
    """``recommend``, ``users-for-item``, ``similar-items``, ``similar-users``: one model query, printed."""
    model = _load_model(args.model)
    key = args.id_key
    query = _query_id(model, getattr(args, key), key)
    titles = _titles(model)
    if args.query == "recommend":
        frame, result_key = model.recommend(query, k=args.k, exclude_seen=not args.include_seen), "item"
    elif args.query == "users-for-item":
        frame, result_key = model.recommend_users(query, k=args.k), "user"
    elif args.query == "similar-items":
        frame, result_key = model.similar_items(query, k=args.k), "item"
    else:
        frame, result_key = model.similar_users(query, k=args.k), "user"
    if not args.json and key == "item" and query in titles:
        lead = "users for" if result_key == "user" else "items like"
        print(f"{lead} {query}: {titles[query]}")
    _print_frame(frame, result_key, args, titles, {key: query})
    return 0


def serve_command(args: argparse.Namespace) -> int:
    from mfrec.serve import serve

    import os

    token = args.admin_token if args.admin_token is not None else (os.environ.get("MFREC_ADMIN_TOKEN") or None)
    serve(args.model, host=args.host, port=args.port, max_k=args.max_k, max_body_bytes=args.max_body_bytes,
          workers=args.workers, watch_interval=args.watch, access_log=args.access_log, admin_token=token,
          cors_origins=args.cors_origin, index=args.index)
    return 0


def _dataset_label(spec: str) -> str:
    """What a model file records about its training data: a dataset's name, or a data file's name without its
    folders (a model file travels; the folders it was trained in are nobody else's business)."""
    from pathlib import Path

    return Path(spec).name  # a dataset name has no folders: it is its own name
