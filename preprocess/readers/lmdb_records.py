"""Read ATOM3D LMDB datasets ourselves (no ``atom3d`` import at read time).

On-disk format, as written by ``atom3d.datasets.make_lmdb_dataset`` (atom3d 0.2.6):

* keys ``b'0'``, ``b'1'`` ... ``str(num_examples - 1).encode()``: one record each, the
  value being ``gzip(serialize(record))``;
* ``b'num_examples'`` (ASCII int), ``b'serialization_format'`` (``json`` by default,
  also ``msgpack``/``pkl``) and ``b'id_to_idx'`` (serialised ``{id: index}``, *not*
  gzip-compressed);
* every record carries ``types = {key: str(type(value))}``; with ``json`` a DataFrame is
  stored as ``df.to_json(orient='split', double_precision=6)`` i.e. a dict with
  ``columns``, ``index`` and ``data``, and restored with ``pd.DataFrame(**value)`` when its
  ``types`` entry is ``str(pd.DataFrame)``. We do the same, and also restore pandas
  Series (stored as ``{name, index, data}``) which atom3d itself leaves as dicts.

The header is checked whenever an LMDB is read: ``num_examples`` must be a whole number
matching the record keys (``n - 1`` present, ``n`` absent) and ``serialization_format`` json or
msgpack; otherwise ``RecordError`` names the file and the problem (a wrong header would
otherwise read nothing, or count the missing records as undecodable).

Like atom3d's ``LMDBDataset`` we fill in ``id`` (``str(index)``) and ``file_path`` (the LMDB
path) when a record lacks them; in addition every record gets ``_lmdb`` (the LMDB path)
and ``_index`` so that errors can name their source.

We open the environment read-only with ``lock=False`` and many readers (atom3d uses
``max_readers=1``, which breaks with several reader threads/processes). Environments are
cached per process (LMDB must not be opened twice in one process); the cache is keyed by
the process id so forked workers reopen.
"""
from __future__ import annotations

import gzip
import json
import os
import re
import zlib
from pathlib import Path
from typing import Iterator

import pandas as pd

from . import RecordError
from .report import UNDECODABLE, SkipReport

try:  # lmdb is a runtime dependency of the ATOM3D readers only
    import lmdb
except ImportError:  # pragma: no cover
    lmdb = None

MAX_READERS = 256
_ENVS: dict[tuple[int, str], lmdb.Environment] = {}
_DATAFRAME_TYPE = str(pd.DataFrame)
_SERIES_TYPE = str(pd.Series)


def open_env(path: str | os.PathLike) -> lmdb.Environment:
    """Open (or reuse) a read-only LMDB environment for an ATOM3D dataset directory."""
    if lmdb is None:  # pragma: no cover
        raise ImportError("the 'lmdb' package is required: pip install lmdb")
    key = (os.getpid(), str(Path(path).resolve()))
    env = _ENVS.get(key)
    if env is None:
        p = Path(path)
        if not p.is_dir():
            raise FileNotFoundError(f"ATOM3D LMDB directory not found: {p}")
        env = lmdb.open(
            str(p), readonly=True, lock=False, readahead=False, meminit=False,
            max_readers=MAX_READERS, subdir=True,
        )
        _ENVS[key] = env
    return env


def close_all() -> None:
    """Close the environments this process opened."""
    pid = os.getpid()
    for key in [k for k in _ENVS if k[0] == pid]:
        _ENVS.pop(key).close()
    for key in list(_ENVS):  # inherited from a parent process: just forget them
        _ENVS.pop(key)


#: the keys atom3d's writer stores beside the records
_HEADER_KEYS = (b"num_examples", b"serialization_format", b"id_to_idx")
#: serialisation formats we decode ('pkl' would run code from the data file)
_FORMATS = ("json", "msgpack")


def _header(txn, path) -> tuple[int, str]:
    """``(num_examples, serialization_format)``, checked; RecordError naming ``path`` if wrong."""
    raw = txn.get(b"num_examples")
    if raw is None:
        raise RecordError(f"{path}: not an ATOM3D LMDB (no 'num_examples' key)", path=str(path))
    n = _parse_count(raw, path)
    fmt = _parse_format(txn.get(b"serialization_format"), path)
    _check_count(txn, path, n)
    return n, fmt


def _parse_count(raw: bytes, path) -> int:
    text = raw.decode("ascii", errors="replace").strip()
    if not re.fullmatch(r"[0-9]+", text):
        raise RecordError(f"{path}: bad header: num_examples is {raw!r}, not a whole number >= 0",
                          path=str(path))
    return int(text)


def _parse_format(raw: bytes | None, path) -> str:
    if raw is None:
        return "json"  # atom3d's default
    fmt = raw.decode("ascii", errors="replace").strip()
    if fmt not in _FORMATS:
        raise RecordError(f"{path}: bad header: serialization_format {raw!r} is not one of "
                          f"{', '.join(_FORMATS)}", path=str(path))
    return fmt


def _check_count(txn, path, n: int) -> None:
    """The records are keys ``0 .. n-1``: the last must exist and the next must not."""
    last_missing = n > 0 and txn.get(str(n - 1).encode()) is None
    next_present = txn.get(str(n).encode()) is not None
    if last_missing or next_present:
        held = _record_entries(txn, path)
        raise RecordError(f"{path}: bad header: num_examples is {n} but the file holds {held} "
                          f"record entries (a truncated file or a wrong header)", path=str(path))


def _record_entries(txn, path) -> int:
    """Entries of the LMDB that are not header keys (its records, readable or not)."""
    entries = open_env(path).stat()["entries"]
    return entries - sum(txn.get(key) is not None for key in _HEADER_KEYS)


def num_records(path: str | os.PathLike) -> int:
    """Number of records (``num_examples``) of an ATOM3D LMDB."""
    with open_env(path).begin(write=False) as txn:
        return _header(txn, path)[0]


def serialization_format(path: str | os.PathLike) -> str:
    with open_env(path).begin(write=False) as txn:
        return _header(txn, path)[1]


def _deserialize(buf: bytes, fmt: str):
    if fmt == "json":
        return json.loads(buf)
    if fmt == "msgpack":
        import msgpack

        return msgpack.unpackb(buf)
    # 'pkl' would execute arbitrary code from the data file: refuse it.
    raise ValueError(f"unsupported serialization format {fmt!r}")


def _restore(item: dict) -> dict:
    types = item.get("types")
    if not isinstance(types, dict):
        return item  # atom3d warns and keeps basic types; so do we
    for key, tname in types.items():
        val = item.get(key)
        if not isinstance(val, dict):
            continue
        if tname == _DATAFRAME_TYPE or (tname.endswith(".DataFrame'>") and "columns" in val):
            item[key] = pd.DataFrame(**val)
        elif (tname == _SERIES_TYPE or tname.endswith(".Series'>")) and "data" in val:
            item[key] = pd.Series(val.get("data"), index=val.get("index"), name=val.get("name"))
    return item


def decode_record(raw: bytes | None, fmt: str = "json") -> dict:
    """Decode one LMDB value exactly as atom3d does (gzip, deserialize, restore types).

    Raises ``ValueError`` on bad input.
    """
    if raw is None:
        raise ValueError("no value stored under this key")
    try:
        buf = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"not gzip-compressed: {exc}") from exc
    item = _deserialize(buf, fmt)
    if not isinstance(item, dict):
        raise ValueError(f"record is a {type(item).__name__}, expected a dict")
    return _restore(item)


def _decode_at(txn, path, index: int, fmt: str) -> dict:
    try:
        item = decode_record(txn.get(str(index).encode()), fmt)
    except Exception as exc:  # any decoding failure becomes a RecordError
        raise RecordError(
            f"ATOM3D LMDB {path} record {index}: cannot decode ({type(exc).__name__}: {exc})",
            path=str(path), index=index, reason=UNDECODABLE,
        ) from exc
    item.setdefault("id", str(index))
    item.setdefault("file_path", str(path))
    item["_lmdb"] = str(path)
    item["_index"] = index
    return item


def read_record(path: str | os.PathLike, index: int) -> dict:
    """One decoded record; ``RecordError`` if it will not decode or is out of range."""
    with open_env(path).begin(write=False) as txn:
        n, fmt = _header(txn, path)
        if not 0 <= index < n:
            raise IndexError(f"{path}: index {index} out of range [0, {n})")
        return _decode_at(txn, path, index, fmt)


def iter_records(
    path: str | os.PathLike,
    start: int = 0,
    stop: int | None = None,
    *,
    report: SkipReport | None = None,
    strict: bool = False,
) -> Iterator[tuple[int, dict]]:
    """Stream ``(index, record)`` for ``start <= index < stop`` (clamped to the dataset).

    Disjoint ``[start, stop)`` slices can be read by parallel tasks. A record that will
    not decode raises ``RecordError`` (naming the LMDB path and index) when ``strict`` is
    true or no ``report`` is given; otherwise it is counted in ``report`` under
    ``'undecodable'`` (example id ``'<path>#<index>'``) and skipped.
    """
    env = open_env(path)
    with env.begin(write=False, buffers=False) as txn:
        n, fmt = _header(txn, path)
        stop = n if stop is None else min(int(stop), n)
        for index in range(max(0, int(start)), stop):
            try:
                item = _decode_at(txn, path, index, fmt)
            except RecordError:
                if strict or report is None:
                    raise
                report.add(UNDECODABLE, f"{path}#{index}")
                continue
            yield index, item


def id_to_index(path: str | os.PathLike) -> dict[str, int]:
    """The ``id_to_idx`` table atom3d stores beside the records."""
    with open_env(path).begin(write=False) as txn:
        _, fmt = _header(txn, path)
        raw = txn.get(b"id_to_idx")
        return {} if raw is None else dict(_deserialize(raw, fmt))
