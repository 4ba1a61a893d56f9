"""Atomic file writes: write a temporary file beside the target, fsync it, rename it over the
target, fsync the folder. A crash or an exception never leaves a half-written output."""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def _read_umask() -> int:
    """The process umask (read once: setting it back and forth is not thread-safe)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: Mode of new outputs: what ``open()`` would give them (``mkstemp`` alone makes them 0600,
#: unreadable to the rest of a project group on a shared cluster).
_UMASK = _read_umask()
FILE_MODE = 0o666 & ~_UMASK
#: Mode of new output folders made through a temporary folder (``mkdtemp`` makes them 0700).
DIR_MODE = 0o777 & ~_UMASK


def fsync_dir(directory: str | os.PathLike) -> None:
    """Make a rename inside `directory` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, FILE_MODE)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int = 2, sort_keys: bool = True) -> None:
    write_text_atomic(path, json.dumps(obj, indent=indent, sort_keys=sort_keys) + "\n")


class Terminated(SystemExit):
    """SIGTERM arrived while :func:`terminate_unwinds` was active."""


@contextmanager
def terminate_unwinds() -> Iterator[None]:
    """While active, SIGTERM raises :class:`Terminated` (exit status 143) instead of killing the
    process outright, so that ``atomic_path`` removes its temporary file as it does on Ctrl-C.
    Outside the main thread (where handlers cannot be set) it changes nothing."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame) -> None:
        raise Terminated(128 + signum)

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
