"""The training loop: Adam, a learning-rate schedule, gradient clipping, the best checkpoint by
the task's selection metric, resumable after a kill, deterministic for a given seed on a given
machine."""
from __future__ import annotations

import csv
import io
import logging
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from torch_geometric.loader import DataLoader
from tqdm import tqdm

from eqgat.allocator import release as release_memory
from eqgat.allocator import worker_init
from eqgat.device import autocast, mixed_precision_available
from eqgat.tasks.losses import get_loss
from eqgat.train.checkpoint import CheckpointError, fingerprint, load_checkpoint, move_aside, save_checkpoint
from eqgat.train.schedule import LearningRate
from eqgat.train.targets import LabelUnits, TargetScaling
from preprocess.atomic import write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

LOG_COLUMNS = ("epoch", "lr", "train_loss", "val_loss", "selection", "val_selection", "seconds")


@dataclass
class TrainSettings:
    """A run's training settings: a task config's ``train`` section plus the run's own."""

    epochs: int
    batch_size: int
    lr: float = 1e-4
    schedule: str = "plateau"
    warmup_epochs: float = 0.0
    decay_epochs: float | None = None
    lr_factor: float = 0.75
    lr_patience: int = 10
    lr_min: float = 1e-7
    clip_norm: float = 10.0
    loss: str = "mse"
    selection: str = "loss"
    seed: int = 0
    num_workers: int = 0
    amp: bool = False  # bfloat16 autocast of the forward pass on CUDA
    standardize_targets: bool = False  # regression: learn (y - mean) / std of the training split

    @classmethod
    def from_section(cls, train: Mapping[str, Any], **run: Any) -> TrainSettings:
        """From a config ``train`` section (unknown keys are an error) and run settings."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(train) - known)
        if unknown:
            raise ValueError(f"unknown train setting(s) {unknown}; known: {sorted(known)}")
        return cls(**{**train, **run})


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
        worker_init_fn=worker_init if num_workers > 0 else None,
    )


def _batch_column(batch, name: str) -> list:
    value = batch[name]
    if isinstance(value, torch.Tensor):
        return value.view(-1).tolist()
    return list(value) if isinstance(value, (list, tuple)) else [value]


@dataclass
class Predictions:
    """Model outputs over a split, in loader order, with the labels, ids and the per-graph
    columns the task's metrics read (e.g. the PSR ``target`` of every decoy)."""

    pred: np.ndarray
    y: np.ndarray
    ids: list[str]
    columns: dict[str, list]
    loss: float  # mean training loss over the graphs (batches weighted by their size)


@torch.no_grad()
def predict(model: torch.nn.Module, loader: DataLoader, device: torch.device, loss_fn=None,
            columns: Sequence[str] = (), scaling: TargetScaling | None = None) -> Predictions:
    """Run `model` over a loader: outputs, labels, ids, `columns` and the mean loss. With
    `scaling`, `model` gives outputs in the label's units and the loss is that of the
    standardised targets (the one training minimises)."""
    model.eval()
    preds, ys, ids = [], [], []
    cols: dict[str, list] = {name: [] for name in columns}
    total, count = 0.0, 0
    for batch in loader:
        batch = batch.to(device)
        out = model(batch)
        n = int(batch.num_graphs)
        if loss_fn is not None:
            total += float(_loss(loss_fn, out.float(), batch.y, scaling)) * n
            count += n
        preds.append(out.double().cpu().numpy())
        ys.append(batch.y.cpu().numpy())
        ids.extend(batch.id if isinstance(batch.id, list) else [batch.id])
        for name in columns:
            cols[name].extend(_batch_column(batch, name))
    if not preds:
        return Predictions(np.zeros((0,)), np.zeros((0,)), [], cols, float("nan"))
    return Predictions(np.concatenate(preds), np.concatenate(ys), ids, cols, total / count if count else float("nan"))


def _loss(loss_fn, out: torch.Tensor, y: torch.Tensor, scaling: TargetScaling | None) -> torch.Tensor:
    """The loss of outputs in the label's units (standardised first when the targets are scaled)."""
    return loss_fn(out, y) if scaling is None else loss_fn(scaling.standardize(out), scaling.standardize(y))


def target_scaling(task, settings: TrainSettings, train_set: Dataset) -> TargetScaling | None:
    """The training split's label mean and std, when the settings scale a regression task's targets."""
    if not settings.standardize_targets or task.label.kind != "regression":
        return None
    from eqgat.train.baseline import dataset_labels

    labels = dataset_labels(train_set)
    if labels is None:
        labels = np.stack([np.asarray(train_set[i].y, np.float64).reshape(-1) for i in range(len(train_set))])
    return TargetScaling.fit(labels)


def metric_columns(task) -> tuple[str, ...]:
    """The scalar per-graph fields a task's metrics may read."""
    return tuple(f.name for f in task.fields if f.kind in ("int", "str")) if task.dataset is None else ()


def train_one_epoch(model, loader, loss_fn, optimizer, schedule: LearningRate, clip_norm: float, device,
                    progress: bool, amp: bool = False, scaling: TargetScaling | None = None,
                    on_step: Callable[[float, float], None] | None = None) -> tuple[float, int]:
    """One pass over the training loader; returns the mean loss over graphs and the steps made.
    `on_step(loss, lr)` is called after every optimiser step."""
    model.train()
    total, count, steps = 0.0, 0, 0
    for batch in tqdm(loader, desc="  batches", leave=False, disable=not progress, mininterval=2.0):
        batch = batch.to(device)
        schedule.before_step()
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, amp):
            pred = model(batch)
        loss = loss_fn(pred.float(), batch.y if scaling is None else scaling.standardize(batch.y))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss {float(loss)}; batch ids {list(batch.id)[:5]}...")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        optimizer.step()
        steps += 1
        n = int(batch.num_graphs)
        value = float(loss.detach())
        total += value * n
        count += n
        if on_step is not None:
            on_step(value, optimizer.param_groups[0]["lr"])
    return total / max(count, 1), steps


def write_log_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LOG_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def _improved(value: float, best: float | None, higher_is_better: bool) -> bool:
    if not math.isfinite(value):
        return False
    return best is None or (value > best if higher_is_better else value < best)


def _resume(paths: RunPaths, run_id: str, device) -> dict[str, Any] | None:
    """The saved state of this run, or None (no state, another run's, or damaged: moved aside)."""
    if not paths.last.exists():
        return None
    try:
        saved = load_checkpoint(paths.last, map_location=device)
    except CheckpointError as exc:
        moved = move_aside(paths.last)
        log.warning("damaged resume state moved aside to %s (%s); training starts from epoch 1", moved, exc)
        return None
    if saved.get("run_id") != run_id:
        log.warning("ignoring checkpoint %s: it belongs to a run with other settings, data or code", paths.last)
        return None
    return saved


def _trivial(task, train_set: Dataset, val_set: Dataset, loss_fn, scaling: TargetScaling | None,
             rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The trivial predictor beside the run's best validation loss; warns when the run has not learned."""
    from eqgat.train.baseline import dataset_labels, learned, not_learned_message, trivial_record

    record = trivial_record(task.label.kind, dataset_labels(train_set), dataset_labels(val_set), task.out_dim,
                            loss_fn, scaling)
    if record is None:
        return None
    losses = [float(r["val_loss"]) for r in rows if math.isfinite(float(r["val_loss"]))]
    record["best_val_loss"] = min(losses) if losses else float("nan")
    record["learned"] = learned(record["best_val_loss"], record["val_loss"])
    if record["learned"] is False:
        log.warning("%s", not_learned_message(record))
    return record


def train(
    model: torch.nn.Module,
    model_spec: dict[str, Any],
    task,
    train_set: Dataset,
    val_set: Dataset,
    settings: TrainSettings,
    run_dir: str | Path,
    device: torch.device,
    data_fingerprint: str = "",
    progress: bool = True,
    code_version: str = "",
    checkpoint_data: dict[str, Any] | None = None,
    tensorboard_every: int = 0,
) -> dict[str, Any]:
    """Train `model` (already built with the run's seed) for a task
    (:class:`~eqgat.tasks.spec.TaskSpec`), keeping the weights of the epoch with the best
    validation ``settings.selection`` (the loss, or a task metric in its own direction), which
    also drives the LR plateau. Resumes from the last epoch checkpoint of the same run: same
    settings, model, task, data (`data_fingerprint`) and training code (`code_version`).
    A train set with a ``set_epoch`` method (PPI pairs) is told each epoch. `checkpoint_data`
    (how the structures were read: task, cutoff, classes, ...) goes into ``best.pt`` under
    ``data``, so that the model can score new files. With `tensorboard_every` > 0, TensorBoard
    event files go to ``<run_dir>/tensorboard`` (:mod:`eqgat.train.tensorboard`). Returns the
    summary."""
    if settings.loss not in task.loss_names:
        raise ValueError(f"task {task.name} has no loss {settings.loss!r}; it declares {list(task.loss_names)}")
    if settings.selection not in task.selection_choices:
        raise ValueError(f"task {task.name} cannot select by {settings.selection!r}; choices: {list(task.selection_choices)}")
    for split, dataset in (("train", train_set), ("val", val_set)):
        if len(dataset) == 0:
            raise ValueError(f"task {task.name}: the {split} split has no graphs")
    loss_fn = get_loss(settings.loss)
    higher = task.selection_higher_is_better(settings.selection)
    columns = metric_columns(task)
    paths = RunPaths(Path(run_dir))
    run_id = fingerprint(asdict(settings), model_spec, task.name, data_fingerprint, code_version)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    steps_per_epoch = math.ceil(len(train_set) / settings.batch_size)
    schedule = LearningRate(optimizer, settings, steps_per_epoch, higher_is_better=higher)
    # the resumable state; it holds the best weights too, because a workflow manager may delete
    # best.pt (a declared output) of an interrupted run before it is resumed
    state = {"epoch": 0, "best_value": None, "best_epoch": -1, "best_model": None, "log": []}
    saved = _resume(paths, run_id, device)
    scaling = (TargetScaling.from_state(saved.get("target_scaling")) if saved is not None
               else target_scaling(task, settings, train_set))
    if scaling is not None:
        log.info("regression targets standardised: training mean %s, std %s", scaling.mean, scaling.std)
    eval_model = model if scaling is None else LabelUnits(model, scaling)
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        torch.set_rng_state(saved["torch_rng"])
        state = {k: saved[k] for k in state}
        log.info("resuming %s after epoch %d (best val %s %s at epoch %d)", paths.run_dir, state["epoch"],
                 settings.selection, state["best_value"], state["best_epoch"])

    events = None
    if tensorboard_every > 0:
        from eqgat.train.tensorboard import EventLog

        events = EventLog(paths.run_dir / "tensorboard", tensorboard_every)
    on_step = None if events is None else (lambda loss, lr: events.step(schedule.steps, loss, lr))
    use_amp = mixed_precision_available(device, settings.amp)
    val_loader = make_loader(val_set, settings.batch_size, None, settings.num_workers)
    bar = tqdm(total=settings.epochs, initial=state["epoch"], desc=f"{task.name} {model_spec.get('name')} seed {settings.seed}",
               disable=not progress)
    for epoch in range(state["epoch"] + 1, settings.epochs + 1):
        start = time.perf_counter()
        if hasattr(train_set, "set_epoch"):
            train_set.set_epoch(epoch)
        order = epoch_order(len(train_set), settings.seed, epoch)
        train_loader = make_loader(train_set, settings.batch_size, order, settings.num_workers)
        lr = optimizer.param_groups[0]["lr"]
        train_loss, steps = train_one_epoch(model, train_loader, loss_fn, optimizer, schedule, settings.clip_norm,
                                            device, progress, use_amp, scaling, on_step)
        if steps == 0:
            raise RuntimeError(f"task {task.name}: epoch {epoch} made no optimiser step ({len(train_set)} training graphs)")
        lr = optimizer.param_groups[0]["lr"] if settings.schedule == "cosine" else lr
        val = predict(eval_model, val_loader, device, loss_fn, columns, scaling)
        value = val.loss if settings.selection == "loss" else float(task.evaluate(val.pred, val.y, val.columns)[settings.selection])
        schedule.end_epoch(value)
        if events is not None:
            metrics = {k: v for k, v in task.evaluate(val.pred, val.y, val.columns).items() if isinstance(v, (int, float))}
            events.epoch(epoch, train_loss, {"loss": val.loss, **metrics})
        if _improved(value, state["best_value"], higher):
            state["best_value"], state["best_epoch"] = value, epoch
            state["best_model"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        state["epoch"] = epoch
        state["log"].append({"epoch": epoch, "lr": lr, "train_loss": train_loss, "val_loss": val.loss,
                             "selection": settings.selection, "val_selection": value,
                             "seconds": round(time.perf_counter() - start, 3)})
        save_checkpoint(paths.last, {
            **state, "run_id": run_id, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(), "torch_rng": torch.get_rng_state(),
            "target_scaling": scaling.state() if scaling is not None else None,
        })
        write_log_csv(paths.log_csv, state["log"])
        release_memory()  # the epoch's free heap memory back to the kernel (tuned glibc only)
        bar.update(1)
        bar.set_postfix(train=f"{train_loss:.4g}", val=f"{val.loss:.4g}", lr=f"{lr:.2g}")
        selected = "" if settings.selection == "loss" else f" val {settings.selection} {value:.6g}"
        log.info("epoch %d/%d train %.6g val loss %.6g%s lr %.3g (%.1f s)", epoch, settings.epochs, train_loss,
                 val.loss, selected, lr, time.perf_counter() - start)
    bar.close()
    if events is not None:
        events.close()
    if state["best_model"] is None:
        raise RuntimeError(f"no finite validation {settings.selection} in {settings.epochs} epochs; "
                           f"no best checkpoint in {paths.run_dir}")
    trivial = _trivial(task, train_set, val_set, loss_fn, scaling, state["log"])
    save_checkpoint(paths.best, {"model": state["best_model"], "model_spec": model_spec, "task": task.name,
                                 "loss": settings.loss, "epoch": state["best_epoch"], "selection": settings.selection,
                                 "val_selection": state["best_value"], "run_id": run_id,
                                 "data": dict(checkpoint_data or {}),
                                 "target_scaling": scaling.state() if scaling is not None else None,
                                 "trivial": trivial})
    write_log_csv(paths.log_csv, state["log"])
    summary = {
        "run_id": run_id, "epochs": settings.epochs, "best_epoch": state["best_epoch"], "selection": settings.selection,
        "best_val_selection": state["best_value"], "settings": asdict(settings), "model_spec": model_spec,
        "task": task.name, "code_version": code_version,
        "num_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "target_scaling": scaling.state() if scaling is not None else None,
        "trivial": trivial, "learned": None if trivial is None else trivial["learned"],
    }
    write_json_atomic(paths.summary, summary)
    return summary
