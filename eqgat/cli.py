"""Command-line entry points used by the workflow rules:
``python -m eqgat {train,evaluate,aggregate,plot-test,predict,params}``.

A task's settings are its paper protocol (:mod:`eqgat.tasks`) with the config section given as
``--section JSON`` laid over it; a few flags override single training settings.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger("eqgat")


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("numexpr").setLevel(logging.WARNING)  # "NumExpr defaulting to N threads"


def set_threads(threads: int) -> None:
    """CPU threads of this command's torch and Numba (imported here: aggregate, plot-test and params need no torch)."""
    from eqgat.device import set_cpu_threads

    set_cpu_threads(threads)


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def manifest_path(data_dir: str) -> Path:
    path = Path(data_dir) / "manifest.json"
    if not path.exists():
        raise FileNotFoundError(f"no shard manifest at {path}")
    return path


def graphs_info(data_dir: str, task) -> tuple[Path, dict[str, Any]]:
    """The manifest of a graph folder and its attributes; the graphs must be the task's."""
    from preprocess.shards import read_manifest

    path = manifest_path(data_dir)
    attrs = read_manifest(path).get("attrs", {})
    if attrs.get("task") != task.name:
        raise ValueError(f"{path} holds graphs of task {attrs.get('task')!r}, not {task.name!r}")
    return path, attrs


def effective_section(task, section_json: str | None, args: argparse.Namespace | None = None) -> dict[str, Any]:
    """The task's protocol with ``--section`` and the training flags laid over it."""
    from eqgat.tasks.config import task_section

    section = task_section(task, json.loads(section_json) if section_json else None)
    for key in ("epochs", "batch_size", "lr", "loss", "selection", "schedule", "warmup_epochs", "decay_epochs"):
        value = getattr(args, key, None) if args is not None else None
        if value is not None:
            section["train"][key] = value
    return section


def check_cutoff(section: dict[str, Any], attrs: dict[str, Any], manifest: Path) -> float:
    """The graphs' cutoff, which is the model's; a config that says otherwise is an error."""
    built = float(attrs["cutoff"])
    wanted = float(section["graph"]["cutoff"])
    if wanted != built:
        raise ValueError(f"the graphs in {manifest.parent} were built with cutoff {built} Å but the task's "
                         f"graph.cutoff is {wanted} Å: rebuild the graphs or fix the config")
    return built


def split_dataset(task, manifest: Path, split: str, section: dict[str, Any], seed: int, verify_full: bool = False):
    """The task's view of one split, refusing an empty split with the skip counts of its build.
    Opening a split checks its shards against the manifest (presence, size, counts, build
    settings); `verify_full` first checks every shard's SHA-256 too."""
    from eqgat.data import ShardDataset
    from eqgat.data.shard_dataset import check_split
    from preprocess.shards import read_manifest

    if verify_full:
        check_split(read_manifest(manifest), split, "full")
        log.info("%s shards of %s: SHA-256 verified", split, manifest.parent)
    dataset = (task.dataset(manifest, split, section, seed) if task.dataset is not None
               else ShardDataset(manifest, split))
    if len(dataset) == 0:
        raise ValueError(f"task {task.name}: the {split} split has no graphs ({skipped_summary(manifest.parent, split)})")
    return dataset


def skipped_summary(data_dir: Path, split: str) -> str:
    """What the graph build skipped in a split, from its ``skip_report.json``."""
    path = data_dir / "skip_report.json"
    if not path.exists():
        return "no skip report"
    report = json.loads(path.read_text()).get(split, {})
    counts = report.get("counts", {})
    if not counts:
        return "nothing was skipped: the split is empty in the source"
    detail = ", ".join(f"{reason}: {n}" for reason, n in sorted(counts.items()))
    return f"{report.get('total', sum(counts.values()))} skipped: {detail}"


def label_names(attrs: dict[str, Any]) -> list[str]:
    """The label or class names the graphs were built with (manifest attribute)."""
    names = attrs.get("label_names", "[]")
    return json.loads(names) if isinstance(names, str) and names.startswith("[") else []


def reading_settings(task, section: dict[str, Any], attrs: dict[str, Any]) -> dict[str, Any]:
    """How the training structures were read, for ``best.pt`` (``eqgat predict`` reads files so)."""
    from preprocess.elements import ELEMENTS
    from preprocess.neighbors import optional_limit

    return {"task": task.name, "cutoff": float(attrs["cutoff"]), "max_neighbors": optional_limit(attrs.get("max_neighbors")),
            "max_degree": optional_limit(attrs.get("max_degree")),
            "label_kind": task.label.kind, "label_names": list(task.label.names),
            "reader": {k: section[k] for k in task.reader_options if k in section}, "elements": list(ELEMENTS)}


def cmd_train(args: argparse.Namespace) -> int:
    import time

    from eqgat.device import select_device
    from eqgat.models import build_model, task_model_hparams
    from eqgat.provenance import code_version
    from eqgat.tasks import get_task
    from eqgat.train.checkpoint import fingerprint
    from eqgat.train.classes import check_trainable
    from eqgat.train.distributed import World
    from eqgat.train.loop import TrainSettings, seed_everything, train
    from eqgat.train.stopping import EXIT_RESUMABLE, StopPolicy, Stopped, job_deadline

    started = time.time()
    world = World.from_env()
    if not world.is_main:  # one rank speaks for the run
        logging.getLogger().setLevel(logging.WARNING)
    set_threads(args.threads)
    base = get_task(args.task)
    section = effective_section(base, args.section, args)
    manifest, attrs = graphs_info(args.data, base)
    task = base.for_section(section, label_names(attrs))
    cutoff = check_cutoff(section, attrs, manifest)
    overrides = {**section["model"]["overrides"].get(args.model, {}), **json.loads(args.hparams)}
    spec = {"name": args.model, "hparams": task_model_hparams(task, args.model, cutoff, overrides)}
    settings = TrainSettings.from_section(section["train"], seed=args.seed, num_workers=args.loader_workers, amp=args.amp)
    train_set = split_dataset(task, manifest, "train", section, args.seed, args.verify_shards)
    val_set = split_dataset(task, manifest, "val", section, args.seed, args.verify_shards)
    if task.label.kind == "classification":
        counts = check_trainable(task.label.names, train_set.labels(), str(manifest.parent))
        log.info("training graphs per class: %s", dict(counts))
    device = world.device(select_device(args.device))
    world.start(device)
    stop = StopPolicy(deadline=job_deadline(started, args.runtime_minutes, settings.time_limit_minutes),
                      checkpoint_minutes=settings.checkpoint_minutes, margin_seconds=args.stop_margin,
                      stop_after_steps=args.stop_after_steps)
    stop.install_signal_handlers()
    if stop.deadline is not None:
        log.info("deadline: %s (in %.0f s)", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stop.deadline)), stop.left())
    seed_everything(args.seed)
    model = build_model(spec["name"], **spec["hparams"])
    log.info("task %s model %s (%d parameters) on %s, rank %d of %d; %d training and %d validation graphs", task.name,
             spec["name"], sum(p.numel() for p in model.parameters()), device, world.rank, world.size, len(train_set),
             len(val_set))
    # the data a run sees: the graphs and the task's own data settings (e.g. PPI pair sampling)
    data = fingerprint(file_digest(manifest), {k: v for k, v in section.items() if k not in ("model", "train")})
    try:
        train(model, spec, task, train_set, val_set, settings, args.out, device, data_fingerprint=data,
              progress=not args.no_progress, code_version=code_version("train", task.name),
              checkpoint_data=reading_settings(task, section, attrs),
              tensorboard_every=args.tensorboard_every if args.tensorboard else 0, world=world, stop=stop)
    except Stopped as exc:
        log.warning("%s (exit status %d)", exc, EXIT_RESUMABLE)
        return EXIT_RESUMABLE
    finally:
        world.stop()
    return 0


def cmd_evaluate(args: argparse.Namespace) -> None:
    from eqgat.device import select_device
    from eqgat.tasks import get_task
    from eqgat.train.classes import class_counts, unseen_class_warnings
    from eqgat.train.evaluate import evaluate

    set_threads(args.threads)
    base = get_task(args.task)
    section = effective_section(base, args.section)
    manifest, attrs = graphs_info(args.data, base)
    task = base.for_section(section, label_names(attrs))
    splits = {split: split_dataset(task, manifest, split, section, args.seed, args.verify_shards)
              for split in args.splits}
    extra: dict[str, Any] = {"seed": args.seed}
    if task.label.kind == "classification":
        names = task.label.names
        trained = class_counts(split_dataset(task, manifest, "train", section, args.seed).labels(), names)
        warnings = unseen_class_warnings(names, trained, {split: ds.labels() for split, ds in splits.items()})
        if warnings:
            extra["warnings"] = warnings
    result = evaluate(args.checkpoint, task, splits, args.batch_size or section["train"]["batch_size"],
                      select_device(args.device), args.out, args.predictions, extra=extra)
    log.info("test metrics: %s", json.dumps(result.get("test", {})))


def cmd_aggregate(args: argparse.Namespace) -> None:
    from eqgat.aggregate import aggregate

    logs = {}
    for path in args.metrics:
        with open(path) as fh:
            run = json.load(fh)
        logs[(run["task"], run["model"], run["seed"])] = str(Path(path).parent / "log.csv")
    notes = json.loads(args.notes) if args.notes else None
    rows = aggregate(args.metrics, logs, args.out_md, args.out_csv, args.out_png, notes)
    log.info("aggregated %d runs into %d table rows", len(args.metrics), len(rows))


def cmd_plot_test(args: argparse.Namespace) -> None:
    from eqgat.plots import plot_test_predictions

    plot_test_predictions(args.metrics, args.out)


def cmd_predict(args: argparse.Namespace) -> None:
    from eqgat.device import select_device
    from eqgat.predict import expand, predict_files

    set_threads(args.threads)
    files = expand(args.files)
    if not files:
        raise ValueError("no structure files to score")
    limits = {k: getattr(args, k) for k in ("max_file_bytes", "max_atoms", "max_degree") if getattr(args, k) is not None}
    predict_files(args.checkpoint, files, args.out, select_device(args.device), batch_size=args.batch_size,
                  ligand_resname=args.ligand_resname or None, pocket_radius=args.pocket_radius,
                  progress=not args.no_progress, limits=limits)


def cmd_params(args: argparse.Namespace) -> None:
    from eqgat.params import print_param_table

    print_param_table(args.model)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be an integer >= 1")
    return value


def cap(text: str) -> int:
    """argparse type: an integer >= 1, or -1 for no limit."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1 and value != -1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be an integer >= 1, or -1 for no limit")
    return value


def _predict_parser(sub) -> None:
    from eqgat.tasks import predictable_tasks
    from preprocess.neighbors import DEFAULT_MAX_DEGREE
    from preprocess.readers.structures import DEFAULT_MAX_ATOMS, DEFAULT_MAX_FILE_BYTES

    p = sub.add_parser("predict", help="score new PDB / mmCIF files with a trained model (best.pt)")
    p.add_argument("--checkpoint", required=True, help=f"best.pt of a {', '.join(predictable_tasks())} run")
    p.add_argument("--out", required=True, help="CSV: file,prediction[,prob_<class>...],error (not the checkpoint, "
                                                "not an input file, not a folder); text cells that a spreadsheet would "
                                                "run as a formula get a leading apostrophe")
    p.add_argument("files", nargs="+", help="structure files (.pdb .ent .cif .mmcif, optionally .gz) or folders")
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--ligand-resname", default=None, help="LBA models: the ligand's residue name (e.g. LIG)")
    p.add_argument("--pocket-radius", type=float, default=None,
                   help="LBA models: residues with an atom this close to the ligand form the pocket (Å; default 6)")
    p.add_argument("--max-file-bytes", type=cap, default=None,
                   help="a file holding more bytes (after decompression) gets the error file_too_large "
                        f"(default: the checkpoint's, else {DEFAULT_MAX_FILE_BYTES}; -1: no limit)")
    p.add_argument("--max-atoms", type=cap, default=None,
                   help="a structure of more atoms gets the error too_many_atoms "
                        f"(default: the checkpoint's, else {DEFAULT_MAX_ATOMS}; -1: no limit)")
    p.add_argument("--max-degree", type=cap, default=None,
                   help="a structure with an atom of more neighbours within the cutoff gets the error "
                        f"too_many_neighbors (default: the checkpoint's graphs', else {DEFAULT_MAX_DEGREE}; -1: no limit)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_predict)


def build_parser() -> argparse.ArgumentParser:
    from eqgat.models import MODELS
    from eqgat.tasks import TASKS

    parser = argparse.ArgumentParser(prog="python -m eqgat", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--task", required=True, choices=list(TASKS))
        p.add_argument("--data", required=True, help="graph directory holding manifest.json")
        p.add_argument("--section", default=None,
                       help="JSON: the task's config section (graph, train, ...) laid over its paper protocol")
        p.add_argument("--device", default="auto", help="auto (GPU if available), cpu or cuda")
        p.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--verify-shards", action="store_true",
                       help="check every shard's SHA-256 against the manifest before reading it (opening a split "
                            "always checks presence, size, format version, graph counts and the build's cutoff)")

    p = sub.add_parser("train", help="train one (task, model, seed); resumes from its last checkpoint")
    common(p)
    p.add_argument("--model", default="eqgat", choices=list(MODELS))
    p.add_argument("--hparams", default="{}", help="JSON object of this model's hyper-parameter overrides")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--loss", default=None, help="one of the task's declared losses")
    p.add_argument("--selection", default=None, help="'loss' or a task metric: selects the best checkpoint")
    p.add_argument("--schedule", default=None, choices=["plateau", "cosine"])
    p.add_argument("--warmup-epochs", type=float, default=None)
    p.add_argument("--decay-epochs", type=float, default=None, help="cosine: decay over the last this many epochs")
    p.add_argument("--loader-workers", type=int, default=0)
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=False,
                   help="mixed precision (bfloat16 autocast) on CUDA")
    p.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=False,
                   help="TensorBoard event files in <out>/tensorboard (needs the tensorboard package)")
    p.add_argument("--tensorboard-every", type=int, default=10, help="log the training loss every this many steps")
    p.add_argument("--runtime-minutes", type=float, default=None,
                   help="the job's time limit (the rule's runtime resource): training stops resumably before it")
    p.add_argument("--stop-margin", type=float, default=None,
                   help="seconds kept free before the deadline, beyond the slowest step and a state write "
                        "(default: 30, or 5%% of the time given when that is less)")
    p.add_argument("--stop-after-steps", type=positive_int, default=None,
                   help="testing resumption: stop as at a deadline after this many optimiser steps")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", required=True, help="run directory")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="metrics of the best checkpoint")
    common(p)
    p.add_argument("--batch-size", type=int, default=None, help="default: the task's training batch size")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--splits", nargs="+", default=["val", "test"])
    p.add_argument("--out", required=True, help="metrics JSON")
    p.add_argument("--predictions", default=None, help="CSV of test predictions")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("aggregate", help="results table (Markdown, CSV) and learning curves")
    p.add_argument("--metrics", nargs="+", required=True)
    p.add_argument("--notes", default=None, help="JSON {task: note} printed under each task heading")
    p.add_argument("--out-md", required=True)
    p.add_argument("--out-csv", required=True)
    p.add_argument("--out-png", required=True)
    p.set_defaults(func=cmd_aggregate)

    p = sub.add_parser("plot-test", help="a task's test predictions: predicted vs true, ROC curves or confusion matrices")
    p.add_argument("--metrics", nargs="+", required=True, help="metrics.json of the runs (test_predictions.csv beside each)")
    p.add_argument("--out", required=True, help="PNG")
    p.set_defaults(func=cmd_plot_test)

    _predict_parser(sub)

    p = sub.add_parser("params", help="parameter counts of the models the paper configuration trains")
    p.add_argument("--model", nargs="+", default=["eqgat"], choices=list(MODELS), help="registered model names")
    p.set_defaults(func=cmd_params)

    from eqgat.gpu_check import add_parser as add_gpu_check

    add_gpu_check(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from eqgat.allocator import TUNED_COMMANDS, tune
    from eqgat.train.checkpoint import CheckpointError

    setup_logging()
    args = build_parser().parse_args(argv)
    if args.command in TUNED_COMMANDS:
        log.info("allocator: %s", tune())
    try:
        status = args.func(args)
    except (ValueError, FileNotFoundError, FloatingPointError, RuntimeError, CheckpointError, KeyError, OSError) as exc:
        log.error("%s", exc)
        return 1
    return status or 0
