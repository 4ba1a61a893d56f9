"""Test evaluation with the best checkpoint (the epoch with the best validation selection)."""
from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch.utils.data import Dataset

from eqgat.train.baseline import not_learned_message, trivial_metrics

from eqgat.models import build_model
from eqgat.tasks.losses import get_loss
from eqgat.train.checkpoint import CheckpointError, load_checkpoint
from eqgat.train.loop import Predictions, make_loader, metric_columns, predict
from eqgat.train.targets import LabelUnits, TargetScaling
from preprocess.atomic import write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)


def load_best_model(checkpoint: str | Path, device: torch.device) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The model of a best checkpoint (``best.pt``), weights-only, its outputs in the label's
    units (a model trained on standardised targets is wrapped in :class:`LabelUnits`); errors
    name the file."""
    saved = load_checkpoint(checkpoint, map_location=device)
    spec = saved.get("model_spec")
    if not isinstance(spec, dict) or "model" not in saved or "name" not in spec:
        raise CheckpointError(f"{checkpoint}: not a model checkpoint of this workflow (no model_spec / model)")
    model = build_model(spec["name"], **spec["hparams"])
    try:
        model.load_state_dict(saved["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"{checkpoint}: weights do not fit the recorded model: {exc}") from None
    try:
        scaling = TargetScaling.from_state(saved.get("target_scaling"))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{checkpoint}: unreadable target_scaling entry ({exc})") from None
    if scaling is not None:
        model = LabelUnits(model, scaling)
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
    scaling = model.scaling if isinstance(model, LabelUnits) else None
    if scaling is not None:
        result["target_scaling"] = scaling.state()
    trivial = saved.get("trivial")
    for split, dataset in splits.items():
        if len(dataset) == 0:
            raise ValueError(f"task {task.name}: the {split} split has no graphs to evaluate")
        p = predict(model, make_loader(dataset, batch_size, None, 0), device, loss_fn, metric_columns(task), scaling)
        result[split] = {"num_graphs": len(p.ids), "loss": p.loss, **task.evaluate(p.pred, p.y, p.columns)}
        if trivial:
            trivial = {**trivial, split: trivial_metrics(task.label.kind, np.asarray(trivial["output"]), p.y)}
        if split == "test" and predictions_path is not None:
            write_predictions(predictions_path, p)
    if trivial:
        result["trivial"], result["learned"] = trivial, trivial.get("learned")
        if trivial.get("learned") is False:
            log.warning("%s: %s", checkpoint, not_learned_message(trivial))
    write_json_atomic(metrics_path, result)
    return result
