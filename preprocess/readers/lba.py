"""LBA: ligand binding affinity (regression of -log K).

* graph: ``atoms_pocket`` then ``atoms_ligand`` (table order within each), hydrogens KEPT;
* label ``scores['neglog_aff']`` (already -log10 K), ``y`` float32 [1];
* ``extra['ligand_atoms']`` = number of ligand atoms, ``extra['pocket_atoms']`` = number of
  pocket atoms: atoms ``[pocket_atoms, pocket_atoms + ligand_atoms)`` are the ligand, so
  ``ligand_flag(sample)`` gives the per-atom flag. ``atoms_protein`` is not used.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from . import Sample, SkipSample, atom_table, coordinates, elements, guard, record_id, score
from .report import EMPTY_ATOMS, SkipReport

LABELS = {
    "task": "lba",
    "kind": "regression",
    "targets": ["neglog_aff"],
    "source": "record['scores']['neglog_aff']",
    "description": "-log10 of the binding affinity (Kd/Ki/IC50), higher binds tighter",
}


def samples(record, index: int, strict: bool = False,
            report: SkipReport | None = None) -> Iterator[Sample]:
    s = guard(record, index, strict, report, lambda: _sample(record, index, report))
    if s is not None:
        yield s


def _sample(record, index: int, report) -> Sample:
    pocket = atom_table(record, "atoms_pocket").reset_index(drop=True)
    ligand = atom_table(record, "atoms_ligand").reset_index(drop=True)
    if len(ligand) == 0:
        raise SkipSample(EMPTY_ATOMS, "no ligand atoms")
    if len(pocket) == 0:
        raise SkipSample(EMPTY_ATOMS, "no pocket atoms")
    pos = np.concatenate([coordinates(pocket, "atoms_pocket"), coordinates(ligand, "atoms_ligand")])
    y = np.array([score(record, "neglog_aff")], dtype=np.float32)
    zp, up = elements(pocket, report)
    zl, ul = elements(ligand, report)
    return Sample(
        id=record_id(record, index), pos=pos, z=np.concatenate([zp, zl]), y=y,
        extra={"pocket_atoms": len(pocket), "ligand_atoms": len(ligand),
               "unknown_elements": up + ul},
    )


def ligand_flag(sample: Sample) -> np.ndarray:
    """bool [N]: True for the ligand atoms (the last ``extra['ligand_atoms']``)."""
    flag = np.zeros(sample.num_atoms, dtype=bool)
    flag[sample.num_atoms - int(sample.extra["ligand_atoms"]):] = True
    return flag
