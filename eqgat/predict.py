"""Predictions of a trained model for new PDB / mmCIF files (``python -m eqgat predict``).

The files are read the way the model's training data were (the settings a checkpoint carries
under ``data``: task, cutoff, neighbour cap, element vocabulary, the structures task's hydrogen
and water policy, the class names) and go through the model in batches, so thousands of files
take bounded memory; every file gets one row, with the reason where it could not be read.

Graph-level tasks only: ``structures`` (either kind), and the ATOM3D regressions ``psr``,
``rsr`` (all heavy atoms) and ``lba`` (the pocket, then the ligand, hydrogens kept: the ligand
is the residues named ``ligand_resname``, the pocket the other residues with an atom within
``pocket_radius`` of it).
"""
from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
from tqdm import tqdm

from eqgat.train.checkpoint import CheckpointError
from preprocess.atomic import atomic_path
from preprocess.elements import ELEMENTS

log = logging.getLogger(__name__)

__all__ = ["PREDICTABLE", "ReadingSettings", "expand", "predict_files", "read_graph"]

#: tasks whose checkpoints can score new files
PREDICTABLE = ("structures", "psr", "rsr", "lba")
#: ATOM3D's LBA pockets: residues with an atom within this distance of the ligand (Å)
DEFAULT_POCKET_RADIUS = 6.0


@dataclass(frozen=True)
class ReadingSettings:
    """How a checkpoint's training structures were read (``best.pt['data']``)."""

    task: str
    cutoff: float
    max_neighbors: int | None
    label_kind: str
    label_names: tuple[str, ...]
    reader: dict
    elements: tuple[str, ...]

    @classmethod
    def of(cls, saved: dict, path: str | Path) -> ReadingSettings:
        data = saved.get("data")
        if not isinstance(data, dict) or "task" not in data:
            raise CheckpointError(f"{path}: no reading settings (task, cutoff, elements, ...): not a model "
                                  f"checkpoint written by `eqgat train` of this version")
        if data["task"] not in PREDICTABLE:
            raise ValueError(f"{path} is a model of task {data['task']!r}; predict scores whole structures with "
                             f"models of the graph-level tasks {', '.join(PREDICTABLE)}")
        if tuple(data.get("elements", ())) != ELEMENTS:
            raise ValueError(f"{path} was trained with the element vocabulary {data.get('elements')}, "
                             f"this version reads {list(ELEMENTS)}")
        return cls(data["task"], float(data["cutoff"]), data.get("max_neighbors"), data["label_kind"],
                   tuple(data.get("label_names", ())), dict(data.get("reader", {})), tuple(data["elements"]))


def _structure_options(settings: ReadingSettings):
    from preprocess.readers.structures import StructureOptions

    if settings.task == "structures":
        return StructureOptions(settings.reader.get("hydrogens", "drop"), settings.reader.get("waters", "drop"))
    if settings.task == "lba":
        return StructureOptions(hydrogens="keep", waters="drop")
    return StructureOptions(hydrogens="drop", waters="drop")


def _lba_atoms(atoms, ligand_resname: str, pocket_radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Pocket atoms then ligand atoms (positions and element ids), as the LBA reader orders them."""
    ligand = atoms.residue_names == ligand_resname.upper()
    if not ligand.any():
        raise ValueError(f"no residue named {ligand_resname!r} (the ligand)")
    other = np.flatnonzero(~ligand)
    d2 = ((atoms.pos[other, None, :] - atoms.pos[None, ligand, :]) ** 2).sum(-1).min(axis=1)
    near = other[d2 <= pocket_radius ** 2]
    residue = np.array([f"{c}|{n}|{i}" for c, n, i in zip(atoms.chain_ids, atoms.residue_numbers, atoms.insertion_codes)])
    pocket = np.flatnonzero(~ligand & np.isin(residue, np.unique(residue[near])))
    order = np.concatenate([pocket, np.flatnonzero(ligand)])
    return atoms.pos[order], atoms.z[order]


def read_graph(path: str | Path, settings: ReadingSettings, ligand_resname: str | None = None,
               pocket_radius: float = DEFAULT_POCKET_RADIUS):
    """One file as the graph its model expects (``torch_geometric.data.Data``)."""
    from torch_geometric.data import Data

    from preprocess.neighbors import radius_graph
    from preprocess.readers.structures import read_structure

    atoms = read_structure(path, _structure_options(settings))
    if settings.task == "lba":
        if not ligand_resname:
            raise ValueError("an LBA model needs the ligand: give its residue name (--ligand-resname)")
        pos, z = _lba_atoms(atoms, ligand_resname, pocket_radius)
    else:
        pos, z = atoms.pos, atoms.z
    edge_index = radius_graph(pos, settings.cutoff, settings.max_neighbors)
    data = Data(z=torch.from_numpy(z.astype(np.int64)), pos=torch.from_numpy(np.ascontiguousarray(pos, np.float32)),
                edge_index=torch.from_numpy(np.asarray(edge_index, np.int64)))
    data.num_nodes = len(z)
    return data


def _reason(exc: Exception) -> str:
    """Why a file could not be scored, on one line (a skip reason as the skip reports name it)."""
    from preprocess.readers import SkipSample

    text = str(exc) if isinstance(exc, (SkipSample, ValueError)) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _header(settings: ReadingSettings) -> list[str]:
    probs = [f"prob_{c}" for c in settings.label_names] if settings.label_kind == "classification" else []
    return ["file", "prediction", *probs, "error"]


def _rows(files: Sequence[str], out: torch.Tensor | None, settings: ReadingSettings,
          errors: dict[int, str]) -> Iterable[list[Any]]:
    """CSV rows of one chunk: predictions of the files that were read, errors of the others."""
    k = 0
    n_probs = len(settings.label_names) if settings.label_kind == "classification" else 0
    for i, name in enumerate(files):
        if i in errors:
            yield [name, "", *[""] * n_probs, errors[i]]
            continue
        row = out[k]
        k += 1
        if settings.label_kind == "classification":
            p = torch.softmax(row.double(), dim=-1).tolist()
            yield [name, settings.label_names[int(np.argmax(p))], *[repr(v) for v in p], ""]
        else:
            yield [name, repr(float(row.reshape(-1)[0])), ""]


def predict_files(checkpoint: str | Path, files: Sequence[str | Path], out_csv: str | Path, device: torch.device,
                  batch_size: int = 16, ligand_resname: str | None = None,
                  pocket_radius: float = DEFAULT_POCKET_RADIUS, progress: bool = True) -> dict[str, int]:
    """Score `files` with a best checkpoint; write ``file,prediction[,prob_<class>...],error``
    atomically to `out_csv`; returns how many files were scored and how many failed."""
    from torch_geometric.data import Batch

    from eqgat.train.checkpoint import load_checkpoint
    from eqgat.train.evaluate import load_best_model

    settings = ReadingSettings.of(load_checkpoint(checkpoint, map_location="cpu"), checkpoint)
    model, _ = load_best_model(checkpoint, device)
    model.eval()
    counts = {"scored": 0, "failed": 0}
    names = [str(f) for f in files]
    with atomic_path(out_csv) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(_header(settings))
        bar = tqdm(total=len(names), desc="predict", unit="file", disable=not progress)
        for chunk in _chunks(names, batch_size):
            graphs, errors = [], {}
            for i, name in enumerate(chunk):
                try:
                    graphs.append(read_graph(name, settings, ligand_resname, pocket_radius))
                except Exception as exc:  # every file gets its row; the reason is reported there
                    errors[i] = _reason(exc)
            out = None
            if graphs:
                with torch.no_grad():
                    out = model(Batch.from_data_list(graphs).to(device)).cpu()
            writer.writerows(_rows(chunk, out, settings, errors))
            counts["scored"] += len(graphs)
            counts["failed"] += len(errors)
            bar.update(len(chunk))
        bar.close()
    log.info("scored %d file(s), %d could not be read (see the error column of %s)", counts["scored"],
             counts["failed"], out_csv)
    return counts


def expand(paths: Sequence[str | Path]) -> list[str]:
    """Files as given; folders become their structure files (sorted, recursively)."""
    from preprocess.readers.structures import structure_files

    out: list[str] = []
    for p in paths:
        p = Path(p)
        out += [str(p / name) for name in structure_files(p)] if p.is_dir() else [str(p)]
    return out

