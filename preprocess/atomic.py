"""Atomic file writes: write a temporary file beside the target, fsync it, rename it over the
target, fsync the folder. A crash or an exception never leaves a half-written output."""
from __future__ import annotations

import errno
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator


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


#: errors that mean the device (or the user's quota) is full
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


class DiskFullError(OSError):
    """No space left on the device (or quota) for an output; the message names the folder."""


def disk_full(path: str | os.PathLike, needed: int | None = None) -> DiskFullError:
    """The error for an output that did not fit: names the file and its folder, says what to do."""
    path = Path(path)
    need = f" ({needed} bytes needed)" if needed is not None else ""
    return DiskFullError(errno.ENOSPC, f"disk full: no space left in {path.parent} for {path.name}{need}; "
                                       "free some space and rerun (nothing partial was kept)", str(path))


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in _FULL


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path`, on error it is removed
    (a full disk is a :class:`DiskFullError` naming the folder)."""
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
    except BaseException as exc:
        tmp_path.unlink(missing_ok=True)
        if is_disk_full(exc) and not isinstance(exc, DiskFullError):
            raise disk_full(path) from exc
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes | memoryview) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


#: free space an HDF5 output leaves on its device (for the manifest and the other writers there)
FREE_SPACE_MARGIN = 1 << 20


def atomic_write_hdf5(path: str | os.PathLike, fill: Callable[[Any], None], margin: int = FREE_SPACE_MARGIN) -> None:
    """Make an HDF5 file in memory (`fill` writes into the open ``h5py.File``), then write its
    bytes atomically with plain file I/O, first checking that they fit with `margin` bytes to
    spare. HDF5 writing to a full disk itself crashes (segmentation fault); this is a
    :class:`DiskFullError` naming the folder. Costs the file's size in memory."""
    import io
    import shutil

    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = io.BytesIO()
    with h5py.File(image, "w", track_order=False) as f:
        fill(f)
    data = image.getbuffer()
    needed = len(data) + margin
    if shutil.disk_usage(path.parent).free < needed:
        raise disk_full(path, needed)
    atomic_write_bytes(path, data)


def remove_stale_temps(folder: str | os.PathLike, name: str = "*") -> list[Path]:
    """Delete the temp files that :func:`atomic_path` left in `folder` for outputs matching the
    glob `name` when its process was killed (SIGKILL, a crash); returns what was deleted. Call it
    only where no other process writes those outputs at the same time."""
    folder = Path(folder)
    removed = sorted(folder.glob(f".{name}.*.tmp")) if folder.is_dir() else []
    for tmp in removed:
        tmp.unlink(missing_ok=True)
    return removed


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
