"""ContentBased: per-user ridge closed forms against numpy, cold ids, content similarity, conformance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from model_conformance import N_ITEMS, N_USERS, RecommenderConformance, planted_interactions
from test_linear_baselines import item_frame, user_frame

from mfrec.data.attributes import Attributes
from mfrec.exceptions import InvalidDataError, InvalidParameterError, UnknownIdError
from mfrec.data.attributes import infer_spec
from mfrec.models.content import ContentBased
from mfrec.persist import register_model


@register_model
class _ContentBasedAttrs(ContentBased):
    """ContentBased fitted with the planted item attributes (for the conformance suite's fit(data))."""

    def fit(self, interactions, user_attributes=None, item_attributes=None):
        return super().fit(interactions, item_attributes=item_frame())


class TestContentBasedExplicitConformance(RecommenderConformance):
    predicts = True

    def make_model(self):
        return _ContentBasedAttrs(regularization=2.0, feedback="explicit")


class TestContentBasedImplicitConformance(RecommenderConformance):
    def make_model(self):
        return _ContentBasedAttrs(regularization=2.0, feedback="implicit", alpha=2.0)


def _features(model) -> np.ndarray:
    return model.item_factors_.astype(np.float64)  # [a_i, 1]


@pytest.mark.parametrize("lam", [0.3, 5.0])
def test_explicit_profiles_closed_form(lam):
    data = planted_interactions(seed=11)
    model = ContentBased(regularization=lam, feedback="explicit").fit(data, item_attributes=item_frame())
    F = _features(model)
    R = data.matrix.toarray().astype(np.float64)
    observed = np.zeros(R.shape, bool)
    rows, cols, _ = data.coo()
    observed[rows, cols] = True
    mu = R[observed].mean()
    assert model.global_mean_ == pytest.approx(mu)
    for u in range(data.n_users):
        Fu = F[observed[u]]
        w = np.linalg.solve(Fu.T @ Fu + lam * np.eye(F.shape[1]), Fu.T @ (R[u, observed[u]] - mu))
        expected = mu + F @ w
        np.testing.assert_allclose(model._scores(np.array([u]))[0], expected, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("alpha,c0", [(1.0, 1.0), (3.0, 0.5)])
def test_implicit_profiles_closed_form(alpha, c0):
    data = planted_interactions(seed=12)
    lam = 0.8
    model = ContentBased(regularization=lam, feedback="implicit", alpha=alpha, unobserved_confidence=c0).fit(
        data, item_attributes=item_frame()
    )
    F = _features(model)
    R = data.matrix.toarray().astype(np.float64)
    P = np.zeros(R.shape)
    rows, cols, _ = data.coo()
    P[rows, cols] = 1.0
    C = np.where(P > 0, 1.0 + alpha * R, c0)  # c_ui over ALL pairs
    for u in range(data.n_users):
        w = np.linalg.solve(F.T @ (C[u][:, None] * F) + lam * np.eye(F.shape[1]), F.T @ (C[u] * P[u]))
        np.testing.assert_allclose(model.user_factors_[u], w, rtol=1e-4, atol=1e-5)


def test_cold_items_and_cold_users():
    data = planted_interactions(seed=13)
    items = item_frame(N_ITEMS + 4)
    users = user_frame(N_USERS + 2)
    model = ContentBased(regularization=1.0, feedback="explicit").fit(data, users, items)
    cold_items = [140, 141, 142, 143]
    assert model.n_items == N_ITEMS + 4 and model.n_users == N_USERS + 2
    # a cold item is scored from its attributes: s = mu + w_u . [a_i, 1]
    frame = model.recommend("u00", k=4, items=cold_items)
    assert set(frame["item"]) == set(cold_items)
    u = model.interactions_.user_index("u00")
    idx = model.interactions_.item_index(frame["item"].to_numpy())
    np.testing.assert_allclose(frame["score"], model.item_factors_[idx] @ model.user_factors_[u], rtol=1e-5)
    # every scenario works for cold ids
    assert len(model.recommend_users(141, k=3)) == 3
    assert len(model.similar_items(142, k=3)) == 3
    assert len(model.recommend("u31", k=3)) == 3
    # cold users get the mean warm profile (intercept includes mu for everyone)
    warm = model.user_factors_[:N_USERS]
    np.testing.assert_allclose(model.user_factors_[N_USERS], warm.mean(0), rtol=1e-5, atol=1e-6)
    # ... and never appear without attributes
    with pytest.raises(UnknownIdError, match="144"):
        model.recommend("u00", items=[144])


def test_similar_items_is_attribute_cosine():
    data = planted_interactions(seed=14)
    model = ContentBased().fit(data, item_attributes=item_frame())
    A = model.item_factors_[:, :-1].astype(np.float64)
    q = model.interactions_.item_index(105)
    norms = np.linalg.norm(A, axis=1)
    cos = A @ A[q] / (norms * norms[q])
    frame = model.similar_items(105, k=N_ITEMS)
    idx = model.interactions_.item_index(frame["item"].to_numpy())
    np.testing.assert_allclose(frame["score"], cos[idx], rtol=1e-5, atol=1e-6)
    assert frame["score"].iloc[0] == pytest.approx(np.sort(np.delete(cos, q))[-1], abs=1e-6)


def test_fold_in_reproduces_training_profile():
    data = planted_interactions(seed=15)
    for feedback in ("explicit", "implicit"):
        model = ContentBased(regularization=0.5, feedback=feedback).fit(data, item_attributes=item_frame())
        m = data.matrix
        u = 4
        items = data.item_ids[m.indices[m.indptr[u] : m.indptr[u + 1]]]
        vals = m.data[m.indptr[u] : m.indptr[u + 1]]
        np.testing.assert_allclose(model.fold_in_user(items, vals), model.user_factors_[u], rtol=1e-4, atol=1e-5)


def test_attributes_object_and_inference():
    data = planted_interactions(seed=16)
    frame = item_frame()
    frame["title"] = [f"Movie {i}" for i in range(N_ITEMS)]  # id-like: left out by inference
    assert infer_spec(frame) == {"multilabel": ["genres"], "numeric": ["year"]}
    attrs = Attributes.from_frame(item_frame(), multilabel="genres", numeric="year")
    a = ContentBased(feedback="explicit").fit(data, item_attributes=attrs)
    b = ContentBased(feedback="explicit").fit(data, item_attributes=frame)
    np.testing.assert_allclose(a.user_factors_, b.user_factors_, rtol=1e-5, atol=1e-6)
    assert a.item_feature_names_ == b.item_feature_names_


def test_errors_name_the_fault():
    data = planted_interactions(seed=17)
    with pytest.raises(InvalidDataError, match="needs item_attributes"):
        ContentBased().fit(data)
    dup = pd.concat([item_frame(), item_frame().iloc[:1]])
    with pytest.raises(InvalidDataError, match="id 100 has more than one attribute row"):
        ContentBased().fit(data, item_attributes=dup)
    with pytest.raises(InvalidParameterError, match="regularization"):
        ContentBased(regularization=0).fit(data, item_attributes=item_frame())
    with pytest.raises(InvalidParameterError, match="feedback"):
        ContentBased(feedback="both").fit(data, item_attributes=item_frame())
    neg = data.with_values(data.matrix.data - 10)
    with pytest.raises(InvalidDataError, match="user .*item .*implicit"):
        ContentBased(feedback="implicit").fit(neg, item_attributes=item_frame())
    with pytest.raises(InvalidDataError, match="DataFrame"):
        ContentBased().fit(data, item_attributes=np.ones((N_ITEMS, 2)))


def test_implicit_cold_items_are_not_negatives():
    """Cold items (attributes only) stay out of the implicit loss: profiles equal those fitted without them."""
    data = planted_interactions(seed=18)
    with_cold = ContentBased(regularization=0.7, feedback="implicit").fit(data, item_attributes=item_frame(N_ITEMS + 6))
    F = with_cold.item_factors_.astype(np.float64)[:N_ITEMS]  # the warm items' [a_i, 1]
    R = data.matrix.toarray().astype(np.float64)
    P = np.zeros(R.shape)
    rows, cols, _ = data.coo()
    P[rows, cols] = 1.0
    C = np.where(P > 0, 1.0 + R, 1.0)
    for u in (0, 9, 21):
        w = np.linalg.solve(F.T @ (C[u][:, None] * F) + 0.7 * np.eye(F.shape[1]), F.T @ (C[u] * P[u]))
        np.testing.assert_allclose(with_cold.user_factors_[u], w, rtol=1e-4, atol=1e-5)
