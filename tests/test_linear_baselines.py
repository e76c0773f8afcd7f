"""GlobalLinear and PureSVD: closed forms against numpy, non-personalization, conformance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from model_conformance import N_ITEMS, N_USERS, RecommenderConformance, planted_interactions

from mfrec import Interactions
from mfrec.exceptions import InvalidDataError, InvalidParameterError
from mfrec.models.content import ContentBased, HybridALS
from mfrec.models.linear import GlobalLinear, PureSVD
from mfrec.persist import register_model


def user_frame(n: int = N_USERS, seed: int = 1) -> pd.DataFrame:
    g = np.random.default_rng(seed)
    return pd.DataFrame(
        {"gender": g.choice(["F", "M"], n), "job": g.choice(["eng", "art", "doc"], n), "age": g.normal(35, 9, n)},
        index=pd.Index([f"u{x:02d}" for x in range(n)], name="user"),
    )


def item_frame(n: int = N_ITEMS, seed: int = 2) -> pd.DataFrame:
    g = np.random.default_rng(seed)
    return pd.DataFrame(
        {"genres": g.choice(["Action|Comedy", "Drama", "Comedy", "Action|Drama|War"], n), "year": g.normal(1990, 8, n)},
        index=pd.Index(100 + np.arange(n), name="item"),
    )


@register_model
class _GlobalLinearAttrs(GlobalLinear):
    """GlobalLinear fitted with the planted attribute tables (for the conformance suite's fit(data))."""

    def fit(self, interactions, user_attributes=None, item_attributes=None):
        return super().fit(interactions, user_frame(), item_frame())


class TestGlobalLinearConformance(RecommenderConformance):
    predicts = True

    def make_model(self):
        return _GlobalLinearAttrs(regularization=0.5)


class TestPureSVDConformance(RecommenderConformance):
    predicts = True

    def make_model(self):
        return PureSVD(factors=5)


class TestPureSVDRandomizedConformance(RecommenderConformance):
    def make_model(self):
        return PureSVD(factors=5, solver="randomized", binary=True)


# ---------------------------------------------------------------------------------------------- GlobalLinear
def _dense_design(model, data: Interactions):
    rows, cols, vals = data.coo()
    Z = np.hstack([model.user_features_[rows], model.item_features_[cols]]).astype(np.float64)
    return Z, vals.astype(np.float64)


@pytest.mark.parametrize("lam", [0.0, 0.7, 25.0])
def test_global_linear_closed_form_against_numpy(lam):
    data = planted_interactions(seed=3)
    model = GlobalLinear(regularization=lam).fit(data, user_frame(), item_frame())
    Z, r = _dense_design(model, data)
    n, p = Z.shape
    # ridge with an unpenalised intercept: [[Z^T Z + lam I, Z^T 1], [1^T Z, n]] [w; b] = [Z^T r; 1^T r]
    K = np.block([[Z.T @ Z + lam * np.eye(p), Z.sum(0)[:, None]], [Z.sum(0)[None, :], np.array([[n]])]])
    rhs = np.concatenate([Z.T @ r, [r.sum()]])
    sol = np.linalg.lstsq(K, rhs, rcond=None)[0]
    w = np.concatenate([model.user_weights_, model.item_weights_])
    fitted = Z @ w + model.intercept_
    np.testing.assert_allclose(fitted, Z @ sol[:p] + sol[p], rtol=1e-6, atol=1e-6)
    if lam > 0:
        np.testing.assert_allclose(w, sol[:p], rtol=1e-6, atol=1e-8)
    # predict = the regression, clipped to the rating range
    frame = data.to_frame()
    pred = model.predict(frame["user"], frame["item"])
    np.testing.assert_allclose(pred, np.clip(fitted, r.min(), r.max()), rtol=1e-6)


def test_global_linear_only_item_attributes():
    data = planted_interactions(seed=4)
    model = GlobalLinear(regularization=1.0).fit(data, item_attributes=item_frame())
    assert model.user_weights_ is None and model.user_features_ is None
    rows, cols, vals = data.coo()
    B = model.item_features_[cols].astype(np.float64)
    Bc = B - B.mean(0)
    w = np.linalg.solve(Bc.T @ Bc + np.eye(B.shape[1]), Bc.T @ (vals - vals.mean()))
    np.testing.assert_allclose(model.item_weights_, w, rtol=1e-6, atol=1e-9)
    assert len(model.similar_users("u00", k=3)) == 3  # falls back to co-occurrence


def test_global_linear_is_not_personalized_but_personalized_models_are():
    data = planted_interactions(seed=5)
    users = user_frame()
    users.loc["u01"] = users.loc["u00"]  # twins: identical attributes, different histories
    items = item_frame()
    gl = GlobalLinear().fit(data, users, items)
    a = gl.recommend("u00", k=N_ITEMS, exclude_seen=False)
    b = gl.recommend("u01", k=N_ITEMS, exclude_seen=False)
    pd.testing.assert_frame_equal(a, b)  # same list, same scores
    # and every user ranks the items in the same order (scores differ by a per-user constant)
    c = gl.recommend("u17", k=N_ITEMS, exclude_seen=False)
    assert c["item"].tolist() == a["item"].tolist()
    # personalized models give the twins different lists
    for model in (
        ContentBased(regularization=1.0).fit(data, users, items),
        HybridALS(factors=4, iterations=5).fit(data, users, items),
        PureSVD(factors=4).fit(data),
    ):
        la = model.recommend("u00", k=10, exclude_seen=False)["item"].tolist()
        lb = model.recommend("u01", k=10, exclude_seen=False)["item"].tolist()
        assert la != lb, type(model).__name__


def test_global_linear_cold_ids_and_errors():
    data = planted_interactions(seed=6)
    users, items = user_frame(N_USERS + 2), item_frame(N_ITEMS + 3)
    model = GlobalLinear().fit(data, users, items)
    assert model.n_users == N_USERS + 2 and model.n_items == N_ITEMS + 3
    cold = [140, 141, 142]
    frame = model.recommend("u30", k=3, items=cold)
    assert set(frame["item"]) == set(cold)
    expected = model.user_offset_[model.interactions_.user_index("u30")] + model.item_score_[
        model.interactions_.item_index(frame["item"].to_numpy())
    ]
    np.testing.assert_allclose(frame["score"], expected, rtol=1e-6)
    with pytest.raises(InvalidDataError, match="user_attributes and/or item_attributes"):
        GlobalLinear().fit(data)
    with pytest.raises(InvalidParameterError, match="regularization"):
        GlobalLinear(regularization=-1).fit(data, users)


# ---------------------------------------------------------------------------------------------- PureSVD
@pytest.mark.parametrize("binary", [False, True])
def test_pure_svd_against_numpy_svd(binary):
    data = planted_interactions(seed=8)
    k = 6
    model = PureSVD(factors=k, binary=binary, dtype="float64").fit(data)
    R = data.matrix.toarray().astype(np.float64)
    if binary:
        R = (data.matrix.toarray() != 0).astype(np.float64)
        rows, cols, _ = data.coo()
        R[rows, cols] = 1.0
    U, s, Vt = np.linalg.svd(R, full_matrices=False)
    np.testing.assert_allclose(model.singular_values_, s[:k], rtol=1e-8)
    recon = U[:, :k] * s[:k] @ Vt[:k]
    scores = model._scores(np.arange(data.n_users))
    np.testing.assert_allclose(scores, recon, rtol=1e-4, atol=1e-4)
    # V has orthonormal columns; user factors are the projections R V
    V = model.item_factors_
    np.testing.assert_allclose(V.T @ V, np.eye(k), atol=1e-8)
    np.testing.assert_allclose(model.user_factors_, R @ V, atol=1e-8)


def test_pure_svd_randomized_agrees_with_arpack_and_fold_in():
    data = planted_interactions(seed=9)
    a = PureSVD(factors=4, dtype="float64").fit(data)
    b = PureSVD(factors=4, solver="randomized", n_iter=20, dtype="float64").fit(data)
    np.testing.assert_allclose(b.singular_values_, a.singular_values_, rtol=1e-3)
    np.testing.assert_allclose(np.abs(b.item_factors_), np.abs(a.item_factors_), atol=1e-3)
    # folding in a training user's row reproduces its factors exactly
    m = data.matrix
    u = 3
    items = data.item_ids[m.indices[m.indptr[u] : m.indptr[u + 1]]]
    vals = m.data[m.indptr[u] : m.indptr[u + 1]]
    np.testing.assert_allclose(a.fold_in_user(items, vals), a.user_factors_[u], rtol=1e-6, atol=1e-9)


def test_pure_svd_reproducible_and_validates():
    data = planted_interactions(seed=10)
    x = PureSVD(factors=3, seed=5).fit(data).item_factors_
    y = PureSVD(factors=3, seed=5).fit(data).item_factors_
    np.testing.assert_array_equal(x, y)
    with pytest.raises(InvalidParameterError, match="factors must be <= 29"):
        PureSVD(factors=30).fit(data)
    with pytest.raises(InvalidParameterError, match="solver"):
        PureSVD(solver="lobpcg").fit(data)
    with pytest.raises(InvalidDataError, match="Interactions"):
        PureSVD().fit(np.ones((3, 3)))
