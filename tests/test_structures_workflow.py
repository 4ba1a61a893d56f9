"""Your own structures through the workflow: a folder and a labels CSV become a task, a trained
checkpoint scores new files, `snakemake --report` holds the table and the plots, and the stages
rerun when the folder or the CSV change."""
from __future__ import annotations

import copy
import csv
import json
import shutil

import pytest

pytest.importorskip("gemmi")

from structure_dataset import write_dataset  # noqa: E402
from workflow_helpers import TINY_CONFIG, copy_repo, planned_jobs, snakemake, write_config  # noqa: E402

pytestmark = pytest.mark.slow

RUN_JOBS = {"train": 1, "evaluate": 1, "aggregate": 1, "plot_test": 1, "predict": 1, "all": 1}


def structures_config() -> dict:
    config = copy.deepcopy(TINY_CONFIG)
    config.update(tasks=["structures"], seeds=[0])
    config["preprocess"]["workers"] = 2  # a Dask cluster: its teardown must stay out of the log
    config["structures"] = {
        "files": "my data", "labels": "my data/labels.csv", "kind": "regression",
        "model": {"overrides": {"eqgat": {"hidden_scalars": 16, "hidden_vectors": 4, "num_layers": 2, "num_radial": 8}}},
        "train": {"epochs": 4, "batch_size": 8, "lr": 3e-3},
    }
    config["predict"] = {"checkpoint": "results/structures/runs/eqgat/seed0/best.pt", "files": ["new files"]}
    return config


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    workdir = copy_repo(tmp_path_factory.mktemp("structures_wf"))
    labels = write_dataset(workdir / "my data", 40, seed=1)
    (workdir / "my data" / "broken.pdb").write_text("HETATM    1  C1  MOL A   1      abc\n")
    with open(labels, "a") as fh:
        fh.write("broken.pdb,0.5\nmissing.pdb,0.5\n")
    shutil.copy(workdir / "my data" / "mol001.cif.gz", workdir / "my data" / "unlabelled.cif.gz")
    write_dataset(workdir / "new files", 5, seed=7)
    configfile = write_config(workdir, structures_config())
    snakemake(workdir, "all", "--cores", "2", "--configfile", str(configfile))
    return workdir, configfile


def test_table_predictions_split_and_skips(finished):
    workdir, _ = finished
    rows = [r for r in csv.DictReader(open(workdir / "results/summary/results.csv")) if r["task"] == "structures"]
    assert [r["metric"] for r in rows] == ["rmse", "mae", "pearson", "spearman"]
    assert [r["direction"] for r in rows] == ["lower", "lower", "higher", "higher"]
    md = (workdir / "results/summary/results.md").read_text()
    assert "## structures: Your own structures" in md and "(paper)" not in md.split("## structures")[1]
    predictions = list(csv.DictReader(open(workdir / "results/predictions.csv")))
    assert len(predictions) == 5 and all(r["prediction"] and not r["error"] for r in predictions)
    split = list(csv.DictReader(open(workdir / "results/structures/graphs/split.csv")))
    assert len(split) == 41 and "broken.pdb" in {r["file"] for r in split}  # listed and found: split
    report = json.loads((workdir / "results/structures/graphs/skip_report.json").read_text())
    assert report["sources"]["counts"] == {"missing_file": 1, "unlabelled_file": 1}
    skipped_in_reading = sum(report[s]["counts"].get("unparseable", 0) for s in ("train", "val", "test"))
    assert skipped_in_reading == 1
    assert sum(report[s]["num_graphs"] for s in ("train", "val", "test")) == 40
    log = (workdir / "logs/structures/graphs.log").read_text()
    assert "distributed" not in log and "Traceback" not in log and "WARNING" not in log
    assert "built 40 graphs" in log


def test_report_holds_table_curves_and_plots(finished):
    workdir, configfile = finished
    snakemake(workdir, "--report", "report.html", "--configfile", str(configfile))
    html = (workdir / "report.html").read_text()
    for text in ("Test-set metrics of every (task, model)", "Training (dotted) and validation (solid) loss",
                 "Test predictions of structures", "results.csv", "learning_curves.png", "test_predictions.png",
                 "predictions.csv"):
        assert text in html, text
    assert html.count("data:image/png;base64") >= 2 or html.count("image/png") >= 2


def test_nothing_to_do_then_reruns_after_folder_or_csv_changes(finished):
    workdir, configfile = finished
    assert planned_jobs(workdir, configfile) == {}
    folder = workdir / "my data"
    extra = folder / "sub" / "extra.pdb"
    shutil.copy(folder / "mol003.pdb", extra)  # a new file in the folder
    try:
        assert planned_jobs(workdir, configfile) == {"build_graphs": 1, **RUN_JOBS}
    finally:
        extra.unlink()
    assert planned_jobs(workdir, configfile) == {}
    labels = folder / "labels.csv"
    original = labels.read_bytes()  # as bytes: the CSV has CRLF line ends
    try:
        rows = original.decode().splitlines()
        rows[3] = rows[3].split(",")[0] + ",0.9999"  # one edited label
        labels.write_text("\n".join(rows) + "\n")
        assert planned_jobs(workdir, configfile) == {"build_graphs": 1, **RUN_JOBS}
    finally:
        labels.write_bytes(original)
    assert planned_jobs(workdir, configfile) == {}


def test_a_new_file_to_score_reruns_predict_only(finished):
    workdir, configfile = finished
    new = workdir / "new files" / "late.pdb"
    shutil.copy(workdir / "new files" / "mol003.pdb", new)
    try:
        assert planned_jobs(workdir, configfile) == {"predict": 1, "all": 1}
    finally:
        new.unlink()
