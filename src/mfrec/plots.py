"""Figures with matplotlib: learning curves, CV heatmaps, item-factor maps.

Every function returns the :class:`matplotlib.figure.Figure` (a notebook shows it) and, with ``path=``, also
writes it as a PNG (atomically). The figures are built without pyplot, so they leave no global state behind and
work with any backend, a headless server included.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mfrec.exceptions import InvalidParameterError

__all__ = ["learning_curve", "cv_heatmap", "item_factor_map"]


def _figure(size: tuple[float, float], rows: int = 1):
    """A new Figure with ``rows`` stacked axes (sharing x when more than one); no pyplot."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    return fig, list(axes)


def _finish(fig: Any, path: str | Path | None) -> Any:
    """Lay out ``fig``, write it to ``path`` when given (atomically: a half-written figure never replaces a good
    one), and return it."""
    fig.tight_layout()
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp.png")
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
        tmp.replace(path)
    return fig


#: history columns that are bookkeeping, not curves
_NOT_CURVES = ("iteration", "seconds")


def learning_curve(history: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]], path: str | Path | None = None,
                   title: str | None = None) -> Any:
    """The training loss and the other metrics of ``model.history_`` against the iteration; returns the Figure.

    ``history`` is a list of per-iteration dicts (``{"iteration": 1, "loss": ..., "val_rmse": ...}``) or a dict of
    lists. The training loss has the upper axes to itself (its scale, ~1e4, would flatten everything else); the
    training metrics (``rmse``) and the held-out ones (``val_rmse``, ``val_ndcg``: fits with ``validation=``) share
    the lower axes. ``seconds`` is not plotted. With ``path``, also writes a PNG there.
    """
    frame = pd.DataFrame(list(history)) if not isinstance(history, Mapping) else pd.DataFrame(dict(history))
    if frame.empty:
        raise InvalidParameterError("history is empty: nothing to plot")
    x = frame["iteration"] if "iteration" in frame else pd.Series(np.arange(1, len(frame) + 1))
    numeric = [c for c in frame.columns if c not in _NOT_CURVES and pd.api.types.is_numeric_dtype(frame[c])]
    losses = [c for c in numeric if c == "loss"]
    metrics = [c for c in numeric if c != "loss"]
    panels = [p for p in (losses, metrics) if p]
    if not panels:
        raise InvalidParameterError(f"history has no numeric series to plot (columns: {list(frame.columns)})")
    fig, axes = _figure((6, 2.6 * len(panels) + 0.8), rows=len(panels))
    for ax, columns in zip(axes, panels):
        for j, c in enumerate(columns):
            held_out = c.startswith("val")
            ax.plot(x, frame[c], marker="s" if held_out else "o", ms=3, ls="--" if held_out else "-",
                    color=f"C{numeric.index(c)}", label=c + (" (held out)" if held_out else ""))
        ax.set_ylabel("training loss" if columns is losses else "metric")
        ax.legend(loc="best", fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("iteration")
    axes[0].set_title(title or "training history")
    return _finish(fig, path)


def cv_heatmap(results: pd.DataFrame, x: str = "factors", y: str = "regularization", metric: str = "rmse",
               path: str | Path | None = None, title: str | None = None) -> Any:
    """Heatmap of the mean CV ``metric`` over a grid of two hyperparameters (``results`` = ``search.results_``).

    The metric column may be named ``metric`` or ``mean_<metric>`` / ``<metric>_mean``. Other parameters are
    averaged over. Each cell is annotated with its value; the best cell is outlined. Returns the Figure; with
    ``path``, also writes a PNG there.
    """
    col = next((c for c in (f"mean_{metric}", f"{metric}_mean", metric) if c in results.columns), None)
    if col is None:
        raise InvalidParameterError(f"results have no column for metric {metric!r}; columns: {list(results.columns)}")
    for p in (x, y):
        if p not in results.columns:
            raise InvalidParameterError(f"results have no parameter column {p!r}")
    if x == y:  # one searched parameter: a single row of cells
        table = results.groupby(x)[col].mean().sort_index().to_frame().T
        table.index = [metric]
    else:
        table = results.pivot_table(index=y, columns=x, values=col, aggfunc="mean").sort_index().sort_index(axis=1)
    fig, (ax,) = _figure((1.3 * table.shape[1] + 2.5, 0.9 * table.shape[0] + 1.8))
    lower_better = metric.lower() in ("rmse", "mae") or metric.lower().startswith(("rmse", "mae"))
    im = ax.imshow(table.values, cmap="viridis_r" if lower_better else "viridis", aspect="auto")
    ax.set_xticks(range(table.shape[1]), [f"{v:g}" if isinstance(v, float) else str(v) for v in table.columns])
    ax.set_yticks(range(table.shape[0]), [f"{v:g}" if isinstance(v, float) else str(v) for v in table.index])
    ax.set_xlabel(x)
    ax.set_ylabel("" if x == y else y)
    values = table.values
    best = np.nanargmin(values) if lower_better else np.nanargmax(values)
    bi, bj = np.unravel_index(best, values.shape)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if np.isfinite(values[i, j]):
                level = float(im.norm(values[i, j]))
                bright = level < 0.5 if lower_better else level > 0.5
                color = "red" if (i, j) == (bi, bj) else ("black" if bright else "white")
                ax.text(j, i, f"{values[i, j]:.4f}", ha="center", va="center", fontsize=8, color=color,
                        fontweight="bold" if (i, j) == (bi, bj) else None)
    from matplotlib.patches import Rectangle

    ax.add_patch(Rectangle((bj - 0.5, bi - 0.5), 1, 1, fill=False, ec="red", lw=2))
    fig.colorbar(im, ax=ax, label=f"mean CV {metric}")
    ax.set_title(title or f"cross-validated {metric}")
    return _finish(fig, path)


def item_factor_map(item_factors: np.ndarray, labels: Sequence[Any] | None = None, path: str | Path | None = None,
                    title: str | None = None, max_points: int = 5000, seed: int = 0) -> Any:
    """2-D PCA map of item factors (n_items, d), points coloured by ``labels`` (e.g. each item's first genre).

    Returns the Figure; with ``path``, also writes a PNG there."""
    from sklearn.decomposition import PCA

    factors = np.asarray(item_factors, dtype=np.float64)
    if factors.ndim != 2 or factors.shape[0] < 2:
        raise InvalidParameterError(f"item_factors must be (n_items >= 2, d), got shape {factors.shape}")
    keep = np.arange(factors.shape[0])
    if len(keep) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(keep, max_points, replace=False))
    xy = PCA(n_components=2, random_state=seed).fit_transform(factors[keep]) if factors.shape[1] >= 2 else np.c_[
        factors[keep, 0], np.zeros(len(keep))]
    fig, (ax,) = _figure((7, 6))
    if labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=6, alpha=0.6)
    else:
        lab = pd.Series(np.asarray(labels, dtype=object)[keep]).fillna("(none)").astype(str)
        top = lab.value_counts().index[:10]
        lab = lab.where(lab.isin(top), "other")
        for j, name in enumerate(sorted(lab.unique(), key=lambda s: (s == "other", s))):
            m = (lab == name).to_numpy()
            ax.scatter(xy[m, 0], xy[m, 1], s=7, alpha=0.7, label=name, color="lightgrey" if name == "other" else f"C{j % 10}")
        ax.legend(markerscale=2, fontsize=8, loc="best")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title or "item factors (PCA)")
    return _finish(fig, path)
