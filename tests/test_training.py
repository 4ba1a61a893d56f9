"""The training loop: determinism, resuming after SIGKILL, best-checkpoint evaluation."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from _graphs import build_triangle_shards
from cli_runner import run_module
from preprocess.triangle import generate_triangle_clouds, write_raw

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = '{"hidden_scalars": 8, "hidden_vectors": 2, "num_layers": 1, "num_radial": 4}'
SECTION = json.dumps({"graph": {"cutoff": 4.0}})  # the graphs below are built at 4 Å


@pytest.fixture(scope="module")
def graphs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tri")
    write_raw(root / "raw.h5", generate_triangle_clouds(60, seed=3, num_points=12, radius=5.0, min_dist=1.0))
    build_triangle_shards(root / "raw.h5", root / "graphs", cutoff=4.0, shard_size=16, workers=1, progress=False)
    return root / "graphs"


def train_cmd(graphs: Path, out: Path, epochs: int, seed: int = 0, lr: float = 3e-3, model: str = TINY_MODEL) -> list[str]:
    return [
        sys.executable, "-m", "eqgat", "train", "--task", "triangle", "--model", "eqgat", "--section", SECTION,
        "--hparams", model, "--data", str(graphs), "--out", str(out), "--device", "cpu", "--threads", "1",
        "--seed", str(seed), "--epochs", str(epochs), "--batch-size", "4", "--lr", str(lr), "--no-progress",
    ]


def evaluate_cmd(graphs: Path, run: Path) -> list[str]:
    return [
        sys.executable, "-m", "eqgat", "evaluate", "--task", "triangle", "--data", str(graphs), "--device", "cpu",
        "--section", SECTION,
        "--checkpoint", str(run / "best.pt"), "--out", str(run / "metrics.json"),
        "--predictions", str(run / "test_predictions.csv"), "--batch-size", "8",
    ]


def call(cmd: list[str]) -> subprocess.CompletedProcess:
    """A `python -m eqgat ...` command line, run in this process (tests/cli_runner.py)."""
    assert cmd[1:3] == ["-m", "eqgat"], cmd
    return run_module("eqgat", *cmd[3:], cwd=REPO)


def run(cmd: list[str]) -> None:
    proc = call(cmd)
    assert proc.returncode == 0, proc.stderr[-3000:]


def log_losses(run_dir: Path) -> list[tuple[str, str, str]]:
    rows = list(csv.DictReader(open(run_dir / "log.csv")))
    return [(r["epoch"], r["train_loss"], r["val_loss"]) for r in rows]


def state_dict(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def assert_same_weights(a: Path, b: Path) -> None:
    sa, sb = state_dict(a), state_dict(b)
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


@pytest.fixture(scope="module")
def reference_run(graphs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "run"
    run(train_cmd(graphs, out, epochs=6))
    run(evaluate_cmd(graphs, out))
    return out


def test_same_seed_gives_identical_numbers(graphs, reference_run, tmp_path):
    again = tmp_path / "again"
    run(train_cmd(graphs, again, epochs=6))
    run(evaluate_cmd(graphs, again))
    assert log_losses(again) == log_losses(reference_run)
    assert_same_weights(again / "best.pt", reference_run / "best.pt")
    assert json.loads((again / "metrics.json").read_text()) == json.loads((reference_run / "metrics.json").read_text())


def test_another_seed_gives_other_numbers(graphs, reference_run, tmp_path):
    other = tmp_path / "other"
    run(train_cmd(graphs, other, epochs=2, seed=1))
    assert log_losses(other)[0] != log_losses(reference_run)[0]


def test_killed_run_resumes_to_the_same_result(graphs, reference_run, tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.Popen(train_cmd(graphs, out, epochs=6), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if (out / "log.csv").exists() and len(log_losses(out)) >= 2:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "training finished before it could be killed; make the test run longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before_kill = len(log_losses(out))
    assert 2 <= done_before_kill < 6
    run(train_cmd(graphs, out, epochs=6))
    run(evaluate_cmd(graphs, out))
    assert log_losses(out) == log_losses(reference_run)
    assert_same_weights(out / "best.pt", reference_run / "best.pt")
    assert json.loads((out / "metrics.json").read_text()) == json.loads((reference_run / "metrics.json").read_text())


def test_checkpoint_of_other_settings_is_not_resumed(graphs, reference_run, tmp_path):
    out = tmp_path / "changed"
    run(train_cmd(graphs, out, epochs=3, lr=1e-2))  # leaves state/last.pt of another run
    run(train_cmd(graphs, out, epochs=6))
    assert log_losses(out) == log_losses(reference_run)


def test_test_metrics_come_from_the_best_validation_epoch(reference_run):
    metrics = json.loads((reference_run / "metrics.json").read_text())
    val_losses = [float(v) for _, _, v in log_losses(reference_run)]
    assert metrics["best_epoch"] == int(np.argmin(val_losses)) + 1
    assert metrics["val"]["loss"] == pytest.approx(min(val_losses), rel=1e-5)
    rows = list(csv.DictReader(open(reference_run / "test_predictions.csv")))
    pred = np.array([[float(r[f"pred_{k}"]) for k in range(3)] for r in rows])
    y = np.array([[float(r[f"y_{k}"]) for k in range(3)] for r in rows])
    assert metrics["test"]["num_graphs"] == len(rows) == 6
    assert metrics["test"]["mse"] == pytest.approx(float(np.mean((pred - y) ** 2)), rel=1e-9)
    assert metrics["test"]["mse_area"] == pytest.approx(float(np.mean((pred[:, 2] - y[:, 2]) ** 2)), rel=1e-9)


def test_graphs_built_with_another_cutoff_are_refused(graphs, tmp_path):
    """The cutoff has one source: the graphs'. A config saying otherwise is an error naming both."""
    cmd = train_cmd(graphs, tmp_path / "run", epochs=1)
    cmd[cmd.index("--section") + 1] = json.dumps({"graph": {"cutoff": 10.0}})
    proc = call(cmd)
    assert proc.returncode == 1
    assert "built with cutoff 4.0 Å but the task's graph.cutoff is 10.0 Å" in proc.stderr
    cmd = train_cmd(graphs, tmp_path / "run", epochs=1, model='{"cutoff": 10.0}')
    proc = call(cmd)
    assert proc.returncode == 1 and "model cutoff 10.0 Å differs from the cutoff the graphs were built with (4.0 Å)" in proc.stderr
    assert not (tmp_path / "run" / "best.pt").exists()


def test_missing_data_is_a_clear_error(tmp_path):
    proc = call(train_cmd(tmp_path / "nowhere", tmp_path / "run", epochs=1))
    assert proc.returncode == 1
    assert "no shard manifest" in proc.stderr and "nowhere" in proc.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback")
def test_without_gpu_auto_and_amp_fall_back_to_cpu_with_warnings(graphs, reference_run, tmp_path):
    out = tmp_path / "auto"
    cmd = train_cmd(graphs, out, epochs=6)
    cmd[cmd.index("--device") + 1] = "auto"
    proc = call(cmd + ["--amp"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "no CUDA device available: running on the CPU" in proc.stderr
    assert "mixed precision requested but the device is cpu: training in float32" in proc.stderr
    assert log_losses(out) == log_losses(reference_run)
