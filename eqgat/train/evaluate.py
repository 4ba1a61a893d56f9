"""Test evaluation with the best-validation checkpoint."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from preprocess.atomic import write_json_atomic, write_text_atomic
from eqgat.models import build_model
from eqgat.tasks import Task
from eqgat.train.checkpoint import load_checkpoint
from eqgat.train.loop import make_loader, predict


def load_best_model(checkpoint: str | Path, device: torch.device) -> tuple[torch.nn.Module, dict[str, Any]]:
    saved = load_checkpoint(checkpoint, map_location=device)
    spec = saved["model_spec"]
    model = build_model(spec["name"], **spec["hparams"])
    model.load_state_dict(saved["model"])
    return model.to(device), saved


def write_predictions(path: str | Path, ids: list[str], pred: np.ndarray, y: np.ndarray) -> None:
    pred = pred.reshape(len(ids), -1)
    y = y.reshape(len(ids), -1)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", *[f"pred_{k}" for k in range(pred.shape[1])], *[f"y_{k}" for k in range(y.shape[1])]])
    for i, row_id in enumerate(ids):
        writer.writerow([row_id, *[repr(float(v)) for v in pred[i]], *[repr(float(v)) for v in y[i]]])
    write_text_atomic(path, buf.getvalue())


def evaluate(
    checkpoint: str | Path,
    task: Task,
    splits: dict[str, Dataset],
    batch_size: int,
    device: torch.device,
    metrics_path: str | Path,
    predictions_path: str | Path | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Metrics of the best checkpoint on each split; predictions of the test split."""
    model, saved = load_best_model(checkpoint, device)
    result: dict[str, Any] = {
        "task": task.name, "model": saved["model_spec"]["name"], "best_epoch": saved["epoch"],
        "num_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "primary_metric": task.primary_metric, "higher_is_better": task.higher_is_better,
        **(extra or {}),
    }
    for split, dataset in splits.items():
        pred, y, ids = predict(model, make_loader(dataset, batch_size, None, 0), device)
        result[split] = {"num_graphs": len(ids), "loss": float(task.loss(torch.from_numpy(pred), torch.from_numpy(y))), **task.evaluate(pred, y, ids)}
        if split == "test" and predictions_path is not None:
            write_predictions(predictions_path, ids, pred, y)
    write_json_atomic(metrics_path, result)
    return result
