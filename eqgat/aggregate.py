"""Collect per-run metrics into one results table beside the paper's numbers (and the learning
curves, :mod:`eqgat.plots`)."""
from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from eqgat.plots import plot_learning_curves
from eqgat.paper import MODEL_LABELS, PAPER_RESULTS, paper_param_count, paper_value
from eqgat.tasks import get_task
from eqgat.tasks.spec import Metric
from preprocess.atomic import write_text_atomic

log = logging.getLogger(__name__)

CSV_COLUMNS = ("task", "model", "metric", "direction", "n_runs", "seeds", "mean", "std", "paper_mean", "paper_std", "num_parameters", "paper_num_parameters",
               "trivial_mean", "not_learned")


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single run)."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def load_runs(metric_files: Iterable[str | Path]) -> list[dict[str, Any]]:
    """The runs of `metric_files`, each once: a file given twice (or by another path) and an
    identical copy of a run are counted once, with a warning; two different results for one
    (task, model, seed) are an error naming both files."""
    runs: dict[tuple, dict[str, Any]] = {}
    where: dict[tuple, Path] = {}
    for path in metric_files:
        path = Path(path)
        with open(path) as fh:
            run = json.load(fh)
        key = (run.get("task"), run.get("model"), run.get("seed"))
        if key not in runs:
            runs[key], where[key] = run, path
        elif path.resolve() == where[key].resolve() or run == runs[key]:
            log.warning("%s is the run of %s again (task %s, model %s, seed %s): counted once", path, where[key], *key)
        else:
            raise ValueError(f"{where[key]} and {path} are two different results of one run (task {key[0]}, "
                             f"model {key[1]}, seed {key[2]}): give each run once")
    return list(runs.values())


def table_metrics(task_name: str, run: dict[str, Any]) -> tuple[Metric, ...]:
    """The table's metrics of a task as its evaluation recorded them (a configured task, e.g.
    users' structures, has its own), else as the task declares them."""
    if "table_metrics" in run and "directions" in run:
        return tuple(Metric(name, run["directions"][name] == "higher", True) for name in run["table_metrics"])
    return get_task(task_name).table_metrics


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (task, model, metric) with mean ± std over seeds and the paper's value."""
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        grouped[(run["task"], run["model"])].append(run)
    rows = []
    for (task_name, model), group in sorted(grouped.items()):
        for metric in table_metrics(task_name, group[0]):
            values = [r["test"][metric.name] for r in group]
            mean, std = mean_std(values)
            paper = paper_value(task_name, model, metric.name)
            rows.append({
                "task": task_name, "model": model, "metric": metric.name,
                "direction": metric.direction,
                "n_runs": len(values), "seeds": " ".join(str(r.get("seed")) for r in sorted(group, key=lambda r: r.get("seed", 0))),
                "mean": mean, "std": std,
                "paper_mean": paper[0] if paper else None, "paper_std": paper[1] if paper else None,
                "num_parameters": group[0].get("num_parameters"),
                "paper_num_parameters": paper_param_count(model, task_name),
                **trivial_summary(group, metric.name),
            })
    return rows


def trivial_summary(group: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """The trivial predictor's mean test value of `metric` over the runs that recorded one
    (:mod:`eqgat.train.baseline`), and how many runs did not beat it on validation (None:
    no run recorded the comparison)."""
    values = [r["trivial"]["test"][metric] for r in group
              if isinstance(r.get("trivial"), dict) and metric in r["trivial"].get("test", {})]
    known = [r["learned"] for r in group if isinstance(r.get("learned"), bool)]
    return {"trivial_mean": float(np.mean(values)) if values else None,
            "not_learned": sum(not v for v in known) if known else None}


def _learned_cells(cells: dict[str, dict[str, Any]], metrics: list[str]) -> list[str]:
    """The "learned" and "trivial predictor" cells of one model's row."""
    first = next(iter(cells.values()))
    n_bad = first.get("not_learned")
    learned = "–" if n_bad is None else ("yes" if n_bad == 0 else f"**no** ({n_bad} of {first['n_runs']} runs)")
    trivial = [f"{m} {cells[m]['trivial_mean']:.3f}" for m in metrics
               if m in cells and cells[m].get("trivial_mean") is not None]
    return [learned, ", ".join(trivial) or "–"]


def _fmt(mean: float | None, std: float | None) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    return f"{mean:.3f} ± {std:.3f}" if std is not None else f"{mean:.3f}"


def markdown_table(rows: list[dict[str, Any]], notes: dict[str, str] | None = None) -> str:
    """Per task: our models (mean ± std over seeds) beside the paper, then paper-only rows."""
    out = ["# Results", "", "Test-set metrics, mean ± sample standard deviation over seeds (n = runs); "
           "↑ higher is better, ↓ lower is better. \"learned\": whether each run's best validation loss beat "
           "the trivial predictor's (the training mean, or the majority class), whose test value is beside it.", ""]
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_task[row["task"]].append(row)
    for task_name, task_rows in by_task.items():
        task = get_task(task_name)
        directions = dict.fromkeys((r["metric"], r["direction"]) for r in task_rows)
        metrics = [name for name, _ in directions]
        labelled = [f"{name} {'↑' if d == 'higher' else '↓'}" for name, d in directions]
        out += [f"## {task_name}: {task.title} ({', '.join(labelled)})", ""]
        if notes and task_name in notes:
            out += [notes[task_name], ""]
        paper = any(t == task_name for t, _ in PAPER_RESULTS)  # users' own tasks have no paper columns
        header = ["model", "n"] + [f"{m} (ours)" if paper else m for m in labelled]
        header += [f"{m} (paper)" for m in labelled] + ["parameters", "parameters (paper)"] if paper else ["parameters"]
        compared = any(r.get("not_learned") is not None for r in task_rows)
        header += ["learned", "trivial predictor (test)"] if compared else []
        out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        ours = defaultdict(dict)
        for row in task_rows:
            ours[row["model"]][row["metric"]] = row
        for model, cells in ours.items():
            first = next(iter(cells.values()))
            line = [MODEL_LABELS.get(model, model), str(first["n_runs"])]
            line += [_fmt(cells[m]["mean"], cells[m]["std"]) if m in cells else "–" for m in metrics]
            if paper:
                line += [_fmt(cells[m]["paper_mean"], cells[m]["paper_std"]) if m in cells else "–" for m in metrics]
            line.append(f"{first['num_parameters']:,}" if first.get("num_parameters") else "–")
            if paper:
                line.append(f"{first['paper_num_parameters']:,}" if first.get("paper_num_parameters") else "–")
            if compared:
                line += _learned_cells(cells, metrics)
            out.append("| " + " | ".join(line) + " |")
        for (paper_task, model), values in PAPER_RESULTS.items():
            if paper_task != task_name or model in ours:
                continue
            line = [f"{MODEL_LABELS.get(model, model)} (paper only)", "–"] + ["–"] * len(metrics)
            paper_params = paper_param_count(model, task_name)
            line += [_fmt(*values[m]) if m in values else "–" for m in metrics] + ["–", f"{paper_params:,}" if paper_params else "–"]
            line += ["–", "–"] if compared else []
            out.append("| " + " | ".join(line) + " |")
        out.append("")
    return "\n".join(out)


def unreported_runs(results_csv: str | Path, tasks: Iterable[str], models: Iterable[str],
                    seeds: Iterable[int]) -> list[str]:
    """The configured runs (``task/model/seed N``) that the results table at `results_csv` does not
    count: seeds added since it was made, runs not finished (all of them when there is no table)."""
    counted: set[tuple[str, str, str]] = set()
    try:
        with open(results_csv, newline="") as fh:
            for row in csv.DictReader(fh):
                counted.update((row["task"], row["model"], seed) for seed in (row.get("seeds") or "").split())
    except (FileNotFoundError, KeyError, csv.Error):
        pass
    return [f"{task}/{model}/seed {seed}" for task in tasks for model in models for seed in seeds
            if (task, model, str(seed)) not in counted]


def write_csv(path: str | Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row[k] is None else row[k]) for k in CSV_COLUMNS})
    write_text_atomic(path, buf.getvalue())


def aggregate(metric_files: list[str], log_files: dict[tuple[str, str, int], str], out_md: str, out_csv: str, out_png: str, notes: dict[str, str] | None = None) -> list[dict[str, Any]]:
    rows = summarise(load_runs(metric_files))
    write_text_atomic(out_md, markdown_table(rows, notes))
    write_csv(out_csv, rows)
    plot_learning_curves(log_files, out_png)
    return rows
