"""The learning rate of a run: an optional linear warm-up per step, then either the paper's
ReduceLROnPlateau on the validation selection metric (``plateau``) or, per step, a constant
rate followed by a cosine decay to ``lr_min`` over the last ``decay_epochs`` (``cosine``; all
the epochs after the warm-up when ``decay_epochs`` is not set)."""
from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["LearningRate"]


class LearningRate:
    """Sets the optimiser's learning rate: call :meth:`before_step` before every optimiser
    step and :meth:`end_epoch` with the epoch's validation selection value."""

    def __init__(self, optimizer: torch.optim.Optimizer, settings, steps_per_epoch: int, higher_is_better: bool) -> None:
        if settings.schedule not in ("plateau", "cosine"):
            raise ValueError(f"unknown schedule {settings.schedule!r}; known: plateau, cosine")
        self.optimizer = optimizer
        self.kind = settings.schedule
        self.peak = float(settings.lr)
        self.lr_min = float(settings.lr_min)
        self.warmup_steps = int(round(float(settings.warmup_epochs) * steps_per_epoch))
        self.total_steps = int(settings.epochs) * steps_per_epoch
        decay = settings.decay_epochs
        self.decay_start = (self.warmup_steps if decay is None
                            else max(self.warmup_steps, self.total_steps - int(round(float(decay) * steps_per_epoch))))
        self.steps = 0
        self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max" if higher_is_better else "min", factor=settings.lr_factor,
            patience=settings.lr_patience, min_lr=settings.lr_min)

    def _set(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def before_step(self) -> None:
        s = self.steps
        if s < self.warmup_steps:
            self._set(self.peak * (s + 1) / self.warmup_steps)
        elif self.kind == "cosine":
            t = max(0, s - self.decay_start) / max(1, self.total_steps - self.decay_start)
            self._set(self.lr_min + (self.peak - self.lr_min) * 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0))))
        self.steps += 1

    def end_epoch(self, value: float) -> None:
        """The plateau schedule counts epochs without improvement once the warm-up is over."""
        if self.kind == "plateau" and self.steps >= self.warmup_steps:
            self.plateau.step(value)

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "plateau": self.plateau.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])
        self.plateau.load_state_dict(state["plateau"])
