"""Hostile configs, checkpoints and empty splits (issue 13, items 1-3).

1. Every value from the config or a wildcard reaches a command as one literal argument: the
   tiny workflow runs with ``results_dir``/``logs_dir`` holding spaces, quotes and ``$(...)``
   (its results land in folders named literally that way, no command runs), a scheduler address
   ``$(touch ...)`` is one argument that fails to connect with an error naming it, and a
   requested path with a made-up task, model or seed matches no rule.
2. Checkpoints are loaded weights-only: a checkpoint that runs code when unpickled is refused
   (best.pt) or moved aside (the resume state), never executed; truncated and foreign files are
   errors naming the file; a damaged resume state is moved aside and training starts afresh.
3. An empty (or all-skipped) train, validation or test split is an error naming the task, the
   split and the skip counts, and so is an epoch without an optimiser step.
"""
from __future__ import annotations

import ast
import copy
import csv
import json
import pickle
import shlex
import subprocess
import sys
import threading
from functools import partial
from http.server import ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from _graphs import build_triangle_shards
from atom3d_fixtures import psr_record, write_lmdb
from preprocess.triangle import generate_triangle_clouds, write_raw
from cli_runner import run_module
from workflow_helpers import TINY_CONFIG, copy_repo, snakemake, write_config

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = {"hidden_scalars": 8, "hidden_vectors": 2, "num_layers": 1, "num_radial": 4}


def cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """`python <args>`: `-m eqgat ...` runs in this process (tests/cli_runner.py), anything else in a new one."""
    if args[:2] == ("-m", "eqgat"):
        return run_module("eqgat", *args[2:], cwd=cwd)
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def planted(*roots: Path) -> list[Path]:
    """Files or folders named PWNED* below any of `roots`: what an injected command leaves."""
    return [p for root in roots for p in root.rglob("*") if p.name.startswith("PWNED")]


# --------------------------------------------------------------------------------------------
# 1. Config strings and wildcards are literal arguments (the real workflow on the tiny config)
# --------------------------------------------------------------------------------------------
HOSTILE_RESULTS = "my results/$(touch PWNED) it's `touch PWNED_BT`"
HOSTILE_LOGS = "my logs/$(touch PWNED_LOG); touch PWNED_SEMI"


@pytest.fixture(scope="module")
def hostile_workflow(tmp_path_factory):
    """The tiny Triangle workflow (one seed, one epoch) run to its table with hostile folders."""
    workdir = copy_repo(tmp_path_factory.mktemp("hostile"))
    config = copy.deepcopy(TINY_CONFIG)
    config.update(results_dir=HOSTILE_RESULTS, logs_dir=HOSTILE_LOGS, seeds=[0])
    config["triangle"]["train"]["epochs"] = 1
    configfile = write_config(workdir, config)
    proc = snakemake(workdir, "all", "--cores", "2", "--configfile", str(configfile), check=False)
    return workdir, configfile, proc


@pytest.mark.slow
def test_paths_with_spaces_quotes_and_commands_are_literal(hostile_workflow):
    workdir, _, proc = hostile_workflow
    assert proc.returncode == 0, proc.stderr[-6000:]
    results, logs = workdir / HOSTILE_RESULTS, workdir / HOSTILE_LOGS
    rows = list(csv.DictReader(open(results / "summary" / "results.csv")))
    assert any(r["task"] == "triangle" and r["model"] == "eqgat" and r["metric"] == "mse" for r in rows)
    metrics = json.loads((results / "triangle/runs/eqgat/seed0/metrics.json").read_text())
    assert metrics["test"]["num_graphs"] > 0
    for log in ("triangle/generate.log", "triangle/graphs.log", "triangle/eqgat/seed0/train.log", "aggregate.log"):
        assert (logs / log).is_file(), log
    assert (results / "triangle/raw/clouds.h5").is_file() and (results / "triangle/graphs/manifest.json").is_file()
    assert planted(workdir, Path.cwd()) == []


@pytest.mark.slow
def test_scheduler_address_is_one_argument_and_named_when_unreachable(hostile_workflow):
    """A non-empty scheduler makes graph building connect to it: `$(touch PWNED2)` is passed as
    that address, fails as one, and the error names it; nothing runs it as a command."""
    workdir, _, _ = hostile_workflow
    config = copy.deepcopy(TINY_CONFIG)
    config.update(results_dir="sched results", logs_dir="sched logs")
    config["preprocess"]["scheduler"] = "$(touch PWNED2)"
    configfile = write_config(workdir, config, "scheduler.yaml")
    proc = snakemake(workdir, "sched results/triangle/graphs", "--cores", "1", "--configfile", str(configfile),
                     check=False, timeout=300)
    assert proc.returncode != 0
    log = (workdir / "sched logs/triangle/graphs.log").read_text()
    assert "cannot connect to the Dask scheduler '$(touch PWNED2)' (preprocess.scheduler)" in log, log[-3000:]
    assert not (workdir / "sched results/triangle/graphs/manifest.json").exists()
    assert planted(workdir, Path.cwd()) == []


@pytest.mark.slow
@pytest.mark.parametrize("target", [
    "triangle/runs/$(touch PWNED3)/seed0/metrics.json",  # model
    "triangle/runs/eqgat/seed0$(touch PWNED4)/best.pt",  # seed
    "$(touch PWNED5)/graphs",  # task
    "triangle/runs/eqgat;touch PWNED6;/seed0/metrics.json",
])
def test_wildcards_take_only_registered_names(hostile_workflow, target):
    """A requested path whose task, model or seed is not a registered name matches no rule:
    no job starts (it would get the name as its --task/--model/--seed)."""
    workdir, configfile, _ = hostile_workflow
    proc = snakemake(workdir, f"{HOSTILE_RESULTS}/{target}", "--cores", "1", "--configfile", str(configfile),
                     check=False, timeout=300)
    assert proc.returncode != 0
    assert "No rule to produce" in proc.stdout + proc.stderr
    assert "Execute 1 jobs" not in proc.stdout + proc.stderr
    assert planted(workdir, Path.cwd()) == []


def test_slurm_worker_command_takes_paths_as_literal_arguments(tmp_path):
    """dask-jobqueue writes the worker command into the SLURM job script as one line of shell:
    the interpreter and scratch paths from ``preprocess.slurm`` are one word each there, and an
    interface that is not a name is refused. (``job_script_prologue`` lines are shell by design.)"""
    dask_jobqueue = pytest.importorskip("dask_jobqueue")
    from preprocess.cluster import slurm_cluster_options

    python, scratch = str(tmp_path / "my env/$(touch PWNED7)/python"), str(tmp_path / "scratch `touch PWNED8`")
    kwargs, jobs = slurm_cluster_options({"queue": "q", "python": python, "local_directory": scratch}, workers=2)
    cluster = dask_jobqueue.SLURMCluster(**kwargs)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    (line,) = [line for line in script.splitlines() if "distributed.cli.dask_worker" in line]
    words = shlex.split(line)
    assert words[0] == python and words[words.index("--local-directory") + 1] == scratch
    proc = subprocess.run(["bash", "-c", f"set -- {line.split(' -m ')[0]}; echo \"$1\""], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.stdout.strip() == python and planted(tmp_path) == []
    with pytest.raises(ValueError, match=r"interface 'ib0; touch PWNED9' is not a network interface name"):
        slurm_cluster_options({"queue": "q", "interface": "ib0; touch PWNED9"}, workers=1)


# --------------------------------------------------------------------------------------------
# 2. Checkpoints: weights-only, damaged files named, a damaged resume state moved aside
# --------------------------------------------------------------------------------------------
SECTION = json.dumps({"graph": {"cutoff": 4.0}})


class RunsCodeWhenLoaded:
    """Unpickling this object calls ``Path(marker).touch()``: what a malicious checkpoint does
    (any callable could stand there, e.g. ``os.system``)."""

    def __init__(self, marker: Path):
        self.marker = Path(marker)

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def craft_checkpoint(path: Path, marker: Path) -> Path:
    """A checkpoint shaped like ours whose unpickling creates `marker`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": {"w": torch.zeros(2)}, "model_spec": {"name": "eqgat", "hparams": {}},
                "payload": RunsCodeWhenLoaded(marker)}, path)
    return path


@pytest.fixture(scope="module")
def tri_graphs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tri")
    write_raw(root / "raw.h5", generate_triangle_clouds(40, seed=3, num_points=12, radius=5.0, min_dist=1.0))
    build_triangle_shards(root / "raw.h5", root / "graphs", cutoff=4.0, shard_size=16, workers=1, progress=False)
    return root / "graphs"


def train_args(graphs: Path, out: Path, epochs: int = 2) -> list[str]:
    return ["-m", "eqgat", "train", "--task", "triangle", "--model", "eqgat", "--section", SECTION,
            "--hparams", json.dumps(TINY_MODEL), "--data", str(graphs), "--out", str(out), "--device", "cpu",
            "--seed", "0", "--epochs", str(epochs), "--batch-size", "8", "--lr", "3e-3", "--no-progress"]


def evaluate_args(graphs: Path, checkpoint: Path, out: Path) -> list[str]:
    return ["-m", "eqgat", "evaluate", "--task", "triangle", "--data", str(graphs), "--device", "cpu",
            "--section", SECTION, "--checkpoint", str(checkpoint), "--out", str(out / "metrics.json"),
            "--predictions", str(out / "test_predictions.csv")]


def losses(run_dir: Path) -> list[tuple[str, str, str, str]]:
    return [(r["epoch"], r["lr"], r["train_loss"], r["val_loss"]) for r in csv.DictReader(open(run_dir / "log.csv"))]


@pytest.fixture(scope="module")
def fresh_run(tri_graphs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fresh") / "run"
    proc = cli(*train_args(tri_graphs, out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_crafted_checkpoint_is_live(tmp_path):
    """The control: loading the crafted file the unsafe way does run its code."""
    marker = tmp_path / "ran"
    path = craft_checkpoint(tmp_path / "evil.pt", marker)
    proc = cli("-c", f"import torch; torch.load({str(path)!r}, weights_only=False)")
    assert proc.returncode == 0, proc.stderr
    assert marker.exists()


def test_best_checkpoint_that_runs_code_is_refused(tri_graphs, tmp_path):
    marker = tmp_path / "PWNED_by_best"
    best = craft_checkpoint(tmp_path / "run" / "best.pt", marker)
    proc = cli(*evaluate_args(tri_graphs, best, tmp_path / "run"))
    assert proc.returncode == 1
    assert f"{best}: refused: it holds more than tensors and plain data" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not marker.exists()
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_resume_state_that_runs_code_is_moved_aside(tri_graphs, fresh_run, tmp_path):
    out = tmp_path / "run"
    marker = tmp_path / "PWNED_by_last"
    last = craft_checkpoint(out / "state" / "last.pt", marker)
    proc = cli(*train_args(tri_graphs, out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not marker.exists()
    assert f"damaged resume state moved aside to {last}.damaged-" in proc.stderr
    assert f"({last}: refused" in proc.stderr and "training starts from epoch 1" in proc.stderr
    assert len(list(last.parent.glob("last.pt.damaged-*"))) == 1
    assert losses(out) == losses(fresh_run)


@pytest.mark.parametrize("damage", ["truncated", "random bytes"])
def test_unreadable_best_checkpoint_is_an_error_naming_it(tri_graphs, fresh_run, tmp_path, damage):
    best = tmp_path / "run" / "best.pt"
    best.parent.mkdir()
    good = (fresh_run / "best.pt").read_bytes()
    best.write_bytes(good[: len(good) // 2] if damage == "truncated" else np.random.default_rng(0).bytes(len(good)))
    proc = cli(*evaluate_args(tri_graphs, best, tmp_path / "run"))
    assert proc.returncode == 1
    assert f"ERROR eqgat: {best}: not a readable checkpoint (" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "weights_only` set to `False`" not in proc.stderr
    assert not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.parametrize("content, expected", [
    (b"", "not a readable checkpoint (an empty file)"),
    (pickle.dumps({"model": {}}, protocol=4), "not a readable checkpoint (not a complete PyTorch checkpoint"),
    (torch.zeros(3), "not a checkpoint (a Tensor, expected a dict)"),
    ({"epoch": 3}, "not a model checkpoint of this workflow (no model_spec / model)"),
    ({"model": {"w": torch.zeros(2)}, "model_spec": {"name": "eqgat", "hparams": {"hidden_scalars": 8}}},
     "weights do not fit the recorded model"),
], ids=["empty", "plain pickle", "a tensor", "no model", "other weights"])
def test_files_that_are_not_our_checkpoints_are_named(tmp_path, content, expected):
    from eqgat.train.checkpoint import CheckpointError
    from eqgat.train.evaluate import load_best_model

    path = tmp_path / "best.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(CheckpointError) as caught:
        load_best_model(path, torch.device("cpu"))
    assert str(caught.value).startswith(f"{path}: {expected}")


def test_truncated_resume_state_is_moved_aside_and_training_starts_afresh(tri_graphs, fresh_run, tmp_path):
    out = tmp_path / "run"
    last = out / "state" / "last.pt"
    last.parent.mkdir(parents=True)
    good = (fresh_run / "state" / "last.pt").read_bytes()
    last.write_bytes(good[: len(good) // 2])
    proc = cli(*train_args(tri_graphs, out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"damaged resume state moved aside to {last}.damaged-" in proc.stderr
    assert f"({last}: not a readable checkpoint" in proc.stderr
    assert "resuming" not in proc.stderr
    # the same numbers as a fresh run with the same seed, and a sound state for the next rerun
    assert losses(out) == losses(fresh_run)
    assert torch.load(last, weights_only=True)["epoch"] == 2


def test_every_torch_load_is_weights_only():
    """No source or test loads a torch file with the unsafe unpickler."""
    unsafe = []
    for path in sorted(p for d in ("eqgat", "preprocess", "benchmarks", "tests", "workflow") for p in (REPO / d).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load":
                kw = {k.arg: k.value for k in node.keywords}
                if not (isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True):
                    unsafe.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert unsafe == []


# --------------------------------------------------------------------------------------------
# 3. Empty splits and epochs without a step
# --------------------------------------------------------------------------------------------
def nan_record(target: str, decoy: str) -> dict:
    record = psr_record(target, decoy, 0.5)
    record["atoms"] = record["atoms"].copy()
    record["atoms"].loc[0, "x"] = np.nan
    return record


def psr_splits(all_bad: str) -> dict[str, list[dict]]:
    """PSR records (ATOM3D format) where every record of split `all_bad` has NaN coordinates."""
    good = {"train": [psr_record("T0759", "s1", 0.61), psr_record("T0759", "s2", 0.35), psr_record("T0800", "s1", 0.8)],
            "val": [psr_record("T0950", "s1", 0.2), psr_record("T0950", "s2", 0.4)],
            "test": [psr_record("T1000", "s1", 0.9), psr_record("T1000", "s2", 0.3)]}
    good[all_bad] = [nan_record("T0666", f"bad{i}") for i in range(3)]
    return good


def write_psr(root: Path, splits: dict[str, list[dict]]) -> Path:
    """The extracted-download layout of PSR (split-by-year/data/<split>)."""
    for split, records in splits.items():
        write_lmdb(records, root / "split-by-year" / "data" / split)
    return root


@pytest.fixture(scope="module")
def psr_graphs(tmp_path_factory):
    """PSR graph folders, one per split whose every record is bad (built as the workflow does)."""
    from eqgat.tasks import TASKS
    from preprocess.task_shards import build_task_shards

    task = TASKS["psr"]
    built = {}
    for split in ("train", "val", "test"):
        root = tmp_path_factory.mktemp(f"psr_no_{split}")
        write_psr(root / "src", psr_splits(split))
        build_task_shards(task, root / "src", root / "graphs", cutoff=task.protocol["graph"]["cutoff"],
                          shard_size=4, workers=1, progress=False)
        built[split] = root / "graphs"
    return built


def psr_train_args(graphs: Path, out: Path) -> list[str]:
    return ["-m", "eqgat", "train", "--task", "psr", "--model", "eqgat", "--hparams", json.dumps(TINY_MODEL),
            "--data", str(graphs), "--out", str(out), "--device", "cpu", "--epochs", "1", "--batch-size", "2",
            "--no-progress"]


@pytest.mark.parametrize("split", ["train", "val"])
def test_training_on_an_all_skipped_split_is_an_error(psr_graphs, tmp_path, split):
    report = json.loads((psr_graphs[split] / "skip_report.json").read_text())
    assert report[split]["num_graphs"] == 0 and report[split]["counts"] == {"nan_coordinates": 3}
    proc = cli(*psr_train_args(psr_graphs[split], tmp_path / "run"))
    assert proc.returncode == 1
    assert f"task psr: the {split} split has no graphs (3 skipped: nan_coordinates: 3)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "best.pt").exists() and not (tmp_path / "run" / "log.csv").exists()


def test_evaluating_an_all_skipped_test_split_is_an_error(psr_graphs, tmp_path):
    graphs, run = psr_graphs["test"], tmp_path / "run"
    proc = cli(*psr_train_args(graphs, run))  # train and val are sound: a real best checkpoint
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = cli("-m", "eqgat", "evaluate", "--task", "psr", "--data", str(graphs), "--device", "cpu",
               "--checkpoint", str(run / "best.pt"), "--out", str(run / "metrics.json"))
    assert proc.returncode == 1
    assert "task psr: the test split has no graphs (3 skipped: nan_coordinates: 3)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (run / "metrics.json").exists()


class EmptiedEachEpoch(Dataset):
    """Real Triangle graphs behind a per-epoch draw that comes up empty.

    The loop refuses an empty training set up front, and with a fixed set the sampler always
    yields ceil(n / batch) batches, so a positive length cannot give an empty loader by itself.
    A set that draws its samples anew each epoch can: the loop calls ``set_epoch`` before each
    epoch (the protocol of PPI pair sampling, whose pair count follows from the data) and takes
    the length afterwards. This one draws nothing, so epoch 1's loader has no batch; the loop
    itself is run unmodified."""

    def __init__(self, graphs):
        self.graphs, self.size = graphs, len(graphs)

    def set_epoch(self, epoch: int) -> None:
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i):
        return self.graphs[i]


def test_an_epoch_without_an_optimiser_step_is_an_error(tri_graphs, tmp_path):
    from eqgat.data import ShardDataset
    from eqgat.models import build_model, task_model_hparams
    from eqgat.tasks import get_task
    from eqgat.train.loop import TrainSettings, make_loader, train, train_one_epoch
    from eqgat.train.schedule import LearningRate

    task = get_task("triangle")
    manifest = tri_graphs / "manifest.json"
    spec = {"name": "eqgat", "hparams": task_model_hparams(task, "eqgat", 4.0, TINY_MODEL)}
    settings = TrainSettings(epochs=2, batch_size=8, lr=1e-3)
    model = build_model(spec["name"], **spec["hparams"])
    train_set, val_set = EmptiedEachEpoch(ShardDataset(manifest, "train")), ShardDataset(manifest, "val")
    assert len(train_set) > 0

    # what the issue saw: an epoch over a loader with no batch reports a loss of 0.0 after 0 steps
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_set.set_epoch(1)
    empty = make_loader(train_set, 8, [], 0)
    assert train_one_epoch(model, empty, torch.nn.functional.mse_loss, optimizer,
                           LearningRate(optimizer, settings, 1, False), 10.0, torch.device("cpu"), False) == (0.0, 0)

    train_set.size = len(train_set.graphs)
    with pytest.raises(RuntimeError, match=r"task triangle: epoch 1 made no optimiser step \(0 training graphs\)"):
        train(model, spec, task, train_set, val_set, settings, tmp_path / "run", torch.device("cpu"), progress=False)
    assert not (tmp_path / "run" / "best.pt").exists() and not (tmp_path / "run" / "log.csv").exists()


@pytest.fixture
def psr_mirror(tmp_path_factory):
    """PSR in the Zenodo layout, served over HTTP from 127.0.0.1; every train record is bad."""
    from test_atom3d_workflow import QuietHandler, pack_like_zenodo

    source = write_psr(tmp_path_factory.mktemp("psr_src"), psr_splits("train"))
    mirror = tmp_path_factory.mktemp("psr_mirror")
    pack_like_zenodo("psr", source, mirror)
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(mirror)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.slow
def test_workflow_with_an_all_skipped_train_split_writes_no_table(psr_mirror, tmp_path):
    """Download -> graphs -> train through Snakemake: training fails naming the split and its
    skip counts, so no metrics and no results table. The download folder has spaces and
    ``$(...)`` too: the download rule gets it as one argument."""
    from test_atom3d_workflow import atom3d_config

    workdir = copy_repo(tmp_path)
    config = atom3d_config(psr_mirror)
    config["tasks"] = ["psr"]
    config["resources_dir"] = "my resources/$(touch PWNED_RES)"
    configfile = write_config(workdir, config)
    proc = snakemake(workdir, "all", "--cores", "1", "--configfile", str(configfile), check=False)
    assert proc.returncode != 0
    assert (workdir / "my resources/$(touch PWNED_RES)/psr/split-by-year/data/train").is_dir()
    log = (workdir / "logs/psr/eqgat/seed0/train.log").read_text()
    assert "task psr: the train split has no graphs (3 skipped: nan_coordinates: 3)" in log
    assert not (workdir / "results/psr/runs/eqgat/seed0/best.pt").exists()
    assert not (workdir / "results/summary/results.csv").exists()
    assert not (workdir / "results/summary/results.md").exists()
    assert planted(workdir, Path.cwd()) == []
