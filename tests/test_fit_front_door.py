"""Every model's fit takes a DataFrame or a sparse matrix, reports progress to a callback, and draws a bar on
request (issue "a newcomer's first hour")."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import mfrec
from model_conformance import planted_interactions


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    data = planted_interactions()
    f = data.to_frame()
    return f.rename(columns={"user": "customer_id", "item": "sku", "value": "quantity"})


@pytest.mark.parametrize("make", [
    lambda: mfrec.ImplicitALS(factors=4, iterations=2),
    lambda: mfrec.ExplicitALS(factors=3, iterations=2),
    lambda: mfrec.SGDFactorization(factors=3, epochs=2),
    lambda: mfrec.Popularity(),
    lambda: mfrec.PureSVD(factors=3),
])
def test_fit_takes_a_dataframe_with_common_column_names(frame, make):
    model = make().fit(frame)
    assert model.interactions_.nnz == len(frame)
    assert set(model.interactions_.user_ids) == set(frame["customer_id"])
    assert model.interactions_.matrix.max() == frame["quantity"].max()


def test_fit_takes_named_columns_and_a_sparse_matrix(frame):
    odd = frame.rename(columns={"customer_id": "who", "sku": "what", "quantity": "how_much"})
    model = mfrec.ImplicitALS(factors=4, iterations=2).fit(odd, user="who", item="what", value="how_much")
    assert model.interactions_.nnz == len(frame)
    m = sp.random(20, 15, density=0.3, format="csr", random_state=0)
    model = mfrec.ImplicitALS(factors=4, iterations=2).fit(m)
    assert model.interactions_.shape == (20, 15) and list(model.interactions_.user_ids) == list(range(20))
    with pytest.raises(mfrec.InvalidDataError, match="no user column"):
        mfrec.ImplicitALS().fit(pd.DataFrame({"a": [1], "b": [2]}))
    with pytest.raises(mfrec.InvalidParameterError, match="name DataFrame columns"):
        mfrec.ImplicitALS().fit(m, user="x")


@pytest.mark.parametrize("make, key", [
    (lambda: mfrec.ImplicitALS(factors=4, iterations=3), "loss"),
    (lambda: mfrec.ExplicitALS(factors=3, iterations=3), "rmse"),
    (lambda: mfrec.SGDFactorization(factors=3, epochs=3), "rmse"),
    (lambda: mfrec.HybridALS(factors=3, iterations=3), "loss"),
])
def test_callback_gets_every_iteration_with_its_history_entry(make, key):
    calls = []
    model = make().fit(planted_interactions(), callback=lambda it, seconds, entry: calls.append((it, seconds, entry)))
    assert [c[0] for c in calls] == [1, 2, 3]
    assert all(c[2] == h for c, h in zip(calls, model.history_))
    assert all(key in c[2] for c in calls)
    assert calls[0][1] <= calls[1][1] <= calls[2][1]


def test_show_progress_draws_a_bar_and_a_search_draws_none_per_fold(monkeypatch):
    import tqdm.auto

    bars = []
    real = tqdm.auto.tqdm

    def recording(*args, **kwargs):
        kwargs["file"] = io.StringIO()
        bar = real(*args, **kwargs)
        bars.append(bar)
        return bar

    monkeypatch.setattr(tqdm.auto, "tqdm", recording)
    mfrec.ImplicitALS(factors=4, iterations=3).fit(planted_interactions(), show_progress=True)
    assert len(bars) == 1 and bars[0].n == 3 and bars[0].total == 3
    mfrec.ImplicitALS(factors=4, iterations=3).fit(planted_interactions(), show_progress=False)
    assert len(bars) == 1
    monkeypatch.setattr("mfrec._progress._interactive", lambda: True)
    mfrec.GridSearch(mfrec.ImplicitALS(iterations=2), {"factors": [2, 3]}, metric="ndcg@10", cv=2).fit(
        planted_interactions())
    assert len(bars) == 1  # the inner fits stay quiet


def test_the_cli_bar_exists_before_the_first_iteration_ends():
    from mfrec._progress import listen

    events = []
    with listen(events.append):
        mfrec.ImplicitALS(factors=2, iterations=2).fit(planted_interactions())
    assert events[0]["kind"] == "start" and events[0]["total"] == 2
    assert [e["kind"] for e in events[1:]] == ["iteration", "iteration"]


def test_a_fit_with_validation_gives_a_learning_curve_figure_with_the_held_out_metric(tmp_path):
    from matplotlib.figure import Figure

    from mfrec.data.split import per_user_split

    train, test = per_user_split(planted_interactions(), test_fraction=0.2, seed=0)
    model = mfrec.ExplicitALS(factors=3, iterations=4).fit(train, validation=test)
    fig = mfrec.plots.learning_curve(model.history_)
    assert isinstance(fig, Figure)
    assert "val_rmse (held out)" in [line.get_label() for line in fig.axes[-1].lines]


def test_evaluate_plot_draws_the_held_out_metric(tmp_path, capsys):
    from mfrec.cli import main

    out = tmp_path / "lc.png"
    assert main(["evaluate", "synthetic", "--model", "explicit-als", "iterations=3", "--plot", str(out),
                 "--synthetic-users", "60", "--synthetic-items", "40", "--json"]) == 0
    assert out.stat().st_size > 5000


# ------------------------------------------------------------------------------------- implicit's conveniences
@pytest.fixture(scope="module")
def implicit_model():
    return mfrec.ImplicitALS(factors=5, iterations=6, solver="cholesky", dtype="float64", seed=1).fit(
        planted_interactions())


def test_similar_items_and_users_batch_equal_the_single_queries(implicit_model):
    m = implicit_model
    items, users = list(m.interactions_.item_ids[:4]), list(m.interactions_.user_ids[:3])
    batch = m.similar_items_batch(items, k=5)
    assert list(batch.columns) == ["item", "similar_item", "score", "rank"]
    for it in items:
        one = m.similar_items(it, k=5)
        rows = batch[batch["item"] == it]
        assert rows["similar_item"].tolist() == one["item"].tolist()
        np.testing.assert_allclose(rows["score"], one["score"], rtol=1e-6)
        assert rows["rank"].tolist() == list(range(1, len(one) + 1))
    ub = m.similar_users_batch(users, k=3)
    assert ub[ub["user"] == users[1]]["similar_user"].tolist() == m.similar_users(users[1], k=3)["user"].tolist()
    with pytest.raises(mfrec.UnknownIdError):
        m.similar_items_batch([items[0], "no-such-item"])


def test_recommend_new_users_equals_one_fold_in_per_user(implicit_model):
    m = implicit_model
    items = list(m.interactions_.item_ids)
    histories = {"anna": items[:3], "ben": (items[5:8], [1.0, 4.0, 2.0])}
    batch = m.recommend_new_users(histories, k=4)
    assert list(batch.columns) == ["user", "item", "score", "rank"]
    for key, history in histories.items():
        its, vals = history if isinstance(history, tuple) else (history, None)
        one = m.recommend_new_user(its, values=vals, k=4)
        assert batch[batch["user"] == key]["item"].tolist() == one["item"].tolist()


def test_explain_splits_the_score_over_the_users_items(implicit_model):
    m = implicit_model
    user = m.interactions_.user_ids[0]
    top = m.recommend(user, k=1)
    item, score = top["item"].iloc[0], top["score"].iloc[0]
    why = m.explain(user, item)
    assert list(why.columns) == ["item", "contribution", "similarity", "confidence"]
    seen = set(m.interactions_.item_ids[m.interactions_.matrix[0].indices])
    assert set(why["item"]) == seen
    # the Cholesky fit's last half-step solved x_u exactly against the final items: the parts add up to the score
    assert why["contribution"].sum() == pytest.approx(score, rel=1e-6, abs=1e-9)
    assert why["contribution"].is_monotonic_decreasing and len(m.explain(user, item, k=2)) == 2


# ------------------------------------------------------------------------------------- tuning hints, short tables
def test_a_search_says_when_the_best_value_sits_on_the_edge_of_the_grid():
    search = mfrec.GridSearch(mfrec.ExplicitALS(factors=2, iterations=3), {"regularization": [0.5, 1.0, 2.0]},
                              metric="rmse", cv=2)
    with pytest.warns(UserWarning, match="extend the grid"):
        search.fit(planted_interactions())
    assert len(search.edge_warnings_) == 1 and "regularization" in search.edge_warnings_[0]


def test_tune_prints_the_metrics_and_an_edge_note(capsys):
    from mfrec.cli import main

    assert main(["tune", "synthetic", "--model", "explicit-als", "factors=2", "iterations=2",
                 "regularization=50,100,200", "--cv", "2", "--synthetic-users", "60", "--synthetic-items", "40",
                 "--quiet"]) == 0
    out, err = capsys.readouterr()
    header = out.splitlines()[0].split()
    assert "rmse" in header and "rank" in header and not any(h.endswith(("_std", "_mean")) for h in header)
    assert "n_users" not in header and "fit_time" not in header
    assert "mfrec: note: the best regularization=" in err


def test_save_and_load_with_file_objects(implicit_model, tmp_path):
    buf = io.BytesIO()
    implicit_model.save(buf)
    buf.seek(0)
    back = mfrec.ImplicitALS.load(buf)
    np.testing.assert_array_equal(back.item_factors_, implicit_model.item_factors_)
    with open(tmp_path / "m.mfrec", "wb") as fh:
        implicit_model.save(fh)
    with open(tmp_path / "m.mfrec", "rb") as fh:
        assert mfrec.load(fh).factors == implicit_model.factors
    with pytest.raises(mfrec.ModelFileError):
        mfrec.load(io.BytesIO(b"not a zip"))


def test_events_to_implicit_takes_a_quantity_column():
    log = pd.DataFrame({"customer_id": ["a", "a", "b"], "sku": [1, 1, 2], "event": ["buy", "view", "buy"],
                        "qty": [3, 1, 2]})
    fb = mfrec.events_to_implicit(log, user="customer_id", item="sku", weights={"buy": 1.0, "view": 0.5},
                                  quantity="qty", confidence="identity")
    got = dict(zip(zip(fb.interactions.to_frame()["user"], fb.interactions.to_frame()["item"]), fb.confidence))
    assert got == {("a", 1): 3.5, ("b", 2): 2.0}
    with pytest.raises(mfrec.InvalidDataError, match="'qty'"):
        mfrec.events_to_implicit(log.assign(qty=[1, -2, 1]), user="customer_id", item="sku", event=None,
                                 quantity="qty")


def test_attribute_tables_may_carry_an_id_column():
    data = planted_interactions()
    items = pd.DataFrame({"item_id": data.item_ids, "genre": list("abcd") * (data.n_items // 4)})
    with_column = mfrec.HybridALS(factors=3, iterations=2, seed=0).fit(data, item_attributes=items)
    indexed = mfrec.HybridALS(factors=3, iterations=2, seed=0).fit(data, item_attributes=items.set_index("item_id"))
    np.testing.assert_array_equal(with_column.item_factors_, indexed.item_factors_)
    assert with_column.item_feature_names_ == indexed.item_feature_names_


def test_allow_and_deny_lists_on_every_scenario_and_per_user_exclusions(implicit_model):
    m = implicit_model
    items, users = list(m.interactions_.item_ids), list(m.interactions_.user_ids)
    pool = items[:10]
    assert set(m.similar_items(items[0], k=20, items=pool)["item"]) <= set(pool) - {items[0]}
    banned = m.similar_items(items[0], k=3)["item"].tolist()
    assert not set(m.similar_items(items[0], k=5, exclude=banned)["item"]) & set(banned)
    assert set(m.similar_users(users[0], k=20, users=users[:6])["user"]) <= set(users[1:6])
    assert set(m.recommend_users(items[0], k=50, users=users[:5])["user"]) <= set(users[:5])
    batch = m.similar_items_batch(items[:2], k=20, candidates=pool)
    assert set(batch["similar_item"]) <= set(pool)
    # per-user exclusions in a batch: each user loses only their own
    first = m.recommend_batch(users[:2], k=3)
    top_a = first[first["user"] == users[0]]["item"].tolist()
    again = m.recommend_batch(users[:2], k=3, exclude={users[0]: top_a[:2]})
    assert not set(again[again["user"] == users[0]]["item"]) & set(top_a[:2])
    assert again[again["user"] == users[1]]["item"].tolist() == first[first["user"] == users[1]]["item"].tolist()


def test_the_front_door_options_are_in_the_signature():
    import inspect

    for cls in (mfrec.ImplicitALS, mfrec.HybridALS, mfrec.Popularity):
        params = inspect.signature(cls.fit).parameters
        assert {"show_progress", "callback", "user", "item", "value"} <= set(params)
        assert all(params[n].kind is inspect.Parameter.KEYWORD_ONLY for n in ("show_progress", "callback"))
