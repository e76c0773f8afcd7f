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
    bar = _LazyBar(desc=desc, unit=kind, file=sys.stderr, mininterval=0)

    def on_event(event: dict[str, Any]) -> None:
        if kind == "iteration" and event.get("kind") == "start":
            bar.open(event)  # the bar appears when the first iteration starts, so its first rate is a real one
        elif event.get("kind") == kind:
            bar.advance(event)

    with _listening(on_event, bar):
        yield


class _LazyBar:
    """A ``tqdm.auto`` bar made on the first event it sees (its total, and without a ``desc`` its label: the
    event's model, come from that event)."""

    def __init__(self, **options: Any) -> None:
        self.options, self.bar = options, None

    def open(self, event: dict[str, Any]) -> None:
        if self.bar is None:
            from tqdm.auto import tqdm

            options = {"desc": str(event.get("model", "fit")), **self.options}
            self.bar = tqdm(total=event.get("total"), leave=False, **options)

    def advance(self, event: dict[str, Any]) -> None:
        """One step, with the event's loss and metrics as the postfix."""
        self.open(event)
        self.bar.update(1)
        shown = {k: v for k, v in event.items() if k in ("loss", "val_rmse", "val_ndcg", "rmse") and v is not None}
        if shown:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@contextlib.contextmanager
def _listening(on_event: Listener, bar: _LazyBar) -> Iterator[None]:
    """Route events to ``on_event`` inside the block; close ``bar`` at its end."""
    with listen(on_event):
        try:
            yield
        finally:
            bar.close()


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
    bar = _LazyBar(unit="it")

    def on_event(event: dict[str, Any]) -> None:
        if outer is not None:
            outer(event)
        kind = event.get("kind")
        if draw and kind in ("start", "iteration"):
            if kind == "iteration":
                bar.advance(event)
            else:
                bar.open(event)
        if callback is not None and kind == "iteration":
            entry = {k: v for k, v in event.items() if k not in ("kind", "model", "total")}
            callback(int(event["iteration"]), float(event.get("seconds", 0.0)), entry)

    with _listening(on_event, bar):
        yield


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Fits inside this block draw no bars of their own (a search shows its own progress); an outer listener
    still hears every event."""
    if _listener.get() is not None:
        yield
        return
    with listen(lambda event: None):
        yield
