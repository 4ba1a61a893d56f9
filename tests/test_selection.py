"""The best checkpoint and the LR plateau follow the task's declared selection metric: the
validation loss by default, ROC-AUC (higher is better) for PPI."""
import csv
import json
import math

import numpy as np
import pytest
import torch

pytest.importorskip("lmdb")
pytest.importorskip("atom3d")

import atom3d_fixtures as af  # noqa: E402
from eqgat.cli import main as eqgat_main  # noqa: E402
from eqgat.tasks import TASKS  # noqa: E402
from eqgat.train.loop import TrainSettings  # noqa: E402
from eqgat.train.schedule import LearningRate  # noqa: E402
from preprocess.task_shards import build_task_shards  # noqa: E402

TINY = json.dumps({"hidden_scalars": 6, "hidden_vectors": 2, "num_layers": 1, "num_radial": 3})


@pytest.fixture(scope="module")
def ppi_graphs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ppi_sel")
    recs = [af.many_pairs_record(f"c{k}", 7 + k, 8) for k in range(4)]
    af._write_splits(root, "ppi", {"train": recs, "val": recs[1:], "test": recs[:1]})
    build_task_shards(TASKS["ppi"], root, root / "graphs", cutoff=4.5, shard_size=2, progress=False)
    return root / "graphs"


def train(graphs, out, seed, selection):
    args = ["train", "--task", "ppi", "--model", "eqgat", "--data", str(graphs), "--out", str(out), "--device", "cpu",
            "--seed", str(seed), "--epochs", "6", "--batch-size", "8", "--lr", "0.05", "--hparams", TINY,
            "--no-progress", "--selection", selection]
    assert eqgat_main(args) == 0
    return list(csv.DictReader(open(out / "log.csv"))), json.loads((out / "train.json").read_text())


def test_checkpoint_follows_roc_auc_where_it_disagrees_with_the_loss(ppi_graphs, tmp_path):
    """Runs are searched for one whose best-AUROC epoch is not its lowest-loss epoch; there the
    checkpoint is the best-AUROC one, and selecting by loss from the same run picks the other."""
    for seed in range(12):
        log, summary = train(ppi_graphs, tmp_path / f"auc{seed}", seed, "roc_auc")
        auc = [float(r["val_selection"]) for r in log]
        loss = [float(r["val_loss"]) for r in log]
        best_auc = max(range(len(auc)), key=lambda i: (auc[i], -i)) + 1
        best_loss = int(np.argmin(loss)) + 1
        assert {r["selection"] for r in log} == {"roc_auc"}
        assert summary["best_epoch"] == min(i + 1 for i, a in enumerate(auc) if a == max(auc))
        if best_auc != best_loss:
            break
    else:
        pytest.fail("no seed where validation loss and ROC-AUC pick different epochs")
    _, by_loss = train(ppi_graphs, tmp_path / "loss", seed, "loss")
    assert by_loss["best_epoch"] == best_loss != summary["best_epoch"]
    assert summary["best_val_selection"] == pytest.approx(max(auc))
    assert by_loss["best_val_selection"] == pytest.approx(min(loss))


def test_plateau_direction_follows_the_metric():
    model = torch.nn.Linear(1, 1)
    # patience 1: the second epoch in a row without improvement halves the rate for the next
    for selection, values, expected in (("roc_auc", [0.5, 0.6, 0.4, 0.4, 0.4], [1.0, 1.0, 1.0, 1.0, 0.5]),
                                        ("loss", [0.5, 0.6, 0.7, 0.8, 0.9], [1.0, 1.0, 1.0, 0.5, 0.5])):
        opt = torch.optim.Adam(model.parameters(), lr=1.0)
        settings = TrainSettings(epochs=5, batch_size=1, lr=1.0, lr_factor=0.5, lr_patience=1, lr_min=0.0,
                                 selection=selection)
        schedule = LearningRate(opt, settings, steps_per_epoch=1,
                                higher_is_better=TASKS["ppi"].selection_higher_is_better(selection))
        seen = []
        for v in values:
            schedule.before_step()
            seen.append(opt.param_groups[0]["lr"])
            schedule.end_epoch(v)
        assert seen == expected, selection


def test_warmup_then_cosine():
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.Adam(model.parameters(), lr=1.0)
    settings = TrainSettings(epochs=3, batch_size=1, lr=2.0, schedule="cosine", warmup_epochs=1, lr_min=0.0)
    schedule = LearningRate(opt, settings, steps_per_epoch=4, higher_is_better=False)
    lrs = []
    for _ in range(12):
        schedule.before_step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[:4] == [0.5, 1.0, 1.5, 2.0]  # linear warm-up over one epoch
    t = [(s - 4) / 8 for s in range(4, 12)]
    assert lrs[4:] == pytest.approx([2.0 * 0.5 * (1 + math.cos(math.pi * x)) for x in t])


def test_cosine_over_the_last_decay_epochs_only():
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.Adam(model.parameters(), lr=1.0)
    settings = TrainSettings(epochs=4, batch_size=1, lr=2.0, schedule="cosine", warmup_epochs=1,
                             decay_epochs=2, lr_min=0.0)
    schedule = LearningRate(opt, settings, steps_per_epoch=2, higher_is_better=False)
    lrs = []
    for _ in range(8):
        schedule.before_step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[:2] == [1.0, 2.0]  # warm-up over the first epoch
    assert lrs[2:4] == [2.0, 2.0]  # constant until the last two epochs
    assert lrs[4:] == pytest.approx([2.0 * 0.5 * (1 + math.cos(math.pi * s / 4)) for s in range(4)])
