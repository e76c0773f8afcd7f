"""Model files without pickle: one uncompressed zip archive of ``.npy`` arrays plus ``manifest.json``.

Layout of a ``.mfrec`` file (a ZIP archive, entries stored, not compressed)::

    manifest.json            format, format_version, model class, hyperparameters, mfrec version, created,
                             training-data summary, metrics (if any), JSON-able fitted state (history_, ...),
                             and for every array: entry name, shape, dtype, byte size and SHA-256
    arrays/<name>.npy        one NumPy array each (never object dtype)

Loading is safe by construction:

* only the model classes in :data:`MODEL_REGISTRY` can be built, by name: no import of arbitrary code;
* every ``.npy`` header is parsed with ``allow_pickle=False`` semantics: object dtypes are refused;
* the shape, dtype and size an entry declares are checked against the manifest *before* its bytes are read, and
  the archive's entries must be stored (no compression) so a small file cannot expand into gigabytes;
* entry names are matched exactly against the manifest (``../`` tricks have nothing to match);
* the SHA-256 of every array's bytes must match the manifest.

Writes are atomic: the archive is written to a temporary file in the destination folder, flushed and fsynced,
then renamed over the destination, so a crash or a full disk leaves the previous model intact.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from mfrec._version import __version__
from mfrec.data.interactions import Interactions
from mfrec.exceptions import ModelFileError

__all__ = ["save", "load", "FORMAT", "FORMAT_VERSION", "MODEL_REGISTRY", "register_model"]

FORMAT = "mfrec-model"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
_ALLOWED_KINDS = "biuf"  # bool, int, uint, float; plus unicode strings for id maps ("U")

#: Model classes that :func:`load` may build, by class name. Models register themselves on import.
MODEL_REGISTRY: dict[str, type] = {}


def register_model(cls: type) -> type:
    """Class decorator: allow :func:`load` to rebuild ``cls`` from a file."""
    MODEL_REGISTRY[cls.__name__] = cls
    return cls


def _ensure_registry() -> None:
    """Import the model modules so their classes are registered (lazily, to keep imports light).

    They are part of mfrec: one that fails to import is a broken install (the compiled kernels missing, say),
    reported as such instead of surfacing later as "unknown model class".
    """
    import importlib

    for module in (
        "mfrec.models.baselines",
        "mfrec.models.implicit",
        "mfrec.models.explicit",
        "mfrec.models.content",
        "mfrec.models.linear",
    ):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ImportError(
                f"mfrec's model classes cannot be registered: importing {module} failed ({exc}); the install is "
                "incomplete, reinstall mfrec (pip install mfrec, or pip install -e . in a checkout)"
            ) from exc


# ---------------------------------------------------------------------- encoding of state
def _id_array(index: pd.Index, what: str) -> tuple[np.ndarray, str]:
    values = index.to_numpy()
    if values.dtype.kind in "iu":
        return values.astype(np.int64), "int"
    if values.dtype.kind == "f":
        return values.astype(np.float64), "float"
    if all(isinstance(v, str) for v in values):
        return values.astype(str), "str"
    if all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in values):
        return values.astype(np.int64), "int"
    raise ModelFileError(f"{what} ids of mixed or unsupported types cannot be saved; convert them to str or int")


def _encode_interactions(name: str, data: Interactions, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    m = data.matrix
    arrays[f"{name}.indptr"] = np.asarray(m.indptr)
    arrays[f"{name}.indices"] = np.asarray(m.indices)
    arrays[f"{name}.data"] = np.asarray(m.data)
    users, ukind = _id_array(data.user_index_map, "user")
    items, ikind = _id_array(data.item_index_map, "item")
    arrays[f"{name}.user_ids"] = users
    arrays[f"{name}.item_ids"] = items
    return {"type": "interactions", "shape": list(m.shape), "user_id_kind": ukind, "item_id_kind": ikind,
            "has_values": data.has_values}


def _decode_interactions(name: str, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Interactions:
    try:
        n_users, n_items = (int(x) for x in meta["shape"])
        indptr, indices, values = arrays[f"{name}.indptr"], arrays[f"{name}.indices"], arrays[f"{name}.data"]
        users, items = arrays[f"{name}.user_ids"], arrays[f"{name}.item_ids"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"model file: interactions {name!r} are incomplete ({exc})") from exc
    if len(indptr) != n_users + 1 or len(users) != n_users or len(items) != n_items:
        raise ModelFileError(f"model file: interactions {name!r} have inconsistent shapes")
    if len(indices) != len(values) or indptr[-1] != len(indices) or np.any(np.diff(indptr) < 0):
        raise ModelFileError(f"model file: interactions {name!r} have an invalid CSR structure")
    if len(indices) and (indices.min() < 0 or indices.max() >= n_items):
        raise ModelFileError(f"model file: interactions {name!r} have item indices out of range")
    matrix = sp.csr_matrix((values, indices, indptr), shape=(n_users, n_items))
    return Interactions(matrix, users.tolist(), items.tolist(), has_values=bool(meta.get("has_values", True)))


def _jsonable(value: Any) -> tuple[bool, Any]:
    """(ok, value) — whether ``value`` survives JSON as-is (numbers, strings, lists, dicts of those)."""
    if value is None or isinstance(value, bool | int | float | str):
        return True, value
    if isinstance(value, np.generic):
        return True, value.item()
    if isinstance(value, list | tuple):
        out = []
        for v in value:
            ok, v2 = _jsonable(v)
            if not ok:
                return False, None
            out.append(v2)
        return True, out
    if isinstance(value, dict):
        out_d = {}
        for k, v in value.items():
            ok, v2 = _jsonable(v)
            if not ok or not isinstance(k, str):
                return False, None
            out_d[k] = v2
        return True, out_d
    return False, None


def _fitted_state(model: Any) -> dict[str, Any]:
    """Public fitted attributes: names ending in '_' and not starting with '_'."""
    return {
        k: v for k, v in vars(model).items() if k.endswith("_") and not k.startswith("_") and k != "manifest_"
    }


# ---------------------------------------------------------------------- save
def save(model: Any, path: str | os.PathLike, *, metrics: dict[str, float] | None = None,
         extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` to ``path`` atomically (see the module docstring for the format). Returns the path.

    Parameters
    ----------
    model : a fitted mfrec model (its class must be registered)
    path : destination file; conventionally ``*.mfrec``
    metrics : optional evaluation results to record in the manifest
    extra : optional JSON-able metadata (e.g. item titles' source) to record
    """
    cls = type(model)
    if MODEL_REGISTRY.get(cls.__name__) is not cls:
        raise ModelFileError(f"{cls.__name__} is not a registered mfrec model class and cannot be saved")
    state = _fitted_state(model)
    if not state:
        raise ModelFileError(f"{cls.__name__} is not fitted: nothing to save")
    arrays: dict[str, np.ndarray] = {}
    json_state: dict[str, Any] = {}
    structured: dict[str, Any] = {}
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            if value.dtype.kind not in _ALLOWED_KINDS + "U":
                raise ModelFileError(f"attribute {key} has dtype {value.dtype}, which cannot be saved without pickle")
            arrays[key] = value
        elif isinstance(value, Interactions):
            structured[key] = _encode_interactions(key, value, arrays)
        elif isinstance(value, pd.Index):
            ids, kind = _id_array(value, key)
            arrays[key] = ids
            structured[key] = {"type": "index", "kind": kind}
        else:
            ok, encoded = _jsonable(value)
            if not ok:
                raise ModelFileError(f"attribute {key} of type {type(value).__name__} cannot be saved")
            json_state[key] = encoded
    ok, params = _jsonable(model.get_params())
    if not ok:
        raise ModelFileError(f"{cls.__name__}'s hyperparameters are not JSON-serializable")
    training = state.get("interactions_")
    entries = {}
    payloads: dict[str, bytes] = {}
    for key, arr in arrays.items():
        arr = np.ascontiguousarray(arr)
        buf = io.BytesIO()
        np.lib.format.write_array(buf, arr, allow_pickle=False)
        raw = buf.getvalue()
        entry = f"arrays/{key}.npy"
        payloads[entry] = raw
        entries[key] = {
            "entry": entry,
            "shape": list(arr.shape),
            "dtype": arr.dtype.str,
            "nbytes": int(arr.nbytes),
            "sha256": hashlib.sha256(raw).hexdigest(),
        }
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "mfrec_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "model_class": cls.__name__,
        "params": params,
        "training_data": None if training is None else {
            "users": training.n_users, "items": training.n_items, "interactions": training.nnz,
        },
        "metrics": metrics or {},
        "extra": extra or {},
        "state": json_state,
        "structured": structured,
        "arrays": entries,
    }
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
                zf.writestr(MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
                for entry, raw in payloads.items():
                    zf.writestr(entry, raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    return path


# ---------------------------------------------------------------------- load
def _read_manifest(zf: zipfile.ZipFile, source: str) -> dict[str, Any]:
    try:
        info = zf.getinfo(MANIFEST)
    except KeyError:
        raise ModelFileError(f"{source}: not an mfrec model file (no {MANIFEST})") from None
    if info.file_size > MAX_MANIFEST_BYTES:
        raise ModelFileError(f"{source}: manifest is implausibly large ({info.file_size} bytes)")
    try:
        manifest = json.loads(zf.read(info).decode("utf-8"))
    except (ValueError, UnicodeDecodeError, zipfile.BadZipFile, OSError) as exc:
        raise ModelFileError(f"{source}: manifest is unreadable ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelFileError(f"{source}: not an mfrec model file (format is {manifest.get('format')!r})"
                             if isinstance(manifest, dict) else f"{source}: manifest is not a JSON object")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFileError(
            f"{source}: model file format version {version!r} is not supported by mfrec {__version__} "
            f"(this version reads format {FORMAT_VERSION}); re-save the model with a matching mfrec"
        )
    return manifest


def _read_array(zf: zipfile.ZipFile, name: str, meta: dict[str, Any], source: str) -> np.ndarray:
    try:
        entry, shape, dtype_str, nbytes, digest = (
            meta["entry"], tuple(int(s) for s in meta["shape"]), meta["dtype"], int(meta["nbytes"]), meta["sha256"],
        )
        dtype = np.dtype(dtype_str)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{source}: manifest entry for array {name!r} is malformed ({exc})") from exc
    if dtype.kind not in _ALLOWED_KINDS + "U" or dtype.hasobject:
        raise ModelFileError(f"{source}: array {name!r} has a forbidden dtype {dtype}")
    if any(s < 0 for s in shape) or int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != nbytes:
        raise ModelFileError(f"{source}: array {name!r} declares inconsistent shape/dtype/size")
    try:
        info = zf.getinfo(entry)
    except KeyError:
        raise ModelFileError(f"{source}: array {name!r} is missing from the archive (truncated file?)") from None
    if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size:
        raise ModelFileError(f"{source}: array {name!r} is compressed; mfrec files store arrays uncompressed")
    if not (nbytes <= info.file_size <= nbytes + 65536):
        raise ModelFileError(f"{source}: array {name!r} has {info.file_size} bytes, manifest says {nbytes} (+ header)")
    try:
        raw = zf.read(info)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ModelFileError(f"{source}: array {name!r} cannot be read ({exc}); the file is truncated or corrupt") from exc
    if hashlib.sha256(raw).hexdigest() != digest:
        raise ModelFileError(f"{source}: checksum mismatch for array {name!r}: the file was modified or corrupted")
    buf = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(buf)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        hdr_shape, _fortran, hdr_dtype = reader(buf, max_header_size=10000)
        if tuple(hdr_shape) != shape or hdr_dtype != dtype:
            raise ModelFileError(f"{source}: array {name!r} header disagrees with the manifest")
        arr = np.lib.format.read_array(io.BytesIO(raw), allow_pickle=False)
    except ModelFileError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        raise ModelFileError(f"{source}: array {name!r} is not a valid .npy payload ({exc})") from exc
    return np.ascontiguousarray(arr)


def load(path: str | os.PathLike, *, on_manifest: Callable[[dict[str, Any]], None] | None = None) -> Any:
    """Load a model saved by :func:`save` / ``model.save``. Every problem raises :class:`ModelFileError`."""
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise ModelFileError(f"{source}: no such model file")
    try:
        zf = zipfile.ZipFile(path, "r")
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelFileError(f"{source}: not a readable mfrec model file ({exc}); truncated or corrupt?") from exc
    with zf:
        manifest = _read_manifest(zf, source)
        if on_manifest is not None:
            on_manifest(manifest)
        _ensure_registry()
        class_name = manifest.get("model_class")
        cls = MODEL_REGISTRY.get(class_name) if isinstance(class_name, str) else None
        if cls is None:
            raise ModelFileError(f"{source}: unknown model class {class_name!r}")
        expected_names = {meta.get("entry") for meta in manifest.get("arrays", {}).values() if isinstance(meta, dict)}
        unexpected = [n for n in zf.namelist() if n != MANIFEST and n not in expected_names]
        if unexpected:
            raise ModelFileError(f"{source}: unexpected archive entries {unexpected[:3]} (tampered file?)")
        declared = sum(int(m.get("nbytes", 0)) for m in manifest["arrays"].values())
        if declared > path.stat().st_size:
            raise ModelFileError(f"{source}: manifest declares {declared} bytes of arrays but the file is smaller")
        arrays = {name: _read_array(zf, name, meta, source) for name, meta in manifest["arrays"].items()}
    params = manifest.get("params", {})
    try:
        model = cls(**params)
    except TypeError as exc:
        raise ModelFileError(f"{source}: hyperparameters do not fit {class_name} ({exc})") from exc
    structured = manifest.get("structured", {})
    used: set[str] = set()
    for key, meta in structured.items():
        if meta.get("type") == "interactions":
            setattr(model, key, _decode_interactions(key, meta, arrays))
            used.update(k for k in arrays if k.startswith(f"{key}."))
        elif meta.get("type") == "index":
            setattr(model, key, pd.Index(arrays[key].tolist()))
            used.add(key)
    for key, arr in arrays.items():
        if key not in used:
            setattr(model, key, arr)
    for key, value in manifest.get("state", {}).items():
        setattr(model, key, value)
    model.manifest_ = manifest
    after = getattr(model, "_after_load", None)
    if callable(after):
        after()
    return model
