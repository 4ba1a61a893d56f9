"""PPI: protein interface prediction (ATOM3D DIPS), do residues r0 and r1 of two partners touch?

The shards hold each complex once (:mod:`preprocess.readers.ppi`); residue pairs are drawn
when the data are loaded (:mod:`eqgat.data.pairs`): at most 10 positives and as many negatives
per complex, redrawn every epoch from (seed, epoch), validation and test pairs fixed. Each pair
is two 30 Å neighbourhoods, one per partner, read out at the two C-alphas by the pair head.
The authors select the checkpoint and drive the LR plateau by validation ROC-AUC: 5 layers,
10 epochs, batch 10, BCE.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from eqgat import metrics as M
from preprocess.download import Archive
from preprocess.sources import LmdbSplits

from ._atom3d import ATOM3D_OPTIONS, EQGAT_ATOM3D, SEGNN_ATOM3D
from .spec import Ref, Field, Label, Metric, TaskSpec, atom3d_protocol

#: Å around each residue's C-alpha: the neighbourhood a pair's graphs cover
RADIUS = 30.0


def evaluate(pred: np.ndarray, y: np.ndarray, columns: Mapping[str, Sequence]) -> dict[str, float]:
    score, label = pred.reshape(-1), y.reshape(-1)
    return {"roc_auc": M.roc_auc(score, label), "average_precision": M.average_precision(score, label)}


def pair_dataset(manifest_path, split: str, section: Mapping, seed: int):
    """The residue pairs of one split, drawn as the section's ``pairs`` say."""
    from eqgat.data.pairs import PairDataset, PairSampling

    return PairDataset(manifest_path, split, PairSampling.from_section(section.get("pairs")), seed)


TASK = TaskSpec(
    name="ppi",
    title="Protein interface prediction (ATOM3D PPI, DIPS)",
    source=LmdbSplits(datasets={"ppi": (Archive("ppi", "4911102", "PPI-DIPS-split.tar.gz", "DIPS-split",
                                                "DIPS-split/data/{train,val,test}", int(13.6e9)),)}),
    reader=Ref("preprocess.readers.ppi", "samples"),
    fields=(Field("num_atoms0", "int", "partner 0's atoms come first"),
            Field("ca0", "ints", "C-alpha atom of each usable residue of partner 0"),
            Field("ca1", "ints", "C-alpha atom of each usable residue of partner 1"),
            Field("res0", "strs", "chain:number of those residues of partner 0"),
            Field("res1", "strs", "chain:number of those residues of partner 1"),
            Field("positives", "ints", "listed neighbour pairs [P, 2] as positions into ca0, ca1")),
    label=Label("binary", ("interacts",)),
    readout="pair",
    metrics=(Metric("roc_auc", True, in_table=True), Metric("average_precision", True, in_table=True)),
    evaluate=evaluate,
    model=dict(EQGAT_ATOM3D, num_layers=5),
    model_presets=SEGNN_ATOM3D,
    protocol={**atom3d_protocol(epochs=10, batch_size=10, selection="roc_auc"),
              "pairs": {"max_positives": 10, "negatives_per_positive": 1.0, "resample": True, "eval_seed": 0,
                        "radius": RADIUS}},
    options_schema={**ATOM3D_OPTIONS, "pairs": {
        "type": "object", "additionalProperties": False,
        "description": "residue pairs drawn per complex (eqgat/data/pairs.py)",
        "properties": {
            "max_positives": {"type": ["integer", "null"], "minimum": 1, "description": "positives per complex (null: all)"},
            "negatives_per_positive": {"type": "number", "minimum": 0},
            "resample": {"type": "boolean", "description": "draw the training pairs anew every epoch"},
            "eval_seed": {"type": "integer", "minimum": 0, "description": "seed of the fixed validation and test pairs"},
            "radius": {"type": "number", "exclusiveMinimum": 0, "description": "Å around each C-alpha"},
        }}},
    dataset=pair_dataset,
    edges_in_shards=False,
)
