"""``mfrec.split``: train/test splits that share one id space.

The public import path (README, user code). The implementation is :mod:`mfrec.data.split`, the path the
package's own modules use; both name the same objects (docs/architecture.md, "Import paths").
"""

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
