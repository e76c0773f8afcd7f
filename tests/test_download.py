"""The downloader against a local HTTP server on 127.0.0.1: never the network."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import socket
import threading
import zipfile
from pathlib import Path

import pytest

from mfrec.data import datasets as ds_mod
from mfrec.data.download import Archive, cache_dir, checksums, download_file, install_archive
from mfrec.exceptions import DatasetError

U_DATA = "1\t10\t5\t881250949\n1\t20\t3\t881250950\n2\t10\t4\t881250951\n3\t30\t1\t881250952\n"


def make_zip(files: dict[str, str | bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            zf.writestr(name, content)
    return buf.getvalue()


class _Server:
    """Serves ``routes[path] = (mode, payload)``; mode is "ok", "cut" (announce all, send half, close)."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[str, bytes]] = {}
        self.hits: dict[str, int] = {}
        routes, hits = self.routes, self.hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                hits[self.path] = hits.get(self.path, 0) + 1
                if self.path not in routes:
                    self.send_error(404)
                    return
                mode, payload = routes[self.path]
                self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if mode == "cut":
                    self.wfile.write(payload[: len(payload) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def add(self, path: str, payload: bytes, mode: str = "ok") -> str:
        self.routes[path] = (mode, payload)
        return self.url + path

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_download_file_verifies_and_writes(server, tmp_path):
    payload = b"x" * 200_000
    url = server.add("/a.bin", payload)
    dest = download_file(url, tmp_path / "a.bin", size=len(payload), sha256=sha(payload),
                         md5=hashlib.md5(payload).hexdigest(), progress=False)
    assert dest.read_bytes() == payload
    assert leftovers(tmp_path) == ["a.bin"]
    assert checksums(dest, ("sha256", "md5")) == {"sha256": sha(payload), "md5": hashlib.md5(payload).hexdigest()}


def test_progress_bar_only_when_asked_or_on_a_terminal(server, tmp_path, capsys):
    url = server.add("/p.bin", b"y" * 100_000)
    download_file(url, tmp_path / "quiet.bin")  # stderr is not a terminal under pytest: quiet
    assert capsys.readouterr().err == ""
    download_file(url, tmp_path / "loud.bin", progress=True)
    assert "loud.bin" in capsys.readouterr().err


def test_download_cut_midway_leaves_nothing(server, tmp_path):
    payload = bytes(range(256)) * 1000
    url = server.add("/cut.zip", payload, mode="cut")
    with pytest.raises(DatasetError, match="interrupted|incomplete"):
        download_file(url, tmp_path / "cut.zip", progress=False)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("field", ["sha256", "md5", "size"])
def test_download_wrong_bytes_leaves_nothing(server, tmp_path, field):
    good, bad = b"good" * 1000, b"evil" * 1000
    url = server.add("/f.bin", bad)
    expect = {"sha256": {"sha256": sha(good)}, "md5": {"md5": hashlib.md5(good).hexdigest()},
              "size": {"size": len(good) + 1}}[field]
    with pytest.raises(DatasetError, match="mismatch|expected"):
        download_file(url, tmp_path / "f.bin", progress=False, **expect)
    assert leftovers(tmp_path) == []


def test_download_http_error_and_unreachable(server, tmp_path):
    with pytest.raises(DatasetError, match="cannot download"):
        download_file(server.url + "/missing.zip", tmp_path / "m.zip", progress=False)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DatasetError, match="cannot download"):
        download_file(f"http://127.0.0.1:{port}/x.zip", tmp_path / "x.zip", progress=False, timeout=5)
    assert leftovers(tmp_path) == []


def test_install_archive_extracts_atomically(server, tmp_path):
    payload = make_zip({"ml-100k/u.data": U_DATA, "ml-100k/README": "readme"})
    url = server.add("/ml-100k.zip", payload)
    target = install_archive("ml-100k", Archive(url, len(payload), sha256=sha(payload)), "u.data",
                             root=tmp_path, progress=False)
    assert target == tmp_path / "ml-100k"
    assert (target / "u.data").read_text() == U_DATA
    assert leftovers(tmp_path) == ["ml-100k"]  # no .part, no staging folder, no zip
    # second call: served from the cache
    install_archive("ml-100k", Archive(url, len(payload), sha256=sha(payload)), "u.data", root=tmp_path)
    assert server.hits["/ml-100k.zip"] == 1


@pytest.mark.parametrize("mode", ["cut", "corrupt", "badzip", "nomarker", "traversal"])
def test_install_archive_failure_leaves_no_cache_entry(server, tmp_path, mode):
    good = make_zip({"d/u.data": U_DATA})
    if mode == "cut":
        archive = Archive(server.add("/z.zip", good, mode="cut"), len(good), sha256=sha(good))
    elif mode == "corrupt":
        archive = Archive(server.add("/z.zip", good[:-10] + b"0123456789"), len(good), sha256=sha(good))
    elif mode == "badzip":
        archive = Archive(server.add("/z.zip", b"not a zip at all"))
    elif mode == "nomarker":
        archive = Archive(server.add("/z.zip", make_zip({"d/other.txt": "x"})))
    else:
        archive = Archive(server.add("/z.zip", make_zip({"../../evil/u.data": U_DATA})))
    with pytest.raises(DatasetError):
        install_archive("ds", archive, "u.data", root=tmp_path / "cache", progress=False)
    assert leftovers(tmp_path / "cache") == []
    assert not (tmp_path / "evil").exists()


def test_install_archive_corrupt_member_crc(server, tmp_path):
    payload = bytearray(make_zip({"d/u.data": U_DATA * 50}))
    # flip a byte inside the compressed data of the single member (after its 30-byte local header + name)
    payload[30 + len("d/u.data") + 5] ^= 0xFF
    archive = Archive(server.add("/crc.zip", bytes(payload)))
    with pytest.raises(DatasetError):
        install_archive("ds", archive, "u.data", root=tmp_path, progress=False)
    assert leftovers(tmp_path) == []


def test_cache_dir_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("MFREC_DATA", str(tmp_path / "here"))
    assert cache_dir() == tmp_path / "here"
    monkeypatch.delenv("MFREC_DATA")
    assert "mfrec" in str(cache_dir())


def test_load_downloads_into_cache_then_reuses(server, tmp_path, monkeypatch):
    payload = make_zip({"ml-100k/u.data": U_DATA})
    url = server.add("/datasets/movielens/ml-100k.zip", payload)
    src = ds_mod.DATASETS["ml-100k"]
    monkeypatch.setitem(ds_mod.DATASETS, "ml-100k",
                        dataclasses.replace(src, archive=Archive(url, len(payload), sha256=sha(payload))))
    monkeypatch.setenv("MFREC_DATA", str(tmp_path))
    first = ds_mod.load("ml-100k", progress=False)
    second = ds_mod.load("ml-100k", download=False)
    assert first.interactions.shape == (3, 3) and first.interactions.nnz == 4
    assert second.interactions.nnz == 4
    assert server.hits[url[len(server.url):]] == 1
    assert first.path == tmp_path / "ml-100k"


def test_load_failed_download_leaves_cache_empty(server, tmp_path, monkeypatch):
    good = make_zip({"ml-100k/u.data": U_DATA})
    url = server.add("/ml-100k.zip", b"tampered" + good[8:])
    src = ds_mod.DATASETS["ml-100k"]
    monkeypatch.setitem(ds_mod.DATASETS, "ml-100k",
                        dataclasses.replace(src, archive=Archive(url, len(good), sha256=sha(good))))
    monkeypatch.setenv("MFREC_DATA", str(tmp_path))
    with pytest.raises(DatasetError, match="SHA-256 mismatch"):
        ds_mod.load("ml-100k", progress=False)
    assert leftovers(tmp_path) == []
    with pytest.raises(DatasetError, match="download=False"):
        ds_mod.load("ml-100k", download=False)


def test_registry_entries_are_https_grouplens_with_checksums():
    for name, src in ds_mod.DATASETS.items():
        if src.archive is None:
            continue
        assert src.archive.url.startswith("https://files.grouplens.org/datasets/"), name
        for digest, n in ((src.archive.sha256, 64), (src.archive.md5, 32)):
            assert digest is None or (len(digest) == n and int(digest, 16) >= 0), name
    known = [n for n, s in ds_mod.DATASETS.items() if s.archive is not None and (s.archive.sha256 or s.archive.md5)]
    assert set(known) >= {"ml-100k", "ml-latest-small", "ml-1m", "ml-10m", "ml-20m", "ml-25m", "lastfm-2k"}
