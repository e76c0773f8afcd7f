"""Interactions: external ids <-> dense indices, and the users x items CSR matrix.

An :class:`Interactions` holds

* ``user_ids`` / ``item_ids``: the external ids (any hashable: int, str, ...), position = dense index;
* ``matrix``: a ``scipy.sparse.csr_matrix`` of shape ``(n_users, n_items)``, dtype float32, canonical
  (sorted column indices, one entry per (user, item) pair). Stored zeros are kept: an interaction with
  value 0 (a 0% watch) is still an interaction;
* optional ``timestamps`` and ``events``: one per stored entry, aligned with ``matrix.data`` (CSR order).

Duplicated (user, item) pairs are merged by a policy: ``sum`` (counts add up), ``mean``, ``max``,
``last`` (by timestamp when there is one, else by row order) or ``error``. The merged entry keeps the
latest timestamp and the event of its last row.

Dense indices are int32; the CSR ``indptr`` is int64 when the number of entries needs it.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import zipfile
import zlib
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from mfrec.exceptions import InvalidDataError, InvalidParameterError, UnknownIdError, clip, one_line
from mfrec.kernels.slices import column_counts

__all__ = ["Interactions", "read_interactions", "DUPLICATE_POLICIES"]

DuplicatePolicy = Literal["sum", "mean", "max", "last", "error"]
DUPLICATE_POLICIES: tuple[str, ...] = ("sum", "mean", "max", "last", "error")


@dataclass(frozen=True)
class _Origin:
    """Where rows came from, so errors can name the file and line (or the frame row)."""

    source: str | None = None  # file path, or None for an in-memory frame
    first_line: int | None = None  # file line number of data row 0 (1-based), None for frames
    row_labels: pd.Index | None = None  # frame index labels, for in-memory frames

    def where(self, position: int) -> str:
        if self.source is not None and self.first_line is not None:
            return f"{self.source}, line {self.first_line + position}"
        if self.source is not None:
            return f"{self.source}, row {position}"
        label = self.row_labels[position] if self.row_labels is not None else position
        return f"row {label!r}"


def _factorize_ids(values: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Map external ids to dense int32 codes, sorted when the ids are mutually comparable."""
    try:
        codes, uniques = pd.factorize(values, sort=True)
    except TypeError:  # mixed, unorderable ids: keep first-appearance order
        codes, uniques = pd.factorize(values, sort=False)
    return codes.astype(np.int32, copy=False), pd.Index(uniques)


def _check_ids(column: pd.Series, name: str, origin: _Origin) -> None:
    missing = column.isna().to_numpy()
    if missing.any():
        pos = int(np.flatnonzero(missing)[0])
        raise InvalidDataError(f"{origin.where(pos)}, column {name!r}: id is missing (NaN/empty)")
    if column.dtype == object:
        try:
            hash_ok = all(isinstance(v, Hashable) for v in column.iloc[:1000])
        except Exception:  # pragma: no cover
            hash_ok = False
        if not hash_ok:
            raise InvalidDataError(f"column {name!r}: ids must be hashable (str, int, ...)")


#: the largest magnitude a stored value may have: interactions are stored as float32
FLOAT32_MAX = float(np.finfo(np.float32).max)
#: numeric timestamps are seconds since 1970; these are the bounds pandas' nanosecond timestamps can hold
TIMESTAMP_RANGE = (-9_223_372_036, 9_223_372_036)


def _numeric_column(column: pd.Series, name: str, origin: _Origin, allow_negative: bool,
                    bound: float = FLOAT32_MAX) -> np.ndarray:
    """Values as float64, with a precise error for non-numbers, NaN, inf, magnitudes over ``bound`` (values are
    stored as float32) and (optionally) negatives."""
    if column.dtype == bool:
        column = column.astype(np.float64)
    numeric = pd.to_numeric(column, errors="coerce")
    bad_text = numeric.isna().to_numpy() & column.notna().to_numpy()
    if bad_text.any():
        pos = int(np.flatnonzero(bad_text)[0])
        raise InvalidDataError(
            f"{origin.where(pos)}, column {name!r}: value {clip(column.iloc[pos])} is not a number"
        )
    values = numeric.to_numpy(dtype=np.float64, na_value=np.nan)
    nan = np.isnan(values)
    if nan.any():
        pos = int(np.flatnonzero(nan)[0])
        raise InvalidDataError(f"{origin.where(pos)}, column {name!r}: value is missing (NaN)")
    inf = np.isinf(values)
    if inf.any():
        pos = int(np.flatnonzero(inf)[0])
        raise InvalidDataError(f"{origin.where(pos)}, column {name!r}: value is infinite")
    huge = np.abs(values) > bound
    if huge.any():
        pos = int(np.flatnonzero(huge)[0])
        raise InvalidDataError(f"{origin.where(pos)}, column {name!r}: value {values[pos]:g} is out of range "
                               f"(|value| <= {bound:.4g})")
    if not allow_negative:
        neg = values < 0
        if neg.any():
            pos = int(np.flatnonzero(neg)[0])
            raise InvalidDataError(
                f"{origin.where(pos)}, column {name!r}: negative value {values[pos]:g} "
                "(confidence / counts must be >= 0)"
            )
    return values


def _timestamp_column(column: pd.Series, name: str, origin: _Origin) -> np.ndarray:
    """Timestamps as int64 seconds since the epoch (numbers are taken as seconds already)."""
    if pd.api.types.is_datetime64_any_dtype(column):
        ts = column
    elif pd.api.types.is_numeric_dtype(column):
        lo, hi = TIMESTAMP_RANGE
        values = _numeric_column(column, name, origin, allow_negative=True, bound=np.inf)
        out = (values < lo) | (values > hi)
        if out.any():
            pos = int(np.flatnonzero(out)[0])
            raise InvalidDataError(f"{origin.where(pos)}, column {name!r}: timestamp {values[pos]:g} is out of "
                                   "range (seconds since 1970, years 1677 to 2262)")
        return values.astype(np.int64)
    else:
        ts = pd.to_datetime(column, errors="coerce", utc=True)
        bad = ts.isna().to_numpy()
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise InvalidDataError(
                f"{origin.where(pos)}, column {name!r}: {clip(column.iloc[pos])} is not a timestamp"
            )
    if getattr(ts.dt, "tz", None) is not None:
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    bad = ts.isna().to_numpy()
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise InvalidDataError(f"{origin.where(pos)}, column {name!r}: timestamp is missing")
    return ts.to_numpy(dtype="datetime64[s]").astype(np.int64)


def show_id(x: Any) -> str:
    """repr() of an external id, without numpy's ``np.int64(...)`` wrapping, cut to about 80 characters."""
    return clip(x.item() if isinstance(x, np.generic) else x)



def _index_dtype(n: int) -> type:
    return np.int32 if n < np.iinfo(np.int32).max else np.int64


class Interactions:
    """User-item interactions with id maps; build it with :meth:`from_frame` or :func:`read_interactions`.

    Attributes
    ----------
    user_ids, item_ids : numpy.ndarray
        External ids; ``user_ids[u]`` is the id of dense user index ``u``.
    matrix : scipy.sparse.csr_matrix, shape (n_users, n_items), float32
        The interactions (ratings, counts, confidences...). Rows are users.
    timestamps : numpy.ndarray of int64 seconds or None
        One per stored entry, aligned with ``matrix.data``.
    events : numpy.ndarray of object or None
        One event label per stored entry, aligned with ``matrix.data``.
    has_values : bool
        False when no value column was given (every interaction then counts 1).
    """

    __slots__ = ("_users", "_items", "_matrix", "timestamps", "events", "has_values", "source")

    def __init__(
        self,
        matrix: sp.spmatrix,
        user_ids: Sequence[Hashable] | pd.Index | None = None,
        item_ids: Sequence[Hashable] | pd.Index | None = None,
        *,
        timestamps: np.ndarray | None = None,
        events: np.ndarray | None = None,
        has_values: bool = True,
        source: str | None = None,
    ) -> None:
        csr = sp.csr_matrix(matrix, dtype=np.float32)
        if not csr.has_canonical_format:
            if timestamps is not None or events is not None:
                raise InvalidDataError("timestamps/events need a canonical CSR matrix (sorted, no duplicates)")
            csr.sum_duplicates()
            csr.sort_indices()
        n_users, n_items = csr.shape
        self._users = pd.Index(np.arange(n_users) if user_ids is None else user_ids)
        self._items = pd.Index(np.arange(n_items) if item_ids is None else item_ids)
        if len(self._users) != n_users or len(self._items) != n_items:
            raise InvalidDataError(
                f"id maps ({len(self._users)} users, {len(self._items)} items) do not match the matrix "
                f"shape {csr.shape}"
            )
        for name, ids in (("user", self._users), ("item", self._items)):
            if ids.has_duplicates:
                dup = ids[ids.duplicated()][0]
                raise InvalidDataError(f"{name} id {show_id(dup)} appears twice in the id map")
        if not np.isfinite(csr.data).all():
            raise InvalidDataError("matrix holds NaN or infinite values")
        csr.indices = csr.indices.astype(np.int32, copy=False)
        csr.indptr = csr.indptr.astype(_index_dtype(csr.nnz), copy=False)
        self._matrix = csr
        for name, arr in (("timestamps", timestamps), ("events", events)):
            if arr is not None and len(arr) != csr.nnz:
                raise InvalidDataError(f"{name} has {len(arr)} entries, the matrix {csr.nnz}")
        self.timestamps = None if timestamps is None else np.asarray(timestamps, dtype=np.int64)
        self.events = None if events is None else np.asarray(events, dtype=object)
        self.has_values = bool(has_values)
        self.source = source

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        user: str = "user",
        item: str = "item",
        value: str | None = None,
        timestamp: str | None = None,
        event: str | None = None,
        duplicates: DuplicatePolicy = "sum",
        *,
        allow_negative: bool = True,
        user_ids: Sequence[Hashable] | pd.Index | None = None,
        item_ids: Sequence[Hashable] | pd.Index | None = None,
        _origin: _Origin | None = None,
    ) -> Interactions:
        """Build from a long DataFrame with one row per interaction.

        Parameters
        ----------
        df : pandas.DataFrame
            One row per event or rating.
        user, item : str
            Column names of the external ids.
        value : str, optional
            Column of numeric values (rating, play count, confidence). Without it every row counts 1.
        timestamp : str, optional
            Column of times (datetime or numbers of seconds); kept as int64 seconds.
        event : str, optional
            Column of event labels ("click", "purchase", ...), kept aligned.
        duplicates : {"sum", "mean", "max", "last", "error"}
            How repeated (user, item) rows merge.
        allow_negative : bool
            When False, a negative value is an error (confidences and counts).
        user_ids, item_ids : sequence, optional
            Use these id maps (in this order) instead of building them from the data; ids of the
            frame that are not in them are an error.
        """
        if duplicates not in DUPLICATE_POLICIES:
            raise InvalidParameterError(
                f"duplicates={duplicates!r} is not one of {', '.join(DUPLICATE_POLICIES)}"
            )
        if not isinstance(df, pd.DataFrame):
            raise InvalidDataError(f"expected a pandas DataFrame, got {type(df).__name__}")
        origin = _origin or _Origin(row_labels=df.index)
        where = f" in {origin.source}" if origin.source else ""
        wanted = [("user", user), ("item", item), ("value", value), ("timestamp", timestamp), ("event", event)]
        for role, col in wanted:
            if col is not None and col not in df.columns:
                raise InvalidDataError(
                    f"missing {role} column {col!r}{where}; columns are: {', '.join(map(str, df.columns))}"
                )
        if len(df) == 0:
            raise InvalidDataError(f"no interactions{where}: the data is empty")

        _check_ids(df[user], user, origin)
        _check_ids(df[item], item, origin)
        if user_ids is None:
            u_codes, users = _factorize_ids(df[user])
        else:
            users = pd.Index(user_ids)
            u_codes = cls._codes_in(users, df[user], "user", user, origin)
        if item_ids is None:
            i_codes, items = _factorize_ids(df[item])
        else:
            items = pd.Index(item_ids)
            i_codes = cls._codes_in(items, df[item], "item", item, origin)

        if value is not None:
            values = _numeric_column(df[value], value, origin, allow_negative)
        else:
            values = np.ones(len(df), dtype=np.float64)
        ts = _timestamp_column(df[timestamp], timestamp, origin) if timestamp is not None else None
        ev = df[event].to_numpy(dtype=object) if event is not None else None

        n_users, n_items = len(users), len(items)
        key = u_codes.astype(np.int64) * n_items + i_codes
        # Stable order: by key, then by time (or row order) so that "last" means last.
        order = np.lexsort((ts, key)) if ts is not None else np.argsort(key, kind="stable")
        key_sorted = key[order]
        starts = np.flatnonzero(np.r_[True, key_sorted[1:] != key_sorted[:-1]])
        ends = np.r_[starts[1:], len(key_sorted)]
        if len(starts) < len(key_sorted) and duplicates == "error":
            dup_at = int(np.flatnonzero(ends - starts > 1)[0])
            rows = np.sort(order[starts[dup_at] : ends[dup_at]])
            raise InvalidDataError(
                f"{origin.where(int(rows[1]))}: duplicate interaction of user {show_id(users[u_codes[rows[0]]])} "
                f"and item {show_id(items[i_codes[rows[0]]])} (first at {origin.where(int(rows[0]))}); "
                "choose duplicates='sum', 'mean', 'max' or 'last'"
            )
        v_sorted = values[order]
        if duplicates in ("sum", "error"):
            merged = np.add.reduceat(v_sorted, starts)
        elif duplicates == "mean":
            merged = np.add.reduceat(v_sorted, starts) / (ends - starts)
        elif duplicates == "max":
            merged = np.maximum.reduceat(v_sorted, starts)
        else:  # last
            merged = v_sorted[ends - 1]
        last_rows = order[ends - 1]
        merged_ts = np.maximum.reduceat(ts[order], starts) if ts is not None else None
        merged_ev = ev[last_rows] if ev is not None else None

        uniq_keys = key_sorted[starts]
        rows = (uniq_keys // n_items).astype(np.int32)
        cols = (uniq_keys % n_items).astype(np.int32)
        indptr = np.zeros(n_users + 1, dtype=_index_dtype(len(uniq_keys)))
        np.cumsum(np.bincount(rows, minlength=n_users), out=indptr[1:])
        matrix = sp.csr_matrix((merged.astype(np.float32), cols, indptr), shape=(n_users, n_items))
        return cls(
            matrix,
            users,
            items,
            timestamps=merged_ts,
            events=merged_ev,
            has_values=value is not None,
            source=origin.source,
        )

    @staticmethod
    def _codes_in(index: pd.Index, column: pd.Series, role: str, name: str, origin: _Origin) -> np.ndarray:
        codes = index.get_indexer(column)
        missing = codes < 0
        if missing.any():
            pos = int(np.flatnonzero(missing)[0])
            raise UnknownIdError(f"{origin.where(pos)}, column {name!r}: unknown {role} id {show_id(column.iloc[pos])}")
        return codes.astype(np.int32)

    @classmethod
    def from_matrix(
        cls,
        matrix: sp.spmatrix | np.ndarray,
        user_ids: Sequence[Hashable] | None = None,
        item_ids: Sequence[Hashable] | None = None,
    ) -> Interactions:
        """Wrap a (sparse or dense) users x items matrix; ids default to 0..n-1.

        A dense array's zeros are treated as "no interaction"; use a sparse matrix to store zeros.
        """
        if not sp.issparse(matrix):
            arr = np.asarray(matrix, dtype=np.float64)
            if arr.ndim != 2:
                raise InvalidDataError(f"expected a 2-D matrix, got shape {arr.shape}")
            if not np.isfinite(arr).all():
                r, c = np.argwhere(~np.isfinite(arr))[0]
                raise InvalidDataError(f"matrix entry ({r}, {c}) is NaN or infinite")
            matrix = sp.csr_matrix(arr)
        return cls(matrix, user_ids, item_ids)

    # ------------------------------------------------------------------ basic properties
    @property
    def matrix(self) -> sp.csr_matrix:
        """Users x items CSR matrix, float32 (do not modify in place)."""
        return self._matrix

    @property
    def user_ids(self) -> np.ndarray:
        return self._users.to_numpy()

    @property
    def item_ids(self) -> np.ndarray:
        return self._items.to_numpy()

    @property
    def user_index_map(self) -> pd.Index:
        """The user id map as a pandas Index (position = dense index)."""
        return self._users

    @property
    def item_index_map(self) -> pd.Index:
        return self._items

    @property
    def n_users(self) -> int:
        return self._matrix.shape[0]

    @property
    def n_items(self) -> int:
        return self._matrix.shape[1]

    @property
    def shape(self) -> tuple[int, int]:
        return self._matrix.shape

    @property
    def nnz(self) -> int:
        return int(self._matrix.nnz)

    @property
    def values(self) -> np.ndarray:
        """The stored values (float32), in CSR order."""
        return self._matrix.data

    @property
    def density(self) -> float:
        return self.nnz / max(1, self.n_users * self.n_items)

    def __len__(self) -> int:
        return self.nnz

    def __repr__(self) -> str:
        extra = "".join(
            f", {name}" for name, arr in (("timestamps", self.timestamps), ("events", self.events)) if arr is not None
        )
        return f"Interactions({self.n_users} users x {self.n_items} items, {self.nnz} interactions{extra})"

    # ------------------------------------------------------------------ id lookups
    def coo(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(user_index int32, item_index int32, value float32) of every stored entry, CSR order."""
        m = self._matrix
        rows = np.repeat(np.arange(m.shape[0], dtype=np.int32), np.diff(m.indptr))
        return rows, m.indices, m.data

    def entry_name(self, position: int) -> str:
        """``"user 'u1', item 42"``: the ids of stored entry ``position`` (CSR order), for error messages."""
        m = self._matrix
        u = int(np.searchsorted(m.indptr, position, side="right") - 1)
        return f"user {show_id(self._users[u])}, item {show_id(self._items[int(m.indices[position])])}"

    def user_index(self, ids: Hashable | Iterable[Hashable], missing: Literal["raise", "ignore"] = "raise"):
        """Dense index of one user id (int) or of many (int32 array; -1 for unknown when ``missing='ignore'``)."""
        return self._lookup(self._users, ids, "user", missing)

    def item_index(self, ids: Hashable | Iterable[Hashable], missing: Literal["raise", "ignore"] = "raise"):
        """Dense index of one item id (int) or of many (int32 array; -1 for unknown when ``missing='ignore'``)."""
        return self._lookup(self._items, ids, "item", missing)

    @staticmethod
    def _lookup(index: pd.Index, ids: Any, role: str, missing: str):
        scalar = isinstance(ids, Hashable) and not isinstance(ids, tuple | frozenset)
        if scalar:
            try:
                loc = index.get_loc(ids)
            except (KeyError, TypeError, pd.errors.InvalidIndexError):
                loc = None
            if not isinstance(loc, int | np.integer):
                if missing == "raise":
                    raise UnknownIdError(f"unknown {role} id {show_id(ids)}")
                return -1
            return int(loc)
        arr = ids if isinstance(ids, np.ndarray | pd.Index | pd.Series) else list(ids)
        codes = index.get_indexer(arr).astype(np.int32)
        if missing == "raise" and (codes < 0).any():
            bad = [x for x, c in zip(np.asarray(arr, dtype=object), codes) if c < 0]
            shown = ", ".join(show_id(b) for b in bad[:5]) + (" ..." if len(bad) > 5 else "")
            raise UnknownIdError(f"{len(bad)} unknown {role} id(s): {shown}")
        return codes

    # ------------------------------------------------------------------ derived data
    def take(self, positions: np.ndarray) -> Interactions:
        """A new Interactions with the same id maps holding only the entries at ``positions``.

        ``positions`` index the stored entries in CSR order (a boolean mask of length nnz also works).
        Splits use this so train and test share one id space.
        """
        positions = np.asarray(positions)
        if positions.dtype == bool:
            if len(positions) != self.nnz:
                raise InvalidParameterError(f"mask has {len(positions)} entries, data has {self.nnz}")
            positions = np.flatnonzero(positions)
        positions = np.sort(positions.astype(np.int64))
        rows, cols, vals = self.coo()
        indptr = np.zeros(self.n_users + 1, dtype=_index_dtype(len(positions)))
        np.cumsum(np.bincount(rows[positions], minlength=self.n_users), out=indptr[1:])
        matrix = sp.csr_matrix((vals[positions], cols[positions], indptr), shape=self.shape)
        return Interactions(
            matrix,
            self._users,
            self._items,
            timestamps=None if self.timestamps is None else self.timestamps[positions],
            events=None if self.events is None else self.events[positions],
            has_values=self.has_values,
            source=self.source,
        )

    def with_values(self, values: np.ndarray) -> Interactions:
        """Same entries and ids with new values (length nnz, CSR order)."""
        values = np.asarray(values, dtype=np.float32)
        if values.shape != (self.nnz,):
            raise InvalidParameterError(f"values must have shape ({self.nnz},), got {values.shape}")
        m = self._matrix
        matrix = sp.csr_matrix((values, m.indices, m.indptr), shape=m.shape)
        return Interactions(
            matrix, self._users, self._items, timestamps=self.timestamps, events=self.events, source=self.source
        )

    def reindex(
        self,
        user_ids: Sequence[Hashable] | pd.Index,
        item_ids: Sequence[Hashable] | pd.Index,
        unknown: Literal["drop", "raise"] = "drop",
    ) -> tuple[Interactions, int]:
        """Express these interactions in other id maps (e.g. a model's); returns (result, entries dropped).

        Entries whose user or item is not in the new maps are dropped (``unknown='drop'``) or raise.
        """
        users, items = pd.Index(user_ids), pd.Index(item_ids)
        rows, cols, vals = self.coo()
        new_u = users.get_indexer(self._users)[rows]
        new_i = items.get_indexer(self._items)[cols]
        keep = (new_u >= 0) & (new_i >= 0)
        dropped = int((~keep).sum())
        if dropped and unknown == "raise":
            pos = int(np.flatnonzero(~keep)[0])
            role, bad = ("user", self._users[rows[pos]]) if new_u[pos] < 0 else ("item", self._items[cols[pos]])
            raise UnknownIdError(f"unknown {role} id {show_id(bad)} ({dropped} entries affected)")
        key = new_u[keep].astype(np.int64) * len(items) + new_i[keep]
        order = np.argsort(key, kind="stable")
        r, c = new_u[keep][order].astype(np.int32), new_i[keep][order].astype(np.int32)
        indptr = np.zeros(len(users) + 1, dtype=_index_dtype(len(r)))
        np.cumsum(np.bincount(r, minlength=len(users)), out=indptr[1:])
        matrix = sp.csr_matrix((vals[keep][order], c, indptr), shape=(len(users), len(items)))
        kept = np.flatnonzero(keep)[order]
        result = Interactions(
            matrix,
            users,
            items,
            timestamps=None if self.timestamps is None else self.timestamps[kept],
            events=None if self.events is None else self.events[kept],
            has_values=self.has_values,
            source=self.source,
        )
        return result, dropped

    def to_frame(self) -> pd.DataFrame:
        """Long DataFrame with columns user, item, value (+ timestamp, event when present), CSR order."""
        rows, cols, vals = self.coo()
        data: dict[str, Any] = {
            "user": self._users.take(rows),
            "item": self._items.take(cols),
            "value": vals,
        }
        if self.timestamps is not None:
            data["timestamp"] = self.timestamps
        if self.events is not None:
            data["event"] = self.events
        return pd.DataFrame({k: np.asarray(v) for k, v in data.items()})

    def user_counts(self) -> np.ndarray:
        """Interactions per user (int64, length n_users)."""
        return np.diff(self._matrix.indptr).astype(np.int64)

    def item_counts(self) -> np.ndarray:
        """Interactions per item (int64, length n_items)."""
        return column_counts(self._matrix.indptr, self._matrix.indices, self.n_items)

    def describe(self, histogram_bins: int = 10) -> dict[str, Any]:
        """Summary for ``mfrec data info``: sizes, density, value histogram, activity quantiles, time span."""
        quantiles = (0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)

        def q(counts: np.ndarray) -> dict[str, float]:
            return {f"p{int(round(p * 100))}": float(np.quantile(counts, p)) for p in quantiles} | {
                "mean": float(counts.mean())
            }

        vals = self.values.astype(np.float64)
        uniq = np.unique(vals)
        if len(uniq) <= 20:
            hist = {f"{v:g}": int(c) for v, c in zip(uniq, np.unique(vals, return_counts=True)[1])}
        else:
            lo, hi = float(vals.min()), float(vals.max())
            # heavy-tailed counts (play counts) get log-spaced bins; the equal-width ones would put all in one bin
            bins = np.geomspace(lo, hi, histogram_bins + 1) if lo > 0 and hi / lo > 1000 else histogram_bins
            counts, edges = np.histogram(vals, bins=bins)
            hist = {f"[{edges[j]:.4g}, {edges[j + 1]:.4g}{']' if j == len(counts) - 1 else ')'}": int(counts[j])
                    for j in range(len(counts))}
        info: dict[str, Any] = {
            "users": self.n_users,
            "items": self.n_items,
            "interactions": self.nnz,
            "density": self.density,
            "values": {
                "given": self.has_values,
                "min": float(vals.min()) if len(vals) else None,
                "max": float(vals.max()) if len(vals) else None,
                "mean": float(vals.mean()) if len(vals) else None,
                "histogram": hist,
            },
            "per_user": q(self.user_counts()),
            "per_item": q(self.item_counts()),
        }
        if self.timestamps is not None and len(self.timestamps):
            t0, t1 = int(self.timestamps.min()), int(self.timestamps.max())
            info["time_span"] = {
                "start": pd.Timestamp(t0, unit="s").isoformat(),
                "end": pd.Timestamp(t1, unit="s").isoformat(),
                "days": (t1 - t0) / 86400.0,
            }
        if self.events is not None:
            ev, cnt = np.unique(self.events.astype(str), return_counts=True)
            info["events"] = {str(e): int(c) for e, c in zip(ev, cnt)}
        return info


# ---------------------------------------------------------------------- files
_USER_COLUMNS = ("user", "user_id", "userId", "userID", "UserId", "uid", "customer", "customer_id", "customerId",
                 "CustomerID", "client_id", "visitor_id", "member_id")
_ITEM_COLUMNS = ("item", "item_id", "itemId", "itemID", "movieId", "movie_id", "artistID", "artist_id", "iid",
                 "product", "product_id", "productId", "ProductID", "sku", "SKU", "article", "article_id", "track",
                 "track_id", "artist", "song_id", "book_id", "isbn", "ISBN", "StockCode")
_VALUE_COLUMNS = ("value", "rating", "weight", "count", "plays", "play_count", "score", "confidence", "quantity",
                  "qty", "Quantity", "clicks", "views")
_TIME_COLUMNS = ("timestamp", "time", "ts", "datetime", "date", "event_time", "InvoiceDate", "created_at")


def _pick(columns: Sequence[str], given: str | None, candidates: Sequence[str]) -> str | None:
    if given is not None:
        return given
    for c in candidates:
        if c in columns:
            return c
    return None


#: longest first line (header or first record) read_interactions accepts, and most columns
MAX_LINE_BYTES = 1 << 20
MAX_COLUMNS = 1000
#: what a corrupt gzip / bz2 / xz / zip stream raises while it is read
_CORRUPT = (OSError, EOFError, zlib.error, lzma.LZMAError, zipfile.BadZipFile, NotImplementedError)


def _check_sep(sep: Any) -> str:
    """A one-character field separator; the two-character spelling ``\\t`` (typed in a shell) means tab."""
    if not isinstance(sep, str):
        raise InvalidParameterError(f"the separator must be a string, got {type(sep).__name__}")
    sep = {"\\t": "\t", "tab": "\t", "\\s": " "}.get(sep, sep)
    if len(sep) != 1 or sep in "\r\n\"":
        raise InvalidParameterError(
            f"the separator (--sep / sep=) must be one character such as ',' ';' '|' or tab ('\\t'), got {clip(sep)}")
    return sep


def _check_names(names: Sequence[str]) -> list[str]:
    names = [str(n).strip() for n in names]
    if not names or any(not n for n in names):
        raise InvalidParameterError(f"column names (--names / names=) must be non-empty, got {clip(names)}")
    seen = {n for n in names if names.count(n) > 1}
    if seen:
        raise InvalidParameterError(f"column name {clip(sorted(seen)[0])} is given twice in --names / names=")
    if len(names) > MAX_COLUMNS:
        raise InvalidParameterError(f"{len(names)} column names: at most {MAX_COLUMNS}")
    return names


def _open_text_bytes(path: Path, last_suffix: str):
    """A binary stream of the file's text, decompressed by its suffix (as pandas does)."""
    if last_suffix == ".gz":
        return gzip.open(path, "rb")
    if last_suffix == ".bz2":
        return bz2.open(path, "rb")
    if last_suffix == ".xz":
        return lzma.open(path, "rb")
    if last_suffix == ".zip":
        zf = zipfile.ZipFile(path)
        members = [n for n in zf.namelist() if not n.endswith("/")]
        if len(members) != 1:
            zf.close()
            raise InvalidDataError(f"{path}: a zip of interactions must hold exactly one file, it holds "
                                   f"{len(members)}")
        return zf.open(members[0])
    return open(path, "rb")


def _read_head(path: Path, last_suffix: str, source: str) -> bytes:
    """At most :data:`MAX_LINE_BYTES` + 1 bytes of the file's text, before pandas reads (and copies) anything:
    a corrupt compressed file and a first line longer than that are refused here."""
    try:
        with _open_text_bytes(path, last_suffix) as fh:
            head = fh.read(MAX_LINE_BYTES + 1)
    except InvalidDataError:
        raise
    except _CORRUPT as exc:
        raise InvalidDataError(f"{source}: the compressed file is corrupt or truncated ({one_line(exc)})") from None
    if head.find(b"\n") < 0 and len(head) > MAX_LINE_BYTES:
        raise InvalidDataError(f"{source}: line 1 is longer than {MAX_LINE_BYTES >> 20} MiB; this is not a "
                               "CSV/TSV of interactions (or the file has no line breaks)")
    return head


def _check_columns(head: bytes, sep: str, source: str) -> None:
    """Refuse a first line of more than :data:`MAX_COLUMNS` fields (pandas renames duplicate names in quadratic
    time)."""
    end = head.find(b"\n")
    n_cols = (head if end < 0 else head[:end]).count(sep.encode("utf-8", "replace")) + 1
    if n_cols > MAX_COLUMNS:
        raise InvalidDataError(f"{source}: line 1 has {n_cols} columns (at most {MAX_COLUMNS}); is the separator "
                               f"right? (--sep / sep=, now {sep!r})")


#: separators :func:`read_interactions` recognises when none is given
_SNIFFED = (",", ";", "\t", "|")


def _sniff_sep(head: bytes, default: str) -> str:
    """The separator of a text file whose first MiB is ``head``: the default when its first lines split on it
    into the same number (>= 2) of fields, else the first of ``, ; tab |`` that does (csv.Sniffer's rule, on
    these candidates only); the default when none does."""
    lines = head.decode("utf-8", "replace").splitlines()[:20]
    lines = [line for line in lines if line.strip()][:-1] if len(lines) > 1 else lines  # the last may be cut
    if not lines:
        return default

    def consistent(sep: str) -> bool:
        counts = {line.count(sep) for line in lines}
        return len(counts) == 1 and counts.pop() >= 1

    if consistent(default):
        return default
    return next((sep for sep in _SNIFFED if consistent(sep)), default)


def read_interactions(
    path: str | Path,
    user: str | None = None,
    item: str | None = None,
    value: str | None = None,
    timestamp: str | None = None,
    event: str | None = None,
    duplicates: DuplicatePolicy = "sum",
    *,
    sep: str | None = None,
    header: bool = True,
    names: Sequence[str] | None = None,
    allow_negative: bool = True,
    encoding: str = "utf-8",
) -> Interactions:
    """Read interactions from CSV, TSV (also ``.dat``/``.txt``) or Parquet.

    Column names default to common spellings (``user``/``userId``/..., ``item``/``movieId``/...,
    ``rating``/``value``/..., ``timestamp``); pass them explicitly otherwise. Errors name the file
    and the line (1-based, header included) and the column at fault.

    Parameters
    ----------
    path : str or Path
        ``.csv``, ``.tsv``, ``.dat``, ``.txt``, ``.parquet`` or ``.pq`` (compressed CSVs too: ``.csv.gz``).
    sep : str, optional
        Field separator; defaults to "," for .csv and tab otherwise.
    header : bool
        Whether the first line holds column names (text formats).
    names : sequence of str, optional
        Column names for a file without a header.
    """
    path = Path(path)
    source = str(path)
    if not path.exists():
        raise InvalidDataError(f"{source}: no such file")
    if path.is_dir():
        raise InvalidDataError(f"{source}: is a directory, expected a CSV/TSV/Parquet file")
    suffixes = [s.lower() for s in path.suffixes]
    base = suffixes[-2] if suffixes and suffixes[-1] in (".gz", ".bz2", ".zip", ".xz") and len(suffixes) > 1 else (
        suffixes[-1] if suffixes else ""
    )
    if base in (".parquet", ".pq"):
        try:
            df = pd.read_parquet(path)
        except Exception as exc:
            raise InvalidDataError(f"{source}: cannot read Parquet ({exc.__class__.__name__}: {exc})") from exc
        origin = _Origin(source=source)
    else:
        default = "," if base == ".csv" else "\t"
        sep = None if sep is None else _check_sep(sep)
        if names is not None:
            names = _check_names(names)
        head = _read_head(path, suffixes[-1] if suffixes else "", source)
        sep = sep if sep is not None else _sniff_sep(head, default)
        _check_columns(head, sep, source)  # with the separator pandas will use, sniffed or given
        hdr = 0 if header and names is None else None
        if names is not None and header:
            hdr = 0  # replace the file's header by the given names
        try:
            df = pd.read_csv(
                path,
                sep=sep,
                header=hdr,
                names=list(names) if names is not None else None,
                skip_blank_lines=False,
                encoding=encoding,
                engine="c",
                keep_default_na=True,
            )
        except pd.errors.EmptyDataError as exc:
            raise InvalidDataError(f"{source}: the file is empty") from exc
        except pd.errors.ParserError as exc:
            raise InvalidDataError(f"{source}: cannot parse ({one_line(exc)}); is the separator right? "
                                   f"(--sep / sep=, now {sep!r})") from exc
        except UnicodeDecodeError as exc:
            raise InvalidDataError(f"{source}: not {encoding} text ({exc.reason} at byte {exc.start})") from exc
        except _CORRUPT as exc:
            raise InvalidDataError(f"{source}: the compressed file is corrupt or truncated ({one_line(exc)})") from exc
        df.columns = [str(c).strip() for c in df.columns]
        # Blank lines at the end are not data; blank lines in the middle are reported by line.
        all_nan = df.isna().all(axis=1).to_numpy()
        if all_nan.any():
            last_data = np.flatnonzero(~all_nan)
            df = df.iloc[: (last_data[-1] + 1) if len(last_data) else 0]
        origin = _Origin(source=source, first_line=2 if hdr == 0 else 1)
    cols = list(df.columns)
    user = _pick(cols, user, _USER_COLUMNS)
    item = _pick(cols, item, _ITEM_COLUMNS)
    value = _pick(cols, value, _VALUE_COLUMNS) if value is not False else None
    timestamp = _pick(cols, timestamp, _TIME_COLUMNS) if timestamp is not False else None
    if user is None or item is None:
        role = "user" if user is None else "item"
        shown = ", ".join(c if len(c) <= 24 else c[:21] + "..." for c in map(str, cols[:8]))
        shown += f" and {len(cols) - 8} more" if len(cols) > 8 else ""
        hint = ""
        if len(cols) == 1 and any(ch in str(cols[0]) for ch in ";,|\t "):
            hint = "; the whole line is one column: is the separator right? (--sep / sep=)"
        raise InvalidDataError(
            f"{source}: no {role} column found among {shown}; name it with --{role} / {role}=...{hint}"
        )
    return Interactions.from_frame(
        df,
        user=user,
        item=item,
        value=value,
        timestamp=timestamp,
        event=event,
        duplicates=duplicates,
        allow_negative=allow_negative,
        _origin=origin,
    )


def as_interactions(data: Any, user: str | None = None, item: str | None = None, value: str | None = None) -> Any:
    """What every model's ``fit`` accepts as data, as :class:`Interactions` (anything else is passed through).

    * a pandas DataFrame: one row per interaction; the user, item and value columns are ``user=`` / ``item=`` /
      ``value=`` or found by name as in :func:`read_interactions` (``user``/``customer_id``/..., ``item``/
      ``product_id``/``sku``/..., ``rating``/``quantity``/...; no value column: every row counts 1);
    * a scipy.sparse matrix: rows are users, columns items, the ids are the positions (a dense array is not
      taken: its zeros would silently become "no interaction"; wrap it with ``Interactions.from_matrix``);
    * an :class:`Interactions` (or an ``ImplicitFeedback``, a dask input...): returned as it is.
    """
    if isinstance(data, pd.DataFrame):
        cols = [str(c) for c in data.columns]
        u, i = _pick(cols, user, _USER_COLUMNS), _pick(cols, item, _ITEM_COLUMNS)
        if u is None or i is None:
            role = "user" if u is None else "item"
            raise InvalidDataError(f"no {role} column found among {', '.join(cols[:8])}; name it with {role}=...")
        v = _pick(cols, value, _VALUE_COLUMNS)
        t = _pick(cols, None, _TIME_COLUMNS)
        return Interactions.from_frame(data, user=u, item=i, value=v, timestamp=t)
    if user is not None or item is not None or value is not None:
        raise InvalidParameterError("user= / item= / value= name DataFrame columns; the data is not a DataFrame")
    if sp.issparse(data):
        return Interactions.from_matrix(data)
    return data
