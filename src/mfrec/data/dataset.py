"""The :class:`Dataset` a loader returns: interactions plus what the source has around them.

Its own module so that the loaders (:mod:`mfrec.data.datasets`) and the generator (:mod:`mfrec.data.synthetic`)
both build it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mfrec.data.interactions import Interactions

__all__ = ["Dataset"]


@dataclass(eq=False)
class Dataset:
    """A loaded dataset.

    Attributes
    ----------
    name : str
        Registry name (``"ml-100k"``, ``"lastfm-2k"``, ``"synthetic"``...).
    kind : {"explicit", "implicit"}
        Explicit ratings or implicit feedback (play counts, events).
    interactions : Interactions
        Users x items; ratings (explicit) or counts (implicit), with timestamps where the source has them.
    user_attributes, item_attributes : pandas.DataFrame or None
        One row per user / item, indexed by the external id (the same ids as ``interactions``; the tables
        may also hold ids without interactions).
    user_attribute_spec, item_attribute_spec : dict
        How to encode the attribute columns: ``{"categorical": [...], "multilabel": {col: sep},
        "numeric": [...], "text": [...]}``; columns not named in the spec (URLs, zip codes) are kept
        for display only.
    item_titles : pandas.Series or None
        External item id -> human-readable title.
    events : pandas.DataFrame or None
        A raw event log (``user, item, timestamp, event, fraction``), for the synthetic dataset.
    true_user_factors, true_item_factors : numpy.ndarray or None
        The planted factors of the synthetic dataset, rows aligned with ``interactions.user_ids`` /
        ``interactions.item_ids``.
    path : Path or None
        The folder the files were read from.
    """

    name: str
    kind: str
    interactions: Interactions
    user_attributes: pd.DataFrame | None = None
    item_attributes: pd.DataFrame | None = None
    user_attribute_spec: dict[str, Any] = field(default_factory=dict)
    item_attribute_spec: dict[str, Any] = field(default_factory=dict)
    item_titles: pd.Series | None = None
    events: pd.DataFrame | None = None
    true_user_factors: np.ndarray | None = None
    true_item_factors: np.ndarray | None = None
    path: Path | None = None
    description: str = ""

    def __repr__(self) -> str:
        parts = [f"name={self.name!r}", f"kind={self.kind!r}", repr(self.interactions)]
        if self.user_attributes is not None:
            parts.append(f"user_attributes={list(self.user_attributes.columns)}")
        if self.item_attributes is not None:
            parts.append(f"item_attributes={list(self.item_attributes.columns)}")
        return f"Dataset({', '.join(parts)})"
