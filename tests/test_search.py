"""evaluation/search.py: cross_validate, GridSearch and RandomSearch on tiny estimators."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from test_evaluate import FixedFactors, MeanRating, toy_data

from mfrec import Interactions
from mfrec.data.split import kfold, random_split
from mfrec.evaluation.evaluator import evaluate
from mfrec.evaluation.search import GridSearch, RandomSearch, cross_validate
from mfrec.exceptions import InvalidParameterError, ModelFitError


class Recording(MeanRating):
    """MeanRating that remembers every (user, item) pair it was fitted on."""

    seen: list[set] = []

    def fit(self, interactions: Interactions) -> Recording:
        f = interactions.to_frame()
        Recording.seen.append(set(zip(f["user"], f["item"])))
        return super().fit(interactions)


class Fragile(MeanRating):
    """Fails to fit when ``shrink`` is negative."""

    def fit(self, interactions: Interactions) -> Fragile:
        if self.shrink < 0:
            raise FloatingPointError("negative shrinkage diverged")
        return super().fit(interactions)


def pairs(data: Interactions) -> set:
    f = data.to_frame()
    return set(zip(f["user"], f["item"]))


def test_cross_validate_rows_are_per_fold_evaluations():
    data = toy_data(seed=1)
    table = cross_validate(MeanRating(shrink=2.0), data, cv=3, k=5, seed=4)
    assert list(table.index) == [0, 1, 2, "mean", "std"]
    for f, split in enumerate(kfold(data, 3, seed=4)):
        ref = evaluate(MeanRating(shrink=2.0).fit(split.train), split.test, train=split.train, k=5)
        for key, value in ref.items():
            assert table.loc[f, key] == pytest.approx(value, nan_ok=True), key
    folds = table.loc[[0, 1, 2], "rmse"].astype(float)
    assert table.loc["mean", "rmse"] == pytest.approx(folds.mean())
    assert table.loc["std", "rmse"] == pytest.approx(folds.std(ddof=0))
    assert {"fit_time", "score_time", "ndcg@5", "n_users"} <= set(table.columns)


def test_cross_validate_with_given_folds_and_metric_subset():
    data = toy_data(seed=2)
    folds = [random_split(data, 0.2, seed=s) for s in range(2)]
    table = cross_validate(MeanRating(), None, cv=folds, metrics=["rmse", "auc"])
    assert len(table) == 4
    assert {"rmse", "auc"} <= set(table.columns) and "ndcg@10" not in table.columns
    as_tuples = cross_validate(MeanRating(), data, cv=[(s.train, s.test) for s in folds], metrics=["rmse"])
    assert as_tuples.loc[0, "rmse"] == pytest.approx(table.loc[0, "rmse"])


def test_cross_validate_in_processes_equals_serial():
    data = toy_data(seed=3)
    serial = cross_validate(MeanRating(shrink=1.0), data, cv=3, metrics=["rmse", "ndcg"])
    parallel = cross_validate(MeanRating(shrink=1.0), data, cv=3, metrics=["rmse", "ndcg"], n_jobs=2)
    cols = ["rmse", "ndcg@10"]
    pd.testing.assert_frame_equal(serial[cols], parallel[cols])


def test_a_failing_fold_is_reported_with_its_fold_and_parameters():
    data = toy_data()
    with pytest.raises(ModelFitError, match=r"fold 0: fitting Fragile\(shrink=-1\) failed: FloatingPointError"):
        cross_validate(Fragile(shrink=-1), data, cv=2)


def test_cross_validate_argument_errors():
    data = toy_data()
    with pytest.raises(InvalidParameterError, match="cv must be >= 2"):
        cross_validate(MeanRating(), data, cv=1)
    with pytest.raises(InvalidParameterError, match=r"cv\[0\] is not a \(train, test\) pair"):
        cross_validate(MeanRating(), data, cv=[data])
    with pytest.raises(InvalidParameterError, match="n_jobs"):
        cross_validate(MeanRating(), data, n_jobs=0)
    with pytest.raises(InvalidParameterError, match="not an estimator"):
        cross_validate(object(), data)


def test_grid_search_selects_lowest_rmse_and_refits_on_all_data():
    data = toy_data(seed=5, n_users=40, n_items=20)
    template = MeanRating()
    search = GridSearch(template, {"shrink": [0.0, 3.0, 30.0]}, metric="rmse", cv=3, seed=1)
    assert search.fit(data) is search
    res = search.results_
    assert len(res) == 3 and list(res["shrink"]) == [0.0, 3.0, 30.0]
    assert {"rmse_mean", "rmse_std", "mae_mean", "ndcg@10_mean", "fit_time_mean", "rank"} <= set(res.columns)
    # independent: cross-validate each candidate on the same folds
    means = [cross_validate(MeanRating(shrink=s), data, cv=3, seed=1).loc["mean", "rmse"] for s in (0.0, 3.0, 30.0)]
    np.testing.assert_allclose(res["rmse_mean"], means)
    best = int(np.argmin(means))
    assert search.best_params_ == {"shrink": [0.0, 3.0, 30.0][best]}
    assert search.best_score_ == pytest.approx(min(means))
    assert res.loc[best, "rank"] == 1
    assert search.best_estimator_.interactions_.nnz == data.nnz
    assert search.best_estimator_.shrink == search.best_params_["shrink"]
    assert not hasattr(template, "interactions_")  # the template is never fitted


def test_grid_search_higher_is_better_for_ranking_metrics():
    data = toy_data(seed=6)
    grid = [{"seed": [0, 1, 2, 3]}, {"factors": [1], "seed": [9]}]
    search = GridSearch(FixedFactors(), grid, metric="ndcg", cv=2, k=5).fit(data)
    assert len(search.results_) == 5
    assert search.best_score_ == pytest.approx(search.results_["ndcg@5_mean"].max())
    assert search.results_.loc[search.best_index_, "rank"] == 1


def test_search_never_sees_the_held_out_test_set():
    data = toy_data(seed=7)
    train, test = random_split(data, 0.25, seed=0)
    held_out = pairs(test)
    Recording.seen = []
    search = GridSearch(Recording(), {"shrink": [0.0, 5.0]}, cv=3).fit(train)
    assert len(Recording.seen) == 2 * 3 + 1  # candidates x folds + the refit
    for fitted_on in Recording.seen:
        assert not (fitted_on & held_out)
        assert fitted_on <= pairs(train)
    assert Recording.seen[-1] == pairs(train)  # the refit uses all of the training data and only it
    assert search.best_estimator_.interactions_.nnz == train.nnz


def test_random_search_is_reproducible_and_draws_n_iter_candidates():
    data = toy_data(seed=8)
    space = {"shrink": scipy.stats.uniform(0, 20)}
    a = RandomSearch(MeanRating(), space, n_iter=4, metric="mae", cv=2, seed=3).fit(data)
    b = RandomSearch(MeanRating(), space, n_iter=4, metric="mae", cv=2, seed=3).fit(data)
    c = RandomSearch(MeanRating(), space, n_iter=4, metric="mae", cv=2, seed=4).fit(data)
    assert len(a.results_) == 4
    pd.testing.assert_frame_equal(a.results_.drop(columns=[x for x in a.results_ if "time" in x]),
                                  b.results_.drop(columns=[x for x in b.results_ if "time" in x]))
    assert not np.allclose(a.results_["shrink"], c.results_["shrink"])
    assert ((a.results_["shrink"] >= 0) & (a.results_["shrink"] <= 20)).all()
    assert a.best_score_ == pytest.approx(a.results_["mae_mean"].min())
    assert isinstance(a.best_params_["shrink"], float)


def test_search_errors_are_clear():
    data = toy_data()
    with pytest.raises(InvalidParameterError, match="has no parameter 'shrinkage'"):
        GridSearch(MeanRating(), {"shrinkage": [1]}).fit(data)
    with pytest.raises(InvalidParameterError, match="metric 'rmse' is not available for FixedFactors"):
        GridSearch(FixedFactors(), {"seed": [0, 1]}, metric="rmse", cv=2).fit(data)
    with pytest.raises(InvalidParameterError, match="unknown metric"):
        GridSearch(MeanRating(), {"shrink": [1]}, metric="accuracy").fit(data)
    with pytest.raises(InvalidParameterError, match="n_iter must be >= 1"):
        RandomSearch(MeanRating(), {"shrink": [1]}, n_iter=0).fit(data)
    with pytest.raises(ModelFitError, match="Fragile"):
        GridSearch(Fragile(), {"shrink": [1.0, -1.0]}, cv=2).fit(data)


@pytest.mark.slow
def test_grid_search_over_explicit_als_regularization_on_ml100k():
    from conftest import shared_dataset

    from mfrec.models.explicit import ExplicitALS

    path = shared_dataset("ml-100k")
    df = pd.read_csv(path / "u1.base", sep="\t", names=["user", "item", "rating", "ts"])
    data = Interactions.from_frame(df, value="rating")
    grid = {"regularization": [0.01, 1.0, 10.0]}
    search = GridSearch(ExplicitALS(factors=8, iterations=8), grid, metric="rmse", cv=3).fit(data)
    # almost no regularization overfits 8 factors badly on ml-100k
    assert search.best_params_["regularization"] != 0.01
    assert search.results_.loc[0, "rmse_mean"] > search.best_score_ + 0.05
    assert 0.85 < search.best_score_ < 1.05


def test_fit_params_reach_every_fold_and_the_refit():
    """Attribute-aware models cross-validate and tune with their attribute tables (fit_params)."""
    from model_conformance import planted_interactions
    from test_linear_baselines import item_frame, user_frame

    from mfrec.models.content import ContentBased, HybridALS

    data = planted_interactions(seed=41)
    attrs = {"user_attributes": user_frame(), "item_attributes": item_frame()}
    folds = [(s.train, s.test) for s in kfold(data, n_splits=2, seed=0)]
    model = HybridALS(factors=3, iterations=3)
    table = cross_validate(model, None, cv=folds, metrics=["ndcg"], fit_params=attrs)
    for f, (train, test) in enumerate(folds):
        manual = evaluate(HybridALS(factors=3, iterations=3).fit(train, **attrs), test, train=train, metrics=["ndcg"])
        assert table.loc[f, "ndcg@10"] == pytest.approx(manual["ndcg@10"])
    # without the tables, a model that needs them fails with the fold named
    with pytest.raises(ModelFitError, match="fold 0"):
        cross_validate(ContentBased(), None, cv=folds)
    with pytest.raises(InvalidParameterError, match="fit_params"):
        cross_validate(model, None, cv=folds, fit_params=[("item_attributes", 1)])
    search = GridSearch(ContentBased(), {"regularization": [0.5, 5.0]}, metric="ndcg", cv=folds)
    search.fit(data, item_attributes=item_frame())
    best = search.best_estimator_
    assert len(best.item_feature_names_) > 0 and best.item_factors_.shape[0] == best.interactions_.n_items
    assert search.results_["ndcg@10_mean"].notna().all()
