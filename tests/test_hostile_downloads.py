"""Hostile servers and archives (issue 13): bad bodies, trickling servers, redirects, bombs.

Everything runs against the real HTTP server of tests/test_download.py on 127.0.0.1 and real tar
files; docs/reliability.md lists each probe with the test that covers it.
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import pytest
from test_download import (  # noqa: F401  (serve is a fixture)
    FAST,
    archive_server,
    lmdb_layout,
    make_tar,
    send_bytes,
    send_status,
    serve,
)

from preprocess import download as dl
from preprocess.download import DownloadError, ExtractError, download, extract, main

PSR_PATH = "/4915648/files/PSR-split-by-year.tar.gz"
PSR_NAME = "PSR-split-by-year.tar.gz"


def psr_argv(base_url: str, out: Path, *extra: str) -> list[str]:
    return ["--task", "psr", "--base-url", base_url, "--out", str(out), "--retries", "1",
            "--backoff", "0.01", "--no-progress", *extra]


def good_psr(tmp_path: Path) -> bytes:
    return make_tar(tmp_path / "src.tar.gz", lmdb_layout()).read_bytes()


def error_lines(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)


def zip_bytes(tmp_path: Path) -> bytes:
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("split-by-year/data/train/data.mdb", b"x" * 100)
    return path.read_bytes()


# --------------------------------------------------------------------------------------------
# item 4: a bad download is not sticky
# --------------------------------------------------------------------------------------------

HTML = (b"<!DOCTYPE html>\n<html><head><title>Service unavailable</title></head>"
        b"<body>We are down for maintenance.</body></html>\n")

BAD_BODIES = {  # name: (body, content type, what the error must say)
    "html": (HTML, "text/html", "an HTML page"),
    "json": (b'{"status": 429, "message": "Too many requests"}', "application/json",
             "a JSON document"),
    "zip": (None, "application/zip", "a zip file"),
    "empty": (b"", "application/octet-stream", "an empty file"),
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_non_archive_body_is_named_and_fetched_again_once_fixed(serve, tmp_path, caplog, case):
    body, ctype, what = BAD_BODIES[case]
    body = zip_bytes(tmp_path) if body is None else body
    good = good_psr(tmp_path)
    state = {"fixed": False}

    def app(h, n):
        send_bytes(h, good) if state["fixed"] else send_bytes(h, body, content_type=ctype)

    s = serve(app)
    out = tmp_path / "psr"
    archive = out / "archives" / PSR_NAME
    assert main(psr_argv(s.url, out)) == 1
    msg = error_lines(caplog)
    assert what in msg and "not a tar archive" in msg and "truncated" not in msg
    assert not archive.exists() and not Path(f"{archive}.part").exists()  # nothing kept
    state["fixed"] = True
    assert main(psr_argv(s.url, out)) == 0  # the next run downloads it again
    assert (out / "split-by-year/data/train/data.mdb").exists()
    assert archive.read_bytes() == good and len(s.requests) == 2


def test_short_body_without_length_is_deleted_after_failed_extraction(serve, tmp_path, caplog):
    good = good_psr(tmp_path)
    state = {"fixed": False}

    def app(h, n):  # no Content-Length: the cut cannot be noticed before extraction
        send_bytes(h, good if state["fixed"] else good[:300], send_length=False)

    s = serve(app)
    out = tmp_path / "psr"
    archive = out / "archives" / PSR_NAME
    assert main(psr_argv(s.url, out)) == 1
    msg = error_lines(caplog)
    assert "corrupt or truncated" in msg and "deleted" in msg and str(archive) in msg
    assert not archive.exists()
    state["fixed"] = True
    assert main(psr_argv(s.url, out)) == 0
    assert archive.read_bytes() == good and len(s.requests) == 2


def test_checksum_failure_is_deleted_and_fetched_again(serve, tmp_path):
    good = good_psr(tmp_path)
    state = {"fixed": False}
    other = make_tar(tmp_path / "other.tar.gz", lmdb_layout("other")).read_bytes()
    s = serve(lambda h, n: send_bytes(h, good if state["fixed"] else other))
    out = tmp_path / "psr"
    argv = psr_argv(s.url, out, "--checksum", "sha256:" + dl.hashlib.sha256(good).hexdigest())
    assert main(argv) == 1
    assert not (out / "archives" / PSR_NAME).exists()
    state["fixed"] = True
    assert main(argv) == 0 and len(s.requests) == 2


def test_bad_archive_left_by_an_earlier_run_is_fetched_again(serve, tmp_path):
    good = good_psr(tmp_path)
    s = archive_server(serve, {PSR_PATH: good})
    out = tmp_path / "psr"
    archive = out / "archives" / PSR_NAME
    archive.parent.mkdir(parents=True)
    archive.write_bytes(HTML)  # kept as the archive by an older version of the downloader
    assert main(psr_argv(s.url, out)) == 0
    assert archive.read_bytes() == good and len(s.requests) == 1


def test_download_and_extract_name_what_a_file_is(serve, tmp_path):
    s = serve(lambda h, n: send_bytes(h, HTML, content_type="text/html"))
    with pytest.raises(DownloadError, match=f"an HTML page of {len(HTML)} bytes, starting "
                                            "'<!DOCTYPE html> <html><head><title>Service"):
        download(s.url + "/f.tar.gz", tmp_path / "f.tar.gz", expect_archive=True, **FAST)
    download(s.url + "/f.html", tmp_path / "f.html", **FAST)  # no archive expected: kept
    for name, body, what in [("page.tar.gz", HTML, "an HTML page"),
                             ("a.zip", zip_bytes(tmp_path), "a zip file"),
                             ("empty.tar.gz", b"", "an empty file"),
                             ("bin.tar.gz", bytes(range(256)) * 4, "unrecognised binary data")]:
        path = tmp_path / name
        path.write_bytes(body)
        with pytest.raises(ExtractError, match=f"not a tar.*it is {what}") as ei:
            extract(path, tmp_path / "out")
        assert ei.value.corrupt and str(path) in str(ei.value)
    for mode in ("w", "w:gz", "w:bz2", "w:xz"):
        assert dl.describe_file(make_tar(tmp_path / f"t.{mode[2:]}.tar", lmdb_layout(), mode)) \
            is None
