"""Live progress of a run as TensorBoard event files (``tensorboard: true`` in the config;
``pip install -e '.[tensorboard]'``): the training loss every ``every`` optimiser steps, the
learning rate, and per epoch the validation loss and the task's metrics. They go to
``<run dir>/tensorboard``; ``tensorboard --logdir results/<task>/runs`` shows every run.
``log.csv`` is written as without them."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping

__all__ = ["EventLog", "INSTALL_HINT", "summary_writer"]

INSTALL_HINT = "pip install -e '.[tensorboard]' (or pip install tensorboard)"


def summary_writer() -> type:
    """torch's ``SummaryWriter``; a clear error when the tensorboard package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:  # torch's writer needs the tensorboard package
        raise RuntimeError(f"tensorboard is switched on but cannot be used ({exc}); install it: {INSTALL_HINT}, "
                           f"or set tensorboard: false") from None
    return SummaryWriter


class EventLog:
    """A TensorBoard writer for one run."""

    def __init__(self, log_dir: str | Path, every: int = 10) -> None:
        SummaryWriter = summary_writer()
        if every < 1:
            raise ValueError(f"tensorboard: log every N >= 1 steps, got {every}")
        self.every = int(every)
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def step(self, step: int, loss: float, lr: float) -> None:
        """After optimiser step `step` (counted from 1 over the whole run)."""
        if step % self.every == 0:
            self.writer.add_scalar("train/loss", loss, step)
            self.writer.add_scalar("train/lr", lr, step)

    def epoch(self, epoch: int, train_loss: float, values: Mapping[str, float]) -> None:
        """The epoch's mean training loss and the validation values (non-finite ones are left out)."""
        self.writer.add_scalar("epoch/train_loss", train_loss, epoch)
        for name, value in values.items():
            if isinstance(value, (int, float)) and math.isfinite(float(value)):
                self.writer.add_scalar(f"val/{name}", float(value), epoch)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
