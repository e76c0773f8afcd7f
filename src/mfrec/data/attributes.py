"""Attributes: user or item attribute tables as a sparse feature matrix aligned to an id map.

An :class:`Attributes` turns a table with one row per id (a user or an item) into a
``scipy.sparse.csr_matrix`` of shape ``(n_ids, n_features)``, dtype float32, whose rows follow an
id map (typically ``Interactions.user_ids`` or ``Interactions.item_ids``) so that row ``r`` describes
the same user/item as row ``r`` of the interaction matrix (or column ``r`` for items).

Four kinds of source column are encoded, each by the scikit-learn transformer made for it, and each
fitted on the attribute rows that end up in the matrix:

* **categorical** -- one-hot (``OneHotEncoder``): features ``"gender=F"``, ``"gender=M"``;
* **multilabel** -- one indicator per label (``MultiLabelBinarizer``): ``"genres=Action"``;
* **numeric** -- standardized ``(x - mean) / std`` with the population std (``StandardScaler``):
  ``"age"`` (and ``"age:missing"`` with ``numeric_nan="flag"``);
* **text** -- TF-IDF with l2-normalized rows (``TfidfVectorizer``): ``"title:tfidf:star"``.

Missing values are never silent:

* a categorical value that is NaN/None gives an all-zero block for that column (no category);
* a multi-label value that is NaN/None/empty gives no labels;
* a numeric NaN is imputed with the column mean, i.e. 0 after standardization; with
  ``numeric_nan="flag"`` an indicator feature ``"<col>:missing"`` is added for every numeric column
  that had NaNs, and with ``numeric_nan="error"`` NaNs are rejected;
* a text NaN is the empty document (all-zero block);

and every count is recorded in :attr:`Attributes.n_missing_values`. Ids of the map that have no
attribute row get an all-zero row and are listed in :attr:`Attributes.missing_ids` (or raise, with
``missing="error"``); attribute rows whose id is not in the map are appended after the map's ids and
listed in :attr:`Attributes.extra_ids` (``extra="keep"``: they are the cold-start users/items a hybrid
model can later score), dropped (``extra="drop"``) or rejected (``extra="error"``).

An all-zero row therefore means "nothing known": the mean for numeric columns, no category, no label,
no text. :attr:`Attributes.present` tells rows with an attribute row from rows without one.
"""

from __future__ import annotations

import numbers
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from mfrec._params import check_choice, check_float, check_int
from mfrec.data.interactions import show_id
from mfrec.exceptions import InvalidDataError, InvalidParameterError, UnknownIdError

__all__ = ["Attributes", "FeatureGroup", "ATTRIBUTE_KINDS", "infer_spec", "encode_attributes"]

Kind = Literal["categorical", "multilabel", "numeric", "text"]
ATTRIBUTE_KINDS: tuple[str, ...] = ("categorical", "multilabel", "numeric", "text")
_SHOW = 5  # how many offending ids an error message lists


def _show_some(values: Iterable[Any]) -> str:
    values = list(values)
    shown = ", ".join(show_id(v) for v in values[:_SHOW])
    return shown + (f" ... ({len(values)} in all)" if len(values) > _SHOW else "")


@dataclass(frozen=True)
class FeatureGroup:
    """The features one source column produced: ``matrix[:, group.slice]``.

    Attributes
    ----------
    column : str
        The source column of the attribute table.
    kind : {"categorical", "multilabel", "numeric", "text"}
        How it was encoded.
    start, stop : int
        Its features are columns ``start:stop`` of :attr:`Attributes.matrix`.
    """

    column: str
    kind: str
    start: int
    stop: int

    @property
    def slice(self) -> slice:
        return slice(self.start, self.stop)

    @property
    def n_features(self) -> int:
        return self.stop - self.start


# ---------------------------------------------------------------------------- encoders
# Each encoder handles one source column: ``fit(values, where)`` learns from a Series, ``transform``
# returns a CSR block (n_rows, n_features) float32. ``where(position)`` names a row in error messages.


class _Encoder:
    kind: str = ""

    def __init__(self, column: str) -> None:
        self.column = column
        self.feature_names: list[str] = []
        self.n_missing = 0

    def _no_values(self) -> InvalidDataError:
        return InvalidDataError(
            f"{self.kind} column {self.column!r} has no values in the attribute rows used "
            "(all missing): drop the column or fill it"
        )


def _category_label(v: Any) -> str:
    """The string a categorical value is known by (1, 1.0 and np.int64(1) are all '1')."""
    if isinstance(v, bool | np.bool_):
        return str(bool(v))
    if isinstance(v, numbers.Integral):
        return str(int(v))
    if isinstance(v, float | np.floating) and float(v).is_integer():
        return str(int(v))
    return str(v)


class _CategoricalEncoder(_Encoder):
    """One-hot: feature ``"col=value"`` is 1 where the column equals value; NaN -> all zero."""

    kind = "categorical"

    def _labels(self, values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        """(labels of the non-missing rows as an (m, 1) object array, missing mask)."""
        codes, uniques = _factorize(values)
        missing = codes < 0
        names = np.array([_category_label(v) for v in uniques], dtype=object)
        return names[codes[~missing]].reshape(-1, 1), missing

    def fit(self, values: pd.Series, where) -> _CategoricalEncoder:
        from sklearn.preprocessing import OneHotEncoder

        labels, missing = self._labels(values)
        if len(labels) == 0:
            raise self._no_values()
        self.n_missing = int(missing.sum())
        self.encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=True, dtype=np.float32)
        self.encoder.fit(labels)
        self.feature_names = [f"{self.column}={c}" for c in self.encoder.categories_[0]]
        return self

    def transform(self, values: pd.Series, where) -> sp.csr_matrix:
        labels, missing = self._labels(values)
        out = sp.csr_matrix((len(values), len(self.feature_names)), dtype=np.float32)
        if len(labels):
            # unseen categories -> all-zero rows (handle_unknown="ignore")
            block = sp.csr_matrix(self.encoder.transform(labels), dtype=np.float32)
            out = _scatter_rows(block, np.flatnonzero(~missing), len(values))
        return out


class _MultiLabelEncoder(_Encoder):
    """One indicator per label: ``"col=label"`` is 1 when the row lists label (split on ``sep``)."""

    kind = "multilabel"

    def __init__(self, column: str, sep: str) -> None:
        super().__init__(column)
        if not isinstance(sep, str) or not sep:
            raise InvalidParameterError(f"multilabel separator for column {column!r} must be a non-empty string")
        self.sep = sep

    def _label_sets(self, values: pd.Series, where) -> tuple[list[list[str]], np.ndarray]:
        """(label list of each distinct value, code of each row into that list; -1 = no value)."""
        try:  # parse each distinct value once
            codes, uniques = _factorize(values)
        except TypeError:  # unhashable values (lists of labels): parse row by row
            return self._parse(values.to_numpy(dtype=object), np.arange(len(values)), where), np.arange(len(values))
        first = np.full(len(uniques), -1, dtype=np.int64)
        valid = codes >= 0
        first[codes[valid][::-1]] = np.flatnonzero(valid)[::-1]  # first row of each distinct value
        return self._parse(np.asarray(uniques, dtype=object), first, where), codes

    def _parse(self, values: np.ndarray, rows: np.ndarray, where) -> list[list[str]]:
        """Label lists of ``values``; ``rows[j]`` is the row of ``values[j]`` for error messages."""
        out: list[list[str]] = []
        for j, v in enumerate(values):
            pos = int(rows[j])
            if isinstance(v, str):
                parts = [p.strip() for p in v.split(self.sep)]
            elif isinstance(v, list | tuple | set | frozenset | np.ndarray | pd.Series):
                parts = [_category_label(x).strip() for x in v if not _is_missing(x)]
            elif _is_missing(v):
                parts = []
            elif isinstance(v, numbers.Number):
                parts = [_category_label(v)]
            else:
                raise InvalidDataError(
                    f"{where(pos)}, column {self.column!r}: {v!r} is not a {self.sep!r}-separated string "
                    "or a list of labels"
                )
            out.append(sorted({p for p in parts if p}))
        return out

    def fit(self, values: pd.Series, where) -> _MultiLabelEncoder:
        from sklearn.preprocessing import MultiLabelBinarizer

        sets, codes = self._label_sets(values, where)
        empty = np.array([not x for x in sets] + [True], dtype=bool)
        self.n_missing = int(empty[codes].sum())  # codes == -1 picks the final True
        if self.n_missing == len(codes):
            raise self._no_values()
        self.encoder = MultiLabelBinarizer(sparse_output=True).fit(sets)
        self.classes = set(self.encoder.classes_)
        self.feature_names = [f"{self.column}={c}" for c in self.encoder.classes_]
        return self

    def transform(self, values: pd.Series, where) -> sp.csr_matrix:
        sets, codes = self._label_sets(values, where)
        # unseen labels are dropped here (MultiLabelBinarizer would warn about each)
        sets = [[label for label in x if label in self.classes] for x in sets] + [[]]
        distinct = sp.csr_matrix(self.encoder.transform(sets), dtype=np.float32)
        return distinct[codes]  # one row per distinct value, gathered per row (-1 -> the empty last row)


def _factorize(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(codes int64 with -1 for missing, distinct values as objects), in order of appearance."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    return np.asarray(codes, dtype=np.int64), np.asarray(uniques, dtype=object)


def _is_missing(v: Any) -> bool:
    try:
        return v is None or bool(pd.isna(v))
    except (TypeError, ValueError):  # pd.isna of a container
        return False


def _float_values(values: pd.Series, column: str, where) -> np.ndarray:
    """Column as float64 (NaN kept), with an error naming the row for non-numbers and infinities."""
    if values.dtype == bool:
        values = values.astype(np.float64)
    numeric = pd.to_numeric(values, errors="coerce")
    bad = numeric.isna().to_numpy() & values.notna().to_numpy()
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise InvalidDataError(
            f"{where(pos)}, column {column!r}: value {values.iloc[pos]!r} is not a number "
            f"({int(bad.sum())} such value(s) in the column)"
        )
    x = numeric.to_numpy(dtype=np.float64, na_value=np.nan)
    inf = np.isinf(x)
    if inf.any():
        pos = int(np.flatnonzero(inf)[0])
        raise InvalidDataError(f"{where(pos)}, column {column!r}: value is infinite")
    return x


class _NumericEncoder(_Encoder):
    """``(x - mean) / std`` with the population std; std 0 -> 0; NaN -> 0 (the mean), optionally flagged."""

    kind = "numeric"

    def __init__(self, column: str, nan: str) -> None:
        super().__init__(column)
        self.nan = nan

    def _values(self, values: pd.Series, where) -> np.ndarray:
        x = _float_values(values, self.column, where)
        if self.nan == "error":
            nan = np.isnan(x)
            if nan.any():
                pos = int(np.flatnonzero(nan)[0])
                raise InvalidDataError(
                    f"{where(pos)}, column {self.column!r}: value is missing (NaN) and numeric_nan='error' "
                    f"({int(nan.sum())} missing in the column)"
                )
        return x

    def fit(self, values: pd.Series, where) -> _NumericEncoder:
        from sklearn.preprocessing import StandardScaler

        x = self._values(values, where)
        nan = np.isnan(x)
        if nan.all():
            raise self._no_values()
        self.n_missing = int(nan.sum())
        # StandardScaler ignores NaN when fitting; a zero variance gets scale 1 (no division by zero)
        self.scaler = StandardScaler().fit(x.reshape(-1, 1))
        self.flag = self.nan == "flag" and self.n_missing > 0
        self.feature_names = [self.column] + ([f"{self.column}:missing"] if self.flag else [])
        return self

    def transform(self, values: pd.Series, where) -> sp.csr_matrix:
        x = self._values(values, where)
        nan = np.isnan(x)
        z = self.scaler.transform(x.reshape(-1, 1))[:, 0]
        z[nan] = 0.0  # mean imputation: the mean standardizes to 0
        if self.scaler.var_[0] == 0.0:
            z[~nan] = 0.0  # a constant column carries no information (and avoids float noise)
        cols = [z] + ([nan.astype(np.float64)] if self.flag else [])
        return sp.csr_matrix(np.column_stack(cols).astype(np.float32))


class _TextEncoder(_Encoder):
    """TF-IDF of the column's text with scikit-learn's defaults (smooth idf, l2-normalized rows)."""

    kind = "text"

    def __init__(self, column: str, params: Mapping[str, Any]) -> None:
        super().__init__(column)
        self.params = dict(params)

    @staticmethod
    def _docs(values: pd.Series) -> tuple[list[str], int]:
        docs, n_missing = [], 0
        for v in values.to_numpy(dtype=object):
            if _is_missing(v):
                docs.append("")
                n_missing += 1
            else:
                docs.append(str(v))
        return docs, n_missing

    def fit(self, values: pd.Series, where) -> _TextEncoder:
        from sklearn.feature_extraction.text import TfidfVectorizer

        docs, self.n_missing = self._docs(values)
        try:
            self.vectorizer = TfidfVectorizer(dtype=np.float32, **self.params).fit(docs)
        except TypeError as exc:
            raise InvalidParameterError(f"text column {self.column!r}: bad TfidfVectorizer option: {exc}") from exc
        except ValueError as exc:  # empty vocabulary, or min_df/max_df pruned every term
            raise InvalidDataError(
                f"text column {self.column!r}: no terms to build features from ({exc}); "
                "check the column or lower min_df"
            ) from exc
        self.feature_names = [f"{self.column}:tfidf:{t}" for t in self.vectorizer.get_feature_names_out()]
        return self

    def transform(self, values: pd.Series, where) -> sp.csr_matrix:
        docs, _ = self._docs(values)
        return sp.csr_matrix(self.vectorizer.transform(docs), dtype=np.float32)


# ---------------------------------------------------------------------------- helpers


def _scatter_rows(block: sp.csr_matrix, rows: np.ndarray, n_rows: int) -> sp.csr_matrix:
    """A (n_rows, k) CSR whose row ``rows[j]`` is ``block[j]`` and whose other rows are zero.

    ``rows`` must be distinct. Computed as ``P @ block`` with the 0/1 placement matrix P, so every
    value is copied exactly.
    """
    placement = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (np.asarray(rows, dtype=np.int64), np.arange(len(rows)))),
        shape=(n_rows, block.shape[0]),
    )
    out = sp.csr_matrix(placement @ block, dtype=np.float32)
    out.sort_indices()
    return out


def _as_id_index(ids: Any, what: str) -> pd.Index:
    """An id map as a unique pandas Index; rejects Interactions (users or items?), NaN and duplicates."""
    if hasattr(ids, "user_ids") and hasattr(ids, "item_ids"):
        raise InvalidParameterError(
            f"{what}: pass interactions.user_ids or interactions.item_ids, not the Interactions itself"
        )
    if isinstance(ids, str | bytes) or not isinstance(ids, Iterable):
        raise InvalidParameterError(f"{what} must be a sequence of ids (pd.Index, array, list), got {ids!r}")
    index = pd.Index(ids if isinstance(ids, pd.Index | np.ndarray | pd.Series) else list(ids))
    if index.hasnans:
        pos = int(np.flatnonzero(index.isna())[0])
        raise InvalidDataError(f"{what} holds a missing (NaN/None) id at position {pos}")
    if index.has_duplicates:
        raise InvalidDataError(f"{what}: id {show_id(index[index.duplicated()][0])} appears more than once")
    return index


def _overlap_check(attr_ids: pd.Index, map_ids: pd.Index, overlap: int) -> None:
    if overlap == 0 and len(attr_ids) and len(map_ids):
        a, m = attr_ids[0], map_ids[0]
        raise InvalidDataError(
            f"none of the {len(attr_ids)} attribute ids is in the id map of {len(map_ids)} ids "
            f"(attribute ids look like {show_id(a)} ({type(a).__name__}), map ids like {show_id(m)} "
            f"({type(m).__name__})); check that both use the same ids and id type"
        )


def _align_rows(row_ids: pd.Index, map_ids: pd.Index, missing: str, extra: str):
    """The one id-alignment policy: where the attribute rows of ``row_ids`` go on the id map ``map_ids``.

    ``row_ids`` are the ids that have an attribute row. ``missing`` ("zeros" / "error") decides about map ids
    without a row, ``extra`` ("keep" / "drop" / "error") about row ids not in the map ("keep" appends them after
    the map, in row order). Returns ``(source, target, out_ids, extra_ids)``: row ``source[k]`` of ``row_ids``
    becomes row ``target[k]`` of the aligned table whose id map is ``out_ids``.
    """
    pos = map_ids.get_indexer(row_ids)
    in_map = pos >= 0
    _overlap_check(row_ids, map_ids, int(in_map.sum()))
    if missing == "error":
        without = row_ids.get_indexer(map_ids) < 0
        if without.any():
            raise InvalidDataError(
                f"{int(without.sum())} id(s) of the map have no attribute row: "
                f"{_show_some(map_ids[without])} (use missing='zeros' to give them all-zero rows)"
            )
    extra_pos = np.flatnonzero(~in_map)
    extra_ids = row_ids[extra_pos]
    if extra == "error" and len(extra_pos):
        raise InvalidDataError(
            f"{len(extra_pos)} attribute id(s) are not in the id map: {_show_some(extra_ids)} "
            "(use extra='keep' to append them or extra='drop')"
        )
    source, target, out_ids = np.flatnonzero(in_map), pos[in_map], map_ids
    if extra == "keep" and len(extra_pos):
        source = np.concatenate([source, extra_pos])
        target = np.concatenate([target, len(map_ids) + np.arange(len(extra_pos))])
        out_ids = map_ids.append(extra_ids)
    return source, target, out_ids, extra_ids.to_numpy()


def _normalize_multilabel(multilabel: Any) -> dict[str, str]:
    if multilabel is None:
        return {}
    if isinstance(multilabel, str):
        return {multilabel: "|"}
    if isinstance(multilabel, Mapping):
        return {str(k): v for k, v in multilabel.items()}
    return {str(c): "|" for c in multilabel}


def _normalize_columns(name: str, columns: Any) -> list[str]:
    if columns is None:
        return []
    if isinstance(columns, str):
        return [columns]
    return [c for c in columns]


# ---------------------------------------------------------------------------- Attributes


class Attributes:
    """User or item attributes as a sparse feature matrix whose rows follow an id map.

    Build it with :meth:`from_frame`. The matrix has one row per id: first the ids of the map given
    to :meth:`from_frame` (in that order), then the kept extra ids (attribute rows whose id was not
    in the map). Columns are grouped by source column (see :attr:`groups`).

    Attributes
    ----------
    matrix : scipy.sparse.csr_matrix, shape (n_ids, n_features), float32
        The encoded attributes; row ``r`` describes ``ids[r]``. Canonical CSR (sorted indices).
    ids : numpy.ndarray, shape (n_ids,)
        The id of every row.
    feature_names : list of str, length n_features
        ``"col=value"`` (categorical, multilabel), ``"col"`` and ``"col:missing"`` (numeric),
        ``"col:tfidf:term"`` (text).
    groups : tuple of FeatureGroup
        One per source column, in the order categorical, multilabel, numeric, text.
    missing_ids : numpy.ndarray
        Ids of the map with no attribute row (their rows are all zero).
    extra_ids : numpy.ndarray
        Attribute ids that were not in the map (appended when kept, else dropped).
    present : numpy.ndarray of bool, shape (n_ids,)
        True for rows that came from an attribute row.
    n_missing_values : dict of str to int
        Per source column, how many of the encoded attribute rows had no value there (NaN/None/empty):
        imputed with the mean (numeric) or encoded as all zeros (other kinds).
    """

    def __init__(
        self,
        matrix: sp.csr_matrix,
        ids: pd.Index,
        encoders: Sequence[_Encoder],
        *,
        present: np.ndarray,
        extra_ids: Sequence[Hashable] | np.ndarray = (),
        id_name: str | None = None,
    ) -> None:
        self._matrix = matrix
        self._ids = ids
        self._encoders = tuple(encoders)
        self._present = np.asarray(present, dtype=bool)
        self._extra = np.asarray(pd.Index(extra_ids).to_numpy())
        self.id_name = id_name
        groups, names, start = [], [], 0
        for enc in self._encoders:
            groups.append(FeatureGroup(enc.column, enc.kind, start, start + len(enc.feature_names)))
            names.extend(enc.feature_names)
            start += len(enc.feature_names)
        self._groups = tuple(groups)
        self._names = names
        if matrix.shape != (len(ids), len(names)) or len(self._present) != len(ids):
            raise InvalidDataError(  # pragma: no cover - internal consistency
                f"matrix shape {matrix.shape} does not match {len(ids)} ids x {len(names)} features"
            )

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        id: str | None = None,
        *,
        categorical: str | Sequence[str] = (),
        multilabel: str | Sequence[str] | Mapping[str, str] | None = None,
        numeric: str | Sequence[str] = (),
        text: str | Sequence[str] = (),
        ids: Sequence[Hashable] | pd.Index | np.ndarray | None = None,
        missing: Literal["zeros", "error"] = "zeros",
        extra: Literal["keep", "drop", "error"] = "keep",
        numeric_nan: Literal["mean", "flag", "error"] = "mean",
        text_max_features: int | None = None,
        min_df: int | float = 1,
        tfidf_params: Mapping[str, Any] | None = None,
    ) -> Attributes:
        """Encode an attribute table (one row per id) and align it with an id map.

        Parameters
        ----------
        df : pandas.DataFrame
            The attribute table, one row per user or item.
        id : str, optional
            Column holding the ids; by default the frame's index holds them.
        categorical : str or sequence of str
            Columns one-hot encoded: feature ``"col=value"`` is 1 where ``df[col] == value``.
            Values are compared by their string form, integral floats as integers (1.0 -> "1").
        multilabel : str, sequence of str, or mapping column -> separator
            Columns of label lists: strings like ``"Action|Comedy"`` split on the separator
            (``"|"`` unless a mapping says otherwise; labels are stripped, empty labels ignored)
            or Python lists/tuples/sets of labels. Feature ``"col=label"`` is 1 when listed.
        numeric : str or sequence of str
            Columns standardized to ``z = (x - mean) / std`` with the mean and the population standard
            deviation (ddof 0) of the encoded rows; a constant column gives ``z = 0``.
        text : str or sequence of str
            Free-text columns, each turned into TF-IDF features by its own
            :class:`sklearn.feature_extraction.text.TfidfVectorizer`:
            ``tfidf(t, d) = tf(t, d) * (ln((1 + n) / (1 + df(t))) + 1)``, rows l2-normalized.
        ids : sequence of ids or pandas.Index, optional
            The id map to align the rows with, e.g. ``interactions.item_ids``. Default: the ids of
            ``df`` in frame order (then there are no missing or extra ids).
        missing : {"zeros", "error"}
            Ids of the map with no attribute row: all-zero rows (listed in :attr:`missing_ids`), or
            :class:`~mfrec.exceptions.InvalidDataError` listing some of them.
        extra : {"keep", "drop", "error"}
            Attribute rows whose id is not in the map: appended after the map's ids in frame order
            (cold-start ids), dropped, or an error listing some. Listed in :attr:`extra_ids` either way.
        numeric_nan : {"mean", "flag", "error"}
            A NaN in a numeric column: imputed with the column mean (0 after standardization); the
            same plus an indicator feature ``"col:missing"`` for every numeric column with NaNs; or
            an error naming the id and the column.
        text_max_features : int, optional
            Keep the most frequent terms only (TfidfVectorizer ``max_features``), per text column.
        min_df : int or float
            Ignore terms in fewer documents than this (a count, or a proportion in (0, 1]).
        tfidf_params : mapping, optional
            Further TfidfVectorizer options (``stop_words``, ``ngram_range``, ...) for every text column.

        Returns
        -------
        Attributes

        Raises
        ------
        InvalidDataError
            A listed column is absent, an id is missing or duplicated, a numeric value is not a number
            (the id and the column are named), a column has no values at all, no attribute id is in the
            map, or missing/extra ids are rejected.
        InvalidParameterError
            A bad option, a column given twice, or no attribute column at all.

        Notes
        -----
        The encoders are fitted on the rows that end up in the matrix (the map's ids that have
        attribute rows, plus the extra ids when kept), so dropped rows do not create features.
        Missing ids get all-zero rows: for numeric columns zero is the mean.
        """
        if not isinstance(df, pd.DataFrame):
            raise InvalidParameterError(f"df must be a pandas DataFrame, got {type(df).__name__}")
        check_choice("missing", missing, ("zeros", "error"))
        check_choice("extra", extra, ("keep", "drop", "error"))
        check_choice("numeric_nan", numeric_nan, ("mean", "flag", "error"))
        if text_max_features is not None:
            text_max_features = check_int("text_max_features", text_max_features, minimum=1)
        if isinstance(min_df, numbers.Integral) and not isinstance(min_df, bool):
            min_df = check_int("min_df", min_df, minimum=1)
        else:
            min_df = check_float("min_df", min_df, minimum=0.0, maximum=1.0, strict_min=True)

        kinds: dict[str, list[str]] = {
            "categorical": _normalize_columns("categorical", categorical),
            "multilabel": list(_normalize_multilabel(multilabel)),
            "numeric": _normalize_columns("numeric", numeric),
            "text": _normalize_columns("text", text),
        }
        seps = _normalize_multilabel(multilabel)
        seen: dict[Any, str] = {}
        for kind, cols in kinds.items():
            for c in cols:
                if c in seen:
                    raise InvalidParameterError(f"column {c!r} is listed twice (as {seen[c]} and as {kind})")
                seen[c] = kind
        if not seen:
            raise InvalidParameterError(
                "no attribute column given: name some in categorical=, multilabel=, numeric= or text="
            )
        if id is not None and id in seen:
            raise InvalidParameterError(f"the id column {id!r} cannot also be an attribute column")
        absent = [c for c in seen if c not in df.columns]
        if id is not None and id not in df.columns:
            absent.insert(0, id)
        if absent:
            raise InvalidDataError(
                f"column(s) {', '.join(map(repr, absent))} not in the attribute table; it has: "
                f"{', '.join(map(repr, df.columns[:30]))}"
            )
        doubled = [c for c in [id, *seen] if c is not None and (df.columns == c).sum() > 1]
        if doubled:
            raise InvalidDataError(f"column(s) {', '.join(map(repr, doubled))} appear more than once in the table")
        if len(df) == 0:
            raise InvalidDataError("the attribute table has no rows")

        # ids of the attribute rows
        raw_ids = df[id] if id is not None else df.index.to_series(index=pd.RangeIndex(len(df)))
        id_label = id if id is not None else (df.index.name or "index")
        nan = raw_ids.isna().to_numpy()
        if nan.any():
            raise InvalidDataError(f"row {int(np.flatnonzero(nan)[0])}: id ({id_label!r}) is missing (NaN/None)")
        attr_ids = pd.Index(raw_ids.to_numpy())
        if attr_ids.has_duplicates:
            dup = attr_ids[attr_ids.duplicated()][0]
            rows = np.flatnonzero(attr_ids == dup)[:_SHOW].tolist()
            n_dup = int(attr_ids.duplicated().sum())
            raise InvalidDataError(
                f"id {show_id(dup)} has more than one attribute row (rows {rows}); "
                f"{n_dup} duplicated row(s) in all: give one row per id"
            )

        # alignment with the id map
        if ids is None:
            map_ids = attr_ids
            target = used = np.arange(len(attr_ids))
            extra_ids: np.ndarray = attr_ids[:0].to_numpy()
        else:
            used, target, map_ids, extra_ids = _align_rows(attr_ids, _as_id_index(ids, "ids"), missing, extra)

        rows = df.iloc[used]
        row_ids = attr_ids[used]

        def where(position: int) -> str:
            return f"id {show_id(row_ids[position])} (row {int(used[position])})"

        params = dict(tfidf_params or {})
        params.setdefault("min_df", min_df)
        params.setdefault("max_features", text_max_features)
        encoders: list[_Encoder] = (
            [_CategoricalEncoder(c) for c in kinds["categorical"]]
            + [_MultiLabelEncoder(c, seps[c]) for c in kinds["multilabel"]]
            + [_NumericEncoder(c, numeric_nan) for c in kinds["numeric"]]
            + [_TextEncoder(c, params) for c in kinds["text"]]
        )
        blocks = []
        for enc in encoders:
            column = rows[enc.column].reset_index(drop=True)
            enc.fit(column, where)
            blocks.append(enc.transform(column, where))
        block = sp.hstack(blocks, format="csr", dtype=np.float32)
        matrix = _scatter_rows(block, target, len(map_ids))
        matrix.eliminate_zeros()
        present = np.zeros(len(map_ids), dtype=bool)
        present[target] = True
        return cls(matrix, map_ids, encoders, present=present, extra_ids=extra_ids, id_name=id)

    # ------------------------------------------------------------------ properties
    @property
    def matrix(self) -> sp.csr_matrix:
        """(n_ids, n_features) CSR, float32 (do not modify in place)."""
        return self._matrix

    @property
    def ids(self) -> np.ndarray:
        return self._ids.to_numpy()

    @property
    def id_map(self) -> pd.Index:
        """The row ids as a pandas Index (position = row)."""
        return self._ids

    @property
    def n_ids(self) -> int:
        return self._matrix.shape[0]

    @property
    def n_features(self) -> int:
        return self._matrix.shape[1]

    @property
    def shape(self) -> tuple[int, int]:
        return self._matrix.shape

    @property
    def feature_names(self) -> list[str]:
        return list(self._names)

    @property
    def groups(self) -> tuple[FeatureGroup, ...]:
        return self._groups

    @property
    def feature_groups(self) -> dict[str, slice]:
        """Source column -> slice of its features in :attr:`matrix`."""
        return {g.column: g.slice for g in self._groups}

    @property
    def present(self) -> np.ndarray:
        return self._present.copy()

    @property
    def missing_ids(self) -> np.ndarray:
        return self._ids[~self._present].to_numpy()

    @property
    def extra_ids(self) -> np.ndarray:
        return self._extra.copy()

    @property
    def n_missing_values(self) -> dict[str, int]:
        return {enc.column: enc.n_missing for enc in self._encoders}

    def __len__(self) -> int:
        return self.n_ids

    def __repr__(self) -> str:
        groups = ", ".join(f"{g.column}: {g.kind} {g.n_features}" for g in self._groups)
        return (
            f"Attributes({self.n_ids} ids x {self.n_features} features [{groups}], "
            f"{int((~self._present).sum())} missing, {len(self._extra)} extra)"
        )

    # ------------------------------------------------------------------ lookups and conversions
    def index(self, ids: Hashable | Iterable[Hashable], missing: Literal["raise", "ignore"] = "raise"):
        """Row of one id (int) or of many (int32 array; -1 for unknown ids when ``missing='ignore'``).

        Raises :class:`~mfrec.exceptions.UnknownIdError` for an unknown id unless ``missing='ignore'``.
        """
        check_choice("missing", missing, ("raise", "ignore"))
        scalar = isinstance(ids, Hashable) and not isinstance(ids, tuple | frozenset)
        arr = [ids] if scalar else (ids if isinstance(ids, np.ndarray | pd.Index | pd.Series) else list(ids))
        codes = self._ids.get_indexer(arr).astype(np.int32)
        if missing == "raise" and (codes < 0).any():
            bad = [x for x, c in zip(np.asarray(arr, dtype=object), codes) if c < 0]
            raise UnknownIdError(f"{len(bad)} unknown attribute id(s): {_show_some(bad)}")
        return int(codes[0]) if scalar else codes

    def to_frame(self, dense: bool = False) -> pd.DataFrame:
        """The matrix as a DataFrame indexed by id, one column per feature name.

        Columns are pandas sparse (``Sparse[float32, 0]``) unless ``dense=True``.
        """
        index = pd.Index(self._ids, name=self.id_name)
        if dense:
            return pd.DataFrame(self._matrix.toarray(), index=index, columns=list(self._names))
        return pd.DataFrame.sparse.from_spmatrix(self._matrix, index=index, columns=list(self._names))

    # ------------------------------------------------------------------ re-use of the fitted encoders
    def transform(self, df: pd.DataFrame) -> sp.csr_matrix:
        """Encode new attribute rows with the encoders fitted here.

        Parameters
        ----------
        df : pandas.DataFrame
            Rows to encode; needs every source column (other columns, ids included, are ignored).

        Returns
        -------
        scipy.sparse.csr_matrix, shape (len(df), n_features), float32
            Row ``j`` encodes ``df.iloc[j]`` with the same features as :attr:`matrix`: unseen
            categories and labels give zeros, numeric values are standardized with the fitted mean
            and std (NaN -> 0, the mean), text goes through the fitted vectorizer (unknown terms ignored).
        """
        if not isinstance(df, pd.DataFrame):
            raise InvalidParameterError(f"df must be a pandas DataFrame, got {type(df).__name__}")
        absent = [enc.column for enc in self._encoders if enc.column not in df.columns]
        if absent:
            raise InvalidDataError(f"column(s) {', '.join(map(repr, absent))} not in the frame to transform")
        labels = df.index

        def where(position: int) -> str:
            return f"row {show_id(labels[position])}"

        if len(df) == 0:
            return sp.csr_matrix((0, self.n_features), dtype=np.float32)
        blocks = [enc.transform(df[enc.column].reset_index(drop=True), where) for enc in self._encoders]
        out = sp.hstack(blocks, format="csr", dtype=np.float32)
        out.eliminate_zeros()
        out.sort_indices()
        return out

    def extend(self, df: pd.DataFrame, id: str | None = None) -> Attributes:
        """A new Attributes with the rows of ``df`` appended (new ids, e.g. cold-start items).

        The rows are encoded by :meth:`transform`; ids already present raise
        :class:`~mfrec.exceptions.InvalidDataError`, as do duplicated new ids.
        """
        if id is not None and id not in getattr(df, "columns", ()):
            raise InvalidDataError(f"id column {id!r} not in the frame")
        new = pd.Index(df[id].to_numpy() if id is not None else df.index.to_numpy())
        if new.hasnans:
            raise InvalidDataError(f"row {int(np.flatnonzero(new.isna())[0])}: id is missing (NaN/None)")
        if new.has_duplicates:
            raise InvalidDataError(f"id {show_id(new[new.duplicated()][0])} has more than one row")
        clash = new[self._ids.get_indexer(new) >= 0]
        if len(clash):
            raise InvalidDataError(
                f"{len(clash)} id(s) already have attributes: {_show_some(clash)} (use align() to re-order)"
            )
        block = self.transform(df)
        return Attributes(
            sp.vstack([self._matrix, block], format="csr", dtype=np.float32),
            self._ids.append(new),
            self._encoders,
            present=np.concatenate([self._present, np.ones(len(new), dtype=bool)]),
            extra_ids=self._extra,
            id_name=self.id_name,
        )

    def align(
        self,
        ids: Sequence[Hashable] | pd.Index | np.ndarray,
        missing: Literal["zeros", "error"] = "zeros",
        extra: Literal["keep", "drop", "error"] = "keep",
    ) -> Attributes:
        """The same attributes re-ordered to another id map (the fitted encoders are shared).

        Parameters
        ----------
        ids : sequence of ids or pandas.Index
            The new id map, e.g. another split's ``item_ids``.
        missing : {"zeros", "error"}
            Ids of the new map without attributes here (unknown ids, or rows that were all-zero
            because they had no attribute row): all-zero rows, or an error listing some.
        extra : {"keep", "drop", "error"}
            Ids with attribute rows here that are not in the new map: appended after it (in the
            current row order), dropped, or an error listing some. Ids without an attribute row are
            never carried over as extras.

        Returns
        -------
        Attributes
            Rows in the order of ``ids`` (then the kept extras); no refitting, so the values of an
            id's row are unchanged.
        """
        check_choice("missing", missing, ("zeros", "error"))
        check_choice("extra", extra, ("keep", "drop", "error"))
        present_rows = np.flatnonzero(self._present)
        source, target, out_ids, extra_ids = _align_rows(self._ids[present_rows], _as_id_index(ids, "ids"), missing, extra)
        src_rows = present_rows[source]
        matrix = _scatter_rows(self._matrix[src_rows], target, len(out_ids))
        present = np.zeros(len(out_ids), dtype=bool)
        present[target] = True
        return Attributes(
            matrix,
            out_ids,
            self._encoders,
            present=present,
            extra_ids=extra_ids,
            id_name=self.id_name,
        )


# ---------------------------------------------------------------------- models' input: DataFrame or Attributes
#: an object column with more distinct values than this fraction of its rows is an identifier or free
#: text (titles, URLs), not a category: DataFrame inference leaves it out
_MAX_CATEGORY_FRACTION = 0.5


def infer_spec(df: pd.DataFrame) -> dict[str, Any]:
    """Encoding of a DataFrame's columns: ``{"categorical": [...], "multilabel": [...], "numeric": [...]}``.

    Numeric (int/float/bool) columns are numeric; object/string/category columns whose values contain
    ``"|"`` are multi-label (``"Action|Comedy"``); other object columns are categorical, except those
    with more distinct values than half their non-missing rows (identifiers, titles, URLs), which are
    left out. Pass an :class:`mfrec.Attributes` to choose the encoding yourself.
    """
    spec: dict[str, list[str]] = {"categorical": [], "multilabel": [], "numeric": []}
    for col in df.columns:
        s = df[col]
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            spec["numeric"].append(col)
            continue
        values = s.dropna()
        if len(values) == 0:
            continue
        as_str = values.astype(str)
        if as_str.str.contains("|", regex=False).any():
            spec["multilabel"].append(col)
        elif values.nunique() <= max(1, _MAX_CATEGORY_FRACTION * len(values)):
            spec["categorical"].append(col)
    return {k: v for k, v in spec.items() if v}


def encode_attributes(attributes: Any, ids: pd.Index, what: str):
    """An :class:`mfrec.Attributes` aligned to ``ids`` with extra attribute ids appended (cold ids).

    ``attributes`` is an ``Attributes`` (re-aligned with :meth:`Attributes.align`) or a DataFrame (encoded with
    :func:`infer_spec`) indexed by id, or with a plain row index and an id column named as
    :func:`mfrec.read_interactions` names them (``item`` / ``item_id`` / ``movieId`` / ``sku`` ... for items,
    ``user`` / ``user_id`` / ``customer_id`` ... for users; ``what`` says which side).
    """
    if isinstance(attributes, Attributes):
        return attributes.align(ids, missing="zeros", extra="keep")
    if isinstance(attributes, pd.DataFrame):
        attributes = _id_column_as_index(attributes, what)
        if not attributes.index.is_unique:
            dup = attributes.index[attributes.index.duplicated()][0]
            raise InvalidDataError(f"{what}: id {show_id(dup)} has more than one attribute row")
        spec = infer_spec(attributes)
        if not spec:
            raise InvalidDataError(
                f"{what}: no usable column (numeric, categorical or '|'-separated multi-label) in "
                f"{list(attributes.columns)}; build an mfrec.Attributes to choose the encoding"
            )
        return Attributes.from_frame(attributes, ids=ids, missing="zeros", extra="keep", **spec)
    raise InvalidDataError(
        f"{what} must be an mfrec.Attributes or a pandas DataFrame indexed by id, got {type(attributes).__name__}"
    )


def _id_column_as_index(frame: pd.DataFrame, what: str) -> pd.DataFrame:
    """``frame`` indexed by its id column when it has a plain row index and a column named like an id."""
    from mfrec.data.interactions import _ITEM_COLUMNS, _USER_COLUMNS

    if not isinstance(frame.index, pd.RangeIndex):
        return frame
    names = _USER_COLUMNS if "user" in what else _ITEM_COLUMNS
    column = next((c for c in names if c in frame.columns), None)
    return frame if column is None else frame.set_index(column)
