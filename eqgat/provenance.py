"""Which source files each pipeline stage runs, and a hash of them.

Snakemake does not track code imported by a shell command, so the workflow puts these hashes
into its rules' params (a changed hash reruns the stage), and training resumes only a
checkpoint written by the same training code.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

#: the repository (or site-packages) folder holding the `eqgat` and `preprocess` packages
SOURCE_ROOT = Path(__file__).resolve().parents[1]

#: stage -> source files, or folders whose *.py files count, relative to SOURCE_ROOT
STAGE_SOURCES: dict[str, tuple[str, ...]] = {
    "generate": ("preprocess/triangle.py",),
    "graphs": ("preprocess/neighbors.py", "preprocess/shards.py", "preprocess/build.py"),
    "graphs_atom3d": ("preprocess/neighbors.py", "preprocess/shards.py", "preprocess/build.py",
                      "preprocess/atom3d_shards.py", "preprocess/readers", "preprocess/elements.py"),
    "train": ("eqgat/nn", "eqgat/models", "eqgat/train", "eqgat/data", "eqgat/tasks.py", "eqgat/configs.py"),
    "evaluate": ("eqgat/nn", "eqgat/models", "eqgat/train", "eqgat/data", "eqgat/tasks.py", "eqgat/metrics.py"),
    "aggregate": ("eqgat/aggregate.py", "eqgat/paper.py", "eqgat/tasks.py", "eqgat/metrics.py"),
}


def stage_files(stage: str, root: Path = SOURCE_ROOT) -> list[Path]:
    """The source files of `stage` below `root`, in a stable order."""
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
    return files


def code_version(stage: str, root: Path = SOURCE_ROOT) -> str:
    """A 16-hex-digit hash of the paths and contents of the source files `stage` runs."""
    digest = hashlib.sha256()
    for f in stage_files(stage, root):
        digest.update(f.relative_to(root).as_posix().encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()[:16]
