"""Model factory.

``build_model(name, **hparams)`` looks ``name`` up in :data:`MODELS`, a registry of
``name -> callable(**hparams) -> nn.Module``; baselines (SchNet, PaiNN, SEGNN, ...) join by
adding an entry (or calling :func:`register_model`).
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from .base import GraphModel
from .eqgat import EQGAT, EQGATBlock
from .painn import PaiNN
from .schnet import SchNet

__all__ = ["EQGAT", "EQGATBlock", "GraphModel", "MODELS", "PaiNN", "SchNet", "build_model", "register_model"]


def _ablation(flag: str) -> Callable[..., nn.Module]:
    def build(**hparams) -> nn.Module:
        if hparams.get(flag, False):
            raise ValueError(f"this ablation sets {flag}=False; got {flag}={hparams[flag]!r}")
        hparams[flag] = False
        return EQGAT.from_hparams(**hparams)

    build.__doc__ = f"EQGAT with {flag}=False (paper Table 4)."
    return build


MODELS: dict[str, Callable[..., nn.Module]] = {
    "eqgat": EQGAT.from_hparams,
    "eqgat_nocross": _ablation("cross_product"),
    "eqgat_noatt": _ablation("feature_attention"),
}


def _build_segnn(**hparams) -> nn.Module:
    """SEGNN baseline; e3nn is imported only when this model is built."""
    from .segnn import SEGNN

    return SEGNN.from_hparams(**hparams)


# baselines (docs/baselines.md)
MODELS.update(schnet=SchNet.from_hparams, painn=PaiNN.from_hparams, segnn=_build_segnn)


def register_model(name: str, builder: Callable[..., nn.Module]) -> None:
    if name in MODELS:
        raise ValueError(f"model {name!r} is already registered")
    MODELS[name] = builder


def build_model(name: str, **hparams) -> nn.Module:
    try:
        builder = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}") from None
    return builder(**hparams)
