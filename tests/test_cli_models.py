"""The CLI end to end: train -> model file -> the four scenarios, evaluate, tune, demo; one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from mfrec import datasets
from mfrec.cli import main


@pytest.fixture(scope="module")
def ratings_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "ratings.csv"
    frame = datasets.synthetic(n_users=120, n_items=80, seed=3).interactions.to_frame()
    frame.rename(columns={"value": "rating"}).to_csv(path, index=False)
    return path


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("model", ["implicit-als", "explicit-als", "sgd", "popularity", "biases"])
def test_train_then_query(tmp_path, capsys, ratings_csv, model):
    out_file = tmp_path / f"{model}.mfrec"
    params = ["factors=4", "iterations=3"] if model in ("implicit-als", "explicit-als") else []
    params = ["factors=4", "epochs=3"] if model == "sgd" else params
    code, out, err = run(capsys, "train", str(ratings_csv), "--model", model, *params, "--out", str(out_file), "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["users"] == 120 and out_file.exists()
    code, out, err = run(capsys, "recommend", str(out_file), "--user", "5", "-k", "3", "--json")
    assert code == 0, err
    recs = json.loads(out)
    assert recs["user"] == 5 and len(recs["results"]) == 3
    assert all(isinstance(r["item"], int) for r in recs["results"])
    code, out, _ = run(capsys, "users-for-item", str(out_file), "--item", "1", "-k", "2", "--json")
    assert code == 0 and len(json.loads(out)["results"]) == 2
    for cmd, flag in (("similar-items", "--item"), ("similar-users", "--user")):
        code, out, err = run(capsys, cmd, str(out_file), flag, "2", "-k", "2")
        assert code == 0, err
        assert len(out.strip().splitlines()) == 2


def test_titles_are_shown(tmp_path, capsys, shared_data_dir):
    out_file = tmp_path / "ml.mfrec"
    code, _, err = run(capsys, "train", "ml-100k", "--data-dir", str(shared_data_dir), "--model", "popularity",
                       "--out", str(out_file))
    assert code == 0, err
    code, out, _ = run(capsys, "recommend", str(out_file), "--user", "1", "-k", "1")
    assert code == 0 and "(19" in out  # a title with its year, e.g. "Star Wars (1977)"


def test_evaluate_and_tune(tmp_path, capsys, ratings_csv):
    code, out, err = run(capsys, "evaluate", str(ratings_csv), "--model", "explicit-als", "factors=3", "--json")
    assert code == 0, err
    metrics = json.loads(out)
    assert 0 < metrics["rmse"] < 2 and 0 <= metrics["ndcg@10"] <= 1
    heat = tmp_path / "heat.png"
    code, out, err = run(capsys, "tune", str(ratings_csv), "--model", "explicit-als", "factors=2,4",
                         "regularization=1,10", "iterations=5", "--cv", "2", "--plot", str(heat), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["metric"] == "rmse" and len(result["results"]) == 4
    assert set(result["best_params"]) == {"factors", "regularization", "iterations"}
    assert heat.read_bytes().startswith(b"\x89PNG")
    code, out, err = run(capsys, "evaluate", str(ratings_csv), "--model", "implicit-als", "factors=4", "--cv", "2",
                         "--json")
    assert code == 0, err
    assert {row["fold"] for row in json.loads(out)["folds"]} >= {"mean", "std"}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "{csv}", "--model", "explicit-als", "factors=-1", "--out", "{tmp}/m.mfrec"], "factors"),
        (["train", "{csv}", "--model", "explicit-als", "nonsense", "--out", "{tmp}/m.mfrec"], "name=value"),
        (["train", "{csv}", "--model", "explicit-als", "colour=3", "--out", "{tmp}/m.mfrec"], "colour"),
        (["recommend", "{tmp}/missing.mfrec", "--user", "1"], "no such model file"),
        (["data", "info", "no-such-dataset"], "no-such-dataset"),
    ],
)
def test_errors_are_one_line_exit_2(tmp_path, ratings_csv, argv, message):
    argv = [a.format(csv=ratings_csv, tmp=tmp_path) for a in argv]
    result = subprocess.run([sys.executable, "-m", "mfrec", *argv], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and message in result.stderr, result.stderr


def test_unknown_user_is_one_line(tmp_path, capsys, ratings_csv):
    out_file = tmp_path / "p.mfrec"
    assert run(capsys, "train", str(ratings_csv), "--model", "popularity", "--out", str(out_file))[0] == 0
    code, out, err = run(capsys, "recommend", str(out_file), "--user", "99999")
    assert code == 2 and out == "" and err.count("\n") == 1 and "99999" in err


def test_demo_runs_offline(tmp_path, capsys):
    code, out, err = run(capsys, "demo", "--out", str(tmp_path / "figs"), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert set(result["metrics"]) == {"popularity", "biases", "explicit-als", "implicit-als"}
    assert result["metrics"]["implicit-als"]["ndcg@10"] > result["metrics"]["popularity"]["ndcg@10"]
    assert set(result["scenarios"]) == {"recommend", "recommend_users", "similar_items", "similar_users"}
    for path in result["figures"].values():
        assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert result["seconds"] < 60


def test_tune_implicit_on_a_ranking_metric(capsys, ratings_csv):
    code, out, err = run(capsys, "tune", str(ratings_csv), "--model", "implicit-als", "factors=2,4", "alpha=1,5",
                         "iterations=3", "--cv", "2", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["metric"] == "ndcg@10" and len(result["results"]) == 4
    assert 0 <= result["best_score"] <= 1


def test_hybrid_trains_on_dataset_attributes(tmp_path, capsys, shared_data_dir):
    out_file = tmp_path / "hybrid.mfrec"
    code, out, err = run(capsys, "train", "ml-100k", "--data-dir", str(shared_data_dir), "--model", "hybrid",
                         "factors=8", "iterations=3", "--out", str(out_file), "--json")
    assert code == 0, err
    code, out, err = run(capsys, "similar-items", str(out_file), "--item", "50", "-k", "3", "--json")
    assert code == 0, err
    assert len(json.loads(out)["results"]) == 3


def test_content_without_attributes_is_a_clear_error(capsys, ratings_csv, tmp_path):
    code, out, err = run(capsys, "train", str(ratings_csv), "--model", "content", "--out", str(tmp_path / "c.mfrec"))
    assert code == 2 and "needs attributes" in err


def test_train_on_a_local_dask_cluster(tmp_path, capsys, ratings_csv):
    pytest.importorskip("distributed", reason="the 'distributed' extra (dask) is not installed")
    out_file = tmp_path / "dask.mfrec"
    code, out, err = run(capsys, "train", str(ratings_csv), "--model", "implicit-als", "factors=3", "iterations=2",
                         "solver=cholesky", "--workers", "2", "--out", str(out_file), "--json")
    assert code == 0, err
    local = tmp_path / "local.mfrec"
    assert run(capsys, "train", str(ratings_csv), "--model", "implicit-als", "factors=3", "iterations=2",
               "solver=cholesky", "--out", str(local), "--json")[0] == 0
    import mfrec

    a, b = mfrec.load(out_file), mfrec.load(local)
    np.testing.assert_allclose(a.user_factors_, b.user_factors_, atol=1e-4)
    code, out, err = run(capsys, "train", str(ratings_csv), "--model", "sgd", "--workers", "2",
                         "--out", str(tmp_path / "x.mfrec"))
    assert code == 2 and "implicit-als, explicit-als and hybrid" in err


def test_tune_and_cross_validate_hybrid_with_dataset_attributes(capsys):
    code, out, err = run(capsys, "tune", "synthetic", "--model", "hybrid", "factors=4,8", "iterations=2", "--cv", "2",
                         "--json")
    assert code == 0, err
    result = json.loads(out)
    assert len(result["results"]) == 2 and 0 < result["best_score"] <= 1
    code, out, err = run(capsys, "evaluate", "synthetic", "--model", "content", "--cv", "2", "--json")
    assert code == 0, err
    assert len(json.loads(out)["folds"]) == 4  # two folds, mean, std


def test_regularization_scaling_none_from_the_command_line(tmp_path, capsys):
    """The CLI reads `none` as None; regularization_scaling takes it as "none" (a NAME=VALUE user types none)."""
    from mfrec.cli import main

    assert main(["evaluate", "synthetic", "--model", "sgd", "regularization_scaling=none", "epochs=2",
                 "--quiet", "--json"]) == 0
    assert main(["evaluate", "synthetic", "--model", "explicit-als", "regularization_scaling=count",
                 "regularization=0.1", "iterations=2", "--quiet", "--json"]) == 0
    capsys.readouterr()
