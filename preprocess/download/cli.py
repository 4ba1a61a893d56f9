"""One dataset's archives, downloaded and extracted, and the command line of the workflow's
``download_<dataset>`` rules: ``python -m preprocess.download --dataset NAME ...``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Mapping, Sequence

from . import BASE_URL_ENV, DEFAULT_BASE_URL, Archive, default_base_url
from .extract import (DEFAULT_MAX_EXTRACT_BYTES, DEFAULT_MAX_MEMBERS, DEFAULT_MAX_RATIO, ExtractError, ExtractLimits,
                      extract, read_marker)
from .files import parse_checksum
from .http import (DEFAULT_ATTEMPT_DEADLINE, DEFAULT_MIN_SPEED, DEFAULT_STALL_WINDOW, DownloadError, download,
                   read_source, source_path)

log = logging.getLogger("preprocess.download")

#: environment variable naming a JSON/YAML checksum file (``{archive file name: "md5:..."}``)
CHECKSUMS_ENV = "EQGAT_DOWNLOAD_CHECKSUMS"


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


def fetch_dataset(dataset: str, archives: Sequence[Archive], out: str | os.PathLike, base_url: str | None = None,
                  archive_dir: str | os.PathLike | None = None,
                  checksums: Mapping[str, str] | None = None, retries: int = 5,
                  backoff: float = 1.0, timeout: float = 60, progress: bool = True,
                  keep_archives: bool = True, overwrite: bool = False,
                  allowed_hosts: Sequence[str] = (), stall_window: float = DEFAULT_STALL_WINDOW,
                  min_speed: float = DEFAULT_MIN_SPEED,
                  attempt_deadline: float = DEFAULT_ATTEMPT_DEADLINE,
                  limits: ExtractLimits | None = None) -> list[Path]:
    """Download and extract the `archives` of `dataset` into ``out``; returns the archive paths.

    Archives go to ``archive_dir`` (default ``out/archives``).  An archive whose extraction
    marker is already in ``out`` is neither downloaded nor extracted again.  An archive that
    turns out to be corrupt (truncated, not an archive) is deleted, so the next run fetches it
    again instead of failing on the same file.
    """
    out = Path(out)
    archive_dir = Path(archive_dir) if archive_dir is not None else out / "archives"
    base = base_url if base_url is not None else default_base_url()
    paths = []
    for a in archives:
        path = archive_dir / a.filename
        paths.append(path)
        info = read_marker(path, out)
        if info is not None and (not path.exists() or info.get("size") == path.stat().st_size):
            log.info("%s: already extracted into %s, skipping", a.filename, out)
            continue
        url = a.url(base)
        log.info("%s: %s -> %s (about %s)", dataset, url, path, _human(a.approx_size))
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


def _parse_checksum_args(values: Sequence[str], dataset: str, archives: Sequence[Archive]) -> dict[str, str]:
    """``--checksum md5:...`` (one-archive dataset) or ``--checksum NAME=md5:...`` (any dataset)."""
    out: dict[str, str] = {}
    for v in values:
        if "=" in v:
            name, _, value = v.partition("=")
            if name not in {a.filename for a in archives}:
                raise ValueError(f"--checksum {v!r}: {name!r} is not an archive of dataset {dataset}")
        else:
            if len(archives) != 1:
                raise ValueError(f"dataset {dataset} has {len(archives)} archives: give "
                                 f"--checksum <archive name>=<algo>:<hex>")
            name, value = archives[0].filename, v
        parse_checksum(value)
        out[name] = value
    return out


def _archives_from_json(text: str) -> tuple[Archive, ...]:
    given = json.loads(text)
    if not isinstance(given, list) or not all(isinstance(a, dict) for a in given):
        raise ValueError("--archives-json must be a JSON list of archives (objects)")
    try:
        return tuple(Archive(**a) for a in given)
    except TypeError as exc:
        raise ValueError(f"--archives-json: {exc}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m preprocess.download",
        description="Download (resumable, verified) and safely extract the ATOM3D archives.")
    p.add_argument("--dataset", help="which dataset's archive(s) (e.g. psr, lba30)")
    p.add_argument("--archives-json", default=None, metavar="JSON",
                   help="the dataset's archives as its task declares them (what the workflow passes)")
    p.add_argument("--out", help="folder to extract into (e.g. resources/psr)")
    p.add_argument("--base-url", default=None,
                   help=f"Zenodo or mirror base URL; files are fetched from "
                        f"<base-url>/<record>/files/<archive>?download=1 (default: "
                        f"${BASE_URL_ENV} or {DEFAULT_BASE_URL})")
    p.add_argument("--archive-dir", default=None,
                   help="where the archives are kept (default: <out>/archives)")
    p.add_argument("--checksum", action="append", default=[], metavar="[NAME=]ALGO:HEX",
                   help="expected md5/sha256; repeatable; NAME= is needed for datasets with "
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


def main(argv: Sequence[str] | None = None,
         datasets: Mapping[str, Sequence[Archive]] | None = None) -> int:
    """The command line; `datasets` (dataset name -> its archives, as the task declarations give
    them) adds to what ``--archives-json`` gives for ``--dataset``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%Y-%m-%d %H:%M:%S")
    base = args.base_url if args.base_url is not None else default_base_url()
    table = {name: tuple(archives) for name, archives in (datasets or {}).items()}
    try:
        if args.archives_json:
            if not args.dataset:
                raise ValueError("--archives-json needs --dataset, the name of the dataset it describes")
            table[args.dataset] = _archives_from_json(args.archives_json)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.list:
        for dataset, archives in table.items():
            for a in archives:
                print(f"{dataset}\t{a.record}\t{a.filename}\t{_human(a.approx_size)}\t"
                      f"{a.extracts_to or '?'}\t{a.checksum or '-'}\t{a.url(base)}")
        return 0
    if not args.dataset or not args.out:
        parser.error("--dataset and --out are required (or --list)")
    if args.dataset not in table:
        parser.error(f"no archives known for dataset {args.dataset!r}: give them with --archives-json"
                     + (f" (known: {', '.join(sorted(table))})" if table else ""))
    archives = table[args.dataset]
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
            checksums.update(_parse_checksum_args([f"{k}={v}" for k, v in given.items()], args.dataset, archives))
        checksums.update(_parse_checksum_args(args.checksum, args.dataset, archives))
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
        fetch_dataset(args.dataset, archives, args.out, base_url=base, archive_dir=args.archive_dir,
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
