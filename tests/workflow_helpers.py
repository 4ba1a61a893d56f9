"""Run the real Snakemake workflow in a throw-away copy of the repository."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
COPIED = ("Snakefile", "workflow", "config", "eqgat", "preprocess", "profiles")

TINY_CONFIG = {
    "results_dir": "results",
    "logs_dir": "logs",
    "tasks": ["triangle"],
    "models": ["eqgat"],
    "seeds": [0, 1],
    "device": "cpu",
    "train_threads": 1,
    "gpus_per_run": 0,
    "preprocess": {"workers": 1, "scheduler": None, "shard_size": 16},
    "notes": {},
    "triangle": {
        "data": {"num_clouds": 40, "seed": 7, "num_points": 12, "radius": 5.0, "min_dist": 1.0},
        "graph": {"cutoff": 4.0, "max_neighbors": None},
        "model": {"overrides": {"eqgat": {"hidden_scalars": 8, "hidden_vectors": 2, "num_layers": 1, "num_radial": 4}}},
        "train": {"epochs": 2, "batch_size": 8, "lr": 1e-3, "lr_factor": 0.75, "lr_patience": 10, "lr_min": 1e-7, "clip_norm": 10.0},
    },
}


def copy_repo(dest: Path) -> Path:
    for name in COPIED:
        src = REPO / name
        if src.is_symlink():
            os.symlink(os.readlink(src), dest / name)
        elif src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def write_config(workdir: Path, config: dict, name: str = "test.yaml") -> Path:
    path = workdir / "config" / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    """Invoke the Snakemake CLI of this interpreter's environment in `workdir`."""
    cmd = [sys.executable, "-m", "snakemake", *args]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def planned_jobs(workdir: Path, configfile: Path, target: str = "all") -> dict[str, int]:
    """Rule -> number of jobs Snakemake would run now (from a dry run's job-stats table)."""
    proc = snakemake(workdir, target, "-n", "--cores", "1", "--configfile", str(configfile))
    text = proc.stdout + proc.stderr
    if "Nothing to be done" in text:
        return {}
    match = re.search(r"Job stats:\s*\n\s*job\s+count\s*\n[-\s]+\n(.*?)\n\s*total\s+(\d+)", text, re.S)
    if not match:
        raise AssertionError(f"no job stats in dry run output:\n{text[-3000:]}")
    jobs = {}
    for line in match.group(1).strip().splitlines():
        rule, count = line.split()
        jobs[rule] = int(count)
    return jobs


@contextmanager
def comment_appended(path: Path, comment: str) -> Iterator[None]:
    """Append a comment line to a source file (an edit that changes no behaviour); restore it on exit."""
    original = path.read_text()
    path.write_text(f"{original}\n# {comment}\n")
    try:
        yield
    finally:
        path.write_text(original)
