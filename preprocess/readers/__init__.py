"""Readers turning ATOM3D LMDB records into task samples, and what they share.

Every reader module (``lba``, ``ranking`` for PSR and RSR, ``res``, ``ppi``) exposes
``samples(record, index, strict=False, report=None, **options) -> Iterator[Sample]``; the task
declarations in :mod:`eqgat.tasks` name them. ``read_samples(reader, lmdb_path, start, stop)``
chains ``lmdb_records.iter_records`` with a reader for one slice of an LMDB.

Bad input (NaN coordinates, empty atom table, missing label, malformed fields, records
that will not decode) is skipped and counted in a ``report.SkipReport``; with
``strict=True`` it raises ``RecordError`` naming the LMDB path, index and record id.
Unknown elements are not errors: they map to 'other' and are counted as a note.
See ``docs/atom3d.md`` for the per-task conventions.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator, Union

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

from preprocess.elements import element_index, is_hydrogen

from .report import EMPTY_ATOMS, MALFORMED, MISSING_FIELD, MISSING_LABEL, NAN_COORDINATES, SkipReport

COORD_COLUMNS = ["x", "y", "z"]

FieldValue = Union[int, str, np.ndarray]


@dataclass
class Sample:
    """One graph's worth of atoms.

    ``pos`` float32 [N, 3]; ``z`` int8 [N] (``preprocess.elements`` vocabulary);
    ``y`` float32 [T] for regression, int for classes (RES residue, 0/1), ``None`` where the
    shards hold no label per graph (PPI complexes: the pairs drawn from them are labelled);
    ``fields`` the task's declared per-graph columns (e.g. ``center_index``, the read-out atom;
    ``target``, the structure a decoy belongs to); ``parts`` the atom counts of consecutive
    parts that get edges only among themselves (``None``: one part).
    """

    id: str
    pos: np.ndarray
    z: np.ndarray
    y: Union[np.ndarray, int, None]
    fields: dict[str, FieldValue] = field(default_factory=dict)
    parts: Union[tuple[int, ...], None] = None

    @property
    def num_atoms(self) -> int:
        return int(self.z.shape[0])


class RecordError(Exception):
    """A record (or the LMDB) could not be read; names the LMDB path, index and id."""

    def __init__(self, message: str, *, path: str | None = None, index: int | None = None,
                 record_id: str | None = None, reason: str | None = None):
        super().__init__(message)
        self.path = path
        self.index = index
        self.record_id = record_id
        self.reason = reason


class SkipSample(Exception):
    """Internal: the current record/sample is skipped for ``reason``.

    ``bad`` marks bad input (raises under ``strict``); filter rules (RES non-canonical
    residue, C-alpha not unique) have ``bad=False`` and are always just counted.
    """

    def __init__(self, reason: str, detail: str = "", bad: bool = True):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.bad = bad


# ---------------------------------------------------------------------------------------
# helpers shared by the task readers
# ---------------------------------------------------------------------------------------
def record_id(record, index: int) -> str:
    rid = record.get("id") if isinstance(record, dict) else None
    return str(index) if rid is None else str(rid)


def record_source(record) -> str:
    if isinstance(record, dict):
        return str(record.get("_lmdb") or record.get("file_path") or "<memory>")
    return "<memory>"


def handle_skip(exc: SkipSample, record, index: int, strict: bool,
                report: SkipReport | None, what: str | None = None) -> None:
    """Count ``exc`` in ``report`` or, under ``strict`` for bad input, raise RecordError."""
    rid = record_id(record, index)
    label = rid if what is None else f"{rid} [{what}]"
    if strict and exc.bad:
        raise RecordError(
            f"ATOM3D LMDB {record_source(record)} record {index} (id {rid!r})"
            + (f" {what}" if what else "") + f": {exc}",
            path=record_source(record), index=index, record_id=rid, reason=exc.reason,
        ) from exc
    if report is not None:
        report.add(exc.reason, label)


def guard(record, index: int, strict: bool, report: SkipReport | None, fn, what=None):
    """Run ``fn()``; map SkipSample and data errors to skips / RecordError. Returns
    ``fn()``'s value or ``None`` when skipped."""
    try:
        return fn()
    except SkipSample as exc:
        handle_skip(exc, record, index, strict, report, what)
    except (KeyError, ValueError, TypeError, AttributeError, IndexError) as exc:
        handle_skip(SkipSample(MALFORMED, f"{type(exc).__name__}: {exc}"),
                    record, index, strict, report, what)
    return None


def require(record, key: str):
    if not isinstance(record, dict):
        raise SkipSample(MALFORMED, f"record is a {type(record).__name__}, expected dict")
    if key not in record or record[key] is None:
        raise SkipSample(MISSING_FIELD, f"no {key!r}")
    return record[key]


def atom_table(record, key: str) -> pd.DataFrame:
    """The atom DataFrame ``record[key]``, validated (x, y, z, element columns)."""
    import pandas as pd  # here: the shard builder's workers import this package before any reader runs

    df = require(record, key)
    if isinstance(df, dict) and "columns" in df and "data" in df:
        df = pd.DataFrame(**df)  # record without 'types' (atom3d leaves a dict)
    if not isinstance(df, pd.DataFrame):
        raise SkipSample(MALFORMED, f"{key!r} is a {type(df).__name__}, not a DataFrame")
    missing = [c for c in COORD_COLUMNS + ["element"] if c not in df.columns]
    if missing:
        raise SkipSample(MALFORMED, f"{key!r} lacks columns {missing}")
    return df


def drop_hydrogens(df: pd.DataFrame) -> pd.DataFrame:
    """Rows whose element is not H/D, index reset to 0..n-1 (order kept)."""
    if len(df) == 0:
        return df.reset_index(drop=True)
    return df[~is_hydrogen(df["element"].to_numpy())].reset_index(drop=True)


def coordinates(df: pd.DataFrame, what: str = "atoms") -> np.ndarray:
    """float32 [N, 3]; SkipSample on empty tables or non-finite coordinates."""
    if len(df) == 0:
        raise SkipSample(EMPTY_ATOMS, f"no atoms in {what}")
    try:
        pos = df[COORD_COLUMNS].to_numpy(dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise SkipSample(MALFORMED, f"non-numeric coordinates in {what}: {exc}") from exc
    if not np.isfinite(pos).all():
        bad = int((~np.isfinite(pos)).any(axis=1).sum())
        raise SkipSample(NAN_COORDINATES, f"{bad} atom(s) with non-finite coordinates in {what}")
    return pos.astype(np.float32)


def elements(df: pd.DataFrame, report: SkipReport | None) -> tuple[np.ndarray, int]:
    """int8 element indices and the number of atoms mapped to 'other' (noted in report)."""
    unknown: dict[str, int] = {}
    z = element_index(df["element"].to_numpy(), unknown=unknown)
    if report is not None and unknown:
        report.note_unknown_elements(unknown)
    return z, sum(unknown.values())


def _as_float(value, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise SkipSample(MISSING_LABEL, f"{what} is not a number: {value!r}") from None
    if not math.isfinite(v):
        raise SkipSample(MISSING_LABEL, f"{what} is {v}")
    return v


def score(record, key: str, container: str = "scores") -> float:
    """Finite float ``record[container][key]``; SkipSample(MISSING_LABEL) otherwise.

    Accepts a dict, a pandas Series, a one-row DataFrame, or a Series as atom3d's JSON
    serialisation leaves it (``{'name', 'index', 'data'}``).
    """
    import pandas as pd

    if not isinstance(record, dict) or record.get(container) is None:
        raise SkipSample(MISSING_LABEL, f"no {container!r}")
    s = record[container]
    what = f"{container}[{key!r}]"
    if isinstance(s, dict) and key not in s and "index" in s and "data" in s:
        s = dict(zip(s["index"], s["data"]))
    if isinstance(s, dict):
        if key not in s or s[key] is None:
            raise SkipSample(MISSING_LABEL, f"no {what}")
        return _as_float(s[key], what)
    if isinstance(s, pd.Series):
        if key not in s.index:
            raise SkipSample(MISSING_LABEL, f"no {what}")
        return _as_float(s[key], what)
    if isinstance(s, pd.DataFrame):
        if key in s.columns and len(s) == 1:
            return _as_float(s[key].iloc[0], what)
        if key in s.index and s.shape[1] == 1:
            return _as_float(s.loc[key].iloc[0], what)
        raise SkipSample(MISSING_LABEL, f"no {what}")
    raise SkipSample(MALFORMED, f"{container!r} is a {type(s).__name__}")


def read_samples(reader, path, start: int = 0, stop: int | None = None, *,
                 strict: bool = False, report: SkipReport | None = None,
                 **options) -> Iterator[Sample]:
    """Samples of records ``[start, stop)`` of one ATOM3D LMDB through ``reader`` (a reader
    module's ``samples`` function)."""
    from .lmdb_records import iter_records

    if report is None and not strict:
        report = SkipReport()
    for index, record in iter_records(path, start, stop, report=report, strict=strict):
        yield from reader(record, index, strict=strict, report=report, **options)


__all__ = ["RecordError", "Sample", "SkipReport", "SkipSample", "read_samples"]
