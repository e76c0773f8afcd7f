"""data/split.py: every split partitions the entries, keeps the id maps, and honours its own rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import shared_dataset
from hypothesis import given, settings
from hypothesis import strategies as st

from mfrec import Interactions
from mfrec.data import split as S
from mfrec.exceptions import InvalidDataError, InvalidParameterError


def make_data(n_users=30, n_items=20, density=0.3, seed=0, timestamps=True, str_ids=True) -> Interactions:
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    mask[0, 0] |= not mask.any()  # tiny draws can be empty, and empty data is an error by design
    u, i = np.nonzero(mask)
    df = pd.DataFrame(
        {
            "user": [f"u{x}" for x in u] if str_ids else u * 7 + 3,
            "item": [f"i{x}" for x in i] if str_ids else i * 5 + 1,
            "rating": rng.integers(1, 6, len(u)).astype(float),
            "ts": rng.integers(1_000_000, 1_000_500, len(u)),  # many ties on purpose
        }
    )
    return Interactions.from_frame(df, value="rating", timestamp="ts" if timestamps else None)


def pairs(data: Interactions) -> set[tuple]:
    f = data.to_frame()
    return set(zip(f["user"], f["item"]))


def assert_partition(data: Interactions, split: S.Split) -> None:
    train, test = split  # unpacks
    assert train.user_index_map is data.user_index_map or train.user_index_map.equals(data.user_index_map)
    assert train.item_index_map.equals(data.item_index_map)
    assert test.user_index_map.equals(data.user_index_map) and test.item_index_map.equals(data.item_index_map)
    assert train.nnz + test.nnz == data.nnz
    p_train, p_test = pairs(train), pairs(test)
    assert not (p_train & p_test)
    assert p_train | p_test == pairs(data)
    # values and timestamps travel with their entry
    def records(d: Interactions) -> dict:
        f = d.to_frame()
        return {(u, i): (v, t) for u, i, v, t in zip(f["user"], f["item"], f["value"], f["timestamp"])}

    if data.timestamps is not None:
        assert records(train) | records(test) == records(data)


# ---------------------------------------------------------------------------------------------- property
SPLITTERS = {
    "random": lambda d, s: S.random_split(d, 0.25, seed=s),
    "per_user": lambda d, s: S.per_user_split(d, 0.3, seed=s),
    "leave_k_out": lambda d, s: S.leave_k_out(d, 2, seed=s),
    "temporal": lambda d, s: S.temporal_split(d, 0.7),
    "temporal_lko": lambda d, s: S.temporal_leave_k_out(d, 1),
    "cold_users": lambda d, s: S.cold_start_split(d, "users", 0.3, seed=s),
    "cold_items": lambda d, s: S.cold_start_split(d, "items", 0.3, seed=s),
    "kfold0": lambda d, s: next(S.kfold(d, 3, seed=s)),
}


@settings(max_examples=25, deadline=None)
@given(
    n_users=st.integers(2, 12),
    n_items=st.integers(2, 12),
    density=st.floats(0.2, 1.0),
    seed=st.integers(0, 1000),
    which=st.sampled_from(sorted(SPLITTERS)),
)
def test_every_split_partitions_the_entries(n_users, n_items, density, seed, which):
    data = make_data(n_users, n_items, density, seed)
    if data.nnz < 3 or (which == "cold_users" and (data.user_counts() > 0).sum() < 2):
        return
    if which == "cold_items" and (data.item_counts() > 0).sum() < 2:
        return
    assert_partition(data, SPLITTERS[which](data, seed))


@pytest.mark.parametrize("which", sorted(SPLITTERS))
def test_same_seed_same_split(which):
    data = make_data(seed=3)
    a, b = SPLITTERS[which](data, 5), SPLITTERS[which](data, 5)
    assert pairs(a.test) == pairs(b.test)


def test_different_seeds_differ():
    data = make_data(seed=3)
    assert pairs(S.random_split(data, seed=1).test) != pairs(S.random_split(data, seed=2).test)
    gen = np.random.default_rng(7)
    assert pairs(S.random_split(data, seed=gen).test) != pairs(S.random_split(data, seed=gen).test)


# ---------------------------------------------------------------------------------------------- rules
def test_random_split_size():
    data = make_data(seed=1)
    sp = S.random_split(data, 0.2, seed=0)
    assert sp.test.nnz == int(np.floor(0.2 * data.nnz + 0.5))
    assert sp.summary()["test_interactions"] == sp.test.nnz
    assert sp.summary()["method"] == "random_split"


def test_per_user_split_counts_and_min_train():
    data = make_data(n_users=40, n_items=15, density=0.4, seed=2)
    sp = S.per_user_split(data, 0.5, min_train=3, seed=0)
    n, t = data.user_counts(), sp.test.user_counts()
    expected = np.clip(np.minimum(np.floor(0.5 * n + 0.5), n - 3), 0, None)
    np.testing.assert_array_equal(t, expected)
    assert (sp.train.user_counts()[n > 0] >= np.minimum(n[n > 0], 3)).all()
    assert len(sp.unseen_test_users) == 0


def test_per_user_split_single_interaction_user_stays_in_train():
    df = pd.DataFrame({"user": ["a", "b", "b", "b", "b", "b"], "item": [1, 1, 2, 3, 4, 5]})
    data = Interactions.from_frame(df)
    sp = S.per_user_split(data, 0.4, seed=0)
    assert sp.test.user_counts().tolist() == [0, 2]
    assert sp.train.user_counts().tolist() == [1, 3]


def test_leave_k_out():
    data = make_data(seed=4)
    sp = S.leave_k_out(data, k=2, seed=1)
    n = data.user_counts()
    np.testing.assert_array_equal(sp.test.user_counts(), np.where(n > 2, 2, 0))


def test_temporal_split_by_time_and_by_fraction():
    data = make_data(seed=5)
    ts = data.timestamps
    cutoff = int(np.median(ts))
    sp = S.temporal_split(data, cutoff)
    assert (sp.test.timestamps >= cutoff).all() and (sp.train.timestamps < cutoff).all()
    # a datetime spelling of the same instant gives the same split
    as_text = pd.Timestamp(cutoff, unit="s").isoformat()
    assert pairs(S.temporal_split(data, as_text).test) == pairs(sp.test)
    # quantile: the test period opens at the entry of sorted position ceil(q n)
    q = 0.75
    spq = S.temporal_split(data, q)
    start = np.sort(ts)[int(np.ceil(q * data.nnz))]
    assert spq.test.nnz == int((ts >= start).sum())
    assert spq.train.timestamps.max() < spq.test.timestamps.min()
    assert 0.15 < spq.summary()["test_fraction"] < 0.35


def test_temporal_leave_k_out_matches_pandas_reference():
    data = make_data(seed=6)
    sp = S.temporal_leave_k_out(data, k=2)
    f = data.to_frame()
    f["item_idx"] = data.item_index(f["item"].to_numpy())
    f = f.sort_values(["user", "timestamp", "item_idx"])
    counts = f.groupby("user")["item"].transform("size")
    ref = f[counts > 2].groupby("user").tail(2)
    assert pairs(sp.test) == set(zip(ref["user"], ref["item"]))
    # every test entry is no earlier than every training entry of the same user
    tr, te = sp.train.to_frame(), sp.test.to_frame()
    last_train = tr.groupby("user")["timestamp"].max()
    assert (te["timestamp"].to_numpy() >= last_train.loc[te["user"]].to_numpy()).all()


def test_temporal_splits_need_timestamps():
    data = make_data(timestamps=False)
    with pytest.raises(InvalidDataError, match="temporal_split needs timestamps"):
        S.temporal_split(data, 0.5)
    with pytest.raises(InvalidDataError, match="temporal_leave_k_out needs timestamps"):
        S.temporal_leave_k_out(data)


def test_kfold_tests_every_entry_once():
    data = make_data(seed=7)
    splits = list(S.kfold(data, n_splits=4, seed=0))
    assert len(splits) == 4
    seen: list[tuple] = []
    for sp in splits:
        assert_partition(data, sp)
        seen.extend(pairs(sp.test))
    assert len(seen) == data.nnz and set(seen) == pairs(data)
    sizes = [sp.test.nnz for sp in splits]
    assert max(sizes) - min(sizes) <= 1


def test_kfold_checks_arguments_eagerly():
    data = make_data(seed=7)
    with pytest.raises(InvalidParameterError, match="n_splits must be >= 2"):
        S.kfold(data, 1)
    small = make_data(n_users=5, n_items=5, density=0.3, seed=7)
    assert small.nnz < S.MAX_FOLDS
    with pytest.raises(InvalidParameterError, match="n_splits must be <= the number of interactions"):
        S.kfold(small, small.nnz + 1)
    # one fold per interaction of a large log used to build 100,000 copies of it (23.5 GB before the kernel's kill)
    with pytest.raises(InvalidParameterError, match="n_splits must be <= 100, got 100000"):
        S.kfold(data, 100_000)


@pytest.mark.parametrize("holdout", ["users", "items"])
def test_cold_start_split_holds_out_whole_users_or_items(holdout):
    data = make_data(seed=8)
    sp = S.cold_start_split(data, holdout, fraction=0.25, seed=0)
    if holdout == "users":
        test_side, train_side, unseen, ids = sp.test.user_counts(), sp.train.user_counts(), sp.unseen_test_users, data.user_ids
        n_active = int((data.user_counts() > 0).sum())
    else:
        test_side, train_side, unseen, ids = sp.test.item_counts(), sp.train.item_counts(), sp.unseen_test_items, data.item_ids
        n_active = int((data.item_counts() > 0).sum())
    held = test_side > 0
    assert not (held & (train_side > 0)).any()
    assert held.sum() == int(np.floor(0.25 * n_active + 0.5))
    assert set(unseen) == set(ids[held])


def test_unseen_ids_and_summary():
    df = pd.DataFrame({"user": ["a", "a", "b", "c"], "item": ["x", "y", "x", "z"]})
    data = Interactions.from_frame(df)
    rows, cols, _ = data.coo()
    # put (c, z) in test only: user c and item z are unseen in training
    pos = [j for j in range(data.nnz) if data.user_ids[rows[j]] == "c"]
    mask = np.zeros(data.nnz, bool)
    mask[pos] = True
    sp = S.Split(data.take(~mask), data.take(mask), "manual")
    assert sp.unseen_test_users.tolist() == ["c"]
    assert sp.unseen_test_items.tolist() == ["z"]
    s = sp.summary()
    assert (s["train_interactions"], s["test_interactions"]) == (3, 1)
    assert (s["unseen_test_users"], s["unseen_test_items"]) == (1, 1)
    assert "1 unseen test users" in repr(sp)


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, "0.2", float("nan"), True])
def test_bad_fractions(bad):
    data = make_data()
    with pytest.raises(InvalidParameterError, match="test_fraction"):
        S.random_split(data, bad)
    with pytest.raises(InvalidParameterError, match="fraction"):
        S.cold_start_split(data, "users", bad)


def test_bad_arguments():
    data = make_data()
    with pytest.raises(InvalidParameterError, match="k must be >= 1"):
        S.leave_k_out(data, 0)
    with pytest.raises(InvalidParameterError, match="holdout"):
        S.cold_start_split(data, "rows")
    with pytest.raises(InvalidParameterError, match="min_train"):
        S.per_user_split(data, 0.2, min_train=-1)
    with pytest.raises(InvalidParameterError, match="cutoff"):
        S.temporal_split(data, "not a date")
    with pytest.raises(InvalidParameterError, match="cutoff=1 is ambiguous"):
        S.temporal_split(data, 1.0)
    with pytest.raises(InvalidParameterError, match="must be an Interactions"):
        S.random_split(pd.DataFrame({"user": [1]}))
    one = Interactions.from_frame(pd.DataFrame({"user": [1], "item": [1]}))
    with pytest.raises(InvalidDataError, match="need at least 2"):
        S.random_split(one)


def test_ml100k_temporal_and_per_user_split():
    path = shared_dataset("ml-100k")
    df = pd.read_csv(path / "u.data", sep="\t", names=["user", "item", "rating", "ts"])
    data = Interactions.from_frame(df, value="rating", timestamp="ts")
    sp = S.per_user_split(data, 0.2, seed=0)
    # every ml-100k user has >= 20 ratings, so every user is tested with round(0.2 n_u) ratings
    np.testing.assert_array_equal(sp.test.user_counts(), np.floor(0.2 * data.user_counts() + 0.5))
    tsp = S.temporal_split(data, 0.8)
    assert tsp.train.timestamps.max() < tsp.test.timestamps.min()
    assert abs(tsp.test.nnz - 20_000) < 200  # ties of time only move a handful of entries
    assert tsp.summary()["unseen_test_users"] > 0  # new users keep arriving in MovieLens
