"""Progress events, decoupled from how they are shown.

Library code calls :func:`report` at natural steps (an ALS iteration, a fold fitted during a search); nothing
happens unless a caller listens. The CLI listens with :func:`tqdm_listener` to draw progress bars on a
terminal. Listeners live in a context variable, so they are per thread / per task and never global state.

Events are dicts with a ``"kind"``: ``"start"`` (``model``, ``total``: a fit's first iteration is about to
run), ``"iteration"`` (``model``, ``iteration``, ``total`` and the history entry's numbers) or ``"task"``
(``done``, ``total``, ``what``).

:func:`fit_progress` is what every model's ``fit(..., show_progress=None, callback=None)`` uses.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

Listener = Callable[[dict[str, Any]], None]
_listener: ContextVar[Listener | None] = ContextVar("mfrec_progress_listener", default=None)

__all__ = ["report", "listen", "tqdm_listener", "fit_progress", "quiet"]


def report(kind: str, **event: Any) -> None:
    """Send one event to the current listener, if any (cheap when nobody listens)."""
    listener = _listener.get()
    if listener is not None:
        listener({"kind": kind, **event})


@contextlib.contextmanager
def listen(listener: Listener | None) -> Iterator[None]:
    """Route :func:`report` events to ``listener`` inside the ``with`` block."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


@contextlib.contextmanager
def tqdm_listener(kind: str, desc: str, enabled: bool | None = None) -> Iterator[None]:
    """Show events of ``kind`` as a tqdm bar on stderr; off when ``enabled`` is False or stderr is no terminal."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield
        return
    from tqdm.auto import tqdm

    bar = None

    def on_event(event: dict[str, Any]) -> None:
        nonlocal bar
        if kind == "iteration" and event.get("kind") == "start" and bar is None:
            # the bar appears when the first iteration starts, so its first rate is a real one
            bar = tqdm(total=event.get("total"), desc=desc, unit=kind, leave=False, file=sys.stderr, mininterval=0)
            return
        if event.get("kind") != kind:
            return
        if bar is None:
            bar = tqdm(total=event.get("total"), desc=desc, unit=kind, leave=False, file=sys.stderr, mininterval=0)
        _advance(bar, event)

    with listen(on_event):
        try:
            yield
        finally:
            if bar is not None:
                bar.close()


def _advance(bar: Any, event: dict[str, Any]) -> None:
    """One step of a bar, with the event's loss and metrics as its postfix."""
    bar.update(1)
    shown = {k: v for k, v in event.items() if k in ("loss", "val_rmse", "val_ndcg", "rmse") and v is not None}
    if shown:
        bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=False)


def _interactive() -> bool:
    """A person is watching: stderr is a terminal, or this runs in a Jupyter kernel."""
    return bool(getattr(sys.stderr, "isatty", lambda: False)()) or "ipykernel" in sys.modules


@contextlib.contextmanager
def fit_progress(callback: Callable[[int, float, dict[str, Any]], Any] | None = None,
                 show_progress: bool | None = None) -> Iterator[None]:
    """Progress of one ``fit``: a ``tqdm.auto`` bar and/or ``callback(iteration, seconds, entry)`` per iteration.

    ``entry`` is that iteration's ``history_`` dict (loss, validation metrics...), ``seconds`` the time since the
    fit's first iteration started. ``show_progress=None`` draws the bar when a person is watching (a terminal or
    a notebook) and nobody else already shows progress (the CLI, a search running this fit); True / False force
    it. Events still reach an outer listener.
    """
    outer = _listener.get()
    draw = (outer is None and _interactive()) if show_progress is None else bool(show_progress)
    if callback is None and not draw:
        yield
        return
    bar = None

    def on_event(event: dict[str, Any]) -> None:
        nonlocal bar
        if outer is not None:
            outer(event)
        kind = event.get("kind")
        if draw and kind in ("start", "iteration"):
            if bar is None:
                from tqdm.auto import tqdm

                bar = tqdm(total=event.get("total"), desc=str(event.get("model", "fit")), unit="it", leave=False)
            if kind == "iteration":
                _advance(bar, event)
        if callback is not None and kind == "iteration":
            entry = {k: v for k, v in event.items() if k not in ("kind", "model", "total")}
            callback(int(event["iteration"]), float(event.get("seconds", 0.0)), entry)

    with listen(on_event):
        try:
            yield
        finally:
            if bar is not None:
                bar.close()


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Fits inside this block draw no bars of their own (a search shows its own progress); an outer listener
    still hears every event."""
    if _listener.get() is not None:
        yield
        return
    with listen(lambda event: None):
        yield
