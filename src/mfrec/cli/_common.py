"""Helpers shared by the CLI commands: error handling, data arguments, output."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mfrec.exceptions import MfrecError

EXIT_OK = 0
EXIT_USAGE = 2


def fail(message: str) -> int:
    """Print one line on stderr and return the error exit code."""
    message = " ".join(str(message).split())  # one line, whatever the message held
    print(f"mfrec: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def run_guarded(func: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Run a command; turn the project's errors (and I/O errors) into one line + exit 2."""
    try:
        with warnings.catch_warnings():
            if not getattr(args, "verbose", False):
                warnings.simplefilter("ignore")
            code = func(args)
        return EXIT_OK if code is None else int(code)
    except MfrecError as exc:
        return fail(str(exc))
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        return fail(f"{exc.filename or ''}: {exc.strerror or exc}")
    except KeyboardInterrupt:
        print("mfrec: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `mfrec ... | head`
        try:
            sys.stdout.close()
        except Exception:
            pass
        return EXIT_OK


def add_data_arguments(parser: argparse.ArgumentParser, positional: str = "data") -> None:
    """DATA (a dataset name or a CSV/TSV/Parquet path) and the options to read it."""
    parser.add_argument(
        positional,
        metavar="DATA",
        help="a dataset name (ml-100k, lastfm-2k, synthetic, ...) or a CSV/TSV/Parquet file of interactions",
    )
    g = parser.add_argument_group("reading data")
    g.add_argument("--data-dir", help="folder holding the dataset files (otherwise they are downloaded and cached)")
    g.add_argument("--user", help="user id column (default: user, userId, user_id, ...)")
    g.add_argument("--item", help="item id column (default: item, itemId, movieId, ...)")
    g.add_argument("--value", help="value column: rating, play count, confidence (default: rating, value, ...)")
    g.add_argument("--timestamp", help="timestamp column (default: timestamp, time, ...)")
    g.add_argument("--event", help="event type column")
    g.add_argument("--sep", help="field separator for text files (default: ',' for .csv, tab otherwise)")
    g.add_argument("--no-header", action="store_true", help="the text file has no header line")
    g.add_argument("--names", help="comma-separated column names for a file without a header")
    g.add_argument(
        "--duplicates",
        default="sum",
        choices=("sum", "mean", "max", "last", "error"),
        help="how repeated (user, item) rows merge (default: sum)",
    )
    g.add_argument("--synthetic-users", type=int, default=1000, help=argparse.SUPPRESS)
    g.add_argument("--synthetic-items", type=int, default=500, help=argparse.SUPPRESS)


def load_data(args: argparse.Namespace, positional: str = "data") -> tuple[Any, Any]:
    """(Interactions, Dataset or None) for the DATA argument: an existing file, or a dataset name."""
    from mfrec.data.interactions import read_interactions

    spec = getattr(args, positional)
    path = Path(spec)
    if path.exists() or os.sep in spec or path.suffix:
        names = [n.strip() for n in args.names.split(",")] if args.names else None
        data = read_interactions(
            path,
            user=args.user,
            item=args.item,
            value=args.value,
            timestamp=args.timestamp,
            event=args.event,
            duplicates=args.duplicates,
            sep=args.sep,
            header=not args.no_header,
            names=names,
        )
        return data, None
    from mfrec.data import datasets

    if spec == "synthetic":
        dataset = datasets.synthetic(n_users=args.synthetic_users, n_items=args.synthetic_items)
    else:
        dataset = datasets.load(spec, data_dir=args.data_dir)
    return dataset.interactions, dataset


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def print_json(obj: Any) -> None:
    print(json.dumps(_jsonable(obj), indent=2, ensure_ascii=False))
