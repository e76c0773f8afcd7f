"""Figures are returned as matplotlib Figures (for notebooks), written as real PNGs when a path is given
(atomically), with clear errors for unusable input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mfrec import InvalidParameterError, plots

PNG = b"\x89PNG\r\n\x1a\n"


def test_learning_curve(tmp_path):
    from matplotlib.figure import Figure

    history = [{"iteration": i, "loss": 1e4 / i, "rmse": 1 + 0.5 / i, "val_rmse": 1 + 1 / i, "seconds": 3.0 * i}
               for i in range(1, 8)]
    path = tmp_path / "sub" / "lc.png"
    fig = plots.learning_curve(history, path=path)
    assert isinstance(fig, Figure)
    assert path.read_bytes().startswith(PNG) and path.stat().st_size > 5000
    loss_ax, metric_ax = fig.axes  # the loss (~1e4) has its own axes; no seconds anywhere
    assert [line.get_label() for line in loss_ax.lines] == ["loss"]
    assert [line.get_label() for line in metric_ax.lines] == ["rmse", "val_rmse (held out)"]
    assert isinstance(plots.learning_curve(history[:3]), Figure)  # no path: nothing written, the Figure returned
    with pytest.raises(InvalidParameterError, match="history is empty"):
        plots.learning_curve([], path=tmp_path / "x.png")


def test_cv_heatmap(tmp_path):
    rows = [{"factors": f, "regularization": r, "mean_rmse": 0.9 + 0.001 * f - r} for f in (8, 16) for r in (0.01, 0.1)]
    path = tmp_path / "hm.png"
    plots.cv_heatmap(pd.DataFrame(rows), path=path)
    assert path.read_bytes().startswith(PNG)
    with pytest.raises(InvalidParameterError, match="no column for metric 'ndcg@10'"):
        plots.cv_heatmap(pd.DataFrame(rows), metric="ndcg@10", path=tmp_path / "x.png")
    with pytest.raises(InvalidParameterError, match="no parameter column 'alpha'"):
        plots.cv_heatmap(pd.DataFrame(rows), x="alpha", path=tmp_path / "x.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hm.png"]


def test_item_factor_map(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.choice(["Drama", "Comedy", None], size=200)
    path = tmp_path / "items.png"
    fig = plots.item_factor_map(rng.normal(size=(200, 6)), labels=labels, path=path)
    assert path.read_bytes().startswith(PNG) and fig.axes[0].get_xlabel() == "PC 1"
    with pytest.raises(InvalidParameterError, match="item_factors"):
        plots.item_factor_map(np.ones(3), path=tmp_path / "x.png")
