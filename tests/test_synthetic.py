"""The synthetic dataset: determinism, shapes, ranges, power-law popularity, attributes with signal."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mfrec import datasets
from mfrec.exceptions import InvalidParameterError


@pytest.fixture(scope="module")
def ds():
    return datasets.synthetic(seed=0)


def affinity(ds, u, i):
    return np.einsum("nf,nf->n", ds.true_user_factors[u], ds.true_item_factors[i])


def test_shapes_and_ranges(ds):
    x = ds.interactions
    assert x.shape == (1000, 500)
    assert ds.true_user_factors.shape == (1000, 8) and ds.true_item_factors.shape == (500, 8)
    assert 0.04 < x.density < 0.06
    assert set(np.unique(x.matrix.data)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert 3.0 < x.matrix.data.mean() < 4.0
    assert x.user_counts().min() >= 5 and x.item_counts().min() >= 1
    assert x.timestamps is not None
    assert ds.kind == "explicit" and ds.name == "synthetic"
    assert list(ds.item_attributes.index) == list(x.item_ids)
    assert list(ds.user_attributes.index) == list(x.user_ids)
    assert ds.item_titles.index.equals(ds.item_attributes.index)


def test_deterministic_by_seed():
    a, b, c = datasets.synthetic(200, 100, seed=3), datasets.synthetic(200, 100, seed=3), datasets.synthetic(200, 100, seed=4)
    assert (a.interactions.matrix != b.interactions.matrix).nnz == 0
    np.testing.assert_array_equal(a.interactions.timestamps, b.interactions.timestamps)
    pd.testing.assert_frame_equal(a.events, b.events)
    pd.testing.assert_frame_equal(a.item_attributes, b.item_attributes)
    np.testing.assert_array_equal(a.true_user_factors, b.true_user_factors)
    assert a.interactions.matrix.shape == c.interactions.matrix.shape
    assert (a.interactions.matrix != c.interactions.matrix).nnz > 0
    g = np.random.default_rng(3)
    assert datasets.synthetic(50, 40, seed=g).interactions.nnz > 0  # a Generator is accepted


def test_power_law_popularity_and_activity(ds):
    counts = np.sort(ds.interactions.item_counts())[::-1]
    top = counts[: len(counts) // 10].sum() / counts.sum()
    assert top > 0.3  # uniform popularity would give about 0.1
    users = np.sort(ds.interactions.user_counts())[::-1]
    assert users[: len(users) // 10].sum() / users.sum() > 0.25
    flat = datasets.synthetic(seed=0, popularity_exponent=0.0, exposure=0.0).interactions.item_counts()
    flat = np.sort(flat)[::-1]
    assert flat[:50].sum() / flat.sum() < top


def test_ratings_and_exposure_follow_the_planted_factors(ds):
    u, i, r = ds.interactions.coo()
    assert np.corrcoef(r, affinity(ds, u, i))[0, 1] > 0.5
    # implicit signal: interacted items have higher affinity than random pairs
    g = np.random.default_rng(0)
    ru, ri = g.integers(0, 1000, 20_000), g.integers(0, 500, 20_000)
    assert affinity(ds, u, i).mean() > affinity(ds, ru, ri).mean() + 0.3


def test_attributes_carry_signal(ds):
    q, p = ds.true_item_factors, ds.true_user_factors
    genres = ds.item_attributes["genres"]
    names = sorted({g for row in genres for g in row.split("|")})
    assert len(names) == 8 and (genres != "").all()
    for k, name in enumerate(["Action", "Comedy", "Drama"]):
        flag = genres.str.split("|").apply(lambda gs, n=name: n in gs).to_numpy(dtype=float)
        assert np.corrcoef(flag, q[:, k])[0, 1] > 0.4
    assert np.corrcoef(ds.item_attributes["year"], q[:, 0])[0, 1] > 0.5
    assert np.corrcoef(ds.user_attributes["age"], p[:, 1])[0, 1] > 0.5
    means = ds.user_attributes.assign(p1=p[:, 1]).groupby("age_group")["p1"].mean()
    assert means["55+"] > means["25-34"] > means["<18"]
    assert ds.item_attribute_spec == {"multilabel": {"genres": "|"}, "numeric": ["year"], "text": ["title"]}
    assert ds.user_attribute_spec == {"categorical": ["age_group"], "numeric": ["age"]}


def test_event_log(ds):
    ev = ds.events
    assert list(ev.columns) == ["user", "item", "timestamp", "event", "fraction"]
    assert set(ev["event"].cat.categories) == {"view", "click", "purchase"}
    assert ev["timestamp"].is_monotonic_increasing
    views = ev[ev["event"] == "view"]
    assert len(views) == ds.interactions.nnz
    assert views["fraction"].between(0, 1).all()
    assert ev.loc[ev["event"] != "view", "fraction"].isna().all()
    n_click, n_buy = (ev["event"] == "click").sum(), (ev["event"] == "purchase").sum()
    assert 0 < n_buy < n_click < len(views)
    # a click follows its view, a purchase its click
    first = ev.groupby(["user", "item", "event"], observed=True)["timestamp"].min().unstack()
    clicked = first.dropna(subset=["click"])
    assert (clicked["click"] > clicked["view"]).all()
    bought = first.dropna(subset=["purchase"])
    assert (bought["purchase"] > bought["click"]).all()
    # more engaged events on items the user likes
    uidx = ds.interactions.user_index(ev["user"].to_numpy())
    iidx = ds.interactions.item_index(ev["item"].to_numpy())
    s = affinity(ds, uidx, iidx)
    assert s[(ev["event"] == "purchase").to_numpy()].mean() > s[(ev["event"] == "view").to_numpy()].mean()
    assert np.corrcoef(views["fraction"], s[(ev["event"] == "view").to_numpy()])[0, 1] > 0.5


def test_fast_for_default_size():
    datasets.synthetic(seed=1)
    start = time.perf_counter()
    datasets.synthetic(seed=2)
    assert time.perf_counter() - start < 2.0  # < 1 s on an idle machine; slack for a shared CI box


def test_load_synthetic_and_validation():
    assert datasets.load("synthetic", n_users=30, n_items=20).interactions.shape == (30, 20)
    for kwargs in ({"n_users": 0}, {"factors": 0}, {"density": 0.0}, {"density": 1.5}, {"noise": -1.0},
                   {"n_items": 2.5}, {"seed": -1}):
        with pytest.raises(InvalidParameterError):
            datasets.synthetic(**kwargs)


@settings(max_examples=25, deadline=None)
@given(
    n_users=st.integers(1, 40),
    n_items=st.integers(1, 30),
    factors=st.integers(1, 12),
    density=st.floats(0.01, 1.0),
    seed=st.integers(0, 2**31),
)
def test_property_small_shapes(n_users, n_items, factors, density, seed):
    ds = datasets.synthetic(n_users, n_items, factors, density=density, seed=seed, min_user_interactions=1)
    x = ds.interactions
    assert x.shape == (n_users, n_items)
    assert (x.user_counts() >= 1).all() and (x.item_counts() >= 1).all()
    assert x.nnz <= n_users * n_items
    assert ((x.matrix.data >= 1) & (x.matrix.data <= 5)).all()
    assert ds.true_user_factors.shape == (n_users, factors)
    assert (ds.item_attributes["genres"] != "").all()
