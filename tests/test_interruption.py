"""A workflow killed with SIGKILL (graph building, training) completes when rerun with
`snakemake --unlock` then `--rerun-incomplete`, with outputs identical to an uninterrupted run."""
from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from workflow_helpers import TINY_CONFIG, copy_repo, snakemake, write_config

pytestmark = pytest.mark.slow


def start_snakemake(workdir: Path, configfile: Path, target: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "snakemake", target, "--cores", "1", "--configfile", str(configfile)]
    return subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def kill_when(proc: subprocess.Popen, condition, timeout: float = 300) -> None:
    """SIGKILL the whole process group (Snakemake and its jobs) once `condition()` holds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, "the workflow finished before it could be killed"
        if condition():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return
        time.sleep(0.01)
    raise AssertionError("condition never held")


def resume(workdir: Path, configfile: Path, target: str) -> None:
    snakemake(workdir, "--unlock", "--configfile", str(configfile))
    snakemake(workdir, target, "--cores", "1", "--rerun-incomplete", "--configfile", str(configfile))


def shard_contents(graphs: Path) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for path in sorted(graphs.rglob("*.h5")):
        with h5py.File(path, "r") as f:
            out[str(path.relative_to(graphs))] = {k: f[k][()] for k in f.keys()}
    return out


def test_kill_during_graph_building(tmp_path):
    config = copy.deepcopy(TINY_CONFIG)
    config["triangle"]["data"]["num_clouds"] = 20000
    config["preprocess"]["shard_size"] = 100
    reference, killed = copy_repo(_mk(tmp_path / "ref")), copy_repo(_mk(tmp_path / "killed"))
    target = "results/triangle/graphs"
    snakemake(reference, target, "--cores", "1", "--configfile", str(write_config(reference, config)))

    configfile = write_config(killed, config)
    graphs = killed / target
    proc = start_snakemake(killed, configfile, target)
    kill_when(proc, lambda: len(list(graphs.glob("train/shard-*.h5"))) >= 3)
    assert not (graphs / "manifest.json").exists()
    resume(killed, configfile, target)

    assert json.loads((graphs / "manifest.json").read_text())["splits"] == json.loads((reference / target / "manifest.json").read_text())["splits"]
    ours, theirs = shard_contents(graphs), shard_contents(reference / target)
    assert ours.keys() == theirs.keys()
    for name in ours:
        for key in theirs[name]:
            np.testing.assert_array_equal(ours[name][key], theirs[name][key], err_msg=f"{name}:{key}")


def test_kill_during_training(tiny_workflow, tmp_path):
    """Both workflows start from copies of the finished tiny workflow (its Triangle graphs are
    kept); 6 epochs instead of 2 retrain seed 0 in each."""
    config = copy.deepcopy(TINY_CONFIG)
    config["seeds"] = [0]
    config["triangle"]["train"]["epochs"] = 6
    source, _ = tiny_workflow
    reference, killed = (shutil.copytree(source, tmp_path / name, symlinks=True) for name in ("ref", "killed"))
    snakemake(reference, "all", "--cores", "1", "--configfile", str(write_config(reference, config)))

    configfile = write_config(killed, config)
    run = killed / "results/triangle/runs/eqgat/seed0"
    shutil.rmtree(run)  # the copied 2-epoch run would satisfy the kill condition below at once

    def two_epochs_done() -> bool:
        try:
            return len((run / "log.csv").read_text().splitlines()) >= 3
        except FileNotFoundError:
            return False

    proc = start_snakemake(killed, configfile, "all")
    kill_when(proc, two_epochs_done)
    assert not (run / "metrics.json").exists()
    resume(killed, configfile, "all")

    ref_run = reference / "results/triangle/runs/eqgat/seed0"
    assert json.loads((run / "metrics.json").read_text()) == json.loads((ref_run / "metrics.json").read_text())
    assert (run / "log.csv").read_text().split("\n")[0] == (ref_run / "log.csv").read_text().split("\n")[0]
    strip = lambda text: [line.rsplit(",", 1)[0] for line in text.splitlines()]  # drop the timing column
    assert strip((run / "log.csv").read_text()) == strip((ref_run / "log.csv").read_text())
    assert (killed / "results/summary/results.csv").read_text() == (reference / "results/summary/results.csv").read_text()


def _mk(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def test_deadline_stops_and_snakemake_retries_until_done(tiny_workflow, tmp_path):
    """A time limit far shorter than the training: every attempt makes one step or one
    validation pass, stops with exit status 75 and its resume state; Snakemake's retries of the
    train rule resume it until it is done, with the weights and log of a run without a limit."""
    config = copy.deepcopy(TINY_CONFIG)
    config["seeds"] = [0]
    config["triangle"]["train"].update(epochs=2, batch_size=16)  # 32 training clouds: 2 steps per epoch
    source, _ = tiny_workflow
    reference, limited = (shutil.copytree(source, tmp_path / name, symlinks=True) for name in ("ref", "limited"))
    snakemake(reference, "results/triangle/runs/eqgat/seed0/train.json", "--cores", "1", "--configfile",
              str(write_config(reference, config)))
    config["triangle"]["train"]["time_limit_minutes"] = 1e-4
    config["train_retries"] = 8
    done = snakemake(limited, "results/triangle/runs/eqgat/seed0/train.json", "--cores", "1", "--configfile",
                     str(write_config(limited, config)))
    run = limited / "results/triangle/runs/eqgat/seed0"
    attempts = (run / "state" / "attempts.log").read_text().splitlines()
    attempts = attempts[max(i for i, line in enumerate(attempts) if "start: new run" in line):]
    stops = [line for line in attempts if " stopped (deadline" in line]
    # attempts: step 1 | step 2 | validation 1 + step 1 of epoch 2 | step 2 | validation 2, done
    assert [line.split(" at ")[1].split(";")[0] for line in stops] == [
        "epoch 1, step 1 of 2", "epoch 1, step 2 of 2", "epoch 2, step 1 of 2", "epoch 2, step 2 of 2"], attempts
    assert attempts[-1].endswith("finished")
    assert (done.stdout + done.stderr).count("Trying to restart job") == 4
    # Snakemake replaces the log of a failed attempt; attempts.log in the run's state folder keeps them all
    assert "start: resuming epoch 2 step 2" in (limited / "logs/triangle/eqgat/seed0/train.log").read_text()
    from test_distributed import final

    a, b = final(reference / "results/triangle/runs/eqgat/seed0"), final(run)
    assert a["log"] == b["log"] and all(np.array_equal(a["model"][k], b["model"][k]) for k in a["model"])
