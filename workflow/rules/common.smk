# Shared helpers: config validation, output paths, code versions.
import json
import shlex
from pathlib import Path

from snakemake.utils import min_version, validate

from eqgat.provenance import code_version as stage_code_version
from preprocess.download import ARCHIVES

min_version("9.0")


validate(config, schema="../schemas/config.schema.yaml")

ROOT = Path(workflow.basedir)
# one software environment for every rule (used with `--sdm conda`)
CONDA_ENV = "../envs/eqgat.yaml"
RESULTS = config["results_dir"]
RESOURCES = config["resources_dir"]
LOGS = config["logs_dir"]


def code_version(stage):
    """Hash of the Python sources a stage runs (eqgat/provenance.py lists them), in this checkout."""
    return stage_code_version(stage, ROOT)


def task_config(task):
    return config[task]


def run_dir(task, model, seed):
    return f"{RESULTS}/{task}/runs/{model}/seed{seed}"


def all_metrics():
    return [
        f"{run_dir(task, model, seed)}/metrics.json"
        for task in config["tasks"]
        for model in config["models"]
        for seed in config["seeds"]
    ]


def graph_source(wildcards):
    """Triangle: the generated clouds; ATOM3D: the extracted download (its mtime is ignored,
    so re-extracting, e.g. after a mirror change, does not rebuild the graphs)."""
    if wildcards.task == "triangle":
        return f"{RESULTS}/triangle/raw/clouds.h5"
    return [ancient(marker) for marker in download_markers(wildcards.task)]


def source_args(task):
    """Command-line options telling `preprocess build-graphs` where a task's data is."""
    if task == "triangle":
        return f"--raw {RESULTS}/triangle/raw/clouds.h5"
    options = task_config(task)
    args = f"--source {RESOURCES}/{dataset_of(task)}"
    if options.get("strict"):
        args += " --strict"
    if options.get("max_records"):
        args += f" --max-records {options['max_records']}"
    return args


def max_neighbors_arg(graph):
    return "" if graph.get("max_neighbors") is None else f"--max-neighbors {graph['max_neighbors']}"


def scheduler_arg():
    """Where graph building runs: an existing Dask scheduler, Dask workers as SLURM jobs, or
    (default) a local cluster of `preprocess.workers` processes."""
    address = config["preprocess"].get("scheduler")
    if address:
        return f"--scheduler {address}"
    slurm = config["preprocess"].get("slurm")
    return f"--dask-slurm {shlex.quote(json.dumps(slurm, sort_keys=True))}" if slurm else ""


def train_params(wildcards):
    return task_config(wildcards.task)["train"]


def model_params(wildcards):
    model = task_config(wildcards.task)["model"]
    return {"preset": model["preset"], "overrides": json.dumps(model.get("overrides", {}), sort_keys=True)}


def checksum_args(archives):
    """--checksum NAME=ALGO:HEX for each archive with a configured checksum."""
    known = config["download"].get("checksums", {})
    return " ".join(f"--checksum {a.filename}={known[a.filename]}" for a in archives if a.filename in known)


def allowed_host_args():
    """--allowed-host HOST for each host of download.allowed_hosts (none: any host)."""
    return " ".join(f"--allowed-host {shlex.quote(h)}" for h in config["download"].get("allowed_hosts", []))


def dataset_of(task):
    """The downloaded dataset a task reads (LBA: the sequence-identity split chosen)."""
    return f"lba{task_config('lba')['split']}" if task == "lba" else task


def download_markers(task):
    dataset = dataset_of(task)
    return [f"{RESOURCES}/{dataset}/.{a.filename}.complete" for a in ARCHIVES[dataset]]
