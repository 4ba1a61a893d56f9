"""Evaluation metrics, written with numpy only (tests compare them with scipy/sklearn)."""
from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np


def _as_float_arrays(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {pred.shape} != target shape {target.shape}")
    return pred, target


def mse(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean squared error over all entries (all targets of a multi-task problem)."""
    pred, target = _as_float_arrays(pred, target)
    return float(np.mean((pred - target) ** 2))


def rmse(pred: np.ndarray, target: np.ndarray) -> float:
    return float(np.sqrt(mse(pred, target)))


def mae(pred: np.ndarray, target: np.ndarray) -> float:
    pred, target = _as_float_arrays(pred, target)
    return float(np.mean(np.abs(pred - target)))


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks starting at 1, ties get the average of the ranks they span."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    # boundaries of runs of equal values
    new_run = np.concatenate(([True], sorted_x[1:] != sorted_x[:-1]))
    run_id = np.cumsum(new_run) - 1
    starts = np.flatnonzero(new_run)
    ends = np.concatenate((starts[1:], [len(x)]))
    avg_rank = (starts + ends + 1) / 2.0  # mean of 1-based ranks start+1 .. end
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = avg_rank[run_id]
    return ranks


def pearson(pred: np.ndarray, target: np.ndarray) -> float:
    """Pearson correlation; NaN when either side is constant or has fewer than 2 values."""
    pred, target = _as_float_arrays(pred, target)
    pred, target = pred.ravel(), target.ravel()
    if len(pred) < 2:
        return float("nan")
    dp, dt = pred - pred.mean(), target - target.mean()
    denom = np.sqrt(np.sum(dp * dp) * np.sum(dt * dt))
    if denom == 0.0:
        return float("nan")
    return float(np.sum(dp * dt) / denom)


def spearman(pred: np.ndarray, target: np.ndarray) -> float:
    pred, target = _as_float_arrays(pred, target)
    return pearson(rankdata(pred.ravel()), rankdata(target.ravel()))


def kendall_tau_b(pred: np.ndarray, target: np.ndarray) -> float:
    """Kendall's tau-b (tie-corrected), O(n^2) memory-free loop over pairs in blocks."""
    pred, target = _as_float_arrays(pred, target)
    x, y = pred.ravel(), target.ravel()
    n = len(x)
    if n < 2:
        return float("nan")
    concordant_minus_discordant = 0.0
    ties_x = ties_y = pairs = 0
    for i in range(n - 1):
        dx = np.sign(x[i + 1:] - x[i])
        dy = np.sign(y[i + 1:] - y[i])
        concordant_minus_discordant += float(np.sum(dx * dy))
        ties_x += int(np.sum(dx == 0))
        ties_y += int(np.sum(dy == 0))
        pairs += n - 1 - i
    denom = np.sqrt(float(pairs - ties_x) * float(pairs - ties_y))
    if denom == 0.0:
        return float("nan")
    return float(concordant_minus_discordant / denom)


def per_group_mean(
    metric, pred: np.ndarray, target: np.ndarray, groups: Sequence[str], min_size: int = 3
) -> tuple[float, int, int]:
    """Average of `metric` over groups (e.g. PSR targets) with at least `min_size` members.

    Groups below `min_size`, and groups where the metric is undefined (constant
    predictions or labels), are left out of the mean. Returns (mean, used, skipped).
    """
    index: dict[str, list[int]] = defaultdict(list)
    for k, g in enumerate(groups):
        index[g].append(k)
    values, skipped = [], 0
    for members in index.values():
        if len(members) < min_size:
            skipped += 1
            continue
        value = metric(np.asarray(pred)[members], np.asarray(target)[members])
        if np.isnan(value):
            skipped += 1
            continue
        values.append(value)
    mean = float(np.mean(values)) if values else float("nan")
    return mean, len(values), skipped


def accuracy(logits_or_labels: np.ndarray, target: np.ndarray) -> float:
    """Accuracy from class scores [n, C] (argmax) or predicted labels [n]."""
    pred = np.asarray(logits_or_labels)
    if pred.ndim == 2:
        pred = pred.argmax(axis=1)
    target = np.asarray(target)
    if len(target) == 0:
        return float("nan")
    return float(np.mean(pred == target))


def roc_auc(score: np.ndarray, label: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with tie correction)."""
    score = np.asarray(score, dtype=np.float64).ravel()
    label = np.asarray(label).ravel().astype(bool)
    n_pos, n_neg = int(label.sum()), int((~label).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    u = ranks[label].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def average_precision(score: np.ndarray, label: np.ndarray) -> float:
    """Average precision as sklearn defines it (step-wise, ties grouped by threshold)."""
    score = np.asarray(score, dtype=np.float64).ravel()
    label = np.asarray(label).ravel().astype(bool)
    n_pos = int(label.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-score, kind="mergesort")
    score, label = score[order], label[order]
    last_of_threshold = np.concatenate((score[1:] != score[:-1], [True]))
    tp = np.cumsum(label)[last_of_threshold]
    fp = np.cumsum(~label)[last_of_threshold]
    precision = tp / (tp + fp)
    recall = tp / n_pos
    recall_steps = np.diff(np.concatenate(([0.0], recall)))
    return float(np.sum(recall_steps * precision))


#: targets with fewer decoys than this are left out of the per-target mean (a rank correlation
#: of two points is always +-1); ``per_target_used``/``per_target_skipped`` say how many
MIN_DECOYS_PER_TARGET = 3


def ranking_metrics(pred: np.ndarray, target: np.ndarray, groups: Sequence[str],
                    min_size: int = MIN_DECOYS_PER_TARGET) -> dict[str, float]:
    """Structure ranking (PSR, RSR): rank and linear correlations within each group (the
    target a decoy belongs to), averaged ("mean_"), and over the whole set ("global_")."""
    pred, target = np.asarray(pred).reshape(-1), np.asarray(target).reshape(-1)
    out: dict[str, float] = {"mse": mse(pred, target), "rmse": rmse(pred, target)}
    used = skipped = 0
    for name, fn in (("spearman", spearman), ("pearson", pearson), ("kendall", kendall_tau_b)):
        out[f"mean_{name}"], used, skipped = per_group_mean(fn, pred, target, groups, min_size)
        out[f"global_{name}"] = fn(pred, target)
    out["per_target_used"], out["per_target_skipped"] = used, skipped
    return out


def balanced_accuracy(logits_or_labels: np.ndarray, target: np.ndarray) -> float:
    """Mean over the classes present in `target` of the fraction predicted right (recall)."""
    pred = np.asarray(logits_or_labels)
    if pred.ndim == 2:
        pred = pred.argmax(axis=1)
    target = np.asarray(target).reshape(-1)
    if len(target) == 0:
        return float("nan")
    return float(np.mean([np.mean(pred[target == c] == c) for c in np.unique(target)]))


def roc_curve(score: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates at every distinct score threshold (from (0, 0) to (1, 1))."""
    score = np.asarray(score, dtype=np.float64).ravel()
    label = np.asarray(label).ravel().astype(bool)
    order = np.argsort(-score, kind="mergesort")
    score, label = score[order], label[order]
    last_of_threshold = np.concatenate((score[1:] != score[:-1], [True]))
    tp = np.cumsum(label)[last_of_threshold]
    fp = np.cumsum(~label)[last_of_threshold]
    n_pos, n_neg = max(int(label.sum()), 1), max(int((~label).sum()), 1)
    return np.concatenate(([0.0], fp / n_neg)), np.concatenate(([0.0], tp / n_pos))


def confusion_matrix(logits_or_labels: np.ndarray, target: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts [true class, predicted class]."""
    pred = np.asarray(logits_or_labels)
    if pred.ndim == 2:
        pred = pred.argmax(axis=1)
    out = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(out, (np.asarray(target).reshape(-1).astype(np.int64), pred.astype(np.int64)), 1)
    return out
