"""Figures are written as real PNGs, atomically, with clear errors for unusable input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mfrec import InvalidParameterError, plots

PNG = b"\x89PNG\r\n\x1a\n"


def test_learning_curve(tmp_path):
    history = [{"iteration": i, "loss": 10.0 / i, "val_rmse": 1 + 1 / i} for i in range(1, 8)]
    path = plots.learning_curve(history, path=tmp_path / "sub" / "lc.png")
    assert path.read_bytes().startswith(PNG) and path.stat().st_size > 5000
    with pytest.raises(InvalidParameterError, match="history is empty"):
        plots.learning_curve([], path=tmp_path / "x.png")


def test_cv_heatmap(tmp_path):
    rows = [{"factors": f, "regularization": r, "mean_rmse": 0.9 + 0.001 * f - r} for f in (8, 16) for r in (0.01, 0.1)]
    path = plots.cv_heatmap(pd.DataFrame(rows), path=tmp_path / "hm.png")
    assert path.read_bytes().startswith(PNG)
    with pytest.raises(InvalidParameterError, match="no column for metric 'ndcg@10'"):
        plots.cv_heatmap(pd.DataFrame(rows), metric="ndcg@10", path=tmp_path / "x.png")
    with pytest.raises(InvalidParameterError, match="no parameter column 'alpha'"):
        plots.cv_heatmap(pd.DataFrame(rows), x="alpha", path=tmp_path / "x.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hm.png"]


def test_item_factor_map(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.choice(["Drama", "Comedy", None], size=200)
    path = plots.item_factor_map(rng.normal(size=(200, 6)), labels=labels, path=tmp_path / "items.png")
    assert path.read_bytes().startswith(PNG)
    with pytest.raises(InvalidParameterError, match="item_factors"):
        plots.item_factor_map(np.ones(3), path=tmp_path / "x.png")
