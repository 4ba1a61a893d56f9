"""Users' structures as a task: shards from a folder and a labels CSV (regression and classes),
training, evaluation, and predictions for new files from the checkpoint alone."""
from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("gemmi")

from eqgat.tasks import TASKS  # noqa: E402
from eqgat.tasks.config import task_section  # noqa: E402
from preprocess.shards import read_manifest  # noqa: E402
from preprocess.task_shards import build_task_shards  # noqa: E402
from cli_runner import run_module  # noqa: E402
from structure_dataset import write_dataset  # noqa: E402
from structure_fixtures import peptide, write_structure  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TINY = json.dumps({"hidden_scalars": 16, "hidden_vectors": 4, "num_layers": 2, "num_radial": 8})


def eqgat(*args: str) -> subprocess.CompletedProcess:
    return run_module("eqgat", *args, cwd=REPO)


def run_ok(*args: str) -> None:
    proc = eqgat(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]


def trained(root: Path, kind: str) -> tuple[Path, Path, dict]:
    """Graphs, a trained run and the section of a 40-file structures dataset of `kind`."""
    labels = write_dataset(root / "data", 40, seed=1, kind=kind)
    section = {"files": str(root / "data"), "labels": str(labels), "kind": kind}
    graphs = root / "graphs"
    build_task_shards(TASKS["structures"], root / "data", graphs, 4.5, shard_size=16, progress=False,
                      options=task_section(TASKS["structures"], section))
    run = root / "run"
    run_ok("train", "--task", "structures", "--data", str(graphs), "--out", str(run), "--device", "cpu", "--seed", "0",
           "--epochs", "10", "--batch-size", "8", "--lr", "3e-3", "--section", json.dumps(section), "--hparams", TINY,
           "--no-progress")
    run_ok("evaluate", "--task", "structures", "--data", str(graphs), "--checkpoint", str(run / "best.pt"),
           "--out", str(run / "metrics.json"), "--predictions", str(run / "test_predictions.csv"),
           "--section", json.dumps(section), "--device", "cpu")
    return graphs, run, section


@pytest.fixture(scope="module")
def regression(tmp_path_factory):
    return trained(tmp_path_factory.mktemp("st_reg"), "regression")


@pytest.fixture(scope="module")
def classes(tmp_path_factory):
    return trained(tmp_path_factory.mktemp("st_cls"), "classification")


def test_regression_shards_split_and_metrics(regression):
    graphs, run, section = regression
    manifest = read_manifest(graphs / "manifest.json")
    assert {s: v["num_graphs"] for s, v in manifest["splits"].items()} == {"train": 32, "val": 4, "test": 4}
    assert manifest["attrs"]["label_kind"] == "regression"
    split = list(csv.DictReader(open(graphs / "split.csv")))
    assert len(split) == 40 and {r["split"] for r in split} == {"train", "val", "test"}
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["table_metrics"] == ["rmse", "mae", "pearson", "spearman"]
    assert metrics["directions"]["pearson"] == "higher" and metrics["directions"]["rmse"] == "lower"
    # the oxygen share is learnable: validation loss fell well below the training mean's (both
    # losses of the standardised targets, the task's default)
    log = list(csv.DictReader(open(run / "log.csv")))
    trivial = json.loads((run / "train.json").read_text())["trivial"]
    assert min(float(r["val_loss"]) for r in log) < 0.5 * trivial["val_loss"]
    assert metrics["learned"] is True
    rows = list(csv.DictReader(open(run / "test_predictions.csv")))
    assert {r["file"] for r in rows} <= {r["file"] for r in split if r["split"] == "test"}


def test_classes_are_sorted_labels_in_shards_and_checkpoint(classes):
    graphs, run, _ = classes
    attrs = read_manifest(graphs / "manifest.json")["attrs"]
    assert json.loads(attrs["label_names"]) == ["nitrogen", "oxygen"] and attrs["label_kind"] == "classification"
    saved = torch.load(run / "best.pt", map_location="cpu", weights_only=True)
    assert saved["data"]["label_names"] == ["nitrogen", "oxygen"] and saved["data"]["label_kind"] == "classification"
    assert saved["model_spec"]["hparams"]["out_dim"] == 2 and saved["loss"] == "cross_entropy"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["table_metrics"] == ["accuracy", "balanced_accuracy"]
    assert 0.0 <= metrics["test"]["accuracy"] <= 1.0


def test_predict_regression_one_row_per_file(regression, tmp_path):
    graphs, run, section = regression
    new = tmp_path / "new"
    write_dataset(new, 6, seed=9)
    (new / "broken.pdb").write_text("HETATM    1  C1  MOL A   1      abc\n")
    out = tmp_path / "pred.csv"
    run_ok("predict", "--checkpoint", str(run / "best.pt"), "--out", str(out), "--device", "cpu", "--no-progress",
           str(new), str(tmp_path / "missing.cif"))
    rows = list(csv.DictReader(open(out)))
    assert list(rows[0]) == ["file", "prediction", "error"]
    by_file = {Path(r["file"]).name: r for r in rows}
    assert len(rows) == 8 and {"broken.pdb", "missing.cif"} <= set(by_file)
    assert by_file["broken.pdb"]["prediction"] == "" and "unparseable" in by_file["broken.pdb"]["error"]
    assert "missing_file" in by_file["missing.cif"]["error"]
    scored = [r for r in rows if not r["error"]]
    assert len(scored) == 6 and all(np.isfinite(float(r["prediction"])) for r in scored)


def test_predict_equals_the_evaluated_model_on_the_same_files(regression, tmp_path):
    """A test file scored by predict gets the prediction evaluate wrote for it."""
    graphs, run, section = regression
    rows = list(csv.DictReader(open(run / "test_predictions.csv")))
    files = [str(Path(section["files"]) / r["file"]) for r in rows]
    out = tmp_path / "pred.csv"
    run_ok("predict", "--checkpoint", str(run / "best.pt"), "--out", str(out), "--device", "cpu", "--no-progress",
           "--batch-size", "3", *files)
    predicted = {Path(r["file"]).name: float(r["prediction"]) for r in csv.DictReader(open(out))}
    for r in rows:
        assert predicted[Path(r["file"]).name] == pytest.approx(float(r["pred_0"]), rel=1e-5, abs=1e-6)


def test_predict_classes_names_and_probabilities(classes, tmp_path):
    _, run, section = classes
    out = tmp_path / "pred.csv"
    files = sorted(str(p) for p in Path(section["files"]).glob("mol00*"))
    run_ok("predict", "--checkpoint", str(run / "best.pt"), "--out", str(out), "--device", "cpu", "--no-progress", *files)
    rows = list(csv.DictReader(open(out)))
    assert list(rows[0]) == ["file", "prediction", "prob_nitrogen", "prob_oxygen", "error"]
    for r in rows:
        p = [float(r["prob_nitrogen"]), float(r["prob_oxygen"])]
        assert sum(p) == pytest.approx(1.0) and r["prediction"] == ("nitrogen", "oxygen")[int(np.argmax(p))]


def test_predict_refuses_what_it_cannot_use(regression, tmp_path):
    _, run, _ = regression
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    proc = eqgat("predict", "--checkpoint", str(junk), "--out", str(tmp_path / "o.csv"), str(tmp_path / "x.pdb"))
    assert proc.returncode == 1 and "junk.pt" in proc.stderr and "not a readable checkpoint" in proc.stderr
    state = torch.load(run / "best.pt", map_location="cpu", weights_only=True)
    for change, message in ((lambda s: s.pop("data"), "no reading settings"),
                            (lambda s: s["data"].update(task="res"), "predict scores whole structures"),
                            (lambda s: s["data"].update(elements=["C"]), "element vocabulary")):
        bad = {**state, "data": dict(state["data"])}
        change(bad)
        path = tmp_path / "bad.pt"
        torch.save(bad, path)
        proc = eqgat("predict", "--checkpoint", str(path), "--out", str(tmp_path / "o.csv"), str(tmp_path / "x.pdb"))
        assert proc.returncode == 1 and message in proc.stderr and "bad.pt" in proc.stderr, proc.stderr[-800:]
    assert not (tmp_path / "o.csv").exists()


def test_lba_ligand_is_marked_by_residue_name(tmp_path):
    """LBA models read the pocket (residues near the ligand), then the ligand, hydrogens kept."""
    from eqgat.predict import ReadingSettings, read_graph

    path = write_structure(peptide(), tmp_path / "complex.pdb")
    settings = ReadingSettings("lba", 4.5, None, "regression", ("neglog_aff",), {}, tuple(
        __import__("preprocess.elements", fromlist=["ELEMENTS"]).ELEMENTS))
    with pytest.raises(ValueError, match="needs the ligand"):
        read_graph(path, settings)
    with pytest.raises(ValueError, match="no residue named 'XYZ'"):
        read_graph(path, settings, "XYZ")
    from preprocess.readers.structures import StructureOptions, read_structure

    atoms = read_structure(path, StructureOptions(hydrogens="keep"))
    ligand = atoms.residue_names == "ACT"
    data = read_graph(path, settings, "ACT", pocket_radius=3.0)
    n_lig = int(ligand.sum())
    np.testing.assert_array_equal(data.pos[-n_lig:].numpy(), atoms.pos[ligand])  # the ligand comes last
    pocket = data.pos[:-n_lig].numpy()
    d = np.linalg.norm(pocket[:, None] - atoms.pos[ligand][None], axis=-1).min(axis=1)
    assert len(pocket) > 0 and (d < 3.0 + 1e-6).any()
    wide = read_graph(path, settings, "ACT", pocket_radius=100.0)
    assert wide.num_nodes == atoms.num_atoms
