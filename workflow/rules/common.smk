# Shared helpers: config validation and task sections, output paths, code versions.
# Every task-specific fact comes from the task declarations in eqgat/tasks/.
import functools
import json
from pathlib import Path

from snakemake.logging import logger
from snakemake.utils import min_version

from eqgat.aggregate import unreported_runs
from eqgat.models import MODELS
from eqgat.provenance import code_version as stage_code_version
from eqgat.tasks import TASKS, archives, predictable_tasks
from eqgat.tasks.config import validate_config
from preprocess.download import archives_json, download_minutes
from preprocess.shards import damaged_shards

min_version("9.0")


# The schema (workflow/schemas/config.schema.yaml + the task declarations) checks every key;
# each task's section becomes its paper protocol with the config's keys laid over it.
validate_config(config)
if config["tensorboard"]:
    from eqgat.train.tensorboard import summary_writer

    summary_writer()  # a missing tensorboard package is an error now, not in every training job

ROOT = Path(workflow.basedir)
# one software environment for every rule (used with `--sdm conda`)
CONDA_ENV = "../envs/eqgat.yaml"
# Wildcards only ever take the registered names (and seeds are numbers): a requested path
# naming anything else matches no rule, so no job runs with it.
wildcard_constraints:
    task="|".join(TASKS),
    model="|".join(MODELS),
    seed=r"\d+",


RESULTS = config["results_dir"]
RESOURCES = config["resources_dir"]
LOGS = config["logs_dir"]
# what the report's workflow description says about runs missing from the results table
config["_report"] = {"unreported": unreported_runs(f"{RESULTS}/summary/results.csv", config["tasks"],
                                                   config["models"], config["seeds"])}
ARCHIVES = archives()


@functools.cache
def code_version(stage, *tasks):
    """Hash of the Python sources a stage runs for tasks (eqgat/provenance.py lists them); each
    (stage, tasks) is hashed once per parse, not once per job."""
    return stage_code_version(stage, *tasks, root=ROOT)


def section(task):
    """A task's effective config section (its paper protocol + the config)."""
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


def task_metrics(task):
    return [f"{run_dir(task, model, seed)}/metrics.json" for model in config["models"] for seed in config["seeds"]]


def all_outputs():
    """What `all` makes: the table and curves, each task's test plot, and predictions if asked."""
    out = [f"{RESULTS}/summary/results.md", f"{RESULTS}/summary/results.csv", f"{RESULTS}/summary/learning_curves.png"]
    out += [f"{RESULTS}/summary/{task}/test_predictions.png" for task in config["tasks"]]
    if config.get("predict"):
        out.append(f"{RESULTS}/predictions.csv")
    return out


def predict_inputs():
    """The `predict` config's files and folders as given. The files inside a folder are never
    Snakemake inputs: their names would reach the DAG (where `<name>` is a path variable) and
    the HTML report's script block; `predict_listing` reruns predict when they change."""
    return config["predict"]["files"] if config.get("predict") else []


def predict_listing():
    """A digest of the structure files predict reads (names, sizes, modification times)."""
    from preprocess.readers.structures import expand, listing_digest

    return listing_digest((name, Path(name)) for name in expand(predict_inputs()))


# the tasks whose declarations say how predict reads a file (their declarations are predict's code)
PREDICT_TASKS = predictable_tasks()


def predict_limits():
    """The `predict` config's read caps as command-line arguments (unset: the checkpoint's)."""
    settings = config.get("predict") or {}
    return [arg for key in ("max_file_bytes", "max_atoms", "max_degree") if settings.get(key) is not None
            for arg in (f"--{key.replace('_', '-')}", str(settings[key]))]


def dataset_of(task):
    """The downloaded dataset a task reads (LBA: the sequence-identity split chosen)."""
    return TASKS[task].source.dataset(section(task))


def download_markers(task):
    return [f"{RESOURCES}/{dataset_of(task)}/.{a.filename}.complete" for a in ARCHIVES[dataset_of(task)]]


def graph_source(wildcards):
    """What a task's graphs are built from: the generated clouds, the extracted download (its
    mtime is ignored, so re-extracting, e.g. after a mirror change, does not rebuild), or a
    folder's labels CSV (the folder's files count through `folder_listing`)."""
    kind = TASKS[wildcards.task].source.kind
    if kind == "generated":
        return f"{RESULTS}/{wildcards.task}/raw/clouds.h5"
    if kind == "folder":
        return section(wildcards.task)["labels"]
    return [ancient(marker) for marker in download_markers(wildcards.task)]


def source_location(task):
    """The path `eqgat.tasks build-graphs --source` reads for a task."""
    kind = TASKS[task].source.kind
    if kind == "generated":
        return f"{RESULTS}/{task}/raw/clouds.h5"
    if kind == "folder":
        return section(task)["files"]
    return f"{RESOURCES}/{dataset_of(task)}"


def folder_listing(task):
    """A digest of a folder source's structure files (names, sizes, modification times): a file
    added, removed or rewritten rebuilds the task's graphs. Empty for other sources."""
    from preprocess.readers.structures import folder_digest

    if TASKS[task].source.kind != "folder":
        return ""
    return folder_digest(Path(section(task)["files"]))


def source_options(task):
    """JSON of the task's config keys its shards depend on (the declaration's build_options)."""
    s = section(task)
    return json.dumps({k: s[k] for k in TASKS[task].build_options if k in s}, sort_keys=True)


RANKS = config["ranks_per_run"]


def train_resources():
    """The train rule's resources: `ranks` processes of `cpus_per_task` threads each, `gpu` GPUs
    in all (a profile may set them per rule); several ranks make a multi-task job (`tasks`, and
    `mpi` so that the SLURM executor leaves the start of the tasks to the job: eqgat.launch runs
    `srun`)."""
    gpus = config["gpus_per_run"]
    if gpus % RANKS:
        raise ValueError(f"gpus_per_run ({gpus}) must be a multiple of ranks_per_run ({RANKS}): each rank takes as many GPUs")
    resources = {"ranks": RANKS, "cpus_per_task": config["train_threads"], "gpu": gpus, "gpus_per_rank": gpus // RANKS}
    if RANKS > 1:
        resources.update(tasks=RANKS, mpi="srun")
    return resources


def train_section(task, model):
    """JSON of a task section as one model's run sees it: the other models' overrides are left
    out, so editing them does not retrain this model."""
    s = dict(section(task))
    overrides = s["model"]["overrides"]
    s["model"] = {"overrides": {model: overrides[model]} if model in overrides else {}}
    return json.dumps(s, sort_keys=True)


def dask_slurm():
    slurm = config["preprocess"].get("slurm")
    return json.dumps(slurm, sort_keys=True) if slurm else ""


def graph_dir(task):
    return f"{RESULTS}/{task}/graphs"


def graph_check(wildcards):
    """The stamp a task's graphs are built after (an input of build_graphs). When the finished
    graph folder is damaged (no manifest, a listed shard missing or of another size), the stamp
    is rewritten now, naming the damage: being newer than the folder, it makes Snakemake rebuild
    the graphs (and then what depends on them). Runs while the DAG is built, dry runs included."""
    stamp = Path(f"{RESULTS}/{wildcards.task}/graphs.check")
    problems = damaged_shards(graph_dir(wildcards.task))
    if problems and stamp.exists():
        note = f"{graph_dir(wildcards.task)} is damaged: " + "; ".join(problems[:10])
        logger.warning(f"{note}: the graphs will be rebuilt")
        stamp.write_text(f"{note}\n")
    return str(stamp)
