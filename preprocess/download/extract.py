"""Safe extraction of one tar / tar.gz archive: into a temporary sibling folder, moved into place
with renames, a marker per archive so reruns are skipped, capped in size, members and
compression ratio (docs/download.md)."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import logging
import lzma
import os
import posixpath
import re
import shutil
import socket
import tarfile
import tempfile
import time
import zlib
from pathlib import Path

from ..atomic import DIR_MODE, fsync_dir, write_json_atomic
from .files import CHUNK, describe_file, file_digest

log = logging.getLogger("preprocess.download")


class ExtractError(RuntimeError):
    """An archive could not be extracted safely (corrupt, truncated, or unsafe member).

    ``corrupt`` is true when the file itself is bad (not an archive, truncated, fails its CRC):
    :func:`preprocess.download.cli.fetch_dataset` then deletes it so that the next run downloads it again.
    """

    def __init__(self, archive: str | os.PathLike, reason: str, corrupt: bool = False):
        self.archive = str(archive)
        self.reason = reason
        self.corrupt = corrupt
        super().__init__(f"cannot extract {archive}: {reason}")


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
        data = self.stream.read(CHUNK if size < 0 else size)  # never the whole stream at once
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
        for _block in iter(lambda: self.read(CHUNK), b""):
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
            shutil.copyfileobj(src, out, CHUNK)
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
            for _ in iter(lambda: stream.read(CHUNK), b""):
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
