"""The training loop: Adam, a learning-rate schedule, gradient clipping, the best checkpoint by
the task's selection metric; one process or several data-parallel ranks (:mod:`.distributed`);
batches of fixed size or packed by size (:mod:`.batches`); stopped before a deadline or on a
signal and resumed at the step where it stopped (:mod:`.stopping`); deterministic for a given
seed, number of ranks and machine."""
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

from eqgat.train.batches import OversizeGraphs, SizeCaps, epoch_order, plan_epoch, steps_per_epoch
from eqgat.train.distributed import World, all_gather_objects, any_rank, gather_rows
from eqgat.train.stopping import StopPolicy, Stopped, stop_message

from eqgat.allocator import release as release_memory
from eqgat.allocator import worker_init
from eqgat.device import autocast, mixed_precision_available
from eqgat.tasks.losses import get_loss
from eqgat.train.checkpoint import fingerprint, save_checkpoint
from eqgat.train.schedule import LearningRate
from eqgat.train.state import Position, Run, RunPaths, load_resume_state
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
    max_atoms: int | None = None  # batches by size: at most this many atoms per rank's batch
    max_edges: int | None = None  # ... and at most this many edges
    oversize: str = "error"  # a graph over a cap: "error" names it, "skip" leaves it out and counts it
    activation_checkpointing: bool = False  # recompute each layer's activations in the backward pass
    compile: bool = False  # torch.compile the training forward pass
    checkpoint_minutes: float = 30.0  # write the resume state this often (0: only at epoch ends and stops)
    time_limit_minutes: float | None = None  # stop (resumably) this long after the start

    #: settings that change how a run is executed, never its numbers: not part of its identity
    OPERATIONAL = ("activation_checkpointing", "checkpoint_minutes", "time_limit_minutes")

    @classmethod
    def from_section(cls, train: Mapping[str, Any], **run: Any) -> TrainSettings:
        """From a config ``train`` section (unknown keys are an error) and run settings."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(train) - known)
        if unknown:
            raise ValueError(f"unknown train setting(s) {unknown}; known: {sorted(known)}")
        settings = cls(**{**train, **run})
        if settings.oversize not in ("error", "skip"):
            raise ValueError(f"train setting oversize must be 'error' or 'skip', got {settings.oversize!r}")
        return settings

    def identity(self) -> dict[str, Any]:
        """The settings that decide a run's numbers (what a resume state must match)."""
        return {k: v for k, v in asdict(self).items() if k not in self.OPERATIONAL}

    @property
    def caps(self) -> bool:
        return self.max_atoms is not None or self.max_edges is not None


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def make_loader(dataset: Dataset, batch_size: int, order: Sequence[int] | None, num_workers: int) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=order if order is not None else range(len(dataset)),
        num_workers=num_workers,
        persistent_workers=False,
        worker_init_fn=worker_init if num_workers > 0 else None,
    )


def batch_loader(dataset: Dataset, batches: Sequence[Sequence[int]], num_workers: int) -> DataLoader:
    """A loader yielding the given batches of dataset indices, in order."""
    return DataLoader(dataset, batch_sampler=[list(b) for b in batches], num_workers=num_workers,
                      persistent_workers=False, worker_init_fn=worker_init if num_workers > 0 else None)


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


def train_step(model, batch, loss_fn, optimizer, schedule: LearningRate, clip_norm: float, device, amp: bool = False,
               scaling: TargetScaling | None = None, world: World | None = None, counts: Sequence[int] | None = None,
               parameters: Sequence[torch.nn.Parameter] | None = None) -> float:
    """One optimiser step on a batch; returns its loss. With several ranks the loss is that of
    the global batch (``counts[r]`` graphs from rank ``r``; this rank's first ``counts[rank]``
    graphs of `batch` count, the rest is a stand-in that adds nothing)."""
    batch = batch.to(device)
    schedule.before_step()
    optimizer.zero_grad(set_to_none=True)
    with autocast(device, amp):
        pred = model(batch)
    if pred.dtype in (torch.float16, torch.bfloat16):  # autocast outputs: the loss in float32
        pred = pred.float()
    y = batch.y if scaling is None else scaling.standardize(batch.y)
    if world is not None and world.distributed:
        own = counts[world.rank]
        pred, y = gather_rows(pred[:own], counts, world), gather_rows(y[:own], counts, world)
    loss = loss_fn(pred, y)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"non-finite training loss {float(loss)}; batch ids {list(batch.id)[:5]}...")
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters() if parameters is None else parameters, clip_norm)
    optimizer.step()
    return float(loss.detach())


def train_one_epoch(model, loader, loss_fn, optimizer, schedule: LearningRate, clip_norm: float, device,
                    progress: bool, amp: bool = False, scaling: TargetScaling | None = None,
                    on_step: Callable[[float, float], None] | None = None) -> tuple[float, int]:
    """One process's pass over a training loader; returns the mean loss over graphs and the
    steps made. `on_step(loss, lr)` is called after every optimiser step."""
    model.train()
    total, count, steps = 0.0, 0, 0
    for batch in tqdm(loader, desc="  batches", leave=False, disable=not progress, mininterval=2.0):
        value = train_step(model, batch, loss_fn, optimizer, schedule, clip_norm, device, amp, scaling)
        steps += 1
        n = int(batch.num_graphs)
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


def _trivial(task, train_set: Dataset, val_set: Dataset, loss_fn, scaling: TargetScaling | None,
             rows: list[dict[str, Any]], warn: bool = True) -> dict[str, Any] | None:
    """The trivial predictor beside the run's best validation loss; warns when the run has not learned."""
    from eqgat.train.baseline import dataset_labels, learned, not_learned_message, trivial_record

    record = trivial_record(task.label.kind, dataset_labels(train_set), dataset_labels(val_set), task.out_dim,
                            loss_fn, scaling)
    if record is None:
        return None
    losses = [float(r["val_loss"]) for r in rows if math.isfinite(float(r["val_loss"]))]
    record["best_val_loss"] = min(losses) if losses else float("nan")
    record["learned"] = learned(record["best_val_loss"], record["val_loss"])
    if record["learned"] is False and warn:
        log.warning("%s", not_learned_message(record))
    return record


def predict_split(model: torch.nn.Module, dataset: Dataset, batch_size: int, device: torch.device, loss_fn,
                  columns: Sequence[str], scaling: TargetScaling | None, world: World, num_workers: int = 0) -> Predictions:
    """:func:`predict` over a whole split. With several ranks each rank predicts every
    ``world.size``-th graph and every rank gets all predictions in dataset order; the loss is
    then taken over batches of ``batch_size * world.size`` graphs, as one process would."""
    if not world.distributed:
        return predict(model, make_loader(dataset, batch_size, None, num_workers), device, loss_fn, columns, scaling)
    mine = list(range(world.rank, len(dataset), world.size))
    part = predict(model, make_loader(dataset, batch_size, mine, num_workers), device, None, columns, scaling)
    parts = [p for p in all_gather_objects((mine, part), world) if p[0]]
    index = np.concatenate([np.asarray(idx) for idx, _ in parts])
    where = np.argsort(index, kind="stable")
    pred = np.concatenate([p.pred for _, p in parts])[where]
    y = np.concatenate([p.y for _, p in parts])[where]
    ids = [i for _, p in parts for i in p.ids]
    ids = [ids[k] for k in where]
    cols = {name: [v for _, p in parts for v in p.columns[name]] for name in columns}
    cols = {name: [values[k] for k in where] for name, values in cols.items()}
    total, glob = 0.0, batch_size * world.size
    for lo in range(0, len(ids), glob):
        out = torch.from_numpy(pred[lo:lo + glob]).float()
        total += float(_loss(loss_fn, out, torch.from_numpy(y[lo:lo + glob]), scaling)) * len(out)
    return Predictions(pred, y, ids, cols, total / len(ids) if ids else float("nan"))


def size_caps(dataset: Dataset, settings: TrainSettings, task_name: str) -> tuple[SizeCaps | None, np.ndarray]:
    """The batch caps of a run and the graphs they leave out (`settings.oversize` "skip"); a
    graph over a cap is an error naming it with "error"."""
    if not settings.caps:
        return None, np.zeros(0, np.int64)
    sizes = getattr(dataset, "graph_sizes", None)
    if sizes is None:
        raise ValueError(f"task {task_name}: its training data cannot be batched by size (max_atoms / max_edges)")
    atoms, edges = sizes()
    caps = SizeCaps(np.asarray(atoms), np.asarray(edges), settings.max_atoms, settings.max_edges)
    over = caps.oversize()
    if len(over) and settings.oversize == "error":
        names = ", ".join(f"{dataset.graph_id(int(i))!r} ({int(atoms[i])} atoms, {int(edges[i])} edges)" for i in over[:5])
        raise OversizeGraphs(over, f"task {task_name}: {len(over)} training graph(s) exceed the batch cap "
                                   f"(max_atoms {settings.max_atoms}, max_edges {settings.max_edges}): {names}; "
                                   "raise the cap, or set train.oversize: skip")
    if len(over):
        log.warning("%d training graph(s) over the batch cap are left out (train.oversize: skip)", len(over))
    return caps, over


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
    world: World | None = None,
    stop: StopPolicy | None = None,
) -> dict[str, Any]:
    """Train `model` (already built with the run's seed) for a task
    (:class:`~eqgat.tasks.spec.TaskSpec`), keeping the weights of the epoch with the best
    validation ``settings.selection`` (the loss, or a task metric in its own direction), which
    also drives the LR plateau. Resumes from the last resume state of the same run (same
    settings, model, task, data (`data_fingerprint`), training code (`code_version`) and number
    of ranks), at the step where it stopped. A train set with a ``set_epoch`` method (PPI pairs)
    is told each epoch. `checkpoint_data` (how the structures were read: task, cutoff, classes,
    ...) goes into ``best.pt`` under ``data``, so that the model can score new files. With
    `tensorboard_every` > 0, TensorBoard event files go to ``<run_dir>/tensorboard``
    (:mod:`eqgat.train.tensorboard`). `world`: this process's rank among the run's ranks (all
    ranks call this function). `stop` decides when to write resume states and to stop early
    (:class:`Stopped` is raised after the state is written). Returns the summary."""
    world = world or World()
    stop = stop or StopPolicy()
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
    ranks = {"ranks": world.size} if world.distributed else {}
    run_id = fingerprint(settings.identity(), model_spec, task.name, data_fingerprint, code_version, *([ranks] if ranks else []))
    caps, left_out = size_caps(train_set, settings, task.name)
    model.to(device)
    if settings.activation_checkpointing:
        model.set_activation_checkpointing(True)
    net = training_module(model, device, world, settings.compile)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    schedule = LearningRate(optimizer, settings, steps_per_epoch(len(train_set), settings.batch_size, world.size, caps,
                                                                 settings.seed), higher_is_better=higher)
    run = Run(paths, run_id, world)
    saved = load_resume_state(paths, run_id, device)
    scaling = (TargetScaling.from_state(saved.get("target_scaling")) if saved is not None
               else target_scaling(task, settings, train_set))
    if scaling is not None:
        log.info("regression targets standardised: training mean %s, std %s", scaling.mean, scaling.std)
    eval_model = model if scaling is None else LabelUnits(model, scaling)
    position = None
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        rng = saved.get("rank_rng") or [saved["torch_rng"]]
        torch.set_rng_state(rng[world.rank] if world.rank < len(rng) else rng[0])
        run.state = {k: saved[k] for k in run.state}
        position = Position(**saved["position"]) if saved.get("position") else None
    where = (f"epoch {position.epoch} step {position.step}" if position else f"after epoch {run.state['epoch']}")
    run.attempt(f"start: {'resuming ' + where if saved is not None else 'new run'}; {world.size} rank(s)")

    events = None
    if tensorboard_every > 0 and world.is_main:
        from eqgat.train.tensorboard import EventLog

        events = EventLog(paths.run_dir / "tensorboard", tensorboard_every)
    on_step = None if events is None else (lambda loss, lr: events.step(schedule.steps, loss, lr))
    use_amp = mixed_precision_available(device, settings.amp)
    show = progress and world.is_main
    bar = tqdm(total=settings.epochs, initial=run.state["epoch"],
               desc=f"{task.name} {model_spec.get('name')} seed {settings.seed}", disable=not show)
    val_seconds = None
    for epoch in range(run.state["epoch"] + 1, settings.epochs + 1):
        start = time.perf_counter()
        if position is None or position.epoch != epoch:
            position = Position(epoch, lr=optimizer.param_groups[0]["lr"])
        if hasattr(train_set, "set_epoch"):
            train_set.set_epoch(epoch)
        order = epoch_order(len(train_set), settings.seed, epoch, left_out)
        steps = plan_epoch(order, settings.batch_size, world.size, caps)
        if not steps:
            raise RuntimeError(f"task {task.name}: epoch {epoch} made no optimiser step ({len(train_set)} training graphs)")
        mine = [step[world.rank] or step[0][:1] for step in steps[position.step:]]
        net.train()
        batches = tqdm(batch_loader(train_set, mine, settings.num_workers), desc="  batches", leave=False,
                       disable=not show, mininterval=2.0, initial=position.step, total=len(steps))
        for k, batch in enumerate(batches, start=position.step):
            began = time.perf_counter()
            counts = [len(part) for part in steps[k]]
            value = train_step(net, batch, loss_fn, optimizer, schedule, settings.clip_norm, device, use_amp, scaling,
                               world, counts, model.parameters())
            position.step, position.total, position.count = k + 1, position.total + value * sum(counts), position.count + sum(counts)
            if on_step is not None:
                on_step(value, optimizer.param_groups[0]["lr"])
            stop.step_done(time.perf_counter() - began)
            reason = stop.reason_to_stop()
            halt, due = any_rank([reason is not None, stop.state_due()], world, device)
            if halt or due:
                _write_inside(run, model, optimizer, schedule, scaling, position, start, stop)
            if halt:
                batches.close()
                _stopped(run, position, len(steps), _stop_reason(reason, world))
        train_loss = position.total / max(position.count, 1)
        trained = time.perf_counter() - start
        estimate = val_seconds if val_seconds is not None else trained * len(val_set) / max(1, len(order))
        reason = stop.reason_to_stop(estimate)
        if any_rank([reason is not None], world, device)[0]:
            _write_inside(run, model, optimizer, schedule, scaling, position, start, stop)
            _stopped(run, position, len(steps), _stop_reason(reason, world), "before validation")
        lr = optimizer.param_groups[0]["lr"] if settings.schedule == "cosine" else position.lr
        began = time.perf_counter()
        val = predict_split(eval_model, val_set, settings.batch_size, device, loss_fn, columns, scaling, world,
                            settings.num_workers)
        val_seconds = time.perf_counter() - began
        stop.validation_done()
        value = val.loss if settings.selection == "loss" else float(task.evaluate(val.pred, val.y, val.columns)[settings.selection])
        schedule.end_epoch(value)
        if events is not None:
            metrics = {k: v for k, v in task.evaluate(val.pred, val.y, val.columns).items() if isinstance(v, (int, float))}
            events.epoch(epoch, train_loss, {"loss": val.loss, **metrics})
        state = run.state
        if _improved(value, state["best_value"], higher):
            state["best_value"], state["best_epoch"] = value, epoch
            state["best_model"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        state["epoch"] = epoch
        seconds = position.seconds + time.perf_counter() - start
        state["log"].append({"epoch": epoch, "lr": lr, "train_loss": train_loss, "val_loss": val.loss,
                             "selection": settings.selection, "val_selection": value, "seconds": round(seconds, 3)})
        began = time.perf_counter()
        run.write(model, optimizer, schedule, scaling, None)
        stop.state_written(time.perf_counter() - began)
        if world.is_main:
            write_log_csv(paths.log_csv, state["log"])
        position = None
        release_memory()  # the epoch's free heap memory back to the kernel (tuned glibc only)
        bar.update(1)
        bar.set_postfix(train=f"{train_loss:.4g}", val=f"{val.loss:.4g}", lr=f"{lr:.2g}")
        selected = "" if settings.selection == "loss" else f" val {settings.selection} {value:.6g}"
        log.info("epoch %d/%d train %.6g val loss %.6g%s lr %.3g (%.1f s)", epoch, settings.epochs, train_loss,
                 val.loss, selected, lr, seconds)
        reason = stop.reason_to_stop(0.0) if epoch < settings.epochs else None
        reason = reason if reason is not None and reason.startswith("signal") else None
        if any_rank([reason is not None], world, device)[0]:
            _stopped(run, Position(epoch + 1), 0, _stop_reason(reason, world), "after validation")
    bar.close()
    if events is not None:
        events.close()
    return _finish(run, task, train_set, val_set, loss_fn, scaling, settings, model, model_spec, checkpoint_data,
                   code_version, len(left_out))


def training_module(model: torch.nn.Module, device: torch.device, world: World, compile_: bool) -> torch.nn.Module:
    """What the training steps call: the model, wrapped in DDP with several ranks, compiled on request."""
    net = model
    if world.distributed:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    # dynamic shapes: graphs and batches differ in size, and a static compile recompiles for each
    # new size until it gives up (docs/performance.md, "Activation checkpointing and torch.compile")
    return torch.compile(net, dynamic=True) if compile_ else net


def _write_inside(run: Run, model, optimizer, schedule, scaling, position: Position, start: float, stop: StopPolicy) -> None:
    """A resume state inside an epoch (its time so far included)."""
    began = time.perf_counter()
    run.write(model, optimizer, schedule, scaling,
              Position(**{**asdict(position), "seconds": position.seconds + began - start}))
    stop.state_written(time.perf_counter() - began)


def _stop_reason(reason: str | None, world: World) -> str:
    """Why the ranks stop together (collective): this rank's reason, else the first rank's that
    has one, named (rank 0 alone writes the attempts log, and its own deadline may not be due)."""
    reasons = all_gather_objects(reason, world)
    if reason is not None:
        return reason
    rank, other = next((r, why) for r, why in enumerate(reasons) if why is not None)
    return f"{other}, on rank {rank}"


def _stopped(run: Run, position: Position, steps: int, reason: str, when: str = "") -> None:
    message = stop_message(reason, f"epoch {position.epoch}, step {position.step} of {steps}" + (f", {when}" if when else ""))
    run.attempt(f"{message}; resume state {run.paths.last}")
    raise Stopped(f"{run.paths.run_dir}: {message}; rerun to resume")


def _finish(run: Run, task, train_set, val_set, loss_fn, scaling, settings: TrainSettings, model, model_spec,
            checkpoint_data, code_version: str, left_out: int) -> dict[str, Any]:
    """``best.pt``, ``log.csv`` and the summary of a finished run (rank 0)."""
    state, paths = run.state, run.paths
    if state["best_model"] is None:
        raise RuntimeError(f"no finite validation {settings.selection} in {settings.epochs} epochs; "
                           f"no best checkpoint in {paths.run_dir}")
    trivial = _trivial(task, train_set, val_set, loss_fn, scaling, state["log"], warn=run.world.is_main)
    summary = {
        "run_id": run.run_id, "epochs": settings.epochs, "best_epoch": state["best_epoch"], "selection": settings.selection,
        "best_val_selection": state["best_value"], "settings": asdict(settings), "model_spec": model_spec,
        "task": task.name, "code_version": code_version,
        "num_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "target_scaling": scaling.state() if scaling is not None else None,
        "trivial": trivial, "learned": None if trivial is None else trivial["learned"],
        "ranks": run.world.size, "oversize_left_out": left_out,
    }
    if not run.world.is_main:
        return summary
    save_checkpoint(paths.best, {"model": state["best_model"], "model_spec": model_spec, "task": task.name,
                                 "loss": settings.loss, "epoch": state["best_epoch"], "selection": settings.selection,
                                 "val_selection": state["best_value"], "run_id": run.run_id,
                                 "data": dict(checkpoint_data or {}),
                                 "target_scaling": scaling.state() if scaling is not None else None,
                                 "trivial": trivial})
    write_log_csv(paths.log_csv, state["log"])
    write_json_atomic(paths.summary, summary)
    run.attempt("finished")
    return summary
