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


class _Parser(argparse.ArgumentParser):
    """Usage errors are one line on stderr and exit code 2, like every other error."""

    def error(self, message: str):  # type: ignore[override]
        _common.fail(f"{message} (see: {self.prog} --help)")
        raise SystemExit(_common.EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
    # NAME=VALUE hyperparameters may stand anywhere (argparse only takes one positional run): collect strays
    args, extras = parser.parse_known_args(argv)
    if extras:
        if not hasattr(args, "params") or any(x.startswith("-") for x in extras):
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
        args.params = list(args.params or []) + extras
    return _common.run_guarded(args.func, args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
