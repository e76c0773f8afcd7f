"""Interactions joined with user and item attributes: the input of the attribute-aware models.

:class:`AttributeData` extends the id maps of an :class:`~mfrec.data.interactions.Interactions` with the ids
that only the attributes know (cold ids, as empty rows/columns) and holds the attributes as dense float64
matrices whose rows follow those maps. ContentBased, HybridALS and GlobalLinear build one at fit time.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mfrec.data.attributes import encode_attributes
from mfrec.data.interactions import Interactions, show_id
from mfrec.exceptions import InvalidDataError

__all__ = ["AttributeData", "check_finite_values"]


class AttributeData:
    """Interactions re-expressed in id maps that include the cold ids, plus dense attribute matrices.

    Attributes
    ----------
    interactions : Interactions
        Rows = warm users then cold users; columns = warm items then cold items.
    user_features, item_features : numpy.ndarray (n, F) float64 or None
        Attribute rows aligned with the extended maps (all zero for ids without an attribute row).
    user_feature_names, item_feature_names : list of str
    """

    def __init__(self, interactions: Interactions, user_attributes: Any, item_attributes: Any, model: str):
        if not isinstance(interactions, Interactions):
            raise InvalidDataError(
                f"{model}.fit expects an mfrec Interactions (Interactions.from_frame(...)), "
                f"got {type(interactions).__name__}"
            )
        if interactions.nnz == 0:
            raise InvalidDataError(f"{model}.fit: the interactions are empty")
        users, items = interactions.user_index_map, interactions.item_index_map
        self.user_features = self.item_features = None
        self.user_feature_names: list[str] = []
        self.item_feature_names: list[str] = []
        if user_attributes is not None:
            ua = encode_attributes(user_attributes, users, f"{model}: user_attributes")
            users = pd.Index(ua.ids)
            self.user_features = self._dense(ua, "user_attributes", model)
            self.user_feature_names = list(ua.feature_names)
        if item_attributes is not None:
            ia = encode_attributes(item_attributes, items, f"{model}: item_attributes")
            items = pd.Index(ia.ids)
            self.item_features = self._dense(ia, "item_attributes", model)
            self.item_feature_names = list(ia.feature_names)
        if len(users) != interactions.n_users or len(items) != interactions.n_items:
            interactions, _ = interactions.reindex(users, items)
        self.interactions = interactions

    @staticmethod
    def _dense(attrs: Any, what: str, model: str) -> np.ndarray:
        m = attrs.matrix
        if m.shape[1] == 0:
            raise InvalidDataError(f"{model}: {what} encode to no features")
        dense = np.asarray(m.toarray(), dtype=np.float64)
        bad = ~np.isfinite(dense)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise InvalidDataError(
                f"{model}: {what} of id {show_id(attrs.ids[r])}, feature {attrs.feature_names[c]!r} is not finite"
            )
        return dense


def check_finite_values(data: Interactions, model: str) -> None:
    """Refuse a non-finite stored value, naming its user and item (``InvalidDataError``)."""
    bad = ~np.isfinite(data.matrix.data)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise InvalidDataError(f"{model}: value {data.matrix.data[pos]} of {data.entry_name(pos)} is not finite")
