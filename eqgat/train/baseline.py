"""Has a run learned? Its best validation loss against a predictor that ignores the structures.

The trivial predictor is a constant fitted on the training labels: their mean (regression),
the training class frequencies as logits (classes; its accuracy is the majority class's), or
the positive rate as a logit (binary). Its validation loss is computed with the run's loss in
the run's units (standardised targets when they are scaled), so the two losses compare. A run
whose best validation loss is not below it has not learned: training logs a warning, and
``train.json``, ``best.pt``, ``metrics.json`` and the results table say so, with the trivial
predictor's test RMSE (regression) or accuracy (classes) beside the model's.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Callable, Mapping

import numpy as np
import torch

from eqgat.train.targets import TargetScaling

log = logging.getLogger(__name__)

__all__ = ["dataset_labels", "fit_trivial", "not_learned_message", "trivial_metrics", "trivial_record"]

#: what the trivial predictor is called in logs, metrics.json and the table, per label kind
PREDICTOR = {"regression": "training mean", "classification": "majority class", "binary": "majority class"}


def dataset_labels(dataset) -> np.ndarray | None:
    """Every label of a split without reading the graphs (``dataset.labels()``), or None when
    the dataset cannot list them."""
    labels = getattr(dataset, "labels", None)
    return None if labels is None else np.asarray(labels())


def fit_trivial(kind: str, labels: np.ndarray, num_outputs: int) -> np.ndarray:
    """The constant model output fitted on the training labels (label units)."""
    if kind == "regression":
        return np.asarray(labels, np.float64).reshape(len(labels), -1).mean(axis=0)
    counts = np.bincount(np.asarray(labels, np.int64).reshape(-1), minlength=max(num_outputs, 2)).astype(np.float64)
    freq = (counts + 0.5) / (counts.sum() + 0.5 * len(counts))  # no infinite logit for an absent class
    if kind == "binary":
        return np.array([math.log(freq[1] / freq[0])])
    return np.log(freq[:num_outputs])


def _outputs(constant: np.ndarray, n: int) -> torch.Tensor:
    return torch.as_tensor(np.tile(constant.reshape(1, -1), (n, 1)), dtype=torch.float32)


def trivial_loss(constant: np.ndarray, y: np.ndarray, loss_fn: Callable, scaling: TargetScaling | None) -> float:
    """The run's loss of the constant on labels `y` (a split's, in label units)."""
    if len(y) == 0:
        return float("nan")
    out = _outputs(constant, len(y))
    target = torch.as_tensor(np.asarray(y))
    if scaling is not None:
        out, target = scaling.standardize(out), scaling.standardize(target.float())
    return float(loss_fn(out, target))


def trivial_metrics(kind: str, constant: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """The trivial predictor's RMSE and MSE (regression) or accuracy (classes) on labels `y`."""
    y = np.asarray(y)
    if len(y) == 0:
        return {}
    if kind == "regression":
        diff = y.reshape(len(y), -1).astype(np.float64) - constant.reshape(1, -1)
        mse = float(np.mean(diff ** 2))
        return {"rmse": math.sqrt(mse), "mse": mse}
    guess = int(constant[0] > 0) if kind == "binary" else int(np.argmax(constant))
    return {"accuracy": float(np.mean(y.reshape(-1).astype(np.int64) == guess))}


def trivial_record(kind: str, train_labels: np.ndarray | None, val_labels: np.ndarray | None, num_outputs: int,
                   loss_fn: Callable, scaling: TargetScaling | None) -> dict[str, Any] | None:
    """What training stores about the trivial predictor: its constant output and its
    validation loss (None when the splits cannot list their labels)."""
    if train_labels is None or val_labels is None or len(train_labels) == 0:
        return None
    constant = fit_trivial(kind, train_labels, num_outputs)
    return {"predictor": PREDICTOR[kind], "output": [float(v) for v in constant],
            "val_loss": trivial_loss(constant, val_labels, loss_fn, scaling)}


def learned(best_val_loss: float, trivial_val_loss: float) -> bool | None:
    """Whether the best validation loss beats the trivial predictor's (None: not comparable)."""
    if not (math.isfinite(best_val_loss) and math.isfinite(trivial_val_loss)):
        return None
    return best_val_loss < trivial_val_loss


def not_learned_message(record: Mapping[str, Any]) -> str:
    return (f"the model has not learned: its best validation loss {record['best_val_loss']:.6g} is no better "
            f"than the {record['predictor']} predictor's {record['val_loss']:.6g}")
