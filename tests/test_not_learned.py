"""A run that has not learned says so: its best validation loss against the trivial predictor's
(training mean; majority class) in the log, train.json, metrics.json and the results table."""
from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("gemmi")

from eqgat.aggregate import markdown_table, summarise  # noqa: E402
from eqgat.cli import main as eqgat_main  # noqa: E402
from eqgat.tasks import TASKS  # noqa: E402
from eqgat.tasks.config import task_section  # noqa: E402
from eqgat.tasks.losses import get_loss  # noqa: E402
from eqgat.train.baseline import fit_trivial, learned, trivial_loss, trivial_metrics  # noqa: E402
from eqgat.train.targets import TargetScaling  # noqa: E402
from preprocess.task_shards import build_task_shards  # noqa: E402
from structure_dataset import write_dataset  # noqa: E402

TINY = json.dumps({"hidden_scalars": 16, "hidden_vectors": 4, "num_layers": 2, "num_radial": 8})


def test_trivial_predictors_by_hand():
    y_train = np.array([[1.0], [2.0], [6.0]])
    y_val = np.array([[0.0], [4.0]])
    mean = fit_trivial("regression", y_train, 1)
    assert mean.tolist() == [3.0]
    mse = get_loss("mse")
    assert trivial_loss(mean, y_val, mse, None) == pytest.approx((9.0 + 1.0) / 2)
    scaling = TargetScaling.fit(y_train)
    assert trivial_loss(mean, y_val, mse, scaling) == pytest.approx((9.0 + 1.0) / 2 / np.var([1.0, 2.0, 6.0]))
    assert trivial_metrics("regression", mean, y_val) == pytest.approx({"rmse": math.sqrt(5.0), "mse": 5.0})
    # classes: the training frequencies as logits; the majority class's accuracy
    logits = fit_trivial("classification", np.array([0, 2, 2, 2]), 3)
    p = np.exp(logits) / np.exp(logits).sum()
    assert p == pytest.approx(np.array([1.5, 0.5, 3.5]) / 5.5)
    ce = get_loss("cross_entropy")
    assert trivial_loss(logits, np.array([2, 1]), ce, None) == pytest.approx(-(np.log(p[2]) + np.log(p[1])) / 2, rel=1e-6)
    assert trivial_metrics("classification", logits, np.array([2, 1, 2, 0])) == {"accuracy": 0.5}
    assert trivial_metrics("binary", fit_trivial("binary", np.array([0, 0, 1]), 1), np.array([0, 1, 0, 0])) == {"accuracy": 0.75}
    assert learned(0.5, 1.0) is True and learned(1.0, 1.0) is False and learned(float("nan"), 1.0) is None


def _run(root: Path, lr: float, standardize: bool) -> Path:
    """A tiny structures regression run (labels: the oxygen share x 1000)."""
    labels = write_dataset(root / "data", 24, seed=5)
    rows = list(csv.reader(open(labels)))
    with open(labels, "w", newline="") as fh:
        csv.writer(fh).writerows([rows[0], *[[f, f"{1000 * float(v):.3f}"] for f, v in rows[1:]]])
    section = {"files": str(root / "data"), "labels": str(labels), "train": {"standardize_targets": standardize}}
    graphs = root / "graphs"
    build_task_shards(TASKS["structures"], root / "data", graphs, 4.5, shard_size=8, progress=False,
                      options=task_section(TASKS["structures"], section))
    run = root / "run"
    common = ["--task", "structures", "--data", str(graphs), "--section", json.dumps(section), "--device", "cpu"]
    assert eqgat_main(["train", *common, "--out", str(run), "--epochs", "4", "--batch-size", "4", "--lr", str(lr),
                       "--hparams", TINY, "--no-progress"]) == 0
    assert eqgat_main(["evaluate", *common, "--checkpoint", str(run / "best.pt"), "--out", str(run / "metrics.json"),
                       "--predictions", str(run / "test_predictions.csv")]) == 0
    return run


def test_a_run_that_has_not_learned_is_flagged(tmp_path, caplog):
    """Unscaled labels near 1,000 and a learning rate too small to move: the model stays near
    0 and loses to the training mean, and every report says so."""
    with caplog.at_level(logging.WARNING):
        bad = _run(tmp_path / "bad", 1e-7, standardize=False)
    assert "the model has not learned" in caplog.text and "training mean" in caplog.text
    summary = json.loads((bad / "train.json").read_text())
    assert summary["learned"] is False
    trivial = summary["trivial"]
    log = list(csv.DictReader(open(bad / "log.csv")))
    assert trivial["best_val_loss"] == pytest.approx(min(float(r["val_loss"]) for r in log))
    assert trivial["best_val_loss"] >= trivial["val_loss"]
    metrics = json.loads((bad / "metrics.json").read_text())
    assert metrics["learned"] is False
    # the trivial predictor's test RMSE: the training mean against the test labels, by hand
    graphs = tmp_path / "bad" / "graphs"
    which = {r["file"]: r["split"] for r in csv.DictReader(open(graphs / "split.csv"))}
    labels = {r["file"]: float(r["label"]) for r in csv.DictReader(open(tmp_path / "bad" / "data" / "labels.csv"))}
    mean = np.mean([v for f, v in labels.items() if which[f] == "train"], dtype=np.float32)
    test = np.array([v for f, v in labels.items() if which[f] == "test"], np.float32)
    assert metrics["trivial"]["test"]["rmse"] == pytest.approx(float(np.sqrt(np.mean((test - mean) ** 2))), rel=1e-5)
    assert torch.load(bad / "best.pt", map_location="cpu", weights_only=True)["trivial"]["learned"] is False

    # the table: this run beside one of another seed that learned
    runs = [{**metrics, "seed": 0}, {**metrics, "seed": 1, "learned": True,
                                      "trivial": {**metrics["trivial"], "test": {"rmse": 1.0, "mse": 1.0}}}]
    rows = summarise(runs)
    rmse = next(r for r in rows if r["metric"] == "rmse")
    assert rmse["not_learned"] == 1 and rmse["n_runs"] == 2
    assert rmse["trivial_mean"] == pytest.approx(np.mean([r["trivial"]["test"]["rmse"] for r in runs]))
    table = markdown_table(rows)
    assert "| learned | trivial predictor (test) |" in table
    assert f"**no** (1 of 2 runs) | rmse {rmse['trivial_mean']:.3f}" in table
