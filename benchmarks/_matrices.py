"""Synthetic interaction matrices shared by the benchmark scripts (run from the repository root; a script's own
folder is on ``sys.path``, so ``from _matrices import power_law`` works)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

import mfrec


def power_law(n_users: int, n_items: int, per_user: int, seed: int) -> mfrec.Interactions:
    """``per_user`` draws per user of items with popularity ~ rank^-0.8 (repeats merged): a long-tail catalogue."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    popularity /= popularity.sum()
    rows = np.repeat(np.arange(n_users), per_user)
    cols = rng.choice(n_items, size=len(rows), p=popularity)
    matrix = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n_users, n_items))
    matrix.sum_duplicates()
    return mfrec.Interactions.from_matrix(matrix)
