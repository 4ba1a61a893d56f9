"""RES: residue identity (20-way classification at the central residue's C-alpha).

Record: ``atoms`` (DataFrame), ``labels`` (DataFrame, one row per environment, with
``subunit`` = ``"chain_resnum_resname"`` and ``label``) and ``subunit_indices`` (one list of
row positions into ``atoms`` per label row; ATOM3D already removed the central residue's
side chain, its backbone is kept).

One sample per label row k:
* atoms ``atoms.iloc[subunit_indices[k]]`` in that order, hydrogens removed;
* ``y`` = class of the central residue, alphabetical (``preprocess.elements.RESIDUE_CLASSES``,
  ALA=0 ... VAL=19), from the residue name in ``subunit``; if ``subunit`` has no residue
  name, from ``label`` (a name, or atom3d's own integer code ``ATOM3D_RES_LABELS``);
* field ``center_index`` = position, among the kept atoms, of the atom named 'CA' (element C)
  with the chain and residue number (and insertion code, if any) of ``subunit``;
* ``id`` = ``"<record id>/<subunit>"``;
* skipped and counted: non-canonical residues (``noncanonical_residue``) and environments
  where that C-alpha is not found exactly once (``ca_not_unique``); bad input (NaN
  coordinates, empty environment) as for every task.
"""
from __future__ import annotations

import re
from typing import Iterator

import numpy as np
import pandas as pd

from collections import Counter

from preprocess.elements import ELEMENTS, HYDROGEN_INDEX, OTHER_INDEX, normalize_symbol, residue_index

from . import (
    Sample, SkipSample, atom_table, guard, record_id, require,
)
from .report import (
    CA_NOT_UNIQUE, EMPTY_ATOMS, MALFORMED, MISSING_LABEL, NAN_COORDINATES,
    NONCANONICAL_RESIDUE, SkipReport,
)

# atom3d's own integer coding of RES labels (examples/res), used only as a fallback.
ATOM3D_RES_LABELS = (
    "HIS", "LYS", "ARG", "ASP", "GLU", "SER", "THR", "ASN", "GLN", "ALA",
    "VAL", "LEU", "ILE", "MET", "PHE", "TYR", "TRP", "PRO", "GLY", "CYS",
)
_CARBON = ELEMENTS.index("C")
_RESNUM_RE = re.compile(r"^\s*(-?\d+)\s*([A-Za-z]?)\s*$")


def parse_subunit(subunit) -> tuple[str, int, str, str]:
    """``"A_52_GLY"`` -> ``('A', 52, '', 'GLY')``; ``"A_52B_GLY"`` -> ``('A', 52, 'B', 'GLY')``.

    The chain may itself contain '_' (everything before the last two fields). Raises
    ValueError if the residue number is not an integer (optionally + insertion code).
    """
    parts = str(subunit).split("_")
    if len(parts) < 3:
        raise ValueError(f"subunit {subunit!r} is not 'chain_resnum_resname'")
    chain, num, name = "_".join(parts[:-2]), parts[-2], parts[-1]
    m = _RESNUM_RE.match(num)
    if not m:
        raise ValueError(f"subunit {subunit!r}: bad residue number {num!r}")
    return chain.strip(), int(m.group(1)), m.group(2), name.strip().upper()


def _label_name(row) -> str:
    lab = row.get("label") if hasattr(row, "get") else None
    if lab is None or (isinstance(lab, float) and np.isnan(lab)):
        raise SkipSample(MISSING_LABEL, "no residue name in subunit and no label")
    if isinstance(lab, str) and not lab.strip().lstrip("-").isdigit():
        return lab.strip().upper()
    k = int(lab)
    if not 0 <= k < len(ATOM3D_RES_LABELS):
        raise SkipSample(NONCANONICAL_RESIDUE, f"atom3d label {k}", bad=False)
    return ATOM3D_RES_LABELS[k]


def _str_column(df: pd.DataFrame, col: str, upper: bool = False) -> np.ndarray:
    if col not in df.columns:
        return np.full(len(df), "", dtype=object)
    s = df[col].fillna("").astype(str).str.strip()
    return (s.str.upper() if upper else s).to_numpy(dtype=object)


class _Prepared:
    """Per-record column arrays, so each environment is cheap to cut out."""

    def __init__(self, atoms: pd.DataFrame):
        from . import elements as _elements

        self.n = len(atoms)
        self.z, _ = _elements(atoms, None)
        self.symbol = atoms["element"].map(normalize_symbol).to_numpy(dtype=object)
        self.pos = atoms[["x", "y", "z"]].to_numpy(dtype=np.float64)
        self.chain = _str_column(atoms, "chain")
        self.resnum = pd.to_numeric(atoms["residue"], errors="coerce").to_numpy(dtype=np.float64) \
            if "residue" in atoms.columns else np.full(self.n, np.nan)
        self.name = _str_column(atoms, "name", upper=True)
        self.icode = _str_column(atoms, "insertion_code")


def samples(record, index: int, strict: bool = False,
            report: SkipReport | None = None) -> Iterator[Sample]:
    prep = guard(record, index, strict, report, lambda: _prepare(record))
    if prep is None:
        return
    atoms_prep, labels, subunit_indices = prep
    rid = record_id(record, index)
    for k in range(len(labels)):
        row = labels.iloc[k]
        what = f"environment {k} ({row.get('subunit', '?')})"
        s = guard(record, index, strict, report,
                  lambda: _environment(atoms_prep, row, subunit_indices[k], rid, k, report),
                  what=what)
        if s is not None:
            yield s


def _prepare(record):
    atoms = atom_table(record, "atoms").reset_index(drop=True)
    labels = require(record, "labels")
    if isinstance(labels, dict) and "columns" in labels:
        labels = pd.DataFrame(**labels)
    if not isinstance(labels, pd.DataFrame):
        raise SkipSample(MALFORMED, f"'labels' is a {type(labels).__name__}")
    subunit_indices = require(record, "subunit_indices")
    if len(subunit_indices) != len(labels):
        raise SkipSample(MALFORMED, f"{len(subunit_indices)} subunit_indices for {len(labels)} labels")
    if len(atoms) == 0:
        raise SkipSample(EMPTY_ATOMS, "no atoms")
    return _Prepared(atoms), labels.reset_index(drop=True), subunit_indices


def _environment(p: _Prepared, row, indices, rid: str, k: int, report) -> Sample:
    subunit = row.get("subunit")
    if not isinstance(subunit, str) or not subunit:
        raise SkipSample(MALFORMED, "no subunit")
    chain, num, icode, resname = parse_subunit(subunit)
    if not resname:
        resname = _label_name(row)
    cls = residue_index(resname)
    if cls < 0:
        raise SkipSample(NONCANONICAL_RESIDUE, resname, bad=False)

    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= p.n):
        raise SkipSample(MALFORMED, f"subunit_indices out of range [0, {p.n})")
    idx = idx[p.z[idx] != HYDROGEN_INDEX]
    if idx.size == 0:
        raise SkipSample(EMPTY_ATOMS, "empty environment")
    pos = p.pos[idx]
    if not np.isfinite(pos).all():
        raise SkipSample(NAN_COORDINATES, f"{int((~np.isfinite(pos)).any(axis=1).sum())} atom(s)")
    is_ca = ((p.name[idx] == "CA") & (p.z[idx] == _CARBON) & (p.resnum[idx] == num)
             & (p.chain[idx] == chain) & (p.icode[idx] == icode))
    where = np.flatnonzero(is_ca)
    if where.size != 1:
        raise SkipSample(CA_NOT_UNIQUE, f"{where.size} C-alpha(s) for {subunit}", bad=False)
    z = p.z[idx]
    unknown = z == OTHER_INDEX
    if report is not None and unknown.any():
        report.note_unknown_elements(dict(Counter(p.symbol[idx][unknown].tolist())))
    return Sample(id=f"{rid}/{subunit}", pos=pos.astype(np.float32), z=z.copy(), y=int(cls),
                  fields={"center_index": int(where[0])})
