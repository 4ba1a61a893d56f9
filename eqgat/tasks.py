"""What each learning task is: output size, readout, loss and metrics."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from eqgat import metrics as M

TRIANGLE_TARGETS = ("com_distance", "perimeter", "area")


@dataclass(frozen=True)
class Task:
    name: str
    out_dim: int
    readout: str  # "graph" | "node" | "pair"
    loss_name: str  # "mse" | "cross_entropy" | "bce"
    primary_metric: str
    higher_is_better: bool
    evaluate: Callable[[np.ndarray, np.ndarray, Sequence[str]], dict[str, float]] = field(repr=False)
    report_metrics: tuple[str, ...] = ()  # columns of the results table; default: the primary metric

    @property
    def table_metrics(self) -> tuple[str, ...]:
        return self.report_metrics or (self.primary_metric,)

    def loss(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Training loss of a batch (no target normalisation, as in the paper)."""
        if self.loss_name == "mse":
            return F.mse_loss(pred, y.view_as(pred).to(pred.dtype))
        if self.loss_name == "cross_entropy":
            return F.cross_entropy(pred, y.view(-1).long())
        if self.loss_name == "bce":
            return F.binary_cross_entropy_with_logits(pred.view(-1), y.view(-1).to(pred.dtype))
        raise ValueError(f"unknown loss {self.loss_name!r}")


def _triangle_metrics(pred: np.ndarray, y: np.ndarray, ids: Sequence[str]) -> dict[str, float]:
    out = {"mse": M.mse(pred, y), "mae": M.mae(pred, y)}
    for k, name in enumerate(TRIANGLE_TARGETS):
        out[f"mse_{name}"] = M.mse(pred[:, k], y[:, k])
    return out


TASKS: dict[str, Task] = {
    "triangle": Task("triangle", 3, "graph", "mse", "mse", False, _triangle_metrics),
}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known: {sorted(TASKS)}") from None
