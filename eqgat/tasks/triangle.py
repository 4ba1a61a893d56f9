"""Triangle (paper appendix B): regress a triangle's geometry hidden in a point cloud.

Generated locally (:mod:`preprocess.triangle`, no download): clouds of 100 points in a ball of
radius 10 Å, no two closer than 2, three distinct special points; targets: the distance between
the cloud's and the triangle's centres, the triangle's perimeter and its area. Paper protocol:
50,000 clouds (80/10/10), 50 epochs, batch 64, lr 1e-4, 3-target MSE without normalisation.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from eqgat import metrics as M
from preprocess.spec import DEFAULT_MAX_DEGREE
from preprocess.triangle import TARGET_NAMES, TriangleRaw

from .spec import Label, Metric, TaskSpec, train_protocol


def evaluate(pred: np.ndarray, y: np.ndarray, columns: Mapping[str, Sequence]) -> dict[str, float]:
    out = {"mse": M.mse(pred, y), "mae": M.mae(pred, y)}
    for k, name in enumerate(TARGET_NAMES):
        out[f"mse_{name}"] = M.mse(pred[:, k], y[:, k])
    return out


TASK = TaskSpec(
    name="triangle",
    title="Triangle (synthetic, paper appendix B)",
    source=TriangleRaw(),
    reader=None,
    label=Label("regression", TARGET_NAMES),
    readout="graph",
    metrics=(Metric("mse", False, in_table=True), Metric("mae", False),
             *(Metric(f"mse_{name}", False) for name in TARGET_NAMES)),
    evaluate=evaluate,
    # 2 point types; vector messages are summed, not averaged (the authors' synthetic script)
    model=dict(num_elements=2, hidden_scalars=32, hidden_vectors=8, num_layers=3, num_radial=16,
               vector_aggr="sum", norm=True),
    # SEGNN's l=2 width is chosen so that its count matches the paper's Table 3 (60.9k)
    model_presets={"segnn": {"hidden_tensors": 7}},
    protocol={
        "data": {"num_clouds": 50_000, "seed": 2022, "num_points": 100, "radius": 10.0, "min_dist": 2.0},
        # at most 99 neighbours with 100 points: raise max_degree with num_points above 257
        "graph": {"cutoff": 10.0, "max_neighbors": None, "max_degree": DEFAULT_MAX_DEGREE},
        "model": {"overrides": {}},
        "train": train_protocol(epochs=50, batch_size=64),
    },
    build_options=(),  # the generated clouds are the graphs' input file
    options_schema={
        "data": {
            "type": "object", "additionalProperties": False,
            "properties": {
                # the generator holds every cloud in memory (num_clouds x num_points x 13 bytes)
                "num_clouds": {"type": "integer", "minimum": 10, "maximum": 1_000_000,
                               "description": "at most 1,000,000 (20 times the paper's): 1.3 GB of clouds at 100 points"},
                "seed": {"type": "integer", "minimum": 0},
                "num_points": {"type": "integer", "minimum": 3, "maximum": 1000},
                "radius": {"type": "number", "exclusiveMinimum": 0},
                "min_dist": {"type": "number", "minimum": 0},
            },
        },
    },
)
