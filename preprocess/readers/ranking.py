"""PSR and RSR: structure ranking by regression of a quality score.

* graph: ``record['atoms']`` with hydrogens removed, atoms in table order;
* PSR label ``scores['gdt_ts']`` (higher is better);
  RSR label ``scores['rms']`` (RMSD in Angstrom, lower is better, regressed as-is);
* ``id`` = the record's id, the string of a ``(target, decoy)`` tuple, e.g.
  ``"('T0759', 'server01_TS1')"``; fields ``target`` and ``decoy`` are read from it by
  ``parse_id`` (plain strings: ``"target/decoy"`` splits at the first '/', anything else is
  its own target with an empty decoy). The per-target metrics group by the ``target`` field.

Ranking metrics (per-target mean and global Spearman) are computed between predictions
and labels as they are, with no sign flip: a model predicting RMSD (or GDT_TS) exactly
gets Spearman +1 for RSR (PSR) alike.
"""
from __future__ import annotations

import ast
import re
from typing import Iterator

import numpy as np

from . import Sample, atom_table, coordinates, drop_hydrogens, elements, guard, record_id, score
from .report import SkipReport

_TUPLE_RE = re.compile(r"""^[\(\[]\s*(['"]?)(.*?)\1\s*(?:,\s*(['"]?)(.*?)\3\s*)?,?\s*[\)\]]$""", re.S)


def parse_id(rid) -> tuple[str, str]:
    """``(target, decoy)`` from a PSR/RSR record id.

    Handles real tuples/lists, their ``str()`` (``"('T0759', 'server01_TS1')"``, also with
    double quotes or brackets), ``"T0759/server01_TS1"``, and plain strings (the whole
    string is the target, decoy ``''``). Never raises; ``None`` gives ``('', '')``.
    """
    if rid is None:
        return "", ""
    if isinstance(rid, (tuple, list)):
        parts = [str(p) for p in rid]
        return (parts[0] if parts else ""), (parts[1] if len(parts) > 1 else "")
    s = str(rid).strip()
    if s[:1] in "([" and s[-1:] in ")]":
        try:
            val = ast.literal_eval(s)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            val = None
        if isinstance(val, (tuple, list)):
            return parse_id(val)
        m = _TUPLE_RE.match(s)  # e.g. unquoted names: (T0759, server01_TS1)
        if m:
            return m.group(2).strip(), (m.group(4) or "").strip()
    if "/" in s:
        target, decoy = s.split("/", 1)
        return target, decoy
    return s, ""


def parse_target(rid) -> str:
    """The target name of a PSR/RSR record id (see ``parse_id``)."""
    return parse_id(rid)[0]


class RankingTask:
    """Reader of one ranking task: ``score_key`` names the label in ``record['scores']``."""

    def __init__(self, name: str, score_key: str, description: str):
        self.name = name
        self.score_key = score_key
        self.description = description

    def samples(self, record, index: int, strict: bool = False,
                report: SkipReport | None = None) -> Iterator[Sample]:
        s = guard(record, index, strict, report, lambda: self._sample(record, index, report))
        if s is not None:
            yield s

    def _sample(self, record, index, report) -> Sample:
        atoms = drop_hydrogens(atom_table(record, "atoms"))
        pos = coordinates(atoms, "atoms (heavy)")
        y = np.array([score(record, self.score_key)], dtype=np.float32)
        z, _ = elements(atoms, report)
        rid = record_id(record, index)
        target, decoy = parse_id(record.get("id", rid))
        return Sample(id=rid, pos=pos, z=z, y=y, fields={"target": target, "decoy": decoy})

    __call__ = samples


PSR = RankingTask("psr", "gdt_ts", "GDT_TS of the decoy vs. the native (0..1, higher is better)")
RSR = RankingTask("rsr", "rms", "RMSD to the native in Angstrom (lower is better; regressed as-is)")


def psr_samples(record, index: int, strict: bool = False, report: SkipReport | None = None):
    return PSR.samples(record, index, strict=strict, report=report)


def rsr_samples(record, index: int, strict: bool = False, report: SkipReport | None = None):
    return RSR.samples(record, index, strict=strict, report=report)
