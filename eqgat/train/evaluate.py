"""Test evaluation with the best checkpoint (the epoch with the best validation selection)."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Mapping

import torch
from torch.utils.data import Dataset

from eqgat.models import build_model
from eqgat.tasks.losses import get_loss
from eqgat.train.checkpoint import CheckpointError, load_checkpoint
from eqgat.train.loop import Predictions, make_loader, metric_columns, predict
from preprocess.atomic import write_json_atomic, write_text_atomic


def load_best_model(checkpoint: str | Path, device: torch.device) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The model of a best checkpoint (``best.pt``), weights-only; errors name the file."""
    saved = load_checkpoint(checkpoint, map_location=device)
    spec = saved.get("model_spec")
    if not isinstance(spec, dict) or "model" not in saved or "name" not in spec:
        raise CheckpointError(f"{checkpoint}: not a model checkpoint of this workflow (no model_spec / model)")
    model = build_model(spec["name"], **spec["hparams"])
    try:
        model.load_state_dict(saved["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"{checkpoint}: weights do not fit the recorded model: {exc}") from None
    return model.to(device), saved


def write_predictions(path: str | Path, p: Predictions) -> None:
    """One row per graph: id, the graph's columns (e.g. target), outputs, labels."""
    pred = p.pred.reshape(len(p.ids), -1)
    y = p.y.reshape(len(p.ids), -1)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", *p.columns, *[f"pred_{k}" for k in range(pred.shape[1])], *[f"y_{k}" for k in range(y.shape[1])]])
    for i, row_id in enumerate(p.ids):
        writer.writerow([row_id, *[values[i] for values in p.columns.values()],
                         *[repr(float(v)) for v in pred[i]], *[repr(float(v)) for v in y[i]]])
    write_text_atomic(path, buf.getvalue())


def evaluate(
    checkpoint: str | Path,
    task,
    splits: Mapping[str, Dataset],
    batch_size: int,
    device: torch.device,
    metrics_path: str | Path,
    predictions_path: str | Path | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Metrics of the best checkpoint on each split (each metric with its direction);
    predictions of the test split."""
    model, saved = load_best_model(checkpoint, device)
    if saved.get("task", task.name) != task.name:
        raise ValueError(f"{checkpoint} was trained for task {saved['task']!r}, not {task.name!r}")
    loss_fn = get_loss(saved.get("loss", task.label.default_loss))
    result: dict[str, Any] = {
        "task": task.name, "model": saved["model_spec"]["name"], "best_epoch": saved["epoch"],
        "selection": saved.get("selection", "loss"),
        "num_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "directions": {m.name: m.direction for m in task.metrics},
        "table_metrics": [m.name for m in task.table_metrics],
        "label_kind": task.label.kind, "label_names": list(task.label.names),
        **(extra or {}),
    }
    for split, dataset in splits.items():
        if len(dataset) == 0:
            raise ValueError(f"task {task.name}: the {split} split has no graphs to evaluate")
        p = predict(model, make_loader(dataset, batch_size, None, 0), device, loss_fn, metric_columns(task))
        result[split] = {"num_graphs": len(p.ids), "loss": p.loss, **task.evaluate(p.pred, p.y, p.columns)}
        if split == "test" and predictions_path is not None:
            write_predictions(predictions_path, p)
    write_json_atomic(metrics_path, result)
    return result
