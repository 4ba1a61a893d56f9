"""PSR: protein structure ranking (ATOM3D), regression of a decoy's GDT_TS.

Graph: the decoy's heavy atoms (:mod:`preprocess.readers.ranking`); fields ``target`` and
``decoy`` name the native structure a decoy belongs to and the decoy. Metrics: Spearman within
each target, averaged ("mean"), and over the whole test set ("global"). The authors: 5 layers,
30 epochs, batch 16, MSE, best checkpoint by validation MSE.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from eqgat import metrics as M
from preprocess.download import Archive
from preprocess.sources import LmdbSplits

from ._atom3d import ATOM3D_OPTIONS, EQGAT_ATOM3D, SEGNN_ATOM3D
from .spec import Ref, Field, Label, Metric, TaskSpec, atom3d_protocol

RANKING_FIELDS = (Field("target", "str", "the native structure the decoy belongs to"),
                  Field("decoy", "str", "the decoy's name"))

#: ranking metrics: correlations are better higher, errors lower
RANKING_METRICS = (
    Metric("mean_spearman", True, in_table=True), Metric("global_spearman", True, in_table=True),
    Metric("mean_pearson", True), Metric("global_pearson", True),
    Metric("mean_kendall", True), Metric("global_kendall", True),
    Metric("mse", False), Metric("rmse", False),
)


def heavy_atoms(path, options: Mapping) -> tuple[np.ndarray, np.ndarray]:
    """A new file for ``predict``: its heavy atoms (hydrogens and waters dropped), as the ATOM3D
    ranking readers take a decoy's."""
    from preprocess.readers.structures import StructureOptions, read_structure

    atoms = read_structure(path, StructureOptions.of(options, hydrogens="drop", waters="drop"))
    return atoms.pos, atoms.z


def evaluate(pred: np.ndarray, y: np.ndarray, columns: Mapping[str, Sequence]) -> dict[str, float]:
    """Rank correlations per target (averaged over targets with >= 3 decoys) and global."""
    return M.ranking_metrics(pred, y, columns["target"])


TASK = TaskSpec(
    name="psr",
    title="Protein structure ranking (ATOM3D PSR)",
    source=LmdbSplits(datasets={"psr": (Archive("psr", "4915648", "PSR-split-by-year.tar.gz", "split-by-year",
                                                "split-by-year/data/{train,val,test}", int(2.0e9)),)}),
    reader=Ref("preprocess.readers.ranking", "psr_samples"),
    fields=RANKING_FIELDS,
    label=Label("regression", ("gdt_ts",)),
    readout="graph",
    metrics=RANKING_METRICS,
    evaluate=evaluate,
    model=dict(EQGAT_ATOM3D, num_layers=5),
    model_presets=SEGNN_ATOM3D,
    protocol=atom3d_protocol(epochs=30, batch_size=16),
    options_schema=ATOM3D_OPTIONS,
    predict_reader=heavy_atoms,
)
