"""Feedback conversion: explicit ratings -> implicit feedback, event logs -> implicit or explicit.

Implicit feedback (Hu, Koren & Volinsky 2008) is a pair of users x items matrices:

* the **preference** ``p_ui`` in {0, 1}: does user ``u`` like item ``i``?
* the **confidence** ``c_ui >= 0``: how much the loss ``sum_ui c_ui (p_ui - x_u . y_i)^2`` trusts ``p_ui``.

Only the observed pairs are stored (:class:`ImplicitFeedback`); every pair that is not stored has
``p_ui = 0`` and ``c_ui = unobserved_confidence`` (1 in Hu et al., 0 in the course notes' worked example).

Confidence from a non-negative strength ``r`` (rating, play count, aggregated event weight),
see :func:`confidence`:

* ``"linear"``:   ``c = 1 + alpha * r``
* ``"log"``:      ``c = 1 + alpha * log(1 + r / eps)``
* ``"identity"``: ``c = r`` (a confidence given as is, as in the worked example)

Event logs (:func:`events_to_implicit`) aggregate in this order:

1. **per row**: ``v = w[event] * f`` where ``w`` are the per-event weights and ``f`` the watch fraction
   of the row (1 when the row has none, or with ``fraction_scaling="none"``);
2. **per (user, item) pair**: the rows' ``v`` merge by the ``duplicates`` policy
   (``sum | mean | max | last | error``, as in :meth:`Interactions.from_frame`) into ``r_ui``;
3. **per pair**: ``p_ui = 1 if r_ui > 0 else 0`` and ``c_ui = confidence(r_ui)``.

Fractions are accepted as 0.25, 25 or "25%": strings ending in ``%`` are percentages; bare numbers
are fractions unless one of them in the column exceeds 1, then the whole column is read as
percentages (``fraction_unit="auto"``; pass ``"fraction"`` or ``"percent"`` to decide yourself).
A missing fraction (NaN, None, "") means the event has none (a click, a purchase).

:func:`events_to_explicit` turns a log into pseudo-ratings: each row gets a rating from a rule
(:class:`PseudoRatingRule` or a callable), then pairs merge by ``duplicates`` (``max`` by default).

Worked example (the same one as in ``docs/feedback.md``):

>>> import pandas as pd
>>> log = pd.DataFrame({
...     "user":     ["ann", "ann", "ann", "ann", "bob", "bob", "bob"],
...     "item":     ["m1", "m1", "m1", "m2", "m1", "m3", "m3"],
...     "event":    ["view", "view", "purchase", "click", "view", "view", "click"],
...     "fraction": [0.5, 0.25, None, None, 0.0, 0.9, None],
... })
>>> fb = events_to_implicit(log, fraction="fraction",
...                         weights={"view": 1.0, "click": 2.0, "purchase": 5.0}, alpha=2.0)
>>> fb.to_frame()
  user item  preference  confidence
0  ann   m1         1.0        12.5
1  ann   m2         1.0         5.0
2  bob   m1         0.0         1.0
3  bob   m3         1.0         6.8

ann/m1: ``1 * 0.5 + 1 * 0.25 + 5 * 1 = 5.75``, so ``c = 1 + 2 * 5.75 = 12.5``; bob/m1 watched 0 %,
so ``r = 0``, ``p = 0``, ``c = 1``; bob/m3: ``0.9 + 2 = 2.9``, ``c = 6.8``.

>>> rule = PseudoRatingRule(min_fraction=0.8, positive_events=("purchase",))
>>> events_to_explicit(log, fraction="fraction", rule=rule).to_frame()[["user", "item", "value"]]
  user item  value
0  ann   m1    1.0
1  ann   m2    0.0
2  bob   m1    0.0
3  bob   m3    1.0
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from mfrec._params import check_choice, check_float
from mfrec.data.interactions import (
    DUPLICATE_POLICIES,
    Interactions,
    _index_dtype,
    _numeric_column,
    _Origin,
)
from mfrec.exceptions import InvalidDataError, InvalidParameterError

__all__ = [
    "ImplicitFeedback",
    "PseudoRatingRule",
    "confidence",
    "explicit_to_implicit",
    "events_to_implicit",
    "events_to_explicit",
    "parse_fractions",
    "CONFIDENCE_KINDS",
]

ConfidenceKind = Literal["linear", "log", "identity"]
CONFIDENCE_KINDS: tuple[str, ...] = ("linear", "log", "identity")

_DENSE_LIMIT = 50_000_000  # cells; dense() refuses more


# ---------------------------------------------------------------------- the container
@dataclass(frozen=True, eq=False)
class ImplicitFeedback:
    """Implicit feedback: preferences and confidences of the stored pairs, plus the value of the rest.

    Parameters
    ----------
    interactions : Interactions
        Sparsity pattern and id maps. Its values (``interactions.matrix.data``, float32, CSR order) are
        the confidences ``c_ui >= 0`` of the stored pairs.
    preference : numpy.ndarray, shape (nnz,), float32
        ``p_ui`` in {0, 1} of each stored pair, aligned with ``interactions.matrix.data``.
    unobserved_confidence : float, default 1.0
        ``c_ui`` of every pair that is not stored (whose ``p_ui`` is 0): 1 in Hu, Koren & Volinsky
        (2008), 0 in the worked example of the course notes.

    Notes
    -----
    The implicit objective over *all* pairs is
    ``sum_{u,i} c_ui (p_ui - x_u . y_i)^2 + lambda (sum_u ||x_u||^2 + sum_i ||y_i||^2)``.
    """

    interactions: Interactions
    preference: np.ndarray
    unobserved_confidence: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.interactions, Interactions):
            raise InvalidParameterError(
                f"interactions must be an Interactions, got {type(self.interactions).__name__}"
            )
        pref = np.ascontiguousarray(self.preference, dtype=np.float32)
        if pref.shape != (self.interactions.nnz,):
            raise InvalidDataError(
                f"preference must have shape ({self.interactions.nnz},) (one per stored pair), got {pref.shape}"
            )
        bad = (pref != 0) & (pref != 1)
        if bad.any():
            self._raise_at(int(np.flatnonzero(bad)[0]), f"preference {float(pref[bad][0]):g} is not 0 or 1")
        conf = self.interactions.values
        neg = conf < 0
        if neg.any():
            self._raise_at(int(np.flatnonzero(neg)[0]), f"confidence {float(conf[neg][0]):g} is negative")
        unobs = check_float("unobserved_confidence", self.unobserved_confidence, minimum=0.0)
        object.__setattr__(self, "preference", pref)
        object.__setattr__(self, "unobserved_confidence", unobs)

    def _raise_at(self, position: int, what: str) -> None:
        raise InvalidDataError(f"{self.interactions.entry_name(position)}: {what}")

    # ------------------------------------------------------------------ views
    @property
    def confidence(self) -> np.ndarray:
        """Confidences ``c_ui`` of the stored pairs (float32, shape (nnz,), CSR order)."""
        return self.interactions.values

    @property
    def confidence_matrix(self) -> sp.csr_matrix:
        """Users x items CSR (float32) of the stored confidences; absent pairs mean ``unobserved_confidence``."""
        return self.interactions.matrix

    @property
    def preference_matrix(self) -> sp.csr_matrix:
        """Users x items CSR (float32) of ``p_ui`` with the same pattern as :attr:`confidence_matrix`.

        Stored pairs with ``p_ui = 0`` are kept as explicit zeros.
        """
        m = self.interactions.matrix
        return sp.csr_matrix((self.preference, m.indices, m.indptr), shape=m.shape)

    @property
    def n_users(self) -> int:
        return self.interactions.n_users

    @property
    def n_items(self) -> int:
        return self.interactions.n_items

    @property
    def shape(self) -> tuple[int, int]:
        return self.interactions.shape

    @property
    def nnz(self) -> int:
        return self.interactions.nnz

    @property
    def user_ids(self) -> np.ndarray:
        return self.interactions.user_ids

    @property
    def item_ids(self) -> np.ndarray:
        return self.interactions.item_ids

    def __repr__(self) -> str:
        pos = int(self.preference.sum())
        return (
            f"ImplicitFeedback({self.n_users} users x {self.n_items} items, {self.nnz} stored pairs "
            f"({pos} preferred), unobserved_confidence={self.unobserved_confidence:g})"
        )

    def dense(self) -> tuple[np.ndarray, np.ndarray]:
        """``(P, C)``: dense float64 arrays of shape (n_users, n_items), for small data and tests.

        Pairs that are not stored get ``P = 0`` and ``C = unobserved_confidence``.
        """
        cells = self.n_users * self.n_items
        if cells > _DENSE_LIMIT:
            raise InvalidParameterError(
                f"dense() would allocate {cells} cells (limit {_DENSE_LIMIT}); use the sparse matrices"
            )
        rows, cols, conf = self.interactions.coo()
        P = np.zeros(self.shape, dtype=np.float64)
        C = np.full(self.shape, self.unobserved_confidence, dtype=np.float64)
        P[rows, cols] = self.preference
        C[rows, cols] = conf
        return P, C

    def to_frame(self) -> pd.DataFrame:
        """Long DataFrame ``user, item, preference, confidence`` of the stored pairs, CSR order."""
        rows, cols, conf = self.interactions.coo()
        return pd.DataFrame(
            {
                "user": np.asarray(self.interactions.user_index_map.take(rows)),
                "item": np.asarray(self.interactions.item_index_map.take(cols)),
                "preference": self.preference.astype(np.float64),
                "confidence": np.round(conf.astype(np.float64), 6),
            }
        )

    @classmethod
    def from_dense(
        cls,
        P: np.ndarray,
        C: np.ndarray,
        unobserved_confidence: float = 0.0,
        user_ids: Sequence[Hashable] | None = None,
        item_ids: Sequence[Hashable] | None = None,
    ) -> ImplicitFeedback:
        """Wrap dense preference and confidence matrices given as is.

        A pair is stored when ``P != 0`` or ``C != unobserved_confidence``; the others are implied.

        Parameters
        ----------
        P : array_like, shape (n_users, n_items)
            Preferences in {0, 1}.
        C : array_like, shape (n_users, n_items)
            Confidences >= 0.
        unobserved_confidence : float, default 0.0
            The confidence the pairs that are not stored stand for.
        user_ids, item_ids : sequence, optional
            External ids (default 0..n-1).
        """
        P = np.asarray(P, dtype=np.float64)
        C = np.asarray(C, dtype=np.float64)
        if P.ndim != 2 or P.shape != C.shape:
            raise InvalidDataError(f"P and C must be 2-D of the same shape, got {P.shape} and {C.shape}")
        for name, arr in (("P", P), ("C", C)):
            if not np.isfinite(arr).all():
                r, c = np.argwhere(~np.isfinite(arr))[0]
                raise InvalidDataError(f"{name}[{r}, {c}] is NaN or infinite")
        bad = (P != 0) & (P != 1)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise InvalidDataError(f"P[{r}, {c}] = {P[r, c]:g} is not 0 or 1")
        if (C < 0).any():
            r, c = np.argwhere(C < 0)[0]
            raise InvalidDataError(f"C[{r}, {c}] = {C[r, c]:g} is negative")
        unobs = check_float("unobserved_confidence", unobserved_confidence, minimum=0.0)
        mask = (P != 0) | (C != unobs)
        rows, cols = np.nonzero(mask)  # row-major, so already in CSR order
        indptr = np.zeros(P.shape[0] + 1, dtype=_index_dtype(len(rows)))
        np.cumsum(np.bincount(rows, minlength=P.shape[0]), out=indptr[1:])
        matrix = sp.csr_matrix(
            (C[rows, cols].astype(np.float32), cols.astype(np.int32), indptr), shape=P.shape
        )
        return cls(Interactions(matrix, user_ids, item_ids), P[rows, cols], unobs)


# ---------------------------------------------------------------------- confidence
def _check_confidence_params(kind: str, alpha: float, eps: float) -> tuple[str, float, float]:
    kind = check_choice("confidence", kind, CONFIDENCE_KINDS)
    alpha = check_float("alpha", alpha, minimum=0.0)
    eps = check_float("eps", eps, minimum=0.0, strict_min=True)
    return kind, alpha, eps


def _confidence_unchecked(r: np.ndarray, kind: str, alpha: float, eps: float) -> np.ndarray:
    if kind == "linear":
        return 1.0 + alpha * r  # c = 1 + alpha r
    if kind == "log":
        return 1.0 + alpha * np.log1p(r / eps)  # c = 1 + alpha log(1 + r / eps)
    return r.copy()  # identity ("given"): c = r


def confidence(
    values: Any,
    kind: ConfidenceKind = "linear",
    alpha: float = 1.0,
    eps: float = 1.0,
) -> np.ndarray:
    """Confidence ``c`` from non-negative strengths ``r`` (ratings, counts, aggregated event weights).

    Parameters
    ----------
    values : array_like of float, any shape
        The strengths ``r``, finite and >= 0.
    kind : {"linear", "log", "identity"}
        ``"linear"``: ``c = 1 + alpha * r`` (Hu et al. 2008, eq. 3);
        ``"log"``: ``c = 1 + alpha * log(1 + r / eps)`` (Hu et al. 2008, eq. 6);
        ``"identity"``: ``c = r``, a confidence given as is.
    alpha : float, >= 0
        Rate at which confidence grows with ``r``.
    eps : float, > 0
        Scale of ``r`` in the log form.

    Returns
    -------
    numpy.ndarray of float64, same shape as ``values``
        ``c >= 1`` for the linear and log forms, ``c = r >= 0`` for identity.

    Raises
    ------
    InvalidParameterError
        A bad ``kind``, ``alpha`` or ``eps``.
    InvalidDataError
        A value is NaN, infinite or negative (the message gives its position).
    """
    kind, alpha, eps = _check_confidence_params(kind, alpha, eps)
    try:
        r = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidDataError(f"confidence values must be numbers ({exc})") from exc
    bad = ~np.isfinite(r) | (r < 0)
    if bad.any():
        pos = tuple(int(x) for x in np.argwhere(bad)[0]) if r.ndim else ()
        where = f" at position {pos[0] if len(pos) == 1 else pos}" if pos else ""
        raise InvalidDataError(
            f"value {r[pos] if pos else float(r):g}{where} cannot give a confidence: values must be finite and >= 0"
        )
    return _confidence_unchecked(r, kind, alpha, eps)


#: entries per piece of :func:`entry_confidence`: its float64 temporaries (about 10 bytes per entry of a piece)
#: stay under 1 MiB whatever the data (at 2^20 entries they were 10 MB, 7 % of data + factors on the implicit
#: benchmark at d = 64)
CONFIDENCE_PIECE = 1 << 16


def entry_confidence(values: Any, kind: str, alpha: float, eps: float, who: Callable[[int], str],
                     dtype: Any = np.float64, keep: bool = True) -> np.ndarray | None:
    """Confidences ``c`` of stored entries whose values are ``r``: the one rule every model uses.

    ``kind`` is ``"linear"`` (``1 + alpha r``), ``"log"`` (``1 + alpha log(1 + r / eps)``) or ``"given"`` /
    ``"identity"`` (``c = r``); ``alpha`` and ``eps`` are taken as already validated. ``who(pos)`` names the
    entry at position ``pos`` for the error (``Interactions.entry_name``, or the fold-in's item). The result is a
    new array of ``dtype`` (default float64), computed in float64 pieces of :data:`CONFIDENCE_PIECE` entries, so a
    fit on float32 factors holds no float64 copy of its data.

    Raises
    ------
    InvalidDataError
        The first value that is not finite, or negative (with the count of negative values), named by ``who``.

    ``keep=False`` checks the values only and returns None (a fit that reads its confidences from the values).
    """
    vals = np.asarray(values)
    flat = vals.reshape(-1)
    out = np.empty(flat.shape, dtype=dtype) if keep else None
    negatives, first_negative = 0, None
    for lo in range(0, len(flat), CONFIDENCE_PIECE):
        r = np.asarray(flat[lo:lo + CONFIDENCE_PIECE], dtype=np.float64)
        bad = ~np.isfinite(r)
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise InvalidDataError(f"value {r[pos]} of {who(lo + pos)} is not finite")
        neg = r < 0
        if neg.any():
            negatives += int(neg.sum())
            if first_negative is None:
                pos = int(np.flatnonzero(neg)[0])
                first_negative = (lo + pos, r[pos])
        if keep:
            out[lo:lo + len(r)] = _confidence_unchecked(r, kind, float(alpha), float(eps))
    if first_negative is not None:
        pos, value = first_negative
        what = "confidence" if kind in ("given", "identity") else f"value (for {kind} confidence)"
        raise InvalidDataError(
            f"negative {what} {value:g} of {who(pos)} ({negatives} negative entries); implicit "
            "feedback needs values >= 0 — drop or clip them, or convert with mfrec.data.feedback"
        )
    return out.reshape(vals.shape) if keep else None


# ---------------------------------------------------------------------- explicit -> implicit
def explicit_to_implicit(
    interactions: Interactions,
    threshold: float | None = None,
    confidence: ConfidenceKind = "linear",
    alpha: float = 1.0,
    eps: float = 1.0,
    below_threshold: Literal["drop", "negative"] = "drop",
    unobserved_confidence: float = 1.0,
) -> ImplicitFeedback:
    """Explicit ratings to implicit preference + confidence.

    Parameters
    ----------
    interactions : Interactions
        Ratings ``r_ui`` of the rated pairs.
    threshold : float, optional
        ``p_ui = 1 if r_ui >= threshold else 0``. Without it every rated pair is a preference
        (``p_ui = 1``), unrated pairs being 0.
    confidence : {"linear", "log", "identity"}
        How ``c_ui`` follows from ``r_ui``, see :func:`confidence`.
    alpha, eps : float
        Parameters of the confidence.
    below_threshold : {"drop", "negative"}
        ``"drop"``: pairs rated below the threshold are removed (they become unobserved: ``p = 0``,
        ``c = unobserved_confidence``). ``"negative"``: they stay stored with ``p = 0`` and their
        confidence ``c(r_ui)`` (a disliked item is a confident 0).
    unobserved_confidence : float, default 1.0
        Confidence of the pairs not stored.

    Returns
    -------
    ImplicitFeedback
        Same id maps as ``interactions``; timestamps and events of kept pairs are kept.

    Raises
    ------
    InvalidDataError
        A kept rating is negative (no confidence); the message names the user and item.
    """
    if not isinstance(interactions, Interactions):
        raise InvalidParameterError(f"interactions must be an Interactions, got {type(interactions).__name__}")
    kind, alpha, eps = _check_confidence_params(confidence, alpha, eps)
    below_threshold = check_choice("below_threshold", below_threshold, ("drop", "negative"))
    r = interactions.values.astype(np.float64)
    if threshold is None:
        pref = np.ones(len(r), dtype=np.float32)
        kept = interactions
    else:
        t = check_float("threshold", threshold)
        liked = r >= t
        if below_threshold == "drop":
            kept = interactions.take(np.flatnonzero(liked))
            r = r[liked]
            pref = np.ones(len(r), dtype=np.float32)
        else:
            kept = interactions
            pref = liked.astype(np.float32)
    neg = r < 0
    if neg.any():
        pos = int(np.flatnonzero(neg)[0])
        raise InvalidDataError(
            f"{kept.entry_name(pos)}: rating {r[pos]:g} is negative and cannot give a confidence; "
            "shift the ratings or drop them with a threshold (below_threshold='drop')"
        )
    conf = _confidence_unchecked(r, kind, alpha, eps)
    return ImplicitFeedback(kept.with_values(conf), pref, unobserved_confidence)


# ---------------------------------------------------------------------- event logs
def parse_fractions(
    column: pd.Series,
    unit: Literal["auto", "fraction", "percent"] = "auto",
    name: str = "fraction",
) -> np.ndarray:
    """Watch fractions from 0.25, 25 or "25%" to float64 in [0, 1]; NaN where a row has none.

    Parameters
    ----------
    column : pandas.Series
        Numbers, numeric strings or percentages ("25%"); NaN, None and "" mean "no fraction".
    unit : {"auto", "fraction", "percent"}
        How bare numbers (without "%") are read. ``"auto"``: as percentages when any of them exceeds 1,
        else as fractions.
    name : str
        Column name for error messages.

    Returns
    -------
    numpy.ndarray of float64, shape (len(column),)

    Raises
    ------
    InvalidDataError
        A value is not a number, or falls outside [0, 1] once converted; the message names the row.
    """
    unit = check_choice("fraction_unit", unit, ("auto", "fraction", "percent"))
    origin = _Origin(row_labels=column.index)
    if isinstance(column.dtype, pd.CategoricalDtype):
        column = column.astype(object)
    if column.dtype == bool:
        raise InvalidDataError(f"column {name!r}: fractions must be numbers, got booleans")
    percent = np.zeros(len(column), dtype=bool)
    if pd.api.types.is_numeric_dtype(column):
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        obj = column.astype(object)
        is_str = obj.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
        text = obj[is_str].astype(str).str.strip()
        pct = text.str.endswith("%")
        stripped = text.where(~pct, text.str[:-1].str.strip())
        stripped = stripped.where(stripped != "", None)
        parsed_text = pd.to_numeric(stripped, errors="coerce")
        is_bool = obj.map(lambda v: isinstance(v, bool | np.bool_)).to_numpy(dtype=bool)
        numbers = pd.to_numeric(obj[~is_str & ~is_bool], errors="coerce")
        values = np.full(len(obj), np.nan)
        values[is_str] = parsed_text.to_numpy(dtype=np.float64, na_value=np.nan)
        values[~is_str & ~is_bool] = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
        percent[is_str] = pct.to_numpy(dtype=bool)
        given = obj.notna().to_numpy() & ~(
            is_str & (obj.map(lambda v: isinstance(v, str) and v.strip() in ("", "%"))).to_numpy(dtype=bool)
        )
        bad = given & np.isnan(values)
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise InvalidDataError(
                f"{origin.where(pos)}, column {name!r}: {obj.iloc[pos]!r} is not a fraction "
                "(expected e.g. 0.25, 25 or '25%')"
            )
    if np.isinf(values).any():
        pos = int(np.flatnonzero(np.isinf(values))[0])
        raise InvalidDataError(f"{origin.where(pos)}, column {name!r}: fraction is infinite")
    bare = ~percent & ~np.isnan(values)
    if unit == "percent" or (unit == "auto" and bare.any() and np.nanmax(values[bare]) > 1):
        percent = percent | bare
    out = np.where(percent, values / 100.0, values)
    bad = ~np.isnan(out) & ((out < 0) | (out > 1))
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise InvalidDataError(
            f"{origin.where(pos)}, column {name!r}: fraction {column.iloc[pos]!r} is outside [0, 1] "
            f"(read as {out[pos]:g})"
        )
    return out


def _check_frame(df: Any, columns: Mapping[str, str | None]) -> None:
    if not isinstance(df, pd.DataFrame):
        raise InvalidDataError(f"expected a pandas DataFrame, got {type(df).__name__}")
    for role, col in columns.items():
        if col is not None and col not in df.columns:
            raise InvalidDataError(
                f"missing {role} column {col!r}; columns are: {', '.join(map(str, df.columns))}"
            )
    if len(df) == 0:
        raise InvalidDataError("no events: the data is empty")


def _event_column(df: pd.DataFrame, event: str) -> np.ndarray:
    return df[event].astype(object).to_numpy(dtype=object)


def _row_weights(
    events: np.ndarray,
    weights: Mapping[Any, float],
    default_weight: float | None,
    origin: _Origin,
    event_name: str,
) -> np.ndarray:
    """Weight of each row's event; unknown events get ``default_weight`` or raise naming the row."""
    table = {}
    for key, w in weights.items():
        table[key] = check_float(f"weights[{key!r}]", w, minimum=0.0)
    codes, uniques = pd.factorize(pd.Series(events, dtype=object), use_na_sentinel=True)
    per_unique = np.empty(len(uniques), dtype=np.float64)
    known = ", ".join(repr(k) for k in sorted(table, key=str))
    for j, ev in enumerate(uniques):
        if ev in table:
            per_unique[j] = table[ev]
        elif default_weight is not None:
            per_unique[j] = default_weight
        else:
            pos = int(np.flatnonzero(codes == j)[0])
            raise InvalidDataError(
                f"{origin.where(pos)}, column {event_name!r}: unknown event type {ev!r}; known types: {known} "
                "(add it to weights= or pass default_weight=)"
            )
    out = np.empty(len(events), dtype=np.float64)
    missing = codes < 0
    if missing.any():
        if default_weight is None:
            pos = int(np.flatnonzero(missing)[0])
            raise InvalidDataError(
                f"{origin.where(pos)}, column {event_name!r}: event type is missing; known types: {known} "
                "(or pass default_weight=)"
            )
        out[missing] = default_weight
    out[~missing] = per_unique[codes[~missing]]
    return out


_VALUE_COL = "__mfrec_value__"


def _build(
    df: pd.DataFrame,
    values: np.ndarray,
    user: str,
    item: str,
    event: str | None,
    timestamp: str | None,
    duplicates: str,
) -> Interactions:
    cols = [user, item] + [c for c in (event, timestamp) if c is not None and c not in (user, item)]
    frame = df[list(dict.fromkeys(cols))].copy()
    frame[_VALUE_COL] = values
    if event is not None and isinstance(frame[event].dtype, pd.CategoricalDtype):
        frame[event] = frame[event].astype(object)
    return Interactions.from_frame(
        frame, user=user, item=item, value=_VALUE_COL, timestamp=timestamp, event=event, duplicates=duplicates
    )


def events_to_implicit(
    df: pd.DataFrame,
    user: str = "user",
    item: str = "item",
    event: str | None = "event",
    fraction: str | None = None,
    timestamp: str | None = None,
    weights: Mapping[Any, float] | None = None,
    default_weight: float | None = None,
    fraction_scaling: Literal["linear", "none"] = "linear",
    duplicates: str = "sum",
    confidence: ConfidenceKind = "linear",
    alpha: float = 1.0,
    eps: float = 1.0,
    *,
    fraction_unit: Literal["auto", "fraction", "percent"] = "auto",
    unobserved_confidence: float = 1.0,
    quantity: str | None = None,
) -> ImplicitFeedback:
    """An interaction log (one row per event) to implicit preference + confidence.

    The three steps (see the module docstring for a worked example):

    1. per row ``v = w[event] * f * q`` (``f`` = the row's fraction, 1 without one or with
       ``fraction_scaling="none"``; ``q`` = the row's quantity, 1 without a ``quantity`` column);
    2. per pair ``r_ui = duplicates(v over the pair's rows)``;
    3. ``p_ui = [r_ui > 0]``, ``c_ui = confidence(r_ui)``.

    Parameters
    ----------
    df : pandas.DataFrame
        The log.
    user, item : str
        Id columns.
    event : str or None
        Column of event types ("view", "click", "purchase"). ``None``: every row weighs
        ``default_weight`` (1 when not given).
    fraction : str, optional
        Column of fractions (0.25, 25 or "25%"; NaN when the event has none), see :func:`parse_fractions`.
    timestamp : str, optional
        Column of times, kept per pair (latest) and used by ``duplicates="last"``.
    weights : mapping event -> float >= 0, optional
        Per-event weight. ``None``: every event type weighs 1.
    default_weight : float >= 0, optional
        Weight of event types absent from ``weights``; without it they are an error naming the row.
    fraction_scaling : {"linear", "none"}
        Whether the fraction multiplies the weight.
    duplicates : {"sum", "mean", "max", "last", "error"}
        How a pair's rows merge.
    confidence, alpha, eps
        See :func:`confidence`.
    fraction_unit : {"auto", "fraction", "percent"}
        How bare fraction numbers are read.
    unobserved_confidence : float, default 1.0
        Confidence of pairs absent from the log.
    quantity : str, optional
        Column of per-row amounts (items bought, plays in one session): finite and >= 0, multiplying the row's
        weight, so that 3 units of one purchase count as 3 purchases.

    Returns
    -------
    ImplicitFeedback
        The stored confidences are ``c_ui``; the merged timestamps and the last event per pair are kept.

    Raises
    ------
    InvalidDataError
        Missing columns, missing ids, unknown or missing event types, bad fractions (the row is named).
    InvalidParameterError
        Bad weights, policy or confidence parameters.
    """
    _check_frame(df, {"user": user, "item": item, "event": event, "fraction": fraction, "timestamp": timestamp,
                      "quantity": quantity})
    kind, alpha, eps = _check_confidence_params(confidence, alpha, eps)
    fraction_scaling = check_choice("fraction_scaling", fraction_scaling, ("linear", "none"))
    duplicates = check_choice("duplicates", duplicates, DUPLICATE_POLICIES)
    if default_weight is not None:
        default_weight = check_float("default_weight", default_weight, minimum=0.0)
    if weights is not None and not isinstance(weights, Mapping):
        raise InvalidParameterError(f"weights must be a mapping event -> weight, got {type(weights).__name__}")
    origin = _Origin(row_labels=df.index)

    # 1. per row: v = w[event] * f
    if event is None:  # no event column: every row weighs default_weight (1 when not given)
        w = np.full(len(df), 1.0 if default_weight is None else default_weight)
    elif weights is None:  # every event type weighs 1, but a missing type is still an error
        missing = df[event].isna().to_numpy()
        if missing.any() and default_weight is None:
            pos = int(np.flatnonzero(missing)[0])
            raise InvalidDataError(f"{origin.where(pos)}, column {event!r}: event type is missing")
        w = np.where(missing, 0.0 if default_weight is None else default_weight, 1.0)
    else:
        w = _row_weights(_event_column(df, event), weights, default_weight, origin, event)
    if fraction is not None:
        f = parse_fractions(df[fraction], fraction_unit, fraction)
        if fraction_scaling == "linear":
            w = w * np.where(np.isnan(f), 1.0, f)
    if quantity is not None:
        w = w * _numeric_column(df[quantity], quantity, origin, allow_negative=False)
    # 2. per pair: the duplicates policy
    merged = _build(df, w, user, item, event, timestamp, duplicates)
    # 3. preference and confidence
    r = merged.values.astype(np.float64)
    pref = (r > 0).astype(np.float32)
    conf = _confidence_unchecked(r, kind, alpha, eps)
    return ImplicitFeedback(merged.with_values(conf), pref, unobserved_confidence)


@dataclass(frozen=True)
class PseudoRatingRule:
    """Per-row pseudo-rating: ``positive`` when the fraction reaches ``min_fraction`` or the event is one of
    ``positive_events``, else ``negative``.

    ``PseudoRatingRule(min_fraction=0.8, positive_events=("purchase",))`` reads "watched >= 80 % or
    purchased -> 1, else 0". Rows without a fraction never pass the fraction test.

    Parameters
    ----------
    min_fraction : float in [0, 1] or None
        Fraction at or above which a row is positive; ``None`` disables the test.
    positive_events : tuple of event types
        Event types that make a row positive.
    positive, negative : float
        The two pseudo-ratings.
    """

    min_fraction: float | None = 0.8
    positive_events: tuple[Any, ...] = ("purchase",)
    positive: float = 1.0
    negative: float = 0.0

    def __post_init__(self) -> None:
        if self.min_fraction is not None:
            object.__setattr__(
                self, "min_fraction", check_float("min_fraction", self.min_fraction, minimum=0.0, maximum=1.0)
            )
        events = self.positive_events
        if isinstance(events, str) or not isinstance(events, Sequence | set | frozenset):
            events = (events,)
        object.__setattr__(self, "positive_events", tuple(events))
        object.__setattr__(self, "positive", check_float("positive", self.positive))
        object.__setattr__(self, "negative", check_float("negative", self.negative))
        if self.min_fraction is None and not self.positive_events:
            raise InvalidParameterError("PseudoRatingRule needs min_fraction or positive_events (nothing is positive)")

    def __call__(self, events: np.ndarray | None, fractions: np.ndarray) -> np.ndarray:
        """Pseudo-ratings (float64) of rows with these ``events`` (object array or None) and ``fractions``
        (float64, NaN = none)."""
        hit = np.zeros(len(fractions), dtype=bool)
        if self.min_fraction is not None:
            with np.errstate(invalid="ignore"):
                hit |= fractions >= self.min_fraction  # NaN compares False
        if self.positive_events and events is not None:
            hit |= pd.Series(events, dtype=object).isin(list(self.positive_events)).to_numpy()
        return np.where(hit, self.positive, self.negative)


def events_to_explicit(
    df: pd.DataFrame,
    user: str = "user",
    item: str = "item",
    event: str | None = "event",
    fraction: str | None = None,
    rule: PseudoRatingRule | Callable[[np.ndarray | None, np.ndarray], Any] | None = None,
    duplicates: str = "max",
    timestamp: str | None = None,
    *,
    fraction_unit: Literal["auto", "fraction", "percent"] = "auto",
) -> Interactions:
    """An interaction log to explicit pseudo-ratings, one per (user, item) pair.

    Each row gets ``rule(events, fractions)`` (per row), then a pair's rows merge by ``duplicates``
    (``max`` by default: one qualifying row makes the pair positive).

    Parameters
    ----------
    df : pandas.DataFrame
        The log.
    user, item, event, fraction, timestamp : str
        Columns (``event`` / ``fraction`` may be None when the rule does not need them).
    rule : PseudoRatingRule or callable, optional
        ``rule(events, fractions) -> ratings``: ``events`` an object array (or None without an event
        column), ``fractions`` float64 in [0, 1] with NaN where a row has none; returns one finite number
        per row. Default ``PseudoRatingRule(min_fraction=0.8, positive_events=("purchase",))``.
    duplicates : {"sum", "mean", "max", "last", "error"}
        How a pair's rows merge.
    fraction_unit : {"auto", "fraction", "percent"}
        How bare fraction numbers are read.

    Returns
    -------
    Interactions
        Pseudo-ratings (float32) with the latest timestamp and last event per pair.
    """
    _check_frame(df, {"user": user, "item": item, "event": event, "fraction": fraction, "timestamp": timestamp})
    duplicates = check_choice("duplicates", duplicates, DUPLICATE_POLICIES)
    if rule is None:
        rule = PseudoRatingRule()
    if not callable(rule):
        raise InvalidParameterError(f"rule must be a PseudoRatingRule or a callable, got {type(rule).__name__}")
    origin = _Origin(row_labels=df.index)
    events = _event_column(df, event) if event is not None else None
    fractions = (
        parse_fractions(df[fraction], fraction_unit, fraction) if fraction is not None else np.full(len(df), np.nan)
    )
    if isinstance(rule, PseudoRatingRule):
        if rule.min_fraction is not None and fraction is None and not rule.positive_events:
            raise InvalidParameterError("the rule tests min_fraction but no fraction column was given (fraction=...)")
        if rule.positive_events and event is None and rule.min_fraction is None:
            raise InvalidParameterError("the rule tests positive_events but no event column was given (event=...)")
        if rule.positive_events and events is not None:
            present = set(pd.unique(pd.Series(events, dtype=object).dropna()))
            absent = [e for e in rule.positive_events if e not in present]
            if absent:
                warnings.warn(
                    f"positive event type(s) {', '.join(map(repr, absent))} never occur in column {event!r}; "
                    f"types present: {', '.join(repr(e) for e in sorted(present, key=str))}",
                    UserWarning,
                    stacklevel=2,
                )
    try:
        ratings = np.asarray(rule(events, fractions), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidDataError(f"the rule did not return numbers ({exc})") from exc
    if ratings.shape != (len(df),):
        raise InvalidDataError(f"the rule returned shape {ratings.shape}, expected one rating per row ({len(df)},)")
    bad = ~np.isfinite(ratings)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise InvalidDataError(f"{origin.where(pos)}: the rule gave a non-finite rating {ratings[pos]}")
    return _build(df, ratings, user, item, event, timestamp, duplicates)

