"""Code versions: which edits change a stage's hash (and so rerun it), and which do not."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from eqgat.provenance import SOURCE_ROOT, UNVERSIONED, code_version, stage_files
from eqgat.tasks import TASKS


@pytest.fixture()
def sources(tmp_path) -> Path:
    """A copy of the two packages, safe to edit."""
    for package in ("eqgat", "preprocess"):
        shutil.copytree(SOURCE_ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


TASK_STAGES = [(stage, task) for stage in ("graphs", "train", "evaluate", "aggregate") for task in TASKS]


def versions(root: Path) -> dict:
    return {(stage, task): code_version(stage, task, root=root) for stage, task in TASK_STAGES} | \
        {(stage, None): code_version(stage, root=root) for stage in ("generate", "predict")}


def test_a_copy_has_the_same_versions(sources):
    assert versions(sources) == versions(SOURCE_ROOT)


def changed_by(sources: Path, path: str) -> set:
    before = versions(sources)
    with open(sources / path, "a") as f:
        f.write("\n# edited\n")
    after = versions(sources)
    return {key for key in before if after[key] != before[key]}


def test_an_edit_changes_exactly_the_stages_that_run_the_file(sources):
    assert changed_by(sources, "eqgat/models/painn.py") == \
        {(s, t) for s in ("train", "evaluate") for t in TASKS} | {("predict", None)}


def test_a_task_edit_reruns_that_task_only(sources):
    """A task's declaration belongs to its own stages (and to those of a task drawing on it: RSR
    takes its fields and metrics from PSR's module); its reader to its graphs."""
    stages = ("graphs", "train", "evaluate", "aggregate")
    assert changed_by(sources, "eqgat/tasks/res.py") == {(s, "res") for s in stages}
    assert changed_by(sources, "eqgat/tasks/psr.py") == {(s, t) for s in stages for t in ("psr", "rsr")}
    # the ranking reader serves PSR and RSR; only their graphs are rebuilt
    assert changed_by(sources, "preprocess/readers/ranking.py") == {("graphs", "psr"), ("graphs", "rsr")}
    assert changed_by(sources, "preprocess/readers/res.py") == {("graphs", "res")}
    assert changed_by(sources, "preprocess/triangle.py") == {("graphs", "triangle"), ("generate", None)}
    assert changed_by(sources, "eqgat/predict.py") == {("predict", None)}
    assert changed_by(sources, "eqgat/plots.py") == {("aggregate", t) for t in TASKS}


def test_command_line_and_device_edits_rerun_what_calls_them(sources):
    """eqgat/cli.py lays the config over the protocol and checks the cutoff; eqgat/device.py picks
    the device and autocast: both belong to the runs."""
    runs = {(s, t) for s in ("train", "evaluate") for t in TASKS} | {("predict", None)}
    assert changed_by(sources, "eqgat/device.py") == runs
    assert changed_by(sources, "eqgat/cli.py") == runs | {("aggregate", t) for t in TASKS}
    assert changed_by(sources, "eqgat/tasks/config.py") == runs - {("predict", None)}
    assert changed_by(sources, "preprocess/cli.py") == {("graphs", t) for t in TASKS} | {("generate", None)}


def test_a_new_file_in_a_stage_folder_counts(sources):
    before = code_version("train", "psr", root=sources)
    (sources / "eqgat" / "nn" / "new_layer.py").write_text("X = 1\n")
    assert code_version("train", "psr", root=sources) != before
    assert sources / "eqgat" / "nn" / "new_layer.py" in stage_files("train", sources)


def test_moving_code_between_files_changes_the_version(sources):
    """The hash covers paths as well as contents."""
    a, b = sources / "eqgat" / "nn" / "a_extra.py", sources / "eqgat" / "nn" / "b_extra.py"
    a.write_text("X = 1\n")
    first = code_version("train", root=sources)
    a.rename(b)
    assert code_version("train", root=sources) != first


def test_unknown_stage_task_and_missing_source_are_named(sources):
    with pytest.raises(KeyError, match="'trian'.*train"):
        code_version("trian", root=sources)
    with pytest.raises(ValueError, match="unknown task 'pssr'"):
        code_version("train", "pssr", root=sources)
    (sources / "eqgat" / "paper.py").unlink()
    with pytest.raises(FileNotFoundError, match="paper.py.*'aggregate'"):
        code_version("aggregate", root=sources)
    (sources / "eqgat" / "tasks" / "res.py").unlink()
    with pytest.raises(FileNotFoundError, match="res.py.*task 'res'"):
        code_version("train", "res", root=sources)


# ------------------------------------------------------------------------------------------
# The guard: what each stage's entry point really loads and runs is covered by its code version
# ------------------------------------------------------------------------------------------
#: run a module as `python -m` does, after importing the task registry (every stage imports it, and
#: with it every task's declaration); write the files of the registry's modules, of all modules
#: loaded, and of the functions called after the registry's import (JSON)
TRACED = """
import json, runpy, sys, threading

out, module, *argv = sys.argv[1:]
import eqgat.tasks

def files():
    return sorted({m.__file__ for m in list(sys.modules.values()) if getattr(m, "__file__", None)})

registry, called = files(), set()

def profile(frame, event, arg):
    if event == "call":
        called.add(frame.f_code.co_filename)

sys.argv = [module, *argv]
threading.setprofile(profile)
sys.setprofile(profile)
try:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
except SystemExit as exc:
    if exc.code:
        raise
finally:
    sys.setprofile(None)
with open(out, "w") as fh:
    json.dump({"registry": registry, "loaded": files(), "called": sorted(called)}, fh)
"""

#: the stages whose outputs a stage's inputs are made from (an edit covered there reruns it too);
#: predict may score with a checkpoint from elsewhere, so its own version must cover what it runs
UPSTREAM = {"generate": (), "graphs": (), "train": ("graphs",), "evaluate": ("graphs", "train"),
            "aggregate": ("graphs", "train", "evaluate"), "predict": ()}


def project(paths) -> set[str]:
    """The paths of the `eqgat` and `preprocess` sources among `paths`, relative to SOURCE_ROOT."""
    out = set()
    for p in paths:
        p = Path(p).resolve()
        if p.is_relative_to(SOURCE_ROOT) and p.relative_to(SOURCE_ROOT).parts[0] in ("eqgat", "preprocess"):
            out.add(p.relative_to(SOURCE_ROOT).as_posix())
    return out


def traced_run(tmp: Path, name: str, module: str, *args: str) -> set[str]:
    """The project sources a fresh ``python -m <module> <args>`` depends on: every module it loads
    beyond the registry's, and the registry's modules whose functions it calls."""
    out = tmp / f"{name}.json"
    proc = subprocess.run([sys.executable, "-c", TRACED, str(out), module, *args], cwd=tmp, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, f"{name}: {proc.stderr[-3000:]}"
    seen = json.loads(out.read_text())
    registry, loaded, called = (project(seen[k]) for k in ("registry", "loaded", "called"))
    return (loaded - registry) | (called & registry)


def uncovered(used: set[str], stage: str, task: str | None) -> set[str]:
    """Sources a stage uses that neither its (stage, task) code version nor an upstream stage's
    covers, nor `UNVERSIONED` exempts."""
    tasks = (task,) if task else ()
    if stage == "predict":  # the predict rule's version covers every declaration with a predict_reader
        from eqgat.tasks import predictable_tasks

        tasks = tuple(predictable_tasks())
    covered = {f.relative_to(SOURCE_ROOT).as_posix() for s in (stage, *UPSTREAM[stage])
               for f in stage_files(s, tasks=tasks)}
    return used - covered - set(UNVERSIONED)


@pytest.mark.slow  # seven fresh interpreters, five of them load torch: ~25 CPU-s
def test_every_module_a_stage_runs_is_in_its_code_version(tmp_path):
    """Each stage's entry point, run for real on tiny data in a fresh interpreter, uses no project
    module (lazily imported ones included) that its code version leaves out, so an edit to any
    module a stage runs reruns it. Importing the task registry loads every task's declaration and
    reader in every stage; of those, a stage must cover the ones it calls."""
    from structure_dataset import write_dataset

    tiny = json.dumps({"hidden_scalars": 8, "hidden_vectors": 2, "num_layers": 1, "num_radial": 4})
    labels = write_dataset(tmp_path / "data", 12, seed=1)
    section = json.dumps({"files": str(tmp_path / "data"), "labels": str(labels)})
    graphs, run = tmp_path / "graphs", tmp_path / "run"
    common = ("--task", "structures", "--data", str(graphs), "--section", section, "--device", "cpu")
    runs = {
        ("generate", None): ("preprocess", "generate-triangle", "--num-clouds", "20", "--seed", "0",
                             "--out", str(tmp_path / "clouds.h5")),
        ("graphs", "triangle"): ("eqgat.tasks", "build-graphs", "--task", "triangle", "--source",
                                 str(tmp_path / "clouds.h5"), "--out", str(tmp_path / "tri"), "--cutoff", "5",
                                 "--shard-size", "8", "--no-progress"),
        ("graphs", "structures"): ("eqgat.tasks", "build-graphs", "--task", "structures", "--source",
                                   str(tmp_path / "data"), "--options", section, "--out", str(graphs),
                                   "--cutoff", "4.5", "--shard-size", "8", "--no-progress"),
        # as the train rule runs it: through the launcher, one rank
        ("train", "structures"): ("eqgat.launch", "--ranks", "1", "--threads", "1", "--", *common, "--out",
                                  str(run), "--epochs", "1", "--batch-size", "4", "--hparams", tiny, "--no-progress"),
        ("evaluate", "structures"): ("eqgat", "evaluate", *common, "--checkpoint", str(run / "best.pt"),
                                     "--out", str(run / "metrics.json"), "--predictions",
                                     str(run / "test_predictions.csv")),
        ("aggregate", "structures"): ("eqgat", "aggregate", "--metrics", str(run / "metrics.json"),
                                      "--out-md", str(tmp_path / "t.md"), "--out-csv", str(tmp_path / "t.csv"),
                                      "--out-png", str(tmp_path / "curves.png")),
        ("predict", None): ("eqgat", "predict", "--checkpoint", str(run / "best.pt"), "--out",
                            str(tmp_path / "p.csv"), "--device", "cpu", "--no-progress", str(tmp_path / "data")),
    }
    missing = {}
    for (stage, task), (module, *args) in runs.items():
        used = traced_run(tmp_path, stage, module, *args)
        assert ("eqgat/cli.py" if module in ("eqgat", "eqgat.launch") else "preprocess/cli.py") in used  # really this checkout's code
        if module == "eqgat.tasks":
            assert "eqgat/tasks/__main__.py" in used
        gaps = uncovered(used, stage, task)
        if gaps:
            missing[stage] = sorted(gaps)
    assert not missing, f"used but not in the stage's code version: {missing}"
