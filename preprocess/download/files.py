"""What the download layers share: checksums (``"md5:<hex>"``, ``"sha256:<hex>"``), file
digests, and what a file is (an archive, or an HTML error page saved in its place)."""

from __future__ import annotations

import hashlib
import os
import re
import tarfile

CHUNK = 1 << 20  # 1 MiB per read


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
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


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
