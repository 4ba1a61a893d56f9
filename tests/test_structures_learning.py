"""The `structures` defaults learn on real proteins: crops of the chains MDAnalysisTests ships,
labelled by their radius of gyration in an arbitrary unit, trained with no training settings
in the section, beat the training-mean predictor's test RMSE by 2x (a smaller version of the
measurement in docs/performance.md, "Your own structures")."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("gemmi")
pytest.importorskip("MDAnalysisTests")

from eqgat.cli import main as eqgat_main  # noqa: E402
from eqgat.tasks import TASKS  # noqa: E402
from eqgat.tasks.config import task_section  # noqa: E402
from preprocess.task_shards import build_task_shards  # noqa: E402
from real_structures import OFFSET, write_crops  # noqa: E402


@pytest.mark.slow
def test_defaults_learn_real_structures(tmp_path):
    labels = write_crops(tmp_path / "data", 200, seed=0, radius=(4.5, 8.0))
    # no training settings; a narrower EQGAT (5 layers, 48 scalar / 8 vector channels) keeps the test short
    section = {"files": str(tmp_path / "data"), "labels": str(labels),
               "model": {"overrides": {"eqgat": {"hidden_scalars": 48, "hidden_vectors": 8, "num_layers": 5}}}}
    graphs = tmp_path / "graphs"
    build_task_shards(TASKS["structures"], tmp_path / "data", graphs, 4.5, shard_size=500, progress=False,
                      options=task_section(TASKS["structures"], section))
    run = tmp_path / "run"
    common = ["--task", "structures", "--data", str(graphs), "--section", json.dumps(section), "--device", "cpu",
              "--threads", "1"]
    assert eqgat_main(["train", *common, "--out", str(run), "--no-progress"]) == 0
    assert eqgat_main(["evaluate", *common, "--checkpoint", str(run / "best.pt"), "--out", str(run / "metrics.json"),
                       "--predictions", str(run / "test_predictions.csv")]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["learned"] is True
    assert metrics["test"]["rmse"] <= 0.5 * metrics["trivial"]["test"]["rmse"], metrics
    assert metrics["test"]["spearman"] > 0.8
    assert metrics["target_scaling"]["mean"][0] > OFFSET  # labels far from the model's initial outputs
