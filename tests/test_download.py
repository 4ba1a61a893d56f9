"""preprocess.download against a real throw-away HTTP server on 127.0.0.1 (no internet)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from eqgat.tasks import archives
from preprocess.download import archive_url, archives_json, cli, files
from preprocess.download import extract as extraction
from preprocess.download.extract import ExtractError, extract, marker_path
from preprocess.download.http import ChecksumError, DownloadError, download

ARCHIVES = archives()  # as the task declarations (eqgat/tasks) name them


def main(argv: list[str]) -> int:
    """The download command line with the declared datasets (the workflow passes a rule's
    archives with --archives-json instead)."""
    return cli.main(argv, datasets=ARCHIVES)

FAST = dict(backoff=0.01, max_backoff=0.05, timeout=5, progress=False)
MAX_REQUESTS = 50  # every server refuses to answer more than this: no unbounded loops


# --------------------------------------------------------------------------------------------
# the test server
# --------------------------------------------------------------------------------------------

class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection, closed after the response

    def do_GET(self):  # noqa: N802
        srv = self.server
        with srv.lock:
            n = len(srv.requests)
            srv.requests.append({"path": self.path, "headers": dict(self.headers.items())})
        if n >= MAX_REQUESTS:
            self.send_error(503, "test server: too many requests")
            return
        srv.app(self, n)

    def log_message(self, *args):  # keep pytest output quiet
        pass


class Server:
    """ThreadingHTTPServer on 127.0.0.1:<free port>; ``app(handler, request_index)`` answers."""

    def __init__(self, app):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.app = app
        self.httpd.requests = []
        self.httpd.lock = threading.Lock()
        self.stop_event = threading.Event()  # releases stalled handlers at teardown
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def requests(self):
        with self.httpd.lock:
            return list(self.httpd.requests)

    def close(self):
        self.stop_event.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def serve(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    servers = []

    def start(app):
        s = Server(app)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()


def send_bytes(h, data: bytes, honor_range=True, cut_at=None, stall=None,
               content_type="application/octet-stream", send_length=True):
    """Answer like a file server.  ``cut_at``: announce the full Content-Length but send only
    that many body bytes, then close.  ``stall``: (after N bytes, event) wait before the rest.
    ``send_length=False``: no Content-Length, the body ends when the connection closes."""
    start = 0
    m = re.fullmatch(r"bytes=(\d+)-", h.headers.get("Range", ""))
    if honor_range and m:
        start = int(m.group(1))
        if start >= len(data):
            h.send_response(416)
            h.send_header("Content-Range", f"bytes */{len(data)}")
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        h.send_response(206)
        h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
    else:
        h.send_response(200)
    body = data[start:]
    if send_length:
        h.send_header("Content-Length", str(len(body)))
    h.send_header("Content-Type", content_type)
    h.end_headers()
    try:
        if stall is not None:
            after, event = stall
            h.wfile.write(body[:after])
            h.wfile.flush()
            event.wait(3)
            return
        h.wfile.write(body if cut_at is None else body[:cut_at])
        h.wfile.flush()
    except (BrokenPipeError, ConnectionResetError):
        pass
    if cut_at is not None:
        h.close_connection = True


def send_status(h, code, headers=()):
    h.send_response(code)
    for k, v in headers:
        h.send_header(k, v)
    h.send_header("Content-Length", "0")
    h.end_headers()


def payload(n, seed=0):
    import random

    return random.Random(seed).randbytes(n)


def sha256(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def md5(b):
    return "md5:" + hashlib.md5(b).hexdigest()


def ranges(server):
    return [r["headers"].get("Range") for r in server.requests]


# --------------------------------------------------------------------------------------------
# the table and URLs
# --------------------------------------------------------------------------------------------

def test_archive_table_and_urls():
    assert set(ARCHIVES) == {"lba30", "lba60", "psr", "rsr", "res", "ppi"}
    names = {t: [a.filename for a in v] for t, v in ARCHIVES.items()}
    assert names["psr"] == ["PSR-split-by-year.tar.gz"]
    assert names["res"] == ["RES-raw.tar.gz", "RES-split-by-cath-topology-indices.tar.gz"]
    assert ARCHIVES["lba30"][0].record == ARCHIVES["lba60"][0].record == "4914718"
    assert ARCHIVES["psr"][0].extracts_to == "split-by-year"
    for declared in ARCHIVES.values():
        for a in declared:
            assert a.checksum is None and a.size is None  # nothing invented
    assert (archive_url("https://zenodo.org/record", "4915648", "PSR-split-by-year.tar.gz")
            == "https://zenodo.org/record/4915648/files/PSR-split-by-year.tar.gz?download=1")
    assert archive_url("http://127.0.0.1:1/mirror/", 1, "a b.tar.gz") == \
        "http://127.0.0.1:1/mirror/1/files/a%20b.tar.gz?download=1"
    assert ARCHIVES["ppi"][0].url("http://m") == \
        "http://m/4911102/files/PPI-DIPS-split.tar.gz?download=1"


def test_parse_checksum_and_checksum_file(tmp_path):
    assert files.parse_checksum("MD5:" + "A" * 32) == ("md5", "a" * 32)
    for bad in ("abc", "sha1:" + "0" * 40, "md5:123", "sha256:" + "z" * 64):
        with pytest.raises(ValueError):
            files.parse_checksum(bad)
    f = tmp_path / "sums.json"
    f.write_text(json.dumps({"PSR-split-by-year.tar.gz": "md5:" + "0" * 32,
                             "x.tar.gz": {"sha256": "1" * 64}}))
    sums = cli.load_checksums(f)
    assert sums["x.tar.gz"] == "sha256:" + "1" * 64
    assert cli.resolve_checksum(ARCHIVES["psr"][0], sums) == "md5:" + "0" * 32
    assert cli.resolve_checksum(ARCHIVES["psr"][0], {}) is None
    y = tmp_path / "sums.yaml"
    y.write_text("RES-raw.tar.gz: md5:" + "2" * 32 + "\n")
    assert cli.load_checksums(y) == {"RES-raw.tar.gz": "md5:" + "2" * 32}


# --------------------------------------------------------------------------------------------
# download
# --------------------------------------------------------------------------------------------

def test_plain_download_then_nothing(serve, tmp_path):
    data = payload(300_000)
    s = serve(lambda h, n: send_bytes(h, data))
    dest = tmp_path / "sub" / "f.bin"
    url = s.url + "/f.bin?download=1"
    assert download(url, dest, checksum=sha256(data), expected_size=len(data), **FAST) == dest
    assert dest.read_bytes() == data
    assert not Path(str(dest) + ".part").exists()
    assert len(s.requests) == 1 and ranges(s) == [None]
    assert s.requests[0]["path"] == "/f.bin?download=1"
    # second call: verified locally, no request at all (with or without checks)
    download(url, dest, checksum=sha256(data), expected_size=len(data), **FAST)
    download(url, dest, **FAST)
    download(url, dest, checksum=md5(data), **FAST)
    assert len(s.requests) == 1


def test_progress_bar_does_not_break(serve, tmp_path, capsys):
    data = payload(50_000)
    s = serve(lambda h, n: send_bytes(h, data))
    download(s.url + "/f", tmp_path / "f", backoff=0.01, progress=True)
    assert (tmp_path / "f").read_bytes() == data


def test_interrupted_download_resumes_with_range(serve, tmp_path):
    data = payload(2_000_000, seed=1)
    cut = 700_001
    s = serve(lambda h, n: send_bytes(h, data, cut_at=cut if n == 0 else None))
    dest = tmp_path / "f.bin"
    download(s.url + "/f.bin", dest, checksum=md5(data), **FAST)
    assert dest.read_bytes() == data
    assert ranges(s) == [None, f"bytes={cut}-"]


def test_partial_file_from_earlier_run_is_resumed(serve, tmp_path):
    data = payload(100_000, seed=2)
    s = serve(lambda h, n: send_bytes(h, data))
    dest = tmp_path / "f.bin"
    Path(str(dest) + ".part").write_bytes(data[:12_345])
    download(s.url + "/f", dest, checksum=sha256(data), expected_size=len(data), **FAST)
    assert dest.read_bytes() == data
    assert ranges(s) == ["bytes=12345-"]


def test_complete_part_and_416(serve, tmp_path):
    data = payload(10_000, seed=3)
    s = serve(lambda h, n: send_bytes(h, data))
    dest = tmp_path / "f.bin"
    Path(str(dest) + ".part").write_bytes(data)  # an earlier run died just before the rename
    download(s.url + "/f", dest, checksum=sha256(data), **FAST)
    assert dest.read_bytes() == data
    assert ranges(s) == ["bytes=10000-"]  # answered 416 bytes */10000: complete
    # a .part longer than the file -> 416 with another size: discarded and downloaded again
    dest2 = tmp_path / "g.bin"
    Path(str(dest2) + ".part").write_bytes(data + b"junk")
    download(s.url + "/g", dest2, **FAST)
    assert dest2.read_bytes() == data
    assert ranges(s)[1:] == ["bytes=10004-", None]


def test_server_ignoring_range(serve, tmp_path):
    data = payload(500_000, seed=4)
    s = serve(lambda h, n: send_bytes(h, data, honor_range=False,
                                      cut_at=123_456 if n == 0 else None))
    dest = tmp_path / "f.bin"
    download(s.url + "/f", dest, checksum=sha256(data), **FAST)
    assert dest.read_bytes() == data
    assert ranges(s) == [None, "bytes=123456-"]  # asked to resume, got 200: restarted cleanly


def test_500_every_time(serve, tmp_path):
    s = serve(lambda h, n: send_status(h, 500))
    dest = tmp_path / "f.bin"
    url = s.url + "/f"
    with pytest.raises(DownloadError) as ei:
        download(url, dest, retries=3, **FAST)
    assert len(s.requests) == 4  # the first try + 3 retries
    assert url in str(ei.value) and "HTTP 500" in str(ei.value)
    assert ei.value.url == url
    assert not dest.exists()
    assert not Path(str(dest) + ".part").exists()  # no byte was received


def test_500_then_success(serve, tmp_path):
    data = payload(30_000, seed=5)
    s = serve(lambda h, n: send_status(h, 500) if n < 2 else send_bytes(h, data))
    dest = tmp_path / "f.bin"
    download(s.url + "/f", dest, retries=2, checksum=sha256(data), **FAST)
    assert dest.read_bytes() == data and len(s.requests) == 3


def test_backoff_is_exponential_and_capped(serve, tmp_path):
    s = serve(lambda h, n: send_status(h, 503))
    waits = []
    with pytest.raises(DownloadError):
        download(s.url + "/f", tmp_path / "f", retries=5, backoff=0.01, max_backoff=0.05,
                 progress=False, sleep=waits.append)
    assert waits == pytest.approx([0.01, 0.02, 0.04, 0.05, 0.05])


@pytest.mark.parametrize("code", [408, 429])
def test_408_and_429_are_retried(serve, tmp_path, code):
    data = payload(1000, seed=6)
    s = serve(lambda h, n: send_status(h, code, [("Retry-After", "0")]) if n == 0
              else send_bytes(h, data))
    download(s.url + "/f", tmp_path / "f", **FAST)
    assert (tmp_path / "f").read_bytes() == data and len(s.requests) == 2


@pytest.mark.parametrize("code", [404, 403])
def test_4xx_fails_at_once(serve, tmp_path, code):
    s = serve(lambda h, n: send_status(h, code))
    url = s.url + "/missing.tar.gz?download=1"
    with pytest.raises(DownloadError, match=f"HTTP {code}") as ei:
        download(url, tmp_path / "f", retries=5, **FAST)
    assert url in str(ei.value)
    assert len(s.requests) == 1
    assert not (tmp_path / "f").exists()


def test_checksum_mismatch(serve, tmp_path):
    data = payload(40_000, seed=7)
    s = serve(lambda h, n: send_bytes(h, data))
    dest = tmp_path / "f.bin"
    url = s.url + "/f"
    wrong = "0" * 64
    with pytest.raises(ChecksumError) as ei:
        download(url, dest, checksum="sha256:" + wrong, **FAST)
    msg = str(ei.value)
    actual = hashlib.sha256(data).hexdigest()
    assert url in msg and wrong in msg and actual in msg
    assert isinstance(ei.value, DownloadError)
    assert (ei.value.expected, ei.value.actual) == (wrong, actual)
    assert not dest.exists() and not Path(str(dest) + ".part").exists()
    assert len(s.requests) == 1  # a checksum mismatch is not retried
    # the next run starts from zero (nothing corrupt to resume) and succeeds
    download(url, dest, checksum=md5(data), **FAST)
    assert dest.read_bytes() == data and ranges(s) == [None, None]


def test_short_body_is_resumed(serve, tmp_path):
    data = payload(64_000, seed=8)
    # Content-Length says 64000 but only 63900 bytes come, then the connection closes
    s = serve(lambda h, n: send_bytes(h, data, cut_at=len(data) - 100 if n == 0 else None))
    dest = tmp_path / "f.bin"
    download(s.url + "/f", dest, expected_size=len(data), **FAST)
    assert dest.read_bytes() == data
    assert ranges(s) == [None, f"bytes={len(data) - 100}-"]


def test_server_cutting_every_time_still_finishes_when_it_progresses(serve, tmp_path):
    data = payload(50_000, seed=9)
    s = serve(lambda h, n: send_bytes(h, data, cut_at=10_000))
    dest = tmp_path / "f.bin"
    download(s.url + "/f", dest, retries=1, checksum=sha256(data), **FAST)
    assert dest.read_bytes() == data and len(s.requests) == 5


def test_expected_size_mismatch(serve, tmp_path):
    data = payload(5_000, seed=10)
    s = serve(lambda h, n: send_bytes(h, data))
    dest = tmp_path / "f.bin"
    with pytest.raises(DownloadError, match="size mismatch: expected 4000 bytes, got 5000"):
        download(s.url + "/f", dest, expected_size=4000, **FAST)
    assert not dest.exists() and not Path(str(dest) + ".part").exists()


def test_timeout_mid_body_is_resumed(serve, tmp_path):
    data = payload(200_000, seed=11)
    holder = {}
    s = serve(lambda h, n: send_bytes(h, data, stall=(50_000, holder["event"]) if n == 0
                                      else None))
    holder["event"] = s.stop_event
    dest = tmp_path / "f.bin"
    t0 = time.monotonic()
    download(s.url + "/f", dest, timeout=0.3, backoff=0.01, progress=False)
    assert dest.read_bytes() == data
    assert ranges(s) == [None, "bytes=50000-"]
    assert time.monotonic() - t0 < 3


def test_connection_refused(tmp_path):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    url = f"http://127.0.0.1:{port}/f"
    with pytest.raises(DownloadError, match="giving up after 3 attempt") as ei:
        download(url, tmp_path / "f", retries=2, **FAST)
    assert url in str(ei.value)
    assert not (tmp_path / "f").exists()


def test_existing_dest_that_does_not_verify_is_replaced(serve, tmp_path):
    data = payload(20_000, seed=12)
    s = serve(lambda h, n: send_bytes(h, data))
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"stale")
    download(s.url + "/f", dest, checksum=sha256(data), **FAST)
    assert dest.read_bytes() == data and len(s.requests) == 1


def test_transient_error_keeps_part_for_later(serve, tmp_path):
    data = payload(80_000, seed=13)
    state = {"up": False}

    def app(h, n):
        if state["up"]:
            send_bytes(h, data)
        elif n == 0:
            send_bytes(h, data, cut_at=30_000)
        else:
            send_status(h, 502)

    s = serve(app)
    dest = tmp_path / "f.bin"
    with pytest.raises(DownloadError, match="kept for resuming"):
        download(s.url + "/f", dest, retries=1, **FAST)
    assert not dest.exists()
    assert Path(str(dest) + ".part").stat().st_size == 30_000
    state["up"] = True
    download(s.url + "/f", dest, checksum=sha256(data), **FAST)
    assert dest.read_bytes() == data and ranges(s)[-1] == "bytes=30000-"


# --------------------------------------------------------------------------------------------
# extraction
# --------------------------------------------------------------------------------------------

def make_tar(path: Path, members, mode="w:gz"):
    """members: (TarInfo kwargs, bytes or None)."""
    with tarfile.open(path, mode) as tf:
        for spec, content in members:
            ti = tarfile.TarInfo(spec.pop("name"))
            for k, v in spec.items():
                setattr(ti, k, v)
            if content is not None:
                ti.size = len(content)
                tf.addfile(ti, io.BytesIO(content))
            else:
                tf.addfile(ti)
    return path


def lmdb_layout(top="split-by-year"):
    out = [({"name": top, "type": tarfile.DIRTYPE, "mode": 0o755}, None),
           ({"name": f"{top}/data", "type": tarfile.DIRTYPE, "mode": 0o755}, None)]
    for split in ("train", "val", "test"):
        out.append(({"name": f"{top}/data/{split}", "type": tarfile.DIRTYPE, "mode": 0o755},
                    None))
        out.append(({"name": f"{top}/data/{split}/data.mdb", "mode": 0o644},
                    payload(5000, seed=hash(split) % 100)))
        out.append(({"name": f"{top}/data/{split}/lock.mdb", "mode": 0o644}, b"\0" * 64))
    return out


@pytest.fixture(params=[True, False], ids=["data-filter", "own-checks-only"])
def filter_mode(request, monkeypatch):
    if request.param and not extraction._HAS_DATA_FILTER:
        pytest.skip("this Python's tarfile has no filter='data'")
    monkeypatch.setattr(extraction, "_HAS_DATA_FILTER", request.param)
    return request.param


def leftovers(parent: Path):
    if not parent.exists():  # a file that is not an archive is refused before anything is made
        return []
    return sorted(p.name for p in parent.iterdir() if ".extract-" in p.name or ".old-" in p.name)


@pytest.mark.parametrize("mode", ["w:gz", "w", "w:xz"])
def test_extract_good_archive(tmp_path, filter_mode, mode):
    arc = make_tar(tmp_path / "PSR-split-by-year.tar.gz", lmdb_layout(), mode)
    out = tmp_path / "resources" / "psr"
    assert extract(arc, out) == out
    for split in ("train", "val", "test"):
        assert (out / "split-by-year" / "data" / split / "data.mdb").read_bytes() == \
            payload(5000, seed=hash(split) % 100)
        assert (out / "split-by-year" / "data" / split / "lock.mdb").stat().st_size == 64
    marker = json.loads(marker_path(arc, out).read_text())
    assert marker["sha256"] == hashlib.sha256(arc.read_bytes()).hexdigest()
    assert marker["size"] == arc.stat().st_size
    assert marker["entries"] == ["split-by-year"]
    assert leftovers(out.parent) == []


def test_extract_rerun_is_skipped(tmp_path, monkeypatch):
    arc = make_tar(tmp_path / "a.tar.gz", lmdb_layout())
    out = tmp_path / "out"
    extract(arc, out)

    def boom(*a, **k):
        raise AssertionError("extracted again")

    monkeypatch.setattr(extraction, "_extract_stream", boom)
    extract(arc, out)  # same size + mtime: skipped
    os.utime(arc, ns=(1, 1))
    extract(arc, out)  # mtime changed but same sha256: still skipped
    arc.unlink()
    extract(arc, out)  # archive deleted after extraction: still counts as done
    # the extracted folder removed -> the marker no longer counts
    import shutil

    shutil.rmtree(out / "split-by-year")
    assert extraction.read_marker(arc, out) is None


def test_extract_changed_archive_replaces_content(tmp_path):
    arc = make_tar(tmp_path / "a.tar.gz", [({"name": "top/x.txt"}, b"old")])
    out = tmp_path / "out"
    extract(arc, out)
    make_tar(arc, [({"name": "top/x.txt"}, b"new, longer")])
    extract(arc, out)
    assert (out / "top" / "x.txt").read_bytes() == b"new, longer"
    assert leftovers(tmp_path) == []


def test_two_archives_into_one_folder(tmp_path):
    raw = make_tar(tmp_path / "RES-raw.tar.gz", [({"name": "raw/RES/data/data.mdb"}, b"r")])
    idx = make_tar(tmp_path / "RES-idx.tar.gz",
                   [({"name": f"indices/{s}_indices.txt"}, b"0\n1\n")
                    for s in ("train", "val", "test")])
    out = tmp_path / "res"
    extract(raw, out)
    extract(idx, out)
    assert (out / "raw/RES/data/data.mdb").read_bytes() == b"r"
    assert (out / "indices/val_indices.txt").read_bytes() == b"0\n1\n"
    assert marker_path(raw, out).exists() and marker_path(idx, out).exists()


def test_extract_refuses_to_clobber_without_marker(tmp_path):
    arc = make_tar(tmp_path / "a.tar.gz", [({"name": "top/x.txt"}, b"x")])
    out = tmp_path / "out"
    (out / "top").mkdir(parents=True)
    (out / "top" / "mine.txt").write_text("user data")
    with pytest.raises(ExtractError, match="already exist"):
        extract(arc, out)
    assert (out / "top" / "mine.txt").exists() and leftovers(tmp_path) == []
    extract(arc, out, overwrite=True)
    assert (out / "top" / "x.txt").read_bytes() == b"x"
    assert not (out / "top" / "mine.txt").exists()


@pytest.mark.parametrize("damage", ["truncated", "garbage", "flipped", "empty-file"])
def test_corrupt_archive(tmp_path, filter_mode, damage):
    good = make_tar(tmp_path / "good.tar.gz", lmdb_layout()).read_bytes()
    arc = tmp_path / "bad.tar.gz"
    if damage == "truncated":
        arc.write_bytes(good[: len(good) // 2])
    elif damage == "garbage":
        arc.write_bytes(b"this is not an archive at all" * 100)
    elif damage == "flipped":
        b = bytearray(good)
        for i in range(len(b) // 3, len(b) // 3 + 64):
            b[i] ^= 0xFF
        arc.write_bytes(bytes(b))
    else:
        arc.write_bytes(b"")
    out = tmp_path / "resources" / "psr"
    with pytest.raises(ExtractError) as ei:
        extract(arc, out)
    assert str(arc) in str(ei.value)
    assert not out.exists()
    assert leftovers(out.parent) == []


def test_truncated_gzip_tail_is_noticed(tmp_path):
    # the tar's end-of-archive blocks are intact, only the gzip trailer (CRC, size) is cut
    good = make_tar(tmp_path / "good.tar.gz", lmdb_layout()).read_bytes()
    arc = tmp_path / "bad.tar.gz"
    arc.write_bytes(good[:-4])
    with pytest.raises(ExtractError, match="corrupt or truncated"):
        extract(arc, tmp_path / "out")
    assert not (tmp_path / "out").exists()


UNSAFE = {
    "dotdot": [({"name": "top/ok.txt"}, b"ok"), ({"name": "../evil"}, b"evil")],
    "dotdot-nested": [({"name": "top/../../evil"}, b"evil")],
    "absolute": [({"name": "ABS/evil"}, b"evil")],  # ABS replaced by tmp_path
    "symlink-etc": [({"name": "top/etc", "type": tarfile.SYMTYPE, "linkname": "/etc"}, None)],
    "symlink-up": [({"name": "top/up", "type": tarfile.SYMTYPE, "linkname": "../../.."}, None)],
    "write-through-symlink": [
        ({"name": "top/sub", "type": tarfile.DIRTYPE}, None),
        ({"name": "top/ln", "type": tarfile.SYMTYPE, "linkname": "sub"}, None),
        ({"name": "top/ln/evil"}, b"evil")],
    "symlink-chain": [  # each link looks inside on its own; together they leave the target
        ({"name": "b", "type": tarfile.SYMTYPE, "linkname": "a/.."}, None),
        ({"name": "a", "type": tarfile.SYMTYPE, "linkname": "."}, None)],
    "hardlink-out": [({"name": "top/h", "type": tarfile.LNKTYPE, "linkname": "../evil"}, None)],
    "hardlink-abs": [({"name": "top/h", "type": tarfile.LNKTYPE, "linkname": "/etc/passwd"},
                      None)],
    "device": [({"name": "top/dev", "type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3},
                None)],
    "fifo": [({"name": "top/fifo", "type": tarfile.FIFOTYPE}, None)],
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_unsafe_archive(tmp_path, filter_mode, case):
    work = tmp_path / "work"
    work.mkdir()
    members = []
    for spec, content in UNSAFE[case]:
        spec = dict(spec)
        spec["name"] = spec["name"].replace("ABS", str(tmp_path / "abs"))
        members.append((spec, content))
    arc = make_tar(work / "evil.tar.gz", members)
    out = work / "out"
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(ExtractError, match="unsafe member") as ei:
        extract(arc, out)
    assert str(arc) in str(ei.value)
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert after == before  # nothing written anywhere, inside or outside the target
    assert not out.exists()


def test_internal_symlink_and_hardlink_are_allowed(tmp_path, filter_mode):
    arc = make_tar(tmp_path / "a.tar.gz", [
        ({"name": "top/data/train/data.mdb"}, b"abc"),
        ({"name": "top/latest", "type": tarfile.SYMTYPE, "linkname": "data/train"}, None),
        ({"name": "top/copy.mdb", "type": tarfile.LNKTYPE,
          "linkname": "top/data/train/data.mdb"}, None)])
    out = tmp_path / "out"
    extract(arc, out)
    assert (out / "top/latest/data.mdb").read_bytes() == b"abc"
    assert os.readlink(out / "top/latest") == "data/train"
    assert (out / "top/copy.mdb").read_bytes() == b"abc"


def test_setuid_bits_are_dropped(tmp_path, filter_mode):
    arc = make_tar(tmp_path / "a.tar.gz", [({"name": "top/x", "mode": 0o4777}, b"x")])
    extract(arc, tmp_path / "out")
    mode = (tmp_path / "out/top/x").stat().st_mode
    assert not mode & (0o4000 | 0o2000)
    assert not mode & 0o002  # not world-writable


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------

def archive_server(serve, files: dict[str, bytes]):
    def app(h, n):
        path = h.path.split("?")[0]
        if path in files:
            send_bytes(h, files[path])
        else:
            send_status(h, 404)

    return serve(app)


def test_cli_psr(serve, tmp_path):
    data = make_tar(tmp_path / "src.tar.gz", lmdb_layout()).read_bytes()
    s = archive_server(serve, {"/4915648/files/PSR-split-by-year.tar.gz": data})
    out = tmp_path / "resources" / "psr"
    argv = ["--dataset", "psr", "--base-url", s.url, "--out", str(out), "--checksum", md5(data),
            "--retries", "2", "--backoff", "0.01", "--no-progress", "-q"]
    assert main(argv) == 0
    assert (out / "split-by-year/data/test/data.mdb").exists()
    assert (out / "archives/PSR-split-by-year.tar.gz").read_bytes() == data
    assert s.requests[0]["path"] == "/4915648/files/PSR-split-by-year.tar.gz?download=1"
    assert main(argv) == 0  # rerun: nothing requested
    assert len(s.requests) == 1
    # a wrong checksum on a fresh folder: exit status 1, nothing extracted
    bad = tmp_path / "bad"
    assert main(["--dataset", "psr", "--base-url", s.url, "--out", str(bad), "--checksum",
                 "md5:" + "0" * 32, "--no-progress", "-q"]) == 1
    assert not (bad / "split-by-year").exists()


def test_cli_res_two_archives_and_checksums_file(serve, tmp_path):
    raw = make_tar(tmp_path / "r.tar.gz", [({"name": "raw/RES/data/data.mdb"}, b"r")])
    idx = make_tar(tmp_path / "i.tar.gz", [({"name": "indices/train_indices.txt"}, b"1\n")])
    files = {"/5026743/files/RES-raw.tar.gz": raw.read_bytes(),
             "/5026743/files/RES-split-by-cath-topology-indices.tar.gz": idx.read_bytes()}
    s = archive_server(serve, files)
    sums = tmp_path / "sums.json"
    sums.write_text(json.dumps({"RES-raw.tar.gz": sha256(raw.read_bytes())}))
    out = tmp_path / "res"
    argv = ["--dataset", "res", "--base-url", s.url + "/", "--out", str(out), "--checksums-file",
            str(sums), "--checksum",
            f"RES-split-by-cath-topology-indices.tar.gz={md5(idx.read_bytes())}",
            "--remove-archives", "--no-progress", "-q"]
    assert main(argv) == 0
    assert (out / "raw/RES/data/data.mdb").read_bytes() == b"r"
    assert (out / "indices/train_indices.txt").read_bytes() == b"1\n"
    assert not (out / "archives" / "RES-raw.tar.gz").exists()  # removed after extraction
    assert main(argv) == 0 and len(s.requests) == 2  # markers: neither downloaded again
    # a bare checksum is ambiguous for a two-archive task
    assert main(["--dataset", "res", "--out", str(out), "--checksum", md5(b"x"), "-q"]) == 2


def test_cli_404_and_module_entry_point(serve, tmp_path):
    s = archive_server(serve, {})
    assert main(["--dataset", "rsr", "--base-url", s.url, "--out", str(tmp_path / "rsr"),
                 "--no-progress", "-q"]) == 1
    assert len(s.requests) == 1
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-m", "preprocess.download", "--list", "--base-url",
                        "http://mirror.example/rec", "--dataset", "ppi", "--archives-json",
                        archives_json(ARCHIVES["ppi"])], cwd=root, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert "http://mirror.example/rec/4911102/files/PPI-DIPS-split.tar.gz?download=1" in r.stdout
    # without the archives (the workflow passes them) a dataset is unknown, by name
    r = subprocess.run([sys.executable, "-m", "preprocess.download", "--dataset", "ppi", "--out",
                        str(tmp_path / "ppi")], cwd=root, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "no archives known for dataset 'ppi'" in r.stderr


# --------------------------------------------------------------------------------------------
# mirrors, redirects, disk space
# --------------------------------------------------------------------------------------------

def test_redirect_keeps_range(serve, tmp_path):
    data = payload(90_000, seed=14)

    def app(h, n):
        if h.path.startswith("/record/"):
            send_status(h, 302, [("Location", "/files-store/f.bin")])
        else:
            send_bytes(h, data, cut_at=40_000 if n == 1 else None)

    s = serve(app)
    dest = tmp_path / "f.bin"
    download(s.url + "/record/1/files/f.bin?download=1", dest, checksum=sha256(data), **FAST)
    assert dest.read_bytes() == data
    assert [r["path"] for r in s.requests] == ["/record/1/files/f.bin?download=1",
                                               "/files-store/f.bin"] * 2
    assert ranges(s) == [None, None, "bytes=40000-", "bytes=40000-"]


def test_local_folder_mirror(tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "4915648" / "files").mkdir(parents=True)
    data = payload(7_000, seed=15)
    (mirror / "4915648" / "files" / "PSR-split-by-year.tar.gz").write_bytes(data)
    for base in (str(mirror), mirror.as_uri()):
        url = archive_url(base, "4915648", "PSR-split-by-year.tar.gz")
        assert url == mirror.as_uri() + "/4915648/files/PSR-split-by-year.tar.gz"
        dest = tmp_path / f"out-{len(base)}.tar.gz"
        Path(str(dest) + ".part").write_bytes(b"xx")  # no Range on file://: restarted
        download(url, dest, checksum=md5(data), **FAST)
        assert dest.read_bytes() == data
    with pytest.raises(DownloadError, match="not retried"):
        download(archive_url(mirror, "1", "missing.tar.gz"), tmp_path / "m", **FAST)


def test_not_enough_disk_space(serve, tmp_path, monkeypatch):
    import collections
    import shutil

    data = payload(10_000, seed=16)
    s = serve(lambda h, n: send_bytes(h, data))
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**6, 10**6 - 100, 100))
    with pytest.raises(DownloadError, match="not enough disk space"):
        download(s.url + "/f", tmp_path / "f", **FAST)
    assert len(s.requests) == 1 and not (tmp_path / "f").exists()
