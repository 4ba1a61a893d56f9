"""A run's resumable state: where its files are, where training stands inside an epoch, and
how the state is written (rank 0, atomically) and read back (only by the same run)."""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from eqgat.train.checkpoint import CheckpointError, load_checkpoint, move_aside, save_checkpoint
from eqgat.train.distributed import World, all_gather_objects
from eqgat.train.stopping import ATTEMPTS_LOG

__all__ = ["Position", "Run", "RunPaths", "load_resume_state"]

log = logging.getLogger("eqgat.train.loop")


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

    @property
    def attempts(self) -> Path:
        """One line per start and stop of the run's processes."""
        return self.run_dir / ATTEMPTS_LOG


def load_resume_state(paths: RunPaths, run_id: str, device) -> dict[str, Any] | None:
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


@dataclass
class Position:
    """Where training stands inside an epoch (what a step-level resume state records)."""

    epoch: int
    step: int = 0  # optimiser steps done in this epoch
    total: float = 0.0  # sum of loss * graphs over those steps
    count: int = 0  # graphs of those steps
    seconds: float = 0.0  # time spent on the epoch by earlier attempts
    lr: float = 0.0  # the learning rate at the start of the epoch


class Run:
    """The state of one training run and how it is written; rank 0 writes, atomically."""

    def __init__(self, paths: RunPaths, run_id: str, world: World) -> None:
        self.paths, self.run_id, self.world = paths, run_id, world
        self.state: dict[str, Any] = {"epoch": 0, "best_value": None, "best_epoch": -1, "best_model": None, "log": []}

    def attempt(self, message: str) -> None:
        """A line in the run's attempts log (rank 0)."""
        if self.world.is_main:
            self.paths.attempts.parent.mkdir(parents=True, exist_ok=True)
            with open(self.paths.attempts, "a") as fh:
                fh.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {message}\n")
        log.info("%s", message)

    def write(self, model, optimizer, schedule, scaling, position: Position | None) -> None:
        """The resumable state: after an epoch (`position` None) or inside one. Collective:
        every rank's random-number state goes in."""
        rng = all_gather_objects(torch.get_rng_state(), self.world)
        if not self.world.is_main:
            return
        save_checkpoint(self.paths.last, {
            **self.state, "run_id": self.run_id, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(), "torch_rng": rng[0], "rank_rng": rng,
            "target_scaling": scaling.state() if scaling is not None else None,
            "position": None if position is None else asdict(position),
        })
