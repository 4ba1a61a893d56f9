"""One run on several gloo ranks (torch.distributed, DDP) equals one process on the global
batch, and a run stopped at any point and resumed equals the uninterrupted run, bit for bit."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from ddp_harness import TRAIN_GRAPHS, VAL_GRAPHS, launch

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def final(run_dir: Path) -> dict:
    """The final weights (the resume state's) and the per-epoch log without wall times."""
    state = torch.load(run_dir / "state" / "last.pt", weights_only=True)
    with open(run_dir / "log.csv") as fh:
        rows = [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(fh)]
    return {"model": state["model"], "log": rows, "best": torch.load(run_dir / "best.pt", weights_only=True)["model"]}


def assert_close(a: dict, b: dict, rel: float) -> None:
    for name in a:
        x, y = a[name], b[name]
        scale = max(float(y.abs().max()), 1e-30)
        assert float((x - y).abs().max()) <= rel * scale, name


def test_two_ranks_equal_one_process_on_the_global_batch(tmp_path):
    """2 ranks of batch 2 (7 graphs: steps of 2+2 and 2+1 graphs of unequal atoms) and one
    process of batch 4: Adam, clipping (active: clip 0.05) and the cosine schedule with warm-up,
    2 epochs = 4 steps, float64."""
    launch(1, tmp_path / "one", batch_size=4)
    launch(2, tmp_path / "two", batch_size=2)
    one, two = final(tmp_path / "one"), final(tmp_path / "two")
    assert_close(two["model"], one["model"], 1e-10)
    assert_close(two["best"], one["best"], 1e-10)
    for a, b in zip(two["log"], one["log"]):
        for key in ("train_loss", "val_loss", "val_selection", "lr"):
            assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-10, abs=1e-14), key
    initial = torch.load(tmp_path / "one" / "best.pt", weights_only=True)  # the run moved its weights
    assert len(one["log"]) == 2 and initial["epoch"] in (1, 2)


def test_two_ranks_differ_from_a_per_rank_loss(tmp_path):
    """The gradient is the global batch's: one process on batch 2 (what each rank would do on
    its own) ends elsewhere, so the equality above is not vacuous."""
    launch(1, tmp_path / "small", batch_size=2)
    launch(1, tmp_path / "global", batch_size=4)
    small, glob = final(tmp_path / "small"), final(tmp_path / "global")
    diff = max(float((small["model"][k] - glob["model"][k]).abs().max()) for k in glob["model"])
    assert diff > 1e-6


@pytest.mark.parametrize("ranks,stop_after", [(1, 1), (1, 2), (2, 2), (2, 3)])
def test_stopped_and_resumed_equals_uninterrupted(tmp_path, ranks, stop_after):
    """Stopped after `stop_after` steps of each attempt (2 steps per epoch: mid-epoch, or at the
    end of an epoch's steps before its validation), resumed until done: the same weights, log and best model, bit for bit."""
    batch = 4 // ranks
    launch(ranks, tmp_path / "ref", batch_size=batch)
    attempts = 0
    while not (tmp_path / "stopped" / "train.json").exists():
        launch(ranks, tmp_path / "stopped", batch_size=batch, stop_after_steps=stop_after)
        attempts += 1
        assert attempts < 10
    assert attempts >= 2
    ref, resumed = final(tmp_path / "ref"), final(tmp_path / "stopped")
    assert ref["log"] == resumed["log"]
    for key in ("model", "best"):
        assert all(torch.equal(ref[key][k], resumed[key][k]) for k in ref[key])
    lines = (tmp_path / "stopped" / "state" / "attempts.log").read_text().splitlines()
    assert sum("stopped (stop_after_steps" in line for line in lines) == attempts - 1
    assert "finished" in lines[-1]


def test_a_stop_on_another_rank_is_logged_with_its_reason(tmp_path):
    """Only rank 1 reaches its stop (rank 0 would go on): both stop at the same step, and rank 0,
    which alone writes the attempts log, names rank 1's reason and rank."""
    launch(2, tmp_path / "run", batch_size=2, stop_after_steps=1, stopping_rank=1)
    lines = (tmp_path / "run" / "state" / "attempts.log").read_text().splitlines()
    assert lines[-1].split(" ", 1)[1] == (
        "stopped (stop_after_steps 1, on rank 1) at epoch 1, step 1 of 2; "
        f"resume state {tmp_path / 'run' / 'state' / 'last.pt'}"), lines
    assert not (tmp_path / "run" / "train.json").exists()


def test_validation_covers_every_graph_once(tmp_path):
    """5 validation graphs on 2 ranks: the validation loss is that of one process."""
    launch(2, tmp_path / "two", batch_size=2, epochs=1)
    launch(1, tmp_path / "one", batch_size=4, epochs=1)
    two, one = final(tmp_path / "two"), final(tmp_path / "one")
    assert float(two["log"][0]["val_loss"]) == pytest.approx(float(one["log"][0]["val_loss"]), rel=1e-10)
    assert VAL_GRAPHS % 2 == 1 and TRAIN_GRAPHS % 4 != 0
