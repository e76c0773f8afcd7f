"""The one exceptions module of mfrec.

Hierarchy::

    MfrecError                  base of everything mfrec raises on purpose
    ├── InvalidDataError        bad input data (file, row, column, id named in the message); also a ValueError
    ├── InvalidParameterError   a hyperparameter or argument outside its allowed range; also a ValueError
    ├── NotFittedError          an inference method called before ``fit``; also an AttributeError
    ├── UnknownIdError          a user or item id the model / data does not know; also a KeyError
    ├── ModelFitError           training produced non-finite factors or otherwise failed
    ├── ModelFileError          a saved model is truncated, tampered, unsafe or of an incompatible version
    ├── DatasetError            a dataset is missing, corrupt or cannot be downloaded
    └── MissingExtraError       an optional dependency is not installed (says which ``pip install mfrec[extra]``); also an ImportError

The CLI maps every ``MfrecError`` to one line on stderr and exit code 2. :func:`clip` and :func:`one_line` are
how a message quotes input: a value cut to about 80 characters, any text folded to one bounded line.
"""

from __future__ import annotations

__all__ = [
    "MfrecError",
    "InvalidDataError",
    "InvalidParameterError",
    "NotFittedError",
    "UnknownIdError",
    "ModelFitError",
    "ModelFileError",
    "DatasetError",
    "MissingExtraError",
    "clip",
    "one_line",
]


def clip(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to about ``limit`` characters: what an error message quotes of a value from the input."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 12]}... ({len(text)} chars)"


def one_line(text: object, limit: int = 200) -> str:
    """``str(text)`` with its whitespace folded to single spaces, cut to ``limit`` characters."""
    folded = " ".join(str(text).split())
    return folded if len(folded) <= limit else folded[: limit - 3] + "..."


class MfrecError(Exception):
    """Base class of every error mfrec raises deliberately."""


class InvalidDataError(MfrecError, ValueError):
    """Input data is unusable; the message names the file, row/line, column or id at fault."""


class InvalidParameterError(MfrecError, ValueError):
    """A hyperparameter or argument is outside its allowed range; the message names it and the range."""


class NotFittedError(MfrecError, AttributeError):
    """An inference method was called on a model that has not been fitted."""


class UnknownIdError(MfrecError, KeyError):
    """A user or item id is not known to the model or dataset."""

    def __str__(self) -> str:  # KeyError would repr() the message; keep it readable
        return str(self.args[0]) if self.args else "unknown id"


class ModelFitError(MfrecError):
    """Training failed (for example the factors became non-finite)."""


class ModelFileError(MfrecError):
    """A model file is truncated, tampered with, unsafe, or of an incompatible format version."""


class DatasetError(MfrecError):
    """A dataset cannot be found, read, verified or downloaded."""


class MissingExtraError(MfrecError, ImportError):
    """An optional dependency is missing; the message says which extra to install."""


def require_extra(module: str, extra: str):
    """Import ``module`` lazily, raising :class:`MissingExtraError` naming ``pip install mfrec[extra]``."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingExtraError(
            f"{module!r} is not installed; install it with: pip install 'mfrec[{extra}]'"
        ) from exc
