"""One URL to one file, robustly: resumed, retried, watched for stalls, verified, renamed into
place atomically; redirects checked (docs/download.md)."""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import json
import logging
import math
import os
import re
import shutil
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, Sequence

from ..atomic import fsync_dir, write_json_atomic
from .files import CHUNK, describe_file, file_digest, parse_checksum

log = logging.getLogger("preprocess.download")

#: an attempt is stalled when less than DEFAULT_MIN_SPEED * DEFAULT_STALL_WINDOW bytes arrive in
#: a window of DEFAULT_STALL_WINDOW seconds (docs/download.md: "Slow and trickling servers")
DEFAULT_STALL_WINDOW = 60.0
DEFAULT_MIN_SPEED = 10 * 1024.0  # bytes per second
#: one attempt ends after this many seconds and is resumed with a Range request
DEFAULT_ATTEMPT_DEADLINE = 3600.0
_USER_AGENT = "eqgat-workflow-download/1"


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
                block = f.read(min(CHUNK, size - self.nbytes))
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
            want = CHUNK if cap is None else min(CHUNK, cap + 1 - received)
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
