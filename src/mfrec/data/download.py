"""Download a dataset archive, verify it, and install it into the cache atomically.

The cache lives in ``$MFREC_DATA`` when that is set, else in platformdirs' user cache directory
(``~/.cache/mfrec`` on Linux). A dataset ``NAME`` is installed as the folder ``<cache>/NAME``.

Nothing half-done is ever left under that name:

1. the archive is streamed into a temporary file *in the cache directory* (``.NAME-*.part``), with a tqdm
   progress bar on a terminal;
2. its size and checksum (SHA-256, or the publisher's MD5 where no SHA-256 is known) are verified,
   and the zip's own CRCs are checked;
3. it is extracted into a temporary folder beside the target;
4. the folder holding the dataset files is renamed onto ``<cache>/NAME`` (an atomic rename on one
   file system).

Any failure (network error, connection cut midway, wrong size or checksum, bad zip) raises
:class:`~mfrec.exceptions.DatasetError` and removes the partial file and folder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mfrec.exceptions import DatasetError

__all__ = ["Archive", "cache_dir", "download_file", "install_archive"]

_CHUNK = 1 << 16


@dataclass(frozen=True)
class Archive:
    """Where a dataset's zip lives and how to recognise a good copy.

    Attributes
    ----------
    url : str
        The publisher's URL of the zip.
    size : int or None
        Size in bytes, when known.
    sha256, md5 : str or None
        Hex digests of the zip; SHA-256 is preferred, the publisher's MD5 is used where no SHA-256 is known.
    """

    url: str
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None


def cache_dir() -> Path:
    """The dataset cache: ``$MFREC_DATA`` if set, else ``platformdirs.user_cache_dir("mfrec")``."""
    env = os.environ.get("MFREC_DATA")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("mfrec", appauthor=False))


def _progress_enabled(progress: bool | None) -> bool:
    if progress is not None:
        return bool(progress)
    stream = sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


def download_file(
    url: str,
    dest: str | Path,
    *,
    size: int | None = None,
    sha256: str | None = None,
    md5: str | None = None,
    progress: bool | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest`` through a temporary file in ``dest``'s folder, verifying it.

    Parameters
    ----------
    url : str
        http(s) URL.
    dest : path
        Final file; it only appears once the bytes are complete and verified.
    size : int, optional
        Expected size in bytes. The server's Content-Length is checked as well.
    sha256, md5 : str, optional
        Expected hex digest(s).
    progress : bool, optional
        Show a tqdm bar; default: only when stderr is a terminal.
    timeout : float
        Socket timeout in seconds.

    Returns
    -------
    Path
        ``dest``.

    Raises
    ------
    DatasetError
        Network failure, truncated transfer, size or checksum mismatch. No partial file is left.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}-", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    h256, h5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    received = 0
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                request = urllib.request.Request(url, headers={"User-Agent": "mfrec"})
                response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - http(s) only, checked below
            except (urllib.error.URLError, OSError, ValueError) as exc:
                raise DatasetError(
                    f"cannot download {url}: {getattr(exc, 'reason', exc)}; without network, unzip it yourself and "
                    f"pass its folder with --data-dir DIR (data_dir= in Python), or put it into the cache folder "
                    f"{dest.parent} ($MFREC_DATA chooses that folder)"
                ) from exc
            with response:
                length = response.headers.get("Content-Length")
                announced = int(length) if length and length.isdigit() else None
                total = size if size is not None else announced
                from tqdm.auto import tqdm

                bar = tqdm(
                    total=total,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=dest.name,
                    disable=not _progress_enabled(progress),
                    leave=False,
                )
                with bar:
                    while True:
                        try:
                            chunk = response.read(_CHUNK)
                        except (OSError, ValueError) as exc:  # IncompleteRead, reset, timeout
                            raise DatasetError(
                                f"download of {url} was interrupted after {received:,} bytes ({exc!r}); "
                                "nothing was kept, try again"
                            ) from exc
                        if not chunk:
                            break
                        out.write(chunk)
                        h256.update(chunk)
                        h5.update(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
        if announced is not None and received != announced:
            raise DatasetError(
                f"download of {url} is incomplete: got {received:,} of {announced:,} bytes; nothing was kept, try again"
            )
        if size is not None and received != size:
            raise DatasetError(
                f"{url}: expected {size:,} bytes, got {received:,}; the file on the server differs from the "
                "known release (nothing was kept)"
            )
        if sha256 is not None and h256.hexdigest() != sha256.lower():
            raise DatasetError(
                f"{url}: SHA-256 mismatch (expected {sha256}, got {h256.hexdigest()}); the download is corrupt "
                "or the file changed on the server (nothing was kept)"
            )
        if md5 is not None and h5.hexdigest() != md5.lower():
            raise DatasetError(
                f"{url}: MD5 mismatch (expected {md5}, got {h5.hexdigest()}); the download is corrupt "
                "or the file changed on the server (nothing was kept)"
            )
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def _find_root(folder: Path, marker: str) -> Path | None:
    """The shallowest folder under ``folder`` that holds a file named ``marker``."""
    hits = sorted(folder.rglob(marker), key=lambda p: len(p.parts))
    for hit in hits:
        if hit.is_file():
            return hit.parent
    return None


def install_archive(
    name: str,
    archive: Archive,
    marker: str,
    *,
    root: str | Path | None = None,
    progress: bool | None = None,
    timeout: float = 60.0,
) -> Path:
    """Make sure ``<root>/name`` holds the dataset, downloading and extracting ``archive`` if needed.

    Parameters
    ----------
    name : str
        Folder name in the cache.
    archive : Archive
        URL and checksums of the zip.
    marker : str
        A file that a good copy contains (e.g. ``u.data``); the folder that holds it becomes ``<root>/name``.
    root : path, optional
        The cache directory; default :func:`cache_dir`.

    Returns
    -------
    Path
        ``<root>/name``.
    """
    root = Path(root) if root is not None else cache_dir()
    target = root / name
    if (target / marker).is_file():
        return target
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(
            f"cannot create the dataset cache {root} ({exc.strerror}); set MFREC_DATA to a writable folder "
            "or pass data_dir="
        ) from exc
    zip_path = root / f".{name}.zip"
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", suffix=".extract", dir=root))
    try:
        download_file(
            archive.url,
            zip_path,
            size=archive.size,
            sha256=archive.sha256,
            md5=archive.md5,
            progress=progress,
            timeout=timeout,
        )
        try:
            with zipfile.ZipFile(zip_path) as zf:
                bad = zf.testzip()
                if bad is not None:
                    raise DatasetError(f"{archive.url}: member {bad!r} of the zip is corrupt (CRC mismatch)")
                _safe_extract(zf, staging, archive.url)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
            raise DatasetError(f"{archive.url}: not a valid zip file ({exc})") from exc
        except OSError as exc:
            raise DatasetError(f"cannot extract {archive.url} into {root}: {exc}") from exc
        found = _find_root(staging, marker)
        if found is None:
            raise DatasetError(f"{archive.url}: the archive does not contain {marker!r}")
        if target.exists():  # another process installed it meanwhile
            if (target / marker).is_file():
                return target
            shutil.rmtree(target)
        os.replace(found, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        zip_path.unlink(missing_ok=True)
    return target


def _safe_extract(zf: zipfile.ZipFile, dest: Path, source: str) -> None:
    """Extract every member, refusing absolute paths and ``..`` escapes."""
    base = dest.resolve()
    for info in zf.infolist():
        out = (dest / info.filename).resolve()
        if out != base and base not in out.parents:
            raise DatasetError(f"{source}: unsafe path {info.filename!r} in the zip")
    zf.extractall(dest)


def checksums(path: str | Path, algorithms: Sequence[str] = ("sha256",)) -> dict[str, str]:
    """Hex digests of a file (helper for recording a new release's checksums)."""
    hashes = {a: hashlib.new(a) for a in algorithms}
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            for h in hashes.values():
                h.update(chunk)
    return {a: h.hexdigest() for a, h in hashes.items()}
