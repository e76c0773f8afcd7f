"""ImplicitALS: dense references, the worked example, the four scenarios, fold-in and incremental updates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from mfrec.data.interactions import Interactions
from mfrec.exceptions import InvalidDataError, InvalidParameterError, ModelFitError, NotFittedError, UnknownIdError
from mfrec.models.implicit import ImplicitALS

# the worked example of ../shared/seed-example.md: P and C given as is (C is 0 where P is 0)
P_EX = np.array([[1, 0, 0, 1, 0, 1], [0, 1, 1, 0, 1, 1], [1, 1, 1, 0, 0, 1], [0, 0, 1, 0, 0, 1]], dtype=float)
C_EX = np.array(
    [
        [0.85, 0, 0, 0.34, 0, 0.98],
        [0, 0.37, 0.10, 0, 0.63, 0.01],
        [0.45, 0.42, 0.43, 0, 0, 0.23],
        [0, 0, 0.26, 0, 0, 0.88],
    ]
)


def synthetic(seed=0, m=60, n=40, density=0.15, counts=True):
    rng = np.random.default_rng(seed)
    mask = rng.random((m, n)) < density
    mask[np.arange(m), rng.integers(0, n, m)] = True  # every user has an item
    vals = rng.integers(1, 6, size=(m, n)) * mask if counts else mask.astype(float)
    users = [f"u{i}" for i in range(m)]
    items = [f"i{j}" for j in range(n)]
    return Interactions(sp.csr_matrix(vals.astype(float)), users, items)


def dense_loss(C, P, X, Y, reg):
    S = X.astype(float) @ Y.astype(float).T
    return float(np.sum(C * (P - S) ** 2) + reg * (np.sum(X.astype(float) ** 2) + np.sum(Y.astype(float) ** 2)))


def dense_reference_als(C, P, X0, Y0, reg, iterations):
    """Textbook ALS on dense C and P: items given users, then users given items, dense solves."""
    X, Y = X0.astype(float).copy(), Y0.astype(float).copy()
    d = X.shape[1]
    for _ in range(iterations):
        for i in range(Y.shape[0]):
            A = X.T @ (C[:, i][:, None] * X) + reg * np.eye(d)
            Y[i] = np.linalg.solve(A, X.T @ (C[:, i] * P[:, i]))
        for u in range(X.shape[0]):
            A = Y.T @ (C[u][:, None] * Y) + reg * np.eye(d)
            X[u] = np.linalg.solve(A, Y.T @ (C[u] * P[u]))
    return X, Y


def init_factors(seed, n_users, n_items, d, dtype=np.float64):
    """ImplicitALS's starting factors: float32 U[0, 0.01) draws, one child generator per block of rows."""
    from mfrec._random import rng

    g = rng(seed)
    out = []
    for rows in (n_users, n_items):
        (child,) = g.spawn(1)  # these small matrices are one block
        out.append((child.random((rows, d), dtype=np.float32) * np.float32(0.01)).astype(dtype))
    return tuple(out)


# ------------------------------------------------------------------------------------------- correctness
def test_worked_example_given_confidence_matches_dense_reference():
    data = Interactions.from_matrix(C_EX)
    model = ImplicitALS(factors=2, regularization=0.1, iterations=5, solver="cholesky", confidence="given",
                        unobserved_confidence=0.0, dtype="float64", seed=3).fit(data)
    X0, Y0 = init_factors(3, 4, 6, 2)
    X, Y = dense_reference_als(C_EX, P_EX, X0, Y0, 0.1, 5)
    # c0 = 0 leaves the small systems ill-conditioned: a few ulps grow over the sweeps
    np.testing.assert_allclose(model.user_factors_, X, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(model.item_factors_, Y, rtol=1e-6, atol=1e-9)
    assert model.history_[-1]["loss"] == pytest.approx(dense_loss(C_EX, P_EX, X, Y, 0.1), rel=1e-9)


@pytest.mark.parametrize("confidence", ["linear", "log"])
def test_hu_koren_volinsky_confidence_matches_dense_reference(confidence):
    data = synthetic(1, 25, 15)
    R = data.matrix.toarray().astype(float)
    P = (R > 0).astype(float)
    C = 1 + 2.0 * (R if confidence == "linear" else np.log1p(R / 0.5))
    model = ImplicitALS(factors=3, regularization=0.2, alpha=2.0, eps=0.5, iterations=4, solver="cholesky",
                        confidence=confidence, dtype="float64", seed=5).fit(data)
    X0, Y0 = init_factors(5, 25, 15, 3)
    X, Y = dense_reference_als(C, P, X0, Y0, 0.2, 4)
    np.testing.assert_allclose(model.user_factors_, X, rtol=1e-7, atol=1e-9)
    losses = [h["loss"] for h in model.history_]
    assert losses[-1] == pytest.approx(dense_loss(C, P, X, Y, 0.2), rel=1e-9)


@pytest.mark.parametrize("solver", ["cholesky", "gd"])
def test_loss_non_increasing(solver):
    data = synthetic(2)
    model = ImplicitALS(factors=5, regularization=0.05, iterations=8, solver=solver, dtype="float64").fit(data)
    losses = np.array([h["loss"] for h in model.history_])
    assert np.all(np.diff(losses) <= 1e-9 * np.abs(losses[:-1]))
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("solver", ["cg", "cholesky", "gd"])
def test_history_loss_is_the_dense_loss_of_the_fitted_factors(solver):
    """The per-iteration loss (summed per row inside the user half-step for cg/cholesky) is the full loss."""
    data = synthetic(4, 30, 20)
    R = data.matrix.toarray().astype(float)
    P = (R > 0).astype(float)
    C = 1 + 1.5 * R
    model = ImplicitALS(factors=3, regularization=0.3, alpha=1.5, iterations=3, solver=solver, confidence="linear",
                        dtype="float64", seed=2).fit(data)
    expect = dense_loss(C, P, model.user_factors_, model.item_factors_, 0.3)
    assert model.history_[-1]["loss"] == pytest.approx(expect, rel=1e-9)


def test_three_solvers_reach_similar_loss_and_cg_tracks_cholesky():
    data = synthetic(3)
    kw = dict(factors=4, regularization=0.1, iterations=12, dtype="float64", seed=1)
    exact = ImplicitALS(solver="cholesky", **kw).fit(data)
    cg = ImplicitALS(solver="cg", cg_steps=3, **kw).fit(data)
    cg_long = ImplicitALS(solver="cg", cg_steps=20, **kw).fit(data)
    gd = ImplicitALS(solver="gd", **{**kw, "iterations": 60}).fit(data)
    np.testing.assert_allclose(cg_long.user_factors_, exact.user_factors_, rtol=1e-6, atol=1e-8)
    best = exact.history_[-1]["loss"]
    assert cg.history_[-1]["loss"] <= best * 1.02
    assert gd.history_[-1]["loss"] <= best * 1.10


def test_float32_default_close_to_float64():
    data = synthetic(4)
    a = ImplicitALS(factors=6, iterations=5, solver="cholesky").fit(data)
    b = ImplicitALS(factors=6, iterations=5, solver="cholesky", dtype="float64").fit(data)
    assert a.user_factors_.dtype == np.float32 and a.user_factors_.flags.c_contiguous
    assert a.history_[-1]["loss"] == pytest.approx(b.history_[-1]["loss"], rel=1e-3)


def test_seed_reproducible_and_thread_independent():
    data = synthetic(5)
    a = ImplicitALS(factors=5, iterations=3, num_threads=1).fit(data)
    b = ImplicitALS(factors=5, iterations=3, num_threads=2).fit(data)
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)


def sides_seen_by_half_steps(monkeypatch) -> dict:
    """``{side name: the RowBlock its last local half-step solved}``, filled in as a fit runs."""
    from mfrec.models.training import LocalExecutor

    sides: dict = {}
    half_step = LocalExecutor.half_step

    def spy(self, plan, name, with_loss):
        sides[name] = plan.side(name)
        return half_step(self, plan, name, with_loss)

    monkeypatch.setattr(LocalExecutor, "half_step", spy)
    return sides


@pytest.mark.parametrize("solver", ["cholesky", "cg", "gd"])
def test_binary_feedback_holds_one_confidence_and_fits_as_an_array_would(solver, monkeypatch):
    """Every entry with the same value: one confidence broadcast with stride 0 on both sides (no array of nnz
    confidences, no transposed copy of them) and the factors of a fit with the confidences stored per entry."""
    from mfrec.models import implicit as implicit_module

    inter = synthetic(3, counts=False)
    kw = dict(factors=4, iterations=3, solver=solver, alpha=3.0, seed=2, dtype="float64")
    sides = sides_seen_by_half_steps(monkeypatch)
    one = ImplicitALS(**kw).fit(inter)
    assert sides["user"].values.strides == (0,) and sides["item"].values.strides == (0,)
    assert float(sides["item"].values[0]) == 4.0  # 1 + alpha r
    monkeypatch.setattr(implicit_module.ImplicitALS, "_one_confidence", lambda self, *a: None)
    stored = ImplicitALS(**kw).fit(inter)
    assert sides["user"].values.strides != (0,)
    np.testing.assert_array_equal(one.user_factors_, stored.user_factors_)
    np.testing.assert_array_equal(one.item_factors_, stored.item_factors_)
    assert [h["loss"] for h in one.history_] == [h["loss"] for h in stored.history_]


def test_implicit_feedback_object_with_preferences_and_c0():
    class Feedback:  # the duck-typed shape of mfrec.data.feedback.ImplicitFeedback
        def __init__(self, interactions, preference, unobserved_confidence):
            self.interactions = interactions
            self.preference = preference
            self.unobserved_confidence = unobserved_confidence

    data = synthetic(6, 20, 12)
    rng = np.random.default_rng(0)
    pref = (rng.random(data.nnz) < 0.7).astype(float)
    fb = Feedback(data, pref, 0.4)
    model = ImplicitALS(factors=3, regularization=0.1, iterations=3, solver="cholesky", dtype="float64",
                        seed=2).fit(fb)
    R = data.matrix.toarray()
    C = np.full(R.shape, 0.4)
    P = np.zeros(R.shape)
    rows, cols, vals = data.coo()
    C[rows, cols] = vals
    P[rows, cols] = pref
    X0, Y0 = init_factors(2, 20, 12, 3)
    X, _ = dense_reference_als(C, P, X0, Y0, 0.1, 3)
    np.testing.assert_allclose(model.user_factors_, X, rtol=1e-7, atol=1e-9)
    assert model.unobserved_confidence_ == 0.4 and model.confidence_mode_ == "given"


# ------------------------------------------------------------------------------------------- bad input
def test_negative_values_name_user_and_item():
    df = pd.DataFrame({"user": ["a", "b", "c"], "item": ["x", "y", "z"], "value": [1.0, -2.0, 3.0]})
    data = Interactions.from_frame(df, value="value", allow_negative=True)
    with pytest.raises(InvalidDataError, match=r"user 'b', item 'y'|user b, item y"):
        ImplicitALS(iterations=1).fit(data)
    with pytest.raises(InvalidDataError, match="negative confidence"):
        ImplicitALS(iterations=1, confidence="given").fit(data)


@pytest.mark.parametrize(
    "params",
    [{"factors": 0}, {"regularization": 0.0}, {"alpha": -1}, {"solver": "lu"}, {"confidence": "exp"},
     {"cg_steps": 0}, {"dtype": "int8"}, {"eps": 0}],
)
def test_bad_parameters_are_named(params):
    with pytest.raises(InvalidParameterError, match=next(iter(params))):
        ImplicitALS(**params).fit(synthetic(0, 5, 4))


def test_non_finite_factors_raise_model_fit_error(monkeypatch):
    import mfrec.models.implicit as mod

    def poison(*args, **kwargs):
        args[5][:] = np.nan
        return np.zeros(args[5].shape[0], np.uint8)

    monkeypatch.setattr(mod, "half_step", poison)
    with pytest.raises(ModelFitError, match="regularization"):
        ImplicitALS(iterations=2).fit(synthetic(0, 6, 5))
    # without the loss, the factors themselves are checked every iteration
    with pytest.raises(ModelFitError, match=r"non-finite values in \w+ \(iteration 1\)"):
        ImplicitALS(iterations=2, calculate_training_loss=False).fit(synthetic(0, 6, 5))


@pytest.mark.parametrize("solver", ["cg", "cholesky", "gd"])
def test_training_loss_is_optional_and_changes_nothing_else(solver):
    """calculate_training_loss=False: no loss in history_, the same factors bit for bit (the loss pass only reads)."""
    data = synthetic(3, 40, 30)
    on = ImplicitALS(factors=6, iterations=3, solver=solver).fit(data)
    off = ImplicitALS(factors=6, iterations=3, solver=solver, calculate_training_loss=False).fit(data)
    assert all("loss" in h for h in on.history_) and not any("loss" in h for h in off.history_)
    assert [h["iteration"] for h in off.history_] == [1, 2, 3] and all("seconds" in h for h in off.history_)
    np.testing.assert_array_equal(on.user_factors_, off.user_factors_)
    np.testing.assert_array_equal(on.item_factors_, off.item_factors_)
    with pytest.raises(InvalidParameterError, match="calculate_training_loss must be True or False"):
        ImplicitALS(calculate_training_loss="no").fit(data)


def test_not_fitted():
    with pytest.raises(NotFittedError, match="ImplicitALS"):
        ImplicitALS().recommend("u1")


# ------------------------------------------------------------------------------------------- scenarios
@pytest.fixture(scope="module")
def fitted():
    data = synthetic(7, 80, 50, counts=True)
    return ImplicitALS(factors=8, iterations=6, solver="cholesky", seed=0).fit(data), data


def test_recommend_excludes_seen_and_honours_lists(fitted):
    model, data = fitted
    for u in ["u0", "u5", "u17"]:
        seen = set(data.item_index_map[data.matrix[data.user_index(u)].indices])
        rec = model.recommend(u, k=10)
        assert list(rec.columns) == ["item", "score"] and len(rec) == 10
        assert not seen & set(rec["item"])
        assert rec["score"].is_monotonic_decreasing
        # dense check of the scores
        uidx = data.user_index(u)
        ref = model.user_factors_[uidx] @ model.item_factors_[data.item_index(list(rec["item"]))].T
        np.testing.assert_allclose(rec["score"], ref, rtol=1e-5)
        allow = ["i1", "i2", "i3", "i4"]
        got = model.recommend(u, k=10, items=allow, exclude=["i2"], exclude_seen=False)
        assert set(got["item"]) <= set(allow) - {"i2"}
    with pytest.raises(UnknownIdError):
        model.recommend("nobody")
    with pytest.raises(KeyError):
        model.recommend("u1", items=["no-such-item"])


def test_batch_users_items_similar(fitted):
    model, data = fitted
    batch = model.recommend_batch(["u1", "u2"], k=5)
    assert list(batch.columns) == ["user", "item", "score", "rank"] and len(batch) == 10
    pd.testing.assert_frame_equal(
        batch[batch.user == "u2"][["item", "score"]].reset_index(drop=True), model.recommend("u2", k=5)
    )
    users = model.recommend_users("i3", k=5)
    assert len(users) == 5
    sim = model.similar_items("i3", k=4)
    assert "i3" not in set(sim["item"]) and len(sim) == 4
    Y = model.item_factors_.astype(float)
    cos = Y @ Y[3] / (np.linalg.norm(Y, axis=1) * np.linalg.norm(Y[3]))
    cos[3] = -np.inf
    assert list(sim["item"]) == [f"i{j}" for j in np.argsort(-cos, kind="stable")[:4]]
    assert len(model.similar_users("u4", k=3)) == 3


def test_fold_in_reproduces_training_user_and_recommends_new_user():
    data = synthetic(8, 50, 30)
    model = ImplicitALS(factors=6, iterations=4, solver="cholesky", dtype="float64").fit(data)
    u = data.user_index("u3")
    row = data.matrix[u]
    items = list(data.item_index_map[row.indices])
    x = model.fold_in_user(items, row.data)
    np.testing.assert_allclose(x, model.user_factors_[u], rtol=1e-8, atol=1e-10)
    rec = model.recommend_new_user(items, row.data, k=5)
    assert not set(items) & set(rec["item"]) and len(rec) == 5
    ref = model.recommend("u3", k=5)
    assert list(rec["item"]) == list(ref["item"])
    with pytest.raises(UnknownIdError):
        model.fold_in_user(["nope"])
    with pytest.raises(InvalidDataError, match="negative"):
        model.fold_in_user(items[:1], [-1.0])
    # a new item from its users: the exact closed form against the user factors
    col = data.matrix.tocsc()[:, 2]
    y = model.fold_in_item(list(data.user_index_map[col.indices]), col.data)
    X = model.user_factors_.astype(float)
    c = np.ones(50)
    c[col.indices] = 1 + model.alpha * col.data
    p = np.zeros(50)
    p[col.indices] = 1
    ref_y = np.linalg.solve(X.T @ (c[:, None] * X) + model.regularization * np.eye(6), X.T @ (c * p))
    np.testing.assert_allclose(y, ref_y, rtol=1e-8)


def test_fold_in_float32_cg_close():
    data = synthetic(9, 50, 30)
    model = ImplicitALS(factors=6, iterations=8).fit(data)
    u = data.user_index("u7")
    row = data.matrix[u]
    x = model.fold_in_user(list(data.item_index_map[row.indices]), row.data)
    assert np.linalg.norm(x - model.user_factors_[u]) <= 0.05 * np.linalg.norm(model.user_factors_[u])


def test_partial_fit_users_adds_and_recomputes():
    data = synthetic(10, 40, 25)
    model = ImplicitALS(factors=5, iterations=4, solver="cholesky", dtype="float64").fit(data)
    before = model.user_factors_.copy()
    new = pd.DataFrame({"user": ["u1", "u1", "newbie", "newbie"], "item": ["i0", "i3", "i4", "i5"],
                        "value": [2.0, 1.0, 3.0, 1.0]})
    upd = Interactions.from_frame(new, value="value")
    model.partial_fit_users(upd)
    assert model.n_users == 41 and model.user_factors_.shape == (41, 5)
    np.testing.assert_allclose(model.user_factors_[model.interactions_.user_index("newbie")],
                               model.fold_in_user(["i4", "i5"], [3.0, 1.0]), rtol=1e-10)
    np.testing.assert_allclose(model.user_factors_[1], model.fold_in_user(["i0", "i3"], [2.0, 1.0]), rtol=1e-10)
    untouched = [i for i in range(40) if i != 1]
    np.testing.assert_array_equal(model.user_factors_[untouched], before[untouched])
    assert set(model.interactions_.item_index_map[model.interactions_.matrix[1].indices]) == {"i0", "i3"}
    rec = model.recommend("newbie", k=3)
    assert not {"i4", "i5"} & set(rec["item"])
    with pytest.raises(UnknownIdError, match="partial_fit_items"):
        model.partial_fit_users(Interactions.from_frame(pd.DataFrame({"user": ["u2"], "item": ["brand-new"]})))


def test_partial_fit_items_adds_new_item():
    data = synthetic(11, 40, 25)
    model = ImplicitALS(factors=5, iterations=4, solver="cholesky", dtype="float64").fit(data)
    upd = Interactions.from_frame(pd.DataFrame({"user": ["u0", "u5", "u9"], "item": ["fresh"] * 3,
                                                "value": [1.0, 4.0, 2.0]}), value="value")
    model.partial_fit_items(upd)
    assert model.n_items == 26
    j = model.interactions_.item_index("fresh")
    np.testing.assert_allclose(model.item_factors_[j], model.fold_in_item(["u0", "u5", "u9"], [1.0, 4.0, 2.0]),
                               rtol=1e-10)
    assert "fresh" not in set(model.recommend("u5", k=26)["item"])  # seen now
    assert len(model.recommend_users("fresh", k=3)) == 3


def test_validation_history_and_early_stopping():
    data = synthetic(12, 80, 40)
    rows, cols, vals = data.coo()
    rng = np.random.default_rng(0)
    test = rng.random(len(rows)) < 0.2
    train, val = data.take(~test), data.take(test)
    model = ImplicitALS(factors=6, iterations=10, early_stopping_rounds=2).fit(train, validation=val)
    ndcgs = [h["val_ndcg"] for h in model.history_]
    assert all(0.0 <= v <= 1.0 for v in ndcgs)
    assert model.history_[model.best_iteration_ - 1]["val_ndcg"] == max(ndcgs)


def test_save_load_round_trip(tmp_path, fitted):
    model, _ = fitted
    path = model.save(tmp_path / "m.mfrec")
    loaded = ImplicitALS.load(path)
    pd.testing.assert_frame_equal(loaded.recommend("u3"), model.recommend("u3"))
    np.testing.assert_allclose(loaded.fold_in_user(["i1", "i2"]), model.fold_in_user(["i1", "i2"]), rtol=1e-6)


@pytest.mark.parametrize("solver", ["cholesky", "cg", "gd"])
@pytest.mark.parametrize("confidence", ["linear", "given"])
def test_affine_confidences_are_read_from_the_values_and_fit_as_stored_ones_would(solver, confidence, monkeypatch):
    """float32 factors, values that differ, an affine rule: both sides read ``offset + scale r`` from the stored
    (or transposed) values, with no array of nnz confidences; the factors are those of a fit with the
    confidences stored (to float32 rounding: a kernel computes 1 + alpha r in float32, the stored rule in float64;
    for the identity rule, ``given``, the same bit for bit)."""
    from mfrec.kernels._args import Affine
    from mfrec.models import implicit as implicit_module

    inter = synthetic(3, counts=True)
    assert len(np.unique(inter.matrix.data)) > 1
    kw = dict(factors=4, iterations=3, solver=solver, alpha=0.7, seed=2, confidence=confidence, regularization=0.5)
    sides = sides_seen_by_half_steps(monkeypatch)
    read = ImplicitALS(**kw).fit(inter)
    offset, scale = (1.0, 0.7) if confidence == "linear" else (0.0, 1.0)
    for name in ("user", "item"):
        conf = sides[name].values
        assert isinstance(conf, Affine) and (conf.offset, conf.scale) == (offset, scale)
        assert conf.values.dtype == np.float32
    csr = inter.matrix
    np.testing.assert_array_equal(sides["user"].values.values, csr.data)  # the stored values themselves
    np.testing.assert_array_equal(sides["item"].values.values, csr.T.tocsr().data)  # and their transpose
    monkeypatch.setattr(implicit_module, "_AFFINE_RULES", {})
    stored = ImplicitALS(**kw).fit(inter)
    assert isinstance(sides["user"].values, np.ndarray)
    if confidence == "given":
        np.testing.assert_array_equal(read.user_factors_, stored.user_factors_)
        np.testing.assert_array_equal(read.item_factors_, stored.item_factors_)
    else:
        for got, want in ((read.user_factors_, stored.user_factors_), (read.item_factors_, stored.item_factors_)):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
        np.testing.assert_allclose([h["loss"] for h in read.history_], [h["loss"] for h in stored.history_],
                                   rtol=1e-5)


def test_confidences_are_stored_where_the_rule_is_not_affine_or_the_factors_are_float64():
    from mfrec.kernels._args import Affine

    inter = synthetic(3, counts=True)
    p = ImplicitALS()._checked_params()
    assert isinstance(ImplicitALS()._prepare(inter, p, read_from_values=True)[1], Affine)
    assert not isinstance(ImplicitALS()._prepare(inter, p)[1], Affine)  # (partial fits take stored ones)
    for kw in ({"confidence": "log"}, {"dtype": "float64"}):
        model = ImplicitALS(**kw)
        conf = model._prepare(inter, model._checked_params(), read_from_values=True)[1]
        assert isinstance(conf, np.ndarray) and conf.dtype == np.dtype(model._checked_params()["dtype"])


def test_values_read_as_confidences_are_still_checked():
    """(Interactions refuses NaN and infinity itself; a negative value reaches the confidence rule.)"""
    inter = synthetic(3, counts=True)
    m = inter.matrix.copy()
    m.data[5] = -2.0
    message = r"negative value \(for linear confidence\) -2 of user \d+, item \d+ \(1 negative entries\)"
    with pytest.raises(InvalidDataError, match=message):
        ImplicitALS(factors=3, iterations=1).fit(Interactions.from_matrix(m))
