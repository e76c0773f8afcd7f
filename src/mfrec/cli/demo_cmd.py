"""``mfrec demo``: the main job, offline on the synthetic dataset (or a real one with --dataset/--data-dir).

It trains an explicit model (ExplicitALS) and an implicit one (ImplicitALS), compares them with the baselines
(Popularity, Biases) on a per-user 80/20 split, shows the four scenarios for a sample user and item (with titles
where the dataset has them), and writes figures: training-loss curves, the CV heatmap over factors x
regularization, and a 2-D PCA map of the item factors coloured by genre.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mfrec.cli._common import print_json
from mfrec.cli.data_cmd import format_summary


def register(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="train, evaluate and recommend on the synthetic dataset, offline")
    demo.add_argument("--dataset", default="synthetic", help="dataset name (default: synthetic, offline)")
    demo.add_argument("--data-dir", help="folder with the dataset files")
    demo.add_argument("--out", default="mfrec-demo", help="folder for the figures (default: ./mfrec-demo)")
    demo.add_argument("--no-figures", action="store_true", help="skip the figures")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--json", action="store_true", help="print JSON for machines")
    demo.add_argument("--quiet", action="store_true")
    demo.set_defaults(func=demo_command)


def _genre_labels(dataset: Any, item_ids: np.ndarray) -> list[Any] | None:
    attrs = getattr(dataset, "item_attributes", None)
    if attrs is None or "genres" not in getattr(attrs, "columns", []):
        return None
    genres = attrs["genres"].reindex(item_ids)
    return [g.split("|")[0] if isinstance(g, str) and g else None for g in genres]


def _title(dataset: Any, item: Any) -> str:
    titles = getattr(dataset, "item_titles", None)
    if titles is not None and item in titles.index:
        return f"  {titles.loc[item]}"
    return ""


def demo_command(args: argparse.Namespace) -> int:
    from mfrec.data import datasets
    from mfrec.data.split import per_user_split
    from mfrec.evaluation.evaluator import evaluate
    from mfrec.models.baselines import Biases, Popularity
    from mfrec.models.explicit import ExplicitALS
    from mfrec.models.implicit import ImplicitALS

    say = (lambda *a: None) if (args.json or args.quiet) else print
    t0 = time.perf_counter()
    if args.dataset == "synthetic":
        dataset = datasets.synthetic(seed=args.seed)
    else:
        dataset = datasets.load(args.dataset, data_dir=args.data_dir)
    data = dataset.interactions
    say(format_summary({"source": dataset.name} | data.describe()))
    split = per_user_split(data, test_fraction=0.2, seed=args.seed)
    train, test = split.train, split.test
    say(f"\nsplit: per-user 80/20, seed {args.seed}: {train.nnz:,} train / {test.nnz:,} test interactions")

    models = {
        "popularity": Popularity(),
        "biases": Biases(),
        "explicit-als": ExplicitALS(seed=args.seed),
        "implicit-als": ImplicitALS(seed=args.seed),
    }
    results: dict[str, dict[str, Any]] = {}
    for name, model in models.items():
        start = time.perf_counter()
        model.fit(train)
        fit_s = time.perf_counter() - start
        metrics = evaluate(model, test, k=10)
        results[name] = {"fit_seconds": round(fit_s, 3)} | {
            k: v for k, v in metrics.items() if k in ("rmse", "mae", "precision@10", "ndcg@10", "recall@10", "auc")
        }
    table = pd.DataFrame(results).T
    say("\nmetrics on the held-out 20% (ranking: training items excluded)")
    say(table.to_string(float_format=lambda v: f"{v:.4f}", na_rep="-"))

    explicit, implicit = models["explicit-als"], models["implicit-als"]
    counts = train.user_counts()
    user = train.user_ids[int(np.argsort(counts)[len(counts) // 2])]  # a typical user
    item = train.item_ids[int(np.argmax(train.item_counts()))]  # the most popular item
    scenarios = {
        "recommend": explicit.recommend(user, k=5),
        "recommend_users": implicit.recommend_users(item, k=5),
        "similar_items": implicit.similar_items(item, k=5),
        "similar_users": implicit.similar_users(user, k=5),
    }
    say(f"\nitems for user {user} (explicit ALS, predicted ratings):")
    for row in scenarios["recommend"].itertuples():
        say(f"  {row.item!s:>8}  {row.score:6.3f}{_title(dataset, row.item)}")
    say(f"\nusers most likely to want item {item}{_title(dataset, item)} (implicit ALS):")
    say("  " + ", ".join(f"{r.user} ({r.score:.3f})" for r in scenarios["recommend_users"].itertuples()))
    say(f"\nitems like item {item}{_title(dataset, item)}:")
    for row in scenarios["similar_items"].itertuples():
        say(f"  {row.item!s:>8}  {row.score:6.3f}{_title(dataset, row.item)}")
    say(f"\nusers like user {user}: " + ", ".join(f"{r.user} ({r.score:.3f})"
                                              for r in scenarios["similar_users"].itertuples()))

    figures: dict[str, str] = {}
    if not args.no_figures:
        from mfrec import plots
        from mfrec.evaluation.search import GridSearch

        out = Path(args.out)
        figures["explicit_loss"] = str(out / "explicit-als-loss.png")
        plots.learning_curve(explicit.history_, path=figures["explicit_loss"], title="ExplicitALS training loss")
        figures["implicit_loss"] = str(out / "implicit-als-loss.png")
        plots.learning_curve(implicit.history_, path=figures["implicit_loss"], title="ImplicitALS training loss")
        search = GridSearch(ExplicitALS(iterations=10, seed=args.seed),
                            {"factors": [2, 5, 10], "regularization": [1.0, 5.0, 10.0, 20.0]}, metric="rmse", cv=2)
        search.fit(train)
        figures["cv_heatmap"] = str(out / "cv-heatmap.png")
        plots.cv_heatmap(search.results_, x="factors", y="regularization", metric="rmse", path=figures["cv_heatmap"])
        labels = _genre_labels(dataset, train.item_ids)
        figures["item_map"] = str(out / "item-factors.png")
        plots.item_factor_map(implicit.item_factors_, labels=labels, path=figures["item_map"],
                              title="ImplicitALS item factors (PCA), coloured by genre")
        say(f"\ntuning on the training part (2-fold CV): best {search.best_params_}, rmse {search.best_score_:.4f}")
        say("figures: " + ", ".join(figures.values()))
    seconds = time.perf_counter() - t0
    say(f"\ndone in {seconds:.1f} s")
    if args.json:
        print_json({
            "dataset": dataset.name,
            "summary": data.describe(),
            "metrics": results,
            "sample_user": user,
            "sample_item": item,
            "scenarios": {k: v.to_dict(orient="records") for k, v in scenarios.items()},
            "figures": figures,
            "seconds": round(seconds, 2),
        })
    return 0
