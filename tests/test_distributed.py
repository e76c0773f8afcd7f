"""Distributed ALS on dask (mfrec.distributed): same factors as the single-process fit, worker loss, dask input.

One ``LocalCluster(n_workers=2, processes=True, threads_per_worker=1)`` is started per module (a few seconds);
every comparison is against the local fit with the same seed, which is the oracle.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

distributed = pytest.importorskip(
    "distributed", reason="dask.distributed is not installed (pip install 'mfrec[distributed]')"
)
dd = pytest.importorskip("dask.dataframe", reason="dask.dataframe is not installed")

from conftest import worker_killer  # noqa: E402
from mfrec.data.interactions import Interactions  # noqa: E402
from mfrec.distributed import dask as mdask  # noqa: E402
from mfrec.distributed import fit, from_dask_dataframe, read_parquet  # noqa: E402
from mfrec.exceptions import InvalidDataError, InvalidParameterError, ModelFitError  # noqa: E402
from mfrec.models.explicit import ExplicitALS, SGDFactorization  # noqa: E402
from mfrec.models.implicit import ImplicitALS  # noqa: E402


def _log(seed: int = 0, n_users: int = 120, n_items: int = 80, n: int = 1500) -> pd.DataFrame:
    """An interaction log with string ids, power-law items and repeated pairs (summed by from_frame)."""
    r = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, n_items + 1) ** 0.7
    return pd.DataFrame({
        "user": [f"u{k:03d}" for k in r.integers(0, n_users, n)],
        "item": [f"i{k:03d}" for k in r.choice(n_items, n, p=p / p.sum())],
        "rating": r.integers(1, 6, n).astype(float),
    })


@pytest.fixture(scope="module")
def log() -> pd.DataFrame:
    return _log()


@pytest.fixture(scope="module")
def inter(log) -> Interactions:
    return Interactions.from_frame(log, user="user", item="item", value="rating")


def _same_recommendations(a, b, users, k=5) -> None:
    for u in users:
        ra, rb = a.recommend(u, k=k), b.recommend(u, k=k)
        assert list(ra["item"]) == list(rb["item"]), u
        np.testing.assert_allclose(ra["score"].to_numpy(), rb["score"].to_numpy(), rtol=1e-4, atol=1e-6)


def _same_up_to_ties(a, b, users, k=5, atol=1e-3) -> None:
    """The same top-k scores within ``atol``, and the same items wherever no other score is within ``2 atol``."""
    for u in users:
        ra, rb = a.recommend(u, k=k + 1), b.recommend(u, k=k + 1)
        sa = ra["score"].to_numpy()
        np.testing.assert_allclose(rb["score"].to_numpy()[:k], sa[:k], atol=atol)
        for pos in range(k):
            gaps = np.abs(np.delete(sa, pos) - sa[pos])
            if gaps.min() > 2 * atol:
                assert ra["item"].iloc[pos] == rb["item"].iloc[pos], (u, pos)


# ------------------------------------------------------------------------------------------ same result
@pytest.mark.parametrize("layout", ["sharded", "broadcast"])
@pytest.mark.parametrize("n_blocks", [None, 3])
def test_implicit_cholesky_same_factors_and_recommendations(client, inter, n_blocks, layout):
    kw = dict(factors=6, iterations=3, solver="cholesky", regularization=0.1, seed=7)
    local = ImplicitALS(**kw).fit(inter)
    dist = fit(ImplicitALS(**kw), inter, client, n_blocks=n_blocks, layout=layout)
    # broadcast: the client forms the Grams as the local fit does; sharded: each block's float32 Gram, summed in
    # float64 (another rounding of X^T X, ~1e-7 relative, which three ALS iterations amplify to ~1e-4)
    tol = dict(rtol=1e-4, atol=2e-6) if layout == "broadcast" else dict(rtol=1e-3, atol=2e-4)
    np.testing.assert_allclose(dist.user_factors_, local.user_factors_, **tol)
    np.testing.assert_allclose(dist.item_factors_, local.item_factors_, **tol)
    assert dist.user_factors_.dtype == np.float32 and dist.user_factors_.flags.c_contiguous
    assert [h["iteration"] for h in dist.history_] == [1, 2, 3]
    np.testing.assert_allclose([h["loss"] for h in dist.history_], [h["loss"] for h in local.history_], rtol=1e-5)
    assert dist.best_iteration_ == 3 and dist.unobserved_confidence_ == 1.0
    assert dist.interactions_.user_index_map.equals(inter.user_index_map)
    assert (dist.interactions_.matrix != inter.matrix).nnz == 0
    if layout == "broadcast":
        _same_recommendations(local, dist, inter.user_ids[:15])
    else:
        _same_up_to_ties(local, dist, inter.user_ids[:15])
    stats = dist.distributed_stats_
    expect_blocks = 2 if n_blocks is None else 3
    assert stats["n_user_blocks"] == stats["n_item_blocks"] == expect_blocks
    assert stats["theoretical_bytes"] == (inter.n_users + inter.n_items) * 6 * 4
    assert stats["layout"] == layout
    if layout == "broadcast":  # per iteration the client gets back exactly one copy of both factor matrices
        assert stats["bytes_received"] == [stats["theoretical_bytes"]] * 3
    else:  # one d x d float64 Gram and 3 numbers (failed rows, loss, non-finite count) per half-step, summed over
        # the blocks on a worker; the client also sends the fixed side's Gram (and c0, reg, solver, cg steps) once
        assert stats["bytes_received"] == [2 * (6 * 6 * 8 + 3 * 8)] * 3
        assert stats["client_bytes"] == [2 * (6 * 6 * 8 + 3 * 8) + 2 * (6 * 6 * 8 + 4 * 8)] * 3
        # every block receives the rows it references (routes that need most of their source block get all of
        # it): at least the route sizes, at most every block of the other side, times one factor row
        sent_rows = stats["bytes_sent"][0] // (6 * 4)
        assert stats["bytes_sent"] == [sent_rows * 6 * 4] * 3
        assert sum(stats["route_rows"]) <= sent_rows <= expect_blocks * (inter.n_users + inter.n_items)


def test_implicit_cg_float64_tight(client, inter):
    kw = dict(factors=5, iterations=3, solver="cg", cg_steps=2, confidence="log", alpha=2.0, seed=1,
              dtype="float64")
    local = ImplicitALS(**kw).fit(inter)
    dist = fit(ImplicitALS(**kw), inter, client)
    assert dist.item_factors_.dtype == np.float64
    np.testing.assert_allclose(dist.user_factors_, local.user_factors_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(dist.item_factors_, local.item_factors_, rtol=1e-9, atol=1e-12)
    _same_recommendations(local, dist, inter.user_ids[:10])


@pytest.mark.parametrize("layout", ["sharded", "broadcast"])
def test_binary_feedback_one_broadcast_confidence_equals_local(client, inter, layout):
    """Binary data: the local fit holds one confidence (stride 0) for every entry; the blocks built from it, sent
    to the workers (broadcast layout) or built there (sharded), give the local fit's factors."""
    binary = Interactions(inter.matrix.astype(bool).astype(np.float64), inter.user_ids, inter.item_ids)
    kw = dict(factors=5, iterations=3, solver="cg", cg_steps=2, alpha=2.0, seed=1, dtype="float64")
    local = ImplicitALS(**kw).fit(binary)
    dist = fit(ImplicitALS(**kw), binary, client, layout=layout)
    np.testing.assert_allclose(dist.user_factors_, local.user_factors_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(dist.item_factors_, local.item_factors_, rtol=1e-9, atol=1e-12)


def test_implicit_feedback_with_preferences(client, inter):
    """Per-entry preferences p_ui (0 for below-threshold ratings) and c0 travel with the blocks of both sides."""
    from mfrec.data.feedback import explicit_to_implicit

    fb = explicit_to_implicit(inter, threshold=3.5, below_threshold="negative", unobserved_confidence=0.5)
    assert (np.asarray(fb.preference) == 0).any()
    kw = dict(factors=4, iterations=3, solver="cholesky", seed=4)
    local = ImplicitALS(**kw).fit(fb)
    dist = fit(ImplicitALS(**kw), fb, client, n_blocks=2)
    assert dist.unobserved_confidence_ == 0.5 and dist.confidence_mode_ == "given"
    for name in ("user_factors_", "item_factors_"):  # float32 rounding, relative to the factors' scale
        ref = getattr(local, name)
        np.testing.assert_allclose(getattr(dist, name), ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())


def test_implicit_cg_float32_close_and_delegation_through_fit(client, inter):
    kw = dict(factors=8, iterations=3, solver="cg", seed=2)
    local = ImplicitALS(**kw).fit(inter)
    dist = ImplicitALS(**kw).fit(inter, client=client)  # the thin delegation in ImplicitALS.fit
    assert dist.distributed_stats_["n_user_blocks"] == 2
    # float32 rounding of the Gram (client) vs the in-kernel sums (local), through 3 CG steps: close at the
    # factors' scale (the exact equality is the float64 test above)
    for name in ("user_factors_", "item_factors_"):
        want = getattr(local, name)
        np.testing.assert_allclose(getattr(dist, name), want, rtol=1e-3, atol=3e-3 * np.abs(want).max())


@pytest.mark.parametrize("fw", [False, True])
def test_explicit_same_factors_biases_and_loss(client, inter, fw):
    kw = dict(factors=4, iterations=4, regularization=0.5 if not fw else 0.05, seed=3,
              regularization_scaling="count" if fw else "none")
    local = ExplicitALS(**kw).fit(inter)
    dist = fit(ExplicitALS(**kw), inter, client, n_blocks=3)
    for name in ("user_factors_", "item_factors_", "user_bias_", "item_bias_"):
        np.testing.assert_allclose(getattr(dist, name), getattr(local, name), rtol=1e-5, atol=1e-6, err_msg=name)
    assert dist.global_bias_ == pytest.approx(local.global_bias_)
    assert dist.rating_range_ == local.rating_range_
    for key in ("loss", "rmse"):
        np.testing.assert_allclose([h[key] for h in dist.history_], [h[key] for h in local.history_], rtol=1e-6)
    users, items = list(inter.user_ids[:5]), list(inter.item_ids[:5])
    np.testing.assert_allclose(dist.predict(users, items), local.predict(users, items), rtol=1e-5)


def test_distributed_model_saves_and_loads(client, inter, tmp_path):
    from mfrec.persist import load, save

    dist = fit(ImplicitALS(factors=3, iterations=2, solver="cholesky"), inter, client)
    back = load(save(dist, tmp_path / "m.mfrec"))
    np.testing.assert_array_equal(back.item_factors_, dist.item_factors_)
    assert back.distributed_stats_["n_workers"] == 2
    _same_recommendations(dist, back, inter.user_ids[:3])


def test_cluster_client_arguments(client):
    from mfrec.distributed import cluster_client

    with cluster_client() as none:
        assert none is None
    with pytest.raises(InvalidParameterError, match="not both"):
        with cluster_client("tcp://127.0.0.1:1", 2):
            pass
    with cluster_client(client.scheduler.address) as other:  # connect to a running scheduler
        assert len(other.scheduler_info(n_workers=-1)["workers"]) == 2


def test_loss_never_increases(client, inter):
    dist = fit(ImplicitALS(factors=4, iterations=5, solver="cholesky"), inter, client)
    losses = np.array([h["loss"] for h in dist.history_])
    assert np.all(np.diff(losses) <= 1e-6 * np.abs(losses[:-1]))


# ------------------------------------------------------------------------------------------ fault tolerance
def test_worker_killed_mid_fit_gives_the_same_result(client, inter):
    kw = dict(factors=6, iterations=4, solver="cholesky", seed=11)
    local = ImplicitALS(**kw).fit(inter)
    kill_one_worker = worker_killer(client, at_iteration=1)
    with pytest.warns(RuntimeWarning, match="worker was lost"):
        dist = fit(ImplicitALS(**kw), inter, client, n_blocks=4, on_iteration=kill_one_worker)
    assert kill_one_worker.killed and dist.distributed_stats_["restarts"] >= 1
    assert len(dist.history_) == 4
    np.testing.assert_allclose(dist.user_factors_, local.user_factors_, rtol=1e-4, atol=2e-6)
    np.testing.assert_allclose(dist.item_factors_, local.item_factors_, rtol=1e-4, atol=2e-6)
    client.wait_for_workers(2, timeout=60)  # leave the module's cluster whole for the next tests


def test_worker_lost_beyond_max_restarts_is_a_clear_error(client, inter):
    with pytest.warns(RuntimeWarning, match="worker was lost"), pytest.raises(ModelFitError, match="max_restarts"):
        fit(ImplicitALS(factors=3, iterations=3, solver="cholesky"), inter, client, max_restarts=0,
            on_iteration=worker_killer(client, at_iteration=None))
    client.wait_for_workers(2, timeout=60)


# ------------------------------------------------------------------------------------------ dask input
def test_dask_dataframe_input_builds_the_same_id_maps_and_model(client, log, inter):
    data = from_dask_dataframe(dd.from_pandas(log, npartitions=4), "user", "item", "rating")
    kw = dict(factors=5, iterations=3, solver="cholesky", seed=5)
    local = ImplicitALS(**kw).fit(inter)
    dist = fit(ImplicitALS(**kw), data, client, n_blocks=3)
    assert dist.interactions_.user_index_map.equals(inter.user_index_map)
    assert dist.interactions_.item_index_map.equals(inter.item_index_map)
    assert abs(dist.interactions_.matrix - inter.matrix).max() == 0  # duplicates summed like from_frame
    np.testing.assert_allclose(dist.user_factors_, local.user_factors_, rtol=1e-4, atol=2e-6)
    _same_recommendations(local, dist, inter.user_ids[:10])


def test_parquet_directory_input_explicit(client, log, inter, tmp_path):
    for k, part in enumerate([log.iloc[:600], log.iloc[600:1100], log.iloc[1100:]]):
        part.to_parquet(tmp_path / f"part-{k}.parquet", index=False)
    data = read_parquet(str(tmp_path), "user", "item", "rating")
    kw = dict(factors=3, iterations=3, regularization=1.0, seed=0)
    local = ExplicitALS(**kw).fit(inter)
    dist = fit(ExplicitALS(**kw), data, client)
    np.testing.assert_allclose(dist.user_factors_, local.user_factors_, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dist.item_bias_, local.item_bias_, rtol=1e-5, atol=1e-6)


def test_dask_input_errors_name_the_offending_pair(client, log):
    bad = log.copy()
    bad.loc[17, "rating"] = -2.0
    data = from_dask_dataframe(dd.from_pandas(bad, npartitions=2), "user", "item", "rating")
    with pytest.raises(InvalidDataError, match=f"user '{bad.loc[17, 'user']}', item '{bad.loc[17, 'item']}'"):
        fit(ImplicitALS(factors=2, iterations=1), data, client)
    nan = log.copy()
    nan.loc[3, "rating"] = np.nan
    with pytest.raises(InvalidDataError, match=f"user '{nan.loc[3, 'user']}', item '{nan.loc[3, 'item']}'"):
        fit(ImplicitALS(factors=2, iterations=1),
            from_dask_dataframe(dd.from_pandas(nan, npartitions=2), "user", "item", "rating"), client)
    dup = pd.concat([log.iloc[:5], log.iloc[:1]])
    with pytest.raises(InvalidDataError, match="more than once"):
        fit(ImplicitALS(factors=2, iterations=1),
            from_dask_dataframe(dd.from_pandas(dup, npartitions=2), "user", "item", duplicates="error"), client)
    with pytest.raises(InvalidDataError, match="column 'stars'"):
        from_dask_dataframe(dd.from_pandas(log, npartitions=2), "user", "item", "stars")
    with pytest.raises(InvalidDataError, match="ratings"):
        fit(ExplicitALS(), from_dask_dataframe(dd.from_pandas(log, npartitions=2), "user", "item"), client)


# ------------------------------------------------------------------------------------------ argument checks
def test_bad_arguments(client, inter):
    with pytest.raises(InvalidParameterError, match="SGDFactorization"):
        fit(SGDFactorization(), inter, client)
    with pytest.raises(InvalidParameterError, match="distributed.Client"):
        fit(ImplicitALS(), inter, object())
    with pytest.raises(InvalidParameterError, match="n_blocks"):
        fit(ImplicitALS(), inter, client, n_blocks=0)
    with pytest.raises(InvalidParameterError, match="validation"):
        ImplicitALS().fit(inter, validation=inter, client=client)
    with pytest.raises(InvalidParameterError, match="early_stopping_rounds"):
        fit(ImplicitALS(early_stopping_rounds=2), inter, client)
    with pytest.raises(InvalidDataError, match="negative"):
        m = inter.matrix.copy()
        m.data[0] = -1.0
        fit(ImplicitALS(), Interactions(m, inter.user_ids, inter.item_ids), client)


# ------------------------------------------------------------------------------------------ blocking (no cluster)
@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 30), min_size=1, max_size=60), st.integers(1, 12))
def test_boundaries_cover_rows_contiguously(lengths, n_blocks):
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    b = mdask._boundaries(indptr, n_blocks)
    assert b[0] == 0 and b[-1] == len(lengths)
    assert np.all(np.diff(b) > 0)
    assert len(b) - 1 <= min(n_blocks, len(lengths))


def test_boundaries_balance_entries():
    lengths = np.full(1000, 10)
    b = mdask._boundaries(np.concatenate([[0], np.cumsum(lengths)]), 4)
    assert list(b) == [0, 250, 500, 750, 1000]


def _implicit_small(Y, solver="cholesky"):
    from mfrec.kernels.als_implicit import factor_gram

    return {"c0": 1.0, "reg": 0.1, "solver": solver, "cg_steps": 3, "YtY": factor_gram(Y)}


def test_block_task_equals_local_half_step(inter):
    """The plan's kernel run as block tasks, in this process, updates the rows exactly like the whole side."""
    from mfrec.models.implicit import implicit_block
    from mfrec.models.training import row_block

    csr = inter.matrix
    conf = (1.0 + csr.data).astype(np.float32)
    r = np.random.default_rng(0)
    Y = r.normal(0, 0.1, (inter.n_items, 4)).astype(np.float32)
    X = r.normal(0, 0.1, (inter.n_users, 4)).astype(np.float32)
    # all-ones preferences as the models pass them (a zero-stride view)
    ones = np.broadcast_to(np.ones(1, dtype=np.float32), conf.shape)
    whole = row_block(csr.indptr, csr.indices, conf, ones, 0, inter.n_users, with_order=True)
    (full,), part = implicit_block(whole, (Y,), _implicit_small(Y), (X.copy(),), True)
    b = mdask._boundaries(csr.indptr, 3)
    rows, loss = [], 0.0
    for k in range(len(b) - 1):
        blk = whole.rows(int(b[k]), int(b[k + 1]), with_order=True)
        assert blk.pref.strides == (0,)  # still no memory for the ones
        (out,), bpart = mdask.block_task(implicit_block, blk, _implicit_small(Y), ((X[b[k]:b[k + 1]].copy(),), {}),
                                         True, Y)
        assert bpart["failed"] == 0
        rows.append(out)
        loss += bpart["loss"]
    np.testing.assert_array_equal(np.concatenate(rows), full)
    assert loss == pytest.approx(part["loss"], rel=1e-12)


def test_block_task_solves_in_place_into_its_warm_start(inter):
    """The task's result is its warm-start buffer, updated in place (one copy of a block's rows per worker)."""
    from mfrec.models.implicit import implicit_block
    from mfrec.models.training import row_block

    csr = inter.matrix
    conf = (1.0 + csr.data).astype(np.float32)
    r = np.random.default_rng(1)
    Y = r.normal(0, 0.1, (inter.n_items, 4)).astype(np.float32)
    blk = row_block(csr.indptr, csr.indices, conf, None, 0, 40, True)
    X = r.normal(0, 0.1, (40, 4)).astype(np.float32)
    before = X.copy()
    (out,), part = mdask.block_task(implicit_block, blk, _implicit_small(Y, "cg"), ((X,), {}), False, Y)
    assert out is X and part["failed"] == 0 and not np.array_equal(X, before)
    ro = before.copy()
    ro.flags.writeable = False  # a read-only frame is copied, never written
    (out2,), _ = mdask.block_task(implicit_block, blk, _implicit_small(Y, "cg"), ((ro,), {}), False, Y)
    assert out2 is not ro and np.array_equal(ro, before)
    np.testing.assert_array_equal(out2, X)


@pytest.mark.parametrize("model", ["implicit", "explicit", "hybrid"])
def test_float64_fits_equal_local_fits(client, log, inter, model):
    """Two workers, three blocks: factors within 1e-6 of the local fit in float64, the same top-10 everywhere."""
    from mfrec.models.content import HybridALS

    attrs = {}
    if model == "implicit":
        make = lambda: ImplicitALS(factors=6, iterations=4, solver="cholesky", dtype="float64", seed=3)  # noqa: E731
    elif model == "explicit":
        make = lambda: ExplicitALS(factors=4, iterations=4, regularization=0.5, dtype="float64", seed=3)  # noqa: E731
    else:
        ua, ia = _attribute_frames(log)
        attrs = dict(user_attributes=ua, item_attributes=ia)
        make = lambda: HybridALS(factors=4, iterations=3, dtype="float64", cold_map="linear", seed=3)  # noqa: E731
    local = make().fit(inter, **attrs)
    dist = fit(make(), inter, client, n_blocks=3, **attrs)
    for name in ("user_factors_", "item_factors_"):
        np.testing.assert_allclose(getattr(dist, name), getattr(local, name), rtol=1e-6, atol=1e-6, err_msg=name)
    users = list(local.interactions_.user_ids)
    a, b = local.recommend_batch(users, k=10), dist.recommend_batch(users, k=10)
    assert a["item"].tolist() == b["item"].tolist()


# ------------------------------------------------------------------------------------------ HybridALS
def _attribute_frames(log: pd.DataFrame):
    """User / item attribute tables for the log's ids plus ids that have no interactions (cold ids)."""
    r = np.random.default_rng(3)
    users = sorted(set(log["user"])) + ["u_cold1", "u_cold2"]
    items = sorted(set(log["item"])) + ["i_cold1", "i_cold2", "i_cold3"]
    ua = pd.DataFrame({"group": r.choice(list("abc"), len(users)), "age": r.normal(30, 5, len(users))},
                      index=pd.Index(users))
    ia = pd.DataFrame({"genre": r.choice(list("xyzw"), len(items)),
                       "year": r.integers(1990, 2000, len(items)).astype(float)}, index=pd.Index(items))
    return ua, ia


@pytest.mark.parametrize("kw, n_blocks, sides", [
    (dict(), None, "both"),
    (dict(feedback="explicit", regularization=0.5, cold_map="linear"), 3, "both"),
    (dict(dtype="float64", neighbors=5), 3, "items"),
])
def test_hybrid_same_factors_maps_loss_and_cold_ids_as_local(client, log, inter, kw, n_blocks, sides):
    from mfrec.models.content import HybridALS

    ua, ia = _attribute_frames(log)
    ua = ua if sides == "both" else None
    kw = dict(factors=5, iterations=3, seed=4, **kw)
    local = HybridALS(**kw).fit(inter, ua, ia)
    dist = fit(HybridALS(**kw), inter, client, n_blocks=n_blocks, user_attributes=ua, item_attributes=ia)
    tol = dict(rtol=1e-9, atol=1e-12) if kw.get("dtype") == "float64" else dict(rtol=1e-5, atol=1e-7)
    for name in ("user_factors_", "item_factors_"):
        assert getattr(dist, name).dtype == getattr(local, name).dtype
        np.testing.assert_allclose(getattr(dist, name), getattr(local, name), **tol)
    for name in ("user_attribute_map_", "item_attribute_map_"):
        ref = getattr(local, name)
        if ref is None:
            assert getattr(dist, name) is None
        else:
            np.testing.assert_allclose(getattr(dist, name), ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose([h["loss"] for h in dist.history_], [h["loss"] for h in local.history_], rtol=1e-9)
    assert dist.interactions_.item_index_map.equals(local.interactions_.item_index_map)
    assert "i_cold1" in dist.interactions_.item_index_map  # known cold ids came with the attributes
    assert dist.feedback_ == local.feedback_ and dist.global_mean_ == local.global_mean_
    users = list(inter.user_ids[:8]) + (["u_cold1"] if ua is not None else [])
    _same_recommendations(local, dist, users)
    st_ = dist.distributed_stats_
    assert st_["n_user_blocks"] == (2 if n_blocks is None else 3) and st_["layout"] == "sharded"
    # the factors stay on the workers: the client receives per block a d x d Gram, the A_b^T X_b of a side with
    # attributes and a few numbers
    assert max(st_["bytes_received"]) < st_["theoretical_bytes"] / 3


def test_hybrid_block_task_equals_prior_half_step():
    """One block's hybrid task (prior formed on the worker from M, cold rows zeroed) against the kernel."""
    from mfrec.kernels.hybrid import prior_half_step
    from mfrec.models.content import hybrid_block
    from mfrec.models.training import row_block

    r = np.random.default_rng(5)
    # rows 0..9 have entries (warm), rows 10..29 none (cold ids)
    m = sp.vstack([sp.random(10, 20, density=0.3, format="csr", random_state=5), sp.csr_matrix((20, 20))]).tocsr()
    w, t = 1.0 + m.data, np.ones(m.nnz)
    A = r.normal(size=(30, 3))
    M = r.normal(size=(3, 4))
    Y = r.normal(size=(20, 4))
    ref = np.zeros((30, 4))
    prior_half_step(m.indptr, m.indices, w, t, Y, ref, A @ M, c0=0.5, reg=0.2)
    blk = row_block(m.indptr, m.indices, w, t, 0, 30, feats=A)
    (X,), part = mdask.block_task(hybrid_block, blk, {"M": M, "c0": 0.5, "lam": 0.2, "lam_a": 1.0}, None, True, Y)
    warm = np.diff(m.indptr) > 0
    assert part["failed"] == 0 and warm.sum() < 30
    np.testing.assert_allclose(X[warm], ref[warm], rtol=1e-12, atol=1e-12)
    assert not X[~warm].any()  # cold rows: 0 until the plan fills them at the end
    np.testing.assert_allclose(part["AtX"], A[warm].T @ ref[warm], rtol=1e-12, atol=1e-12)
    rows = np.repeat(np.arange(30), np.diff(m.indptr))
    s = np.einsum("ij,ij->i", ref[rows], Y[m.indices])
    np.testing.assert_allclose(part["loss"], np.sum(w * (t - s) ** 2 - 0.5 * s * s), rtol=1e-12)


def test_hybrid_refusals(client, log, inter):
    from mfrec.models.content import HybridALS

    ua, ia = _attribute_frames(log)
    with pytest.raises(InvalidParameterError, match="free_factors=False.*not distributed"):
        fit(HybridALS(free_factors=False), inter, client, user_attributes=ua, item_attributes=ia)
    with pytest.raises(InvalidParameterError, match="for HybridALS"):
        fit(ImplicitALS(), inter, client, item_attributes=ia)
    with pytest.raises(InvalidParameterError, match="in-memory"):
        fit(HybridALS(), from_dask_dataframe(dd.from_pandas(log, npartitions=2)), client, item_attributes=ia)
    bad = ia.copy()
    bad.iloc[2, 1] = np.inf
    with pytest.raises(InvalidDataError, match="'i002'.*year"):  # the local fit's check, naming the id
        fit(HybridALS(), inter, client, item_attributes=bad)


# ------------------------------------------------------------------------------------------ worker memory
def _trace_start():
    import tracemalloc

    tracemalloc.start()
    tracemalloc.reset_peak()


def _trace_peak():
    import tracemalloc

    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


@pytest.mark.slow  # its own 1-worker cluster and a memory measurement: ~8 s here
def test_worker_memory_is_blocks_plus_two_factor_matrices():
    """Peak memory a worker allocates during a fit (tracemalloc: numpy buffers, received frames, results).

    One worker holds every block, so it receives all of X in the item half-step while it holds all of its own
    X rows: the worst case of the bound. Exact solver (the CG solver adds its ``X @ G0`` scratch, see
    docs/distributed.md). Before the in-place solve / broadcast release this measured 2.2 matrices.
    """
    r = np.random.default_rng(0)
    # factor matrices above dask's 10 MiB offload size: below it dask's receive buffers add a fixed few MB
    # (measured 3.8 matrices at 40k x 4k, 1.95 from 160k x 16k up), which says nothing about scale
    n_users, n_items, per, d = 160_000, 16_000, 3, 32
    rows = np.repeat(np.arange(n_users), per)
    csr = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, r.integers(0, n_items, len(rows)))),
                        shape=(n_users, n_items))
    csr.sum_duplicates()
    data = Interactions(csr)
    theo = (n_users + n_items) * d * 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                           dashboard_address=None, memory_limit=0)
    with cluster, distributed.Client(cluster) as c:
        fit(ImplicitALS(factors=d, iterations=1, solver="cholesky"), Interactions(csr[:300]), c,
            layout="broadcast")  # JIT
        c.run(_trace_start)
        model = fit(ImplicitALS(factors=d, iterations=2, solver="cholesky"), data, c, layout="broadcast")
        (peak,) = c.run(_trace_peak).values()
    blocks = sum(model.distributed_stats_["block_bytes"])
    # (+ 2 MiB: dask's receive buffers, measured 0.9 MiB above the two matrices)
    assert peak <= blocks + 2 * theo + 2 * 2**20, (peak - blocks) / theo
    assert peak >= blocks + theo  # the measurement sees the factor matrices at all


def test_hybrid_fit_with_client_delegates_to_the_cluster(client, log, inter):
    """``HybridALS.fit(..., client=)`` is the distributed fit (same result as the local one)."""
    from mfrec.models.content import HybridALS

    ua, ia = _attribute_frames(log)
    local = HybridALS(factors=4, iterations=2, seed=1).fit(inter, ua, ia)
    dist = HybridALS(factors=4, iterations=2, seed=1).fit(inter, ua, ia, client=client)
    assert hasattr(dist, "distributed_stats_")
    np.testing.assert_allclose(dist.item_factors_, local.item_factors_, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(dist.user_factors_, local.user_factors_, rtol=1e-5, atol=1e-7)
