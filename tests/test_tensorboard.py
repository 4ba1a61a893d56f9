"""TensorBoard event files behind one switch: training loss every N steps, the learning rate,
validation metrics per epoch; log.csv as without them; a clear error without the package."""
from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import pytest

pytest.importorskip("gemmi")

from eqgat.cli import main as eqgat_main  # noqa: E402
from eqgat.tasks import TASKS  # noqa: E402
from eqgat.tasks.config import task_section  # noqa: E402
from preprocess.task_shards import build_task_shards  # noqa: E402
from structure_dataset import write_dataset  # noqa: E402

TINY = json.dumps({"hidden_scalars": 16, "hidden_vectors": 4, "num_layers": 2, "num_radial": 8})


@pytest.fixture(scope="module")
def graphs(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("tb")
    labels = write_dataset(root / "data", 24, seed=7)
    section = {"files": str(root / "data"), "labels": str(labels)}
    out = root / "graphs"
    build_task_shards(TASKS["structures"], root / "data", out, 4.5, shard_size=8, progress=False,
                      options=task_section(TASKS["structures"], section))
    return out, section


def _train(graphs: Path, section: dict, run: Path, *flags: str) -> int:
    return eqgat_main(["train", "--task", "structures", "--data", str(graphs), "--section", json.dumps(section),
                       "--device", "cpu", "--out", str(run), "--epochs", "3", "--batch-size", "4", "--lr", "1e-3",
                       "--hparams", TINY, "--no-progress", *flags])


def _log(run: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(open(run / "log.csv"))]


def test_event_files_and_unchanged_log(graphs, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data, section = graphs
    assert _train(data, section, tmp_path / "plain") == 0
    assert _train(data, section, tmp_path / "tb", "--tensorboard", "--tensorboard-every", "2") == 0
    assert _log(tmp_path / "tb") == _log(tmp_path / "plain")  # the same training, the same log.csv
    assert not (tmp_path / "plain" / "tensorboard").exists()
    events = EventAccumulator(str(tmp_path / "tb" / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "epoch/train_loss", "val/loss", "val/rmse", "val/spearman"} <= tags
    steps_per_epoch = math.ceil(sum(1 for r in csv.DictReader(open(data / "split.csv")) if r["split"] == "train") / 4)
    assert [e.step for e in events.Scalars("train/loss")] == list(range(2, 3 * steps_per_epoch + 1, 2))
    log = list(csv.DictReader(open(tmp_path / "tb" / "log.csv")))
    for name, column in (("val/loss", "val_loss"), ("epoch/train_loss", "train_loss")):
        got = events.Scalars(name)
        assert [e.step for e in got] == [1, 2, 3]
        assert [e.value for e in got] == pytest.approx([float(r[column]) for r in log], rel=1e-6)
    lrs = [e.value for e in events.Scalars("train/lr")]
    assert max(lrs) == pytest.approx(1e-3, rel=1e-6) and min(lrs) > 0


def test_switched_on_without_the_package_is_a_clear_error(graphs, tmp_path, monkeypatch, caplog):
    data, section = graphs
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # "import tensorboard" fails
    monkeypatch.delitem(sys.modules, "torch.utils.tensorboard", raising=False)
    assert _train(data, section, tmp_path / "run", "--tensorboard") == 1
    assert "pip install -e '.[tensorboard]'" in caplog.text and "tensorboard: false" in caplog.text
    assert not (tmp_path / "run" / "best.pt").exists()
