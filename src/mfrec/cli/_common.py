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

from mfrec.exceptions import InvalidParameterError as MfrecInvalidParameter
from mfrec.exceptions import MfrecError, clip

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
    except OSError as exc:  # a missing or unwritable file, a full disk: one line, the file and the reason
        where = f"{exc.filename}: " if exc.filename else ""
        return fail(f"{where}{exc.strerror or exc}")
    except MemoryError:
        return fail("out of memory; use smaller sizes (factors, k, folds) or a machine with more memory")
    except KeyboardInterrupt:
        print("mfrec: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `mfrec ... | head`
        try:
            sys.stdout.close()
        except Exception:
            pass
        return EXIT_OK


def bounded_int(lo: int, hi: int) -> Callable[[str], int]:
    """An argparse ``type`` for an integer option in ``lo..hi``: anything else is a one-line usage error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {clip(text)}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be between {lo} and {hi}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def bounded_float(lo: float, hi: float, *, open_low: bool = False, open_high: bool = False) -> Callable[[str], float]:
    """An argparse ``type`` for a finite float option in the range (bounds open or closed)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {clip(text)}") from None
        low_ok = value > lo if open_low else value >= lo
        high_ok = value < hi if open_high else value <= hi
        if not (np.isfinite(value) and low_ok and high_ok):
            left, right = "(" if open_low else "[", ")" if open_high else "]"
            raise argparse.ArgumentTypeError(f"must be in {left}{lo:g}, {hi:g}{right}, got {clip(text)}")
        return value

    parse.__name__ = "number"
    return parse


#: bounds of the size-like options: each is what one machine can hold, far above any sensible use
MAX_K = 10_000
MAX_CV = 100
MAX_CANDIDATES = 10_000
MAX_SYNTHETIC = 1_000_000


def check_output_path(path: str | None, option: str) -> None:
    """Refuse, before any work, an output path that cannot be written: empty, a folder, or below a file or an
    unwritable folder (``InvalidParameterError`` naming the option)."""
    if path is None:
        return
    if not path.strip():
        raise MfrecInvalidParameter(f"{option}: the path is empty")
    target = Path(path)
    if target.is_dir():
        raise MfrecInvalidParameter(f"{option} {path}: is a folder; give a file name")
    ancestor = target.parent if str(target.parent) else Path(".")
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise MfrecInvalidParameter(f"{option} {path}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise MfrecInvalidParameter(f"{option} {path}: cannot write into {ancestor}")


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
    g.add_argument("--sep", help="field separator for text files (default: sniffed from the first lines among "
                                 "',' ';' tab '|', preferring ',' for .csv and tab otherwise)")
    g.add_argument("--no-header", action="store_true", help="the text file has no header line")
    g.add_argument("--names", help="comma-separated column names for a file without a header")
    g.add_argument(
        "--duplicates",
        default=None,
        choices=("sum", "mean", "max", "last", "error"),
        help="how repeated (user, item) rows merge (default: last for the rating models explicit-als, sgd and "
             "biases, whose ratings are not additive: a re-rating replaces the earlier one, by timestamp where "
             "there is one; sum otherwise, where repeats are more plays or clicks)",
    )
    g.add_argument("--synthetic-users", type=bounded_int(2, MAX_SYNTHETIC), default=1000, help=argparse.SUPPRESS)
    g.add_argument("--synthetic-items", type=bounded_int(2, MAX_SYNTHETIC), default=500, help=argparse.SUPPRESS)


#: CLI models that predict ratings: repeated ratings of one pair are re-ratings, not amounts to add up
RATING_MODELS = ("explicit-als", "sgd", "biases")


def default_duplicates(model: str | None) -> str:
    """``"last"`` for the rating models (4 + 5 + 3 is not a rating of 12), ``"sum"`` for implicit feedback."""
    return "last" if model in RATING_MODELS else "sum"


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
            duplicates=args.duplicates or default_duplicates(getattr(args, "model", None)),
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
