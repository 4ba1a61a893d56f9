"""Command-line entry points used by the workflow rules: `python -m eqgat {train,evaluate,aggregate,params}`."""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger("eqgat")


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("numexpr").setLevel(logging.WARNING)  # "NumExpr defaulting to N threads"


def model_spec(task_name: str, model: str, preset: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The model name and its full hyper-parameters: a paper preset, the task's head, overrides."""
    from eqgat.configs import model_config
    from eqgat.tasks import get_task

    task = get_task(task_name)
    hparams = {**model_config(model, preset), "out_dim": task.out_dim, "readout": task.readout, **overrides}
    return {"name": model, "hparams": hparams}


def manifest_path(data_dir: str) -> Path:
    path = Path(data_dir) / "manifest.json"
    if not path.exists():
        raise FileNotFoundError(f"no shard manifest at {path}")
    return path


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def cmd_train(args: argparse.Namespace) -> None:
    from eqgat.data import ShardDataset
    from eqgat.device import select_device
    from eqgat.models import build_model
    from eqgat.provenance import code_version
    from eqgat.tasks import get_task
    from eqgat.train.loop import TrainSettings, seed_everything, train

    torch.set_num_threads(args.threads)
    task = get_task(args.task)
    spec = model_spec(args.task, args.model, args.preset, json.loads(args.hparams))
    settings = TrainSettings(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, lr_factor=args.lr_factor,
        lr_patience=args.lr_patience, lr_min=args.lr_min, clip_norm=args.clip_norm, seed=args.seed,
        num_workers=args.loader_workers, amp=args.amp,
    )
    manifest = manifest_path(args.data)
    device = select_device(args.device)
    seed_everything(args.seed)
    model = build_model(spec["name"], **spec["hparams"])
    log.info("task %s model %s (%d parameters) on %s", task.name, spec["name"], sum(p.numel() for p in model.parameters()), device)
    train(
        model, spec, task, ShardDataset(manifest, "train"), ShardDataset(manifest, "val"), settings, args.out, device,
        data_fingerprint=file_digest(manifest), progress=not args.no_progress, code_version=code_version("train"),
    )


def cmd_evaluate(args: argparse.Namespace) -> None:
    from eqgat.data import ShardDataset
    from eqgat.device import select_device
    from eqgat.tasks import get_task
    from eqgat.train.evaluate import evaluate

    torch.set_num_threads(args.threads)
    manifest = manifest_path(args.data)
    splits = {split: ShardDataset(manifest, split) for split in args.splits}
    result = evaluate(
        args.checkpoint, get_task(args.task), splits, args.batch_size, select_device(args.device),
        args.out, args.predictions, extra={"seed": args.seed},
    )
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


def cmd_params(args: argparse.Namespace) -> None:
    from eqgat.configs import main

    main(["--model", *args.model])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eqgat", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--task", required=True)
        p.add_argument("--data", required=True, help="graph directory holding manifest.json")
        p.add_argument("--device", default="auto", help="auto (GPU if available), cpu or cuda")
        p.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--batch-size", type=int, default=32)

    p = sub.add_parser("train", help="train one (task, model, seed); resumes from its last checkpoint")
    common(p)
    p.add_argument("--model", default="eqgat")
    p.add_argument("--preset", required=True, help="paper configuration: lba, psr, rsr, res, ppi, triangle")
    p.add_argument("--hparams", default="{}", help="JSON object of model hyper-parameter overrides")
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--lr-factor", type=float, default=0.75)
    p.add_argument("--lr-patience", type=int, default=10)
    p.add_argument("--lr-min", type=float, default=1e-7)
    p.add_argument("--clip-norm", type=float, default=10.0)
    p.add_argument("--loader-workers", type=int, default=0)
    p.add_argument("--amp", action="store_true", help="mixed precision (bfloat16 autocast) on CUDA")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", required=True, help="run directory")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="metrics of the best checkpoint")
    common(p)
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

    p = sub.add_parser("params", help="parameter counts of the paper configurations")
    p.add_argument("--model", nargs="+", default=["eqgat"], help="registered model names")
    p.set_defaults(func=cmd_params)
    return parser


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, FloatingPointError, RuntimeError) as exc:
        log.error("%s", exc)
        return 1
    return 0
