"""models/base.py: the shared recommend/similar plumbing against numpy references, on toy models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from model_conformance import RecommenderConformance, planted_interactions

from mfrec import Interactions
from mfrec.exceptions import InvalidParameterError, NotFittedError, UnknownIdError
from mfrec.models.base import FactorModel, Recommender, clone
from mfrec.persist import register_model


@register_model
class ToyFactors(FactorModel):
    """Random factors (or given ones); fold-in by ridge regression on the item factors."""

    def __init__(self, factors: int = 3, regularization: float = 0.1, seed: int | None = 0) -> None:
        self.factors = factors
        self.regularization = regularization
        self.seed = seed

    def fit(self, interactions: Interactions, user_factors=None, item_factors=None) -> ToyFactors:
        rng = np.random.default_rng(self.seed)
        self.interactions_ = interactions
        self.user_factors_ = (
            user_factors if user_factors is not None
            else rng.standard_normal((interactions.n_users, self.factors)).astype(np.float32)
        )
        self.item_factors_ = (
            item_factors if item_factors is not None
            else rng.standard_normal((interactions.n_items, self.factors)).astype(np.float32)
        )
        return self

    def fold_in_user(self, items, values=None):
        idx, vals = self._fold_in_inputs(items, values)
        Y = self.item_factors_[idx].astype(np.float64)
        lhs = Y.T @ Y + self.regularization * np.eye(Y.shape[1])
        return np.linalg.solve(lhs, Y.T @ vals)


class DenseScores(Recommender):
    """Only ``_scores``: exercises the generic (non-factor) paths of the base."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def fit(self, interactions: Interactions, user_factors=None, item_factors=None) -> DenseScores:
        self.interactions_ = interactions
        self.U, self.V = user_factors, item_factors
        return self

    def _scores(self, user_idx):
        return (self.U[np.asarray(user_idx)] @ self.V.T).astype(np.float32)


class ToyWithKwargs(Recommender):
    def __init__(self, **kwargs) -> None:
        self.kwargs = kwargs


class TestToyFactorsConformance(RecommenderConformance):
    def make_model(self):
        return ToyFactors(factors=4, seed=1)


@pytest.fixture(scope="module")
def data() -> Interactions:
    return planted_interactions(seed=11, n_users=12, n_items=15)


def reference_recommend(U, V, user, k, seen=(), allowed=None):
    s = U[user].astype(np.float64) @ V.T.astype(np.float64)
    cand = np.ones(len(V), bool)
    cand[list(seen)] = False
    if allowed is not None:
        cand &= allowed
    idx = np.flatnonzero(cand)
    order = np.lexsort((idx, -s[idx]))
    return idx[order][:k]


# ---------------------------------------------------------------------------------------------- recommend
@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 20), st.booleans())
def test_recommend_matches_reference(seed, k, use_lists):
    data = planted_interactions(seed=5, n_users=8, n_items=12)
    rng = np.random.default_rng(seed)
    U = rng.integers(-2, 3, (8, 2)).astype(np.float32)  # small integers: exact scores, plenty of ties
    V = rng.integers(-2, 3, (12, 2)).astype(np.float32)
    model = ToyFactors().fit(data, U, V)
    allow = rng.choice(12, 9, replace=False) if use_lists else None
    deny = rng.choice(12, 2, replace=False) if use_lists else None
    allowed = None
    if use_lists:
        allowed = np.zeros(12, bool)
        allowed[allow] = True
        allowed[deny] = False
    for user in range(8):
        seen = data.matrix[user].indices
        frame = model.recommend(
            data.user_ids[user], k=k,
            items=None if allow is None else data.item_ids[allow],
            exclude=None if deny is None else data.item_ids[deny],
        )
        expected = reference_recommend(U, V, user, k, seen, allowed)
        assert frame["item"].tolist() == data.item_ids[expected].tolist()
        np.testing.assert_allclose(frame["score"], U[user] @ V[expected].T)


def test_generic_scores_path_equals_factor_path(data):
    rng = np.random.default_rng(3)
    U = rng.standard_normal((data.n_users, 3)).astype(np.float32)
    V = rng.standard_normal((data.n_items, 3)).astype(np.float32)
    factor = ToyFactors().fit(data, U, V)
    generic = DenseScores().fit(data, U, V)
    generic._block_bytes = 4 * data.n_items * 2  # two users per block: several blocks
    factor._block_bytes = 4 * data.n_items * 3
    users = data.user_ids.tolist()
    a = factor.recommend_batch(users, k=5, exclude=[data.item_ids[0]])
    b = generic.recommend_batch(users, k=5, exclude=[data.item_ids[0]])
    assert a["item"].tolist() == b["item"].tolist()
    np.testing.assert_allclose(a["score"], b["score"], rtol=1e-5)
    item = data.item_ids[4]
    ra, rb = factor.recommend_users(item, k=6), generic.recommend_users(item, k=6)
    assert ra["user"].tolist() == rb["user"].tolist()
    s = U @ V[4]
    assert ra["user"].tolist() == data.user_ids[np.argsort(-s, kind="stable")[:6]].tolist()
    with pytest.raises(NotImplementedError, match="similarity"):
        generic.similar_items(item)
    with pytest.raises(NotImplementedError, match="fold"):
        generic.recommend_new_user([item])
    with pytest.raises(NotImplementedError, match="predict"):
        generic.predict([users[0]], [item])


def test_recommend_batch_long_form(data):
    model = ToyFactors().fit(data)
    users = [data.user_ids[3], data.user_ids[0]]
    frame = model.recommend_batch(users, k=3)
    assert frame.dtypes["score"] == np.float64 and frame.dtypes["rank"] == np.int64
    assert frame["rank"].tolist() == [1, 2, 3, 1, 2, 3]
    empty = model.recommend_batch([], k=3)
    assert list(empty.columns) == ["user", "item", "score", "rank"] and len(empty) == 0
    # more wanted than there are unseen items: each user gets only its candidates
    big = model.recommend_batch(users, k=1000)
    sizes = big.groupby("user", sort=False).size().tolist()
    assert sizes == [data.n_items - data.matrix[data.user_index(u)].nnz for u in users]


def test_single_string_is_one_id():
    frame = pd.DataFrame({"user": ["a", "a", "b"], "item": ["xy", "z", "xy"]})
    data = Interactions.from_frame(frame)
    model = ToyFactors().fit(data)
    assert model.recommend("b", items="z")["item"].tolist() == ["z"]
    assert model.recommend("b", exclude="z", exclude_seen=False)["item"].tolist() == ["xy"]


def test_topk_exclusion_forms(data):
    model = ToyFactors().fit(data)
    users = np.array([0, 1])
    dense = np.zeros((2, data.n_items), bool)
    dense[0, [3, 1]] = True
    unsorted = sp.csr_matrix((np.ones(2), np.array([3, 1]), np.array([0, 2, 2])), shape=(2, data.n_items))
    unsorted.has_sorted_indices = False
    a, _ = model._topk(users, data.n_items, exclude=dense)
    b, _ = model._topk(users, data.n_items, exclude=unsorted)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (2, data.n_items)
    assert {1, 3}.isdisjoint(a[0][a[0] >= 0].tolist()) and (a[0] == -1).sum() == 2
    with pytest.raises(InvalidParameterError, match="shape"):
        model._topk(users, 3, exclude=sp.csr_matrix((3, data.n_items)))


def test_ties_by_lower_item_index(data):
    ones = np.ones((data.n_users, 2), np.float32)
    model = ToyFactors().fit(data, ones, np.ones((data.n_items, 2), np.float32))
    frame = model.recommend(data.user_ids[0], k=4, exclude_seen=False)
    assert frame["item"].tolist() == data.item_ids[:4].tolist()


# ---------------------------------------------------------------------------------------------- similar
def test_similar_items_is_cosine(data):
    from sklearn.metrics.pairwise import cosine_similarity

    model = ToyFactors(factors=5).fit(data)
    cos = cosine_similarity(model.item_factors_)
    for q in (0, 6):
        frame = model.similar_items(data.item_ids[q], k=4)
        order = [j for j in np.lexsort((np.arange(data.n_items), -cos[q])) if j != q][:4]
        assert frame["item"].tolist() == data.item_ids[order].tolist()
        np.testing.assert_allclose(frame["score"], cos[q, order], atol=1e-6)
    ucos = cosine_similarity(model.user_factors_)
    frame = model.similar_users(data.user_ids[2], k=3)
    order = [j for j in np.argsort(-ucos[2], kind="stable") if j != 2][:3]
    assert frame["user"].tolist() == data.user_ids[order].tolist()


def test_zero_vectors_have_cosine_zero(data):
    V = np.random.default_rng(0).standard_normal((data.n_items, 2)).astype(np.float32)
    V[0] = 0
    model = ToyFactors().fit(data, None, V)
    frame = model.similar_items(data.item_ids[0], k=3)
    assert (frame["score"] == 0).all() and np.isfinite(frame["score"]).all()


def test_norm_cache_follows_the_factor_arrays(data):
    model = ToyFactors(seed=1).fit(data)
    first = model.similar_items(data.item_ids[0], k=5)
    _, norms = model._similarity_norms("item")
    _, again = model._similarity_norms("item")
    assert norms is again  # cached while the factor array is the same object
    model.item_factors_ = model.item_factors_[::-1].copy()  # new array: the cache must not be reused
    fresh = ToyFactors().fit(data, model.user_factors_, model.item_factors_)
    pd.testing.assert_frame_equal(model.similar_items(data.item_ids[0], k=5), fresh.similar_items(data.item_ids[0], k=5))
    # refitting in place (same array objects, new values) also clears the cache
    before = model.item_factors_
    model.fit(data, model.user_factors_, before)
    before *= -1.0
    before[0] *= 3.0
    model.fit(data, model.user_factors_, before)
    fresh = ToyFactors().fit(data, model.user_factors_, before.copy())
    n = data.n_items
    pd.testing.assert_frame_equal(model.similar_items(data.item_ids[1], k=n), fresh.similar_items(data.item_ids[1], k=n))
    np.testing.assert_allclose(model._similarity_norms("item")[1], np.linalg.norm(before, axis=1), rtol=1e-6)
    assert len(first) == 5


# ---------------------------------------------------------------------------------------------- fold-in
def test_recommend_new_user_scores_folded_vector(data):
    model = ToyFactors(factors=3, regularization=0.5).fit(data)
    items = [data.item_ids[1], data.item_ids[4]]
    vec = model.fold_in_user(items, [2.0, 1.0])
    Y = model.item_factors_[[1, 4]].astype(np.float64)
    np.testing.assert_allclose(vec, np.linalg.solve(Y.T @ Y + 0.5 * np.eye(3), Y.T @ [2.0, 1.0]), rtol=1e-6)
    frame = model.recommend_new_user(items, [2.0, 1.0], k=100)
    s = model.item_factors_ @ vec.astype(np.float32)
    expected = [j for j in np.argsort(-s, kind="stable") if j not in (1, 4)]
    assert frame["item"].tolist() == data.item_ids[expected].tolist()


# ---------------------------------------------------------------------------------------------- params
def test_params_repr_clone():
    model = ToyFactors(factors=8)
    assert model.get_params() == {"factors": 8, "regularization": 0.1, "seed": 0}
    assert repr(model) == "ToyFactors(factors=8)"
    assert repr(ToyFactors()) == "ToyFactors()"
    assert model.set_params(seed=5, regularization=1.0) is model
    assert repr(model) == "ToyFactors(factors=8, regularization=1.0, seed=5)"
    twin = clone(model, factors=2)
    assert twin.get_params() == {"factors": 2, "regularization": 1.0, "seed": 5}
    with pytest.raises(InvalidParameterError, match="valid parameters: factors, regularization, seed"):
        clone(model, rank=2)
    with pytest.raises(TypeError, match="kwargs"):
        ToyWithKwargs(a=1).get_params()


def test_not_fitted_and_unknown_ids(data):
    model = ToyFactors()
    with pytest.raises(NotFittedError, match="ToyFactors is not fitted"):
        model.recommend_new_user([1])
    model.fit(data)
    with pytest.raises(UnknownIdError) as info:
        model.recommend("stranger")
    assert isinstance(info.value, KeyError) and "'stranger'" in str(info.value)
    with pytest.raises(KeyError, match="items"):
        model.recommend(data.user_ids[0], items=["nope"])


def test_scikit_learn_clone_and_params_work_on_every_model():
    """mfrec keeps its own get_params/set_params (importing sklearn.base costs ~1.9 s, docs/architecture.md), with
    scikit-learn's contract: sklearn.base.clone copies the parameters into a new unfitted model."""
    import sklearn.base

    import mfrec

    for cls in (mfrec.ImplicitALS, mfrec.ExplicitALS, mfrec.SGDFactorization, mfrec.Biases, mfrec.HybridALS):
        model = cls()
        twin = sklearn.base.clone(model)
        assert type(twin) is cls and twin is not model
        assert twin.get_params() == model.get_params()
        assert set(model.get_params()) == set(inspect_params(cls))
        assert twin.set_params(**model.get_params()) is twin


def inspect_params(cls) -> list[str]:
    import inspect

    return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
