"""Sharded model directories: a model whose factor matrices were written block by block, by the workers.

A distributed fit whose factors do not fit in one process (``mfrec.distributed.fit(..., gather=False,
path=DIR)``) never assembles them: each worker writes the rows of its blocks. The directory is the ``.mfrec``
format spread over files, with the same rules (no pickle, every array's SHA-256 in the manifest, the manifest's
own checksum, shapes and dtypes checked before the bytes are read)::

    DIR/manifest.json                 the .mfrec manifest, plus "shards": {name: [{entry, rows: [lo, hi], shape,
                                      dtype, nbytes, sha256}, ...]} for the arrays stored by rows
    DIR/arrays/<name>.npy             the other arrays (id maps, the training pattern = the seen items, biases...)
    DIR/shards/<name>.<k:05d>.npy     rows lo:hi of array <name>, written by the worker that held them

:func:`mfrec.load` (and so ``mfrec serve``) reads either form: given a directory, it checks every file against
the manifest and assembles the sharded arrays (one copy in memory: the process that serves a model holds it).
Writes are atomic at the level of the directory: everything goes to a temporary sibling directory, fsynced,
which then replaces ``DIR`` (an earlier model directory there is moved aside and removed only after the rename).
The workers and the client must see the same filesystem (a local disk for a ``LocalCluster``, else NFS or the
like).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mfrec.exceptions import ModelFileError
from mfrec.persist import (
    MANIFEST,
    MAX_MANIFEST_BYTES,
    _ARRAY_NAME,
    _HashingWriter,
    _payload,
    _umask,
    array_fields,
    array_meta,
    build_model,
    decode_npy,
    manifest_checksum,
    model_class,
    parse_manifest,
)

__all__ = ["write_shard", "write_pattern", "new_directory", "finish_directory", "load_dir"]


def _write_npy(path: Path, arr: np.ndarray) -> dict[str, Any]:
    """Write ``arr`` to ``path`` (fsynced) and return its manifest entry fields (shape, dtype, nbytes, sha256)."""
    with open(path, "wb") as fh:
        sink = _HashingWriter(fh)
        np.lib.format.write_array(sink, np.ascontiguousarray(arr), allow_pickle=False)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(path, 0o666 & ~_umask())
    return array_fields(arr, sink.hexdigest())


def _shard_name(name: str, index: int) -> str:
    """The file of block ``index`` of sharded array ``name``, relative to the model directory."""
    return f"shards/{name}.{index:05d}.npy"


def _write_shard_file(folder: str, name: str, index: int, span: tuple[int, int], arr: np.ndarray) -> dict[str, Any]:
    """Write one shard (positions ``span`` of array ``name``) and return its manifest entry."""
    entry = _shard_name(name, index)
    return {"entry": entry, "rows": [int(span[0]), int(span[1])], **_write_npy(Path(folder) / entry, arr)}


def write_shard(rows: tuple[np.ndarray, ...], names: tuple[str, ...], folder: str, index: int,
                lo: int, hi: int) -> dict[str, dict[str, Any]]:
    """Write one block's rows ``lo:hi`` (``rows[j]`` for array ``names[j]``) into ``folder/shards``; runs on the
    worker that holds them. Returns each array's shard entry for the manifest."""
    out = {}
    for name, arr in zip(names, rows):
        if arr.shape[0] != hi - lo:
            raise ModelFileError(f"shard {index} of {name} has {arr.shape[0]} rows, expected {hi - lo}")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise ModelFileError(f"{name} rows {lo}:{hi} hold NaN or infinite values; nothing was saved")
        out[name] = _write_shard_file(folder, name, index, (lo, hi), arr)
    return out


def write_pattern(block: Any, folder: str, index: int, entry_offset: int) -> dict[str, dict[str, Any]]:
    """Write user block ``index`` of the training pattern (its CSR rows: the seen items ``recommend`` excludes)
    as shards of ``interactions_.indptr`` / ``.indices`` / ``.data``; runs on the worker that holds the block.

    ``entry_offset``: the entries of the blocks before it. Block 0 writes its whole ``indptr``, the others all but
    its leading 0, shifted: the concatenated shards are the global CSR arrays.
    """
    lo, hi = int(block.start), int(block.stop)
    ip = np.asarray(block.indptr, dtype=np.int64) + int(entry_offset)
    if index > 0:
        ip, first = ip[1:], lo + 1
    else:
        first = 0
    e0, e1 = int(entry_offset), int(entry_offset) + len(block.indices)
    return {name: _write_shard_file(folder, name, index, span, arr)
            for name, arr, span in (("interactions_.indptr", ip, (first, hi + 1)),
                                    ("interactions_.indices", np.asarray(block.indices, dtype=np.int32), (e0, e1)),
                                    ("interactions_.data", np.asarray(block.values, dtype=np.float32), (e0, e1)))}


def new_directory(path: str | os.PathLike) -> Path:
    """A fresh temporary directory beside ``path`` (with ``arrays/`` and ``shards/``) to write a model into."""
    path = Path(path)
    if path.exists() and not (path.is_dir() and (path / MANIFEST).is_file()):
        raise ModelFileError(f"{path}: exists and is not an mfrec model directory; choose another path")
    parent = path.parent if str(path.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=parent))
    (tmp / "arrays").mkdir()
    (tmp / "shards").mkdir()
    os.chmod(tmp, 0o777 & ~_umask())
    return tmp


def finish_directory(model: Any, tmp: Path, path: str | os.PathLike, shards: dict[str, list[dict[str, Any]]], *,
                     metrics: dict[str, float] | None = None, extra: dict[str, Any] | None = None) -> Path:
    """Write the model's other arrays and the manifest into ``tmp`` and put ``tmp`` in place of ``path``.

    ``shards`` maps the sharded attribute names (``user_factors_``...) to their entries (from :func:`write_shard`),
    in row order. The model's own values of those attributes (None, or the gathered arrays) are not stored again.
    """
    path = Path(path)
    try:
        arrays, manifest = _payload(model, metrics, extra, leave_out=tuple(shards))
        for name in shards:  # sharded parts of a structured value (the training pattern's CSR arrays)
            arrays.pop(name, None)
        for key, arr in arrays.items():
            entry = f"arrays/{key}.npy"
            manifest["arrays"][key] = {"entry": entry, **_write_npy(tmp / entry, arr)}
        manifest["shards"] = shards
        manifest["checksum"] = manifest_checksum(manifest)
        with open(tmp / MANIFEST, "w", encoding="utf-8") as fh:
            json.dump(manifest, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        # the manifest reads back (schema, checksum); the shards are not read again: that would assemble in this
        # process the factor matrices the sharded layout keeps out of it
        parse_manifest((tmp / MANIFEST).read_bytes(), str(tmp))
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.{os.getpid()}.old")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _read_file(folder: Path, entry: str, name: str, meta: dict[str, Any], source: str) -> np.ndarray:
    shape, dtype, nbytes, digest = array_meta(meta, name, source)
    file = folder / entry
    try:
        size = file.stat().st_size
        if not (nbytes <= size <= nbytes + 65536):
            raise ModelFileError(f"{source}: {entry} has {size} bytes, the manifest says {nbytes} (+ header)")
        raw = file.read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"{source}: {entry} is missing (incomplete model directory?)") from None
    except OSError as exc:
        raise ModelFileError(f"{source}: {entry} cannot be read ({exc})") from exc
    return decode_npy(raw, name, shape, dtype, digest, source)


def _assemble(folder: Path, name: str, parts: Any, source: str) -> np.ndarray:
    """One sharded array from its shard files: contiguous row ranges from 0, one dtype and row shape."""
    if not isinstance(parts, list) or not parts or not _ARRAY_NAME.fullmatch(name):
        raise ModelFileError(f"{source}: shards of {name[:40]!r} are malformed")
    metas = []
    for k, meta in enumerate(parts):
        rows = meta.get("rows") if isinstance(meta, dict) else None
        if (not isinstance(rows, list) or len(rows) != 2 or not all(isinstance(r, int) and not isinstance(r, bool)
                                                                    for r in rows)
                or meta.get("entry") != _shard_name(name, k)):
            raise ModelFileError(f"{source}: shard {k} of {name!r} is malformed")
        shape, dtype, _, _ = array_meta(meta, name, source)
        metas.append((rows, shape, dtype))
    tail, dtype = metas[0][1][1:], metas[0][2]
    at = 0
    for k, (rows, shape, dt) in enumerate(metas):
        if rows[0] != at or rows[1] < rows[0] or shape != (rows[1] - rows[0], *tail) or dt != dtype:
            raise ModelFileError(f"{source}: shard {k} of {name!r} does not continue the rows before it "
                                 f"(rows {rows}, shape {shape}, dtype {dt})")
        at = rows[1]
    out = np.empty((at, *tail), dtype=dtype)
    for meta, (rows, _, _) in zip(parts, metas):
        out[rows[0]:rows[1]] = _read_file(folder, meta["entry"], name, meta, source)
    return out


def load_dir(path: str | os.PathLike, *, on_manifest: Callable[[dict[str, Any]], None] | None = None) -> Any:
    """Load a sharded model directory (see the module docstring); every problem raises ModelFileError."""
    folder = Path(path)
    source = str(folder)
    try:
        with open(folder / MANIFEST, "rb") as fh:
            raw = fh.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError:
        raise ModelFileError(f"{source}: a directory without {MANIFEST} is not an mfrec model") from None
    except OSError as exc:
        raise ModelFileError(f"{source}: {MANIFEST} cannot be read ({exc})") from exc
    manifest = parse_manifest(raw, source)
    if on_manifest is not None:
        on_manifest(manifest)
    cls = model_class(manifest, source)
    arrays = {name: _read_file(folder, meta["entry"], name, meta, source) for name, meta in manifest["arrays"].items()}
    for name, parts in manifest.get("shards", {}).items():
        if name in arrays:
            raise ModelFileError(f"{source}: {name!r} is both an array and sharded")
        arrays[name] = _assemble(folder, name, parts, source)
    return build_model(cls, manifest, arrays, source)

