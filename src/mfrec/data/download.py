"""Download a dataset archive, verify it, and install it into the cache atomically.

The cache lives in ``$MFREC_DATA`` when that is set, else in platformdirs' user cache directory
(``~/.cache/mfrec`` on Linux). A dataset ``NAME`` is installed as the folder ``<cache>/NAME``.

Nothing half-done is ever left under that name:

1. pooch streams the archive into a temporary file *in the cache directory*, with a tqdm progress bar on a
   terminal, checks its checksum (SHA-256, or the publisher's MD5 where no SHA-256 is known) and moves it into
   place; its size is checked too, and the zip's own CRCs;
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
    """Download ``url`` to ``dest`` with pooch, verifying it; ``dest`` appears only once it is complete and verified.

    :func:`pooch.retrieve` streams into a temporary file beside ``dest``, checks the hash and moves the file into
    place (a ``dest`` that already has the right hash is not downloaded again). Around it this adds the byte
    count, both digests when both are known, the tqdm bar on a terminal, and one :class:`DatasetError` with the
    way out (``--data-dir`` / ``$MFREC_DATA``) for every failure.

    Parameters
    ----------
    url : str
        http(s) URL.
    dest : path
        Final file.
    size : int, optional
        Expected size in bytes (the server's Content-Length is enforced by the HTTP client as well).
    sha256, md5 : str, optional
        Expected hex digest(s); pooch checks SHA-256 when given, else MD5.
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
    import logging

    import pooch
    import requests
    from tqdm.auto import tqdm

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    logging.getLogger("pooch").setLevel(logging.WARNING)  # its "Downloading ..." line: we show a bar instead
    known = f"sha256:{sha256.lower()}" if sha256 else (f"md5:{md5.lower()}" if md5 else None)
    # pooch tests the bar's truth, which needs a total (it sets the server's own once the response arrives)
    bar = tqdm(total=size or 1, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name, leave=False) \
        if _progress_enabled(progress) else False
    downloader = pooch.HTTPDownloader(progressbar=bar, timeout=timeout, headers={"User-Agent": "mfrec"})
    try:
        pooch.retrieve(url, known_hash=known, fname=dest.name, path=dest.parent, downloader=downloader)
    except ValueError as exc:  # pooch: the hash of the downloaded file does not match
        kind = "SHA-256" if sha256 else "MD5"
        raise DatasetError(
            f"{url}: {kind} mismatch (expected {sha256 or md5}); the download is corrupt or the file changed on the "
            "server (nothing was kept)") from exc
    except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError) as exc:
        if isinstance(exc, requests.exceptions.ConnectionError) and "IncompleteRead" not in str(exc) \
                and "Connection broken" not in str(exc):
            raise _unreachable(url, dest, exc) from exc
        raise DatasetError(f"download of {url} was interrupted ({type(exc).__name__}); nothing was kept, try again") \
            from exc
    except (requests.exceptions.RequestException, OSError) as exc:
        raise _unreachable(url, dest, exc) from exc
    finally:
        if bar is not False:
            bar.close()
    try:  # pooch checked one digest; the size and, when both digests are known, the MD5 are checked here
        got = dest.stat().st_size
        if size is not None and got != size:
            raise DatasetError(f"{url}: size mismatch (expected {size:,} bytes, got {got:,})")
        if sha256 and md5 and checksums(dest, ("md5",))["md5"] != md5.lower():
            raise DatasetError(f"{url}: MD5 mismatch (expected {md5}); the download is corrupt or the file changed on "
                               "the server (nothing was kept)")
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return dest


def _unreachable(url: str, dest: Path, exc: BaseException) -> DatasetError:
    reason = getattr(getattr(exc, "response", None), "status_code", None)
    reason = f"HTTP {reason}" if reason else type(exc).__name__
    return DatasetError(
        f"cannot download {url}: {reason}; without network, unzip it yourself and pass its folder with "
        f"--data-dir DIR (data_dir= in Python), or put it into the cache folder {dest.parent} ($MFREC_DATA "
        "chooses that folder)")


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
