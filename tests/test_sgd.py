"""SGDFactorization: gradient vs finite differences, reproducibility, training, predict, scenarios."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import ml100k_fold
from mfrec import Interactions
from mfrec.exceptions import InvalidParameterError, NotFittedError
from mfrec.kernels.sgd import (
    ROW_STEP,
    row_table,
    sgd_epoch,
    sgd_epoch_shuffled,
    shuffle_keys,
    shuffled_order,
    svdpp_effective,
    svdpp_epoch,
    svdpp_epoch_shuffled,
    svdpp_order,
)
from mfrec.models.explicit import SGDFactorization


def example_objective(theta, r, mu, reg, bias_reg, d, biases):
    """f = 1/2 (r - mu - b_u - b_i - x.y)^2 + 1/2 bias_reg (b_u^2 + b_i^2) + 1/2 reg (|x|^2 + |y|^2).

    theta = [x, y, b_u, b_i].
    """
    x, y, bu, bi = theta[:d], theta[d : 2 * d], theta[2 * d], theta[2 * d + 1]
    if not biases:
        bu = bi = 0.0
    e = r - mu - bu - bi - x @ y
    return 0.5 * e * e + 0.5 * bias_reg * (bu * bu + bi * bi) + 0.5 * reg * (x @ x + y @ y)


def finite_difference_gradient(theta, *args, h=1e-6):
    grad = np.zeros_like(theta)
    for k in range(len(theta)):
        step = np.zeros_like(theta)
        step[k] = h
        grad[k] = (example_objective(theta + step, *args) - example_objective(theta - step, *args)) / (2 * h)
    return grad


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 100_000), d=st.integers(1, 6), biases=st.booleans(), same_reg=st.booleans())
def test_sgd_step_is_minus_lr_times_finite_difference_gradient(seed, d, biases, same_reg):
    gen = np.random.default_rng(seed)
    X, Y = gen.normal(size=(1, d)), gen.normal(size=(1, d))
    bu, bi = gen.normal(size=1), gen.normal(size=1)
    r, mu, lr, reg = float(gen.uniform(1, 5)), 3.0, 0.01, float(gen.uniform(0.01, 0.5))
    bias_reg = reg if same_reg else float(gen.uniform(0.001, 1.0))
    theta = np.r_[X[0], Y[0], bu, bi]
    grad = finite_difference_gradient(theta, r, mu, reg, bias_reg, d, biases)
    one = np.zeros(1, dtype=np.int32)
    sse = sgd_epoch(one, one, np.array([r], dtype=np.float32), np.zeros(1, dtype=np.int64), X, bu, Y, bi, mu, lr,
                    reg, bias_reg, biases)
    after = np.r_[X[0], Y[0], bu, bi]
    expected = theta - lr * grad
    if not biases:  # biases are neither used nor updated
        expected[2 * d :] = theta[2 * d :]
    np.testing.assert_allclose(after, expected, rtol=1e-6, atol=1e-8)
    e = np.float32(r) - mu - (theta[2 * d] + theta[2 * d + 1] if biases else 0.0) - theta[:d] @ theta[d : 2 * d]
    assert sse == pytest.approx(e * e, rel=1e-6)


def test_epoch_visits_in_the_given_order():
    """Two ratings of the same user: the second update sees the first one's result (sequential SGD)."""
    users = np.array([0, 0], dtype=np.int32)
    items = np.array([0, 1], dtype=np.int32)
    ratings = np.array([5.0, 1.0], dtype=np.float32)
    results = []
    for order in ([0, 1], [1, 0]):
        X, Y = np.full((1, 2), 0.5), np.full((2, 2), 0.5)
        bu, bi = np.zeros(1), np.zeros(2)
        sgd_epoch(users, items, ratings, np.array(order, dtype=np.int64), X, bu, Y, bi, 3.0, 0.1, 0.0, 0.0, True)
        results.append(X.copy())
    assert not np.allclose(results[0], results[1])


def planted(seed=0, n_users=80, n_items=50, density=0.3):
    gen = np.random.default_rng(seed)
    X, Y = gen.normal(size=(n_users, 3)), gen.normal(size=(n_items, 3))
    full = 3.5 + 0.5 * gen.normal(size=(n_users, 1)) + 0.5 * gen.normal(size=(1, n_items)) + 0.6 * X @ Y.T
    u, i = np.nonzero(gen.random((n_users, n_items)) < density)
    r = np.clip(np.round(full[u, i] + 0.3 * gen.normal(size=len(u))), 1, 5)
    return pd.DataFrame({"user": u * 10, "item": [f"m{x}" for x in i], "rating": r})


def data_of(frame):
    return Interactions.from_frame(frame, user="user", item="item", value="rating")


def test_reproducible_by_seed():
    data = data_of(planted())
    a = SGDFactorization(factors=5, epochs=3, seed=3).fit(data)
    b = SGDFactorization(factors=5, epochs=3, seed=3).fit(data)
    c = SGDFactorization(factors=5, epochs=3, seed=4).fit(data)
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
    np.testing.assert_array_equal(a.user_bias_, b.user_bias_)
    assert not np.array_equal(a.item_factors_, c.item_factors_)
    assert a.user_factors_.dtype == np.float32 and a.user_factors_.flags.c_contiguous


@pytest.mark.parametrize("svdpp", [False, True])
def test_training_loss_is_optional_and_changes_nothing_else(svdpp):
    data = data_of(planted())
    on = SGDFactorization(factors=5, epochs=3, implicit_feedback=svdpp).fit(data)
    off = SGDFactorization(factors=5, epochs=3, implicit_feedback=svdpp, calculate_training_loss=False).fit(data)
    assert all({"loss", "rmse"} <= set(h) for h in on.history_)
    assert not any({"loss", "rmse"} & set(h) for h in off.history_) and len(off.history_) == 3
    np.testing.assert_array_equal(on.user_factors_, off.user_factors_)
    np.testing.assert_array_equal(on.item_factors_, off.item_factors_)
    with pytest.raises(InvalidParameterError, match="calculate_training_loss"):
        SGDFactorization(calculate_training_loss="yes").fit(data)


def penalty_weights(data, scaling):
    """Row weights of lambda in the objective SGD minimises: each row's count ("count") or 1 ("none")."""
    csr = data.matrix
    if scaling == "none":
        return np.ones(csr.shape[0]), np.ones(csr.shape[1])
    return (np.maximum(np.diff(csr.indptr), 1).astype(float),
            np.maximum(np.bincount(csr.indices, minlength=csr.shape[1]), 1).astype(float))


@pytest.mark.parametrize("scaling", ["count", "none"])
def test_training_loss_decreases_and_history(scaling):
    data = data_of(planted(1))
    model = SGDFactorization(factors=4, epochs=25, learning_rate=0.01, regularization=0.05,
                             regularization_scaling=scaling).fit(data)
    hist = model.history_
    assert [h["iteration"] for h in hist] == list(range(1, 26))
    assert hist[-1]["loss"] < 0.8 * hist[0]["loss"]
    assert hist[-1]["rmse"] < hist[0]["rmse"]
    # the recorded loss is the full objective of the final factors
    rows, cols, vals = data.coo()
    pred = model.global_bias_ + model.user_bias_[rows] + model.item_bias_[cols] + np.einsum(
        "ij,ij->i", model.user_factors_[rows].astype(np.float64), model.item_factors_[cols])
    su, si = penalty_weights(data, scaling)
    X, Y = model.user_factors_.astype(np.float64), model.item_factors_.astype(np.float64)
    reg = 0.05 * (su @ (X**2).sum(1) + si @ (Y**2).sum(1) + su @ model.user_bias_.astype(np.float64) ** 2
                  + si @ model.item_bias_.astype(np.float64) ** 2)
    assert hist[-1]["loss"] == pytest.approx(((vals - pred) ** 2).sum() + reg, rel=1e-4)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 100_000), d=st.integers(1, 5), biases=st.booleans())
def test_sgd_epoch_with_row_scales_matches_a_python_loop(seed, d, biases):
    """Per-row multipliers s_u, s_i of both lambdas: every step is the classic one with lambda s_u / lambda s_i."""
    gen = np.random.default_rng(seed)
    n_u, n_i, nnz = 4, 5, 12
    users, items = gen.integers(0, n_u, nnz).astype(np.int32), gen.integers(0, n_i, nnz).astype(np.int32)
    ratings = gen.uniform(1, 5, nnz).astype(np.float32)
    order = gen.permutation(nnz)
    su, si = gen.uniform(0.1, 2, n_u), gen.uniform(0.1, 2, n_i)
    X, Y = gen.normal(size=(n_u, d)), gen.normal(size=(n_i, d))
    bu, bi = gen.normal(size=n_u), gen.normal(size=n_i)
    mu, lr, reg, breg = 3.0, 0.02, 0.3, 0.1
    ref = [a.copy() for a in (X, bu, Y, bi)]
    for p in order:
        u, i = users[p], items[p]
        x, y = ref[0][u].copy(), ref[2][i].copy()
        e = float(ratings[p]) - mu - x @ y - ((ref[1][u] + ref[3][i]) if biases else 0.0)
        if biases:
            ref[1][u] += lr * (e - breg * su[u] * ref[1][u])
            ref[3][i] += lr * (e - breg * si[i] * ref[3][i])
        ref[0][u] = x + lr * (e * y - reg * su[u] * x)
        ref[2][i] = y + lr * (e * x - reg * si[i] * y)
    sgd_epoch(users, items, ratings, order, X, bu, Y, bi, mu, lr, reg, breg, biases, su, si)
    for got, want in zip((X, bu, Y, bi), ref):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_sgd_epoch_rejects_row_scales_of_the_wrong_length():
    one = np.zeros(1, dtype=np.int32)
    X, Y, b = np.zeros((1, 2)), np.zeros((1, 2)), np.zeros(1)
    with pytest.raises(ValueError, match=r"user_scale must have shape \(1,\)"):
        sgd_epoch(one, one, np.ones(1, np.float32), np.zeros(1, np.int64), X, b, Y, b.copy(), 0.0, 0.1, 0.1, 0.1,
                  True, np.ones(3), None)


def test_uniform_scaling_shrinks_heavy_raters_less():
    """"none" divides lambda by the row's count in each step, so the summed penalty is lambda ||x_u||^2: with a
    large lambda a heavy rater keeps larger factors than under "count" (lambda n_u ||x_u||^2)."""
    data = data_of(planted(3))
    kw = dict(factors=4, epochs=30, learning_rate=0.01, regularization=0.5, seed=0)
    count = SGDFactorization(**kw).fit(data)
    assert count.regularization_scaling == "count"
    none = SGDFactorization(**kw, regularization_scaling="none").fit(data)
    heavy = np.argmax(np.diff(data.matrix.indptr))
    assert np.linalg.norm(none.user_factors_[heavy]) > 1.5 * np.linalg.norm(count.user_factors_[heavy])
    with pytest.raises(InvalidParameterError, match="regularization_scaling"):
        SGDFactorization(regularization_scaling="rows").fit(data)


def test_bias_regularization_objective_and_default():
    data = data_of(planted(1))
    same = SGDFactorization(factors=4, epochs=5, regularization=0.05, bias_regularization=None).fit(data)
    explicit = SGDFactorization(factors=4, epochs=5, regularization=0.05, bias_regularization=0.05).fit(data)
    np.testing.assert_array_equal(same.user_factors_, explicit.user_factors_)  # None means lambda_b = lambda
    np.testing.assert_array_equal(same.item_bias_, explicit.item_bias_)
    model = SGDFactorization(factors=4, epochs=5, regularization=0.05, bias_regularization=2.0).fit(data)
    assert np.abs(model.item_bias_).sum() < np.abs(same.item_bias_).sum()  # stronger shrinkage of the biases
    rows, cols, vals = data.coo()
    X, Y = model.user_factors_.astype(np.float64), model.item_factors_.astype(np.float64)
    bu, bi = model.user_bias_.astype(np.float64), model.item_bias_.astype(np.float64)
    pred = model.global_bias_ + bu[rows] + bi[cols] + np.einsum("ij,ij->i", X[rows], Y[cols])
    su, si = penalty_weights(data, "count")
    expected = (((vals - pred) ** 2).sum() + 0.05 * (su @ (X**2).sum(1) + si @ (Y**2).sum(1))
                + 2.0 * (su @ bu**2 + si @ bi**2))
    assert model.history_[-1]["loss"] == pytest.approx(expected, rel=1e-4)


def test_learning_rate_decay_scales_each_epoch():
    """Epoch t steps with lr * decay^(t-1): replay the fit with the kernel and the same seeded draws."""
    from mfrec._random import rng

    data = data_of(planted(5))
    model = SGDFactorization(factors=3, epochs=4, learning_rate=0.02, learning_rate_decay=0.5, seed=7).fit(data)
    users, items, ratings = data.coo()
    gen = rng(7)
    X = gen.normal(0.0, 0.1, size=(data.n_users, 3)).astype(np.float32)
    Y = gen.normal(0.0, 0.1, size=(data.n_items, 3)).astype(np.float32)
    bu, bi = np.zeros(data.n_users, np.float32), np.zeros(data.n_items, np.float32)
    mu = float(np.mean(ratings, dtype=np.float64))
    for t in range(4):
        order = shuffled_order(len(ratings), shuffle_keys(gen))
        sgd_epoch(users.astype(np.int32), items, ratings, order, X, bu, Y, bi, mu, 0.02 * 0.5**t, 0.1, 0.1, True)
    np.testing.assert_array_equal(model.user_factors_, X)
    np.testing.assert_array_equal(model.item_bias_, bi)
    # a constant step (decay 1, the default) is a different run
    flat = SGDFactorization(factors=3, epochs=4, learning_rate=0.02, seed=7).fit(data)
    assert not np.allclose(flat.user_factors_, X)


def test_early_stopping_keeps_best_epoch():
    frame = planted(2)
    mask = np.random.default_rng(1).random(len(frame)) < 0.2
    model = SGDFactorization(factors=20, epochs=200, learning_rate=0.03, regularization=0.001,
                             early_stopping_rounds=3).fit(data_of(frame[~mask]), validation=data_of(frame[mask]))
    val = np.array([h["val_rmse"] for h in model.history_])
    assert len(val) < 200  # overfitting with tiny lambda: it stopped early
    assert model.best_iteration_ == int(np.argmin(val)) + 1
    sub = frame[mask]
    pred = model.predict(sub.user, sub.item)
    assert np.sqrt(np.mean((pred - sub.rating.to_numpy()) ** 2)) == pytest.approx(val.min(), rel=1e-5)


def test_predict_fallbacks_and_clipping():
    frame = planted(3)
    model = SGDFactorization(factors=3, epochs=5).fit(data_of(frame))
    out = model.predict([0, -1, -1], ["m0", "m0", "nope"], clip=False)
    mu = model.global_bias_
    i0 = model.interactions_.item_index("m0")
    assert out[1] == pytest.approx(mu + model.item_bias_[i0], rel=1e-6)
    assert out[2] == pytest.approx(mu)
    assert model.unknown_predictions_ == 2
    pred = model.predict(frame.user, frame.item)
    assert pred.min() >= frame.rating.min() and pred.max() <= frame.rating.max()


@pytest.mark.parametrize(
    "params, message",
    [
        ({"learning_rate": 0.0}, "learning_rate must be > 0"),
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"regularization": -1.0}, "regularization must be > 0"),
        ({"init_std": -0.1}, "init_std must be >= 0"),
        ({"factors": 2.5}, "factors must be an integer"),
        ({"bias_regularization": 0.0}, "bias_regularization must be > 0"),
        ({"learning_rate_decay": 0.0}, "learning_rate_decay must be > 0"),
        ({"learning_rate_decay": 1.5}, "learning_rate_decay must be <= 1"),
    ],
)
def test_bad_parameters(params, message):
    with pytest.raises(InvalidParameterError, match=message):
        SGDFactorization(**params).fit(data_of(planted()))


def test_divergence_is_reported_not_returned():
    from mfrec.exceptions import ModelFitError

    with pytest.raises(ModelFitError, match="learning rate"):
        SGDFactorization(factors=5, learning_rate=50.0, epochs=5).fit(data_of(planted()))


def test_scenarios_and_not_fitted():
    with pytest.raises(NotFittedError):
        SGDFactorization().recommend(0)
    frame = planted(4)
    model = SGDFactorization(factors=4, epochs=10).fit(data_of(frame))
    rec = model.recommend(0, k=5)
    assert list(rec.columns) == ["item", "score"] and len(rec) == 5
    seen = set(frame.loc[frame.user == 0, "item"])
    assert not seen & set(rec["item"])
    np.testing.assert_allclose(rec["score"], model.predict([0] * 5, rec["item"], clip=False), rtol=1e-4)
    assert list(model.recommend_batch([0, 10], k=3).columns) == ["user", "item", "score", "rank"]
    assert len(model.similar_items("m1", k=4)) == 4
    assert len(model.similar_users(10, k=4)) == 4
    assert list(model.recommend_users("m1", k=3).columns) == ["user", "score"]


def test_movielens_u1_default_rmse():
    train, test = ml100k_fold(1)
    frame = test.to_frame()
    model = SGDFactorization().fit(train)
    pred = model.predict(frame["user"], frame["item"])
    assert np.sqrt(np.mean((pred - frame["value"].to_numpy()) ** 2)) < 0.93


# ------------------------------------------------------------------------------------------------- SVD++
def svdpp_objective(theta, r, mu, reg, bias_reg, d):
    """One rating, one implicit item: f = 1/2 e^2 + 1/2 lambda_b (b_u^2 + b_i^2) + 1/2 lambda (|p|^2 + |y|^2 + |z|^2).

    theta = [p, y, z, b_u, b_i]; e = r - mu - b_u - b_i - y . (p + z)  (|N(u)| = 1, so s_u = 1).
    """
    p, y, z, bu, bi = theta[:d], theta[d : 2 * d], theta[2 * d : 3 * d], theta[3 * d], theta[3 * d + 1]
    e = r - mu - bu - bi - y @ (p + z)
    return 0.5 * e * e + 0.5 * bias_reg * (bu * bu + bi * bi) + 0.5 * reg * (p @ p + y @ y + z @ z)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 100_000), d=st.integers(1, 5))
def test_svdpp_single_rating_step_is_minus_lr_times_gradient(seed, d):
    gen = np.random.default_rng(seed)
    P, Y, Z = gen.normal(size=(1, d)), gen.normal(size=(1, d)), gen.normal(size=(1, d))
    bu, bi = gen.normal(size=1), gen.normal(size=1)
    r, mu, lr, reg, bias_reg = float(gen.integers(1, 6)), 3.0, 0.01, float(gen.uniform(0.01, 0.5)), 0.05
    theta = np.r_[P[0], Y[0], Z[0], bu, bi]
    grad = np.zeros_like(theta)
    for k in range(len(theta)):
        h = np.zeros_like(theta)
        h[k] = 1e-6
        grad[k] = (svdpp_objective(theta + h, r, mu, reg, bias_reg, d)
                   - svdpp_objective(theta - h, r, mu, reg, bias_reg, d)) / 2e-6
    svdpp_epoch(np.array([0, 1], dtype=np.int64), np.zeros(1, dtype=np.int32), np.array([r], dtype=np.float32),
                np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64), P, bu, Y, bi, Z, mu, lr, reg, bias_reg,
                True, True, np.empty((2, d)))
    np.testing.assert_allclose(np.r_[P[0], Y[0], Z[0], bu, bi], theta - lr * grad, rtol=1e-6, atol=1e-8)


def reference_svdpp_epoch(indptr, indices, ratings, positions, user_order, P, bu, Y, bi, Z, mu, lr, reg, breg,
                           z_reg_per_rating=False):
    """Plain-numpy SVD++ epoch: the equations of the kernel's docstring, one user at a time."""
    for u in user_order:
        rng_u = np.arange(indptr[u], indptr[u + 1])
        if len(rng_u) == 0:
            continue
        s = len(rng_u) ** -0.5
        c = s * Z[indices[rng_u]].sum(axis=0)
        g = np.zeros(P.shape[1])
        for p in positions[rng_u]:
            i = indices[p]
            e = ratings[p] - (mu + bu[u] + bi[i] + Y[i] @ (P[u] + c))
            bu[u], bi[i] = bu[u] + lr * (e - breg * bu[u]), bi[i] + lr * (e - breg * bi[i])
            g += e * Y[i]
            P[u], Y[i] = P[u] + lr * (e * Y[i] - reg * P[u]), Y[i] + lr * (e * (P[u] + c) - reg * Y[i])
        rz = reg * (len(rng_u) if z_reg_per_rating else 1)
        for j in indices[rng_u]:
            Z[j] = Z[j] + lr * (s * g - rz * Z[j])


@pytest.mark.parametrize("z_reg_per_rating", [False, True])
def test_svdpp_epoch_matches_numpy_reference(z_reg_per_rating):
    import scipy.sparse as sp

    gen = np.random.default_rng(0)
    csr = sp.random(12, 9, density=0.4, random_state=1, format="csr", dtype=np.float32)
    csr.data = gen.integers(1, 6, size=csr.nnz).astype(np.float32)
    indptr, indices = csr.indptr.astype(np.int64), csr.indices.astype(np.int32)
    positions = np.concatenate([gen.permutation(np.arange(indptr[u], indptr[u + 1])) for u in range(12)]).astype(np.int64)
    user_order = gen.permutation(12).astype(np.int64)
    state = [gen.normal(0, 0.3, size=(12, 4)), gen.normal(size=12), gen.normal(0, 0.3, size=(9, 4)),
             gen.normal(size=9), gen.normal(0, 0.3, size=(9, 4))]
    ref = [a.copy() for a in state]
    reference_svdpp_epoch(indptr, indices, csr.data.astype(np.float64), positions, user_order, *ref, 3.2, 0.02, 0.1, 0.03,
                          z_reg_per_rating)
    svdpp_epoch(indptr, indices, csr.data, positions, user_order, *state, 3.2, 0.02, 0.1, 0.03, True, True,
                np.empty((2, 4)), z_reg_per_rating=z_reg_per_rating)
    for got, want in zip(state, ref):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_svdpp_model_effective_factors_history_and_persistence(tmp_path):
    from mfrec.persist import load, save

    frame = planted(6)
    data = data_of(frame)
    kwargs = dict(factors=4, epochs=15, learning_rate=0.01, regularization=0.05, implicit_feedback=True, seed=2)
    model = SGDFactorization(**kwargs).fit(data)
    loss = np.array([h["loss"] for h in model.history_])
    assert loss[-1] < 0.8 * loss[0]
    again = SGDFactorization(**kwargs).fit(data)
    np.testing.assert_array_equal(model.user_factors_, again.user_factors_)  # reproducible by seed
    plain = SGDFactorization(**{**kwargs, "implicit_feedback": False}).fit(data)
    assert not np.allclose(model.user_factors_, plain.user_factors_)
    # user_factors_ is the effective p_u + |N(u)|^-1/2 sum z_j: the recorded training RMSE uses it directly
    rows, cols, vals = data.coo()
    pred = model.predict(data.user_ids[rows], data.item_ids[cols], clip=False)
    manual = model.global_bias_ + model.user_bias_[rows] + model.item_bias_[cols] + np.einsum(
        "ij,ij->i", model.user_factors_[rows].astype(np.float64), model.item_factors_[cols])
    np.testing.assert_allclose(pred, manual, rtol=1e-5)
    assert model.history_[-1]["rmse"] == pytest.approx(np.sqrt(np.mean((vals - manual) ** 2)), rel=1e-4)
    path = tmp_path / "svdpp.mfrec"
    save(model, path)
    loaded = load(path)
    assert loaded.implicit_feedback is True
    np.testing.assert_allclose(loaded.predict([0, 10], ["m1", "m2"]), model.predict([0, 10], ["m1", "m2"]))
    assert len(loaded.recommend(0, k=3)) == 3


# ------------------------------------------------------------------ visiting orders
def test_epochs_give_the_same_result_with_int32_and_int64_orders():
    import scipy.sparse as sp

    gen = np.random.default_rng(4)
    csr = sp.random(30, 20, density=0.3, random_state=2, format="csr", dtype=np.float32)
    csr.data = gen.integers(1, 6, size=csr.nnz).astype(np.float32)
    users = np.repeat(np.arange(30, dtype=np.int32), np.diff(csr.indptr))
    items = csr.indices.astype(np.int32)
    order = gen.permutation(csr.nnz)
    start = [gen.normal(0, 0.3, size=(30, 4)).astype(np.float32), np.zeros(30, np.float32),
             gen.normal(0, 0.3, size=(20, 4)).astype(np.float32), np.zeros(20, np.float32)]
    runs = []
    for dtype in (np.int32, np.int64):
        state = [a.copy() for a in start]
        sse = sgd_epoch(users, items, csr.data, order.astype(dtype), *state, 3.0, 0.01, 0.05, 0.02, True)
        runs.append((sse, state))
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(a, b)
    indptr = csr.indptr.astype(np.int64)
    positions = np.concatenate([gen.permutation(np.arange(indptr[u], indptr[u + 1])) for u in range(30)])
    user_order = gen.permutation(30).astype(np.int64)
    runs = []
    for dtype in (np.int32, np.int64):
        state = [a.copy() for a in start] + [np.full((20, 4), 0.1, np.float32)]
        sse = svdpp_epoch(indptr, items, csr.data, positions.astype(dtype), user_order, *state, 3.0, 0.01, 0.05,
                          0.02, True, True, np.empty((2, 4)))
        runs.append((sse, state))
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------ epochs without per-rating arrays
@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 5000), keys=st.lists(st.integers(0, 2**32 - 1), min_size=4, max_size=4))
def test_shuffled_order_is_a_permutation(n, keys):
    order = shuffled_order(n, keys)
    np.testing.assert_array_equal(np.sort(order), np.arange(n))
    np.testing.assert_array_equal(shuffled_order(n, keys), order)  # a function of the keys alone


def test_shuffled_orders_look_random():
    """Different keys, different orders; no position keeps its place more often than chance (about 1 in n)."""
    n = 10_000
    orders = [shuffled_order(n, shuffle_keys(np.random.default_rng(s))) for s in range(8)]
    for a, b in zip(orders[:-1], orders[1:]):
        assert np.mean(a == b) < 0.01
    fixed = np.mean([np.mean(o == np.arange(n)) for o in orders])
    assert fixed < 0.01
    # consecutive positions are not consecutive entries (a shuffle, not a rotation)
    assert np.mean(np.abs(np.diff(orders[0])) == 1) < 0.01


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shuffled_epoch_equals_the_epoch_with_its_order_written_out(dtype, seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 40, size=57)  # empty rows, rows shorter and longer than ROW_STEP
    lengths[0] = lengths[-1] = 0
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    nnz, n_items, d = int(indptr[-1]), 23, 5
    items = rng.integers(0, n_items, size=nnz).astype(np.int32)
    ratings = rng.integers(1, 6, size=nnz).astype(np.float32)
    users = np.repeat(np.arange(len(lengths)), lengths).astype(np.int32)
    row_at = row_table(indptr)
    assert len(row_at) == -(-nnz // ROW_STEP)
    np.testing.assert_array_equal(row_at, users[::ROW_STEP])
    keys = shuffle_keys(rng)
    state = [rng.normal(0, 0.1, (len(lengths), d)).astype(dtype), np.zeros(len(lengths), dtype),
             rng.normal(0, 0.1, (n_items, d)).astype(dtype), np.zeros(n_items, dtype)]
    a, b = [x.copy() for x in state], [x.copy() for x in state]
    su, si = rng.random(len(lengths)), rng.random(n_items)
    sse_a = sgd_epoch_shuffled(indptr, row_at, items, ratings, keys, *a, 3.0, 0.05, 0.02, 0.01, True, su, si)
    sse_b = sgd_epoch(users, items, ratings, shuffled_order(nnz, keys), *b, 3.0, 0.05, 0.02, 0.01, True, su, si)
    if dtype == np.float32:  # (in float64 the compiler may sum the dot products of the two loops in other orders)
        assert sse_a == sse_b
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    else:
        assert sse_a == pytest.approx(sse_b, rel=1e-12)
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-15)


def test_shuffled_epoch_refuses_arrays_that_disagree():
    indptr = np.array([0, 2, 3])
    X, Y, b = np.zeros((2, 2), np.float32), np.zeros((3, 2), np.float32), np.zeros(2, np.float32)
    with pytest.raises(ValueError, match="disagree"):
        sgd_epoch_shuffled(indptr, row_table(indptr), np.zeros(2, np.int32), np.ones(3, np.float32), [1, 2, 3, 4],
                           X, b, Y, np.zeros(3, np.float32), 0.0, 0.1, 0.1, 0.1, True)
    with pytest.raises(ValueError, match="4 32-bit"):
        shuffled_order(3, [1, 2, 3])


@pytest.mark.parametrize("z_reg_per_rating", [False, True])
def test_shuffled_svdpp_epoch_equals_the_epoch_with_its_orders_written_out(z_reg_per_rating):
    rng = np.random.default_rng(4)
    lengths = rng.integers(0, 9, size=31)
    lengths[3] = 0
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    nnz, n_items, d = int(indptr[-1]), 17, 4
    indices = np.concatenate([np.sort(rng.choice(n_items, k, replace=False)) for k in lengths]).astype(np.int32)
    ratings = rng.integers(1, 6, nnz).astype(np.float32)
    keys = shuffle_keys(rng, 8)
    positions, user_order = svdpp_order(indptr, keys)
    np.testing.assert_array_equal(np.sort(user_order), np.arange(len(lengths)))
    for u in range(len(lengths)):  # each user's range holds a permutation of that range
        assert sorted(positions[indptr[u]:indptr[u + 1]]) == list(range(indptr[u], indptr[u + 1]))
    state = [rng.normal(0, 0.1, (len(lengths), d)).astype(np.float32), np.zeros(len(lengths), np.float32),
             rng.normal(0, 0.1, (n_items, d)).astype(np.float32), np.zeros(n_items, np.float32),
             rng.normal(0, 0.1, (n_items, d)).astype(np.float32)]
    a, b = [x.copy() for x in state], [x.copy() for x in state]
    args = (3.0, 0.05, 0.02, 0.01, True, True)
    sse_a = svdpp_epoch_shuffled(indptr, indices, ratings, keys, *a, *args, np.empty((2, d)),
                                 z_reg_per_rating=z_reg_per_rating)
    sse_b = svdpp_epoch(indptr, indices, ratings, positions, user_order, *b, *args, np.empty((2, d)),
                        z_reg_per_rating=z_reg_per_rating)
    assert sse_a == sse_b
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_svdpp_effective_factors_are_p_plus_the_scaled_sum_of_z():
    import scipy.sparse as sp

    rng = np.random.default_rng(5)
    m = sp.random(40, 15, density=0.2, format="csr", random_state=5)
    P, Z = rng.normal(size=(40, 3)).astype(np.float32), rng.normal(size=(15, 3)).astype(np.float32)
    counts = np.diff(m.indptr)
    S = sp.csr_matrix((np.repeat(1 / np.sqrt(np.maximum(counts, 1)), counts), m.indices, m.indptr), shape=m.shape)
    np.testing.assert_allclose(svdpp_effective(m.indptr, m.indices, P, Z), P + S @ Z.astype(np.float64),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("loss", [False, True], ids=["", "with the loss"])
@pytest.mark.parametrize("svdpp", [False, True], ids=["SVD", "SVD++"])
@pytest.mark.parametrize("shape", [(3000, 400, 200_000, 8), (900, 1700, 80_000, 100)], ids=["data", "factors"])
def test_an_sgd_fit_peaks_within_a_tenth_above_data_and_factors(svdpp, shape, loss):
    """Issue 19's memory bound, by tracemalloc: every array a fit allocates (the factors included) stays within
    0.1x (data + factors) of the factors, where the data dominate and where the factors do (MovieLens-100K's
    shape at d = 100). No per-rating arrays (users and order took 8 bytes per rating), no ones per row, no
    users x d array beside SVD++'s P (with the loss: formed a sixteenth of the users at a time), no boolean mask
    for the finite check."""
    import tracemalloc

    n_users, n_items, nnz, d = shape
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"user": rng.integers(0, n_users, nnz), "item": rng.integers(0, n_items, nnz),
                          "rating": rng.integers(1, 6, nnz).astype(np.float32)}).drop_duplicates(["user", "item"])
    data = Interactions.from_frame(frame, user="user", item="item", value="rating")
    model = SGDFactorization(factors=d, epochs=2, implicit_feedback=svdpp, calculate_training_loss=loss, seed=0)
    model.fit(data)  # first use: the kernels' module and numpy's caches
    tracemalloc.start()
    model.fit(data)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    csr = data.matrix
    data_bytes = csr.data.nbytes + csr.indices.nbytes + csr.indptr.nbytes
    factors = (data.n_users + data.n_items) * (d + 1) * 4 + (data.n_items * d * 4 if svdpp else 0)
    assert (data_bytes + peak) / (data_bytes + factors) <= 1.1, (peak, factors, data_bytes)


def test_svdpp_effective_factors_can_overwrite_p():
    import scipy.sparse as sp

    rng = np.random.default_rng(6)
    m = sp.random(30, 12, density=0.3, format="csr", random_state=6)
    P, Z = rng.normal(size=(30, 4)).astype(np.float32), rng.normal(size=(12, 4)).astype(np.float32)
    expected = svdpp_effective(m.indptr, m.indices, P, Z)
    assert svdpp_effective(m.indptr, m.indices, P, Z, out=P) is P
    np.testing.assert_array_equal(P, expected)
    with pytest.raises(ValueError, match="disagree"):
        svdpp_effective(m.indptr, m.indices, P, Z, out=np.empty((29, 4), np.float32))


@pytest.mark.parametrize("with_validation", [False, True])
def test_svdpp_factors_are_the_same_whether_formed_every_epoch_or_once(with_validation):
    data = data_of(planted())
    kw = dict(factors=5, epochs=4, implicit_feedback=True, seed=3)
    once = SGDFactorization(calculate_training_loss=False, **kw).fit(data)
    every = SGDFactorization(calculate_training_loss=False, **kw).fit(data, validation=data if with_validation
                                                                      else None)
    if not with_validation:
        every = SGDFactorization(calculate_training_loss=True, **kw).fit(data)
    np.testing.assert_array_equal(once.user_factors_, every.user_factors_)
    np.testing.assert_array_equal(once.item_factors_, every.item_factors_)
    assert once.user_factors_.flags.c_contiguous and once.user_factors_.dtype == np.float32


@pytest.mark.parametrize("svdpp", [False, True], ids=["SVD", "SVD++"])
def test_no_penalty_scales_means_ones(svdpp):
    """None scales reach the kernels as empty arrays (read as 1 everywhere, no per-row ones): bit for bit the
    epoch with arrays of ones."""
    rng = np.random.default_rng(8)
    n_items, d = 19, 4
    lengths = np.minimum(rng.integers(0, 30, size=40), n_items)  # empty rows, rows longer than ROW_STEP
    items = np.concatenate([np.sort(rng.choice(n_items, k, replace=False)) for k in lengths])
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    items, ratings = items.astype(np.int32), rng.integers(1, 6, size=len(items)).astype(np.float32)
    state = [rng.normal(0, 0.1, (len(lengths), d)).astype(np.float32), np.zeros(len(lengths), np.float32),
             rng.normal(0, 0.1, (n_items, d)).astype(np.float32), np.zeros(n_items, np.float32)]
    if svdpp:
        state.append(rng.normal(0, 0.1, (n_items, d)).astype(np.float32))
    a, b = [x.copy() for x in state], [x.copy() for x in state]
    ones = (np.ones(len(lengths)), np.ones(n_items))
    if svdpp:
        keys = shuffle_keys(rng, 8)
        args = (3.0, 0.05, 0.02, 0.01, True, True)
        sse_a = svdpp_epoch_shuffled(indptr, items, ratings, keys, *a, *args, np.empty((2, d)), z_reg_per_rating=True)
        sse_b = svdpp_epoch_shuffled(indptr, items, ratings, keys, *b, *args, np.empty((2, d)), *ones,
                                     z_reg_per_rating=True)
    else:
        keys = shuffle_keys(rng)
        row_at = row_table(indptr)
        sse_a = sgd_epoch_shuffled(indptr, row_at, items, ratings, keys, *a, 3.0, 0.05, 0.02, 0.01, True)
        sse_b = sgd_epoch_shuffled(indptr, row_at, items, ratings, keys, *b, 3.0, 0.05, 0.02, 0.01, True, *ones)
    assert sse_a == sse_b
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
