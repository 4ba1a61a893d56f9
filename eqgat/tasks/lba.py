"""LBA: ligand binding affinity (ATOM3D), regression of -log K on the pocket + ligand.

Graph: pocket atoms then ligand atoms, hydrogens kept (:mod:`preprocess.readers.lba`). Split by
sequence identity 30 % (Table 1) or 60 % (config ``split``). The authors train LBA without any
norm: 3 layers, 20 epochs, batch 16, MSE; RMSE is the headline metric.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from eqgat import metrics as M
from preprocess.download import Archive
from preprocess.sources import LmdbSplits

from ._atom3d import ATOM3D_OPTIONS, EQGAT_ATOM3D, SEGNN_ATOM3D
from .spec import Ref, Field, Label, Metric, TaskSpec, atom3d_protocol

_GB = 10 ** 9
#: ATOM3D's LBA pockets: residues with an atom within this distance of the ligand (Å)
DEFAULT_POCKET_RADIUS = 6.0


def evaluate(pred: np.ndarray, y: np.ndarray, columns: Mapping[str, Sequence]) -> dict[str, float]:
    pred, y = pred.reshape(-1), y.reshape(-1)
    return {"rmse": M.rmse(pred, y), "mae": M.mae(pred, y), "pearson": M.pearson(pred, y),
            "spearman": M.spearman(pred, y)}


def _within(points: np.ndarray, centres: np.ndarray, radius: float, budget: int = 1 << 21) -> np.ndarray:
    """Which `points` lie within `radius` of any of `centres`, the distances taken a block of
    centres at a time (at most `budget` pairs per block: bounded memory for any file)."""
    hit = np.zeros(len(points), bool)
    step = max(1, budget // max(1, len(points)))
    for start in range(0, len(centres), step):
        d2 = ((points[:, None, :] - centres[None, start:start + step, :]) ** 2).sum(-1)
        hit |= (d2 <= radius ** 2).any(axis=1)
    return hit


def pocket_then_ligand(atoms, ligand_resname: str, pocket_radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Pocket atoms then ligand atoms (positions and element ids), as the LBA reader orders them."""
    ligand = atoms.residue_names == ligand_resname.upper()
    if not ligand.any():
        raise ValueError(f"no residue named {ligand_resname!r} (the ligand)")
    other = np.flatnonzero(~ligand)
    near = other[_within(atoms.pos[other], atoms.pos[ligand], pocket_radius)]
    residue = np.array([f"{c}|{n}|{i}" for c, n, i in zip(atoms.chain_ids, atoms.residue_numbers, atoms.insertion_codes)])
    pocket = np.flatnonzero(~ligand & np.isin(residue, np.unique(residue[near])))
    order = np.concatenate([pocket, np.flatnonzero(ligand)])
    return atoms.pos[order], atoms.z[order]


def predict_complex(path, options: Mapping) -> tuple[np.ndarray, np.ndarray]:
    """A new protein-ligand file for ``predict``: the pocket (residues with an atom within
    ``pocket_radius`` of the ligand), then the ligand (the residues named ``ligand_resname``),
    hydrogens kept, waters dropped."""
    from preprocess.readers.structures import StructureOptions, read_structure

    ligand_resname = options.get("ligand_resname")
    if not ligand_resname:
        raise ValueError("an LBA model needs the ligand: give its residue name (--ligand-resname)")
    atoms = read_structure(path, StructureOptions.of(options, hydrogens="keep", waters="drop"))
    return pocket_then_ligand(atoms, ligand_resname, float(options.get("pocket_radius", DEFAULT_POCKET_RADIUS)))


def _archive(identity: int) -> tuple[Archive, ...]:
    folder = f"split-by-sequence-identity-{identity}"
    return (Archive(f"lba{identity}", "4914718", f"LBA-split-by-sequence-identity-{identity}.tar.gz", folder,
                    f"{folder}/data/{{train,val,test}}", int(0.56 * _GB)),)


TASK = TaskSpec(
    name="lba",
    title="Ligand binding affinity (ATOM3D LBA)",
    source=LmdbSplits(datasets={"lba30": _archive(30), "lba60": _archive(60)}, option="split",
                      choices={30: "lba30", 60: "lba60"}),
    reader=Ref("preprocess.readers.lba", "samples"),
    fields=(Field("num_ligand_atoms", "int", "the last that many atoms are the ligand"),),
    label=Label("regression", ("neglog_aff",)),
    readout="graph",
    metrics=(Metric("rmse", False, in_table=True), Metric("mae", False),
             Metric("pearson", True, in_table=True), Metric("spearman", True, in_table=True)),
    evaluate=evaluate,
    model=dict(EQGAT_ATOM3D, num_layers=3, norm=False),
    model_presets=SEGNN_ATOM3D,
    protocol={**atom3d_protocol(epochs=20, batch_size=16), "split": 30},
    options_schema={**ATOM3D_OPTIONS, "split": {"enum": [30, 60], "description": "sequence-identity split"}},
    build_options=("strict", "max_records", "split"),
    predict_reader=predict_complex,
)
