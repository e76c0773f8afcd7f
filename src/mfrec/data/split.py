"""Train/test splits of :class:`~mfrec.data.interactions.Interactions`.

Every function returns a :class:`Split` (``kfold`` yields them): ``train`` and ``test`` are
:class:`Interactions` with the **same id maps** as the input (built with :meth:`Interactions.take`), so
dense indices mean the same user/item in both and a model fitted on ``train`` can be scored on ``test``
directly. Each stored entry of the input goes to exactly one side; since an ``Interactions`` holds one
entry per (user, item) pair, train and test never share a pair.

=========================  ==================================================================================
function                   what goes to test
=========================  ==================================================================================
:func:`random_split`       a uniformly random ``test_fraction`` of all entries
:func:`per_user_split`     ``round(test_fraction * n_u)`` random entries of each user, keeping ``min_train``
:func:`leave_k_out`        ``k`` random entries of every user with more than ``k`` entries
:func:`temporal_split`     every entry at or after a global cutoff time
:func:`temporal_leave_k_out`  the last ``k`` entries (by time) of every user with more than ``k`` entries
:func:`kfold`              fold ``f`` of a random partition of the entries into ``n_splits`` folds
:func:`cold_start_split`   every entry of a random ``fraction`` of the users (or items)
=========================  ==================================================================================

Randomness goes through :func:`mfrec._random.rng`: the same seed gives the same split.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from mfrec._params import check_choice, check_float, check_int
from mfrec._random import SeedLike, rng
from mfrec.data.interactions import Interactions
from mfrec.exceptions import InvalidDataError, InvalidParameterError

__all__ = [
    "Split",
    "random_split",
    "per_user_split",
    "leave_k_out",
    "temporal_split",
    "temporal_leave_k_out",
    "kfold",
    "cold_start_split",
]


@dataclass(frozen=True)
class Split:
    """One train/test split; unpacks as ``train, test = split``.

    Attributes
    ----------
    train, test : Interactions
        Disjoint subsets of the entries of the input, with the input's id maps.
    method : str
        Name of the function that made the split (for :meth:`summary`).
    params : dict
        Its parameters.
    """

    train: Interactions
    test: Interactions
    method: str = "split"
    params: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Interactions]:
        yield self.train
        yield self.test

    def __len__(self) -> int:
        return 2

    def _unseen(self, counts_test: np.ndarray, counts_train: np.ndarray, ids: np.ndarray) -> np.ndarray:
        return ids[(counts_test > 0) & (counts_train == 0)]

    @property
    def unseen_test_users(self) -> np.ndarray:
        """External ids of users with test entries but no training entry (cold users), id-map order."""
        return self._unseen(self.test.user_counts(), self.train.user_counts(), self.train.user_ids)

    @property
    def unseen_test_items(self) -> np.ndarray:
        """External ids of items with test entries but no training entry (cold items), id-map order."""
        return self._unseen(self.test.item_counts(), self.train.item_counts(), self.train.item_ids)

    def summary(self) -> dict[str, Any]:
        """Sizes of both sides and how many test users/items are unseen in training.

        Returns
        -------
        dict
            ``method``, ``params``, ``train_interactions``, ``test_interactions``, ``test_fraction``
            (of all entries), ``train_users``, ``test_users``, ``train_items``, ``test_items`` (users/items
            with at least one entry on that side), ``unseen_test_users``, ``unseen_test_items`` (counts).
        """
        n_train, n_test = self.train.nnz, self.test.nnz
        return {
            "method": self.method,
            "params": dict(self.params),
            "train_interactions": n_train,
            "test_interactions": n_test,
            "test_fraction": n_test / max(1, n_train + n_test),
            "train_users": int((self.train.user_counts() > 0).sum()),
            "test_users": int((self.test.user_counts() > 0).sum()),
            "train_items": int((self.train.item_counts() > 0).sum()),
            "test_items": int((self.test.item_counts() > 0).sum()),
            "unseen_test_users": len(self.unseen_test_users),
            "unseen_test_items": len(self.unseen_test_items),
        }

    def __repr__(self) -> str:
        return (
            f"Split({self.method}: train {self.train.nnz} interactions, test {self.test.nnz} interactions, "
            f"{len(self.unseen_test_users)} unseen test users, {len(self.unseen_test_items)} unseen test items)"
        )


# ---------------------------------------------------------------------------------------------- helpers
def _check_data(data: Any) -> Interactions:
    if not isinstance(data, Interactions):
        raise InvalidParameterError(f"data must be an Interactions, got {type(data).__name__}")
    if data.nnz < 2:
        raise InvalidDataError(f"cannot split {data.nnz} interaction(s): need at least 2")
    return data


def _fraction(name: str, value: Any) -> float:
    value = check_float(name, value, 0.0, 1.0, strict_min=True)
    if value >= 1.0:
        raise InvalidParameterError(f"{name} must be < 1, got {value:g}")
    return value


def _make(data: Interactions, test_mask: np.ndarray, method: str, params: dict[str, Any]) -> Split:
    """The split whose test side holds the entries (CSR order) where ``test_mask`` is True."""
    return Split(data.take(~test_mask), data.take(test_mask), method, params)


def _entry_rows(data: Interactions) -> np.ndarray:
    """Dense user index of every stored entry, CSR order (int64)."""
    return np.repeat(np.arange(data.n_users, dtype=np.int64), data.user_counts())


def _rank_within_user(data: Interactions, key: np.ndarray) -> np.ndarray:
    """Rank (0 = smallest ``key``) of every entry among the entries of its user, CSR order.

    Ties of ``key`` are broken by CSR position (i.e. by item index).
    """
    rows = _entry_rows(data)
    order = np.lexsort((np.arange(len(key)), key, rows))  # by user, then key, then position
    starts = np.asarray(data.matrix.indptr, dtype=np.int64)
    rank = np.empty(len(key), dtype=np.int64)
    rank[order] = np.arange(len(key), dtype=np.int64) - starts[rows[order]]
    return rank


def _n_test(fraction: float, n: np.ndarray | int) -> np.ndarray | int:
    """``round(fraction * n)`` rounding halves up (not to even), as int64."""
    return np.floor(fraction * np.asarray(n, dtype=np.float64) + 0.5).astype(np.int64)


# ---------------------------------------------------------------------------------------------- splits
def random_split(data: Interactions, test_fraction: float = 0.2, seed: SeedLike = 0) -> Split:
    """Hold out a uniformly random fraction of all entries.

    Parameters
    ----------
    data : Interactions
        At least 2 entries.
    test_fraction : float in (0, 1)
        ``round(test_fraction * nnz)`` entries go to test, clipped to ``[1, nnz - 1]``.
    seed : int, SeedSequence, Generator or None

    Returns
    -------
    Split
    """
    data = _check_data(data)
    test_fraction = _fraction("test_fraction", test_fraction)
    n_test = int(np.clip(_n_test(test_fraction, data.nnz), 1, data.nnz - 1))
    chosen = rng(seed).permutation(data.nnz)[:n_test]
    mask = np.zeros(data.nnz, dtype=bool)
    mask[chosen] = True
    return _make(data, mask, "random_split", {"test_fraction": test_fraction, "seed": seed})


def per_user_split(
    data: Interactions, test_fraction: float = 0.2, min_train: int = 1, seed: SeedLike = 0
) -> Split:
    """Hold out a random fraction of each user's entries.

    User ``u`` with ``n_u`` entries gives ``t_u = min(round(test_fraction * n_u), n_u - min_train)``
    (at least 0) random entries to test, so every user keeps at least ``min_train`` training entries;
    users with ``n_u <= min_train`` (or whose fraction rounds to 0) stay entirely in train.

    Parameters
    ----------
    data : Interactions
    test_fraction : float in (0, 1)
    min_train : int >= 0
        Training entries every user keeps (0 allows a user to move entirely to test).
    seed : int, SeedSequence, Generator or None

    Returns
    -------
    Split
    """
    data = _check_data(data)
    test_fraction = _fraction("test_fraction", test_fraction)
    min_train = check_int("min_train", min_train, minimum=0)
    counts = data.user_counts()
    n_test = np.clip(np.minimum(_n_test(test_fraction, counts), counts - min_train), 0, None)
    rank = _rank_within_user(data, rng(seed).random(data.nnz))
    mask = rank < n_test[_entry_rows(data)]
    params = {"test_fraction": test_fraction, "min_train": min_train, "seed": seed}
    return _make(data, mask, "per_user_split", params)


def leave_k_out(data: Interactions, k: int = 1, seed: SeedLike = 0) -> Split:
    """Hold out ``k`` random entries of every user who has more than ``k``.

    Users with ``n_u <= k`` entries stay entirely in train (they would otherwise have no training data).

    Parameters
    ----------
    data : Interactions
    k : int >= 1
    seed : int, SeedSequence, Generator or None

    Returns
    -------
    Split
    """
    data = _check_data(data)
    k = check_int("k", k, minimum=1)
    counts = data.user_counts()
    n_test = np.where(counts > k, k, 0)
    rank = _rank_within_user(data, rng(seed).random(data.nnz))
    mask = rank < n_test[_entry_rows(data)]
    return _make(data, mask, "leave_k_out", {"k": k, "seed": seed})


def _require_timestamps(data: Interactions, func: str) -> np.ndarray:
    if data.timestamps is None:
        raise InvalidDataError(
            f"{func} needs timestamps, and these interactions have none; build them with "
            "Interactions.from_frame(..., timestamp='column') or use random_split / per_user_split"
        )
    return data.timestamps


def _cutoff_seconds(cutoff: Any, timestamps: np.ndarray) -> tuple[int, str]:
    """Cutoff as int64 seconds, from a fraction in (0, 1) or a point in time; also a printable form."""
    if isinstance(cutoff, bool):
        raise InvalidParameterError(f"cutoff must be a fraction in (0, 1) or a timestamp, got {cutoff!r}")
    if isinstance(cutoff, float | np.floating) and float(cutoff) in (0.0, 1.0):
        raise InvalidParameterError(
            f"cutoff={float(cutoff):g} is ambiguous: a fraction must lie strictly between 0 and 1, "
            "and a time in seconds should be given as an int"
        )
    if isinstance(cutoff, float | np.floating) and 0.0 < float(cutoff) < 1.0:
        # the entry at sorted position ceil(q * nnz) opens the test period
        ts = np.sort(timestamps)
        pos = min(len(ts) - 1, int(np.ceil(float(cutoff) * len(ts))))
        return int(ts[pos]), f"quantile {float(cutoff):g}"
    if isinstance(cutoff, int | np.integer | float | np.floating):
        if not np.isfinite(float(cutoff)):
            raise InvalidParameterError(f"cutoff must be finite, got {cutoff}")
        return int(cutoff), str(cutoff)
    if isinstance(cutoff, str | _dt.datetime | _dt.date | np.datetime64 | pd.Timestamp):
        try:
            ts = pd.Timestamp(cutoff)
        except (ValueError, TypeError) as exc:
            raise InvalidParameterError(f"cutoff {cutoff!r} is not a timestamp: {exc}") from None
        if ts is pd.NaT:
            raise InvalidParameterError(f"cutoff {cutoff!r} is not a timestamp")
        if ts.tzinfo is not None:
            ts = ts.tz_convert("UTC").tz_localize(None)
        return int(ts.to_datetime64().astype("datetime64[s]").astype(np.int64)), ts.isoformat()
    raise InvalidParameterError(
        f"cutoff must be a fraction in (0, 1), seconds since the epoch or a datetime, got {type(cutoff).__name__}"
    )


def temporal_split(data: Interactions, cutoff: Any = 0.8) -> Split:
    """Global time split: entries at or after ``cutoff`` go to test, earlier ones to train.

    Parameters
    ----------
    data : Interactions
        Must carry timestamps (int64 seconds); otherwise :class:`InvalidDataError`.
    cutoff : float in (0, 1), int seconds, str, datetime, numpy.datetime64 or pandas.Timestamp
        A float strictly between 0 and 1 is a quantile of the entries' times: with ``q`` the cutoff is the
        time of the entry at sorted position ``ceil(q * nnz)``, so about ``1 - q`` of the entries (more when
        times tie) are tested. Anything else is a point in time (numbers are seconds since the epoch,
        naive datetimes are UTC).

    Returns
    -------
    Split
        Either side may be empty when the cutoff lies outside the data's time span.
    """
    data = _check_data(data)
    ts = _require_timestamps(data, "temporal_split")
    seconds, shown = _cutoff_seconds(cutoff, ts)
    mask = ts >= seconds
    return _make(data, mask, "temporal_split", {"cutoff": shown, "cutoff_seconds": seconds})


def temporal_leave_k_out(data: Interactions, k: int = 1) -> Split:
    """Hold out the last ``k`` entries (by timestamp) of every user who has more than ``k``.

    Ties of time are broken by item index (the later item index counts as later). Users with
    ``n_u <= k`` stay entirely in train.

    Parameters
    ----------
    data : Interactions
        Must carry timestamps; otherwise :class:`InvalidDataError`.
    k : int >= 1

    Returns
    -------
    Split
    """
    data = _check_data(data)
    ts = _require_timestamps(data, "temporal_leave_k_out")
    k = check_int("k", k, minimum=1)
    counts = data.user_counts()
    # rank by descending time; among equal times the larger CSR position (item index) is "later"
    rows = _entry_rows(data)
    order = np.lexsort((-np.arange(len(ts)), -ts, rows))
    starts = np.asarray(data.matrix.indptr, dtype=np.int64)
    rank = np.empty(len(ts), dtype=np.int64)
    rank[order] = np.arange(len(ts), dtype=np.int64) - starts[rows[order]]
    mask = (rank < k) & (counts[rows] > k)
    return _make(data, mask, "temporal_leave_k_out", {"k": k})


#: most folds :func:`kfold` cuts: every fold's split holds a copy of the data, and cross-validation keeps them all
MAX_FOLDS = 100


def kfold(data: Interactions, n_splits: int = 5, seed: SeedLike = 0) -> Iterator[Split]:
    """K-fold cross-validation over entries: yields ``n_splits`` Splits, each entry tested exactly once.

    The entries are shuffled once and cut into ``n_splits`` folds whose sizes differ by at most one;
    split ``f`` tests fold ``f`` and trains on the rest. Arguments are checked when ``kfold`` is called,
    not when the first split is drawn.

    Parameters
    ----------
    data : Interactions
    n_splits : int, 2 <= n_splits <= min(nnz, MAX_FOLDS = 100)
    seed : int, SeedSequence, Generator or None

    Returns
    -------
    iterator of Split
    """
    data = _check_data(data)
    n_splits = check_int("n_splits", n_splits, minimum=2, maximum=MAX_FOLDS)
    if n_splits > data.nnz:
        raise InvalidParameterError(f"n_splits must be <= the number of interactions ({data.nnz}), got {n_splits}")
    perm = rng(seed).permutation(data.nnz)
    folds = np.empty(data.nnz, dtype=np.int64)
    for f, chunk in enumerate(np.array_split(perm, n_splits)):
        folds[chunk] = f

    def generate() -> Iterator[Split]:
        for f in range(n_splits):
            params = {"n_splits": n_splits, "fold": f, "seed": seed}
            yield _make(data, folds == f, "kfold", params)

    return generate()


def cold_start_split(
    data: Interactions,
    holdout: Literal["users", "items"] = "users",
    fraction: float = 0.2,
    seed: SeedLike = 0,
) -> Split:
    """Hold out whole users (or items): every entry of the chosen ones goes to test.

    ``round(fraction * n)`` of the ``n`` users (items) having at least one entry are chosen at random,
    clipped to ``[1, n - 1]``; in the result they are exactly :attr:`Split.unseen_test_users`
    (``unseen_test_items``). Use it to evaluate fold-in or content/hybrid models on cold starts.

    Parameters
    ----------
    data : Interactions
    holdout : {"users", "items"}
    fraction : float in (0, 1)
    seed : int, SeedSequence, Generator or None

    Returns
    -------
    Split
    """
    data = _check_data(data)
    check_choice("holdout", holdout, ("users", "items"))
    fraction = _fraction("fraction", fraction)
    if holdout == "users":
        counts, entry_of = data.user_counts(), _entry_rows(data)
    else:
        counts, entry_of = data.item_counts(), np.asarray(data.matrix.indices, dtype=np.int64)
    active = np.flatnonzero(counts > 0)
    if len(active) < 2:
        raise InvalidDataError(f"cold_start_split needs at least 2 {holdout} with interactions, got {len(active)}")
    n_out = int(np.clip(_n_test(fraction, len(active)), 1, len(active) - 1))
    chosen = np.zeros(len(counts), dtype=bool)
    chosen[rng(seed).choice(active, size=n_out, replace=False)] = True
    mask = chosen[entry_of]
    params = {"holdout": holdout, "fraction": fraction, "seed": seed}
    return _make(data, mask, "cold_start_split", params)
