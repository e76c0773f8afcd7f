"""Progress events, decoupled from how they are shown.

Library code calls :func:`report` at natural steps (an ALS iteration, a fold fitted during a search); nothing
happens unless a caller listens. The CLI listens with :func:`tqdm_listener` to draw progress bars on a
terminal. Listeners live in a context variable, so they are per thread / per task and never global state.

Events are dicts with a ``"kind"``: ``"iteration"`` (``model``, ``iteration``, ``total`` and the history entry's
numbers) or ``"task"`` (``done``, ``total``, ``what``).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

Listener = Callable[[dict[str, Any]], None]
_listener: ContextVar[Listener | None] = ContextVar("mfrec_progress_listener", default=None)

__all__ = ["report", "listen", "tqdm_listener"]


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
        if event.get("kind") != kind:
            return
        if bar is None:
            bar = tqdm(total=event.get("total"), desc=desc, unit=kind, leave=False, file=sys.stderr, mininterval=0)
        bar.update(1)
        shown = {k: v for k, v in event.items() if k in ("loss", "val_rmse", "val_ndcg", "rmse") and v is not None}
        if shown:
            bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=False)

    with listen(on_event):
        try:
            yield
        finally:
            if bar is not None:
                bar.close()
