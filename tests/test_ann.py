"""Approximate top-k (FactorModel.build_index, mfrec.ann): exact scores and exclusions, recall, persistence."""

from __future__ import annotations

import io

import numpy as np
import pytest

pytest.importorskip("usearch", reason="the 'ann' extra (usearch) is not installed")

from mfrec import ExplicitALS, ImplicitALS, datasets, load  # noqa: E402
from mfrec.exceptions import InvalidParameterError  # noqa: E402


@pytest.fixture(scope="module")
def fitted():
    data = datasets.synthetic(seed=1, n_users=400, n_items=2000, density=0.02).interactions
    return ImplicitALS(factors=16, iterations=5).fit(data)


def _recall(approx, exact, key):
    hits = [len(set(a) & set(e)) / max(len(e), 1)
            for (_, a), (_, e) in zip(approx.groupby("user")[key], exact.groupby("user")[key])]
    return float(np.mean(hits))


def test_recommend_batch_finds_the_exact_top10_with_exact_scores(fitted):
    users = list(fitted.interactions_.user_ids[:200])
    exact = fitted.recommend_batch(users, k=10)
    fitted.build_index("hnsw")
    try:
        approx = fitted.recommend_batch(users, k=10)
        assert _recall(approx, exact, "item") >= 0.95
        # every returned score is the model's exact score, lists are best first and never hold a seen item
        merged = approx.merge(exact, on=["user", "item"], suffixes=("", "_exact"))
        np.testing.assert_allclose(merged["score"], merged["score_exact"], rtol=1e-5)
        assert (approx.groupby("user")["score"].apply(lambda s: (np.diff(s.to_numpy()) <= 0).all())).all()
        seen = fitted.interactions_.to_frame()
        clash = approx.merge(seen, on=["user", "item"])
        assert clash.empty
        assert (approx.groupby("user").size() == 10).all()
    finally:
        fitted.build_index("exact")
    assert fitted._graph("recommend") is None and not hasattr(fitted, "index_")


def test_exclusions_and_allow_lists_stay_exact(fitted):
    fitted.build_index("hnsw", graphs=["recommend"])
    try:
        user = fitted.interactions_.user_ids[0]
        top = fitted.recommend(user, k=20)
        deny = list(top["item"][:5])
        rec = fitted.recommend(user, k=10, exclude=deny)
        assert not set(deny) & set(rec["item"]) and len(rec) == 10
        allow = list(fitted.interactions_.item_ids[:30])  # small allow-list: scored exactly
        ranked = fitted.recommend(user, k=10, items=allow, exclude_seen=False)
        exact = fitted.recommend(user, k=10, items=allow, exclude_seen=False)
        assert list(ranked["item"]) == list(exact["item"]) and set(ranked["item"]) <= set(allow)
        per_user = fitted.recommend_batch([user], k=10, exclude={user: deny})
        assert not set(deny) & set(per_user["item"])
    finally:
        fitted.build_index("exact")


def test_a_user_with_more_seen_items_than_candidates_still_gets_k(fitted):
    """Heavy users: the search widens, then falls back to exact; the list is never shorter than exact's."""
    fitted.build_index("hnsw", graphs=["recommend"], oversample=1.0)
    try:
        counts = np.diff(fitted.interactions_.matrix.indptr)
        heavy = fitted.interactions_.user_ids[int(np.argmax(counts))]
        assert len(fitted.recommend(heavy, k=50)) == 50
    finally:
        fitted.build_index("exact")


def test_similar_items_and_users_through_the_graphs(fitted):
    items = list(fitted.interactions_.item_ids[:100])
    exact = fitted.similar_items_batch(items, k=10)
    users = list(fitted.interactions_.user_ids[:100])
    exact_u = fitted.similar_users_batch(users, k=10)
    fitted.build_index("hnsw")
    try:
        approx = fitted.similar_items_batch(items, k=10)
        hits = [len(set(a) & set(e)) / 10 for (_, a), (_, e) in
                zip(approx.groupby("item")["similar_item"], exact.groupby("item")["similar_item"])]
        assert np.mean(hits) >= 0.95
        assert not (approx["item"] == approx["similar_item"]).any()  # never the query itself
        merged = approx.merge(exact, on=["item", "similar_item"], suffixes=("", "_exact"))
        np.testing.assert_allclose(merged["score"], merged["score_exact"], rtol=1e-4, atol=1e-6)
        approx_u = fitted.similar_users_batch(users, k=10)
        hits = [len(set(a) & set(e)) / 10 for (_, a), (_, e) in
                zip(approx_u.groupby("user")["similar_user"], exact_u.groupby("user")["similar_user"])]
        assert np.mean(hits) >= 0.95
        single = fitted.similar_items(items[0], k=5)
        assert list(single["item"]) == list(approx[approx["item"] == items[0]]["similar_item"][:5])
    finally:
        fitted.build_index("exact")


def test_the_index_is_saved_and_reopened_without_a_rebuild(fitted, tmp_path):
    users = list(fitted.interactions_.user_ids[:50])
    fitted.build_index("hnsw", expansion_search=64)
    try:
        before = fitted.recommend_batch(users, k=10)
        stats = fitted.index_["graphs"]
        assert set(stats) == {"recommend", "similar_items", "similar_users"}
        assert all(s["build_seconds"] >= 0 and s["bytes"] > 0 for s in stats.values())
        buffer = io.BytesIO()
        fitted.save(buffer)
        back = load(io.BytesIO(buffer.getvalue()))
        assert back._graph("recommend") is not None and back.index_["expansion_search"] == 64
        after = back.recommend_batch(users, k=10)
        assert before.equals(after)
    finally:
        fitted.build_index("exact")


def test_a_refit_drops_the_index_and_bad_parameters_are_refused():
    data = datasets.synthetic(seed=2, n_users=100, n_items=300).interactions
    model = ExplicitALS(factors=4, iterations=3).fit(data).build_index("hnsw")
    exact_model = ExplicitALS(factors=4, iterations=3).fit(data)
    users = list(data.user_ids[:20])
    approx = model.recommend_batch(users, k=5)  # biased model: augmented embeddings, predicted ratings
    exact = exact_model.recommend_batch(users, k=5)
    merged = approx.merge(exact, on=["user", "item"], suffixes=("", "_exact"))
    np.testing.assert_allclose(merged["score"], merged["score_exact"], rtol=1e-5)
    model.fit(data)
    assert not hasattr(model, "index_") and model._graph("recommend") is None
    for bad in (dict(kind="ivf"), dict(connectivity=1), dict(oversample=0.5), dict(graphs=["nope"])):
        with pytest.raises(InvalidParameterError):
            model.build_index(**bad)


def test_the_service_serves_from_the_index(fitted, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from mfrec.serve import create_app

    path = tmp_path / "m.mfrec"
    fitted.save(path)  # no index in the file: --index hnsw builds one at load
    user = fitted.interactions_.user_ids[3]
    with TestClient(create_app(path, index="hnsw")) as client:
        model = client.app.state.holder.state[0]
        assert model._graph("recommend") is not None
        got = client.get(f"/users/{user}/recommendations?k=10").json()["items"]
        exact = fitted.recommend(user, k=10)
        assert len(set(e["item"] for e in got) & set(exact["item"])) >= 9
    with TestClient(create_app(path, index="exact")) as client:
        assert client.app.state.holder.state[0]._graph("recommend") is None


def test_fold_in_recommendations_use_the_graph_and_leave_the_given_items_out(fitted):
    items = list(fitted.interactions_.item_ids[:5])
    exact = fitted.recommend_new_user(items, k=10)
    fitted.build_index("hnsw", graphs=["recommend"])
    try:
        approx = fitted.recommend_new_user(items, k=10)
        assert len(approx) == 10 and not set(items) & set(approx["item"])
        assert len(set(approx["item"]) & set(exact["item"])) >= 9
        merged = approx.merge(exact, on="item", suffixes=("", "_exact"))
        np.testing.assert_allclose(merged["score"], merged["score_exact"], rtol=1e-5)
    finally:
        fitted.build_index("exact")


def test_mfrec_train_index_hnsw_saves_the_graphs(tmp_path, capsys):
    from mfrec.cli import main

    out = tmp_path / "m.mfrec"
    assert main(["train", "synthetic", "--model", "implicit-als", "--index", "hnsw", "--out", str(out),
                 "iterations=2", "--quiet"]) == 0
    assert "HNSW index built" in capsys.readouterr().out
    model = load(out)
    assert set(model.index_["graphs"]) == {"recommend", "similar_items", "similar_users"}
    assert main(["train", "synthetic", "--model", "popularity", "--index", "hnsw", "--out", str(out)]) == 2
    assert "no factors to index" in capsys.readouterr().err
