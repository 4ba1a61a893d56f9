"""Download and unpack the ATOM3D archives (Zenodo) robustly.

Three layers, usable on their own:

* :func:`archives` / :func:`archive_url` -- what to fetch for each dataset (as the task
  declarations say) and from where.
* :func:`download` -- one URL to one file: streamed to ``dest + ".part"``, resumed with HTTP
  ``Range`` requests, retried with capped exponential back-off, verified (size, md5/sha256, and
  that it is an archive at all) and renamed into place atomically.  An existing verified
  ``dest`` is never fetched again.  A watchdog ends stalled or overlong attempts; redirects
  go only to http(s), never from https to http, optionally only to allowed hosts.
* :func:`extract` -- safe tar / tar.gz extraction into a temporary sibling folder, moved into
  place with renames, with a per-archive marker file so reruns are skipped; capped in size,
  members and compression ratio (:class:`ExtractLimits`).

Command line (what the workflow rules call)::

    python -m preprocess.download --task psr --out resources/psr \
        [--base-url https://zenodo.org/record] [--checksum md5:...] [--retries N]

See ``docs/download.md`` for the behaviour in detail.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import hashlib
import http.client
import json
import logging
import lzma
import math
import os
import posixpath
import re
import shutil
import socket
import sys
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from pathlib import Path
from typing import Callable, Mapping, Sequence

from .atomic import DIR_MODE, fsync_dir, write_json_atomic

log = logging.getLogger("preprocess.download")

DEFAULT_BASE_URL = "https://zenodo.org/record"
#: environment variable naming a JSON/YAML checksum file (``{archive file name: "md5:..."}``)
CHECKSUMS_ENV = "EQGAT_DOWNLOAD_CHECKSUMS"
#: environment variable overriding the default base URL (a mirror)
BASE_URL_ENV = "EQGAT_DOWNLOAD_BASE_URL"

_CHUNK = 1 << 20  # 1 MiB per read
#: an attempt is stalled when less than DEFAULT_MIN_SPEED * DEFAULT_STALL_WINDOW bytes arrive in
#: a window of DEFAULT_STALL_WINDOW seconds (docs/download.md: "Slow and trickling servers")
DEFAULT_STALL_WINDOW = 60.0
DEFAULT_MIN_SPEED = 10 * 1024.0  # bytes per second
#: one attempt ends after this many seconds and is resumed with a Range request
DEFAULT_ATTEMPT_DEADLINE = 3600.0
_USER_AGENT = "eqgat-workflow-download/1"
_GB = 10 ** 9


# --------------------------------------------------------------------------------------------
# what to download
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Archive:
    """One Zenodo archive.

    ``extracts_to`` is the top-level folder the archive unpacks to (relative to the extraction
    target), ``approx_size`` an informative size in bytes (never used for verification),
    ``size`` the exact size in bytes when known (verified), ``md5``/``sha256`` hex digests when
    known (verified).  Unknown values are ``None``: nothing here is guessed.
    """

    task: str
    record: str
    filename: str
    extracts_to: str | None
    layout: str
    approx_size: int | None
    size: int | None = None
    md5: str | None = None
    sha256: str | None = None

    @property
    def checksum(self) -> str | None:
        """The strongest known checksum as ``"algo:hex"`` (sha256 preferred), or ``None``."""
        if self.sha256:
            return f"sha256:{self.sha256}"
        if self.md5:
            return f"md5:{self.md5}"
        return None

    def url(self, base_url: str | None = None) -> str:
        return archive_url(base_url if base_url is not None else default_base_url(),
                           self.record, self.filename)


# Each task declares the archives of its datasets (eqgat/tasks/<task>.py). Zenodo exposes the md5
# of every file in its API (https://zenodo.org/api/records/<record>), which the development
# machines cannot reach: the checksums are left None there and are supplied with a checksum file
# (--checksums-file / $EQGAT_DOWNLOAD_CHECKSUMS) or --checksum. See docs/download.md, "Adding
# checksums".
def archives() -> dict[str, tuple[Archive, ...]]:
    """Every dataset the declared tasks download: dataset name -> its archives."""
    from eqgat.tasks import TASKS

    out: dict[str, tuple[Archive, ...]] = {}
    for task in TASKS.values():
        out.update(getattr(task.source, "datasets", {}))
    return out


#: Alternatives that no workflow rule uses: the pre-split RES LMDBs (same record) instead of
#: raw + indices.  Its inner layout and size are not in our notes.
OPTIONAL_ARCHIVES: dict[str, tuple[Archive, ...]] = {
    "res-split": (
        Archive("res-split", "5026743", "RES-split-by-cath-topology.tar.gz", None,
                "unknown (not verified)", None),
    ),
}


def all_archives() -> dict[str, tuple[Archive, ...]]:
    return {**archives(), **OPTIONAL_ARCHIVES}


def default_base_url() -> str:
    return os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL


def archive_url(base_url: str, record: str | int, filename: str) -> str:
    """``{base_url}/{record}/files/{filename}?download=1`` (the Zenodo URL form).

    ``base_url`` may end with a slash; the file name is percent-quoted.  A local mirror can be
    given as ``file:///path`` or as a plain folder path (then the ``?download=1`` query is left
    out, as it would be taken for part of the file name).
    """
    base = str(base_url).rstrip("/")
    if not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", base):
        base = Path(base or "/").resolve().as_uri().rstrip("/")
    url = f"{base}/{record}/files/{urllib.parse.quote(filename)}"
    return url if base.lower().startswith("file:") else url + "?download=1"


def load_checksums(path: str | os.PathLike) -> dict[str, str]:
    """Read a checksum file: a JSON or YAML mapping ``archive file name -> "md5:<hex>"``.

    The values may also be mappings ``{md5: <hex>}`` / ``{sha256: <hex>}`` (what the Zenodo API
    returns is ``"checksum": "md5:<hex>"``, which can be pasted as is).
    """
    text = Path(path).read_text()
    if str(path).endswith((".yaml", ".yml")):
        import yaml

        data = yaml.safe_load(text) or {}
    else:
        data = json.loads(text) if text.strip() else {}
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: expected a mapping of file name -> checksum")
    out: dict[str, str] = {}
    for name, value in data.items():
        if isinstance(value, Mapping):
            algo = "sha256" if value.get("sha256") else "md5"
            value = f"{algo}:{value[algo]}"
        parse_checksum(str(value))  # validate early, with the file name in the error
        out[str(name)] = str(value)
    return out


def resolve_checksum(archive: Archive, overrides: Mapping[str, str] | None = None) -> str | None:
    """The checksum to verify ``archive`` with: an override by file name, else the table's."""
    if overrides and archive.filename in overrides:
        return overrides[archive.filename]
    return archive.checksum


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------

class DownloadError(RuntimeError):
    """A download failed; ``url`` and ``reason`` are in the message and as attributes."""

    def __init__(self, url: str, reason: str):
        self.url = url
        self.reason = reason
        super().__init__(f"download of {url} failed: {reason}")


class ChecksumError(DownloadError):
    """The downloaded bytes do not have the expected digest."""

    def __init__(self, url: str, algo: str, expected: str, actual: str):
        self.algo, self.expected, self.actual = algo, expected, actual
        super().__init__(url, f"{algo} checksum mismatch: expected {expected}, got {actual} "
                              f"(the partial file was deleted; the next run starts from zero)")


class RedirectError(DownloadError):
    """A redirect was refused: to a scheme other than http(s), from https to plain http, or to
    a host outside the allow-list."""


class ExtractError(RuntimeError):
    """An archive could not be extracted safely (corrupt, truncated, or unsafe member).

    ``corrupt`` is true when the file itself is bad (not an archive, truncated, fails its CRC):
    :func:`fetch_task` then deletes it so that the next run downloads it again.
    """

    def __init__(self, archive: str | os.PathLike, reason: str, corrupt: bool = False):
        self.archive = str(archive)
        self.reason = reason
        self.corrupt = corrupt
        super().__init__(f"cannot extract {archive}: {reason}")


class _Retryable(Exception):
    """Internal: a transient failure of one attempt.

    ``progressed`` overrides "the ``.part`` grew" as the test of whether the attempt made
    progress (a stalled attempt that trickled a few bytes did not).
    """

    def __init__(self, reason: str, retry_after: float | None = None,
                 progressed: bool | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.progressed = progressed


# --------------------------------------------------------------------------------------------
# checksums
# --------------------------------------------------------------------------------------------

_HEX_LEN = {"md5": 32, "sha256": 64}


def parse_checksum(checksum: str) -> tuple[str, str]:
    """``"md5:<hex>"`` / ``"sha256:<hex>"`` -> ``(algo, lowercase hex)``; ValueError otherwise."""
    algo, sep, digest = str(checksum).strip().partition(":")
    algo, digest = algo.strip().lower(), digest.strip().lower()
    if not sep or algo not in _HEX_LEN:
        raise ValueError(f"checksum {checksum!r}: expected 'md5:<hex>' or 'sha256:<hex>'")
    if len(digest) != _HEX_LEN[algo] or not re.fullmatch(r"[0-9a-f]+", digest):
        raise ValueError(f"checksum {checksum!r}: a {algo} digest is {_HEX_LEN[algo]} hex digits")
    return algo, digest


def file_digest(path: str | os.PathLike, algo: str = "sha256") -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _verify_existing(path: Path, expected_size: int | None,
                     check: tuple[str, str] | None, expect_archive: bool = False) -> str | None:
    """None when ``path`` matches the expected size and digest, else the reason it does not."""
    what = describe_file(path) if expect_archive else None
    if what is not None:
        return f"it is {what}, not an archive"
    size = path.stat().st_size
    if expected_size is not None and size != expected_size:
        return f"size {size} != expected {expected_size}"
    if check is not None:
        actual = file_digest(path, check[0])
        if actual != check[1]:
            return f"{check[0]} {actual} != expected {check[1]}"
    return None


# --------------------------------------------------------------------------------------------
# what a file is
# --------------------------------------------------------------------------------------------

_ARCHIVE_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")  # gzip, bzip2, xz
_OTHER_MAGIC = ((b"PK\x03\x04", "a zip file"), (b"PK\x05\x06", "a zip file (empty)"),
                (b"%PDF-", "a PDF file"), (b"7z\xbc\xaf\x27\x1c", "a 7z archive"),
                (b"Rar!\x1a\x07", "a RAR archive"), (b"\x28\xb5\x2f\xfd", "a zstd-compressed file"))
_SNIFF = 4096


def describe_file(path: str | os.PathLike) -> str | None:
    """None when ``path`` starts like a tar, tar.gz, tar.bz2 or tar.xz archive; else what it is
    (``"an HTML page of 1234 bytes, starting '<!DOCTYPE html>...'"``, ``"a zip file ..."``)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(_SNIFF)
    if not head:
        return "an empty file"
    if head.startswith(_ARCHIVE_MAGIC) or _is_tar_header(head[:tarfile.BLOCKSIZE]):
        return None
    kind = next((what for magic, what in _OTHER_MAGIC if head.startswith(magic)), None)
    text = _as_text(head)
    if kind is None and text is not None:
        kind = _text_kind(text)
    if kind is None:
        return f"unrecognised binary data of {size} bytes (first bytes {head[:16].hex()})"
    excerpt = f", starting {' '.join(text.split())[:60]!r}" if text is not None else ""
    return f"{kind} of {size} bytes{excerpt}"


def _is_tar_header(block: bytes) -> bool:
    """A valid (checksummed) tar header block: an uncompressed tar archive."""
    try:
        tarfile.TarInfo.frombuf(block, tarfile.ENCODING, "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def _as_text(head: bytes) -> str | None:
    """``head`` decoded when it is (almost all) printable text, else None."""
    if b"\x00" in head:
        return None
    text = head.decode("utf-8", errors="replace")  # invalid bytes become U+FFFD: not text
    printable = sum((c.isprintable() and c != "\ufffd") or c in "\t\r\n" for c in text)
    return text if printable >= 0.95 * len(text) else None


def _text_kind(text: str) -> str:
    start = text.lstrip("\ufeff \t\r\n").lower()
    if start.startswith(("<!doctype html", "<html")) or "<html" in start or "<body" in start:
        return "an HTML page"
    if start.startswith("<"):
        return "an XML document"
    if start.startswith(("{", "[")):
        return "a JSON document"
    return "a text file"


# --------------------------------------------------------------------------------------------
# download
# --------------------------------------------------------------------------------------------

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.I)
_CONTENT_RANGE_416 = re.compile(r"bytes\s+\*/(\d+)", re.I)
#: network-level failures of one attempt (timeouts are OSErrors too)
_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError,
                   TimeoutError, socket.timeout, OSError)


def _retry_after(headers) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to the back-off schedule


def _open(url: str, offset: int, timeout: float, opener: urllib.request.OpenerDirector):
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if offset > 0:
        headers["Range"] = f"bytes={offset}-"
    req = urllib.request.Request(url, headers=headers)
    return opener.open(req, timeout=timeout)


@dataclasses.dataclass(frozen=True)
class _Net:
    """How one download talks to the network (see :func:`download`)."""

    timeout: float
    stall_window: float
    min_speed: float
    attempt_deadline: float
    allowed_hosts: tuple[str, ...] = ()


def _host(url: str) -> str | None:
    return urllib.parse.urlsplit(url).hostname


def host_allowed(host: str | None, allowed_hosts: Sequence[str]) -> bool:
    """Whether ``host`` is in the allow-list: exact names (any case), ``*.example.org`` for the
    subdomains of example.org.  An empty list allows every host."""
    if not allowed_hosts:
        return True
    host = (host or "").lower().rstrip(".")
    for pattern in allowed_hosts:
        pattern = pattern.lower().rstrip(".")
        if pattern.startswith("*.") and host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
            return True
        if host == pattern:
            return True
    return False


def redirect_problem(old_url: str, new_url: str, allowed_hosts: Sequence[str] = ()) -> str | None:
    """Why a redirect from ``old_url`` to ``new_url`` must not be followed, or None."""
    old_scheme = urllib.parse.urlsplit(old_url).scheme.lower()
    new_scheme = urllib.parse.urlsplit(new_url).scheme.lower()
    if new_scheme not in ("http", "https"):
        return f"the scheme {new_scheme + ':' if new_scheme else '(none)'} is not http(s)"
    if old_scheme == "https" and new_scheme == "http":
        return "it goes from https to plain http"
    if not host_allowed(_host(new_url), allowed_hosts):
        return (f"the host {_host(new_url)!r} is not in the allowed hosts "
                f"({', '.join(allowed_hosts)})")
    return None


class SafeRedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to http(s), never from https to plain http and only to allowed
    hosts (:func:`redirect_problem`); logs every hop and keeps them in ``hops``."""

    def __init__(self, allowed_hosts: Sequence[str] = ()):
        super().__init__()
        self.allowed_hosts = tuple(allowed_hosts)
        self.hops: list[str] = []

    def http_error_302(self, req, fp, code, msg, headers):
        location = headers.get("location") or headers.get("uri")
        if location is not None:
            new = urllib.parse.urljoin(req.full_url, location.strip())
            problem = redirect_problem(req.full_url, new, self.allowed_hosts)
            if problem is not None:
                fp.close()
                raise RedirectError(req.full_url, f"refused the HTTP {code} redirect from "
                                                  f"{req.full_url} to {new}: {problem} "
                                                  f"(not retried)")
            log.info("HTTP %d redirect to %s (host %s)", code, new, _host(new))
            self.hops.append(new)
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


@dataclasses.dataclass
class _Source:
    """Where the bytes of one download came from (the job log and the completion marker)."""

    url: str
    final_url: str | None = None
    hosts: set[str] = dataclasses.field(default_factory=set)

    def note(self, final_url: str, hops: Sequence[str]) -> None:
        """One attempt's response came from ``final_url`` after ``hops``."""
        self.final_url = final_url
        self.hosts.update(h for h in map(_host, (self.url, *hops, final_url)) if h)

    def record(self, size: int) -> dict:
        final = self.final_url or self.url
        return {"url": self.url, "final_url": final, "host": _host(final),
                "hosts": sorted(self.hosts), "size": size,
                "downloaded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def source_path(archive: str | os.PathLike) -> Path:
    """The JSON file beside a downloaded file that says where it came from."""
    archive = Path(archive)
    return archive.with_name(archive.name + ".source.json")


def read_source(archive: str | os.PathLike) -> dict | None:
    """What :func:`download` recorded about where ``archive`` came from (None if unknown)."""
    try:
        info = json.loads(source_path(archive).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


class _Watchdog:
    """Ends an attempt that stalls or passes its deadline, from a thread of its own.

    Stalled: fewer than ``min_speed * window`` body bytes in a window of ``window`` seconds
    (back-to-back windows from the start of the attempt; 0 turns the check off).  The attempt's
    connections are shut down, which also ends a read blocked on a server that trickles its
    status line or headers, where the per-read socket timeout never trips.
    """

    def __init__(self, window: float, min_speed: float, deadline: float):
        self.window = window
        self.min_speed = min_speed
        self.min_bytes = int(min_speed * window)
        self.deadline = deadline
        self.received = 0             # body bytes of this attempt, counted by the reading thread
        self.restarted = False        # the server ignored Range: this attempt began at zero again
        self.kind: str | None = None  # "stall" or "deadline" once fired
        self.reason: str | None = None
        self._conns: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="download-watchdog", daemon=True)

    def __enter__(self) -> _Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()

    def connection(self, cls: type[http.client.HTTPConnection]) -> Callable:
        """A factory of ``cls`` connections that this watchdog can end (for ``do_open``)."""
        def make(*args, **kwargs):
            conn = cls(*args, **kwargs)
            with self._lock:
                self._conns.append(conn)
            return conn

        return make

    def made_progress(self) -> bool:
        """Whether the fired attempt counts as progress (it resets the retry count)."""
        if self.kind == "stall":
            return self.received >= max(self.min_bytes, 1)
        return self.received > 0 and not self.restarted

    def _run(self) -> None:
        start = time.monotonic()
        end = start + self.deadline if self.deadline > 0 else math.inf
        next_check = start + self.window if self.min_bytes > 0 else math.inf
        mark = 0
        while True:
            wake = min(end, next_check)
            if self._done.wait(None if wake == math.inf else max(0.0, wake - time.monotonic())):
                return
            now = time.monotonic()
            if now >= end:
                self._fire("deadline", f"attempt deadline of {self.deadline:g} s passed "
                                       f"({self.received} bytes received in this attempt)")
                break
            if now >= next_check:
                got = self.received - mark
                if got < self.min_bytes:
                    self._fire("stall", f"stalled: {got} bytes in {self.window:g} s, less than "
                                        f"{self.min_bytes} (min_speed {self.min_speed:g} B/s)")
                    break
                mark, next_check = self.received, now + self.window
        while not self._done.wait(0.1):  # a connection opened after firing is ended too
            self._shutdown()

    def _fire(self, kind: str, reason: str) -> None:
        self.kind = kind
        self.reason = reason
        self._shutdown()

    def _shutdown(self) -> None:
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            sock = getattr(conn, "sock", None)
            if sock is not None:
                try:  # the plain socket call: wakes a blocked read, also under TLS
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
                except OSError:
                    pass


class _WatchedHTTPHandler(urllib.request.HTTPHandler):
    """http:// over connections that a :class:`_Watchdog` can end."""

    def __init__(self, watchdog: _Watchdog):
        super().__init__()
        self.watchdog = watchdog

    def http_open(self, req):
        return self.do_open(self.watchdog.connection(http.client.HTTPConnection), req)


class _WatchedHTTPSHandler(urllib.request.HTTPSHandler):
    """https:// over connections that a :class:`_Watchdog` can end."""

    def __init__(self, watchdog: _Watchdog):
        super().__init__()
        self.watchdog = watchdog

    def https_open(self, req):
        return self.do_open(self.watchdog.connection(http.client.HTTPSConnection), req,
                            context=self._context)


def _opener(watchdog: _Watchdog, redirects: SafeRedirectHandler) -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(_WatchedHTTPHandler(watchdog),
                                       _WatchedHTTPSHandler(watchdog), redirects)


class _Hasher:
    """Running digest of the ``.part`` file, kept across attempts so resumes do not rehash."""

    def __init__(self, algo: str | None):
        self.algo = algo
        self.reset()

    def reset(self):
        self.h = hashlib.new(self.algo) if self.algo else None
        self.nbytes = 0

    def sync(self, part: Path, size: int):
        """Make the digest cover exactly the first ``size`` bytes of ``part``."""
        if self.h is None or self.nbytes == size:
            return
        self.reset()
        with open(part, "rb") as f:
            while self.nbytes < size:
                block = f.read(min(_CHUNK, size - self.nbytes))
                if not block:
                    break
                self.update(block)

    def update(self, data: bytes):
        if self.h is not None:
            self.h.update(data)
        self.nbytes += len(data)

    def hexdigest(self) -> str | None:
        return self.h.hexdigest() if self.h is not None else None


def download(url: str, dest: str | os.PathLike, expected_size: int | None = None,
             checksum: str | None = None, retries: int = 5, backoff: float = 1.0,
             timeout: float = 60, progress: bool = True, max_backoff: float = 60.0,
             max_attempts: int | None = None, expect_archive: bool = False,
             stall_window: float = DEFAULT_STALL_WINDOW, min_speed: float = DEFAULT_MIN_SPEED,
             attempt_deadline: float = DEFAULT_ATTEMPT_DEADLINE,
             allowed_hosts: Sequence[str] = (),
             sleep: Callable[[float], None] = time.sleep) -> Path:
    """Download ``url`` to ``dest`` (resumable, retried, verified, atomic); returns ``dest``.

    * If ``dest`` exists and matches ``expected_size`` / ``checksum`` (those given), nothing is
      requested.  If it exists but does not match, it is downloaded again (the old file stays
      until the new one has been verified).
    * Bytes go to ``dest + ".part"``; an existing ``.part`` is resumed with ``Range: bytes=N-``.
      A server answering 200 to a Range request (ignoring it) restarts the file from zero; a
      416 answer means the ``.part`` is already complete (verified next) or invalid (deleted).
    * ``retries`` bounds the *consecutive* failed attempts that received no bytes: at most
      ``retries + 1`` requests in a row may fail before :class:`DownloadError`.  Transient
      failures: connection errors, timeouts, bodies shorter than their Content-Length, HTTP
      5xx, 408 and 429; any other 4xx fails at once.  The wait before the ``k``-th consecutive
      retry is ``min(max_backoff, backoff * 2 ** (k - 1))`` (at least a numeric
      ``Retry-After``, capped the same way).  An attempt that delivered bytes before breaking
      resets the count and is resumed after ``backoff`` seconds, so a long download over a
      flaky link goes on as long as it progresses; ``max_attempts`` (default
      ``max(100, 10 * (retries + 1))``) bounds all attempts together.
    * ``timeout`` bounds each socket read.  An attempt is also ended and retried when it stalls
      (fewer than ``min_speed * stall_window`` bytes in a ``stall_window``-second window, which
      a server trickling one byte at a time never escapes otherwise) or lasts longer than
      ``attempt_deadline`` seconds (resumed with Range; 0 turns either off).  A stalled attempt
      counts as a failure without progress unless it received a full window's worth of bytes.
    * A body without Content-Length never grows past ``expected_size`` (when given).
    * Redirects are followed only to http(s) URLs, never from https to plain http, and, when
      ``allowed_hosts`` is given, only to those hosts (the first URL's host must be in it too;
      ``*.example.org`` matches subdomains): :class:`RedirectError` otherwise, not retried.
      Every hop is logged; the final URL and host go to the log and to ``dest.source.json``
      (:func:`read_source`), written beside ``dest`` just before it appears.
    * After the last byte: size (``expected_size``, and the server's announced total) and
      ``checksum`` (``"md5:<hex>"`` or ``"sha256:<hex>"``) are checked; on a mismatch the
      ``.part`` is deleted and :class:`ChecksumError` / :class:`DownloadError` is raised.
      Only then is ``.part`` renamed to ``dest`` (``os.replace``: atomic on one filesystem).
    * With ``expect_archive``, a file that does not start like a tar / tar.gz / tar.bz2 / tar.xz
      archive (an HTML error page, a zip file, an empty body) is deleted and the error says what
      it is (:func:`describe_file`); an existing ``dest`` of that kind is downloaded again.
    * When the retries are exhausted, :class:`DownloadError` is raised, ``dest`` is not created
      and a ``.part`` with the bytes received so far is kept, so the next call resumes it.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    check = parse_checksum(checksum) if checksum else None
    if expected_size is not None:
        expected_size = int(expected_size)
        if expected_size < 0:
            raise ValueError(f"expected_size must be >= 0, got {expected_size}")
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    if min(stall_window, min_speed, attempt_deadline) < 0:
        raise ValueError("stall_window, min_speed and attempt_deadline must be >= 0")
    net = _Net(timeout, stall_window, min_speed, attempt_deadline, tuple(allowed_hosts))

    if dest.exists():
        mismatch = _verify_existing(dest, expected_size, check, expect_archive)
        if mismatch is None:
            log.info("%s already present%s, not downloading", dest,
                     " and verified" if (check or expected_size is not None) else "")
            return dest
        log.warning("%s exists but does not verify (%s): downloading it again", dest, mismatch)

    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme != "file" and not host_allowed(_host(url), net.allowed_hosts):
        raise DownloadError(url, f"the host {_host(url)!r} is not in the allowed hosts "
                                 f"({', '.join(net.allowed_hosts)}) (not retried)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    hasher = _Hasher(check[0] if check else None)
    source = _Source(url)
    failures = 0          # consecutive transient failures without progress
    attempts = 0          # all attempts, bounded so a pathological server cannot loop forever
    if max_attempts is None:
        max_attempts = max(100, 10 * (retries + 1))
    last_reason = "no attempt made"
    total: int | None = expected_size   # full size, from the caller or the server

    bar = None
    try:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                   desc=dest.name, disable=not progress, leave=False, file=sys.stderr)
    except ImportError:  # pragma: no cover - tqdm is a dependency
        bar = None

    try:
        while True:
            attempts += 1
            offset = part.stat().st_size if part.exists() else 0
            if total is not None and offset > total:
                log.warning("%s is larger than the file (%d > %d bytes): restarting", part,
                            offset, total)
                part.unlink()
                offset = 0
            before = offset
            try:
                if total is not None and offset == total and offset > 0:
                    complete = True  # nothing left to fetch (e.g. an earlier run was cut at 100%)
                else:
                    complete, total = _attempt(url, part, offset, total, net, hasher, bar,
                                               source)
            except _Retryable as exc:
                last_reason = exc.reason
                progressed = part.exists() and part.stat().st_size > before
                if exc.progressed is not None:
                    progressed = exc.progressed
                failures = 0 if progressed else failures + 1
                if failures > retries or attempts >= max_attempts:
                    raise DownloadError(
                        url, f"giving up after {attempts} attempt(s) ({failures} consecutive "
                             f"without progress, retries={retries}); last error: {last_reason}"
                             + (f"; {part} kept for resuming" if part.exists() else "")) from None
                if progressed:
                    delay = min(max_backoff, backoff)  # broke after delivering bytes: resume
                else:
                    delay = min(max_backoff, backoff * 2 ** (failures - 1))
                    if exc.retry_after is not None:
                        delay = min(max_backoff, max(delay, exc.retry_after))
                log.warning("%s: %s; %s in %.2f s (consecutive failures: %d, retries: %d)",
                            url, exc.reason, "resuming" if progressed else "retrying", delay,
                            failures, retries)
                if delay > 0:
                    sleep(delay)
                continue
            if complete:
                break

        # ---- verification ------------------------------------------------------------------
        if not part.exists():
            part.touch()  # an empty file is a legitimate download (unless expect_archive)
        if expect_archive:
            _check_is_archive(url, part)
        size = part.stat().st_size
        if expected_size is not None and size != expected_size:
            part.unlink()
            raise DownloadError(url, f"size mismatch: expected {expected_size} bytes, got {size} "
                                     f"(the partial file was deleted)")
        if total is not None and size != total:
            part.unlink()
            raise DownloadError(url, f"size mismatch: the server announced {total} bytes, "
                                     f"got {size} (the partial file was deleted)")
        if check is not None:
            hasher.sync(part, size)
            actual = hasher.hexdigest()
            if actual != check[1]:
                part.unlink()
                raise ChecksumError(url, check[0], check[1], actual)
        _fsync_file(part)
        record = source.record(size)
        write_json_atomic(source_path(dest), record, indent=1, sort_keys=False)
        os.replace(part, dest)
        fsync_dir(dest.parent)
        log.info("downloaded %s -> %s (%d bytes%s) from %s (host %s)", url, dest, size,
                 f", {check[0]} verified" if check else "", record["final_url"], record["host"])
        return dest
    finally:
        if bar is not None:
            bar.close()


def _attempt(url: str, part: Path, offset: int, total: int | None, net: _Net,
             hasher: _Hasher, bar, source: _Source) -> tuple[bool, int | None]:
    """One request, ended by a :class:`_Watchdog` if it stalls or passes its deadline.

    Returns ``(complete, total)``; raises _Retryable or DownloadError.
    """
    with _Watchdog(net.stall_window, net.min_speed, net.attempt_deadline) as wd:
        redirects = SafeRedirectHandler(net.allowed_hosts)
        opener = _opener(wd, redirects)
        try:
            return _request(url, part, offset, total, net.timeout, opener, wd, hasher, bar,
                            lambda final: source.note(final, redirects.hops))
        except Exception:
            if wd.reason is None:
                raise
            raise _Retryable(wd.reason, progressed=wd.made_progress()) from None


def _request(url: str, part: Path, offset: int, total: int | None, timeout: float,
             opener: urllib.request.OpenerDirector, wd: _Watchdog, hasher: _Hasher,
             bar, note_final: Callable[[str], None]) -> tuple[bool, int | None]:
    """Send one request and stream its body into ``part``."""
    try:
        resp = _open(url, offset, timeout, opener)
    except RedirectError as exc:
        raise RedirectError(url, exc.reason) from None
    except urllib.error.HTTPError as exc:
        code = exc.code
        headers = exc.headers
        try:
            exc.close()
        except Exception:  # pragma: no cover
            pass
        if code == 416 and offset > 0:
            m = _CONTENT_RANGE_416.search(headers.get("Content-Range", "") if headers else "")
            server_total = int(m.group(1)) if m else None
            if server_total is not None and server_total == offset:
                return True, server_total  # the .part already holds the whole file
            known = server_total if server_total is not None else total
            if known is not None and known == offset:
                return True, known
            part.unlink(missing_ok=True)
            hasher.reset()
            raise _Retryable(f"HTTP 416 for Range bytes={offset}- (server size "
                             f"{server_total if server_total is not None else 'unknown'}): "
                             f"discarded the partial file") from None
        if code >= 500 or code in (408, 429):
            raise _Retryable(f"HTTP {code} {exc.reason}", _retry_after(headers)) from None
        raise DownloadError(url, f"HTTP {code} {exc.reason} (not retried)") from None
    except ValueError as exc:  # malformed URL
        raise DownloadError(url, f"invalid URL: {exc}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, (FileNotFoundError, IsADirectoryError, PermissionError)):
            raise DownloadError(url, f"{exc.reason} (not retried)") from None  # local mirror
        raise _Retryable(f"{type(exc).__name__}: {exc.reason}") from None
    except _NETWORK_ERRORS as exc:
        raise _Retryable(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}") from None

    with resp:
        note_final(resp.geturl())
        status = getattr(resp, "status", None) or 200  # file:// responses have no status
        length_header = resp.headers.get("Content-Length")
        try:
            length = int(length_header) if length_header is not None else None
        except ValueError:
            length = None
        if status == 206:
            m = _CONTENT_RANGE.search(resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != offset:
                # a range we did not ask for: start again from zero without Range
                part.unlink(missing_ok=True)
                hasher.reset()
                raise _Retryable(f"HTTP 206 with unexpected Content-Range "
                                 f"{resp.headers.get('Content-Range')!r} for offset {offset}")
            if m.group(3) != "*":
                total = int(m.group(3))
            elif length is not None:
                total = offset + length
            mode = "ab"
        elif status == 200:
            if offset > 0:
                log.warning("%s: server ignored the Range request (HTTP 200): restarting from "
                            "zero", url)
                wd.restarted = True
            offset = 0
            hasher.reset()
            if length is not None:
                total = length
            mode = "wb"
        else:
            raise DownloadError(url, f"unexpected HTTP status {status}")

        if total is not None:
            _check_free_space(url, part.parent, total - offset)
        if bar is not None:
            bar.reset(total=total)
            bar.update(offset)
        if mode == "ab":
            hasher.sync(part, offset)
        # a body without Content-Length may not grow past the size we know
        cap = total - offset if length is None and total is not None else None
        received = _stream_body(resp, part, mode, offset, cap, wd, hasher, bar)
        if cap is not None and received > cap:
            part.unlink(missing_ok=True)
            hasher.reset()
            raise DownloadError(url, f"the server sent more than the expected {total} bytes "
                                     f"(no Content-Length; the partial file was deleted)")
        if length is not None and received < length:
            raise _Retryable(f"truncated body: got {received} of {length} bytes "
                             f"(Content-Length) at offset {offset}")
        if length is not None and received > length:  # pragma: no cover - http.client caps it
            raise DownloadError(url, f"body longer than its Content-Length ({received} > "
                                     f"{length})")
        if total is None:
            total = offset + received  # no length announced: the body ended at EOF
        return True, total


def _stream_body(resp, part: Path, mode: str, offset: int, cap: int | None, wd: _Watchdog,
                 hasher: _Hasher, bar) -> int:
    """Append the body to ``part``; returns its bytes (``cap + 1`` at most, when ``cap`` is given)."""
    received = 0
    # read1: return what has arrived (one socket read) instead of waiting for a full chunk,
    # so the bytes received before a timeout or a cut are kept for resuming
    read = getattr(resp, "read1", None) or resp.read
    with open(part, mode) as f:
        while cap is None or received <= cap:
            want = _CHUNK if cap is None else min(_CHUNK, cap + 1 - received)
            try:
                block = read(want)
            except _NETWORK_ERRORS as exc:
                f.flush()
                raise _Retryable(f"connection broken after {offset + received} bytes "
                                 f"({type(exc).__name__}: {exc})") from None
            if wd.reason is not None:  # the watchdog ended the attempt (EOF after a shutdown)
                raise _Retryable(wd.reason)
            if not block:
                break
            f.write(block)
            hasher.update(block)
            received += len(block)
            wd.received += len(block)
            if bar is not None:
                bar.update(len(block))
    return received


def _check_is_archive(url: str, part: Path) -> None:
    """Delete ``part`` and raise when it is not an archive (an HTML page, an empty body...)."""
    what = describe_file(part)
    if what is not None:
        part.unlink()
        raise DownloadError(url, f"the server sent {what}, not a tar archive (deleted; not "
                                 f"retried: the next run downloads it again)")


def _check_free_space(url: str, folder: Path, needed: int) -> None:
    try:
        free = shutil.disk_usage(folder).free
    except OSError:  # pragma: no cover - cannot tell: let the write fail if it must
        return
    if needed > free:
        raise DownloadError(url, f"not enough disk space in {folder}: {needed} more bytes needed, "
                                 f"{free} free")


def _fsync_file(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # pragma: no cover - best effort
        pass


# --------------------------------------------------------------------------------------------
# extraction
# --------------------------------------------------------------------------------------------

_HAS_DATA_FILTER = hasattr(tarfile, "data_filter")  # Python 3.12, 3.11.4+, 3.10.12+, 3.9.17+

# Extraction limits (docs/download.md, "Extraction limits" gives the reasoning).  The ATOM3D
# archives hold a few LMDB files each (under 20 members) whose values are gzip-compressed
# already, so they expand by a small factor; the largest, RES-raw.tar.gz, is ~31.6 GB.
#: total bytes of the regular files of one archive: 1 TB, ~30x the largest archive
DEFAULT_MAX_EXTRACT_BYTES = 10 ** 12
#: members (files, folders, links) of one archive
DEFAULT_MAX_MEMBERS = 10_000
#: decompressed / compressed bytes; gzip itself cannot exceed ~1030, text compresses 5-10x
DEFAULT_MAX_RATIO = 100.0
#: the ratio is checked once this many bytes are decompressed (a small archive of headers and
#: padding compresses very well)
_RATIO_GRACE = 1 << 20


@dataclasses.dataclass(frozen=True)
class ExtractLimits:
    """What one archive may unpack to; :func:`extract` refuses an archive past any of them."""

    max_bytes: int = DEFAULT_MAX_EXTRACT_BYTES
    max_members: int = DEFAULT_MAX_MEMBERS
    max_ratio: float = DEFAULT_MAX_RATIO

    def __post_init__(self):
        if min(self.max_bytes, self.max_members, self.max_ratio) <= 0:
            raise ValueError(f"extraction limits must be > 0: {self}")


class _Budget:
    """Counts an archive's members and bytes against its :class:`ExtractLimits`, before writing."""

    def __init__(self, archive: Path, limits: ExtractLimits):
        self.archive = archive
        self.limits = limits
        self.members = 0
        self.bytes = 0

    def admit(self, m: tarfile.TarInfo) -> None:
        self.members += 1
        if self.members > self.limits.max_members:
            raise ExtractError(self.archive, f"more than {self.limits.max_members} members "
                                             f"(limit: download.max_members / --max-members)")
        if m.isreg():
            self.bytes += m.size
            if self.bytes > self.limits.max_bytes:
                raise ExtractError(self.archive, f"member {m.name!r} ({m.size} bytes) brings the "
                                                 f"total to {self.bytes} bytes, over the limit of "
                                                 f"{self.limits.max_bytes} (download."
                                                 f"max_extract_bytes / --max-extract-bytes)")


class _RatioGuard:
    """The decompressed tar stream, refusing to expand past ``max_ratio`` times the compressed
    bytes read so far (a decompression bomb is stopped before it writes much)."""

    def __init__(self, stream, compressed: _HashingReader, archive: Path, max_ratio: float):
        self.stream = stream
        self.compressed = compressed
        self.archive = archive
        self.max_ratio = max_ratio
        self.n = 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(_CHUNK if size < 0 else size)  # never the whole stream at once
        self.n += len(data)
        if self.n > _RATIO_GRACE and self.n > self.max_ratio * self.compressed.n:
            raise ExtractError(self.archive, f"it expands more than {self.max_ratio:g} times "
                                             f"({self.n} bytes from {self.compressed.n} compressed "
                                             f"bytes so far): a decompression bomb? (limit: "
                                             f"download.max_ratio / --max-ratio)")
        return data


def marker_path(archive: str | os.PathLike, target_dir: str | os.PathLike) -> Path:
    """The marker that says ``archive`` was fully extracted into ``target_dir``."""
    return Path(target_dir) / f".{Path(archive).name}.complete"


def read_marker(archive: str | os.PathLike, target_dir: str | os.PathLike) -> dict | None:
    """The marker's content when the extraction is complete (its entries all exist), else None."""
    marker = marker_path(archive, target_dir)
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict):
        return None
    entries = info.get("entries") or []
    if not all((Path(target_dir) / e).exists() or (Path(target_dir) / e).is_symlink()
               for e in entries):
        return None
    return info


class _HashingReader:
    """A read-only file wrapper that digests (sha256) and counts every byte read."""

    def __init__(self, f):
        self.f = f
        self.h = hashlib.sha256()
        self.n = 0

    def read(self, size=-1):
        data = self.f.read(size)
        self.h.update(data)
        self.n += len(data)
        return data

    def drain(self):
        for _block in iter(lambda: self.read(_CHUNK), b""):
            pass


def _safe_relpath(name: str) -> str:
    """Normalised member path, or ValueError when it is absolute or escapes the root."""
    if not name or "\x00" in name:
        raise ValueError("empty member name")
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise ValueError("absolute path")
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        raise ValueError("'..' in path")
    norm = posixpath.normpath("/".join(p for p in parts if p not in ("", ".")) or ".")
    return norm


def _under_symlink(rel: str, symlinks: set[str], parents_only: bool = False) -> bool:
    parts = rel.split("/")
    stop = len(parts) if parents_only else len(parts) + 1
    return any("/".join(parts[:i]) in symlinks for i in range(1, stop))


def _check_member(m: tarfile.TarInfo, symlinks: set[str], links: set[str]) -> str:
    """Our own safety checks (independent of tarfile's filters); returns the normalised path.

    ``symlinks`` and ``links`` (symbolic and hard) collect the archive's links so far.
    """
    try:
        rel = _safe_relpath(m.name)
    except ValueError as exc:
        raise ValueError(f"member {m.name!r}: {exc}") from None
    # writing a member over an earlier link of the same name would write through the link
    if rel in links:
        raise ValueError(f"member {m.name!r} has the name of an earlier link of the archive")
    if m.issym() or m.islnk():
        links.add(rel)
    # no member may be written through a symlink that the archive created before it
    if _under_symlink(rel, symlinks, parents_only=True):
        raise ValueError(f"member {m.name!r} lies under a symlink of the archive")
    if m.isreg() or m.isdir():
        pass
    elif m.issym():
        target = m.linkname
        if not target or target.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", target):
            raise ValueError(f"symlink {m.name!r} -> {target!r} is absolute")
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
        if resolved == ".." or resolved.startswith("../") or resolved.startswith("/"):
            raise ValueError(f"symlink {m.name!r} -> {target!r} points outside the target")
        symlinks.add(rel)
    elif m.islnk():
        try:
            link = _safe_relpath(m.linkname)
        except ValueError as exc:
            raise ValueError(f"hard link {m.name!r} -> {m.linkname!r}: {exc}") from None
        if _under_symlink(link, symlinks):
            raise ValueError(f"hard link {m.name!r} -> {m.linkname!r} goes through a symlink")
    else:
        kind = ("device file" if (m.ischr() or m.isblk()) else "fifo" if m.isfifo()
                else f"member of type {m.type!r}")
        raise ValueError(f"member {m.name!r} is a {kind}")
    return rel


def _extract_member_manual(tf: tarfile.TarFile, m: tarfile.TarInfo, rel: str, root: Path):
    """Write one member without tarfile's extraction (for Pythons without filter="data")."""
    dest = root / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    if m.isreg():
        src = tf.extractfile(m)
        with open(dest, "xb") as out:
            shutil.copyfileobj(src, out, _CHUNK)
        mode = m.mode & 0o755 | 0o600  # "data" filter semantics: no set-uid, owner can read/write
        if not m.mode & 0o100:
            mode &= ~0o111
        os.chmod(dest, mode)
    elif m.issym():
        os.symlink(m.linkname, dest)
    elif m.islnk():
        os.link(root / _safe_relpath(m.linkname), dest)


_HOST = re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname()) or "host"
_TEMP_OWNER = re.compile(r"(?P<host>.+)-(?P<pid>[0-9]+)-[a-z0-9_]+")


def _temp_prefix(target_dir: Path, kind: str) -> str:
    """``.<target>.<kind>-<host>-<pid>-``: the folder of a killed process is recognised later."""
    return f".{target_dir.name}.{kind}-{_HOST}-{os.getpid()}-"


def _remove_stale_temps(target_dir: Path) -> None:
    """Remove the temporary folders of extractions into ``target_dir`` whose process is gone
    (killed); those of a live process, or of another host, are left alone."""
    parent = target_dir.parent
    if not parent.is_dir():
        return
    ours = re.compile(rf"\.{re.escape(target_dir.name)}\.(?:extract|old)-(?P<rest>.+)")
    for entry in sorted(parent.iterdir()):
        m = ours.fullmatch(entry.name)
        if m is None or entry.is_symlink() or not entry.is_dir():
            continue
        owner = _TEMP_OWNER.fullmatch(m["rest"])  # None: named by an older version
        if owner is not None and owner["host"] != _HOST:
            log.warning("%s was left by an extraction on host %s: remove it by hand unless that "
                        "one is still running", entry, owner["host"])
            continue
        if owner is not None and _alive(int(owner["pid"])):
            continue
        log.warning("removing %s, left behind by an extraction that was killed", entry)
        shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def extract(archive: str | os.PathLike, target_dir: str | os.PathLike,
            overwrite: bool = False, source: dict | None = None,
            limits: ExtractLimits | None = None) -> Path:
    """Safely extract a tar / tar.gz / tar.bz2 / tar.xz ``archive`` into ``target_dir``.

    The archive's top-level entries end up directly in ``target_dir`` (so PSR's archive gives
    ``target_dir/split-by-year/data/{train,val,test}``).  Several archives may be extracted into
    the same ``target_dir`` (RES: ``raw/`` and ``indices/``).

    * Every member is checked before it is written: no absolute paths, no ``..``, no symlinks
      or hard links leading outside the target, no device files or fifos, nothing written
      through a symlink.  Where :mod:`tarfile` has ``filter="data"`` it is used as well.
    * Extraction goes to a temporary sibling folder of ``target_dir``; when it is complete its
      entries are renamed into place (the whole folder in one rename when ``target_dir`` does not
      exist yet) and the marker ``target_dir/.<archive name>.complete`` is written (JSON: archive
      name, size, sha256, mtime, entries).  A corrupt, truncated or unsafe archive raises
      :class:`ExtractError` and leaves neither the temporary folder nor a (new) ``target_dir``.
    * When the marker exists, its entries exist and it matches the archive (same size and mtime,
      or same sha256), nothing is done.  A marker whose archive has been deleted since still
      counts (to free disk space after extracting).  If an entry already exists without a
      matching marker, ExtractError is raised unless ``overwrite=True`` (then it is replaced).
    * ``source`` (where the archive came from, :func:`read_source`) is kept in the marker.
    * ``limits`` (default :class:`ExtractLimits()`) caps the total size, the number of members
      and the compression ratio; the archive is refused when it goes past one.
    * A member with the name of an earlier link of the archive is refused (it would be written
      through the link).  Temporary folders left by a killed extraction into ``target_dir``
      are removed first.
    """
    archive = Path(archive)
    target_dir = Path(target_dir)
    limits = limits if limits is not None else ExtractLimits()
    _remove_stale_temps(target_dir)
    info = read_marker(archive, target_dir)
    if info is not None:
        if not archive.exists():
            log.info("%s: already extracted into %s (archive since removed)", archive.name,
                     target_dir)
            return target_dir
        st = archive.stat()
        if info.get("size") == st.st_size and info.get("mtime_ns") == st.st_mtime_ns:
            log.info("%s: already extracted into %s", archive.name, target_dir)
            return target_dir
        if info.get("size") == st.st_size and info.get("sha256") == file_digest(archive):
            log.info("%s: already extracted into %s (same sha256)", archive.name, target_dir)
            return target_dir
        log.warning("%s changed since it was extracted into %s: extracting again",
                    archive, target_dir)
        overwrite = True
    if not archive.is_file():
        raise ExtractError(archive, "no such file")
    what = describe_file(archive)
    if what is not None:
        raise ExtractError(archive, f"not a tar, tar.gz, tar.bz2 or tar.xz archive: it is {what}",
                           corrupt=True)

    target_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(target_dir, "extract"), dir=target_dir.parent))
    try:
        os.chmod(tmp, DIR_MODE)  # it may become target_dir itself
        st = archive.stat()
        reader_file = open(archive, "rb")
        with reader_file:
            reader = _HashingReader(reader_file)
            nmembers = _extract_stream(archive, reader, tmp, limits)
            reader.drain()  # the bytes after the end-of-archive blocks count in the digest
        entries = sorted(os.listdir(tmp))
        if not entries:
            raise ExtractError(archive, "the archive is empty", corrupt=True)
        marker = {"archive": archive.name, "size": reader.n, "sha256": reader.h.hexdigest(),
                  "mtime_ns": st.st_mtime_ns, "members": nmembers, "entries": entries,
                  "extracted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "source": source}
        _move_into_place(archive, tmp, target_dir, entries, marker, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("extracted %s (%d members) into %s: %s", archive.name, nmembers, target_dir,
             ", ".join(entries))
    return target_dir


def _decompressed(archive: Path, reader: _HashingReader):
    """A file object with the tar bytes of ``archive`` (read through ``reader``).

    gzip/bz2/xz are decoded by their own modules, which (unlike tarfile's stream mode) check the
    end-of-stream marker and CRC, so a truncated or corrupt archive is always noticed.
    """
    import bz2
    import gzip

    with open(archive, "rb") as f:
        magic = f.read(6)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=reader, mode="rb")
    if magic.startswith(b"BZh"):
        return bz2.BZ2File(reader, mode="rb")
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(reader, mode="rb")
    return reader


def _extract_stream(archive: Path, reader: _HashingReader, root: Path,
                    limits: ExtractLimits) -> int:
    """Check and extract member by member in one sequential pass (no seeking, no second read
    of a 30 GB gzip stream).  Returns the number of members."""
    symlinks: set[str] = set()
    links: set[str] = set()
    budget = _Budget(archive, limits)
    n = 0
    try:
        stream = _decompressed(archive, reader)
        if stream is not reader:
            stream = _RatioGuard(stream, reader, archive, limits.max_ratio)
        with tarfile.open(fileobj=stream, mode="r|") as tf:
            for m in tf:
                try:
                    rel = _check_member(m, symlinks, links)
                except ValueError as exc:
                    raise ExtractError(archive, f"unsafe member: {exc}") from None
                budget.admit(m)
                n += 1
                if rel == ".":
                    continue
                if m.isdir():
                    (root / rel).mkdir(parents=True, exist_ok=True)
                    continue
                if _HAS_DATA_FILTER:
                    try:
                        tf.extract(m, root, set_attrs=True, filter="data")
                    except tarfile.FilterError as exc:
                        raise ExtractError(archive, f"unsafe member: {exc}") from None
                else:
                    _extract_member_manual(tf, m, rel, root)
        # read to the end of the compressed stream: this checks its CRC / end marker
        if stream is not reader:
            for _ in iter(lambda: stream.read(_CHUNK), b""):
                pass
    except ExtractError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError, ValueError) as exc:
        # gzip.BadGzipFile and bz2 errors are OSErrors, truncation is EOFError
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES,
                                                      errno.EROFS):
            raise ExtractError(archive, f"cannot write: {exc}") from exc
        raise ExtractError(archive, f"corrupt or truncated archive "
                                    f"({type(exc).__name__}: {exc})", corrupt=True) from None
    if n == 0:
        raise ExtractError(archive, "the archive is empty", corrupt=True)
    if symlinks:
        # order-independent final check: every symlink must resolve inside the extracted tree
        real_root = os.path.realpath(root)
        for rel in sorted(symlinks):
            real = os.path.realpath(root / rel)
            if os.path.commonpath([real_root, real]) != real_root:
                raise ExtractError(archive, f"unsafe member: symlink {rel!r} resolves outside "
                                            f"the target ({real})")
    return n


def _move_into_place(archive: Path, tmp: Path, target_dir: Path, entries: list[str],
                     marker: dict, overwrite: bool) -> None:
    marker_name = marker_path(archive, target_dir).name
    if not target_dir.exists() and not target_dir.is_symlink():
        (tmp / marker_name).write_text(json.dumps(marker, indent=1) + "\n")
        os.rename(tmp, target_dir)  # one atomic rename: target_dir appears complete or not at all
        fsync_dir(target_dir.parent)
        return
    if not target_dir.is_dir():
        raise ExtractError(archive, f"{target_dir} exists and is not a folder")
    clashes = [e for e in entries if (target_dir / e).exists() or (target_dir / e).is_symlink()]
    if clashes and not overwrite:
        raise ExtractError(archive, f"{', '.join(str(target_dir / c) for c in clashes)} already "
                                    f"exist(s) without a matching completion marker: remove "
                                    f"them (or pass overwrite=True / --overwrite)")
    trash = Path(tempfile.mkdtemp(prefix=_temp_prefix(target_dir, "old"), dir=target_dir.parent))
    try:
        for c in clashes:
            os.rename(target_dir / c, trash / c)
        for e in entries:
            os.rename(tmp / e, target_dir / e)
        write_json_atomic(target_dir / marker_name, marker, indent=1, sort_keys=False)
    finally:
        shutil.rmtree(trash, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# task level + command line
# --------------------------------------------------------------------------------------------

def fetch_task(task: str, out: str | os.PathLike, base_url: str | None = None,
               archive_dir: str | os.PathLike | None = None,
               checksums: Mapping[str, str] | None = None, retries: int = 5,
               backoff: float = 1.0, timeout: float = 60, progress: bool = True,
               keep_archives: bool = True, overwrite: bool = False,
               allowed_hosts: Sequence[str] = (), stall_window: float = DEFAULT_STALL_WINDOW,
               min_speed: float = DEFAULT_MIN_SPEED,
               attempt_deadline: float = DEFAULT_ATTEMPT_DEADLINE,
               limits: ExtractLimits | None = None) -> list[Path]:
    """Download and extract every archive of ``task`` into ``out``; returns the archive paths.

    Archives go to ``archive_dir`` (default ``out/archives``).  An archive whose extraction
    marker is already in ``out`` is neither downloaded nor extracted again.  An archive that
    turns out to be corrupt (truncated, not an archive) is deleted, so the next run fetches it
    again instead of failing on the same file.
    """
    table = all_archives()
    if task not in table:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(table)}")
    out = Path(out)
    archive_dir = Path(archive_dir) if archive_dir is not None else out / "archives"
    base = base_url if base_url is not None else default_base_url()
    paths = []
    for a in table[task]:
        path = archive_dir / a.filename
        paths.append(path)
        info = read_marker(path, out)
        if info is not None and (not path.exists() or info.get("size") == path.stat().st_size):
            log.info("%s: already extracted into %s, skipping", a.filename, out)
            continue
        url = a.url(base)
        log.info("%s: %s -> %s (about %s)", task, url, path, _human(a.approx_size))
        download(url, path, expected_size=a.size, checksum=resolve_checksum(a, checksums),
                 retries=retries, backoff=backoff, timeout=timeout, progress=progress,
                 expect_archive=True, allowed_hosts=allowed_hosts, stall_window=stall_window,
                 min_speed=min_speed, attempt_deadline=attempt_deadline)
        source = read_source(path)
        if source is not None:
            log.info("%s came from %s (host %s)", a.filename, source.get("final_url"),
                     source.get("host"))
        _extract_or_discard(path, out, overwrite, source, limits)
        if a.extracts_to and not (out / a.extracts_to).exists():
            log.warning("%s did not contain the expected top-level folder %r", a.filename,
                        a.extracts_to)
        if not keep_archives:
            path.unlink()
            source_path(path).unlink(missing_ok=True)
    return paths


def _extract_or_discard(path: Path, out: Path, overwrite: bool, source: dict | None,
                        limits: ExtractLimits | None) -> None:
    """:func:`extract`; a corrupt archive is deleted (the next run downloads it again)."""
    try:
        extract(path, out, overwrite=overwrite, source=source, limits=limits)
    except ExtractError as exc:
        if not exc.corrupt:
            raise  # unsafe or too large: fetching it again would not help
        path.unlink(missing_ok=True)
        source_path(path).unlink(missing_ok=True)
        raise ExtractError(path, f"{exc.reason}; the archive was deleted, so the next run "
                                 f"downloads it again", corrupt=True) from None


def _human(n: int | None) -> str:
    if n is None:
        return "unknown size"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1000
    return f"{n}"  # pragma: no cover


def _parse_checksum_args(values: Sequence[str], task: str) -> dict[str, str]:
    """``--checksum md5:...`` (one-archive task) or ``--checksum NAME=md5:...`` (any task)."""
    archives = all_archives()[task]
    out: dict[str, str] = {}
    for v in values:
        if "=" in v:
            name, _, value = v.partition("=")
            if name not in {a.filename for a in archives}:
                raise ValueError(f"--checksum {v!r}: {name!r} is not an archive of task {task}")
        else:
            if len(archives) != 1:
                raise ValueError(f"task {task} has {len(archives)} archives: give "
                                 f"--checksum <archive name>=<algo>:<hex>")
            name, value = archives[0].filename, v
        parse_checksum(value)
        out[name] = value
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m preprocess.download",
        description="Download (resumable, verified) and safely extract the ATOM3D archives.")
    p.add_argument("--task", choices=sorted(all_archives()), help="which task's archive(s)")
    p.add_argument("--out", help="folder to extract into (e.g. resources/psr)")
    p.add_argument("--base-url", default=None,
                   help=f"Zenodo or mirror base URL; files are fetched from "
                        f"<base-url>/<record>/files/<archive>?download=1 (default: "
                        f"${BASE_URL_ENV} or {DEFAULT_BASE_URL})")
    p.add_argument("--archive-dir", default=None,
                   help="where the archives are kept (default: <out>/archives)")
    p.add_argument("--checksum", action="append", default=[], metavar="[NAME=]ALGO:HEX",
                   help="expected md5/sha256; repeatable; NAME= is needed for tasks with "
                        "several archives")
    p.add_argument("--checksums-json", default=None, metavar="JSON",
                   help="JSON object archive name -> 'md5:<hex>' / 'sha256:<hex>'")
    p.add_argument("--checksums-file", default=None,
                   help=f"JSON/YAML mapping archive name -> 'md5:<hex>' (default: "
                        f"${CHECKSUMS_ENV} if set)")
    p.add_argument("--retries", type=int, default=5)
    p.add_argument("--backoff", type=float, default=1.0, help="first back-off in seconds")
    p.add_argument("--timeout", type=float, default=60.0, help="socket timeout in seconds")
    p.add_argument("--stall-window", type=float, default=DEFAULT_STALL_WINDOW, metavar="SECONDS",
                   help="an attempt receiving less than --min-speed x SECONDS bytes in a window "
                        "of SECONDS is ended and retried (0: no stall check)")
    p.add_argument("--min-speed", type=float, default=DEFAULT_MIN_SPEED, metavar="BYTES_PER_S",
                   help="see --stall-window (default: %(default)g)")
    p.add_argument("--attempt-deadline", type=float, default=DEFAULT_ATTEMPT_DEADLINE,
                   metavar="SECONDS", help="one attempt ends after SECONDS and is resumed with a "
                                           "Range request (0: no deadline)")
    p.add_argument("--allowed-host", action="append", default=[], metavar="HOST",
                   help="download only from these hosts, redirects included (repeatable; "
                        "'*.example.org' matches its subdomains; default: any host)")
    p.add_argument("--allowed-hosts-json", default=None, metavar="JSON",
                   help="the same as a JSON list of hosts (what the workflow passes)")
    p.add_argument("--max-extract-bytes", type=int, default=DEFAULT_MAX_EXTRACT_BYTES,
                   metavar="BYTES", help="refuse an archive whose files add up to more "
                                         "(default: %(default)d)")
    p.add_argument("--max-members", type=int, default=DEFAULT_MAX_MEMBERS, metavar="N",
                   help="refuse an archive with more members (default: %(default)d)")
    p.add_argument("--max-ratio", type=float, default=DEFAULT_MAX_RATIO, metavar="R",
                   help="refuse an archive expanding more than R times its compressed size "
                        "(default: %(default)g)")
    p.add_argument("--remove-archives", action="store_true",
                   help="delete each archive after a successful extraction")
    p.add_argument("--overwrite", action="store_true",
                   help="replace extracted folders that exist without a completion marker")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--list", action="store_true", help="print the archive table and exit")
    p.add_argument("-q", "--quiet", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%Y-%m-%d %H:%M:%S")
    base = args.base_url if args.base_url is not None else default_base_url()
    if args.list:
        for task, archives in all_archives().items():
            for a in archives:
                print(f"{task}\t{a.record}\t{a.filename}\t{_human(a.approx_size)}\t"
                      f"{a.extracts_to or '?'}\t{a.checksum or '-'}\t{a.url(base)}")
        return 0
    if not args.task or not args.out:
        build_parser().error("--task and --out are required (or --list)")
    try:
        limits = ExtractLimits(args.max_extract_bytes, args.max_members, args.max_ratio)
        checksums: dict[str, str] = {}
        cfile = args.checksums_file or os.environ.get(CHECKSUMS_ENV)
        if cfile:
            checksums.update(load_checksums(cfile))
        if args.checksums_json:
            given = json.loads(args.checksums_json)
            if not isinstance(given, dict):
                raise ValueError("--checksums-json must be a JSON object")
            checksums.update(_parse_checksum_args([f"{k}={v}" for k, v in given.items()], args.task))
        checksums.update(_parse_checksum_args(args.checksum, args.task))
        allowed = list(args.allowed_host)
        if args.allowed_hosts_json:
            hosts = json.loads(args.allowed_hosts_json)
            if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
                raise ValueError("--allowed-hosts-json must be a JSON list of host names")
            allowed += hosts
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        fetch_task(args.task, args.out, base_url=base, archive_dir=args.archive_dir,
                   checksums=checksums, retries=args.retries, backoff=args.backoff,
                   timeout=args.timeout, progress=not args.no_progress,
                   keep_archives=not args.remove_archives, overwrite=args.overwrite,
                   allowed_hosts=allowed, stall_window=args.stall_window,
                   min_speed=args.min_speed, attempt_deadline=args.attempt_deadline,
                   limits=limits)
    except (DownloadError, ExtractError) as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
