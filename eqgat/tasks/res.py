"""RES: residue identity (ATOM3D), 20-way classification of a masked central residue.

One graph per environment (the atoms around a residue whose side chain ATOM3D removed), read
out at the central C-alpha (field ``center_index``; :mod:`preprocess.readers.res`). Classes:
the 20 canonical amino acids, alphabetical. The authors: 5 layers, 40 epochs, batch 32,
cross-entropy, best checkpoint by validation loss.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from eqgat import metrics as M
from preprocess.download import Archive
from preprocess.elements import RESIDUE_CLASSES
from preprocess.sources import IndexedLmdb

from ._atom3d import ATOM3D_OPTIONS, EQGAT_ATOM3D, SEGNN_ATOM3D
from .spec import Ref, Field, Label, Metric, TaskSpec, atom3d_protocol


def evaluate(pred: np.ndarray, y: np.ndarray, columns: Mapping[str, Sequence]) -> dict[str, float]:
    return {"accuracy": M.accuracy(pred, y.reshape(-1))}


TASK = TaskSpec(
    name="res",
    title="Residue identity (ATOM3D RES)",
    source=IndexedLmdb(datasets={"res": (
        Archive("res", "5026743", "RES-raw.tar.gz", "raw", "raw/RES/data", int(31.6e9)),
        # size not in our notes (small: three text files of indices)
        Archive("res", "5026743", "RES-split-by-cath-topology-indices.tar.gz", "indices",
                "indices/{train,val,test}_indices.txt", None),
    )}),
    reader=Ref("preprocess.readers.res", "samples"),
    fields=(Field("center_index", "int", "the central residue's C-alpha"),),
    label=Label("classification", RESIDUE_CLASSES),
    readout="node",
    metrics=(Metric("accuracy", True, in_table=True),),
    evaluate=evaluate,
    model=dict(EQGAT_ATOM3D, num_layers=5),
    model_presets=SEGNN_ATOM3D,
    protocol=atom3d_protocol(epochs=40, batch_size=32),
    options_schema=ATOM3D_OPTIONS,
)
