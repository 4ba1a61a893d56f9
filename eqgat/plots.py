"""The workflow's figures: learning curves and, per task, the test predictions (predicted vs
true for regression, ROC curves for binary labels, confusion matrices for classes)."""
from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from eqgat import metrics as M
from preprocess.atomic import atomic_path

__all__ = ["plot_learning_curves", "plot_test_predictions", "read_predictions"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    _pyplot().close(fig)


def plot_learning_curves(log_files: dict[tuple[str, str, int], str | Path], path: str | Path) -> None:
    """Validation (solid) and training (dotted) loss per epoch, one panel per task."""
    plt = _pyplot()
    tasks = sorted({task for task, _, _ in log_files})
    fig, axes = plt.subplots(1, max(len(tasks), 1), figsize=(6 * max(len(tasks), 1), 4.2), squeeze=False)
    colours: dict[str, Any] = {}
    for (task, model, seed), log_path in sorted(log_files.items()):
        ax = axes[0, tasks.index(task)]
        with open(log_path) as fh:
            rows = list(csv.DictReader(fh))
        epochs = [int(r["epoch"]) for r in rows]
        colour = colours.setdefault(model, f"C{len(colours) % 10}")
        marker = "osD^v<>p*h"[seed % 10]  # one colour per model, one marker per seed
        ax.plot(epochs, [float(r["val_loss"]) for r in rows], color=colour, marker=marker, markersize=4, label=f"{model} seed {seed} (val)")
        ax.plot(epochs, [float(r["train_loss"]) for r in rows], color=colour, marker=marker, markersize=3, linestyle=":", alpha=0.6)
        ax.set_title(f"{task}: loss per epoch (dotted: train)")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss (the run's training loss)")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def read_predictions(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Outputs [n, k] and labels [n, t] of a ``test_predictions.csv``."""
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return np.zeros((0, 1)), np.zeros((0, 1))
    pred_cols = [c for c in rows[0] if c.startswith("pred_")]
    y_cols = [c for c in rows[0] if c.startswith("y_")]
    pred = np.array([[float(r[c]) for c in pred_cols] for r in rows])
    y = np.array([[float(r[c]) for c in y_cols] for r in rows])
    return pred, y


def _runs_by_model(metric_files: Sequence[str | Path]) -> tuple[dict[str, list], dict[str, Any]]:
    """Per model: (seed, outputs, labels) of every run; and the first run's metrics (label kind)."""
    runs: dict[str, list] = defaultdict(list)
    first: dict[str, Any] = {}
    for path in metric_files:
        run = json.loads(Path(path).read_text())
        first = first or run
        pred, y = read_predictions(Path(path).parent / "test_predictions.csv")
        runs[run["model"]].append((run.get("seed", 0), pred, y))
    return dict(sorted(runs.items())), first


def plot_test_predictions(metric_files: Sequence[str | Path], path: str | Path) -> None:
    """One panel per model with every seed's test predictions: predicted against true values
    (regression, one row of panels per target), ROC curves (binary labels), or the confusion
    matrix summed over seeds (classes)."""
    runs, first = _runs_by_model(metric_files)
    kind = first.get("label_kind", "regression")
    names = list(first.get("label_names", [])) or ["label"]
    plt = _pyplot()
    models = list(runs)
    rows = len(names) if kind == "regression" else 1
    fig, axes = plt.subplots(rows, max(len(models), 1), figsize=(4.6 * max(len(models), 1), 4.2 * rows), squeeze=False)
    for col, model in enumerate(models):
        for seed, pred, y in runs[model]:
            if kind == "regression":
                for k in range(rows):
                    ax = axes[k, col]
                    ax.scatter(y[:, k], pred[:, k], s=8, alpha=0.6, label=f"seed {seed}")
            elif kind == "binary":
                fpr, tpr = M.roc_curve(pred[:, 0], y[:, 0])
                auc = M.roc_auc(pred[:, 0], y[:, 0])
                axes[0, col].plot(fpr, tpr, label=f"seed {seed} (AUC {auc:.3f})")
        if kind == "regression":
            for k, name in enumerate(names[:rows]):
                ax = axes[k, col]
                lo, hi = ax.get_xlim()
                ax.plot([lo, hi], [lo, hi], color="grey", linewidth=0.8)
                ax.set_xlabel(f"true {name}")
                ax.set_ylabel(f"predicted {name}")
                ax.set_title(f"{first['task']}: {model}")
                ax.legend(fontsize=7)
        elif kind == "binary":
            ax = axes[0, col]
            ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle=":")
            ax.set_xlabel("false positive rate")
            ax.set_ylabel("true positive rate")
            ax.set_title(f"{first['task']}: {model} (ROC)")
            ax.legend(fontsize=7)
        else:
            counts = sum(M.confusion_matrix(pred, y[:, 0], len(names)) for _, pred, y in runs[model])
            share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
            ax = axes[0, col]
            im = ax.imshow(share, vmin=0, vmax=1, cmap="Blues")
            ticks = range(len(names))
            ax.set_xticks(list(ticks), names, rotation=90, fontsize=7)
            ax.set_yticks(list(ticks), names, fontsize=7)
            ax.set_xlabel("predicted")
            ax.set_ylabel("true")
            ax.set_title(f"{first['task']}: {model} (all seeds)")
            fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    _save(fig, path)
