"""Model files: round trip, atomic writes, and clean refusals of truncated, tampered and malicious files."""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile

import numpy as np
import pandas as pd
import pytest

from mfrec import Interactions, ModelFileError
from mfrec import persist


@persist.register_model
class TinyModel:
    """A minimal registered estimator: enough state to exercise every encoding path."""

    def __init__(self, factors: int = 2, note: str = "x"):
        self.factors = factors
        self.note = note

    def get_params(self):
        return {"factors": self.factors, "note": self.note}

    def fit(self, data: Interactions):
        rng = np.random.default_rng(0)
        self.interactions_ = data
        self.user_factors_ = rng.normal(size=(data.n_users, self.factors)).astype(np.float32)
        self.item_factors_ = rng.normal(size=(data.n_items, self.factors))
        self.history_ = [{"iteration": 1, "loss": 1.5}]
        self.mu_ = np.float64(3.5)
        return self


def fitted(ids=("a", "b", "c")):
    df = pd.DataFrame({"user": list(ids), "item": [10, 20, 10], "r": [1.0, 2.0, 3.0]})
    return TinyModel(factors=3).fit(Interactions.from_frame(df, value="r"))


def test_round_trip(tmp_path):
    model = fitted()
    path = persist.save(model, tmp_path / "m.mfrec", metrics={"rmse": 0.9})
    back = persist.load(path)
    assert isinstance(back, TinyModel) and back.factors == 3 and back.note == "x"
    np.testing.assert_array_equal(back.user_factors_, model.user_factors_)
    assert back.user_factors_.dtype == np.float32 and back.item_factors_.dtype == np.float64
    assert back.history_ == model.history_ and back.mu_ == 3.5
    assert back.interactions_.user_ids.tolist() == ["a", "b", "c"]
    assert back.interactions_.item_ids.tolist() == [10, 20]
    assert (back.interactions_.matrix != model.interactions_.matrix).nnz == 0
    assert back.manifest_["metrics"] == {"rmse": 0.9}
    assert back.manifest_["training_data"] == {"users": 3, "items": 2, "interactions": 3}
    meta = back.manifest_["arrays"]["user_factors_"]
    assert meta["shape"] == [3, 3] and meta["dtype"] == "<f4" and len(meta["sha256"]) == 64


def test_loaded_factor_matrices_start_a_cache_line(tmp_path):
    """The kernels gather a loaded model's rows as fast as a fitted one's (numpy's own copy starts 16 bytes past a
    64-byte line); values, dtype and writeability as saved."""
    from mfrec import _aligned

    import scipy.sparse as sp

    import mfrec

    model = mfrec.ImplicitALS(factors=64, iterations=1).fit(sp.random(300, 40, density=0.1, format="csr",
                                                                     random_state=0))
    back = persist.load(persist.save(model, tmp_path / "m.mfrec"))
    for name in ("user_factors_", "item_factors_"):
        got, want = getattr(back, name), getattr(model, name)
        assert _aligned.is_aligned(got) and got.flags.writeable and got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_no_pickle_anywhere(tmp_path):
    path = persist.save(fitted(), tmp_path / "m.mfrec")
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            if name.endswith(".npy"):
                arr = np.lib.format.read_array(io.BytesIO(zf.read(name)), allow_pickle=False)
                assert arr.dtype != object


def test_save_is_atomic_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "m.mfrec"
    persist.save(fitted(), path)
    before = path.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        persist.save(fitted(ids=("x", "y", "z")), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.mfrec"]  # no temporary file left behind


def _rewrite(path, mutate, recompute_checksum=True):
    """Copy the archive entry by entry, letting ``mutate(name, data, manifest)`` change things.

    The manifest checksum is recomputed afterwards (as a deliberate forger would), so that the checks behind it
    are what a test meets; ``recompute_checksum=False`` leaves it stale.
    """
    with zipfile.ZipFile(path) as zf:
        items = {n: zf.read(n) for n in zf.namelist()}
    manifest = json.loads(items.pop("manifest.json"))
    out = mutate(items, manifest) or items
    if recompute_checksum and "checksum" in manifest:
        manifest["checksum"] = persist.manifest_checksum(manifest)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("manifest.json", json.dumps(manifest))
        for name, data in out.items():
            if isinstance(data, tuple):  # (bytes, compression)
                zf.writestr(name, data[0], compress_type=data[1])
            else:
                zf.writestr(name, data)


@pytest.fixture
def saved(tmp_path):
    return persist.save(fitted(), tmp_path / "m.mfrec")


def test_truncated_file(saved):
    raw = saved.read_bytes()
    saved.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ModelFileError, match="m.mfrec"):
        persist.load(saved)


def test_not_a_model_file(tmp_path):
    bad = tmp_path / "bad.mfrec"
    bad.write_bytes(b"hello")
    with pytest.raises(ModelFileError, match="not a readable mfrec model file"):
        persist.load(bad)
    with pytest.raises(ModelFileError, match="no such model file"):
        persist.load(tmp_path / "missing.mfrec")


def test_checksum_mismatch(saved):
    def flip(items, manifest):
        name = manifest["arrays"]["user_factors_"]["entry"]
        data = bytearray(items[name])
        data[-1] ^= 0xFF
        items[name] = bytes(data)

    _rewrite(saved, flip)
    with pytest.raises(ModelFileError, match="checksum mismatch for array 'user_factors_'"):
        persist.load(saved)


def test_incompatible_version(saved):
    _rewrite(saved, lambda items, m: m.update(format_version=99))
    with pytest.raises(ModelFileError, match="format version 99 is not supported"):
        persist.load(saved)


def test_pickle_payload_is_refused(saved):
    class Boom:
        def __reduce__(self):
            return (os.system, ("echo pwned > /tmp/mfrec-pwned",))

    def inject(items, manifest):
        buf = io.BytesIO()
        np.lib.format.write_array(buf, np.array([Boom()], dtype=object), allow_pickle=True)
        raw = buf.getvalue()
        meta = manifest["arrays"]["user_factors_"]
        items[meta["entry"]] = raw
        import hashlib

        meta.update(dtype="|O", shape=[1], nbytes=8, sha256=hashlib.sha256(raw).hexdigest())

    _rewrite(saved, inject)
    with pytest.raises(ModelFileError, match="forbidden dtype"):
        persist.load(saved)
    assert not os.path.exists("/tmp/mfrec-pwned")
    # a pickle as manifest is not JSON either
    with zipfile.ZipFile(saved, "w") as zf:
        zf.writestr("manifest.json", pickle.dumps({"format": "mfrec-model"}))
    with pytest.raises(ModelFileError, match="manifest is unreadable"):
        persist.load(saved)


def test_path_traversal_names_are_refused(saved):
    def traverse(items, manifest):
        meta = manifest["arrays"]["user_factors_"]
        items["../../etc/evil.npy"] = items.pop(meta["entry"])
        meta["entry"] = "../../etc/evil.npy"
        items["../outside.txt"] = b"x"

    _rewrite(saved, traverse)
    with pytest.raises(ModelFileError, match="entry for array 'user_factors_' is malformed"):
        persist.load(saved)


def test_entries_the_manifest_does_not_name_are_refused(saved):
    def extra(items, manifest):
        items["../outside.txt"] = b"x"

    _rewrite(saved, extra)
    with pytest.raises(ModelFileError, match="unexpected archive entries"):
        persist.load(saved)


def test_small_file_cannot_claim_huge_arrays(saved):
    def huge(items, manifest):
        meta = manifest["arrays"]["user_factors_"]
        meta.update(shape=[10**6, 10**4], nbytes=4 * 10**10)

    _rewrite(saved, huge)
    with pytest.raises(ModelFileError, match="declares .* bytes of arrays but the file is smaller"):
        persist.load(saved)


def test_compressed_entries_are_refused(saved):
    def deflate(items, manifest):
        name = manifest["arrays"]["item_factors_"]["entry"]
        items[name] = (items[name], zipfile.ZIP_DEFLATED)

    _rewrite(saved, deflate)
    with pytest.raises(ModelFileError, match="compressed"):
        persist.load(saved)


def test_unknown_class_is_refused(saved):
    _rewrite(saved, lambda items, m: m.update(model_class="os.system"))
    with pytest.raises(ModelFileError, match="unknown model class 'os.system'"):
        persist.load(saved)


def test_unregistered_or_unfitted_models_cannot_be_saved(tmp_path):
    with pytest.raises(ModelFileError, match="not fitted"):
        persist.save(TinyModel(), tmp_path / "x.mfrec")

    class Other(TinyModel):
        pass

    with pytest.raises(ModelFileError, match="not a registered"):
        persist.save(Other().fit(fitted().interactions_), tmp_path / "x.mfrec")


def test_a_model_module_that_fails_to_import_is_reported_not_swallowed(monkeypatch):
    """persist used to skip model modules that raised ImportError, so a broken install read as "unknown model class"."""
    import importlib

    from mfrec import persist

    real = importlib.import_module

    def broken(name, *args, **kwargs):
        if name == "mfrec.models.implicit":
            raise ImportError("no module named mfrec.kernels._native")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", broken)
    with pytest.raises(ImportError, match=r"importing mfrec\.models\.implicit failed .*_native.*reinstall mfrec"):
        persist._ensure_registry()
