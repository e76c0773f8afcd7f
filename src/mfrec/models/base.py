"""The shared model base: ids in, ids out; recommend / similar / fold-in / persistence plumbing.

Every model subclasses :class:`Recommender` (latent-factor models subclass :class:`FactorModel`) and
implements ``fit`` plus a few array-level hooks; the public, id-speaking methods are written once here.

Subclass contract
-----------------
``fit(interactions, ...)``
    Must set ``interactions_`` (the training :class:`~mfrec.data.interactions.Interactions`: id maps and
    seen items) and return ``self``. Learned state ends in ``_`` (and is what :meth:`Recommender.save`
    writes); private caches start with ``_`` and are cleared automatically every time ``fit`` runs.
``_scores(user_idx)``
    Dense scores ``(len(user_idx), n_items)`` float32 of dense user indices.
``_item_scores(item_idx)`` (optional)
    Scores of *every user* for some items, ``(len(item_idx), n_users)``; the default derives them from
    ``_scores`` block by block. Used by :meth:`Recommender.recommend_users`.
``_similarity_vectors(kind)`` (optional)
    ``kind`` is ``"item"`` or ``"user"``; row vectors (dense ``(n, d)`` or scipy sparse) whose cosine is the
    similarity used by ``similar_items`` / ``similar_users``. :class:`FactorModel` returns its factors.
``fold_in_user(items, values=None)`` (optional)
    The factor vector of a new user from their interactions, closed form; ``recommend_new_user`` then
    scores it with ``_new_user_scores``.
``predict(user_ids, item_ids)`` (explicit models)
    Predicted values of (user, item) pairs.

Hooks for evaluation code
-------------------------
``_topk(user_idx, k, exclude=None, allowed=None) -> (items int32 (b, k'), scores float32 (b, k'))``
    Exact top-k of dense user indices, with an exclusion CSR (rows aligned with ``user_idx``) and an
    allow-mask over items, computed block by block (one GEMM per block for factor models) and selected by
    :func:`mfrec.kernels.topk.select_topk`. ``k' = min(k, n_items)`` trimmed to the largest number of
    candidates of any row; shorter rows are padded with item ``-1`` and score ``-inf``.
``_scores(user_idx)``
    Dense scores, as above.
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Hashable, Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from mfrec._params import check_int
from mfrec._progress import fit_progress
from mfrec.data.interactions import Interactions, as_interactions, show_id
from mfrec.exceptions import InvalidDataError, InvalidParameterError, NotFittedError, UnknownIdError
from mfrec.kernels.topk import DEFAULT_BLOCK_BYTES, select_topk, topk_dot

__all__ = ["Recommender", "FactorModel", "clone"]

_KINDS = ("item", "user")


# ---------------------------------------------------------------------------------------------- helpers
def _as_id_list(ids: Any, what: str) -> list:
    """A list of external ids from a scalar id or an iterable of ids (a str is one id, not characters)."""
    if ids is None:
        return []
    if isinstance(ids, str | bytes) or not isinstance(ids, Iterable):
        return [ids]
    if isinstance(ids, np.ndarray | pd.Index | pd.Series):
        return list(np.asarray(ids, dtype=object).ravel())
    if isinstance(ids, dict):
        raise InvalidParameterError(f"{what} must be a list of ids, got a dict")
    return list(ids)


def _trim(items: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop trailing all-padding columns so that k' = the largest number of results of any row."""
    if items.size == 0:
        return items, scores
    counts = (items >= 0).sum(axis=1)
    width = int(counts.max()) if len(counts) else 0
    return items[:, :width], scores[:, :width]


def _rows_pattern(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR pattern (indptr int64, indices int32) of ``rows`` of a CSR pattern, explicit zeros included."""
    rows = np.asarray(rows, dtype=np.int64)
    starts = np.asarray(indptr, dtype=np.int64)[rows]
    lens = np.asarray(indptr, dtype=np.int64)[rows + 1] - starts
    new_indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lens, out=new_indptr[1:])
    total = int(new_indptr[-1])
    if total == 0:
        return new_indptr, np.zeros(0, dtype=np.int32)
    gather = np.repeat(starts - new_indptr[:-1], lens) + np.arange(total, dtype=np.int64)
    return new_indptr, np.asarray(indices, dtype=np.int32)[gather]


def _csr_pattern(exclude: Any, n_rows: int, n_cols: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Validate an exclusion matrix (scipy sparse or dense bool) into a sorted CSR pattern."""
    if exclude is None:
        return None, None
    if sp.issparse(exclude):
        m = exclude.tocsr()
    else:
        arr = np.asarray(exclude)
        if arr.ndim != 2:
            raise InvalidParameterError(f"exclude must be a 2-D sparse matrix, got shape {arr.shape}")
        m = sp.csr_matrix(arr.astype(bool))
    if m.shape != (n_rows, n_cols):
        raise InvalidParameterError(f"exclude has shape {m.shape}, expected ({n_rows}, {n_cols})")
    return np.asarray(m.indptr, dtype=np.int64), np.asarray(m.indices, dtype=np.int32)


def _cosine_rows(vectors: Any, query: np.ndarray, norms: np.ndarray) -> np.ndarray:
    """Cosine of rows ``query`` of ``vectors`` against all rows: ``(len(query), n)`` float32.

    ``cos(a, b) = a . b / (|a| |b|)``, with 0 where either norm is 0 (never NaN).
    """
    if sp.issparse(vectors):
        dots = (vectors[query] @ vectors.T).toarray()
    else:
        dots = np.asarray(vectors[query], dtype=np.float32) @ np.asarray(vectors, dtype=np.float32).T
    return _cosine(np.asarray(dots, dtype=np.float32), norms[query][:, None] * norms[None, :])


def _cosine(dots: np.ndarray, denom: np.ndarray) -> np.ndarray:
    """``dots / denom`` as float32, 0 where the product of the norms ``denom`` is 0 (never NaN)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(denom > 0, dots / np.where(denom > 0, denom, 1), 0)
    return out.astype(np.float32, copy=False)


def _long_frame(query_col: str, queries: np.ndarray, result_col: str, result_ids: pd.Index, top: np.ndarray,
                scores: np.ndarray) -> pd.DataFrame:
    """One row per (query, result): ``queries`` (b,) against ``top`` / ``scores`` (b, k), ``-1`` padded, plus
    the 1-based ``rank`` within each query."""
    valid = top >= 0
    rows = np.repeat(np.arange(len(queries)), valid.sum(axis=1))
    return pd.DataFrame({
        query_col: queries[rows],
        result_col: result_ids.take(top[valid]).to_numpy(),
        "score": scores[valid].astype(np.float64),
        "rank": np.cumsum(valid, axis=1)[valid].astype(np.int64),
    })


def _front_door_signature(fit: Any) -> inspect.Signature:
    """The signature of a wrapped ``fit``: the model's own, plus the keyword-only options every fit takes."""
    sig = inspect.signature(fit)
    params = [p for p in sig.parameters.values() if p.kind != p.VAR_KEYWORD]
    var_kw = [p for p in sig.parameters.values() if p.kind == p.VAR_KEYWORD]
    extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None)
             for name in ("show_progress", "callback", "user", "item", "value") if name not in sig.parameters]
    return sig.replace(parameters=params + extra + var_kw)


# ---------------------------------------------------------------------------------------------- base
class Recommender:
    """Base of every mfrec model: scikit-learn style parameters plus id-speaking recommend methods.

    Subclasses define ``__init__`` with keyword hyperparameters stored under the same names, and ``fit``
    which sets ``interactions_`` and returns ``self`` (see the module docstring for the hooks).

    Every ``fit`` a subclass defines is wrapped once, when the class is created (``__init_subclass__``). The
    wrapper gives every model the same front door and then calls the subclass's ``fit`` (same result and
    exceptions; ``functools.wraps`` keeps its name and docstring):

    * the data may be an :class:`Interactions`, a pandas DataFrame (columns found by name, or named with
      ``user=`` / ``item=`` / ``value=``) or a scipy.sparse users x items matrix
      (:func:`mfrec.data.interactions.as_interactions`);
    * ``show_progress=None`` draws a ``tqdm.auto`` bar when a person is watching (terminal or notebook);
      ``callback(iteration, seconds, entry)`` is called after every iteration of the iterative models, ``entry``
      being that iteration's ``history_`` dict (:func:`mfrec._progress.fit_progress`);
    * the model's derived caches (item norms, Grams of the factors, transposed patterns; see :meth:`_cached`) are
      cleared before and after, so that nothing computed from a previous fit survives a refit. A model that fits
      by other means (:func:`mfrec.distributed.fit`) clears them itself.

    Attributes
    ----------
    interactions_ : Interactions
        The training data (external id maps and the items each user has seen), set by ``fit``.
    """

    #: budget of one dense score block, in bytes (users per block = budget // (4 * n_items))
    _block_bytes: int = DEFAULT_BLOCK_BYTES

    # -------------------------------------------------------------- subclass plumbing
    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fit = cls.__dict__.get("fit")
        if fit is not None and not getattr(fit, "_mfrec_wrapped", False):

            @functools.wraps(fit)
            def wrapped(self, *args, show_progress=None, callback=None, user=None, item=None, value=None, **kw):
                if args:  # a DataFrame or a sparse matrix becomes Interactions; anything else passes as it is
                    args = (as_interactions(args[0], user=user, item=item, value=value), *args[1:])
                elif "interactions" in kw:
                    kw["interactions"] = as_interactions(kw["interactions"], user=user, item=item, value=value)
                self._invalidate_caches()  # norms etc. of a previous fit must never survive a refit
                self._drop_index()  # so must an approximate-search index (build_index) over the old factors
                try:
                    with fit_progress(callback, show_progress):
                        return fit(self, *args, **kw)
                finally:
                    self._invalidate_caches()

            wrapped._mfrec_wrapped = True  # type: ignore[attr-defined]
            wrapped.__signature__ = _front_door_signature(fit)  # type: ignore[attr-defined]
            cls.fit = wrapped  # type: ignore[method-assign]

    def fit(self, interactions: Interactions, *args: Any, **kwargs: Any) -> Recommender:
        """Learn from ``interactions``; sets ``interactions_`` and returns ``self``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement fit")

    def _invalidate_caches(self) -> None:
        """Forget derived caches (vector norms, transposed patterns); called around every ``fit``."""
        self.__dict__.pop("_cache", None)

    def _drop_index(self) -> None:
        """Forget the approximate-search index of :meth:`FactorModel.build_index` (its state and its graphs)."""
        for name in [n for n in vars(self) if n == "index_" or (n.startswith("index_") and n.endswith("_"))]:
            delattr(self, name)
        self.__dict__.pop("_ann", None)

    def _cached(self, name: str, key: tuple, build):
        """Memoize ``build()`` under ``name`` while ``key`` (compared by identity of its parts) holds."""
        cache = self.__dict__.setdefault("_cache", {})
        hit = cache.get(name)
        if hit is not None and len(hit[0]) == len(key) and all(a is b for a, b in zip(hit[0], key)):
            return hit[1]
        value = build()
        cache[name] = (key, value)
        return value

    def _after_load(self) -> None:
        """Called by :func:`mfrec.persist.load` once the fitted state is restored."""
        self._invalidate_caches()

    # -------------------------------------------------------------- parameters
    @classmethod
    def _param_names(cls) -> list[str]:
        init = cls.__init__
        if init is object.__init__:
            return []
        sig = inspect.signature(init)
        names = []
        for name, p in sig.parameters.items():
            if name == "self":
                continue
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise TypeError(f"{cls.__name__}.__init__ must not take *args/**kwargs (hyperparameters are explicit)")
            names.append(name)
        return sorted(names)

    def get_params(self, deep: bool = False) -> dict[str, Any]:
        """Hyperparameters as a dict, read from the attributes named like the ``__init__`` arguments."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> Recommender:
        """Set hyperparameters by name; returns ``self``. Unknown names raise :class:`InvalidParameterError`.

        The fitted state is kept (refit to apply the new values).
        """
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise InvalidParameterError(
                    f"{type(self).__name__} has no parameter {name!r}; valid parameters: {', '.join(valid)}"
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        """``ClassName(param=value, ...)`` listing the parameters that differ from their defaults."""
        try:
            sig = inspect.signature(type(self).__init__)
            parts = []
            for name in self._param_names():
                value = getattr(self, name, None)
                default = sig.parameters[name].default
                same = False
                try:
                    same = default is not inspect.Parameter.empty and bool(default == value)
                except Exception:  # arrays and other odd parameters: show them
                    same = False
                if not same:
                    parts.append(f"{name}={value!r}")
            return f"{type(self).__name__}({', '.join(parts)})"
        except Exception:  # pragma: no cover - never let repr fail
            return f"{type(self).__name__}(...)"

    # -------------------------------------------------------------- fitted state
    def _check_fitted(self) -> None:
        """Raise :class:`NotFittedError` naming the class when ``fit`` has not run."""
        if not isinstance(getattr(self, "interactions_", None), Interactions):
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; call fit(interactions) before using it"
            )

    @property
    def n_users(self) -> int:
        self._check_fitted()
        return self.interactions_.n_users

    @property
    def n_items(self) -> int:
        self._check_fitted()
        return self.interactions_.n_items

    # -------------------------------------------------------------- id helpers
    def _user_idx(self, user: Hashable) -> int:
        return self.interactions_.user_index(user)

    def _item_idx(self, item: Hashable) -> int:
        return self.interactions_.item_index(item)

    def _ids_idx(self, side: str, ids: Any, what: str) -> np.ndarray:
        """Dense indices (int32) of external ``user`` or ``item`` ids; an unknown id names ``what``."""
        listed = _as_id_list(ids, what)
        if not listed:
            return np.zeros(0, dtype=np.int32)
        lookup = self.interactions_.item_index if side == "item" else self.interactions_.user_index
        try:
            return np.asarray(lookup(listed), dtype=np.int32)
        except UnknownIdError as exc:
            raise UnknownIdError(f"{what}: {exc}") from None

    def _items_idx(self, items: Any, what: str) -> np.ndarray:
        return self._ids_idx("item", items, what)

    def _side_mask(self, side: str, allow: Any, exclude: Any, allow_name: str) -> np.ndarray | None:
        """Bool mask over the users or items from an allow-list and a deny-list of external ids (None: all)."""
        if allow is None and exclude is None:
            return None
        n = self.interactions_.n_items if side == "item" else self.interactions_.n_users
        mask = np.ones(n, dtype=bool) if allow is None else np.zeros(n, dtype=bool)
        if allow is not None:
            mask[self._ids_idx(side, allow, allow_name)] = True
        if exclude is not None:
            mask[self._ids_idx(side, exclude, "exclude")] = False
        return mask

    def _allowed_mask(self, items: Any, exclude: Any) -> np.ndarray | None:
        """Bool mask over items from an allow-list and a deny-list of external ids (None: everything)."""
        return self._side_mask("item", items, exclude, "items")

    def _users_mask(self, users: Any, exclude: Any) -> np.ndarray | None:
        """Bool mask over users from an allow-list and a deny-list of external user ids (None: everyone)."""
        return self._side_mask("user", users, exclude, "users")

    def _seen_pattern(self, user_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """CSR pattern of the training items of ``user_idx`` (explicitly stored zeros count as seen)."""
        m = self.interactions_.matrix
        return _rows_pattern(m.indptr, m.indices, user_idx)

    def _seen_by_pattern(self, item_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """CSR pattern of the training users of ``item_idx``."""
        m = self.interactions_.matrix
        t = self._cached(
            "items_x_users", (m,),
            lambda: sp.csr_matrix((np.ones(m.nnz, np.int8), m.indices, m.indptr), shape=m.shape).T.tocsr(),
        )
        return _rows_pattern(t.indptr, t.indices, item_idx)

    # -------------------------------------------------------------- array-level hooks
    def _scores(self, user_idx: np.ndarray) -> np.ndarray:
        """Dense scores of dense user indices, shape ``(len(user_idx), n_items)``, float32."""
        raise NotImplementedError(f"{type(self).__name__} does not implement _scores")

    def _item_scores(self, item_idx: np.ndarray) -> np.ndarray:
        """Scores of every user for ``item_idx``, shape ``(len(item_idx), n_users)``, float32.

        Default: ``_scores`` over blocks of users, transposed (subclasses usually do better).
        """
        item_idx = np.asarray(item_idx, dtype=np.int64)
        n_users, n_items = self.interactions_.shape
        out = np.empty((len(item_idx), n_users), dtype=np.float32)
        block = max(1, self._block_bytes // (4 * max(1, n_items)))
        for start in range(0, n_users, block):
            users = np.arange(start, min(n_users, start + block), dtype=np.int32)
            out[:, start : start + len(users)] = self._scores(users)[:, item_idx].T
        return out

    def _topk(
        self,
        user_idx: np.ndarray,
        k: int,
        exclude: Any = None,
        allowed: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k items of dense user indices (hook for evaluation code).

        Parameters
        ----------
        user_idx : array of int, shape (b,)
            Dense user indices.
        k : int
            Results per user, ``>= 1``.
        exclude : scipy.sparse matrix, shape (b, n_items), optional
            Rows aligned with ``user_idx``; the stored pattern (not the values) marks excluded items.
        allowed : numpy.ndarray of bool, shape (n_items,), optional
            Only these items are candidates.

        Returns
        -------
        items : numpy.ndarray, shape (b, k'), int32
            Dense item indices, best first (ties: lower index first); ``-1`` pads rows with fewer candidates.
        scores : numpy.ndarray, shape (b, k'), float32
            Their scores; ``-inf`` on padding. ``k' = min(k, n_items)``, trimmed to the longest row.
        """
        user_idx = np.asarray(user_idx, dtype=np.int32)
        indptr, indices = _csr_pattern(exclude, len(user_idx), self.interactions_.n_items)
        return self._topk_pattern(user_idx, k, indptr, indices, allowed)

    def _topk_pattern(self, user_idx, k, indptr, indices, allowed) -> tuple[np.ndarray, np.ndarray]:
        """``_topk`` with the exclusions already as a CSR pattern; scores block by block via ``_scores``."""
        b, n = len(user_idx), self.interactions_.n_items
        kk = max(1, min(int(k), n))
        out = (np.empty((b, kk), np.int32), np.empty((b, kk), np.float32), np.zeros(b, np.int32))
        if indptr is None:
            indptr, indices = np.zeros(b + 1, np.int64), np.zeros(0, np.int32)
        block = max(1, self._block_bytes // (4 * max(1, n)))
        for start in range(0, b, block):
            stop = min(b, start + block)
            scores = self._scores(user_idx[start:stop])
            select_topk(scores, kk, indptr, indices, allowed, out=out, row_offset=start)
        return _trim(out[0], out[1])

    def _similarity_vectors(self, kind: str) -> Any:
        """Row vectors whose cosine is the similarity of items (``kind='item'``) or users."""
        raise NotImplementedError(f"{type(self).__name__} does not define {kind} similarity")

    def _similarity_norms(self, kind: str) -> tuple[Any, np.ndarray]:
        """(vectors, their Euclidean row norms) — norms cached while the vector array is the same object."""
        vectors = self._similarity_vectors(kind)

        def build() -> np.ndarray:
            if sp.issparse(vectors):
                return np.sqrt(np.asarray(vectors.multiply(vectors).sum(axis=1)).ravel()).astype(np.float32)
            return np.linalg.norm(np.asarray(vectors, dtype=np.float64), axis=1).astype(np.float32)

        return vectors, self._cached(f"norms_{kind}", (vectors,), build)

    def _similar(self, kind: str, idx: np.ndarray, k: int, allowed: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k cosine neighbours of dense indices ``idx`` (the query itself excluded).

        Returns items/users ``(b, k')`` int32 (``-1`` padded) and cosines ``(b, k')`` float32.
        """
        vectors, norms = self._similarity_norms(kind)
        idx = np.asarray(idx, dtype=np.int64)
        n = vectors.shape[0]
        kk = max(1, min(int(k), n))
        b = len(idx)
        out = (np.empty((b, kk), np.int32), np.empty((b, kk), np.float32), np.zeros(b, np.int32))
        # exclude the query itself: one stored index per row
        indptr = np.arange(b + 1, dtype=np.int64)
        indices = idx.astype(np.int32)
        block = max(1, self._block_bytes // (4 * max(1, n)))
        for start in range(0, b, block):
            stop = min(b, start + block)
            sims = _cosine_rows(vectors, idx[start:stop], norms)
            select_topk(sims, kk, indptr, indices, allowed, out=out, row_offset=start)
        return _trim(out[0], out[1])

    def _new_user_scores(self, vector: np.ndarray) -> np.ndarray:
        """Scores ``(n_items,)`` of a folded-in user vector (from :meth:`fold_in_user`)."""
        raise NotImplementedError(f"{type(self).__name__} cannot score folded-in users")

    # -------------------------------------------------------------- public API
    def recommend(
        self,
        user: Hashable,
        k: int = 10,
        exclude_seen: bool = True,
        items: Iterable[Hashable] | None = None,
        exclude: Iterable[Hashable] | None = None,
    ) -> pd.DataFrame:
        """The ``k`` best items for one known user.

        Parameters
        ----------
        user : hashable
            External user id (unknown: :class:`~mfrec.exceptions.UnknownIdError`, a ``KeyError``).
        k : int
            Number of items, ``>= 1``; fewer rows come back when fewer items are candidates.
        exclude_seen : bool
            Leave out the items the user interacted with in the training data.
        items : iterable of item ids, optional
            Allow-list: rank only these items.
        exclude : iterable of item ids, optional
            Deny-list: never return these items.

        Returns
        -------
        pandas.DataFrame
            Columns ``item`` (external ids) and ``score`` (float), best first; ties by lower item index.
        """
        item_ids, scores = self.recommend_arrays(user, k, exclude_seen, items, exclude)
        return pd.DataFrame({"item": item_ids, "score": scores})

    def recommend_arrays(
        self,
        user: Hashable,
        k: int = 10,
        exclude_seen: bool = True,
        items: Iterable[Hashable] | None = None,
        exclude: Iterable[Hashable] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`recommend` as two arrays ``(item ids, float64 scores)``, best first, without building a
        DataFrame (for services, where pandas is a measurable share of a millisecond-scale request)."""
        self._check_fitted()
        k = check_int("k", k, minimum=1)
        user_idx = np.asarray([self._user_idx(user)], dtype=np.int32)
        top_items, top_scores = self._top_for_users(user_idx, k, exclude_seen, items, exclude)
        valid = top_items[0] >= 0
        item_ids = self.interactions_.item_index_map.to_numpy()[top_items[0][valid]]
        return item_ids, top_scores[0][valid].astype(np.float64)

    def recommend_batch(
        self,
        users: Iterable[Hashable],
        k: int = 10,
        exclude_seen: bool = True,
        items: Iterable[Hashable] | None = None,
        exclude: Iterable[Hashable] | None = None,
    ) -> pd.DataFrame:
        """The ``k`` best items for each of many known users, in one long DataFrame.

        Parameters are those of :meth:`recommend`, with ``users`` an iterable of external user ids; ``exclude``
        may also be a mapping ``user -> items`` of per-user exclusions (on top of the seen items).

        Returns
        -------
        pandas.DataFrame
            Columns ``user``, ``item``, ``score`` (float) and ``rank`` (1-based, int), grouped by user in
            the order given and best first within a user.
        """
        self._check_fitted()
        k = check_int("k", k, minimum=1)
        ids = _as_id_list(users, "users")
        user_idx = np.asarray(self.interactions_.user_index(ids), dtype=np.int32) if ids else np.zeros(0, np.int32)
        return self._recommend_idx(user_idx, k, exclude_seen, items, exclude)

    def _top_for_users(self, user_idx, k, exclude_seen, items, exclude) -> tuple[np.ndarray, np.ndarray]:
        """(items, scores) of the top ``k`` per user index, -1 padded, with seen/allow/deny rules applied.

        ``exclude`` is a deny-list for every user, or a mapping ``user id -> items`` of per-user exclusions.
        """
        per_user = exclude if isinstance(exclude, Mapping) else None
        allowed = self._allowed_mask(items, None if per_user is not None else exclude)
        indptr, indices = self._seen_pattern(user_idx) if exclude_seen else (None, None)
        if per_user is not None:
            indptr, indices = self._with_exclusions(user_idx, indptr, indices, per_user)
        return self._topk_pattern(user_idx, k, indptr, indices, allowed)

    def _with_exclusions(self, user_idx: np.ndarray, indptr, indices, per_user: Mapping) -> tuple[np.ndarray, np.ndarray]:
        """The CSR exclusion pattern of ``user_idx`` (the seen items, or none) plus each user's own exclusions."""
        n_rows, n_items = len(user_idx), self.interactions_.n_items
        known = {int(u): r for r, u in enumerate(user_idx)}
        rows, cols = [], []
        for user, listed in per_user.items():
            r = known.get(self._user_idx(user))
            if r is None:
                continue  # exclusions of a user not asked for
            idx = self._items_idx(listed, f"exclude[{show_id(user)}]")
            rows.append(np.full(len(idx), r, dtype=np.int64))
            cols.append(idx.astype(np.int64))
        extra = sp.csr_matrix((np.ones(sum(map(len, cols)), np.int8),
                               (np.concatenate(rows) if rows else np.zeros(0, np.int64),
                                np.concatenate(cols) if cols else np.zeros(0, np.int64))), shape=(n_rows, n_items))
        if indptr is not None:
            seen = sp.csr_matrix((np.ones(len(indices), np.int8), indices, indptr), shape=(n_rows, n_items))
            extra = extra + seen
        extra.sum_duplicates()
        return extra.indptr.astype(np.int64), extra.indices.astype(np.int32)

    def _recommend_idx(self, user_idx, k, exclude_seen, items, exclude) -> pd.DataFrame:
        """Long frame (user, item, score, rank) for dense user indices."""
        top_items, top_scores = self._top_for_users(user_idx, k, exclude_seen, items, exclude)
        queries = self.interactions_.user_index_map.take(user_idx).to_numpy()
        return _long_frame("user", queries, "item", self.interactions_.item_index_map, top_items, top_scores)

    def recommend_users(self, item: Hashable, k: int = 10, exclude_seen: bool = False,
                        users: Iterable[Hashable] | None = None,
                        exclude: Iterable[Hashable] | None = None) -> pd.DataFrame:
        """The ``k`` users who score highest for one item ("who would want this?").

        Parameters
        ----------
        item : hashable
            External item id.
        k : int
            Number of users, ``>= 1``.
        exclude_seen : bool, default False
            Leave out the users who already interacted with the item. Off by default: the question is
            usually "who likes this", and for campaign targeting pass ``exclude_seen=True``.
        users, exclude : iterables of user ids, optional
            Rank only these users (allow-list) / never these users (deny-list).

        Returns
        -------
        pandas.DataFrame
            Columns ``user`` and ``score``, best first (ties: lower user index first).
        """
        self._check_fitted()
        k = check_int("k", k, minimum=1)
        idx = np.asarray([self._item_idx(item)], dtype=np.int32)
        scores = self._item_scores(idx)
        indptr, indices = self._seen_by_pattern(idx) if exclude_seen else (None, None)
        kk = max(1, min(k, scores.shape[1]))
        top_users, top_scores, counts = select_topk(scores, kk, indptr, indices, self._users_mask(users, exclude))
        n = int(counts[0])
        return pd.DataFrame(
            {
                "user": self.interactions_.user_index_map.take(top_users[0, :n]).to_numpy(),
                "score": top_scores[0, :n].astype(np.float64),
            }
        )

    def _similar_frame(self, kind: str, query: Hashable, k: int, allow: Any = None, exclude: Any = None
                       ) -> pd.DataFrame:
        self._check_fitted()
        k = check_int("k", k, minimum=1)
        if kind == "item":
            idx, ids = self._item_idx(query), self.interactions_.item_index_map
        else:
            idx, ids = self._user_idx(query), self.interactions_.user_index_map
        top, sims = self._similar(kind, np.asarray([idx]), k, self._side_mask(kind, allow, exclude, f"{kind}s"))
        n = int((top[0] >= 0).sum()) if top.size else 0
        return pd.DataFrame({kind: ids.take(top[0, :n]).to_numpy(), "score": sims[0, :n].astype(np.float64)})

    def similar_items(self, item: Hashable, k: int = 10, items: Iterable[Hashable] | None = None,
                      exclude: Iterable[Hashable] | None = None) -> pd.DataFrame:
        """The ``k`` items most similar to ``item`` (cosine of the model's item vectors), itself excluded;
        only among ``items`` when given, never among ``exclude``.

        Returns
        -------
        pandas.DataFrame
            Columns ``item`` and ``score`` (cosine in [-1, 1]; 0 for zero vectors), best first.
        """
        return self._similar_frame("item", item, k, items, exclude)

    def similar_users(self, user: Hashable, k: int = 10, users: Iterable[Hashable] | None = None,
                      exclude: Iterable[Hashable] | None = None) -> pd.DataFrame:
        """The ``k`` users most similar to ``user`` (cosine of the model's user vectors), itself excluded;
        only among ``users`` when given, never among ``exclude``.

        Returns
        -------
        pandas.DataFrame
            Columns ``user`` and ``score``, best first.
        """
        return self._similar_frame("user", user, k, users, exclude)

    def _similar_batch(self, kind: str, queries: Iterable[Hashable], k: int, allow: Any = None,
                       exclude: Any = None) -> pd.DataFrame:
        self._check_fitted()
        k = check_int("k", k, minimum=1)
        ids = _as_id_list(queries, f"{kind}s")
        index_map = self.interactions_.item_index_map if kind == "item" else self.interactions_.user_index_map
        if not ids:
            return pd.DataFrame({kind: [], f"similar_{kind}": [], "score": [], "rank": []})
        idx = self._ids_idx(kind, ids, f"{kind}s")
        top, sims = self._similar(kind, idx, k, self._side_mask(kind, allow, exclude, f"{kind}s"))
        return _long_frame(kind, np.asarray(ids, dtype=object), f"similar_{kind}", index_map, top, sims)

    def similar_items_batch(self, items: Iterable[Hashable], k: int = 10, candidates: Iterable[Hashable] | None = None,
                            exclude: Iterable[Hashable] | None = None) -> pd.DataFrame:
        """:meth:`similar_items` for many items at once (one blocked product, not one query each).

        Returns
        -------
        pandas.DataFrame
            Columns ``item`` (the query), ``similar_item``, ``score`` (cosine) and ``rank`` (1-based), grouped by
            query in the order given, best first. ``candidates`` / ``exclude`` are the allow- and deny-lists of
            every query (named ``candidates`` because ``items`` are the queries here).
        """
        return self._similar_batch("item", items, k, candidates, exclude)

    def similar_users_batch(self, users: Iterable[Hashable], k: int = 10, candidates: Iterable[Hashable] | None = None,
                            exclude: Iterable[Hashable] | None = None) -> pd.DataFrame:
        """:meth:`similar_users` for many users at once: columns ``user``, ``similar_user``, ``score``, ``rank``;
        ``candidates`` / ``exclude`` are the allow- and deny-lists of every query."""
        return self._similar_batch("user", users, k, candidates, exclude)

    def _fold_in_inputs(self, items: Any, values: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Validated (dense item indices int32, values float32) of a new user's interactions.

        Unknown items raise :class:`UnknownIdError`; ``values`` (default all ones) must be finite and as
        long as ``items``; a repeated item raises :class:`InvalidDataError`.
        """
        self._check_fitted()
        ids = _as_id_list(items, "items")
        if not ids:
            raise InvalidDataError("a new user needs at least one known item to fold in")
        idx = self._items_idx(ids, "items")
        if values is None:
            vals = np.ones(len(idx), dtype=np.float32)
        else:
            vals = np.asarray(_as_id_list(values, "values"), dtype=np.float64).ravel()
            if vals.shape != idx.shape:
                raise InvalidDataError(f"{len(vals)} values given for {len(idx)} items")
            bad = ~np.isfinite(vals)
            if bad.any():
                pos = int(np.flatnonzero(bad)[0])
                raise InvalidDataError(f"value {vals[pos]} of item {show_id(ids[pos])} is not finite")
            vals = vals.astype(np.float32)
        uniq, first, counts = np.unique(idx, return_index=True, return_counts=True)
        if (counts > 1).any():
            pos = int(first[np.flatnonzero(counts > 1)[0]])
            raise InvalidDataError(f"item {show_id(ids[pos])} is given more than once")
        return idx, vals

    def _fold_in_namer(self, idx: np.ndarray):
        """``who(pos)`` for errors about the ``pos``-th folded-in value: ``"item 'i3'"`` (``idx``: item indices)."""
        items = self.interactions_.item_index_map
        return lambda pos: f"item {show_id(items[int(idx[pos])])}"

    def fold_in_user(self, items: Iterable[Hashable], values: Iterable[float] | None = None) -> np.ndarray:
        """The latent vector ``(d,)`` of a new user from their items (and values), closed form.

        Subclass hook; the base raises ``NotImplementedError``.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support folding in new users")

    def recommend_new_user(
        self,
        items: Iterable[Hashable],
        values: Iterable[float] | None = None,
        k: int = 10,
    ) -> pd.DataFrame:
        """Recommendations for a user unseen in training, from the items they interacted with.

        Calls :meth:`fold_in_user` then scores every item, excluding ``items``.

        Returns
        -------
        pandas.DataFrame
            Columns ``item`` and ``score``, best first.
        """
        self._check_fitted()
        k = check_int("k", k, minimum=1)
        idx, _ = self._fold_in_inputs(items, values)
        vector = self.fold_in_user(items, values)
        top, sc = self._top_for_vector(vector, k, np.sort(idx))
        return pd.DataFrame({"item": self.interactions_.item_index_map.take(top).to_numpy(),
                             "score": sc.astype(np.float64)})

    def _top_for_vector(self, vector: np.ndarray, k: int, excluded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` item indices and float32 scores of a folded-in vector, the sorted indices ``excluded`` left
        out (every item scored)."""
        scores = np.asarray(self._new_user_scores(vector), dtype=np.float32).reshape(1, -1)
        n = scores.shape[1]
        top, sc, counts = select_topk(scores, max(1, min(k, n)), np.array([0, len(excluded)]), excluded)
        c = int(counts[0])
        return top[0, :c], sc[0, :c]

    def recommend_new_users(self, histories: Any, k: int = 10) -> pd.DataFrame:
        """:meth:`recommend_new_user` for many users unseen in training (batch fold-in, no refit).

        Parameters
        ----------
        histories : mapping ``key -> items`` or ``key -> (items, values)``
            Each new user's interactions; the keys are yours (they label the rows of the result).
        k : int

        Returns
        -------
        pandas.DataFrame
            Columns ``user`` (your key), ``item``, ``score`` and ``rank``, grouped by user in the order given.
        """
        if not isinstance(histories, Mapping):
            raise InvalidParameterError(
                f"histories must be a mapping of user key -> items (or (items, values)), got {type(histories).__name__}")
        frames = []
        for key, history in histories.items():
            items, values = history if isinstance(history, tuple) and len(history) == 2 else (history, None)
            frame = self.recommend_new_user(items, values=values, k=k)
            frame.insert(0, "user", [key] * len(frame))
            frame["rank"] = np.arange(1, len(frame) + 1)
            frames.append(frame)
        if not frames:
            return pd.DataFrame({"user": [], "item": [], "score": [], "rank": []})
        return pd.concat(frames, ignore_index=True)

    def _pairs(self, user_ids: Any, item_ids: Any, unknown: str = "raise") -> tuple[np.ndarray, np.ndarray]:
        """Dense (user, item) indices of paired id lists; ``-1`` for unknown ids when ``unknown='ignore'``."""
        users = _as_id_list(user_ids, "user_ids")
        items = _as_id_list(item_ids, "item_ids")
        if len(users) != len(items):
            raise InvalidParameterError(f"user_ids has {len(users)} ids but item_ids has {len(items)}")
        if not users:
            return np.zeros(0, np.int32), np.zeros(0, np.int32)
        u = np.asarray(self.interactions_.user_index(users, missing=unknown), dtype=np.int32)
        i = np.asarray(self.interactions_.item_index(items, missing=unknown), dtype=np.int32)
        return u, i

    @property
    def predicts_ratings(self) -> bool:
        """Whether :meth:`predict` returns values on the scale of the training ratings (so rmse/mae mean
        something); true for models that implement ``predict``, overridden where that depends on the fit."""
        return type(self).predict is not Recommender.predict

    def predict(self, user_ids: Iterable[Hashable], item_ids: Iterable[Hashable]) -> np.ndarray:
        """Predicted values of paired (user, item) ids, shape ``(n,)``; explicit models implement it."""
        raise NotImplementedError(f"{type(self).__name__} does not predict values; use recommend for rankings")

    # -------------------------------------------------------------- persistence
    def save(self, path: Any, **kwargs: Any):
        """Write the fitted model with :func:`mfrec.persist.save` (atomic, no pickle); returns the path."""
        from mfrec import persist

        self._check_fitted()
        return persist.save(self, path, **kwargs)

    @classmethod
    def load(cls, path: Any) -> Recommender:
        """Read a model written by :meth:`save`; it must be an instance of ``cls``."""
        from mfrec import persist
        from mfrec.exceptions import ModelFileError

        model = persist.load(path)
        if not isinstance(model, cls):
            raise ModelFileError(f"{path}: holds a {type(model).__name__}, not a {cls.__name__}")
        return model


# ---------------------------------------------------------------------------------------------- factors
class FactorModel(Recommender):
    """Base of latent-factor models: scores are dot products of user and item embeddings.

    Attributes
    ----------
    user_factors_ : numpy.ndarray, shape (n_users, d), float32 or float64, C-contiguous
    item_factors_ : numpy.ndarray, shape (n_items, d)

    Scores are ``s(u, i) = e_u . f_i`` with ``e = _user_embeddings``, ``f = _item_embeddings``; by default
    the factors themselves. Biased explicit models override both with augmented vectors
    ``e_u = [x_u, mu + b_u, 1]`` and ``f_i = [y_i, 1, b_i]`` so that the score is the predicted rating
    ``mu + b_u + b_i + x_u . y_i``. Similarities are cosines of the (plain) factors.
    """

    def _check_fitted(self) -> None:
        super()._check_fitted()
        if getattr(self, "item_factors_", None) is None or getattr(self, "user_factors_", None) is None:
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit(interactions) first")

    def _user_embeddings(self, user_idx: np.ndarray) -> np.ndarray:
        """Vectors ``(b, d')`` of dense users whose dot with :meth:`_item_embeddings` is the score."""
        return self.user_factors_[np.asarray(user_idx)]

    # -------------------------------------------------------------- approximate top-k (mfrec.ann)
    def build_index(self, kind: str = "hnsw", *, connectivity: int = 16, expansion_add: int = 128,
                    expansion_search: int = 64, oversample: float = 2.0, graphs: Iterable[str] | None = None,
                    num_threads: int = 0) -> FactorModel:
        """Build (``kind="hnsw"``) or drop (``kind="exact"``) the approximate-search index of :mod:`mfrec.ann`.

        With an index, :meth:`recommend`, :meth:`recommend_batch`, :meth:`similar_items`, :meth:`similar_users`
        and their batch forms take their candidates from HNSW graphs (extra ``ann``: usearch) instead of scoring
        every item; scores and exclusions stay exact. The index is saved with the model and reopened at load
        without a rebuild; a refit drops it. Build statistics: ``index_["graphs"]`` (rows, seconds, bytes).

        Parameters
        ----------
        kind : {"hnsw", "exact"}
        connectivity, expansion_add, expansion_search : int
            HNSW's M, efConstruction and ef (a wider search finds more of the exact top-k, more slowly).
        oversample : float >= 1
            A query asks the graph for ``oversample * (k + excluded)`` candidates.
        graphs : iterable of {"recommend", "similar_items", "similar_users"}, optional
            Which graphs to build (default all three).
        num_threads : int
            Build threads (0: the kernel pool's).

        Returns
        -------
        self
        """
        from mfrec.ann import build_graphs, check_index_params
        from mfrec.kernels.threads import get_num_threads

        self._check_fitted()
        kind, params, names = check_index_params(kind, connectivity, expansion_add, expansion_search, oversample,
                                                 graphs)
        threads = check_int("num_threads", num_threads, minimum=0) or get_num_threads()
        self._drop_index()
        if kind == "exact":
            return self
        rows = {"recommend": self._item_embeddings, "similar_items": lambda: self._similarity_vectors("item"),
                "similar_users": lambda: self._similarity_vectors("user")}
        built, stats = build_graphs({name: np.asarray(rows[name]()) for name in names}, params, threads)
        self.index_ = {"kind": kind, **params, "graphs": stats}
        for name, graph in built.items():  # keep the serialised bytes; search through a view on them (one copy)
            setattr(self, f"index_{name}_", graph.to_bytes())
        del built
        self._open_index()
        return self

    def _open_index(self) -> None:
        """The live graphs, as views on the ``index_<graph>_`` bytes (after build_index and after load)."""
        from mfrec.ann import GRAPHS, Graph

        info = getattr(self, "index_", None)
        self.__dict__.pop("_ann", None)
        if not info:
            return
        rows = {"item": self.interactions_.n_items, "user": self.interactions_.n_users}
        self._ann = {name: Graph.from_bytes(getattr(self, f"index_{name}_"), rows[GRAPHS[name]],
                                            info["expansion_search"])
                     for name in info["graphs"]}

    def _graph(self, name: str) -> Any:
        return (self.__dict__.get("_ann") or {}).get(name)

    def _after_load(self) -> None:
        super()._after_load()
        self._open_index()

    def _top_for_vector(self, vector: np.ndarray, k: int, excluded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        graph = self._graph("recommend")
        F = self._item_embeddings()
        v = np.asarray(vector, dtype=np.float32).ravel()
        if graph is None or v.shape[0] != F.shape[1]:
            return super()._top_for_vector(vector, k, excluded)
        ptr = np.array([0, len(excluded)], dtype=np.int64)
        top, sc = self._approximate_topk(graph, v[None, :], k, ptr, np.asarray(excluded, dtype=np.int32), None)
        valid = top[0] >= 0
        return top[0][valid], sc[0][valid]

    def _approximate_topk(self, graph: Any, E: np.ndarray, k: int, indptr, indices, allowed
                          ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` per row of the query embeddings ``E`` from the ``recommend`` graph's candidates, scored
        exactly (see :mod:`mfrec.ann`); ``indptr``/``indices``: each row's excluded items (CSR), or None."""
        from mfrec.ann import search_topk
        from mfrec.kernels.threads import get_num_threads

        n = self.interactions_.n_items
        kk = max(1, min(int(k), n))
        E = np.ascontiguousarray(E, dtype=np.float32)
        F = self._item_embeddings()
        over = float(self.index_["oversample"])
        m = np.diff(indptr) if indptr is not None else np.zeros(len(E), np.int64)

        def counts(widen, rows):  # oversample * (k + excluded), rounded up to a power of two: fewer searches
            wanted = np.ceil(over * widen * (kk + m[rows])).astype(np.int64)
            return 2 ** np.ceil(np.log2(np.maximum(wanted, 1))).astype(np.int64)

        def exact(rows):
            sub_ptr, sub_idx = (None, None) if indptr is None else _rows_pattern(indptr, indices, rows)
            top, sc, _ = topk_dot(E[rows], F, kk, sub_ptr, sub_idx, allowed, block_bytes=self._block_bytes)
            return top, sc

        def score(row, cand):
            return (np.asarray(F[cand], dtype=np.float32) @ E[row]).astype(np.float32)

        def excluded(row):
            return None if indptr is None else indices[indptr[row]:indptr[row + 1]]

        items, scores = search_topk(graph, E, kk, counts, score, excluded, allowed, exact, -np.inf, get_num_threads())
        return _trim(items, scores)

    def _similar(self, kind: str, idx: np.ndarray, k: int, allowed: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        graph = self._graph("similar_items" if kind == "item" else "similar_users")
        if graph is None:
            return super()._similar(kind, idx, k, allowed)
        from mfrec.ann import search_topk
        from mfrec.kernels.threads import get_num_threads

        vectors, norms = self._similarity_norms(kind)
        idx = np.asarray(idx, dtype=np.int64)
        n = vectors.shape[0]
        kk = max(1, min(int(k), n - 1)) if n > 1 else 1
        V = np.asarray(vectors, dtype=np.float32)
        count = min(n, int(np.ceil(float(self.index_["oversample"]) * (kk + 1))))  # + 1: the query itself

        exact_similar = super()._similar

        def cosine(row, cand):
            q = idx[row]
            return _cosine(V[cand] @ V[q], norms[cand] * norms[q])

        items, sims = search_topk(
            graph, V[idx], kk, lambda widen, rows: np.full(len(rows), min(n, count * widen), np.int64), cosine,
            lambda row: idx[row:row + 1], allowed, lambda rows: exact_similar(kind, idx[rows], kk, allowed), 0.0,
            get_num_threads())
        return _trim(items, sims)

    def _item_embeddings(self) -> np.ndarray:
        """Vectors ``(n_items, d')`` of all items."""
        return self.item_factors_

    def _all_user_embeddings(self) -> np.ndarray:
        return self._user_embeddings(np.arange(self.interactions_.n_users, dtype=np.int32))

    def _scores(self, user_idx: np.ndarray) -> np.ndarray:
        """``S = E[user_idx] @ F.T``, shape ``(b, n_items)``, float32."""
        E = np.asarray(self._user_embeddings(np.asarray(user_idx, dtype=np.int32)), dtype=np.float32)
        F = np.asarray(self._item_embeddings(), dtype=np.float32)
        return E @ F.T

    def _item_scores(self, item_idx: np.ndarray) -> np.ndarray:
        """``F[item_idx] @ E.T``, shape ``(b, n_users)``, float32."""
        F = np.asarray(self._item_embeddings(), dtype=np.float32)[np.asarray(item_idx)]
        E = np.asarray(self._all_user_embeddings(), dtype=np.float32)
        return F @ E.T

    def _topk_pattern(self, user_idx, k, indptr, indices, allowed) -> tuple[np.ndarray, np.ndarray]:
        """Blocked GEMM + partial selection (:func:`mfrec.kernels.topk.topk_dot`), or, with an index (see
        :meth:`build_index`), exact scores of the graph's candidates. A small allow-list is scored exactly: it is
        cheaper than any search."""
        graph = self._graph("recommend")
        if graph is not None and (allowed is None or int(allowed.sum()) > 64 * max(int(k), 1)):
            E = self._user_embeddings(np.asarray(user_idx, dtype=np.int32))
            return self._approximate_topk(graph, E, k, indptr, indices, allowed)
        E = self._user_embeddings(np.asarray(user_idx, dtype=np.int32))
        F = self._item_embeddings()
        items, scores, _ = topk_dot(E, F, k, indptr, indices, allowed, block_bytes=self._block_bytes)
        return _trim(items, scores)

    def _similarity_vectors(self, kind: str) -> np.ndarray:
        return self.item_factors_ if kind == "item" else self.user_factors_

    def _new_user_scores(self, vector: np.ndarray) -> np.ndarray:
        """``F @ v`` when ``v`` has the embedding width, else ``item_factors_ @ v`` (plain factors)."""
        v = np.asarray(vector, dtype=np.float32).ravel()
        F = self._item_embeddings()
        if v.shape[0] == F.shape[1]:
            return np.asarray(F, dtype=np.float32) @ v
        if v.shape[0] == self.item_factors_.shape[1]:
            return np.asarray(self.item_factors_, dtype=np.float32) @ v
        raise InvalidParameterError(
            f"folded-in vector has {v.shape[0]} components; expected {F.shape[1]} or {self.item_factors_.shape[1]}"
        )


# ---------------------------------------------------------------------------------------------- clone
def clone(estimator: Recommender, **overrides: Any) -> Recommender:
    """A new, unfitted estimator of the same class with the same (deep-copied) hyperparameters.

    ``overrides`` replace some of them; unknown names raise :class:`InvalidParameterError`.
    """
    if not hasattr(estimator, "get_params"):
        raise InvalidParameterError(f"cannot clone {type(estimator).__name__}: it has no get_params()")
    params = copy.deepcopy(estimator.get_params())
    valid = set(params)
    for name in overrides:
        if name not in valid:
            raise InvalidParameterError(
                f"{type(estimator).__name__} has no parameter {name!r}; valid parameters: {', '.join(sorted(valid))}"
            )
    params.update(overrides)
    return type(estimator)(**params)
