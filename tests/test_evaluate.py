"""evaluation/evaluator.py: id mapping, exclusion of training items, keys, and agreement with references."""

from __future__ import annotations

import math
from itertools import islice

import numpy as np
import pandas as pd
import pytest
from conftest import shared_dataset
from test_metrics import reference, reference_auc

from mfrec import Interactions
from mfrec.data.split import per_user_split
from mfrec.evaluation import evaluator as E
from mfrec.evaluation.evaluator import evaluate
from mfrec.exceptions import InvalidParameterError, NotFittedError
from mfrec.models.base import FactorModel, Recommender


class FixedFactors(FactorModel):
    """Factors drawn from ``seed`` (or given to fit); no predict: an implicit-style model."""

    def __init__(self, factors: int = 3, seed: int = 0) -> None:
        self.factors = factors
        self.seed = seed

    def fit(self, interactions: Interactions, user_factors=None, item_factors=None) -> FixedFactors:
        rng = np.random.default_rng(self.seed)
        self.interactions_ = interactions
        self.user_factors_ = (rng.standard_normal((interactions.n_users, self.factors)) if user_factors is None
                              else np.asarray(user_factors)).astype(np.float32)
        self.item_factors_ = (rng.standard_normal((interactions.n_items, self.factors)) if item_factors is None
                              else np.asarray(item_factors)).astype(np.float32)
        return self


class MeanRating(Recommender):
    """Predicts each item's mean training rating (global mean for unknown items); ranks by it."""

    def __init__(self, shrink: float = 0.0) -> None:
        self.shrink = shrink

    def fit(self, interactions: Interactions) -> MeanRating:
        m = interactions.matrix
        self.mu_ = float(m.data.mean())
        sums = np.asarray(m.sum(axis=0)).ravel()
        counts = interactions.item_counts()
        self.item_mean_ = (sums + self.shrink * self.mu_) / np.maximum(counts + self.shrink, 1e-12)
        self.item_mean_[counts + self.shrink == 0] = self.mu_
        self.interactions_ = interactions
        return self

    def _scores(self, user_idx):
        return np.tile(self.item_mean_.astype(np.float32), (len(user_idx), 1))

    def predict(self, user_ids, item_ids):
        _, i = self._pairs(user_ids, item_ids, unknown="ignore")
        return np.where(i >= 0, self.item_mean_[np.maximum(i, 0)], self.mu_)


def toy_data(seed=0, n_users=25, n_items=18):
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < 0.4
    u, i = np.nonzero(mask)
    df = pd.DataFrame({"user": [f"u{x}" for x in u], "item": [f"i{x}" for x in i],
                       "rating": rng.integers(1, 6, len(u)).astype(float)})
    return Interactions.from_frame(df, value="rating")


def reference_evaluate(model, test: Interactions, train: Interactions, k: int, threshold=None):
    """Independent path: dense scores, argsort per user, python metrics."""
    mapped, _ = test.reindex(model.interactions_.user_index_map, model.interactions_.item_index_map)
    train_m, _ = train.reindex(model.interactions_.user_index_map, model.interactions_.item_index_map)
    f = mapped.to_frame()
    if threshold is not None:
        f = f[f["value"] >= threshold]
    users = sorted({mapped.user_index(x) for x in f["user"]})
    truth, top, excl = [], [], []
    scores = model._scores(np.array(users, dtype=np.int32)).astype(np.float64)
    for row, u in zip(scores, users):
        seen = set(train_m.matrix[u].indices.tolist())
        rel = {mapped.item_index(x) for x in f.loc[f["user"] == mapped.user_ids[u], "item"]}
        cand = [i for i in np.argsort(-row, kind="stable") if i not in seen]  # ties: lower index first
        top.append((cand[:k] + [-1] * k)[:k])
        truth.append(rel)
        excl.append(seen)
    out = reference(top, truth, k)
    out["auc"] = reference_auc(scores, truth, excl)
    recommended = {i for lst in top for i in lst if i >= 0}
    out["coverage"] = len(recommended) / model.interactions_.n_items
    return out, len(users)


def test_keys_and_values_match_the_reference():
    data = toy_data()
    train, test = per_user_split(data, 0.3, seed=1)
    model = FixedFactors(factors=4, seed=3).fit(train)
    k = 5
    got = evaluate(model, test, k=k)
    assert set(got) == {"precision@5", "recall@5", "ndcg@5", "map@5", "mrr", "hit_rate@5", "auc", "coverage@5",
                        "n_users", "n_test", "unknown_user_entries", "unknown_item_entries"}
    ref, n_users = reference_evaluate(model, test, train, k)
    assert got["n_users"] == n_users and got["n_test"] == test.nnz
    for name in ("precision", "recall", "ndcg", "map", "hit_rate", "coverage"):
        assert got[f"{name}@5"] == pytest.approx(ref[name], abs=1e-9), name
    assert got["mrr"] == pytest.approx(ref["mrr"], abs=1e-9)
    assert got["auc"] == pytest.approx(ref["auc"], abs=1e-9)
    assert got["unknown_user_entries"] == got["unknown_item_entries"] == 0


def test_rmse_mae_only_for_models_that_predict():
    data = toy_data(seed=2)
    train, test = per_user_split(data, 0.3, seed=0)
    model = MeanRating().fit(train)
    got = evaluate(model, test, k=3)
    f = test.to_frame()
    pred = model.predict(f["user"], f["item"])
    assert got["rmse"] == pytest.approx(np.sqrt(np.mean((f["value"] - pred) ** 2)))
    assert got["mae"] == pytest.approx(np.mean(np.abs(f["value"] - pred)))
    assert list(got)[:2] == ["rmse", "mae"]
    assert "rmse" not in evaluate(FixedFactors().fit(train), test)
    # only the metrics asked for
    sub = evaluate(model, test, k=3, metrics=["rmse", "ndcg@3", "auc"])
    assert set(sub) - {"n_users", "n_test", "unknown_user_entries", "unknown_item_entries"} == {"rmse", "ndcg@3", "auc"}


def test_test_ids_are_mapped_into_the_model_space_and_unknowns_counted():
    train_df = pd.DataFrame({"user": ["a", "a", "b", "b", "c"], "item": ["x", "y", "y", "z", "x"],
                             "rating": [5.0, 1, 4, 2, 3]})
    # test built independently: other id order, a new user "d" and a new item "w"
    test_df = pd.DataFrame({"user": ["d", "c", "c", "a", "b"], "item": ["x", "z", "w", "z", "x"],
                            "rating": [4.0, 5, 3, 4, 1]})
    train, test = Interactions.from_frame(train_df, value="rating"), Interactions.from_frame(test_df, value="rating")
    model = MeanRating().fit(train)
    got = evaluate(model, test, k=1)
    assert got["unknown_user_entries"] == 1  # (d, x)
    assert got["unknown_item_entries"] == 1  # (c, w)
    assert got["n_test"] == 3  # (c, z), (a, z), (b, x)
    # item means x=4, y=2.5, z=2; each user's best unseen item: a -> z (hit), b -> x (hit), c -> y (miss)
    assert got["n_users"] == 3
    assert got["precision@1"] == pytest.approx(2 / 3)
    assert got["rmse"] == pytest.approx(np.sqrt(((5 - 2) ** 2 + (4 - 2) ** 2 + (1 - 4) ** 2) / 3))


def test_relevance_threshold_and_explicit_train():
    data = toy_data(seed=4)
    train, test = per_user_split(data, 0.4, seed=2)
    model = FixedFactors(seed=1).fit(train)
    got = evaluate(model, test, k=4, relevance_threshold=4)
    ref, n_users = reference_evaluate(model, test, train, 4, threshold=4)
    assert got["n_users"] == n_users < evaluate(model, test, k=4)["n_users"]
    assert got["ndcg@4"] == pytest.approx(ref["ndcg"], abs=1e-9)
    assert got["auc"] == pytest.approx(ref["auc"], abs=1e-9)
    # excluding a different "train" changes the candidates: an empty train excludes nothing
    empty = train.take(np.zeros(0, dtype=np.int64))
    got_empty = evaluate(model, test, train=empty, k=4)
    ref_empty, _ = reference_evaluate(model, test, empty, 4)
    assert got_empty["precision@4"] == pytest.approx(ref_empty["precision"], abs=1e-9)


def test_auc_in_blocks_equals_one_block(monkeypatch):
    data = toy_data(seed=5, n_users=40)
    train, test = per_user_split(data, 0.3, seed=0)
    model = FixedFactors(seed=2).fit(train)
    whole = evaluate(model, test, metrics=["auc"])["auc"]
    monkeypatch.setattr(E, "_AUC_BLOCK_BYTES", 8 * train.n_items * 3)  # 3 users per block
    assert evaluate(model, test, metrics=["auc"])["auc"] == pytest.approx(whole, abs=1e-12)


def test_no_known_test_entry_gives_nan_metrics():
    train = Interactions.from_frame(pd.DataFrame({"user": [1, 2], "item": [1, 2]}))
    test = Interactions.from_frame(pd.DataFrame({"user": [3], "item": [1]}))
    got = evaluate(FixedFactors().fit(train), test, k=2)
    assert got["n_users"] == 0 and got["unknown_user_entries"] == 1
    assert math.isnan(got["ndcg@2"]) and math.isnan(got["auc"])


def test_errors():
    data = toy_data()
    with pytest.raises(NotFittedError):
        evaluate(FixedFactors(), data)
    model = FixedFactors().fit(data)
    with pytest.raises(InvalidParameterError, match="unknown metric 'ndgc'"):
        evaluate(model, data, metrics=["ndgc"])
    with pytest.raises(InvalidParameterError, match="asks for k=5 but k=10"):
        evaluate(model, data, metrics=["ndcg@5"])
    with pytest.raises(InvalidParameterError, match="k must be >= 1"):
        evaluate(model, data, k=0)
    with pytest.raises(InvalidParameterError, match="test must be an Interactions"):
        evaluate(model, data.to_frame())


def test_popularity_on_ml100k_u1_matches_a_pandas_reference():
    from mfrec.models.baselines import Popularity

    path = shared_dataset("ml-100k")
    names = ["user", "item", "rating", "ts"]
    base = Interactions.from_frame(pd.read_csv(path / "u1.base", sep="\t", names=names), value="rating")
    test_df = pd.read_csv(path / "u1.test", sep="\t", names=names)
    test = Interactions.from_frame(test_df, value="rating")
    got = evaluate(Popularity().fit(base), test, k=10, metrics=["precision", "hit_rate"])
    # reference: rank items by training count (ties: lower item index), drop each user's training items
    counts = base.item_counts()
    ranked_ids = base.item_ids[np.argsort(-counts, kind="stable")].tolist()
    seen = base.to_frame().groupby("user")["item"].apply(set)
    known_items = set(base.item_ids.tolist())
    t = test_df[test_df["item"].isin(known_items) & test_df["user"].isin(seen.index)]
    precisions, hits = [], []
    for user, items in t.groupby("user")["item"]:
        top = list(islice((x for x in ranked_ids if x not in seen[user]), 10))
        n_hit = len(set(top) & set(items))
        precisions.append(n_hit / 10)
        hits.append(n_hit > 0)
    assert got["n_users"] == len(precisions)
    assert got["precision@10"] == pytest.approx(np.mean(precisions), abs=1e-12)
    assert got["hit_rate@10"] == pytest.approx(np.mean(hits), abs=1e-12)
    assert got["unknown_item_entries"] == int((~test_df["item"].isin(known_items)).sum())


@pytest.mark.slow
def test_implicit_als_beats_popularity_on_ml_latest_small():
    from mfrec.models.baselines import Popularity
    from mfrec.models.implicit import ImplicitALS

    path = shared_dataset("ml-latest-small")
    df = pd.read_csv(path / "ratings.csv")
    data = Interactions.from_frame(df, user="userId", item="movieId", value="rating")
    train, test = per_user_split(data, 0.2, seed=0)
    als = evaluate(ImplicitALS(factors=32, iterations=10).fit(train), test, k=10)
    pop = evaluate(Popularity().fit(train), test, k=10)
    assert als["n_users"] == pop["n_users"] == 610
    assert als["ndcg@10"] > pop["ndcg@10"] + 0.05
    assert als["coverage@10"] > pop["coverage@10"]
    assert 0.5 < pop["auc"] < als["auc"] < 1.0


def test_training_entries_with_value_zero_are_still_excluded():
    # a 0% watch is still an interaction: the stored zero must be excluded from the ranking
    train = Interactions.from_frame(pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"], "v": [0.0, 1.0]}), value="v")
    test = Interactions.from_frame(pd.DataFrame({"user": ["a"], "item": ["y"], "v": [1.0]}), value="v")
    assert train.nnz == 2
    model = FixedFactors(factors=1).fit(train, user_factors=[[1.0], [1.0]], item_factors=[[2.0], [1.0]])  # x > y
    got = evaluate(model, test, k=1)
    assert got["precision@1"] == 1.0 and got["mrr"] == 1.0
    assert math.isnan(got["auc"])  # y is the only candidate left: no negative, user skipped by auc


def test_rating_metrics_only_for_models_that_predict_ratings():
    """rmse of an implicit fit's preference scores would be meaningless: evaluate leaves it out."""
    import mfrec

    data = mfrec.datasets.synthetic(n_users=80, n_items=50, seed=2).interactions
    train, test = mfrec.split.per_user_split(data, test_fraction=0.2, seed=0)
    assert "rmse" in E.evaluate(mfrec.ExplicitALS(factors=3, iterations=3).fit(train), test)
    assert "rmse" not in E.evaluate(mfrec.ImplicitALS(factors=3, iterations=3).fit(train), test)
    assert "rmse" not in E.evaluate(mfrec.PureSVD(factors=3).fit(train), test)
    assert "rmse" not in E.evaluate(mfrec.HybridALS(factors=3, iterations=2).fit(train), test)
    assert "rmse" in E.evaluate(mfrec.HybridALS(factors=3, iterations=2, feedback="explicit").fit(train), test)
