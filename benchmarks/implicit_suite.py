"""implicit's own ALS test suite, run against mfrec through an adapter.

``MfrecAsImplicitALS`` below speaks implicit's ``AlternatingLeastSquares`` API (0.7: positions as ids, numpy
``(ids, scores)`` results, ``user_items`` rows passed to every query) and does the work with mfrec's public API
only: ``ImplicitALS.fit`` on the CSR matrix, ``recommend_batch`` with per-user exclusions and allow-lists,
``fold_in_user`` for ``recalculate_user``, ``similar_items_batch`` / ``similar_users_batch``, ``explain``,
``partial_fit_users`` / ``partial_fit_items`` and ``save`` / ``load`` on file objects.

It translates conventions, never results:

* implicit's confidences are the matrix values times ``alpha``, 1 elsewhere: ``confidence="given"``;
* implicit accepts ``regularization=0``; mfrec requires lambda > 0, so 0 becomes 1e-9;
* implicit lists the query itself first in ``similar_items`` (cosine 1); mfrec leaves it out, so the adapter
  puts it back where implicit would;
* an allow-list id out of range is implicit's ``IndexError``, mfrec's ``UnknownIdError`` (a ``KeyError``).

The runner copies implicit's ``tests/`` folder (from a checkout of https://github.com/benfred/implicit at the
version installed) to a temporary folder, adds a ``conftest.py`` that replaces
``implicit.als.AlternatingLeastSquares`` with the adapter, and runs ``als_test.py`` (the CPU tests, with the
shared recommender tests of ``recommender_base_test.py``) under pytest. Needs ``implicit`` installed (the ``bench``
extra): its test files import its evaluation helpers.

Usage::

    python benchmarks/implicit_suite.py --tests /path/to/implicit/tests [-- extra pytest args]
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp


class MfrecAsImplicitALS:
    """implicit's ``AlternatingLeastSquares`` interface over :class:`mfrec.ImplicitALS`."""

    def __init__(self, factors=100, regularization=0.01, alpha=1.0, dtype=np.float32, use_native=True, use_cg=True,
                 use_gpu=False, iterations=15, calculate_training_loss=False, num_threads=0, random_state=None):
        if use_gpu:
            raise NotImplementedError("mfrec has no GPU solver")
        self.factors, self.regularization, self.alpha = factors, regularization, alpha
        self.dtype = np.dtype(dtype)
        self.use_cg, self.iterations, self.num_threads = use_cg, iterations, num_threads
        self.random_state = random_state
        self.model = None

    # ------------------------------------------------------------------ fitting
    def _mfrec(self, iterations):
        import mfrec

        return mfrec.ImplicitALS(
            factors=self.factors, regularization=max(float(self.regularization), 1e-9), confidence="given",
            unobserved_confidence=1.0, iterations=max(int(iterations), 1), solver="cg" if self.use_cg else "cholesky",
            dtype="float64" if self.dtype == np.float64 else "float32", num_threads=self.num_threads,
            seed=0 if self.random_state is None else int(self.random_state) % (2**31))

    def fit(self, user_items, show_progress=True, callback=None):
        user_items = sp.csr_matrix(user_items, dtype=np.float64)
        user_items.eliminate_zeros()
        confidences = user_items * float(self.alpha)
        relay = None if callback is None else (lambda it, seconds, entry: callback(it, seconds, entry.get("loss")))
        self.model = self._mfrec(self.iterations).fit(confidences, show_progress=False, callback=relay)

    @property
    def user_factors(self):
        return self.model.user_factors_

    @property
    def item_factors(self):
        return self.model.item_factors_

    # ------------------------------------------------------------------ queries
    def recommend(self, userid, user_items, N=10, filter_already_liked_items=True, filter_items=None,
                  recalculate_user=False, items=None):
        from mfrec.exceptions import UnknownIdError

        batch = np.ndim(userid) > 0
        users = np.atleast_1d(np.asarray(userid))
        rows = sp.csr_matrix(user_items) if user_items is not None else None
        if rows is not None and rows.shape[0] != len(users):
            rows = rows[users]
        deny = set(np.asarray(filter_items).tolist()) if filter_items is not None else set()
        allow = None if items is None else np.asarray(items).tolist()
        try:
            if recalculate_user:
                out = [self._recommend_recalculated(rows[r], N, filter_already_liked_items, deny, allow)
                       for r in range(len(users))]
            else:
                exclude = {}
                for r, u in enumerate(users.tolist()):
                    liked = set(rows[r].indices.tolist()) if (filter_already_liked_items and rows is not None) else set()
                    exclude[u] = sorted(liked | deny)
                frame = self.model.recommend_batch(users.tolist(), k=N, exclude_seen=False, items=allow,
                                                   exclude=exclude)
                out = [(g["item"].to_numpy(dtype=np.int32), g["score"].to_numpy(dtype=np.float32))
                       for _, g in frame.groupby("user", sort=False)]
                out = out + [(np.zeros(0, np.int32), np.zeros(0, np.float32))] * (len(users) - len(out))
        except UnknownIdError as exc:
            raise IndexError(str(exc)) from exc
        if not batch:
            return out[0]
        width = max((len(i) for i, _ in out), default=0)
        ids = np.full((len(out), width), -1, dtype=np.int32)
        scores = np.full((len(out), width), -np.inf, dtype=np.float32)
        for r, (i, s) in enumerate(out):
            ids[r, :len(i)], scores[r, :len(s)] = i, s
        return ids, scores

    def _recommend_recalculated(self, row, N, filter_liked, deny, allow):
        """fold-in the given row (mfrec's exact fold-in), then score every item like ``recommend``."""
        x = self.model.fold_in_user(row.indices.tolist(), (row.data * self.alpha).tolist())
        scores = self.model.item_factors_.astype(np.float64) @ x.astype(np.float64)
        candidates = np.ones(len(scores), dtype=bool)
        if allow is not None:
            if min(allow) < 0 or max(allow) >= len(scores):
                raise IndexError("items out of range")
            candidates[:] = False
            candidates[allow] = True
        if filter_liked:
            candidates[row.indices] = False
        candidates[list(deny)] = False
        idx = np.nonzero(candidates)[0]
        order = idx[np.argsort(-scores[idx], kind="stable")][:N]
        return order.astype(np.int32), scores[order].astype(np.float32)

    def _similar(self, kind, queries, N, filter_ids, allow, batch):
        from mfrec.exceptions import UnknownIdError

        queries = np.atleast_1d(np.asarray(queries)).tolist()
        deny = None if filter_ids is None else np.asarray(filter_ids).tolist()
        cand = None if allow is None else np.asarray(allow).tolist()
        method = self.model.similar_items_batch if kind == "item" else self.model.similar_users_batch
        try:
            frame = method(queries, k=N, candidates=cand, exclude=deny)
        except UnknownIdError as exc:
            raise IndexError(str(exc)) from exc
        groups = {q: g for q, g in frame.groupby(kind, sort=False)}
        out = []
        for q in queries:
            g = groups.get(q)
            ids = [] if g is None else g[f"similar_{kind}"].tolist()
            sims = [] if g is None else g["score"].tolist()
            self_ok = (cand is None or q in cand) and (deny is None or q not in deny)
            if self_ok:  # implicit's convention: the query itself first, cosine 1
                ids, sims = [q] + ids, [1.0] + sims
            out.append((np.asarray(ids[:N], dtype=np.int32), np.asarray(sims[:N], dtype=np.float32)))
        if not batch:
            return out[0]
        width = max(len(o[0]) for o in out)
        ids = np.full((len(out), width), -1, dtype=np.int32)
        sims = np.zeros((len(out), width), dtype=np.float32)
        for r, (i, v) in enumerate(out):
            ids[r, :len(i)], sims[r, :len(v)] = i, v
        return ids, sims

    def similar_items(self, itemid, N=10, recalculate_item=False, item_users=None, filter_items=None, items=None):
        return self._similar("item", itemid, N, filter_items, items, np.ndim(itemid) > 0)

    def similar_users(self, userid, N=10, filter_users=None, users=None, user_items=None):
        return self._similar("user", userid, N, filter_users, users, np.ndim(userid) > 0)

    def explain(self, userid, user_items, itemid, user_weights=None, N=10):
        frame = self.model.explain(userid, itemid)
        score = float(frame["contribution"].sum())
        top = list(zip(frame["item"].head(N).tolist(), frame["contribution"].head(N).tolist()))
        return score, top, None

    # ------------------------------------------------------------------ updates and files
    def partial_fit_users(self, userids, user_items):
        self.model.partial_fit_users(_rows_as_interactions(userids, user_items, self.alpha, users=True))

    def partial_fit_items(self, itemids, item_users):
        self.model.partial_fit_items(_rows_as_interactions(itemids, item_users, self.alpha, users=False))

    def save(self, file):
        buffer = io.BytesIO()
        self.model.save(buffer)
        (file.write if hasattr(file, "write") else Path(file).write_bytes)(buffer.getvalue())

    @classmethod
    def load(cls, file):
        import mfrec

        data = file.read() if hasattr(file, "read") else Path(file).read_bytes()
        adapter = cls()
        adapter.model = mfrec.load(io.BytesIO(data))
        return adapter

    def to_cpu(self):
        return self


def _rows_as_interactions(ids, rows, alpha, users):
    """Each id's complete row (given in ``rows``, one per id) as mfrec Interactions in external ids."""
    import pandas as pd

    from mfrec import Interactions

    rows = sp.csr_matrix(rows)
    frames = []
    for r, key in enumerate(np.asarray(ids).tolist()):
        row = rows[r]
        other = row.indices.tolist()
        frames.append(pd.DataFrame({"user": [key] * len(other) if users else other,
                                    "item": other if users else [key] * len(other),
                                    "value": (row.data * alpha).tolist()}))
    return Interactions.from_frame(pd.concat(frames, ignore_index=True), value="value")


CONFTEST = '''\
import sys
sys.path.insert(0, {here!r})
import implicit.als, implicit.cpu.als
from implicit_suite import MfrecAsImplicitALS
implicit.als.AlternatingLeastSquares = MfrecAsImplicitALS
implicit.cpu.als.AlternatingLeastSquares = MfrecAsImplicitALS
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tests", required=True, help="implicit's tests/ folder (a checkout of its repository)")
    parser.add_argument("pytest_args", nargs="*")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dest = Path(tmp) / "tests"
        shutil.copytree(args.tests, dest)
        (dest / "conftest.py").write_text(CONFTEST.format(here=str(Path(__file__).resolve().parent)))
        cmd = [sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", "-p", "no:randomly",
               "als_test.py", *args.pytest_args]
        sys.exit(subprocess.run(cmd, cwd=dest).returncode)


if __name__ == "__main__":
    main()
