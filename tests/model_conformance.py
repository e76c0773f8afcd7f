"""One conformance suite every model mixes in (like implicit's RecommenderBaseTestMixin).

Usage, in a model's test file::

    from model_conformance import RecommenderConformance

    class TestImplicitALSConformance(RecommenderConformance):
        predicts = False                      # True for explicit models with predict()

        def make_model(self):
            return ImplicitALS(factors=4, iterations=5, seed=0)

The ``data`` fixture is a small synthetic Interactions planted from a rank-3 matrix: 30 users with string ids
``"u00".."u29"``, 40 items with int ids ``100..139``, ratings in 1..5, every user and item with at least two
interactions. The suite checks the public contract of :class:`mfrec.models.base.Recommender` only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from mfrec import Interactions
from mfrec.exceptions import InvalidParameterError, NotFittedError, UnknownIdError
from mfrec.models.base import clone

N_USERS, N_ITEMS, RANK = 30, 40, 3


def planted_interactions(seed: int = 7, n_users: int = N_USERS, n_items: int = N_ITEMS) -> Interactions:
    """Ratings 1..5 from a planted rank-3 matrix; each user rates items it likes more often."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_users, RANK))
    Y = rng.standard_normal((n_items, RANK))
    affinity = X @ Y.T
    z = (affinity - affinity.mean()) / affinity.std()
    observed = rng.random((n_users, n_items)) < 1 / (1 + np.exp(-(z - 0.8) * 2))
    # at least two interactions per user and per item
    for u in range(n_users):
        observed[u, rng.choice(n_items, 2, replace=False)] = True
    for i in range(n_items):
        observed[rng.choice(n_users, 2, replace=False), i] = True
    u, i = np.nonzero(observed)
    ratings = np.clip(np.round(3 + 1.2 * z[u, i] + rng.normal(0, 0.3, len(u))), 1, 5)
    frame = pd.DataFrame({"user": [f"u{x:02d}" for x in u], "item": 100 + i, "rating": ratings})
    return Interactions.from_frame(frame, value="rating")


class RecommenderConformance:
    """Mixin of conformance tests; subclasses define :meth:`make_model` (and maybe the flags)."""

    #: whether ``predict`` must work (explicit models)
    predicts: bool = False
    #: whether ``recommend_new_user`` / ``fold_in_user`` must work
    folds_in: bool = True
    #: whether the class is registered for mfrec.persist save/load
    persists: bool = True

    def make_model(self):
        raise NotImplementedError("subclasses return a fresh, unfitted model with a fixed seed")

    # ------------------------------------------------------------------ fixtures
    @pytest.fixture(scope="class")
    @classmethod
    def data(cls) -> Interactions:
        return planted_interactions()

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, data):
        return cls().make_model().fit(data)

    @staticmethod
    def _seen(data: Interactions, user) -> set:
        u = data.user_index(user)
        m = data.matrix
        return set(data.item_ids[m.indices[m.indptr[u] : m.indptr[u + 1]]].tolist())

    # ------------------------------------------------------------------ fit / fitted state
    def test_fit_returns_self(self, data):
        model = self.make_model()
        assert model.fit(data) is model
        assert model.interactions_ is not None

    def test_unfitted_model_raises_not_fitted(self):
        model = self.make_model()
        for call in (
            lambda: model.recommend("u00"),
            lambda: model.recommend_batch(["u00"]),
            lambda: model.recommend_users(100),
            lambda: model.similar_items(100),
            lambda: model.similar_users("u00"),
        ):
            with pytest.raises(NotFittedError, match=type(model).__name__):
                call()

    # ------------------------------------------------------------------ recommend
    def test_recommend_frame_sorted_unseen(self, fitted, data):
        for user in ("u00", "u07", "u29"):
            frame = fitted.recommend(user, k=5)
            assert list(frame.columns) == ["item", "score"]
            assert len(frame) == 5
            scores = frame["score"].to_numpy()
            assert np.isfinite(scores).all()
            assert (np.diff(scores) <= 0).all(), "scores must be sorted descending"
            assert frame["item"].is_unique
            assert set(frame["item"]).issubset(set(data.item_ids.tolist()))
            assert not set(frame["item"]) & self._seen(data, user), "seen items must be excluded"

    def test_recommend_scores_agree_with_scores_hook(self, fitted, data):
        frame = fitted.recommend("u03", k=8, exclude_seen=False)
        dense = fitted._scores(np.array([data.user_index("u03")]))
        assert dense.shape == (1, data.n_items)
        expected = dense[0, data.item_index(frame["item"].to_numpy())]
        np.testing.assert_allclose(frame["score"].to_numpy(), expected, rtol=1e-5, atol=1e-5)

    def test_exclude_seen_false_ranks_every_item(self, fitted, data):
        frame = fitted.recommend("u01", k=data.n_items + 10, exclude_seen=False)
        assert len(frame) == data.n_items
        seen_excluded = fitted.recommend("u01", k=data.n_items + 10)
        assert len(seen_excluded) == data.n_items - len(self._seen(data, "u01"))

    def test_allow_and_deny_lists(self, fitted, data):
        allow = data.item_ids[::3].tolist()
        frame = fitted.recommend("u02", k=50, items=allow, exclude_seen=False)
        assert set(frame["item"]) == set(allow)
        deny = data.item_ids[:10].tolist()
        frame = fitted.recommend("u02", k=50, exclude=deny, exclude_seen=False)
        assert not set(frame["item"]) & set(deny)
        assert len(frame) == data.n_items - 10
        both = fitted.recommend("u02", k=50, items=allow, exclude=allow[:2], exclude_seen=True)
        assert set(both["item"]) == set(allow[2:]) - self._seen(data, "u02")

    def test_unknown_ids_raise_key_error_naming_the_id(self, fitted):
        with pytest.raises(KeyError, match="no-such-user"):
            fitted.recommend("no-such-user")
        with pytest.raises(UnknownIdError, match="no-such-user"):
            fitted.recommend_batch(["u00", "no-such-user"])
        with pytest.raises(KeyError, match="99999"):
            fitted.recommend("u00", items=[100, 99999])
        with pytest.raises(KeyError, match="99999"):
            fitted.recommend("u00", exclude=[99999])
        with pytest.raises(KeyError, match="99999"):
            fitted.recommend_users(99999)
        with pytest.raises(KeyError, match="99999"):
            fitted.similar_items(99999)
        with pytest.raises(KeyError, match="nobody"):
            fitted.similar_users("nobody")

    def test_k_must_be_positive(self, fitted):
        for call in (fitted.recommend, fitted.similar_users):
            with pytest.raises(InvalidParameterError, match="k must be >= 1"):
                call("u00", k=0)
        with pytest.raises(InvalidParameterError, match="k"):
            fitted.recommend_users(100, k=-1)

    # ------------------------------------------------------------------ batch and hooks
    def test_recommend_batch_agrees_with_recommend(self, fitted, data):
        users = ["u05", "u00", "u17"]
        batch = fitted.recommend_batch(users, k=4)
        assert list(batch.columns) == ["user", "item", "score", "rank"]
        assert batch["user"].tolist() == [u for u in users for _ in range(4)]
        for user, group in batch.groupby("user", sort=False):
            single = fitted.recommend(user, k=4)
            assert group["item"].tolist() == single["item"].tolist()
            np.testing.assert_allclose(group["score"].to_numpy(), single["score"].to_numpy(), rtol=1e-6)
            assert group["rank"].tolist() == [1, 2, 3, 4]

    def test_topk_hook_matches_recommend(self, fitted, data):
        users = np.array([data.user_index(u) for u in ("u04", "u11")])
        seen = data.matrix[users]
        items, scores = fitted._topk(users, 6, exclude=seen)
        assert items.dtype == np.int32 and scores.dtype == np.float32 and items.shape == (2, 6)
        for row, user in enumerate(("u04", "u11")):
            frame = fitted.recommend(user, k=6)
            assert data.item_ids[items[row]].tolist() == frame["item"].tolist()
        allowed = np.zeros(data.n_items, bool)
        allowed[:3] = True
        items, _ = fitted._topk(users, 10, allowed=allowed)
        assert items.shape == (2, 3) and set(items.ravel().tolist()) == {0, 1, 2}
        empty = sp.csr_matrix((2, data.n_items), dtype=np.float32)
        items, _ = fitted._topk(users, 3, exclude=empty)
        assert items.shape == (2, 3)

    # ------------------------------------------------------------------ other scenarios
    def test_recommend_users(self, fitted, data):
        frame = fitted.recommend_users(105, k=7)
        assert list(frame.columns) == ["user", "score"]
        assert len(frame) == 7 and frame["user"].is_unique
        assert (np.diff(frame["score"].to_numpy()) <= 0).all()
        assert set(frame["user"]).issubset(set(data.user_ids.tolist()))
        unseen = fitted.recommend_users(105, k=data.n_users, exclude_seen=True)
        raters = set(data.user_ids[data.matrix[:, data.item_index(105)].nonzero()[0]].tolist())
        assert not set(unseen["user"]) & raters
        assert len(unseen) == data.n_users - len(raters)

    @pytest.mark.parametrize("kind", ["item", "user"])
    def test_similar_excludes_query(self, fitted, data, kind):
        ids = data.item_ids if kind == "item" else data.user_ids
        method = fitted.similar_items if kind == "item" else fitted.similar_users
        for query in ids[[0, 7, len(ids) - 1]].tolist():
            frame = method(query, k=6)
            assert list(frame.columns) == [kind, "score"]
            assert len(frame) == 6
            assert query not in set(frame[kind])
            scores = frame["score"].to_numpy()
            assert (np.diff(scores) <= 0).all()
            assert (np.abs(scores) <= 1 + 1e-5).all(), "cosine similarities lie in [-1, 1]"
        everything = method(ids[0], k=len(ids) + 5)
        assert len(everything) == len(ids) - 1

    def test_recommend_new_user(self, fitted, data):
        if not self.folds_in:
            pytest.skip("model does not fold in new users")
        items = [100, 101, 102]
        frame = fitted.recommend_new_user(items, values=[5.0, 4.0, 1.0], k=5)
        assert list(frame.columns) == ["item", "score"]
        assert len(frame) == 5
        assert not set(frame["item"]) & set(items)
        assert (np.diff(frame["score"].to_numpy()) <= 0).all()
        with pytest.raises(KeyError, match="99999"):
            fitted.recommend_new_user([100, 99999])

    def test_predict(self, fitted, data):
        if not self.predicts:
            pytest.skip("model does not predict values")
        frame = data.to_frame().iloc[:20]
        pred = fitted.predict(frame["user"], frame["item"])
        assert pred.shape == (20,) and np.isfinite(pred).all()

    # ------------------------------------------------------------------ parameters, seeds, files
    def test_get_params_clone_round_trip(self, fitted):
        params = fitted.get_params()
        assert params, "a model has at least one hyperparameter"
        twin = clone(fitted)
        assert type(twin) is type(fitted) and twin is not fitted
        assert twin.get_params() == params
        assert getattr(twin, "interactions_", None) is None
        with pytest.raises(NotFittedError):
            twin.recommend("u00")
        name = sorted(params)[0]
        assert twin.set_params(**{name: params[name]}) is twin
        with pytest.raises(InvalidParameterError, match="no_such_param"):
            twin.set_params(no_such_param=1)
        assert repr(fitted).startswith(type(fitted).__name__ + "(")

    def test_same_seed_same_recommendations(self, data):
        users = data.user_ids[:10].tolist()
        a = self.make_model().fit(data).recommend_batch(users, k=5)
        b = self.make_model().fit(data).recommend_batch(users, k=5)
        pd.testing.assert_frame_equal(a, b)

    def test_save_load_round_trip(self, fitted, data, tmp_path):
        if not self.persists:
            pytest.skip("model is not registered for persistence")
        path = fitted.save(tmp_path / "model.mfrec")
        loaded = type(fitted).load(path)
        users = data.user_ids[:5].tolist()
        pd.testing.assert_frame_equal(loaded.recommend_batch(users, k=5), fitted.recommend_batch(users, k=5))
        pd.testing.assert_frame_equal(loaded.similar_items(100, k=5), fitted.similar_items(100, k=5))
