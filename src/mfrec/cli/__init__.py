"""The ``mfrec`` command: a thin shell that parses arguments, calls the library and formats results.

Every :class:`mfrec.MfrecError` (bad data, unknown id, bad parameter, bad model file...) becomes one line on
stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mfrec._version import __version__
from mfrec.cli import _common, data_cmd, demo_cmd, model_cmds

__all__ = ["main", "build_parser"]

_COMMAND_MODULES = (data_cmd, model_cmds, demo_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mfrec",
        description="Recommender systems by matrix factorization: data, training, evaluation, recommendation.",
    )
    parser.add_argument("--version", action="version", version=f"mfrec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in _COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return _common.run_guarded(args.func, args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
