"""Which source files each pipeline stage runs, and a hash of them.

Snakemake does not track code imported by a shell command, so the workflow puts these hashes
into its rules' params (a changed hash reruns the stage), and training resumes only a
checkpoint written by the same training code. A stage of a task also runs the task's own
files: its declaration module (``eqgat/tasks/<task>.py``) and, for the graphs, its reader and
source modules, so an edit to one task reruns that task's stages only.
"""
from __future__ import annotations

import hashlib
import inspect
from pathlib import Path

#: the repository (or site-packages) folder holding the `eqgat` and `preprocess` packages
SOURCE_ROOT = Path(__file__).resolve().parents[1]

_TASK_COMMON = ("eqgat/tasks/spec.py", "eqgat/tasks/_atom3d.py", "preprocess/spec.py")
#: the command lines the rules call (`python -m preprocess ...`, `python -m eqgat ...`)
_PREPROCESS_CLI = ("preprocess/__main__.py", "preprocess/cli.py")
_EQGAT_CLI = ("eqgat/__main__.py", "eqgat/cli.py")
#: what training and evaluation run: the command line (effective section, cutoff check), the
#: device choice, the model, the loop, the data, and the shard reading
_RUNS = (*_EQGAT_CLI, "eqgat/device.py", "eqgat/allocator.py", "eqgat/tasks/config.py", "eqgat/nn", "eqgat/models", "eqgat/train",
         "eqgat/data", "eqgat/tasks/losses.py", "eqgat/metrics.py", "preprocess/shards.py", "preprocess/neighbors.py",
         *_TASK_COMMON)

#: stage -> source files, or folders whose *.py files count, relative to SOURCE_ROOT;
#: tests/test_provenance.py runs each stage's entry point and checks that this covers what it runs
STAGE_SOURCES: dict[str, tuple[str, ...]] = {
    "generate": (*_PREPROCESS_CLI, "preprocess/triangle.py", "preprocess/triangle_kernels.py", "preprocess/build.py"),
    "graphs": (*_PREPROCESS_CLI, "eqgat/tasks/__main__.py", "preprocess/neighbors.py", "preprocess/shards.py", "preprocess/build.py",
               "preprocess/task_shards.py", "preprocess/sources.py", "preprocess/readers/__init__.py",
               "preprocess/readers/report.py", "preprocess/readers/lmdb_records.py", "preprocess/elements.py",
               *_TASK_COMMON),
    "train": (*_RUNS, "eqgat/launch.py"),
    "evaluate": _RUNS,
    "aggregate": (*_EQGAT_CLI, "eqgat/aggregate.py", "eqgat/plots.py", "eqgat/paper.py", "eqgat/metrics.py",
                  *_TASK_COMMON),
    # the workflow adds the declarations whose predict_reader reads the files (PREDICT_TASKS)
    "predict": (*_EQGAT_CLI, "eqgat/device.py", "eqgat/allocator.py", "eqgat/predict.py", "eqgat/nn", "eqgat/models", "eqgat/train",
                "eqgat/tasks/losses.py", "preprocess/readers/structures.py", "preprocess/readers/__init__.py",
                "preprocess/readers/report.py", "preprocess/neighbors.py", "preprocess/elements.py",
                "preprocess/atomic.py", *_TASK_COMMON),
}

#: project modules a stage may use that no code version covers, and why
UNVERSIONED: dict[str, str] = {
    "eqgat/__init__.py": "the package's version string",
    "preprocess/__init__.py": "empty",
    "eqgat/provenance.py": "computes the code versions themselves",
    "eqgat/tasks/__init__.py": "the registry: which module declares each task (each stage covers its own "
                               "task's declaration, so adding a task reruns no other)",
    "eqgat/gpu_check.py": "`python -m eqgat` builds its argument parser from it; only `gpu-check` runs it",
    "preprocess/atomic.py": "writes outputs atomically (temporary file, fsync, rename); the bytes come from "
                            "versioned code",
}

#: stages whose hash also covers the data-reading code of each task (reader and source)
_READING_STAGES = ("graphs",)


def _declaration_files(task_name: str) -> list[Path]:
    """The module declaring a task and the other task modules it takes parts from (RSR's
    metrics are PSR's)."""
    import sys

    from eqgat.tasks import task_module_file

    path = task_module_file(task_name)
    module = next(m for m in list(sys.modules.values()) if getattr(m, "__file__", None) == str(path))
    files = [path]
    for value in vars(module).values():
        owner = getattr(value, "__module__", None) or ""
        if owner.startswith("eqgat.tasks.") and owner != module.__name__ and owner in sys.modules:
            files.append(Path(sys.modules[owner].__file__))
    return files


def task_files(task_name: str, stage: str, root: Path = SOURCE_ROOT) -> list[Path]:
    """A task's own files for a stage: its declaration (and the task modules it draws on), and
    for the graphs its reader and source."""
    from eqgat.tasks import get_task

    task = get_task(task_name)
    files = _declaration_files(task_name)
    if stage in _READING_STAGES:
        from preprocess.spec import Ref

        for obj in (task.reader, type(task.source)):
            if obj is not None:
                files.append(Path(obj.file() if isinstance(obj, Ref) else inspect.getsourcefile(obj)))
    out = []
    for f in dict.fromkeys(files):
        rel = f.resolve().relative_to(SOURCE_ROOT)
        out.append(root / rel)
    return out


def stage_files(stage: str, root: Path = SOURCE_ROOT, tasks: tuple[str, ...] = ()) -> list[Path]:
    """The source files of `stage` (and of its `tasks`) below `root`, in a stable order."""
    if stage not in STAGE_SOURCES:
        raise KeyError(f"unknown pipeline stage {stage!r}; known: {', '.join(STAGE_SOURCES)}")
    files: list[Path] = []
    for entry in STAGE_SOURCES[stage]:
        path = root / entry
        if path.is_dir():
            files.extend(sorted(path.rglob("*.py")))
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"source {path} of stage {stage!r} does not exist")
    for task in tasks:
        for path in task_files(task, stage, root):
            if not path.is_file():
                raise FileNotFoundError(f"source {path} of task {task!r} does not exist")
            if path not in files:
                files.append(path)
    return files


def code_version(stage: str, *tasks: str, root: Path = SOURCE_ROOT) -> str:
    """A 16-hex-digit hash of the paths and contents of the source files `stage` runs for
    `tasks`."""
    digest = hashlib.sha256()
    for f in stage_files(stage, root, tasks):
        digest.update(f.relative_to(root).as_posix().encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()[:16]
