"""Users' own structures: a folder of PDB / mmCIF files and a CSV of labels, as a task.

Config section (the keys beside graph / model / train)::

    structures:
      files: path/to/folder        # .pdb .ent .cif .mmcif, each optionally .gz
      labels: path/to/labels.csv   # file,label[,split]
      kind: regression             # or classification (labels are class names)

Reading (:mod:`preprocess.readers.structures`): gemmi, first model, highest-occupancy
alternate locations, hydrogens and waters dropped unless kept. Without a ``split`` column the
files get a seeded 80/10/10 split (``split_seed``), written to ``split.csv`` beside the shards.
Regression: one target, MSE, RMSE / MAE / Pearson / Spearman in the table; classification:
the sorted distinct labels are the classes (kept in the shards and every checkpoint),
cross-entropy, accuracy and balanced accuracy (and ROC-AUC for two classes). The model and
the graphs are the PSR protocol's (a graph-level ATOM3D task of the same kind of data); the
training is made for small folders (docs/performance.md): regression targets standardised
with the training split's mean and std, Adam at 1e-3 with a one-epoch warm-up and a cosine
decay over the last 5 of 20 epochs, batches of at most 8 structures and 16,000 atoms.
Reading is bounded: ``max_file_bytes`` (after decompression) and ``max_atoms`` per structure;
files over them are skipped and counted. ``predict`` reads new files as the checkpoint's training
files were (``predict_atoms``).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Mapping, Sequence

import numpy as np

from eqgat import metrics as M
from preprocess.readers.structures import DEFAULT_MAX_ATOMS, DEFAULT_MAX_FILE_BYTES, KINDS
from preprocess.sources import StructureFolder

from ._atom3d import EQGAT_ATOM3D
from .spec import Ref, Field, Label, Metric, TaskSpec, atom3d_protocol

#: atoms per batch of the structures task: 8 graphs of up to 2,000 atoms, or fewer larger ones
#: (a structure of more atoms is an error naming it, unless ``train.oversize`` is ``skip``)
STRUCTURES_MAX_BATCH_ATOMS = 16_000

REGRESSION_METRICS = (Metric("rmse", False, in_table=True), Metric("mae", False, in_table=True),
                      Metric("pearson", True, in_table=True), Metric("spearman", True, in_table=True))
CLASS_METRICS = (Metric("accuracy", True, in_table=True), Metric("balanced_accuracy", True, in_table=True),
                 Metric("roc_auc", True))


def evaluate_regression(pred: np.ndarray, y: np.ndarray, columns: Mapping[str, Sequence]) -> dict[str, float]:
    pred, y = pred.reshape(-1), y.reshape(-1)
    return {"rmse": M.rmse(pred, y), "mae": M.mae(pred, y), "pearson": M.pearson(pred, y), "spearman": M.spearman(pred, y)}


def evaluate_classes(pred: np.ndarray, y: np.ndarray, columns: Mapping[str, Sequence]) -> dict[str, float]:
    """Accuracy, balanced accuracy (mean recall over the classes present) and, for two classes,
    ROC-AUC of the second class's score."""
    y = y.reshape(-1).astype(np.int64)
    out = {"accuracy": M.accuracy(pred, y), "balanced_accuracy": M.balanced_accuracy(pred, y)}
    out["roc_auc"] = M.roc_auc(pred[:, 1] - pred[:, 0], y) if pred.ndim == 2 and pred.shape[1] == 2 else float("nan")
    return out


def predict_atoms(path, options: Mapping) -> tuple[np.ndarray, np.ndarray]:
    """A new file for ``predict``, read as the checkpoint's training structures were (its hydrogen
    and water policy and read caps)."""
    from preprocess.readers.structures import StructureOptions, read_structure

    atoms = read_structure(path, StructureOptions.of(options))
    return atoms.pos, atoms.z


def configure(spec: TaskSpec, section: Mapping, label_names: Sequence[str] | None) -> TaskSpec:
    """The task for a section's ``kind`` (and the classes its labels name)."""
    kind = section.get("kind", "regression")
    if kind == "regression":
        return replace(spec, label=Label("regression", ("label",)), metrics=REGRESSION_METRICS,
                       evaluate=evaluate_regression, losses=(), configure=None)
    return replace(spec, label=Label("classification", tuple(label_names or ())), metrics=CLASS_METRICS,
                   evaluate=evaluate_classes, losses=(), configure=None,
                   protocol={**spec.protocol, "train": {**spec.protocol["train"], "loss": "cross_entropy"}})


TASK = TaskSpec(
    name="structures",
    title="Your own structures (PDB / mmCIF folder + labels CSV)",
    source=StructureFolder(),
    reader=Ref("preprocess.readers.structures", "samples"),
    fields=(Field("file", "str", "the structure's file, relative to the folder"),),
    # the declaration covers both kinds (schema: losses and selection metrics of either);
    # configure() gives the task of a section's kind
    label=Label("regression", ("label",)),
    readout="graph",
    metrics=REGRESSION_METRICS + CLASS_METRICS,
    evaluate=evaluate_regression,
    losses=("cross_entropy",),
    model=dict(EQGAT_ATOM3D, num_layers=5),
    model_presets={"segnn": {"num_layers": 3}},
    # training for small folders (batches by size: users' structures vary in size), chosen by measurement (docs/performance.md, "Your own structures")
    protocol={**atom3d_protocol(epochs=20, batch_size=8, lr=1e-3, schedule="cosine", warmup_epochs=1, decay_epochs=5,
                                standardize_targets=True, max_atoms=STRUCTURES_MAX_BATCH_ATOMS), "files": None, "labels": None, "kind": "regression",
              "hydrogens": "drop", "waters": "drop", "split_seed": 0,
              "max_file_bytes": DEFAULT_MAX_FILE_BYTES, "max_atoms": DEFAULT_MAX_ATOMS},
    options_schema={
        "files": {"type": ["string", "null"], "description": "folder of .pdb/.ent/.cif/.mmcif files (optionally .gz)"},
        "labels": {"type": ["string", "null"], "description": "CSV with columns file, label and optionally split"},
        "kind": {"enum": list(KINDS)},
        "hydrogens": {"enum": ["drop", "keep"]},
        "waters": {"enum": ["drop", "keep"]},
        "split_seed": {"type": "integer", "minimum": 0, "description": "seed of the 80/10/10 split when the CSV has none"},
        "max_file_bytes": {"type": ["integer", "null"], "minimum": 1,
                           "description": "a structure file holding more bytes (after decompression) is skipped and "
                                          f"counted as file_too_large; null: no limit (default {DEFAULT_MAX_FILE_BYTES})"},
        "max_atoms": {"type": ["integer", "null"], "minimum": 1,
                      "description": "a structure whose first model has more atoms (hydrogens and waters dropped "
                                     "first) is skipped and counted as too_many_atoms; null: no limit "
                                     f"(default {DEFAULT_MAX_ATOMS})"},
        "strict": {"type": "boolean", "description": "a listed file that is missing or unreadable, or a missing or invalid label, is an error naming it (files without a row are only counted)"},
        "max_records": {"type": ["integer", "null"], "minimum": 1},
    },
    reader_options=("hydrogens", "waters", "max_file_bytes", "max_atoms"),
    build_options=("strict", "max_records", "files", "labels", "kind", "hydrogens", "waters", "split_seed",
                   "max_file_bytes", "max_atoms"),
    required_options=("files", "labels"),
    configure=configure,
    predict_reader=predict_atoms,
)
