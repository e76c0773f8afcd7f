"""Data layer: interactions, feedback conversion, attributes, datasets, splits."""

from mfrec.data.attributes import Attributes, FeatureGroup
from mfrec.data.examples import SeedExample, seed_example
from mfrec.data.feedback import (
    ImplicitFeedback,
    PseudoRatingRule,
    confidence,
    events_to_explicit,
    events_to_implicit,
    explicit_to_implicit,
    parse_fractions,
)
from mfrec.data.interactions import Interactions, read_interactions

__all__ = [
    "Attributes",
    "FeatureGroup",
    "ImplicitFeedback",
    "Interactions",
    "PseudoRatingRule",
    "SeedExample",
    "confidence",
    "events_to_explicit",
    "events_to_implicit",
    "explicit_to_implicit",
    "parse_fractions",
    "read_interactions",
    "seed_example",
]
