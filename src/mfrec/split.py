"""``mfrec.split``: train/test splits that share one id space (see :mod:`mfrec.data.split`)."""

from mfrec.data.split import (
    Split,
    cold_start_split,
    kfold,
    leave_k_out,
    per_user_split,
    random_split,
    temporal_leave_k_out,
    temporal_split,
)

__all__ = [
    "Split",
    "cold_start_split",
    "kfold",
    "leave_k_out",
    "per_user_split",
    "random_split",
    "temporal_leave_k_out",
    "temporal_split",
]
