"""Keep freed tensor memory in the process on Linux with glibc.

By default glibc serves every allocation above its mmap threshold (128 KiB, rising to at most
32 MiB) with a fresh ``mmap`` and returns it to the kernel on ``free``, and trims the heap top
above 128 KiB. A training step allocates and frees the same large tensors every step, so the
kernel zeroes and page-faults them in again each time: on a 2-core machine half of the CPU
time of a PSR-sized step is system time (docs/performance.md). :func:`tune` turns both off
from inside the process (``mallopt``: ``M_MMAP_MAX`` 0, so no allocation is ``mmap``-ed,
and ``M_TRIM_THRESHOLD`` 2 GiB, the most ``mallopt`` takes, so the heap is not trimmed), which
is what the environment variables ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` do
when set before the process starts; ``mallopt`` cannot raise the mmap threshold above 32 MiB,
hence ``M_MMAP_MAX``. Freed memory is reused by the next step.

What made the reused heap grow: glibc keeps small freed chunks in caches that never merge them
with their free neighbours, the per-thread cache (tcache) and the fastbins (up to 128 bytes).
Such a chunk sits inside the freed space of a large tensor; the next large tensor of that size
no longer fits there, and the heap grows step after step (a repeated PSR-sized batch: 1.3-1.8x
what the step needs with both caches on, up to 1.19x with the tcache alone off).
:func:`start_tuned` turns both off (``GLIBC_TUNABLES``, :data:`SMALL_CACHES_OFF`), which glibc
reads only when a process starts, so the command re-executes itself once, before anything else
runs. Then the resident size settles after the first steps, at the tuned speed, its peak about
glibc's default peak (1,946-2,058 MiB against 1,914-2,126 on that batch), which maps every
large tensor afresh and so is what the step needs (docs/performance.md). Activation
checkpointing keeps its saving under it. :func:`release` still gives the free memory back after
every training epoch.

Set at the start of ``python -m eqgat train / evaluate / predict`` and ``python -m eqgat.launch``
(whose ranks inherit the environment); data loader workers are
forked from the configured process and inherit it (they call :func:`tune` too, for other start
methods). Elsewhere (macOS, musl, Windows) nothing is changed. ``EQGAT_MALLOC=default``
leaves glibc's defaults in place (for measurements).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform
import sys

__all__ = ["M_MMAP_MAX", "M_TRIM_THRESHOLD", "SMALL_CACHES_OFF", "TRIM_THRESHOLD", "TUNED_COMMANDS", "release",
           "start_tuned", "tune"]

log = logging.getLogger(__name__)

#: glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
#: keep up to this much free memory at the heap's top (mallopt takes an int)
TRIM_THRESHOLD = 2**31 - 1
#: the environment variable that turns the tuning off
ENV = "EQGAT_MALLOC"
#: the glibc tunables (read at process start) that turn off the caches of small freed chunks, which
#: never merge them with their neighbours: the per-thread cache and the fastbins
SMALL_CACHES_OFF = ("glibc.malloc.tcache_count=0", "glibc.malloc.mxfast=0")
#: the ``python -m eqgat`` commands that run with the tuned allocator
TUNED_COMMANDS = ("train", "evaluate", "predict")

_done: str | None = None
#: ``GLIBC_TUNABLES`` as this process started (what glibc read), before :func:`start_tuned` extends it
#: for the process it re-executes (``/proc/self/environ`` is no witness: glibc cuts it at the first ``:``)
_TUNABLES_AT_START = os.environ.get("GLIBC_TUNABLES", "")


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") else None
    except OSError:
        return None


def tune() -> str:
    """Configure glibc's allocator once per process; returns what was done (for the log)."""
    global _done
    if _done is not None and _done.endswith(f"pid {os.getpid()}"):
        return _done
    libc = _glibc()
    if os.environ.get(ENV, "").lower() == "default":
        what = f"{ENV}=default: glibc's defaults kept"
    elif libc is None:
        what = "not glibc: allocator unchanged"
    else:
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        ok = bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
        what = (f"glibc: mmap off, trim threshold 2 GiB, {_small_caches(_TUNABLES_AT_START)}" if ok
                else "glibc refused mallopt: allocator unchanged")
    _done = f"{what}; pid {os.getpid()}"
    log.debug("allocator: %s", _done)
    return _done


def _small_caches(tunables: str) -> str:
    """Which of glibc's small-chunk caches the tunables turn off, as the log says it."""
    start = set(tunables.split(":"))
    state = ", ".join(f"{name} {'off' if setting in start else 'on'}"
                      for name, setting in zip(("tcache", "fastbins"), SMALL_CACHES_OFF))
    return state if all(setting in start for setting in SMALL_CACHES_OFF) else f"{state} (memory may creep)"


def start_tuned() -> None:
    """Re-execute this command once with glibc's small-chunk caches off (see the module docstring).

    Call it first thing in an entry point: the process is replaced (same PID, arguments, open
    files) and starts again with ``GLIBC_TUNABLES`` extended by those of
    :data:`SMALL_CACHES_OFF` it does not set yet. Nothing happens under
    ``EQGAT_MALLOC=default``, off glibc, or when ``GLIBC_TUNABLES`` already sets both (a
    user's own setting wins, and the re-executed process stops here)."""
    if os.environ.get(ENV, "").lower() == "default" or _glibc() is None:
        return
    current = os.environ.get("GLIBC_TUNABLES", "")
    named = {item.split("=")[0] for item in current.split(":")}
    missing = [setting for setting in SMALL_CACHES_OFF if setting.split("=")[0] not in named]
    if not missing:
        return
    os.environ["GLIBC_TUNABLES"] = ":".join([current, *missing] if current else missing)
    argv = [sys.executable, *sys.orig_argv[1:]]
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, argv)
    except OSError as exc:  # the command still runs, with the caches on
        log.warning("allocator: could not restart with %s (%s); memory may creep", ":".join(missing), exc)


def _tuned() -> bool:
    """Whether :func:`tune` changed glibc's settings in this process."""
    return _done is not None and _done.startswith("glibc: mmap off")


def release() -> bool:
    """Give the free memory inside the heap back to the kernel (``malloc_trim(0)``), once per
    epoch: with the tuning, a large freed block can be split for a small allocation and the
    next large tensor then needs fresh memory, so the resident size can creep within an epoch;
    this bounds it across epochs. Returns whether memory was released (glibc, tuned)."""
    if not _tuned():
        return False
    libc = _glibc()
    return libc is not None and bool(libc.malloc_trim(0))


def worker_init(worker_id: int) -> None:
    """``DataLoader(worker_init_fn=...)``: the same settings in a loader worker."""
    tune()
