"""The launcher: torchrun starts the ranks of one run on this machine (`python -m eqgat.launch`,
as the train rule calls it); a run stopped by its deadline returns exit status 75 and resumes."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from test_distributed import final
from workflow_helpers import REPO

TINY = {"hidden_scalars": 8, "hidden_vectors": 2, "num_layers": 1, "num_radial": 4}


def launch(graphs, out, ranks: int, batch_size: int, *extra: str) -> subprocess.CompletedProcess:
    section = json.dumps({"graph": {"cutoff": 4.0}, "train": {"epochs": 2, "batch_size": batch_size, "lr": 1e-3,
                                                               "checkpoint_minutes": 0}})
    return subprocess.run(
        [sys.executable, "-m", "eqgat.launch", "--ranks", str(ranks), "--threads", "1", "--", "--task", "triangle",
         "--data", str(graphs), "--out", str(out), "--device", "cpu", "--section", section, "--hparams",
         json.dumps(TINY), "--no-progress", *extra],
        cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_torchrun_two_ranks_resume_bit_for_bit(tiny_workflow, tmp_path):
    graphs = tiny_workflow[0] / "results/triangle/graphs"
    ref = launch(graphs, tmp_path / "ref", 2, 4)
    assert ref.returncode == 0, ref.stderr[-3000:]
    assert "torch.distributed.run" in ref.stderr and "rank 0 of 2" in ref.stderr
    statuses = []
    while not (tmp_path / "stopped" / "train.json").exists():
        done = launch(graphs, tmp_path / "stopped", 2, 4, "--stop-after-steps", "3")
        statuses.append(done.returncode)
        assert len(statuses) < 8, done.stderr[-3000:]
    assert statuses[:-1] == [75] * (len(statuses) - 1) and statuses[-1] == 0 and len(statuses) >= 2
    a, b = final(tmp_path / "ref"), final(tmp_path / "stopped")
    assert a["log"] == b["log"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    summary = json.loads((tmp_path / "ref" / "train.json").read_text())
    assert summary["ranks"] == 2

    # one process on the same global batch: the same losses up to float32 rounding (the float64
    # equality of the weights is tests/test_distributed.py's; in float32, Adam turns rounding
    # noise in near-zero gradients into steps of the learning rate's size)
    one = launch(graphs, tmp_path / "one", 1, 8)
    assert one.returncode == 0, one.stderr[-3000:]
    for x, y in zip(a["log"], final(tmp_path / "one")["log"]):
        for key in ("train_loss", "val_loss"):
            assert float(x[key]) == pytest.approx(float(y[key]), rel=1e-5), key
