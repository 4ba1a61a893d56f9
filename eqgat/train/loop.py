"""The training loop: Adam, ReduceLROnPlateau, gradient clipping, best-validation
checkpoint, resumable after a kill, deterministic for a given seed on a given machine."""
from __future__ import annotations

import csv
import io
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from torch_geometric.loader import DataLoader
from tqdm import tqdm

from eqgat.device import autocast, mixed_precision_available
from preprocess.atomic import write_json_atomic, write_text_atomic
from eqgat.tasks import Task
from eqgat.train.checkpoint import fingerprint, load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)

LOG_COLUMNS = ("epoch", "lr", "train_loss", "val_loss", "val_metric", "seconds")


@dataclass
class TrainSettings:
    epochs: int
    batch_size: int
    lr: float = 1e-4
    lr_factor: float = 0.75
    lr_patience: int = 10
    lr_min: float = 1e-7
    clip_norm: float = 10.0
    seed: int = 0
    num_workers: int = 0
    amp: bool = False  # bfloat16 autocast of the forward pass on CUDA


@dataclass
class RunPaths:
    """Where a run keeps its files. `last` is deliberately separate from the declared
    outputs so that a workflow manager deleting incomplete outputs keeps it for resuming."""

    run_dir: Path

    @property
    def best(self) -> Path:
        return self.run_dir / "best.pt"

    @property
    def last(self) -> Path:
        return self.run_dir / "state" / "last.pt"

    @property
    def log_csv(self) -> Path:
        return self.run_dir / "log.csv"

    @property
    def summary(self) -> Path:
        return self.run_dir / "train.json"


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def epoch_order(num_items: int, seed: int, epoch: int) -> list[int]:
    """The shuffled sample order of one epoch, a function of (seed, epoch) only."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_items, generator=gen).tolist()


def make_loader(dataset: Dataset, batch_size: int, order: Sequence[int] | None, num_workers: int) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=order if order is not None else range(len(dataset)),
        num_workers=num_workers,
        persistent_workers=False,
    )


@torch.no_grad()
def predict(model: torch.nn.Module, loader: DataLoader, device: torch.device) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Model outputs, labels and ids over a loader, in loader order."""
    model.eval()
    preds, ys, ids = [], [], []
    for batch in loader:
        batch = batch.to(device)
        preds.append(model(batch).double().cpu().numpy())
        ys.append(batch.y.cpu().numpy())
        ids.extend(batch.id if isinstance(batch.id, list) else [batch.id])
    if not preds:
        return np.zeros((0,)), np.zeros((0,)), []
    return np.concatenate(preds), np.concatenate(ys), ids


@torch.no_grad()
def mean_loss(model: torch.nn.Module, loader: DataLoader, task: Task, device: torch.device) -> float:
    """Loss averaged over graphs (batches weighted by their size)."""
    model.eval()
    total, count = 0.0, 0
    for batch in loader:
        batch = batch.to(device)
        n = int(batch.num_graphs)
        total += float(task.loss(model(batch), batch.y)) * n
        count += n
    return total / count if count else float("nan")


def train_one_epoch(model, loader, task: Task, optimizer, clip_norm: float, device, progress: bool, amp: bool = False) -> float:
    model.train()
    total, count = 0.0, 0
    for batch in tqdm(loader, desc="  batches", leave=False, disable=not progress, mininterval=2.0):
        batch = batch.to(device)
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, amp):
            pred = model(batch)
        loss = task.loss(pred.float(), batch.y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss {float(loss)}; batch ids {list(batch.id)[:5]}...")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        optimizer.step()
        n = int(batch.num_graphs)
        total += float(loss.detach()) * n
        count += n
    return total / max(count, 1)


def write_log_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LOG_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def train(
    model: torch.nn.Module,
    model_spec: dict[str, Any],
    task: Task,
    train_set: Dataset,
    val_set: Dataset,
    settings: TrainSettings,
    run_dir: str | Path,
    device: torch.device,
    data_fingerprint: str = "",
    progress: bool = True,
    code_version: str = "",
) -> dict[str, Any]:
    """Train `model` (already built with the run's seed), resuming from the last epoch
    checkpoint of the same run if there is one: same settings, model, task, data
    (`data_fingerprint`) and training code (`code_version`). Returns the training summary."""
    paths = RunPaths(Path(run_dir))
    run_id = fingerprint(asdict(settings), model_spec, task.name, data_fingerprint, code_version)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=settings.lr_factor, patience=settings.lr_patience, min_lr=settings.lr_min
    )
    # the resumable state; it holds the best weights too, because a workflow manager may delete
    # best.pt (a declared output) of an interrupted run before it is resumed
    state = {"epoch": 0, "best_val": math.inf, "best_epoch": -1, "best_model": None, "log": []}
    if paths.last.exists():
        saved = load_checkpoint(paths.last, map_location=device)
        if saved.get("run_id") == run_id:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            torch.set_rng_state(saved["torch_rng"])
            state = {k: saved[k] for k in state}
            log.info("resuming %s after epoch %d (best val %.6g at epoch %d)", paths.run_dir, state["epoch"], state["best_val"], state["best_epoch"])
        else:
            log.warning("ignoring checkpoint %s: it belongs to a run with other settings, data or code", paths.last)

    use_amp = mixed_precision_available(device, settings.amp)
    val_loader = make_loader(val_set, settings.batch_size, None, settings.num_workers)
    bar = tqdm(total=settings.epochs, initial=state["epoch"], desc=f"{task.name} {model_spec.get('name')} seed {settings.seed}", disable=not progress)
    for epoch in range(state["epoch"] + 1, settings.epochs + 1):
        start = time.perf_counter()
        order = epoch_order(len(train_set), settings.seed, epoch)
        train_loader = make_loader(train_set, settings.batch_size, order, settings.num_workers)
        train_loss = train_one_epoch(model, train_loader, task, optimizer, settings.clip_norm, device, progress, use_amp)
        val_loss = mean_loss(model, val_loader, task, device)
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step(val_loss)
        if val_loss < state["best_val"]:
            state["best_val"], state["best_epoch"] = val_loss, epoch
            state["best_model"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        state["epoch"] = epoch
        state["log"].append({"epoch": epoch, "lr": lr, "train_loss": train_loss, "val_loss": val_loss, "val_metric": task.loss_name, "seconds": round(time.perf_counter() - start, 3)})
        save_checkpoint(paths.last, {
            **state, "run_id": run_id, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state(),
        })
        write_log_csv(paths.log_csv, state["log"])
        bar.update(1)
        bar.set_postfix(train=f"{train_loss:.4g}", val=f"{val_loss:.4g}", lr=f"{lr:.2g}")
        log.info("epoch %d/%d train %.6g val %.6g lr %.3g (%.1f s)", epoch, settings.epochs, train_loss, val_loss, lr, time.perf_counter() - start)
    bar.close()
    if state["best_model"] is None:
        raise RuntimeError(f"no finite validation loss in {settings.epochs} epochs; no best checkpoint in {paths.run_dir}")
    save_checkpoint(paths.best, {"model": state["best_model"], "model_spec": model_spec, "epoch": state["best_epoch"], "val_loss": state["best_val"], "run_id": run_id})
    write_log_csv(paths.log_csv, state["log"])
    summary = {
        "run_id": run_id, "epochs": settings.epochs, "best_epoch": state["best_epoch"], "best_val_loss": state["best_val"],
        "settings": asdict(settings), "model_spec": model_spec, "task": task.name, "code_version": code_version,
        "num_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
    write_json_atomic(paths.summary, summary)
    return summary
