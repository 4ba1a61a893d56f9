"""Run the real Snakemake workflow in a throw-away copy of the repository."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
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
    """Copy the workflow's files into `dest`, with the Numba kernels compiled in this checkout."""
    for name in COPIED:
        src = REPO / name
        if src.is_symlink():
            os.symlink(os.readlink(src), dest / name)
        elif src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
        else:
            shutil.copy2(src, dest / name)
    copy_numba_cache(dest)
    return dest


_numba_warm = False


def warm_numba_cache() -> None:
    """Compile this checkout's neighbour-search kernels once per test session, the way a graph
    build does (Numba caches them in preprocess/__pycache__, checked against each source's size
    and mtime, which copies keep). Saves every copied workflow compiling the same kernels again
    (~35 s each on two cores); no result depends on it."""
    global _numba_warm
    if _numba_warm:
        return
    with tempfile.TemporaryDirectory() as tmp:
        raw, graphs = Path(tmp) / "raw.h5", Path(tmp) / "graphs"
        for args in (["generate-triangle", "--out", str(raw), "--num-clouds", "8", "--seed", "0", "--num-points", "12",
                      "--radius", "5.0", "--min-dist", "1.0"],
                     ["build-graphs", "--task", "triangle", "--source", str(raw), "--out", str(graphs),
                      "--cutoff", "4.0", "--max-neighbors", "-1", "--shard-size", "4", "--no-progress"]):
            subprocess.run([sys.executable, "-m", "eqgat.tasks", "-q", *args], cwd=REPO, check=True,
                           capture_output=True)
    _numba_warm = True


def copy_numba_cache(dest: Path) -> None:
    """Give a copy of the repository the Numba kernels compiled in this checkout."""
    warm_numba_cache()
    for cache in REPO.glob("preprocess/**/__pycache__/*.nb[ic]"):
        target = dest / cache.relative_to(REPO)
        if target.parent.parent.exists():
            target.parent.mkdir(exist_ok=True)
            shutil.copy2(cache, target)


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
