"""Standardised regression targets: the model learns ``(y - mean) / std`` of the training split;
everything a user reads (metrics, ``test_predictions.csv``, plots, ``eqgat predict``) is in the
label's own units.

The mean and standard deviation (per target) are stored in the resumable state and in
``best.pt`` under ``target_scaling``; :func:`eqgat.train.evaluate.load_best_model` wraps the
model in :class:`LabelUnits`, so every consumer of a best checkpoint gets outputs in the
label's units. Losses (``log.csv``, ``metrics.json``) are those the model minimises: on
standardised targets when scaling is on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor

__all__ = ["LabelUnits", "TargetScaling"]


@dataclass(frozen=True)
class TargetScaling:
    """Per-target mean and standard deviation of the training labels."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def fit(cls, labels: np.ndarray) -> TargetScaling:
        """From the training labels [N, T] (or [N]); a constant target keeps the scale 1."""
        y = np.asarray(labels, dtype=np.float64)
        y = y.reshape(len(y), -1)
        if len(y) == 0 or not np.isfinite(y).all():
            raise ValueError("target scaling needs finite training labels")
        mean = y.mean(axis=0)
        std = y.std(axis=0)
        std = np.where(std > 1e-12 * np.maximum(1.0, np.abs(mean)), std, 1.0)
        return cls(tuple(float(v) for v in mean), tuple(float(v) for v in std))

    @classmethod
    def from_state(cls, state: Mapping[str, Any] | None) -> TargetScaling | None:
        """From a checkpoint's ``target_scaling`` entry (None: the targets were not scaled)."""
        if not state:
            return None
        return cls(tuple(float(v) for v in state["mean"]), tuple(float(v) for v in state["std"]))

    def state(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}

    def _params(self, like: Tensor) -> tuple[Tensor, Tensor]:
        mean = torch.tensor(self.mean, dtype=like.dtype, device=like.device)
        std = torch.tensor(self.std, dtype=like.dtype, device=like.device)
        return mean, std

    def standardize(self, y: Tensor) -> Tensor:
        """Labels [B, T] in the label's units → the model's units."""
        mean, std = self._params(y.float() if not y.is_floating_point() else y)
        return (y.reshape(-1, len(self.mean)) - mean) / std

    def to_label(self, out: Tensor) -> Tensor:
        """Model outputs [B, T] → the label's units."""
        mean, std = self._params(out)
        return out * std + mean


class LabelUnits(torch.nn.Module):
    """A regression model whose outputs are in the label's units (``scaling.to_label``)."""

    def __init__(self, model: torch.nn.Module, scaling: TargetScaling) -> None:
        super().__init__()
        self.model = model
        self.scaling = scaling

    def forward(self, batch) -> Tensor:
        return self.scaling.to_label(self.model(batch))
