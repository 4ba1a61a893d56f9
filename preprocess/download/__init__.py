"""Download and unpack the ATOM3D archives (Zenodo) robustly.

What to fetch and from where is here (:class:`Archive`, :func:`archive_url`); the task
declarations (:mod:`eqgat.tasks`) name each dataset's archives. The layers, usable on their own:

* :mod:`preprocess.download.http` -- :func:`~preprocess.download.http.download`: one URL to one
  file: streamed to ``dest + ".part"``, resumed with HTTP ``Range`` requests, retried with capped
  exponential back-off, verified (size, md5/sha256, and that it is an archive at all) and renamed
  into place atomically.  An existing verified ``dest`` is never fetched again.  A watchdog ends
  stalled or overlong attempts; redirects go only to http(s), never from https to http,
  optionally only to allowed hosts.
* :mod:`preprocess.download.extract` -- :func:`~preprocess.download.extract.extract`: safe tar /
  tar.gz extraction into a temporary sibling folder, moved into place with renames, with a
  per-archive marker file so reruns are skipped; capped in size, members and compression ratio
  (:class:`~preprocess.download.extract.ExtractLimits`).
* :mod:`preprocess.download.cli` -- one dataset's archives downloaded and extracted
  (:func:`~preprocess.download.cli.fetch_dataset`), and the command line the workflow's
  ``download_<dataset>`` rules call::

    python -m preprocess.download --dataset psr --archives-json '[...]' --out resources/psr \
        [--base-url https://zenodo.org/record] [--checksum md5:...] [--retries N]

:mod:`preprocess.download.files` holds what the layers share: checksums and what a file is.
See ``docs/download.md`` for the behaviour in detail.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import urllib.parse
from pathlib import Path
from typing import Sequence

__all__ = ["BASE_URL_ENV", "DEFAULT_BASE_URL", "Archive", "archive_url", "archives_json", "default_base_url", "download_minutes"]

DEFAULT_BASE_URL = "https://zenodo.org/record"
#: environment variable overriding the default base URL (a mirror)
BASE_URL_ENV = "EQGAT_DOWNLOAD_BASE_URL"


@dataclasses.dataclass(frozen=True)
class Archive:
    """One Zenodo archive.

    ``extracts_to`` is the top-level folder the archive unpacks to (relative to the extraction
    target), ``approx_size`` an informative size in bytes (never used for verification),
    ``size`` the exact size in bytes when known (verified), ``md5``/``sha256`` hex digests when
    known (verified).  Unknown values are ``None``: nothing here is guessed.
    """

    dataset: str
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


def archives_json(archives: Sequence[Archive]) -> str:
    """The JSON of ``--archives-json``: a list of the archives' fields."""
    return json.dumps([dataclasses.asdict(a) for a in archives], sort_keys=True)


def download_minutes(archives: Sequence[Archive]) -> int:
    """How long a job downloading and extracting `archives` may run (the SLURM runtime of a
    ``download_<dataset>`` rule): 4 h, plus 8 min per declared GB (about 2 MB/s for download and
    extraction together); an archive of unknown size counts as nothing."""
    size = sum(a.approx_size or 0 for a in archives)
    return 240 + math.ceil(8 * size / 1e9)
