"""HybridALS: reductions (plain ALS, attribute regression), kernels against numpy, cold start, conformance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from model_conformance import N_ITEMS, N_USERS, RecommenderConformance, planted_interactions
from test_linear_baselines import item_frame, user_frame

from mfrec.data.attributes import Attributes
from mfrec.exceptions import InvalidDataError, InvalidParameterError
from mfrec.kernels.als_implicit import half_step
from mfrec.kernels.hybrid import attribute_regression, neighbor_map, prior_half_step
from mfrec.models.content import HybridALS
from mfrec.models.implicit import ImplicitALS
from mfrec.persist import register_model


@register_model
class _HybridAttrs(HybridALS):
    """HybridALS fitted with the planted attribute tables (for the conformance suite's fit(data))."""

    def fit(self, interactions, user_attributes=None, item_attributes=None):
        return super().fit(interactions, user_frame(), item_frame())


class TestHybridImplicitConformance(RecommenderConformance):
    def make_model(self):
        return _HybridAttrs(factors=4, iterations=4, seed=0)


class TestHybridExplicitConformance(RecommenderConformance):
    predicts = True

    def make_model(self):
        return _HybridAttrs(factors=4, iterations=4, feedback="explicit", regularization=1.0, seed=0)


class TestHybridNoFreeConformance(RecommenderConformance):
    def make_model(self):
        return _HybridAttrs(factors=3, iterations=3, free_factors=False, seed=0)


def one_hot_frame(ids, name: str) -> Attributes:
    frame = pd.DataFrame({"id_": [str(x) for x in ids]}, index=pd.Index(ids, name=name))
    return Attributes.from_frame(frame, categorical="id_")


def _csr_parts(data, alpha):
    m = data.matrix
    return m.indptr, m.indices, 1.0 + alpha * m.data.astype(np.float64), np.ones(m.nnz)


# ---------------------------------------------------------------------------------------------- kernels
def test_prior_kernel_matches_numpy_and_implicit_half_step():
    data = planted_interactions(seed=21)
    g = np.random.default_rng(0)
    d, lam, c0, alpha = 5, 0.3, 0.7, 2.0
    Y = g.normal(size=(data.n_items, d))
    prior = g.normal(size=(data.n_users, d))
    ip, ix, w, t = _csr_parts(data, alpha)
    X = np.zeros((data.n_users, d))
    assert not prior_half_step(ip, ix, w, t, Y, X, prior, c0=c0, reg=lam).any()
    R = data.matrix.toarray()
    P = np.zeros(R.shape)
    rows, cols, _ = data.coo()
    P[rows, cols] = 1
    C = np.where(P > 0, 1 + alpha * R, c0)
    for u in range(data.n_users):
        ref = np.linalg.solve(Y.T @ (C[u][:, None] * Y) + lam * np.eye(d), Y.T @ (C[u] * P[u]) + lam * prior[u])
        np.testing.assert_allclose(X[u], ref, rtol=1e-7, atol=1e-9)
    # zero prior: the implicit ALS half-step of mfrec.kernels.als_implicit
    X0 = np.zeros_like(X)
    prior_half_step(ip, ix, w, t, Y, X0, np.zeros_like(prior), c0=c0, reg=lam)
    X1 = np.zeros_like(X)
    half_step(ip, ix, w, t, Y, X1, c0=c0, reg=lam, solver="cholesky")
    np.testing.assert_allclose(X0, X1, rtol=1e-8, atol=1e-10)


def test_attribute_regression_matches_dense_weighted_ridge():
    data = planted_interactions(seed=22)
    g = np.random.default_rng(1)
    d, F, lam_a, c0 = 3, 4, 0.5, 1.0
    A = g.normal(size=(data.n_users, F))
    Y = g.normal(size=(data.n_items, d))
    ip, ix, w, t = _csr_parts(data, 1.5)
    W, its = attribute_regression(ip, ix, w, t, A, Y, np.zeros((F, d)), c0=c0, reg=lam_a)
    assert its <= F * d + 5
    R = data.matrix.toarray()
    P = np.zeros(R.shape)
    rows, cols, _ = data.coo()
    P[rows, cols] = 1
    C = np.where(P > 0, 1 + 1.5 * R, c0)
    # features of pair (u, i): vec(a_u y_i^T) so that a_u^T W y_i = <vec(W), vec(a_u y_i^T)>
    Z = np.einsum("uf,id->uifd", A, Y).reshape(-1, F * d)
    c, p = C.ravel(), P.ravel()
    ref = np.linalg.solve(Z.T @ (c[:, None] * Z) + lam_a * np.eye(F * d), Z.T @ (c * p)).reshape(F, d)
    np.testing.assert_allclose(W, ref, rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------------------------------------- reductions
@pytest.mark.parametrize("attributes", ["none", "zero"])
def test_zero_attribute_weight_is_plain_implicit_als(attributes):
    data = planted_interactions(seed=23)
    kw = dict(factors=4, regularization=0.2, alpha=3.0, iterations=4, seed=7, dtype="float64")
    als = ImplicitALS(solver="cholesky", **kw).fit(data)
    if attributes == "none":
        hyb = HybridALS(**kw).fit(data)
    else:  # attribute vectors multiplied by 0: the attribute maps can contribute nothing
        users = user_frame().assign(age=0.0)[["age"]]
        items = item_frame().assign(year=0.0)[["year"]]
        hyb = HybridALS(**kw).fit(data, users, items)
        np.testing.assert_allclose(hyb.user_attribute_map_, 0.0, atol=1e-12)
    np.testing.assert_allclose(hyb.user_factors_, als.user_factors_, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(hyb.item_factors_, als.item_factors_, rtol=1e-6, atol=1e-8)
    # and the same recommendations
    users = data.user_ids[:6].tolist()
    a, b = als.recommend_batch(users, k=5), hyb.recommend_batch(users, k=5)
    assert a["item"].tolist() == b["item"].tolist()


def test_no_free_factors_is_attribute_regression():
    """x_u = W^T a_u with W the weighted ridge regression of the feedback on a_u (x) y_i (final Y fixed)."""
    data = planted_interactions(seed=24)
    lam_a, alpha = 0.8, 1.0
    model = HybridALS(factors=3, iterations=6, free_factors=False, attribute_regularization=lam_a, alpha=alpha,
                      dtype="float64").fit(data, user_frame(), item_frame())
    A = model.user_features_.astype(np.float64)
    B = model.item_features_.astype(np.float64)
    Y = model.item_factors_
    np.testing.assert_allclose(Y, B @ model.item_attribute_map_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model.user_factors_, A @ model.user_attribute_map_, rtol=1e-10, atol=1e-12)
    R = data.matrix.toarray()
    P = np.zeros(R.shape)
    rows, cols, _ = data.coo()
    P[rows, cols] = 1
    C = np.where(P > 0, 1 + alpha * R, 1.0)
    F, d = A.shape[1], Y.shape[1]
    Z = np.einsum("uf,id->uifd", A, Y).reshape(-1, F * d)
    c, p = C.ravel(), P.ravel()
    W = np.linalg.solve(Z.T @ (c[:, None] * Z) + lam_a * np.eye(F * d), Z.T @ (c * p)).reshape(F, d)
    np.testing.assert_allclose(model.user_attribute_map_, W, rtol=1e-5, atol=1e-7)


def test_no_free_factors_with_one_hot_ids_is_plain_als():
    data = planted_interactions(seed=25)
    users = one_hot_frame(list(data.user_ids), "user")
    items = one_hot_frame(list(data.item_ids), "item")
    lam = 0.4
    # one-hot attributes: x_u = W^T e_u is row u of W and the penalty is lam ||X||^2 + lam ||Y||^2, the plain
    # ALS objective; the user step then is the ALS user step (exactly, up to the CG tolerance)
    hyb = HybridALS(factors=3, iterations=3, free_factors=False, attribute_regularization=lam, seed=2,
                    dtype="float64").fit(data, users, items)
    # one ALS user step from the hybrid's final item factors must reproduce the hybrid's user factors
    Y = hyb.item_factors_
    ip, ix, w, t = _csr_parts(data, 1.0)
    X = np.zeros((data.n_users, 3))
    half_step(ip, ix, w, t, Y, X, c0=1.0, reg=lam, solver="cholesky")
    np.testing.assert_allclose(hyb.user_factors_, X, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------------------------- behaviour
def test_loss_decreases_monotonically():
    data = planted_interactions(seed=26)
    for kw in ({}, {"feedback": "explicit", "regularization": 1.0}, {"free_factors": False}):
        model = HybridALS(factors=4, iterations=8, dtype="float64", **kw).fit(data, user_frame(), item_frame())
        losses = np.array([h["loss"] for h in model.history_])
        assert np.all(np.diff(losses) <= 1e-8 * np.abs(losses[:-1])), (kw, losses)


def test_cold_users_and_items_every_scenario():
    data = planted_interactions(seed=27)
    users, items = user_frame(N_USERS + 3), item_frame(N_ITEMS + 5)
    cold_u, cold_i = ["u30", "u31", "u32"], [140, 141, 142, 143, 144]
    # cold_map="linear": cold factors are the fitted linear maps of their attributes
    lin = HybridALS(factors=4, iterations=5, cold_map="linear").fit(data, users, items)
    ui, ii = lin.interactions_.user_index(cold_u), lin.interactions_.item_index(cold_i)
    np.testing.assert_allclose(lin.user_factors_[ui], lin.user_features_[ui] @ lin.user_attribute_map_,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(lin.item_factors_[ii], lin.item_features_[ii] @ lin.item_attribute_map_,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        lin.attribute_factors(item_attributes=lin.item_features_[ii]), lin.item_factors_[ii], rtol=1e-5
    )
    # the default neighbour map: kernel-weighted mean of the nearest warm ids' factors (dense reference),
    # warm factors identical to the linear fit's (the cold map runs after the fit)
    model = HybridALS(factors=4, iterations=5, neighbors=7, bandwidth=0.5).fit(data, users, items)
    inter = model.interactions_
    assert inter.n_users == N_USERS + 3 and inter.n_items == N_ITEMS + 5 and inter.nnz == data.nnz
    warm_i = np.setdiff1d(np.arange(inter.n_items), ii)
    np.testing.assert_array_equal(model.item_factors_[warm_i], lin.item_factors_[warm_i])
    for rows, feats, F in ((ui, model.user_features_, model.user_factors_),
                           (ii, model.item_features_, model.item_factors_)):
        warm = np.setdiff1d(np.arange(len(F)), rows)
        expect = _knn_reference(feats[rows].astype(np.float64), feats[warm].astype(np.float64),
                                F[warm].astype(np.float64), 7, 0.5)
        np.testing.assert_allclose(F[rows], expect, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        model.attribute_factors(item_attributes=model.item_features_[ii]), model.item_factors_[ii], rtol=1e-5
    )
    # items for a cold user, cold items for a warm user, users for a cold item, neighbours of cold ids
    assert len(model.recommend("u31", k=5)) == 5
    assert set(model.recommend("u00", k=5, items=cold_i)["item"]) == set(cold_i)
    assert len(model.recommend_users(142, k=4)) == 4
    assert len(model.similar_items(143, k=4)) == 4
    assert len(model.similar_users("u32", k=4)) == 4
    # two cold users with the same attributes are twins; with different attributes they differ
    twins = users.copy()
    twins.loc["u31"] = twins.loc["u30"]
    tw = HybridALS(factors=4, iterations=5).fit(data, twins, items)
    pd.testing.assert_frame_equal(tw.recommend("u30", k=5), tw.recommend("u31", k=5))
    assert len(model.predict(["u30", "u00"], [140, 100])) == 2


def _knn_reference(query, reference, values, k, h):
    """Brute force: sort all distances, Gaussian weights on the k nearest, weighted mean."""
    out = np.empty((len(query), values.shape[1]))
    for q in range(len(query)):
        dist = ((reference - query[q]) ** 2).sum(axis=1)
        near = np.argsort(dist, kind="stable")[:k]
        w = np.exp(-dist[near] / h) if np.isfinite(h) else np.ones(len(near))
        out[q] = (w[:, None] * values[near]).sum(axis=0) / w.sum()
    return out


@settings(max_examples=40, deadline=None)
@given(n_query=st.integers(1, 9), n_ref=st.integers(1, 12), k=st.integers(1, 15),
       h=st.sampled_from([0.1, 1.0, 10.0, np.inf]), block=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_neighbor_map_matches_brute_force(n_query, n_ref, k, h, block, seed):
    g = np.random.default_rng(seed)
    ref = g.normal(size=(n_ref, 3))
    query = g.normal(size=(n_query, 3))
    vals = g.normal(size=(n_ref, 2))
    got = neighbor_map(query, ref, vals, k=k, bandwidth=h, block=block)
    np.testing.assert_allclose(got, _knn_reference(query, ref, vals, min(k, n_ref), h), rtol=1e-7, atol=1e-9)


def test_neighbor_map_far_queries_do_not_underflow():
    ref = np.array([[0.0], [1.0], [3.0]])
    vals = np.array([[1.0], [2.0], [4.0]])
    # exp(-1e6 / 0.01) underflows to 0 for every neighbour; shifting by the nearest distance keeps the weights
    got = neighbor_map(np.array([[1000.0]]), ref, vals, k=2, bandwidth=0.01)
    np.testing.assert_allclose(got, [[4.0]])
    # an exact copy of a reference row, tiny bandwidth: its own value
    np.testing.assert_allclose(neighbor_map(ref[1:2], ref, vals, k=3, bandwidth=1e-6), [[2.0]])


def test_cold_map_parameters_are_validated():
    data = planted_interactions(seed=29)
    for kw, name in (({"cold_map": "knn"}, "cold_map"), ({"neighbors": 0}, "neighbors"),
                     ({"bandwidth": 0.0}, "bandwidth")):
        with pytest.raises(InvalidParameterError, match=name):
            HybridALS(factors=2, iterations=1, **kw).fit(data, item_attributes=item_frame())


def test_cold_item_ranking_beats_chance_on_planted_attributes():
    """Items whose attributes carry their planted factors: the hybrid ranks held-out items far above chance."""
    g = np.random.default_rng(3)
    n_u, n_i, k = 80, 120, 3
    Xt, Yt = g.normal(size=(n_u, k)), g.normal(size=(n_i, k))
    S = Xt @ Yt.T
    obs = S > 1.0
    cold = np.arange(100, 120)
    rows, cols = np.nonzero(obs[:, :100])
    from mfrec import Interactions

    train = Interactions.from_frame(pd.DataFrame({"user": rows, "item": cols}))
    items = pd.DataFrame(Yt + 0.1 * g.normal(size=Yt.shape), columns=["f0", "f1", "f2"],
                         index=pd.Index(np.arange(n_i), name="item"))
    model = HybridALS(factors=6, iterations=8, regularization=0.5, attribute_regularization=0.1).fit(
        train, item_attributes=items
    )
    hits = 0
    for u in range(n_u):
        truth = set(cold[obs[u, cold]].tolist())
        if truth:
            top = model.recommend(u, k=3, items=cold.tolist())["item"].tolist()
            hits += len(truth & set(top)) / min(3, len(truth))
    users_with_truth = sum(1 for u in range(n_u) if obs[u, cold].any())
    assert hits / users_with_truth > 0.6  # random ranking scores ~0.2


def test_validation_errors():
    data = planted_interactions(seed=28)
    with pytest.raises(InvalidParameterError, match="free_factors=False needs both"):
        HybridALS(free_factors=False).fit(data, item_attributes=item_frame())
    with pytest.raises(InvalidParameterError, match="attribute_regularization"):
        HybridALS(attribute_regularization=0).fit(data)
    with pytest.raises(InvalidParameterError, match="free_factors"):
        HybridALS(free_factors="yes").fit(data)
    neg = data.with_values(data.matrix.data - 3)
    with pytest.raises(InvalidDataError, match="user .*item .*implicit"):
        HybridALS().fit(neg)
    model = HybridALS(factors=2, iterations=1, feedback="explicit").fit(data)
    with pytest.raises(InvalidDataError, match="needs the values"):
        model.fold_in_user([100, 101])
    with pytest.raises(InvalidParameterError, match="without user attributes"):
        model.attribute_factors(user_attributes=np.ones((1, 2)))
