"""End-to-end: the Snakemake workflow on a tiny Triangle config, and what reruns after edits."""
from __future__ import annotations

import copy
import csv
import json
import platform

import pytest

from eqgat.provenance import code_version
from workflow_helpers import TINY_CONFIG, comment_appended, planned_jobs, snakemake, write_config

pytestmark = pytest.mark.slow


@pytest.fixture
def finished(tiny_workflow):
    """The tiny workflow, run to completion once per session (tests/conftest.py)."""
    return tiny_workflow


def test_results_table_matches_the_runs(finished):
    workdir, _ = finished
    summary = workdir / "results" / "summary"
    rows = list(csv.DictReader(open(summary / "results.csv")))
    (row,) = [r for r in rows if r["task"] == "triangle" and r["model"] == "eqgat" and r["metric"] == "mse"]
    runs = [json.loads((workdir / f"results/triangle/runs/eqgat/seed{s}/metrics.json").read_text()) for s in (0, 1)]
    values = [r["test"]["mse"] for r in runs]
    assert float(row["mean"]) == pytest.approx(sum(values) / 2)
    assert float(row["paper_mean"]) == pytest.approx(6.003)
    assert row["n_runs"] == "2"
    md = (summary / "results.md").read_text()
    assert "EQGAT" in md and "6.003 ± 0.432" in md and "SchNet (paper only)" in md
    png = (summary / "learning_curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # every log.csv has one row per epoch
    log = list(csv.DictReader(open(workdir / "results/triangle/runs/eqgat/seed0/log.csv")))
    assert [int(r["epoch"]) for r in log] == [1, 2]


def test_second_run_has_nothing_to_do(finished):
    workdir, configfile = finished
    assert planned_jobs(workdir, configfile) == {}


def test_lint_passes(finished):
    workdir, configfile = finished
    proc = snakemake(workdir, "--lint", "--configfile", str(configfile), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Lints for" not in proc.stdout + proc.stderr


def test_training_hyperparameter_reruns_training_and_what_follows(finished):
    workdir, _ = finished
    config = copy.deepcopy(TINY_CONFIG)
    config["triangle"]["train"]["lr"] = 5e-4
    changed = write_config(workdir, config, "changed_lr.yaml")
    assert planned_jobs(workdir, changed) == {"train": 2, "evaluate": 2, "aggregate": 1, "plot_test": 1, "all": 1}


def test_cutoff_reruns_graphs_and_what_follows(finished):
    workdir, _ = finished
    config = copy.deepcopy(TINY_CONFIG)
    config["triangle"]["graph"]["cutoff"] = 3.5
    changed = write_config(workdir, config, "changed_cutoff.yaml")
    assert planned_jobs(workdir, changed) == {"build_graphs": 1, "train": 2, "evaluate": 2, "aggregate": 1, "plot_test": 1, "all": 1}


def test_model_code_change_reruns_training(finished):
    workdir, configfile = finished
    with comment_appended(workdir / "eqgat" / "nn" / "conv.py", "an edit to the model's code"):
        assert planned_jobs(workdir, configfile) == {"train": 2, "evaluate": 2, "aggregate": 1, "plot_test": 1, "all": 1}
    assert planned_jobs(workdir, configfile) == {}


def test_command_line_code_change_reruns_training(finished):
    """eqgat/cli.py lays the config section over the protocol and checks the cutoff: its edits
    rerun every run (the code versions of train and evaluate cover it)."""
    workdir, configfile = finished
    with comment_appended(workdir / "eqgat" / "cli.py", "an edit to the command line"):
        assert planned_jobs(workdir, configfile) == {"train": 2, "evaluate": 2, "aggregate": 1, "plot_test": 1, "all": 1}


def test_rerun_after_a_code_change_trains_from_scratch(tiny_workflow_copy):
    """The finished run's resumable checkpoint was made by other code: it must not be resumed."""
    workdir, configfile = tiny_workflow_copy
    seeds = (0, 1)
    before = {s: run_record(workdir, s) for s in seeds}
    try:
        with comment_appended(workdir / "eqgat" / "nn" / "conv.py", "an edit to the model's code"):
            snakemake(workdir, "all", "--cores", "2", "--configfile", str(configfile))
            edited_version = code_version("train", "triangle", root=workdir)
        for s in seeds:
            log = (workdir / f"logs/triangle/eqgat/seed{s}/train.log").read_text()
            assert "resuming" not in log and "ignoring checkpoint" in log and "epoch 1/2" in log
            # the train job restarted itself with glibc's small-chunk caches off (eqgat.allocator.start_tuned)
            assert "tcache off, fastbins off;" in log or platform.libc_ver()[0] != "glibc"
            after = run_record(workdir, s)
            assert after["code_version"] == edited_version != before[s]["code_version"]
            # a comment changes no numbers: the retrained run reproduces the first one exactly
            assert after["losses"] == before[s]["losses"] and after["test"] == before[s]["test"]
    finally:  # the edit is undone: train again with the original code
        snakemake(workdir, "all", "--cores", "2", "--configfile", str(configfile))
    assert all(run_record(workdir, s)["code_version"] == before[s]["code_version"] for s in seeds)
    assert planned_jobs(workdir, configfile) == {}


def run_record(workdir, seed: int) -> dict:
    run = workdir / f"results/triangle/runs/eqgat/seed{seed}"
    return {
        "code_version": json.loads((run / "train.json").read_text())["code_version"],
        "losses": [(r["train_loss"], r["val_loss"]) for r in csv.DictReader(open(run / "log.csv"))],
        "test": json.loads((run / "metrics.json").read_text())["test"],
    }


def test_more_seeds_run_only_the_new_seed(finished):
    workdir, _ = finished
    config = copy.deepcopy(TINY_CONFIG)
    config["seeds"] = [0, 1, 2]
    changed = write_config(workdir, config, "more_seeds.yaml")
    assert planned_jobs(workdir, changed) == {"train": 1, "evaluate": 1, "aggregate": 1, "plot_test": 1, "all": 1}


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c["triangle"]["train"].update(epoch=3), "epoch"),
        (lambda c: c["triangle"]["graph"].update(cutoff="far"), "far"),
        (lambda c: c.update(models=["eqgat", "gcn"]), "gcn"),
    ],
)
def test_config_errors_are_reported_when_parsing(finished, edit, message):
    workdir, _ = finished
    config = copy.deepcopy(TINY_CONFIG)
    edit(config)
    bad = write_config(workdir, config, "bad.yaml")
    proc = snakemake(workdir, "all", "-n", "--cores", "1", "--configfile", str(bad), check=False)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr


def test_reader_code_change_does_not_rebuild_triangle_graphs(finished):
    workdir, configfile = finished
    with comment_appended(workdir / "preprocess" / "readers" / "ranking.py", "an edit to an ATOM3D reader"):
        assert planned_jobs(workdir, configfile) == {}
