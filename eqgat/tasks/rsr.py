"""RSR: RNA structure ranking (ATOM3D), regression of a decoy's RMSD to the native.

Graph and metrics as PSR (:mod:`eqgat.tasks.psr`). RMSD is regressed as it is (lower = better
model), so a perfect predictor has Spearman +1 with the labels, which is what the paper reports.
The authors' script trains on ``0.8 (1 - Pearson over the batch) + 0.2 MSE`` (``pearson_mse``,
not stated in the paper) and selects the checkpoint and drives the LR plateau by the
validation MSE; a config may choose plain ``mse`` instead.
"""
from __future__ import annotations

from preprocess.download import Archive
from preprocess.sources import LmdbSplits

from ._atom3d import ATOM3D_OPTIONS, EQGAT_ATOM3D, SEGNN_ATOM3D
from .psr import RANKING_FIELDS, RANKING_METRICS, evaluate, heavy_atoms
from .spec import Label, Ref, TaskSpec, atom3d_protocol

TASK = TaskSpec(
    name="rsr",
    title="RNA structure ranking (ATOM3D RSR)",
    source=LmdbSplits(datasets={"rsr": (Archive("rsr", "4961085", "RSR-candidates-split-by-time.tar.gz",
                                                "candidates-split-by-time",
                                                "candidates-split-by-time/data/{train,val,test}", int(1.3e9)),)}),
    reader=Ref("preprocess.readers.ranking", "rsr_samples"),
    fields=RANKING_FIELDS,
    label=Label("regression", ("rms",)),
    readout="graph",
    metrics=RANKING_METRICS,
    evaluate=evaluate,
    losses=("pearson_mse",),
    model=dict(EQGAT_ATOM3D, num_layers=5),
    model_presets=SEGNN_ATOM3D,
    protocol=atom3d_protocol(epochs=30, batch_size=16, loss="pearson_mse", selection="mse"),
    options_schema=ATOM3D_OPTIONS,
    predict_reader=heavy_atoms,
)
