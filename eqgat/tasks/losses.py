"""Training losses by name (a task declares which ones a config may choose).

No target normalisation here, as in the paper (the ``structures`` task standardises its targets
in the training loop: :mod:`eqgat.train.targets`). Every loss takes the model output ``pred`` and the
batch labels ``y`` and returns a scalar tensor.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["LOSSES", "get_loss", "pearson_mse"]

#: weight of (1 - Pearson) in the RSR loss of the authors' script (the rest is MSE)
PEARSON_WEIGHT = 0.8


def mse(pred: Tensor, y: Tensor) -> Tensor:
    return F.mse_loss(pred, y.view_as(pred).to(pred.dtype))


def cross_entropy(pred: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(pred, y.view(-1).long())


def bce(pred: Tensor, y: Tensor) -> Tensor:
    """Binary cross-entropy on one logit (the authors apply a sigmoid, then BCELoss: the same
    function, computed stably)."""
    return F.binary_cross_entropy_with_logits(pred.view(-1), y.view(-1).to(pred.dtype))


def batch_pearson(pred: Tensor, y: Tensor) -> Tensor:
    """Pearson correlation of the batch's predictions and labels; 0 where either is constant
    (a batch of one graph, or equal labels), where the formula has no value."""
    p = pred.reshape(-1)
    t = y.reshape(-1).to(pred.dtype)
    dp, dt = p - p.mean(), t - t.mean()
    ss = (dp * dp).sum() * (dt * dt).sum()
    safe = torch.where(ss > 0, ss, torch.ones_like(ss))
    return torch.where(ss > 0, (dp * dt).sum() * torch.rsqrt(safe), torch.zeros_like(ss))


def pearson_mse(pred: Tensor, y: Tensor) -> Tensor:
    """RSR's loss in the authors' script: ``0.8 * (1 - Pearson over the batch) + 0.2 * MSE``."""
    return PEARSON_WEIGHT * (1.0 - batch_pearson(pred, y)) + (1.0 - PEARSON_WEIGHT) * mse(pred, y)


LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "mse": mse,
    "cross_entropy": cross_entropy,
    "bce": bce,
    "pearson_mse": pearson_mse,
}


def get_loss(name: str) -> Callable[[Tensor, Tensor], Tensor]:
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; known: {sorted(LOSSES)}") from None
