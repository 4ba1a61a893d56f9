"""ATOM3D end to end, offline: tiny datasets in the real format (atom3d's writer), packed like
the Zenodo archives, served over HTTP from 127.0.0.1; the workflow downloads, shards, trains one
epoch, evaluates and puts every task in the results table."""
from __future__ import annotations

import copy
import csv
import json
import tarfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from atom3d_fixtures import make_dataset
from eqgat.tasks import archives
from workflow_helpers import TINY_CONFIG, copy_repo, planned_jobs, snakemake, write_config

pytestmark = pytest.mark.slow
TASKS = ("lba", "psr", "rsr", "res", "ppi")
DATASET = {"lba": "lba30", "psr": "psr", "rsr": "rsr", "res": "res", "ppi": "ppi"}


def pack_like_zenodo(task: str, fixture_root: Path, mirror: Path) -> None:
    """<mirror>/<record>/files/<archive>: each archive holds its top-level folder."""
    for archive in archives()[DATASET[task]]:
        folder = mirror / archive.record / "files"
        folder.mkdir(parents=True, exist_ok=True)
        with tarfile.open(folder / archive.filename, "w:gz") as tar:
            tar.add(fixture_root / archive.extracts_to, arcname=archive.extracts_to)


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    root = tmp_path_factory.mktemp("zenodo")
    for task in TASKS:
        source = tmp_path_factory.mktemp(f"fixture_{task}")
        make_dataset(task, source, bad=True)
        pack_like_zenodo(task, source, root)
        if task == "psr":  # the same records, published as a new ATOM3D-like dataset
            folder = root / "777" / "files"
            folder.mkdir(parents=True)
            with tarfile.open(folder / "TOY-split-by-year.tar.gz", "w:gz") as tar:
                tar.add(source / "split-by-year", arcname="split-by-year")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def atom3d_config(base_url: str) -> dict:
    config = copy.deepcopy(TINY_CONFIG)
    config["tasks"] = list(TASKS)
    config["seeds"] = [0]
    config["download"] = {"base_url": base_url, "retries": 1, "checksums": {}}
    tiny = {"hidden_scalars": 8, "hidden_vectors": 2, "num_layers": 1, "num_radial": 4}
    train = {"epochs": 1, "batch_size": 4, "lr": 1e-3}
    for task in TASKS:  # everything else from each task's paper protocol (eqgat/tasks/<task>.py)
        config[task] = {"model": {"overrides": {"eqgat": tiny}}, "train": train}
    config["lba"]["split"] = 30
    return config


def test_every_task_from_download_to_table(mirror, tmp_path):
    workdir = copy_repo(tmp_path)
    configfile = write_config(workdir, atom3d_config(mirror))
    snakemake(workdir, "all", "--cores", "2", "--configfile", str(configfile))

    rows = list(csv.DictReader(open(workdir / "results/summary/results.csv")))
    metrics = {(r["task"], r["metric"]) for r in rows if r["model"] == "eqgat"}
    assert {("lba", "rmse"), ("psr", "mean_spearman"), ("psr", "global_spearman"), ("rsr", "mean_spearman"),
            ("rsr", "global_spearman"), ("res", "accuracy"), ("ppi", "roc_auc")} <= metrics
    md = (workdir / "results/summary/results.md").read_text()
    for task in TASKS:
        assert f"## {task}: " in md
    # the paper's EQGAT row beside ours
    (lba,) = [r for r in rows if r["task"] == "lba" and r["metric"] == "rmse"]
    assert float(lba["paper_mean"]) == pytest.approx(1.440)
    # bad records were skipped and counted, good ones kept
    report = json.loads((workdir / "results/psr/graphs/skip_report.json").read_text())
    assert report["train"]["counts"] == {"empty_atoms": 1, "missing_label": 1, "nan_coordinates": 1}
    assert report["train"]["num_graphs"] >= 1
    # the archive is kept: a rerun with another mirror re-extracts but downloads nothing
    assert (workdir / "resources/archives/PSR-split-by-year.tar.gz").exists()
    metrics_json = json.loads((workdir / "results/res/runs/eqgat/seed0/metrics.json").read_text())
    assert 0.0 <= metrics_json["test"]["accuracy"] <= 1.0

    # nothing left to do; an edit to the readers rebuilds every task's graphs, downloads nothing
    assert planned_jobs(workdir, configfile) == {}
    reader = workdir / "preprocess" / "readers" / "lmdb_records.py"
    reader.write_text(reader.read_text() + "\n# an edit to the record reader\n")
    jobs = planned_jobs(workdir, configfile)
    assert jobs["build_graphs"] == len(TASKS) and jobs["train"] == len(TASKS)
    assert not any(rule.startswith("download") for rule in jobs)


def test_strict_mode_names_the_bad_record(mirror, tmp_path):
    workdir = copy_repo(tmp_path)
    config = atom3d_config(mirror)
    config["tasks"] = ["psr"]
    config["psr"]["strict"] = True
    configfile = write_config(workdir, config)
    proc = snakemake(workdir, "results/psr/graphs", "--cores", "1", "--configfile", str(configfile), check=False)
    assert proc.returncode != 0
    log = (workdir / "logs/psr/graphs.log").read_text()
    assert "bad_nan" in log or "nan" in log.lower()
    assert not (workdir / "results/psr/graphs/manifest.json").exists()


TOY_TASK = '''"""Toy: how many heavy atoms has a protein decoy? An ATOM3D-like task in one module."""
from __future__ import annotations

import numpy as np

from eqgat import metrics as M
from preprocess.download import Archive
from preprocess.readers import Sample, atom_table, coordinates, drop_hydrogens, elements, guard, record_id
from preprocess.sources import LmdbSplits

from ._atom3d import ATOM3D_OPTIONS, EQGAT_ATOM3D
from .spec import Label, Metric, TaskSpec, atom3d_protocol


def samples(record, index, strict=False, report=None):
    def sample():
        atoms = drop_hydrogens(atom_table(record, "atoms"))
        z, _ = elements(atoms, report)
        return Sample(id=record_id(record, index), pos=coordinates(atoms), z=z, y=np.array([len(atoms)], np.float32))

    s = guard(record, index, strict, report, sample)
    if s is not None:
        yield s


def evaluate(pred, y, columns):
    return {"mae": M.mae(pred.reshape(-1), y.reshape(-1))}


TASK = TaskSpec(
    name="toy", title="Heavy atoms of a decoy",
    source=LmdbSplits(datasets={"toy": (Archive("toy", "777", "TOY-split-by-year.tar.gz", "split-by-year",
                                                "split-by-year/data/{train,val,test}", None),)}),
    reader=samples, label=Label("regression", ("heavy_atoms",)), readout="graph",
    metrics=(Metric("mae", False, in_table=True),), evaluate=evaluate,
    model=dict(EQGAT_ATOM3D, num_layers=2), protocol=atom3d_protocol(epochs=1, batch_size=2),
    options_schema=ATOM3D_OPTIONS,
)
'''


def test_a_new_task_is_one_module_one_registry_line_and_its_config(mirror, tmp_path):
    """What adding an ATOM3D-like task takes: its module (reader + declaration), one line in the
    registry and a config section. Download rule, schema, shards, training, table: all derived."""
    workdir = copy_repo(tmp_path)
    (workdir / "eqgat" / "tasks" / "toy.py").write_text(TOY_TASK)
    registry = workdir / "eqgat" / "tasks" / "__init__.py"
    text = registry.read_text()
    assert text.count("_MODULES: tuple[ModuleType, ...] = (") == 1
    registry.write_text(text.replace("from .spec import TaskSpec", "from . import toy\nfrom .spec import TaskSpec")
                        .replace("_MODULES: tuple[ModuleType, ...] = (", "_MODULES: tuple[ModuleType, ...] = (toy, "))
    config = atom3d_config(mirror)
    config["tasks"] = ["toy"]
    config["toy"] = {"model": {"overrides": {"eqgat": {"hidden_scalars": 8, "hidden_vectors": 2, "num_radial": 4}}},
                     "max_records": 2}
    configfile = write_config(workdir, config)
    assert planned_jobs(workdir, configfile) == {"download_toy": 1, "graphs_check": 1, "build_graphs": 1, "train": 1, "evaluate": 1,
                                                 "aggregate": 1, "plot_test": 1, "all": 1}
    snakemake(workdir, "all", "--cores", "2", "--configfile", str(configfile))
    md = (workdir / "results/summary/results.md").read_text()
    assert "## toy: Heavy atoms of a decoy (mae ↓)" in md
    metrics = json.loads((workdir / "results/toy/runs/eqgat/seed0/metrics.json").read_text())
    assert metrics["test"]["num_graphs"] >= 1 and metrics["test"]["mae"] >= 0
    bad = copy.deepcopy(config)
    bad["toy"]["train"] = {"loss": "cross_entropy"}  # the schema knows the new task's losses
    proc = snakemake(workdir, "all", "-n", "--configfile", str(write_config(workdir, bad, "bad.yaml")), check=False)
    assert proc.returncode != 0 and "toy.train.loss" in proc.stdout + proc.stderr
