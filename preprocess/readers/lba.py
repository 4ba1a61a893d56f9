"""LBA: ligand binding affinity (regression of -log K).

* graph: ``atoms_pocket`` then ``atoms_ligand`` (table order within each), hydrogens KEPT;
* label ``scores['neglog_aff']`` (already -log10 K), ``y`` float32 [1];
* field ``num_ligand_atoms``: the last that many atoms are the ligand (``ligand_flag(sample)``
  gives the per-atom flag). ``atoms_protein`` is not used.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from . import Sample, SkipSample, atom_table, coordinates, elements, guard, record_id, score
from .report import EMPTY_ATOMS, SkipReport

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
    zp, _ = elements(pocket, report)
    zl, _ = elements(ligand, report)
    return Sample(id=record_id(record, index), pos=pos, z=np.concatenate([zp, zl]), y=y,
                  fields={"num_ligand_atoms": len(ligand)})


def ligand_flag(sample: Sample) -> np.ndarray:
    """bool [N]: True for the ligand atoms (the last ``fields['num_ligand_atoms']``)."""
    flag = np.zeros(sample.num_atoms, dtype=bool)
    flag[sample.num_atoms - int(sample.fields["num_ligand_atoms"]):] = True
    return flag
