"""Sharded distributed ALS: routes, the traffic targets on data with locality, sharded model directories.

The oracle is the local fit with the same seed (float64, so "the same" means to 1e-9). One 2-process
``LocalCluster`` per module.
"""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

distributed = pytest.importorskip(
    "distributed", reason="dask.distributed is not installed (pip install 'mfrec[distributed]')"
)

import mfrec  # noqa: E402
from conftest import worker_killer  # noqa: E402
from mfrec.data.synthetic import community_interactions  # noqa: E402
from mfrec.distributed import fit  # noqa: E402
from mfrec.distributed.sharded import localize  # noqa: E402
from mfrec.exceptions import InvalidParameterError, ModelFileError  # noqa: E402
from mfrec.models.explicit import ExplicitALS  # noqa: E402
from mfrec.models.implicit import ImplicitALS  # noqa: E402
from mfrec.models.training import RowBlock  # noqa: E402


@pytest.fixture(scope="module")
def communities():
    """4 communities of 4000 users and 1000 items, 8 items per user: 16k x 4k, 128k entries."""
    return community_interactions(4, 4000, 1000, 8, seed=3)


def _top(model, users, k=10):
    return [list(model.recommend(u, k=k)["item"]) for u in users]


# ------------------------------------------------------------------------------------------ routes
@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 49), max_size=12), min_size=1, max_size=8),
       st.lists(st.integers(1, 49), max_size=5))
def test_localize_routes_cover_exactly_the_referenced_rows(rows, cuts):
    """Renumbered entries point at the right fixed row, and the routes, concatenated by source block, are the
    block's distinct columns in order."""
    rows = [sorted(set(r)) for r in rows]
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int32)
    indices = np.array([c for r in rows for c in r], dtype=np.int32)
    block = RowBlock(0, len(rows), indptr, indices, np.ones(len(indices), np.float32))
    bounds = np.unique(np.concatenate([[0], cuts, [50]])).astype(np.int64)
    local, need = localize(block, bounds)
    assert len(need) == len(bounds) - 1
    fixed_rows = np.concatenate([bounds[a] + need[a] for a in range(len(need))])  # global rows, in fixed order
    assert np.array_equal(fixed_rows, np.unique(indices))
    assert np.array_equal(fixed_rows[local.indices], indices)
    assert all(n.dtype == np.int32 and np.all((n >= 0) & (n < bounds[a + 1] - bounds[a])) for a, n in enumerate(need))
    assert local.indptr is block.indptr and local.values is block.values  # aligned arrays are not copied


def test_compact_fixed_joins_whole_blocks_and_pieces_in_route_order():
    r = np.random.default_rng(0)
    a0 = (r.random((6, 3)), r.random(6))
    a1 = (r.random((5, 3)), r.random(5))
    piece = (a1[0][[1, 4]], a1[1][[1, 4]])
    idx0 = np.array([0, 2, 5], dtype=np.int32)
    from mfrec.distributed.sharded import compact_fixed

    got = compact_fixed([(a0, idx0), (piece, None)])
    for j in range(2):
        np.testing.assert_array_equal(got[j], np.concatenate([a0[j][idx0], piece[j]]))
    assert compact_fixed([(piece, None)]) is piece  # one taken piece is used as it is
    alone = compact_fixed([(a1, np.array([3], dtype=np.int32))])
    np.testing.assert_array_equal(alone[0], a1[0][[3]])


# ------------------------------------------------------------------------------------------ traffic targets
def test_community_data_meets_the_traffic_targets_with_the_local_top10(client, communities):
    """The issue's targets: client bytes per iteration <= 5% of (m + n) d itemsize, bytes sent <= 0.6 of a
    full broadcast, the same top-10 as the local fit."""
    kw = dict(factors=16, iterations=3, solver="cholesky", regularization=0.1, seed=5, dtype="float64")
    local = ImplicitALS(**kw).fit(communities)
    dist = fit(ImplicitALS(**kw), communities, client, n_blocks=4)
    np.testing.assert_allclose(dist.user_factors_, local.user_factors_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(dist.item_factors_, local.item_factors_, rtol=1e-9, atol=1e-12)
    users = communities.user_ids[::400]
    assert _top(dist, users) == _top(local, users)
    s = dist.distributed_stats_
    theo, broadcast = s["theoretical_bytes"], s["n_workers"] * s["theoretical_bytes"]
    assert theo == (16000 + 4000) * 16 * 8
    # each user block references exactly its community's 1000 items, each item block its 4000 users
    assert s["route_rows"] == [1000] * 4 + [4000] * 4
    assert s["bytes_sent"] == [theo] * 3  # (m + n) d: half of the broadcast to 2 workers
    assert max(s["bytes_sent"]) <= 0.6 * broadcast
    assert max(s["client_bytes"]) <= 0.05 * theo
    assert max(s["bytes_received"]) <= max(s["client_bytes"])


def test_explicit_on_community_ratings_equals_the_local_fit(client):
    data = community_interactions(4, 500, 100, 6, ratings=True, seed=1)
    kw = dict(factors=6, iterations=3, seed=2, dtype="float64", regularization_scaling="count", regularization=0.05)
    local = ExplicitALS(**kw).fit(data)
    dist = fit(ExplicitALS(**kw), data, client, n_blocks=4)
    for name in ("user_factors_", "item_factors_", "user_bias_", "item_bias_"):
        np.testing.assert_allclose(getattr(dist, name), getattr(local, name), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose([h["loss"] for h in dist.history_], [h["loss"] for h in local.history_], rtol=1e-12)
    np.testing.assert_allclose([h["rmse"] for h in dist.history_], [h["rmse"] for h in local.history_], rtol=1e-12)
    assert dist.distributed_stats_["route_rows"] == [100] * 4 + [500] * 4


def test_cg_without_training_loss_equals_the_local_fit(client, communities):
    kw = dict(factors=8, iterations=2, solver="cg", seed=1, dtype="float64", calculate_training_loss=False)
    local = ImplicitALS(**kw).fit(communities)
    dist = fit(ImplicitALS(**kw), communities, client, n_blocks=3)
    np.testing.assert_allclose(dist.user_factors_, local.user_factors_, rtol=1e-8, atol=1e-11)
    assert all("loss" not in h for h in dist.history_)


# ------------------------------------------------------------------------------------------ sharded models
@pytest.mark.parametrize("model_cls", [ImplicitALS, ExplicitALS])
def test_model_saved_sharded_without_gathering_loads_as_the_local_fit(client, tmp_path, model_cls):
    data = community_interactions(4, 300, 50, 5, ratings=True, seed=4)
    kw = dict(factors=4, iterations=2, seed=9, dtype="float64")
    local = model_cls(**kw).fit(data)
    out = tmp_path / "model"
    dist = fit(model_cls(**kw), data, client, n_blocks=3, gather=False, path=out)
    assert dist.user_factors_ is None and dist.item_factors_ is None  # the client never held them
    assert len(dist.history_) == 2
    manifest = json.loads((out / "manifest.json").read_text())
    sharded = {"user_factors_", "item_factors_"} | ({"user_bias_", "item_bias_"} if model_cls is ExplicitALS else set())
    assert set(manifest["shards"]) == sharded
    assert all(len(parts) == 3 for parts in manifest["shards"].values())
    assert len(list((out / "shards").iterdir())) == 3 * len(sharded)
    loaded = mfrec.load(out)
    for name in sharded:
        np.testing.assert_allclose(getattr(loaded, name), getattr(local, name), rtol=1e-9, atol=1e-12)
    users = data.user_ids[::100]
    assert _top(loaded, users, 5) == _top(local, users, 5)
    assert (loaded.interactions_.matrix != local.interactions_.matrix).nnz == 0  # the seen items, from the file
    assert loaded.distributed_stats_["layout"] == "sharded"


def test_gathered_and_saved_sharded_at_once(client, tmp_path, communities):
    kw = dict(factors=4, iterations=1, seed=2, dtype="float64")
    dist = fit(ImplicitALS(**kw), communities, client, n_blocks=2, gather=True, path=tmp_path / "m")
    loaded = mfrec.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.user_factors_, dist.user_factors_)
    # saving again replaces the directory as a whole
    fit(ImplicitALS(factors=4, iterations=1, seed=3, dtype="float64"), communities, client, n_blocks=3,
        path=tmp_path / "m")
    again = mfrec.load(tmp_path / "m")
    assert not np.array_equal(again.user_factors_, dist.user_factors_)
    assert len(json.loads((tmp_path / "m" / "manifest.json").read_text())["shards"]["user_factors_"]) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary directory left behind


def test_sharded_directory_problems_are_model_file_errors(client, tmp_path, communities):
    out = tmp_path / "m"
    fit(ImplicitALS(factors=3, iterations=1, seed=1), communities, client, n_blocks=2, path=out)
    shard = out / "shards" / "item_factors_.00001.npy"
    spoiled = tmp_path / "spoiled"
    shutil.copytree(out, spoiled)
    raw = bytearray((spoiled / shard.relative_to(out)).read_bytes())
    raw[-1] ^= 0xFF
    (spoiled / shard.relative_to(out)).write_bytes(bytes(raw))
    with pytest.raises(ModelFileError, match="checksum mismatch for array 'item_factors_'"):
        mfrec.load(spoiled)
    (spoiled / shard.relative_to(out)).unlink()
    with pytest.raises(ModelFileError, match="item_factors_.00001.npy is missing"):
        mfrec.load(spoiled)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["shards"]["user_factors_"][1]["rows"][0] += 1
    (spoiled / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="checksum mismatch in the manifest"):
        mfrec.load(spoiled)
    with pytest.raises(ModelFileError, match="without manifest.json"):
        mfrec.load(tmp_path)
    not_a_model = tmp_path / "notes"
    not_a_model.mkdir()
    (not_a_model / "keep.txt").write_text("mine")
    with pytest.raises(ModelFileError, match="not an mfrec model directory"):
        fit(ImplicitALS(factors=3, iterations=1), communities, client, path=not_a_model)
    assert (not_a_model / "keep.txt").read_text() == "mine"


def test_sharded_directory_is_served(client, tmp_path, communities):
    from fastapi.testclient import TestClient

    from mfrec.serve import create_app

    out = tmp_path / "m"
    local = ImplicitALS(factors=4, iterations=1, seed=6, dtype="float64").fit(communities)
    fit(ImplicitALS(factors=4, iterations=1, seed=6, dtype="float64"), communities, client, gather=False, path=out)
    with TestClient(create_app(out)) as http:
        got = http.get("/users/17/recommendations", params={"k": 5}).json()
    assert [row["item"] for row in got["items"]] == list(local.recommend(17, k=5)["item"])


# ------------------------------------------------------------------------------------------ refusals
def test_sharded_refusals(client, communities, tmp_path, monkeypatch):
    from mfrec.models.content import HybridALS

    with pytest.raises(InvalidParameterError, match="give path="):
        fit(ImplicitALS(factors=3, iterations=1), communities, client, gather=False)
    with pytest.raises(InvalidParameterError, match="layout='sharded'"):
        fit(ImplicitALS(factors=3, iterations=1), communities, client, layout="broadcast", path=tmp_path / "x")
    with pytest.raises(InvalidParameterError, match="layout"):
        fit(ImplicitALS(factors=3, iterations=1), communities, client, layout="rows")
    with pytest.raises(InvalidParameterError, match="gather"):
        fit(ImplicitALS(factors=3, iterations=1), communities, client, gather="yes")
    with pytest.raises(InvalidParameterError, match="cold-id step"):
        fit(HybridALS(factors=3, iterations=1), communities, client, gather=False, path=tmp_path / "h")

    class Tiny:
        available = 1000

    import psutil

    monkeypatch.setattr(psutil, "virtual_memory", lambda: Tiny())
    with pytest.raises(InvalidParameterError, match="more than half of this process's available memory"):
        fit(ImplicitALS(factors=3, iterations=1), communities, client)


# ------------------------------------------------------------------------------------------ memory-limited cluster
def _peak_rss() -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM:"))


@pytest.mark.slow  # 4 worker processes, 1M x 250k, 4M entries, d = 64 float64: ~1 min here
def test_fit_on_workers_limited_below_one_copy_of_the_factors(tmp_path):
    """The issue's target: a LocalCluster of 4 workers, each with a memory limit below one full copy of both
    factor matrices (spilling and pausing off: a worker over 95% of it is killed), completes and equals the
    local fit. The client never holds the factors: the model is saved sharded and loaded afterwards."""
    import dask

    data = community_interactions(4, 250_000, 62_500, 4, seed=0)
    kw = dict(factors=64, iterations=2, solver="cg", dtype="float64", seed=1)
    F = (1_000_000 + 250_000) * 64 * 8  # 640 MB
    config = {"distributed.worker.memory.target": False, "distributed.worker.memory.spill": False,
              "distributed.worker.memory.pause": False, "distributed.worker.memory.terminate": 0.95}
    with dask.config.set(config), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(n_workers=4, threads_per_worker=1, processes=True,
                                           dashboard_address=None, memory_limit=int(0.9 * F))
    with cluster, distributed.Client(cluster) as c, warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a lost (killed) worker would warn: fail instead
        model = fit(ImplicitALS(**kw), data, c, n_blocks=4, gather=False, path=tmp_path / "m")
        peaks = c.run(_peak_rss)
    assert model.distributed_stats_["restarts"] == 0
    assert max(peaks.values()) < 0.9 * F
    loaded = mfrec.load(tmp_path / "m")
    local = ImplicitALS(**kw).fit(data)
    np.testing.assert_allclose(loaded.user_factors_, local.user_factors_, rtol=1e-8, atol=1e-11)
    np.testing.assert_allclose(loaded.item_factors_, local.item_factors_, rtol=1e-8, atol=1e-11)
    users = data.user_ids[::50_000]
    assert _top(loaded, users) == _top(local, users)


@pytest.mark.parametrize("model_cls", [ImplicitALS, ExplicitALS])
def test_dask_log_saved_sharded_never_brings_the_pattern_to_the_client(client, tmp_path, model_cls):
    """From a dask DataFrame without gathering: the client gets the id maps and a summary of the entries (count,
    rating range and sum); the user blocks write the seen items beside the factors, and the loaded model equals
    the local fit."""
    import pandas as pd

    dd = pytest.importorskip("dask.dataframe")
    from mfrec.data.interactions import Interactions
    from mfrec.distributed import from_dask_dataframe

    r = np.random.default_rng(2)
    log = pd.DataFrame({"user": [f"u{k:03d}" for k in r.integers(0, 150, 2500)],
                        "item": [f"i{k:03d}" for k in r.integers(0, 90, 2500)],
                        "plays": r.integers(1, 9, 2500).astype(float)})
    kw = dict(factors=4, iterations=2, seed=3, dtype="float64", **({"alpha": 2.0} if model_cls is ImplicitALS else {}))
    local = model_cls(**kw).fit(Interactions.from_frame(log, user="user", item="item", value="plays"))
    data = from_dask_dataframe(dd.from_pandas(log, npartitions=3), user="user", item="item", value="plays")
    dist = fit(model_cls(**kw), data, client, n_blocks=3, gather=False, path=tmp_path / "m")
    np.testing.assert_allclose([h["loss"] for h in dist.history_], [h["loss"] for h in local.history_], rtol=1e-12)
    if model_cls is ExplicitALS:  # the rating statistics came from the blocks
        assert dist.rating_range_ == local.rating_range_ and dist.global_bias_ == pytest.approx(local.global_bias_)
    assert dist.user_factors_ is None and dist.interactions_.nnz == 0  # ids only: no pattern, no factors here
    assert dist.interactions_.user_index_map.equals(local.interactions_.user_index_map)
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert {"interactions_.indptr", "interactions_.indices", "interactions_.data"} <= set(manifest["shards"])
    loaded = mfrec.load(tmp_path / "m")
    inter, ref = loaded.interactions_.matrix, local.interactions_.matrix
    assert inter.shape == ref.shape and (inter != ref).nnz == 0
    np.testing.assert_allclose(inter.data, ref.data)
    np.testing.assert_allclose(loaded.user_factors_, local.user_factors_, rtol=1e-9, atol=1e-12)
    users = list(local.interactions_.user_ids[:20])
    assert _top(loaded, users, 5) == _top(local, users, 5)  # seen items excluded from the file's pattern


def test_explicit_worker_killed_mid_fit_replays_to_the_same_result(client):
    """Recovery by replay: the lost rows come back from the seeded start (ExplicitALS draws its items from one
    normal stream, which must restart where it started) and the fit ends where an uninterrupted one does."""
    data = community_interactions(4, 300, 60, 5, ratings=True, seed=6)
    kw = dict(factors=4, iterations=3, seed=8, dtype="float64")
    local = ExplicitALS(**kw).fit(data)

    with pytest.warns(RuntimeWarning, match="replaying"):
        dist = fit(ExplicitALS(**kw), data, client, n_blocks=4, on_iteration=worker_killer(client))
    stats = dist.distributed_stats_
    assert stats["restarts"] >= 1 and len(dist.history_) == 3
    # the starting rows were sent once more after the loss
    assert stats["setup_bytes"] >= 2 * stats["theoretical_bytes"]
    for name in ("user_factors_", "item_factors_", "user_bias_", "item_bias_"):
        np.testing.assert_allclose(getattr(dist, name), getattr(local, name), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose([h["loss"] for h in dist.history_], [h["loss"] for h in local.history_], rtol=1e-12)
    client.wait_for_workers(2, timeout=60)


def test_dask_log_fit_survives_a_lost_worker(client):
    """A block computed from a dask DataFrame is rebuilt from the graph (its raw block is not kept beside the
    confidences) and the replayed fit ends where the local one does."""
    import pandas as pd

    dd = pytest.importorskip("dask.dataframe")
    from mfrec.data.interactions import Interactions
    from mfrec.distributed import from_dask_dataframe

    r = np.random.default_rng(5)
    log = pd.DataFrame({"user": r.integers(0, 120, 2000), "item": r.integers(0, 70, 2000),
                        "plays": r.integers(1, 6, 2000).astype(float)})
    kw = dict(factors=4, iterations=3, seed=2, dtype="float64", solver="cholesky")
    local = ImplicitALS(**kw).fit(Interactions.from_frame(log, user="user", item="item", value="plays"))

    data = from_dask_dataframe(dd.from_pandas(log, npartitions=2), user="user", item="item", value="plays")
    with pytest.warns(RuntimeWarning, match="replaying"):
        dist = fit(ImplicitALS(**kw), data, client, n_blocks=2, gather=True, on_iteration=worker_killer(client))
    assert dist.distributed_stats_["restarts"] >= 1
    np.testing.assert_allclose(dist.user_factors_, local.user_factors_, rtol=1e-9, atol=1e-12)
    client.wait_for_workers(2, timeout=60)
