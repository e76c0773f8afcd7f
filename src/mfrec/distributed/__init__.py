"""Distributed training on dask.distributed (extra ``distributed``: ``pip install 'mfrec[distributed]'``).

The same ALS kernels as the single-process models run on row blocks that stay on the workers; per iteration only
the factor matrices move (see :mod:`mfrec.distributed.dask` and docs/distributed.md). dask is imported only
when one of these functions is called.
"""

from __future__ import annotations

from typing import Any

__all__ = ["fit", "from_dask_dataframe", "read_parquet", "local_client", "cluster_client", "worker_memory",
           "DaskInteractions", "BlockStats"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from mfrec.distributed import dask as _impl

        return getattr(_impl, name)
    raise AttributeError(f"module 'mfrec.distributed' has no attribute {name!r}")
