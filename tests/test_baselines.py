"""Popularity and Biases: against independent references, plus the conformance suite."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from model_conformance import RecommenderConformance, planted_interactions

from mfrec import Interactions
from mfrec.exceptions import InvalidDataError, InvalidParameterError
from mfrec.models.baselines import Biases, Popularity


class TestPopularityConformance(RecommenderConformance):
    def make_model(self):
        return Popularity()


class TestPopularitySumConformance(RecommenderConformance):
    def make_model(self):
        return Popularity(by="sum")


class TestBiasesConformance(RecommenderConformance):
    predicts = True

    def make_model(self):
        return Biases(regularization=3.0, iterations=50)


@pytest.fixture
def small() -> Interactions:
    frame = pd.DataFrame(
        {
            "user": ["ann", "ann", "bob", "bob", "bob", "cat", "cat", "dan"],
            "item": ["a", "b", "a", "c", "d", "a", "c", "e"],
            "plays": [5.0, 1.0, 2.0, 0.0, 7.0, 1.0, 1.0, 3.0],
        }
    )
    return Interactions.from_frame(frame, value="plays")


# ---------------------------------------------------------------------------------------------- Popularity
def test_popularity_count_and_sum(small):
    count = Popularity().fit(small)
    assert dict(zip(small.item_ids, count.item_popularity_)) == {"a": 3, "b": 1, "c": 2, "d": 1, "e": 1}
    # dan has seen only "e": a (3) > c (2) > b = d (1, tie broken by lower index: b before d)
    assert count.recommend("dan", k=3)["item"].tolist() == ["a", "c", "b"]
    summed = Popularity(by="sum").fit(small)
    assert dict(zip(small.item_ids, summed.item_popularity_)) == {"a": 8, "b": 1, "c": 1, "d": 7, "e": 3}
    assert summed.recommend("dan", k=2)["item"].tolist() == ["a", "d"]
    # the explicit zero (bob, c) is still an interaction: excluded from bob's list, counted by "count"
    assert "c" not in set(count.recommend("bob", k=10)["item"])


def test_popularity_recommend_users_ranks_activity(small):
    users = Popularity().fit(small).recommend_users("a", k=4)
    assert users["user"].tolist() == ["bob", "ann", "cat", "dan"]
    assert users["score"].tolist() == [3, 2, 2, 1]
    by_sum = Popularity(by="sum").fit(small).recommend_users("a", k=2, exclude_seen=True)
    assert by_sum["user"].tolist() == ["dan"]  # ann, bob, cat played "a"


def test_cooccurrence_cosine_against_dense_reference(small):
    model = Popularity().fit(small)
    B = np.zeros(small.shape)
    rows, cols, _ = small.coo()
    B[rows, cols] = 1.0  # binary pattern, explicit zeros included
    norms = np.linalg.norm(B, axis=0)
    cos = (B.T @ B) / np.outer(norms, norms)
    a = small.item_index("a")
    frame = model.similar_items("a", k=10)
    expected = {small.item_ids[j]: cos[a, j] for j in range(small.n_items) if j != a}
    got = dict(zip(frame["item"], frame["score"]))
    assert set(got) == set(expected)
    for item, value in got.items():
        assert value == pytest.approx(expected[item], abs=1e-6)
    assert frame["item"].tolist()[:2] == ["c", "b"]  # cos(a,c)=2/sqrt(6) > cos(a,b)=1/sqrt(3)=cos(a,d)


def test_popularity_new_user_and_bad_parameters(small):
    model = Popularity().fit(small)
    frame = model.recommend_new_user(["a"], k=2)
    assert frame["item"].tolist() == ["c", "b"]
    with pytest.raises(InvalidParameterError, match="by"):
        Popularity(by="median").fit(small)
    assert Popularity().fit(pd.DataFrame({"user": [1], "item": [2]})).interactions_.nnz == 1  # a frame is data
    with pytest.raises(InvalidDataError, match="Interactions"):
        Popularity().fit([(1, 2)])


# ---------------------------------------------------------------------------------------------- Biases
def dense_bias_solution(data: Interactions, lam: float) -> tuple[float, np.ndarray, np.ndarray]:
    """Solve the regularized least squares for [b_u; b_i] from its normal equations with lstsq."""
    rows, cols, vals = data.coo()
    mu = float(vals.astype(np.float64).mean())
    n_u, n_i = data.shape
    A = np.zeros((len(vals), n_u + n_i))
    A[np.arange(len(vals)), rows] = 1.0
    A[np.arange(len(vals)), n_u + cols] = 1.0
    lhs = A.T @ A + lam * np.eye(n_u + n_i)
    rhs = A.T @ (vals.astype(np.float64) - mu)
    x = np.linalg.lstsq(lhs, rhs, rcond=None)[0]
    return mu, x[:n_u], x[n_u:]


@pytest.mark.parametrize("lam", [0.5, 3.0, 25.0])
def test_biases_match_dense_least_squares(lam):
    data = planted_interactions(seed=3, n_users=25, n_items=30)
    model = Biases(regularization=lam, iterations=2000, tol=1e-12).fit(data)
    mu, b_u, b_i = dense_bias_solution(data, lam)
    assert model.global_mean_ == pytest.approx(mu)
    np.testing.assert_allclose(model.user_bias_, b_u, atol=1e-7)
    np.testing.assert_allclose(model.item_bias_, b_i, atol=1e-7)
    losses = [h["loss"] for h in model.history_]
    assert all(b <= a + 1e-9 for a, b in zip(losses, losses[1:])), "block coordinate descent never increases the loss"


def test_biases_predict_clips_and_falls_back(small):
    model = Biases(regularization=1.0, iterations=100).fit(small)
    mu = model.global_mean_
    b_u = dict(zip(small.user_ids, model.user_bias_))
    b_i = dict(zip(small.item_ids, model.item_bias_))
    pred = model.predict(["ann", "ghost", "ann", "ghost"], ["a", "a", "nothing", "nothing"])
    lo, hi = 0.0, 7.0
    expected = np.clip([mu + b_u["ann"] + b_i["a"], mu + b_i["a"], mu + b_u["ann"], mu], lo, hi)
    np.testing.assert_allclose(pred, expected)
    assert model.rating_range_ == [lo, hi]
    extreme = Biases(regularization=0.0, iterations=200).fit(small).predict(["bob"], ["d"])
    assert lo <= extreme[0] <= hi
    with pytest.raises(InvalidParameterError, match="item_ids"):
        model.predict(["ann"], ["a", "b"])


def test_biases_ranking_is_item_bias_order(small):
    model = Biases(regularization=1.0).fit(small)
    frame = model.recommend("dan", k=4)
    unseen = [i for i in small.item_ids if i != "e"]
    expected = sorted(unseen, key=lambda i: (-model.item_bias_[small.item_index(i)], small.item_index(i)))
    assert frame["item"].tolist() == expected
    u = small.user_index("dan")
    raw = [model.global_mean_ + model.user_bias_[u] + model.item_bias_[small.item_index(i)] for i in frame["item"]]
    np.testing.assert_allclose(frame["score"], raw, rtol=1e-6)  # ranking scores are the unclipped predictions


def test_biases_fold_in_matches_closed_form(small):
    model = Biases(regularization=2.0).fit(small)
    vec = model.fold_in_user(["a", "d"], [4.0, 1.0])
    ia, id_ = small.item_index("a"), small.item_index("d")
    expected = ((4 - model.global_mean_ - model.item_bias_[ia]) + (1 - model.global_mean_ - model.item_bias_[id_])) / 4
    assert vec.shape == (1,) and vec[0] == pytest.approx(expected)
    frame = model.recommend_new_user(["a", "d"], [4.0, 1.0], k=10)
    assert set(frame["item"]) == {"b", "c", "e"}
    with pytest.raises(InvalidDataError, match="values"):
        model.recommend_new_user(["a", "d"], [4.0])
    with pytest.raises(InvalidDataError, match="more than once"):
        model.recommend_new_user(["a", "a"])


def test_biases_bad_parameters(small):
    with pytest.raises(InvalidParameterError, match="regularization must be >= 0"):
        Biases(regularization=-1).fit(small)
    with pytest.raises(InvalidParameterError, match="iterations must be >= 1"):
        Biases(iterations=0).fit(small)
