"""Standardised regression targets: the training split's mean and std in the checkpoints, and
every output a user reads (metrics, test_predictions.csv, predict) in the label's own units."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("gemmi")

from eqgat.cli import main as eqgat_main  # noqa: E402
from eqgat.tasks import TASKS  # noqa: E402
from eqgat.tasks.config import task_section  # noqa: E402
from eqgat.train.evaluate import load_best_model  # noqa: E402
from eqgat.train.targets import LabelUnits, TargetScaling  # noqa: E402
from preprocess.task_shards import build_task_shards  # noqa: E402
from structure_dataset import write_dataset  # noqa: E402

TINY = json.dumps({"hidden_scalars": 16, "hidden_vectors": 4, "num_layers": 2, "num_radial": 8})
#: the oxygen share (0.05-0.45) in a unit far from the model's initial outputs
OFFSET, SCALE = 1000.0, 500.0


def test_fit_standardize_and_back():
    y = np.array([[1.0, 10.0], [3.0, 10.0], [8.0, 10.0]])
    s = TargetScaling.fit(y)
    assert s.mean == (4.0, 10.0) and s.std == (float(np.std([1.0, 3.0, 8.0])), 1.0)  # a constant target keeps scale 1
    t = torch.tensor(y, dtype=torch.float64)
    z = s.standardize(t)
    assert torch.allclose(z[:, 0], torch.tensor([-3.0, -1.0, 4.0], dtype=torch.float64) / np.std([1.0, 3.0, 8.0]))
    assert torch.equal(z[:, 1], torch.zeros(3, dtype=torch.float64))
    assert torch.allclose(s.to_label(z), t)
    assert TargetScaling.from_state(s.state()) == s and TargetScaling.from_state(None) is None
    with pytest.raises(ValueError, match="finite"):
        TargetScaling.fit(np.array([[1.0], [np.nan]]))


def test_only_the_structures_protocol_scales():
    """The paper protocols keep the paper's unscaled targets."""
    scaled = {name for name, t in TASKS.items() if t.protocol["train"]["standardize_targets"]}
    assert scaled == {"structures"}


def _run(root: Path, train: dict) -> tuple[Path, Path, dict]:
    labels = write_dataset(root / "data", 24, seed=3)
    rows = list(csv.reader(open(labels)))
    with open(labels, "w", newline="") as fh:  # the same learnable label in another unit
        csv.writer(fh).writerows([rows[0], *[[f, f"{OFFSET + SCALE * float(v):.4f}"] for f, v in rows[1:]]])
    section = {"files": str(root / "data"), "labels": str(labels), "train": train}
    graphs = root / "graphs"
    build_task_shards(TASKS["structures"], root / "data", graphs, 4.5, shard_size=8, progress=False,
                      options=task_section(TASKS["structures"], section))
    run = root / "run"
    common = ["--task", "structures", "--data", str(graphs), "--section", json.dumps(section), "--device", "cpu"]
    assert eqgat_main(["train", *common, "--out", str(run), "--epochs", "3", "--batch-size", "4", "--hparams", TINY,
                       "--no-progress"]) == 0
    assert eqgat_main(["evaluate", *common, "--checkpoint", str(run / "best.pt"), "--out", str(run / "metrics.json"),
                       "--predictions", str(run / "test_predictions.csv")]) == 0
    return graphs, run, section


def _split_labels(graphs: Path, section: dict, split: str) -> np.ndarray:
    which = {r["file"]: r["split"] for r in csv.DictReader(open(graphs / "split.csv"))}
    return np.array([float(r["label"]) for r in csv.DictReader(open(section["labels"])) if which[r["file"]] == split])


def test_scaled_run_reports_in_label_units(tmp_path):
    graphs, run, section = _run(tmp_path, {"lr": 1e-3})
    expected = TargetScaling.fit(_split_labels(graphs, section, "train").reshape(-1, 1))
    best = torch.load(run / "best.pt", map_location="cpu", weights_only=True)
    last = torch.load(run / "state" / "last.pt", map_location="cpu", weights_only=True)
    for saved in (best, last):
        got = TargetScaling.from_state(saved["target_scaling"])
        assert got.mean == pytest.approx(expected.mean, rel=1e-6) and got.std == pytest.approx(expected.std, rel=1e-6)
    # the best model's outputs are in label units: the raw network's, de-standardised
    model, _ = load_best_model(run / "best.pt", torch.device("cpu"))
    assert isinstance(model, LabelUnits)
    rows = list(csv.DictReader(open(run / "test_predictions.csv")))
    pred = np.array([float(r["pred_0"]) for r in rows])
    y = np.array([float(r["y_0"]) for r in rows])
    assert np.allclose(y, _split_labels(graphs, section, "test"))  # labels as written, not standardised
    # three epochs from outputs near 0: only de-standardised outputs land near labels of ~1000
    assert np.all(np.abs(pred - expected.mean[0]) < 5 * expected.std[0]), (pred, expected)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["rmse"] == pytest.approx(float(np.sqrt(np.mean((pred - y) ** 2))), rel=1e-6)
    assert metrics["target_scaling"] == best["target_scaling"]


def test_unscaled_when_switched_off(tmp_path):
    _, run, _ = _run(tmp_path, {"standardize_targets": False, "lr": 1e-3})
    best = torch.load(run / "best.pt", map_location="cpu", weights_only=True)
    assert best["target_scaling"] is None
    model, _ = load_best_model(run / "best.pt", torch.device("cpu"))
    assert not isinstance(model, LabelUnits)
    assert "target_scaling" not in json.loads((run / "metrics.json").read_text())
