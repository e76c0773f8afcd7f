"""Untrusted model files (issue "Hardening", defects 3, 5, 6 and 7, and the save-side findings).

Every crafted file must end in one :class:`ModelFileError` (never another exception), in bounded time and
memory; a real model with inconsistent or non-finite arrays is refused at load and at save. The hypothesis cases
generate manifests and arrays; each is bounded by its ``deadline``.
"""

from __future__ import annotations

import json
import os
import tracemalloc
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mfrec
from mfrec import ModelFileError, persist
from model_conformance import planted_interactions


@pytest.fixture(scope="module")
def model():
    return mfrec.ImplicitALS(factors=4, iterations=2, seed=0).fit(planted_interactions())


@pytest.fixture
def saved(model, tmp_path):
    return persist.save(model, tmp_path / "m.mfrec")


def _parts(path):
    with zipfile.ZipFile(path) as zf:
        items = {n: zf.read(n) for n in zf.namelist()}
    return json.loads(items.pop("manifest.json")), items


def _write(path, manifest, items, *, checksum=True, raw_manifest=None):
    if checksum and isinstance(manifest, dict) and "checksum" in manifest:
        manifest["checksum"] = persist.manifest_checksum(manifest)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("manifest.json", raw_manifest if raw_manifest is not None else json.dumps(manifest))
        for name, data in items.items():
            zf.writestr(name, data)


def _array_bytes(arr):
    import io

    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _replace_array(path, name, arr):
    import hashlib

    manifest, items = _parts(path)
    raw = _array_bytes(arr)
    items[f"arrays/{name}.npy"] = raw
    manifest["arrays"][name].update(shape=list(arr.shape), dtype=arr.dtype.str, nbytes=int(arr.nbytes),
                                    sha256=hashlib.sha256(raw).hexdigest())
    _write(path, manifest, items)


# ------------------------------------------------------------------------------------- defect 3: bounded manifest
def test_a_manifest_that_expands_to_hundreds_of_megabytes_is_refused_in_bounded_memory(tmp_path):
    path = tmp_path / "bomb.mfrec"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("manifest.json", "w", force_zip64=True) as fh:
            chunk = b" " * (1 << 20)
            for _ in range(256):  # 256 MiB of spaces, about 250 KB compressed
                fh.write(chunk)
    assert path.stat().st_size < 2_000_000
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError, match="implausibly large"):
            persist.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 40 * 2**20


def test_a_manifest_whose_archive_size_lies_is_read_in_bounded_memory(saved, tmp_path):
    """The central directory says 100 bytes; the deflated stream holds 64 MiB: read stops at the bound."""
    manifest, items = _parts(saved)
    path = tmp_path / "liar.mfrec"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", json.dumps(manifest) + " " * (64 << 20))
    raw = bytearray(path.read_bytes())
    # patch the uncompressed size in the central directory entry of manifest.json
    cd = raw.rfind(b"PK\x01\x02")
    raw[cd + 24:cd + 28] = (100).to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError):
            persist.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 40 * 2**20


# ------------------------------------------------------------------------------------- defect 5: the schema
@pytest.mark.parametrize("mutate, message", [
    (lambda m: m.pop("arrays"), "has no 'arrays'"),
    (lambda m: m.update(arrays=[]), "'arrays' has the wrong type"),
    (lambda m: m.update(params="x"), "'params' has the wrong type"),
    (lambda m: m.update(format_version=True), "'format_version' has the wrong type"),
    (lambda m: m["state"].update(recommend=1), "not a fitted attribute name"),
    (lambda m: m["state"].update(__class__="x"), "not a fitted attribute name"),
    (lambda m: m["state"].update(manifest_="x"), "not a fitted attribute name"),
    (lambda m: m["structured"]["interactions_"].update(shape=[1]), "malformed shape"),
    (lambda m: m["structured"]["interactions_"].update(type="pickle"), "unknown type"),
    (lambda m: m["arrays"]["user_factors_"].update(sha256=1), "is malformed"),
    (lambda m: m["arrays"]["user_factors_"].update(shape=[-1, 4]), "is malformed"),
    (lambda m: m.update(surprise={}), "unknown keys"),
    (lambda m: m["extra"].update(deep=json.loads("[" * 40 + "]" * 40)), "nests deeper"),
])
def test_malformed_manifests_are_refused_with_the_reason(saved, mutate, message):
    manifest, items = _parts(saved)
    mutate(manifest)
    _write(saved, manifest, items)
    with pytest.raises(ModelFileError, match=message):
        persist.load(saved)


def test_a_hundred_thousand_nested_brackets_are_refused(saved):
    manifest, items = _parts(saved)
    _write(saved, manifest, items, raw_manifest="[" * 100_000 + "]" * 100_000)
    with pytest.raises(ModelFileError, match="manifest"):
        persist.load(saved)


def test_changed_hyperparameters_fail_the_checksum(saved):
    manifest, items = _parts(saved)
    manifest["params"]["factors"] = 64
    _write(saved, manifest, items, checksum=False)
    with pytest.raises(ModelFileError, match="checksum mismatch in the manifest"):
        persist.load(saved)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=60, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(["params", "state", "structured", "arrays", "extra", "metrics", "training_data",
                            "model_class", "format_version", "created"]), value=json_values,
       recompute=st.booleans())
def test_any_manifest_value_gives_a_model_file_error_or_loads(saved, key, value, recompute):
    manifest, items = _parts(saved)
    manifest[key] = value
    _write(saved, manifest, items, checksum=recompute)
    try:
        persist.load(saved)
    except ModelFileError:
        pass


@settings(max_examples=40, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=st.lists(st.integers(0, 50), min_size=0, max_size=3),
       dtype=st.sampled_from(["<f4", "<f8", "<i8", "|b1", "<U3"]), fill=st.sampled_from([0.0, np.nan, np.inf, 1.0]))
def test_any_replacement_array_gives_a_model_file_error_or_a_consistent_model(saved, shape, dtype, fill):
    arr = np.full(shape, fill if np.dtype(dtype).kind == "f" else 1, dtype=dtype)
    _replace_array(saved, "user_factors_", arr)
    try:
        back = persist.load(saved)
    except ModelFileError:
        return
    assert back.user_factors_.shape == (back.interactions_.n_users, back.item_factors_.shape[1])
    assert np.isfinite(back.user_factors_).all()


# ------------------------------------------------------------------------------------- defects 6 and 7
def test_factors_that_do_not_fit_the_id_maps_are_refused(saved):
    _replace_array(saved, "user_factors_", np.zeros((10, 4), dtype=np.float32))
    with pytest.raises(ModelFileError, match=r"user_factors_ has shape \(10, 4\) but the model has 30 users"):
        persist.load(saved)


def test_factors_of_different_widths_are_refused(saved):
    _replace_array(saved, "user_factors_", np.zeros((30, 3), dtype=np.float32))
    with pytest.raises(ModelFileError, match="3 columns"):
        persist.load(saved)


def test_one_dimensional_factors_are_refused(saved):
    _replace_array(saved, "user_factors_", np.zeros(30, dtype=np.float32))
    with pytest.raises(ModelFileError, match="2-D"):
        persist.load(saved)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_factors_are_refused_at_load_and_at_save(saved, model, tmp_path, bad):
    arr = model.item_factors_.copy()
    arr[3, 1] = bad
    _replace_array(saved, "item_factors_", arr)
    with pytest.raises(ModelFileError, match="item_factors_ holds NaN or infinite values"):
        persist.load(saved)
    broken = mfrec.clone(model).fit(planted_interactions())
    broken.item_factors_[0, 0] = bad
    with pytest.raises(ModelFileError, match="cannot be saved: item_factors_ holds NaN"):
        persist.save(broken, tmp_path / "x.mfrec")
    assert not (tmp_path / "x.mfrec").exists()


# ------------------------------------------------------------------------------------- saving
def test_saving_streams_the_arrays(tmp_path):
    """Peak memory while saving stays far below the model's size (it was 2.5x)."""
    data = planted_interactions()
    m = mfrec.ImplicitALS(factors=4, iterations=1).fit(data)
    r = np.random.default_rng(0)
    m.user_factors_ = r.normal(size=(30, 4)).astype(np.float32)
    m.item_factors_ = r.normal(size=(40, 4)).astype(np.float32)
    m.history_ = [{"iteration": 1, "loss": 1.0}]
    big = r.normal(size=(40, 400_000)).astype(np.float32)  # 64 MB riding along as a fitted attribute
    m.extra_scores_ = big
    tracemalloc.start()
    try:
        persist.save(m, tmp_path / "big.mfrec")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 0.3 * big.nbytes, peak / big.nbytes
    np.testing.assert_array_equal(persist.load(tmp_path / "big.mfrec").extra_scores_, big)


def test_saved_files_get_the_usual_mode_under_the_umask(saved):
    old = os.umask(0o022)
    os.umask(old)
    assert (saved.stat().st_mode & 0o777) == (0o666 & ~old)


def test_stale_temporary_files_of_dead_saves_are_removed(model, tmp_path):
    dead = tmp_path / ".m.mfrec.999999999.abcd1234.tmp"  # no such process
    live = tmp_path / f".m.mfrec.{os.getpid()}.abcd1234.tmp"  # this process: a concurrent save
    other = tmp_path / ".n.mfrec.999999999.abcd1234.tmp"  # another model's
    for p in (dead, live, other):
        p.write_bytes(b"partial")
    persist.save(model, tmp_path / "m.mfrec")
    assert not dead.exists() and live.exists() and other.exists()
