"""Whole fits against the dense numpy reference (tests/reference.py): every iteration's loss and the final factors.

The models run their compiled kernels on sparse rows; the reference solves every row's normal equations with
numpy.linalg on dense matrices. Both start from the same factors (the model's seeding), in float64, so they
must agree to rounding: 1e-6 relative on the loss and 1e-6 on the factors.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import reference
from mfrec import Attributes, ExplicitALS, HybridALS, ImplicitALS, Interactions
from mfrec._random import rng, uniform_matrix
from model_conformance import planted_interactions


@pytest.fixture(scope="module")
def data() -> Interactions:
    return planted_interactions(seed=11, n_users=25, n_items=30)


def _close(a, b, tol=1e-6):
    np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), rtol=tol, atol=tol)


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
@pytest.mark.parametrize("c0, alpha", [(1.0, 1.0), (0.3, 4.0)])
def test_implicit_als_equals_the_dense_reference(data, solver, c0, alpha):
    d, reg, its = 4, 0.2, 4
    # CG with as many steps as factors solves each d x d system exactly (in exact arithmetic)
    model = ImplicitALS(factors=d, regularization=reg, alpha=alpha, unobserved_confidence=c0, iterations=its,
                        solver=solver, cg_steps=d if solver == "cg" else 3, dtype="float64", seed=5).fit(data)
    gen = rng(5)
    X0 = uniform_matrix(gen, data.n_users, d, 0.01, np.float64)  # ImplicitALS starts at U[0, 0.01)
    Y0 = uniform_matrix(gen, data.n_items, d, 0.01, np.float64)
    R, mask = reference.dense(data)
    X, Y, losses = reference.implicit_als(R, mask, X0, Y0, reg=reg, alpha=alpha, c0=c0, iterations=its)
    tol = 1e-6 if solver == "cholesky" else 1e-4  # CG rounding compounds over its steps and iterations
    _close([h["loss"] for h in model.history_], losses, tol)
    _close(model.user_factors_, X, tol)
    _close(model.item_factors_, Y, tol)


@pytest.mark.parametrize("fw, breg", [(False, None), (True, 0.02)])
def test_explicit_als_equals_the_dense_reference(data, fw, breg):
    d, reg, its = 3, 0.5 if not fw else 0.05, 4
    model = ExplicitALS(factors=d, regularization=reg, bias_regularization=breg, iterations=its, dtype="float64",
                        seed=2, regularization_scaling="count" if fw else "none").fit(data)
    Y0 = rng(2).normal(0.0, 0.1, size=(data.n_items, d))
    R, mask = reference.dense(data)
    X, Y, bu, bi, mu, losses = reference.explicit_als(R, mask, Y0, reg=reg, breg=breg, frequency_weighted=fw,
                                                      iterations=its)
    assert model.global_bias_ == pytest.approx(mu)
    _close([h["loss"] for h in model.history_], losses)
    _close(model.user_factors_, X)
    _close(model.item_factors_, Y)
    _close(model.user_bias_, bu)
    _close(model.item_bias_, bi)


def _one_hot_attributes(ids, seed, name):
    r = np.random.default_rng(seed)
    frame = pd.DataFrame({name: r.choice(list("abcd"), len(ids))}, index=pd.Index(ids))
    return Attributes.from_frame(frame, categorical=[name])


@pytest.mark.parametrize("sides", ["both", "items"])
def test_hybrid_als_equals_the_dense_reference(data, sides):
    """Free factors, implicit, linear cold map; one-hot attributes (exact in the model's float32 copy)."""
    d, reg, reg_a, its = 3, 0.3, 0.7, 3
    users = list(data.user_ids) + ["cold_user"]
    items = list(data.item_ids) + [900, 901]
    ua = _one_hot_attributes(users, 1, "group") if sides == "both" else None
    ia = _one_hot_attributes(items, 2, "genre")
    model = HybridALS(factors=d, regularization=reg, attribute_regularization=reg_a, iterations=its,
                      cold_map="linear", dtype="float64", seed=3).fit(data, ua, ia)
    inter = model.interactions_  # the id maps with the cold ids appended
    gen = rng(3)
    X0 = uniform_matrix(gen, inter.n_users, d, 0.01, np.float64)
    Y0 = uniform_matrix(gen, inter.n_items, d, 0.01, np.float64)
    R, mask = reference.dense(inter)
    A = None if model.user_features_ is None else model.user_features_.astype(float)
    B = model.item_features_.astype(float)
    X, Y, W, E, losses = reference.hybrid_als(R, mask, A, B, X0, Y0, reg=reg, reg_a=reg_a, iterations=its)
    _close([h["loss"] for h in model.history_], losses)
    _close(model.user_factors_, X)
    _close(model.item_factors_, Y)
    _close(model.item_attribute_map_, E)
    if A is not None:
        _close(model.user_attribute_map_, W)
    assert not mask[:, -1].any() and np.abs(model.item_factors_[-1]).sum() > 0  # a cold item got E^T b
