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
* the SHA-256 of every array's bytes must match the manifest, and (format 2) the manifest's own ``checksum``
  covers the hyperparameters, the JSON state and those digests;
* the manifest is read in a bounded way (at most 16 MiB, whatever the archive declares) and validated against
  its schema (types, required keys, nesting depth, attribute names): a file can only set fitted attributes
  (lower-case names ending in ``_``) that are not methods or properties of the class;
* the fitted arrays must agree with each other and with the id maps, and be finite (also checked at save).

Writes are atomic: the archive is written to a temporary file in the destination folder, flushed and fsynced,
then renamed over the destination, so a crash or a full disk leaves the previous model intact. Arrays are
streamed into the archive (memory stays near one chunk, not the model's size); the file gets the usual mode
under the umask; temporary files that a killed save left behind are removed by the next save of that name.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from mfrec import _aligned
from mfrec._version import __version__
from mfrec.data.interactions import Interactions
from mfrec.exceptions import ModelFileError

__all__ = ["save", "load", "FORMAT", "FORMAT_VERSION", "MODEL_REGISTRY", "register_model"]

FORMAT = "mfrec-model"
#: 2 adds ``checksum``: SHA-256 over the rest of the manifest (hyperparameters and state included). Version 1
#: files (no checksum) still load.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
#: deepest nesting of JSON containers a manifest may have (mfrec writes at most 5)
MAX_MANIFEST_DEPTH = 32
#: a fitted attribute: lower-case name ending in "_" (``user_factors_``), never private
_ATTRIBUTE = re.compile(r"[a-z][a-z0-9_]{0,62}_")
_ARRAY_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}_(\.[a-z_]{1,16})?")
_HEX64 = re.compile(r"[0-9a-f]{64}")
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


# ---------------------------------------------------------------------- checks shared by save and load
#: fitted arrays whose rows follow the user / item id map (``user_factors_``, ``item_bias_``, ...)
_ROW_SUFFIXES = ("factors_", "bias_", "features_", "popularity_", "activity_", "offset_", "score_")


def _check_state(model: Any, where: str) -> None:
    """Refuse fitted arrays that contradict each other or hold NaN/inf: ``ModelFileError`` naming the attribute.

    Checked: every float array is finite; an array named ``user_<suffix>`` / ``item_<suffix>`` for the suffixes in
    :data:`_ROW_SUFFIXES` has one row per user / item of ``interactions_``; factor matrices are 2-D with the same
    number of columns; an attribute map has one row per attribute column and one column per factor.
    """
    arrays = {k: v for k, v in _fitted_state(model).items() if isinstance(v, np.ndarray)}
    for name, arr in arrays.items():
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise ModelFileError(f"{where}: {name} holds NaN or infinite values")
    inter = getattr(model, "interactions_", None)
    if isinstance(inter, Interactions):
        for side, n in (("user", inter.n_users), ("item", inter.n_items)):
            for suffix in _ROW_SUFFIXES:
                arr = arrays.get(f"{side}_{suffix}")
                if arr is not None and (arr.ndim == 0 or arr.shape[0] != n):
                    raise ModelFileError(f"{where}: {side}_{suffix} has shape {arr.shape} but the model has {n} "
                                         f"{side}s")
    factors = [arrays.get(f"{side}_factors_") for side in ("user", "item")]
    if any(f is not None for f in factors):
        if any(f is None or f.ndim != 2 for f in factors):
            raise ModelFileError(f"{where}: user_factors_ and item_factors_ must both be 2-D matrices")
        if factors[0].shape[1] != factors[1].shape[1]:
            raise ModelFileError(f"{where}: user_factors_ has {factors[0].shape[1]} columns, item_factors_ "
                                 f"{factors[1].shape[1]}")
    for side in ("user", "item"):
        W, A = arrays.get(f"{side}_attribute_map_"), arrays.get(f"{side}_features_")
        if W is not None and (W.ndim != 2 or A is None or A.ndim != 2 or W.shape[0] != A.shape[1]
                              or (factors[0] is not None and W.shape[1] != factors[0].shape[1])):
            raise ModelFileError(f"{where}: {side}_attribute_map_ of shape {W.shape} does not fit the features "
                                 "and the factors")


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether JSON ``value`` nests containers deeper than ``limit`` (iterative: no recursion to exhaust)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def manifest_checksum(manifest: dict[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of ``manifest`` without its ``checksum`` key.

    It covers the hyperparameters, the JSON state and, through their own SHA-256, every array: changing any
    value of the file changes it. It detects corruption and edits, it is not a signature (docs/security.md).
    """
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


_MANIFEST_TYPES: dict[str, tuple[type, ...]] = {
    "format": (str,), "format_version": (int,), "model_class": (str,), "params": (dict,), "state": (dict,),
    "structured": (dict,), "arrays": (dict,),
}
_MANIFEST_OPTIONAL: dict[str, tuple[type, ...]] = {
    "mfrec_version": (str,), "created": (str,), "training_data": (dict, type(None)), "metrics": (dict,),
    "extra": (dict,), "checksum": (str,), "shards": (dict,),
}
_ID_KINDS = ("int", "float", "str")


def _validate_manifest(m: Any, source: str) -> None:
    """The manifest's schema: required keys and their types, attribute names, array entries (ModelFileError)."""

    def bad(what: str) -> ModelFileError:
        return ModelFileError(f"{source}: manifest {what}")

    if not isinstance(m, dict):
        raise bad("is not a JSON object")
    if m.get("format") != FORMAT:
        raise ModelFileError(f"{source}: not an mfrec model file (format is {str(m.get('format'))[:40]!r})")
    if _depth_exceeds(m, MAX_MANIFEST_DEPTH):
        raise bad(f"nests deeper than {MAX_MANIFEST_DEPTH} levels")
    for key, types in {**_MANIFEST_TYPES, **_MANIFEST_OPTIONAL}.items():
        if key not in m:
            if key in _MANIFEST_TYPES:
                raise bad(f"has no {key!r}")
            continue
        if not isinstance(m[key], types) or isinstance(m[key], bool):
            raise bad(f"{key!r} has the wrong type ({type(m[key]).__name__})")
    unknown = sorted(set(m) - set(_MANIFEST_TYPES) - set(_MANIFEST_OPTIONAL))
    if unknown:
        raise bad(f"has unknown keys {[k[:40] for k in unknown[:3]]}")
    if not all(isinstance(k, str) and k.isidentifier() for k in m["params"]):
        raise bad("'params' has a key that is not a parameter name")
    for key in m["state"]:
        if not _ATTRIBUTE.fullmatch(key) or key == "manifest_":
            raise bad(f"'state' has a key that is not a fitted attribute name: {key[:40]!r}")
    for key, meta in m["structured"].items():
        if not _ATTRIBUTE.fullmatch(key) or not isinstance(meta, dict):
            raise bad(f"'structured' entry {key[:40]!r} is malformed")
        kind = meta.get("type")
        if kind == "interactions":
            shape = meta.get("shape")
            if not (isinstance(shape, list) and len(shape) == 2
                    and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in shape)):
                raise bad(f"interactions {key!r} have a malformed shape")
            if meta.get("user_id_kind") not in _ID_KINDS or meta.get("item_id_kind") not in _ID_KINDS:
                raise bad(f"interactions {key!r} have an unknown id kind")
            if not isinstance(meta.get("has_values", True), bool):
                raise bad(f"interactions {key!r}: has_values is not true/false")
        elif kind == "index":
            if meta.get("kind") not in _ID_KINDS:
                raise bad(f"index {key!r} has an unknown id kind")
        else:
            raise bad(f"'structured' entry {key!r} has an unknown type {str(kind)[:40]!r}")
    for name, meta in m["arrays"].items():
        if not _ARRAY_NAME.fullmatch(name) or not isinstance(meta, dict):
            raise bad(f"array {name[:40]!r} is malformed")
        shape, nbytes, digest = meta.get("shape"), meta.get("nbytes"), meta.get("sha256")
        if (meta.get("entry") != f"arrays/{name}.npy" or not isinstance(meta.get("dtype"), str)
                or len(meta["dtype"]) > 16 or not isinstance(shape, list) or len(shape) > 8
                or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in shape)
                or not isinstance(nbytes, int) or isinstance(nbytes, bool) or nbytes < 0
                or not isinstance(digest, str) or not _HEX64.fullmatch(digest)):
            raise bad(f"entry for array {name!r} is malformed")


# ---------------------------------------------------------------------- save
def save(model: Any, path: str | os.PathLike | Any, *, metrics: dict[str, float] | None = None,
         extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` to ``path`` atomically (see the module docstring for the format). Returns the path.

    Parameters
    ----------
    model : a fitted mfrec model (its class must be registered)
    path : destination file (conventionally ``*.mfrec``), or a binary file object (written in place: the atomic
        rename and fsync are then the caller's business)
    metrics : optional evaluation results to record in the manifest
    extra : optional JSON-able metadata (e.g. item titles' source) to record
    """
    arrays, manifest = _payload(model, metrics, extra)
    if hasattr(path, "write"):  # a binary file object: written in place (no atomic rename, no fsync)
        _write_archive(path, arrays, manifest)
        return path
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(folder, path.name)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            _write_archive(fh, arrays, manifest)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp_name, 0o666 & ~_umask())  # the usual mode of a new file (mkstemp makes it 0600)
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    return path


def _payload(model: Any, metrics: dict[str, float] | None, extra: dict[str, Any] | None,
             leave_out: tuple[str, ...] = ()) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``(arrays, manifest)`` of a model (the manifest without its array entries and checksum yet).

    ``leave_out``: fitted attributes stored elsewhere (a sharded model directory's per-block factor files).
    """
    cls = type(model)
    if MODEL_REGISTRY.get(cls.__name__) is not cls:
        raise ModelFileError(f"{cls.__name__} is not a registered mfrec model class and cannot be saved")
    state = {k: v for k, v in _fitted_state(model).items() if k not in leave_out}
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
    _check_state(model, f"{cls.__name__} cannot be saved")
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
        "arrays": {},
    }
    return arrays, manifest


def _write_archive(fh: Any, arrays: dict[str, np.ndarray], manifest: dict[str, Any]) -> None:
    """The ZIP archive into the binary file object ``fh``; fills ``manifest["arrays"]`` and its checksum."""
    with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        # each array is streamed into its entry (numpy writes it in chunks), hashed on the way: no copy of the
        # model is held in memory; the manifest, which needs the hashes, is written last
        for key, arr in arrays.items():
            entry = f"arrays/{key}.npy"
            with zf.open(entry, "w", force_zip64=True) as raw:
                sink = _HashingWriter(raw)
                np.lib.format.write_array(sink, np.ascontiguousarray(arr), allow_pickle=False)
            manifest["arrays"][key] = {"entry": entry, **array_fields(arr, sink.hexdigest())}
        manifest["checksum"] = manifest_checksum(manifest)
        zf.writestr(MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))


def array_fields(arr: np.ndarray, sha256: str) -> dict[str, Any]:
    """An array's manifest fields besides its entry name (what :func:`array_meta` checks at load)."""
    return {"shape": list(arr.shape), "dtype": arr.dtype.str, "nbytes": int(arr.nbytes), "sha256": sha256}


class _HashingWriter:
    """A write-only file object that hashes what passes through it (SHA-256) on its way to ``raw``."""

    def __init__(self, raw: Any) -> None:
        self.raw, self._hash = raw, hashlib.sha256()

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        return self.raw.write(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def _umask() -> int:
    """The process's umask, read without changing it where the system says it (Linux), else set and restored."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _remove_stale_temporaries(folder: Path, name: str) -> None:
    """Delete the temporary files of earlier saves of ``name`` whose writing process no longer exists.

    A save writes ``.NAME.PID.XXXX.tmp`` and renames it; a process killed mid-save (``kill -9``, power loss) leaves
    it behind. Files of a live process (a concurrent save) are left alone; files without a process id (written by
    mfrec before 0.2) are removed once they are a day old.
    """
    try:
        candidates = list(folder.glob(f".{glob_escape(name)}.*.tmp"))
    except OSError:
        return
    for tmp in candidates:
        middle = tmp.name[len(name) + 2:-4]
        pid = middle.split(".", 1)[0]
        try:
            if pid.isdigit():
                if _process_alive(int(pid)):
                    continue
            elif tmp.stat().st_mtime > _dt.datetime.now().timestamp() - 86400:
                continue
            tmp.unlink()
        except OSError:
            continue


def glob_escape(text: str) -> str:
    """``text`` with glob wildcards escaped (a model named ``[a].mfrec`` must not match other files)."""
    return re.sub(r"([*?\[])", r"[\1]", text)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's) or cannot tell: leave it
    return True


# ---------------------------------------------------------------------- load
def _read_manifest(zf: zipfile.ZipFile, source: str) -> dict[str, Any]:
    """The manifest, read in a bounded way (at most :data:`MAX_MANIFEST_BYTES`, whatever the archive declares),
    parsed, validated against its schema and, from format 2 on, against its checksum."""
    try:
        info = zf.getinfo(MANIFEST)
    except KeyError:
        raise ModelFileError(f"{source}: not an mfrec model file (no {MANIFEST})") from None
    if info.file_size > MAX_MANIFEST_BYTES:
        raise ModelFileError(f"{source}: manifest is implausibly large ({info.file_size} bytes)")
    try:
        with zf.open(info) as fh:
            raw = fh.read(MAX_MANIFEST_BYTES + 1)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
        raise ModelFileError(f"{source}: manifest is unreadable ({exc})") from None
    return parse_manifest(raw, source)


def parse_manifest(raw: bytes, source: str) -> dict[str, Any]:
    """The manifest in ``raw`` (at most :data:`MAX_MANIFEST_BYTES` + 1 bytes read), parsed, validated against its
    schema and, from format 2 on, against its checksum."""
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ModelFileError(f"{source}: manifest is implausibly large (over {MAX_MANIFEST_BYTES} bytes)")
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{source}: manifest is unreadable ({str(exc)[:80]})") from None
    except RecursionError:
        raise ModelFileError(f"{source}: manifest nests deeper than {MAX_MANIFEST_DEPTH} levels") from None
    _validate_manifest(manifest, source)
    version = manifest["format_version"]
    if version not in READABLE_VERSIONS:
        raise ModelFileError(
            f"{source}: model file format version {version!r} is not supported by mfrec {__version__} "
            f"(this version reads formats {', '.join(map(str, READABLE_VERSIONS))}); re-save the model with a "
            "matching mfrec"
        )
    if version >= 2:
        if "checksum" not in manifest:
            raise ModelFileError(f"{source}: manifest has no checksum")
        if manifest["checksum"] != manifest_checksum(manifest):
            raise ModelFileError(f"{source}: checksum mismatch in the manifest (hyperparameters or state): the file "
                                 "was modified or corrupted")
    return manifest


def _read_array(zf: zipfile.ZipFile, name: str, meta: dict[str, Any], source: str) -> np.ndarray:
    shape, dtype, nbytes, digest = array_meta(meta, name, source)
    try:
        info = zf.getinfo(meta["entry"])
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
    return decode_npy(raw, name, shape, dtype, digest, source)


def array_meta(meta: dict[str, Any], name: str, source: str) -> tuple[tuple[int, ...], np.dtype, int, str]:
    """``(shape, dtype, nbytes, sha256)`` of a manifest's array entry, checked for consistency and dtype."""
    try:
        shape, dtype_str, nbytes, digest = (tuple(int(s) for s in meta["shape"]), meta["dtype"], int(meta["nbytes"]),
                                            meta["sha256"])
        dtype = np.dtype(dtype_str)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{source}: manifest entry for array {name!r} is malformed ({exc})") from exc
    if dtype.kind not in _ALLOWED_KINDS + "U" or dtype.hasobject:
        raise ModelFileError(f"{source}: array {name!r} has a forbidden dtype {dtype}")
    if any(s < 0 for s in shape) or int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != nbytes:
        raise ModelFileError(f"{source}: array {name!r} declares inconsistent shape/dtype/size")
    return shape, dtype, nbytes, digest


def decode_npy(raw: bytes, name: str, shape: tuple[int, ...], dtype: np.dtype, digest: str, source: str) -> np.ndarray:
    """The array in the ``.npy`` bytes ``raw``, after checking their SHA-256 and that the header matches."""
    if hashlib.sha256(raw).hexdigest() != digest:
        raise ModelFileError(f"{source}: checksum mismatch for array {name!r}: the file was modified or corrupted")
    buf = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(buf)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        hdr_shape, _fortran, hdr_dtype = reader(buf, max_header_size=10000)
        if tuple(hdr_shape) != shape or hdr_dtype != dtype:
            raise ModelFileError(f"{source}: array {name!r} header disagrees with the manifest")
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if not _fortran and dtype.kind in _ALLOWED_KINDS and nbytes and len(raw) - buf.tell() == nbytes:
            # straight into an array that starts a cache line: the kernels gather a loaded model's factor rows
            # as fast as a fitted one's (numpy's copy starts 16 bytes past a line: partial fits 15-30 % slower)
            arr = _aligned.empty(shape, dtype)
            arr.reshape(-1).view(np.uint8)[:] = np.frombuffer(raw, dtype=np.uint8, count=nbytes, offset=buf.tell())
            return arr
        arr = np.lib.format.read_array(io.BytesIO(raw), allow_pickle=False)
    except ModelFileError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        raise ModelFileError(f"{source}: array {name!r} is not a valid .npy payload ({exc})") from exc
    return np.ascontiguousarray(arr)


def load(path: str | os.PathLike | Any, *, on_manifest: Callable[[dict[str, Any]], None] | None = None) -> Any:
    """Load a model saved by :func:`save` / ``model.save`` from a path or a binary file object.

    Every problem raises :class:`ModelFileError`.
    """
    if hasattr(path, "read"):
        source = os.path.basename(str(getattr(path, "name", ""))) or "<file object>"
        try:
            here = path.tell()
            size = path.seek(0, os.SEEK_END) - here
            path.seek(here)
        except (OSError, ValueError, AttributeError) as exc:
            raise ModelFileError(f"{source}: a model file object must be seekable ({exc})") from None
    else:
        path = Path(path)
        source = str(path)
        if path.is_dir():  # a sharded model directory (mfrec.distributed.fit(..., path=...))
            from mfrec.persist_sharded import load_dir

            return load_dir(path, on_manifest=on_manifest)
        if not path.is_file():
            raise ModelFileError(f"{source}: no such model file")
        size = path.stat().st_size
    try:
        zf = zipfile.ZipFile(path, "r")
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ModelFileError(f"{source}: not a readable mfrec model file ({exc}); truncated or corrupt?") from exc
    with zf:
        manifest = _read_manifest(zf, source)
        if "shards" in manifest:
            raise ModelFileError(f"{source}: the manifest lists per-block shards, which only a model directory has")
        if on_manifest is not None:
            on_manifest(manifest)
        cls = model_class(manifest, source)
        expected_names = {meta.get("entry") for meta in manifest.get("arrays", {}).values() if isinstance(meta, dict)}
        unexpected = [n for n in zf.namelist() if n != MANIFEST and n not in expected_names]
        if unexpected:
            raise ModelFileError(f"{source}: unexpected archive entries {unexpected[:3]} (tampered file?)")
        declared = sum(m["nbytes"] for m in manifest["arrays"].values())
        if declared > size:
            raise ModelFileError(f"{source}: manifest declares {declared} bytes of arrays but the file is smaller")
        arrays = {name: _read_array(zf, name, meta, source) for name, meta in manifest["arrays"].items()}
    return build_model(cls, manifest, arrays, source)


def model_class(manifest: dict[str, Any], source: str) -> type:
    """The registered class a manifest names (only those can be built: no import of arbitrary code)."""
    _ensure_registry()
    class_name = manifest.get("model_class")
    cls = MODEL_REGISTRY.get(class_name) if isinstance(class_name, str) else None
    if cls is None:
        raise ModelFileError(f"{source}: unknown model class {class_name!r}")
    return cls


def build_model(cls: type, manifest: dict[str, Any], arrays: dict[str, np.ndarray], source: str) -> Any:
    """The model of a validated manifest and its arrays (shared by the archive and the directory formats)."""
    class_name = cls.__name__
    params = manifest["params"]
    try:
        model = cls(**params)
    except TypeError as exc:
        raise ModelFileError(f"{source}: hyperparameters do not fit {class_name} ({exc})") from exc
    structured = manifest["structured"]
    restored = list(structured) + list(manifest["state"]) + [k for k in arrays if "." not in k]
    for key in restored:
        if hasattr(cls, key):  # a method, property or class attribute: a file never replaces those
            raise ModelFileError(f"{source}: {key!r} is not a fitted attribute of {class_name}")
    used: set[str] = set()
    for key, meta in structured.items():
        if meta["type"] == "interactions":
            setattr(model, key, _decode_interactions(key, meta, arrays))
            used.update(k for k in arrays if k.startswith(f"{key}."))
        else:
            if key not in arrays:
                raise ModelFileError(f"{source}: index {key!r} has no array")
            setattr(model, key, pd.Index(arrays[key].tolist()))
            used.add(key)
    for key, arr in arrays.items():
        if key not in used:
            if "." in key:
                raise ModelFileError(f"{source}: array {key!r} belongs to nothing in the manifest")
            setattr(model, key, arr)
    for key, value in manifest["state"].items():
        setattr(model, key, value)
    _check_state(model, source)
    model.manifest_ = manifest
    after = getattr(model, "_after_load", None)
    if callable(after):
        after()
    return model
