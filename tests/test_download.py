"""Tests for the download stage against a real local HTTP server that misbehaves on purpose."""

import errno
import hashlib
import http.server
import io
import random
import re
import socket
import threading
import zipfile
from pathlib import Path

import pytest
from helpers.project import compose_config

from knd.data import download
from knd.data.download import download_and_extract, fetch_data
from knd.errors import KndError

FILES = {
    f"Actor_01/03-01-0{i}-01-01-01-01.wav": random.Random(i).randbytes(100_000) for i in (1, 2, 3)
}


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:  # stored, so the archive is as big as its members
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


ARCHIVE = make_zip({**FILES, "__MACOSX/Actor_01/._junk": b"mac"})
MD5 = hashlib.md5(ARCHIVE).hexdigest()


class Server(http.server.ThreadingHTTPServer):
    """Serves `body`; each request takes the next behaviour from `script` ("ok" once empty).

    Behaviours: "ok"; "drop" (full Content-Length, half the body, then close); "truncated" (no
    Content-Length, half the body); "corrupt" (bytes flipped); "500"; "404".
    """

    def __init__(self, body: bytes):
        super().__init__(("127.0.0.1", 0), Handler)
        self.body = body
        self.script: list[str] = []
        self.honor_range = True
        self.ranges: list[str | None] = []  # the Range header of each request seen
        self.url = f"http://127.0.0.1:{self.server_address[1]}/ravdess.zip"


class Handler(http.server.BaseHTTPRequestHandler):
    server: Server

    def do_GET(self):
        srv = self.server
        srv.ranges.append(self.headers.get("Range"))
        behaviour = srv.script.pop(0) if srv.script else "ok"
        if behaviour in ("500", "404"):
            self.send_error(int(behaviour))
            return
        start = 0
        requested = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if requested and srv.honor_range:
            start = int(requested[1])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(srv.body) - 1}/{len(srv.body)}")
        else:
            self.send_response(200)
        payload = srv.body[start:]
        if behaviour == "corrupt":
            payload = bytes(b ^ 0xFF for b in payload)
        if behaviour != "truncated":
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if behaviour in ("drop", "truncated"):
            payload = payload[: len(payload) // 2]
        self.wfile.write(payload)  # HTTP/1.0: the connection closes after each response

    def log_message(self, format, *args):
        pass


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    monkeypatch.setattr(download, "BACKOFF_BASE", 0)


@pytest.fixture
def server():
    srv = Server(ARCHIVE)
    thread = threading.Thread(target=srv.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join()


@pytest.fixture
def dirs(tmp_path):
    return tmp_path / "raw", tmp_path / "download"


def fetch(url, dirs, md5=MD5, **kwargs):
    raw_dir, download_dir = dirs
    return download_and_extract(url, md5, raw_dir, download_dir, timeout=5, **kwargs)


def assert_extracted(raw_dir: Path):
    files = {p.relative_to(raw_dir).as_posix() for p in raw_dir.rglob("*") if p.is_file()}
    assert files == set(FILES)  # and no __MACOSX junk
    for name, data in FILES.items():
        assert (raw_dir / name).read_bytes() == data


def test_http_happy_path(server, dirs):
    raw_dir, download_dir = dirs
    (raw_dir / "stale").mkdir(parents=True)
    assert fetch(server.url, dirs) == raw_dir
    assert_extracted(raw_dir)
    assert (download_dir / "ravdess.zip").read_bytes() == ARCHIVE
    assert not (download_dir / "ravdess.zip.part").exists()
    assert sorted(p.name for p in raw_dir.parent.iterdir()) == ["download", "raw"]


def test_file_url(tmp_path, dirs):
    archive = tmp_path / "ravdess.zip"
    archive.write_bytes(ARCHIVE)
    fetch(archive.as_uri(), dirs)
    assert_extracted(dirs[0])


def test_relative_plain_path(tmp_path, dirs, monkeypatch):
    (tmp_path / "ravdess.zip").write_bytes(ARCHIVE)
    monkeypatch.chdir(tmp_path)
    fetch("ravdess.zip", dirs)
    assert_extracted(dirs[0])


def test_missing_local_file(tmp_path, dirs):
    with pytest.raises(KndError, match="archive not found"):
        fetch(str(tmp_path / "nope.zip"), dirs)


def test_resume_after_drop_uses_range(server, dirs):
    server.script = ["drop"]
    fetch(server.url, dirs)
    assert server.ranges[0] is None
    assert re.fullmatch(r"bytes=[1-9]\d*-", server.ranges[1])
    assert (dirs[1] / "ravdess.zip").read_bytes() == ARCHIVE
    assert_extracted(dirs[0])


def test_restart_when_server_ignores_range(server, dirs):
    server.script = ["drop"]
    server.honor_range = False
    fetch(server.url, dirs)
    assert server.ranges[1] is not None
    assert (dirs[1] / "ravdess.zip").read_bytes() == ARCHIVE


def test_stale_garbage_part_with_server_ignoring_range(server, dirs):
    download_dir = dirs[1]
    download_dir.mkdir()
    (download_dir / "ravdess.zip.part").write_bytes(b"garbage" * 100)
    server.honor_range = False
    fetch(server.url, dirs)
    assert server.ranges == ["bytes=700-"]
    assert (download_dir / "ravdess.zip").read_bytes() == ARCHIVE
    assert_extracted(dirs[0])


def test_retries_after_500(server, dirs):
    server.script = ["500"]
    fetch(server.url, dirs)
    assert len(server.ranges) == 2
    assert_extracted(dirs[0])


def test_gives_up_after_retries(server, dirs):
    server.script = ["500"] * 3
    with pytest.raises(KndError, match=r"HTTP 500.*gave up after 3 attempts"):
        fetch(server.url, dirs, retries=2)
    assert len(server.ranges) == 3


def test_404_fails_at_once(server, dirs):
    server.script = ["404"]
    with pytest.raises(KndError, match=re.escape(server.url)) as err:
        fetch(server.url, dirs)
    assert "404" in str(err.value)
    assert len(server.ranges) == 1


@pytest.mark.parametrize("behaviour", ["corrupt", "truncated"])
def test_checksum_mismatch_leaves_no_archive(server, dirs, behaviour):
    server.script = [behaviour]
    with pytest.raises(KndError, match=f"expected md5 {MD5}") as err:
        fetch(server.url, dirs)
    assert server.url in str(err.value)
    assert list(dirs[1].iterdir()) == []
    assert not dirs[0].exists()


def test_checksum_mismatch_keeps_users_local_file(tmp_path, dirs):
    archive = tmp_path / "mine.zip"
    archive.write_bytes(ARCHIVE)
    with pytest.raises(KndError, match=f"expected md5 {'0' * 32}"):
        fetch(str(archive), dirs, md5="0" * 32)
    assert archive.read_bytes() == ARCHIVE


def test_no_md5_skips_verification_with_warning(server, dirs, caplog):
    fetch(server.url, dirs, md5=None)
    assert "without an integrity check" in caplog.text
    assert_extracted(dirs[0])


def test_connection_refused(dirs):
    with socket.socket() as sock:  # bound but not listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/ravdess.zip"
        with pytest.raises(KndError, match=f"cannot reach {re.escape(url)}"):
            fetch(url, dirs, retries=1)


def test_not_a_zip(tmp_path, dirs):
    archive = tmp_path / "ravdess.zip"
    archive.write_bytes(b"this is not a zip")
    with pytest.raises(KndError, match="not a zip archive"):
        fetch(str(archive), dirs, md5=None)


@pytest.mark.parametrize("evil", ["../evil.txt", "/tmp/knd-evil.txt"])
def test_zip_slip_is_refused(tmp_path, evil):
    archive = tmp_path / "evil.zip"
    archive.write_bytes(make_zip({"Actor_01/ok.wav": b"ok", evil: b"pwned"}))
    raw_dir = tmp_path / "work" / "raw"
    with pytest.raises(KndError, match=re.escape(evil)):
        download_and_extract(str(archive), None, raw_dir, tmp_path / "download")
    assert list(tmp_path.rglob("*.txt")) == []
    assert not Path("/tmp/knd-evil.txt").exists()
    assert not raw_dir.exists()


def test_existing_valid_archive_is_not_downloaded_again(server, dirs):
    dirs[1].mkdir()
    (dirs[1] / "ravdess.zip").write_bytes(ARCHIVE)
    fetch(server.url, dirs)
    assert server.ranges == []
    assert_extracted(dirs[0])


def test_existing_bad_archive_is_downloaded_again(server, dirs):
    dirs[1].mkdir()
    (dirs[1] / "ravdess.zip").write_bytes(b"old junk")
    fetch(server.url, dirs)
    assert server.ranges == [None]
    assert (dirs[1] / "ravdess.zip").read_bytes() == ARCHIVE


def test_disk_full_while_extracting_keeps_old_raw_dir(tmp_path, dirs, monkeypatch):
    raw_dir = dirs[0]
    (raw_dir / "Actor_01").mkdir(parents=True)
    (raw_dir / "Actor_01" / "old.wav").write_bytes(b"old")
    archive = tmp_path / "ravdess.zip"
    archive.write_bytes(ARCHIVE)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(zipfile.ZipFile, "extract", full)
    with pytest.raises(KndError, match=r"disk full while writing .*raw\.tmp \(about 0\.3 MB"):
        fetch(str(archive), dirs)
    assert (raw_dir / "Actor_01" / "old.wav").read_bytes() == b"old"
    assert not raw_dir.with_name("raw.tmp").exists()


def test_disk_full_while_downloading(server, dirs, monkeypatch):
    class FullDisk(download.tqdm):
        def update(self, n=1):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(download, "tqdm", FullDisk)
    with pytest.raises(KndError, match=r"disk full while writing .*ravdess\.zip\.part \(about"):
        fetch(server.url, dirs)
    assert len(server.ranges) == 1


@pytest.mark.parametrize("kind", ["archive", "folder"])
def test_data_local_takes_an_archive_or_a_folder(tmp_path, dirs, kind):
    archive = tmp_path / "copy.zip"
    archive.write_bytes(ARCHIVE)
    folder = tmp_path / "copy"
    for name, data in FILES.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    source = archive if kind == "archive" else folder
    data = compose_config("data=local", f"data.path={source}", f"data.md5={MD5}").data
    (dirs[0] / "stale").mkdir(parents=True)
    assert fetch_data(data, dirs[0], dirs[1]) == dirs[0]
    assert_extracted(dirs[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy", "copy.zip", "raw"]  # no .tmp
