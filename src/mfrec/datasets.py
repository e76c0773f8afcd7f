"""Public datasets: ``mfrec.datasets.load(name, data_dir=None)``, ``synthetic(...)``, ``available()``.

The public import path (README, user code). The implementation is :mod:`mfrec.data.datasets` (with
:mod:`mfrec.data.synthetic` and :mod:`mfrec.data.download`), the path the package's own modules use; both name
the same objects (docs/architecture.md, "Import paths").

>>> from mfrec import datasets
>>> ds = datasets.synthetic(n_users=50, n_items=40, seed=1)
>>> ds.interactions.shape
(50, 40)
"""

from mfrec.data.datasets import Dataset, available, load
from mfrec.data.download import cache_dir
from mfrec.data.synthetic import synthetic

__all__ = ["Dataset", "available", "cache_dir", "load", "synthetic"]
