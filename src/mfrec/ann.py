"""Approximate top-k for large catalogues: HNSW graphs (usearch, extra ``ann``) over a model's factor rows.

:meth:`FactorModel.build_index(kind="hnsw") <mfrec.models.base.FactorModel.build_index>` builds up to three
graphs (Malkov & Yashunin 2018, as implemented by usearch):

* ``recommend`` — maximum inner product over the item embeddings (``score = e_u . f_i``), for
  ``recommend`` / ``recommend_batch`` and the service's items-for-a-user;
* ``similar_items`` / ``similar_users`` — cosine over the item / user factors.

A query asks the graph for more candidates than it returns (``k`` plus the number of items it must leave out,
times ``oversample``), keeps the allowed ones, and scores them exactly with the factors, so every score
returned is the exact model score and every exclusion is exact; only *which* items are candidates is
approximate. When too few candidates survive the filters the query asks again for four times as many, and after
that scores the row exactly: an approximate answer is never shorter than the exact one.

The graphs are saved in the model file (``index_*_`` uint8 arrays, usearch's own serialisation; never pickle)
and reopened at load as views on those bytes, without a rebuild or a copy.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from mfrec.exceptions import InvalidParameterError, require_extra

#: the graphs a model can have, and the side whose rows each one holds
GRAPHS = {"recommend": "item", "similar_items": "item", "similar_users": "user"}


class Graph:
    """One usearch HNSW index over the rows of ``vectors`` (keys are the row positions).

    ``metric``: ``"ip"`` (inner product) or ``"cos"``. ``connectivity`` (M), ``expansion_add`` (efConstruction)
    and ``expansion_search`` (ef) are usearch's; ``threads`` = 0 uses every core for the build.
    """

    def __init__(self, index: Any, n: int) -> None:
        self.index, self.n = index, int(n)

    @classmethod
    def build(cls, vectors: np.ndarray, metric: str, *, connectivity: int, expansion_add: int,
              expansion_search: int, threads: int) -> Graph:
        Index = require_extra("usearch.index", "ann").Index
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        index = Index(ndim=vectors.shape[1], metric=metric, dtype="f32", connectivity=connectivity,
                      expansion_add=expansion_add, expansion_search=expansion_search)
        index.add(np.arange(len(vectors), dtype=np.uint64), vectors, threads=threads)
        return cls(index, len(vectors))

    def to_bytes(self) -> np.ndarray:
        return np.frombuffer(self.index.save(), dtype=np.uint8)

    @classmethod
    def from_bytes(cls, data: np.ndarray, n: int, expansion_search: int) -> Graph:
        Index = require_extra("usearch.index", "ann").Index
        index = Index.restore(np.ascontiguousarray(data, dtype=np.uint8), view=True)
        if index is None or len(index) != n:
            raise ValueError("the saved index does not match the model's rows")
        index.expansion_search = expansion_search
        return cls(index, n)

    def candidates(self, queries: np.ndarray, count: int, threads: int = 1) -> list[np.ndarray]:
        """Up to ``count`` row positions per query (int64), nearest first by the graph."""
        count = max(1, min(int(count), self.n))
        if count > self.index.expansion_search:  # the beam must be at least as wide as the answer
            self.index.expansion_search = count
        found = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), count, threads=threads)
        keys = np.atleast_2d(found.keys).astype(np.int64)
        counts = np.atleast_1d(getattr(found, "counts", keys.shape[1]))  # one query: usearch's Matches
        return [keys[r, :counts[r]] for r in range(len(keys))]


def check_index_params(kind: Any, connectivity: Any, expansion_add: Any, expansion_search: Any,
                       oversample: Any, graphs: Any) -> tuple[str, dict[str, Any], tuple[str, ...]]:
    """Validated ``(kind, params, graphs)`` of :meth:`FactorModel.build_index`."""
    from mfrec._params import check_float, check_int

    if kind not in ("hnsw", "exact"):
        raise InvalidParameterError(f"kind must be 'hnsw' or 'exact', got {kind!r}")
    params = {"connectivity": check_int("connectivity", connectivity, minimum=2, maximum=256),
              "expansion_add": check_int("expansion_add", expansion_add, minimum=8, maximum=4096),
              "expansion_search": check_int("expansion_search", expansion_search, minimum=8, maximum=4096),
              "oversample": check_float("oversample", oversample, minimum=1.0, maximum=100.0)}
    graphs = tuple(GRAPHS) if graphs is None else tuple(graphs)
    unknown = [g for g in graphs if g not in GRAPHS]
    if unknown or not graphs:
        raise InvalidParameterError(f"graphs must be some of {list(GRAPHS)}, got {list(graphs)}")
    return kind, params, graphs


def build_graphs(vectors: dict[str, np.ndarray], params: dict[str, Any], threads: int
                 ) -> tuple[dict[str, Graph], dict[str, Any]]:
    """A graph per ``vectors[name]`` (name one of :data:`GRAPHS`), and their build statistics (seconds, bytes)."""
    built, stats = {}, {}
    for name, rows in vectors.items():
        start = time.perf_counter()
        built[name] = Graph.build(rows, "ip" if name == "recommend" else "cos",
                                  connectivity=params["connectivity"], expansion_add=params["expansion_add"],
                                  expansion_search=params["expansion_search"], threads=threads)
        stats[name] = {"rows": built[name].n, "build_seconds": round(time.perf_counter() - start, 3),
                       "bytes": int(built[name].index.memory_usage)}
    return built, stats


def search_topk(graph: Graph, queries: np.ndarray, k: int, counts, score, excluded, allowed: np.ndarray | None,
                exact, fill: float, threads: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` per query row from ``graph``'s candidates, filtered and scored exactly (the module docstring).

    Parameters
    ----------
    queries : float32 array, shape (b, D)
        The vectors searched for.
    counts : callable ``(widen, rows) -> int64 array``
        How many candidates to ask for each of the query ``rows`` (``widen`` is 1, then 4 for the rows left
        short); rows asking for the same number share one search.
    score : callable ``(row, candidates) -> float32 array``
        The exact scores of a query row's candidates.
    excluded : callable ``row -> int array or None``
        The indices a query row must never return.
    allowed : bool array or None
        Allow-mask over the indexed rows.
    exact : callable ``rows -> (items, scores)``
        The exact top ``k`` of the rows still short after the wider search (``-1`` padded).
    fill : float
        Score of the padding entries.

    Returns
    -------
    items int32 ``(b, k)`` (``-1`` padded) and scores float32 ``(b, k)``, best first, ties by lower index.
    """
    items = np.full((len(queries), k), -1, np.int32)
    scores = np.full((len(queries), k), fill, np.float32)
    pending = np.arange(len(queries))
    for widen in (1, 4):
        if not len(pending):
            break
        wanted = counts(widen, pending)
        still = []
        for count in np.unique(wanted):
            rows = pending[wanted == count]
            found = graph.candidates(queries[rows], int(count), threads)
            for row, cand in zip(rows, found):
                keep = cand if allowed is None else cand[allowed[cand]]
                drop = excluded(row)
                if drop is not None and len(drop):
                    keep = keep[~np.isin(keep, drop)]
                s = score(row, keep)
                order = np.lexsort((keep, -s))[:k]  # best first, ties by lower index
                items[row, :len(order)], scores[row, :len(order)] = keep[order], s[order]
                if len(order) < k:
                    still.append(row)
        pending = np.asarray(still, dtype=np.int64)
    if len(pending):  # the filters left too few candidates: these rows are scored exactly
        ex_items, ex_scores = exact(pending)
        items[pending, :ex_items.shape[1]], scores[pending, :ex_scores.shape[1]] = ex_items, ex_scores
    return items, scores
