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


def ranking_group(sample_id: str) -> str:
    """The target (native structure) a PSR/RSR decoy belongs to: ids are "<target>/<decoy>"."""
    return sample_id.split("/", 1)[0]


# Targets with fewer decoys than this are left out of the per-target mean (a rank correlation
# of two points is always +-1); `per_target_used`/`per_target_skipped` report how many.
MIN_DECOYS_PER_TARGET = 3


def _ranking_metrics(pred: np.ndarray, y: np.ndarray, ids: Sequence[str]) -> dict[str, float]:
    """PSR/RSR: rank correlations per target (averaged) and over the whole set ("global")."""
    pred, y = pred.reshape(-1), y.reshape(-1)
    groups = [ranking_group(i) for i in ids]
    out: dict[str, float] = {"rmse": M.rmse(pred, y)}
    for name, fn in (("spearman", M.spearman), ("pearson", M.pearson), ("kendall", M.kendall_tau_b)):
        mean, used, skipped = M.per_group_mean(fn, pred, y, groups, MIN_DECOYS_PER_TARGET)
        out[f"mean_{name}"] = mean
        out[f"global_{name}"] = fn(pred, y)
    out["per_target_used"], out["per_target_skipped"] = used, skipped
    return out


def _affinity_metrics(pred: np.ndarray, y: np.ndarray, ids: Sequence[str]) -> dict[str, float]:
    pred, y = pred.reshape(-1), y.reshape(-1)
    return {"rmse": M.rmse(pred, y), "pearson": M.pearson(pred, y), "spearman": M.spearman(pred, y)}


def _residue_metrics(pred: np.ndarray, y: np.ndarray, ids: Sequence[str]) -> dict[str, float]:
    return {"accuracy": M.accuracy(pred, y.reshape(-1))}


def _interface_metrics(pred: np.ndarray, y: np.ndarray, ids: Sequence[str]) -> dict[str, float]:
    score, label = pred.reshape(-1), y.reshape(-1)
    return {"roc_auc": M.roc_auc(score, label), "average_precision": M.average_precision(score, label)}


TASKS: dict[str, Task] = {
    "triangle": Task("triangle", 3, "graph", "mse", "mse", False, _triangle_metrics),
    "lba": Task("lba", 1, "graph", "mse", "rmse", False, _affinity_metrics, ("rmse", "pearson", "spearman")),
    "psr": Task("psr", 1, "graph", "mse", "mean_spearman", True, _ranking_metrics, ("mean_spearman", "global_spearman")),
    # RSR regresses the RMSD to the native structure as it is (lower = better model); a perfect
    # predictor of RMSD has Spearman +1 with the labels, which is what the paper reports.
    "rsr": Task("rsr", 1, "graph", "mse", "mean_spearman", True, _ranking_metrics, ("mean_spearman", "global_spearman")),
    "res": Task("res", 20, "node", "cross_entropy", "accuracy", True, _residue_metrics),
    "ppi": Task("ppi", 1, "pair", "bce", "roc_auc", True, _interface_metrics, ("roc_auc", "average_precision")),
}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known: {sorted(TASKS)}") from None
