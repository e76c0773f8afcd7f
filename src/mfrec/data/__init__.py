"""Data layer: interactions, feedback conversion, attributes, datasets, splits."""

from mfrec.data.interactions import Interactions, read_interactions

__all__ = ["Interactions", "read_interactions"]
