"""What every model of the registry shares: hyper-parameter bookkeeping and checks, the
dtype guard, and ``forward = readout(encode(data))`` over the batch.

A model subclasses :class:`GraphModel`, calls ``self.record_hparams(locals())`` first thing in
its constructor, implements ``encode(data)`` (a tensor of invariant node features, or a tuple
``(s, v)`` of scalar and vector node features) and sets ``self.readout`` to a module called as
``readout(*features, batch, num_graphs, data)``. Its message-passing layers are called through
``self.run_layer(layer, *args)``, so that :meth:`GraphModel.set_activation_checkpointing` applies
to every model.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..nn.geometry import batch_vector
from ..nn.readout import check_readout_mode

__all__ = ["GraphModel", "check_common"]

VECTOR_AGGREGATIONS = ("mean", "sum")


def check_common(num_layers: int, readout: str, vector_aggr: str = "sum") -> None:
    """Raise ``ValueError`` for the arguments models share when they are out of range."""
    if num_layers < 1:
        raise ValueError("num_layers must be >= 1")
    check_readout_mode(readout)
    if vector_aggr not in VECTOR_AGGREGATIONS:
        raise ValueError(f"vector_aggr must be one of {VECTOR_AGGREGATIONS}, got {vector_aggr!r}")


def constructor_arguments(cls: type) -> tuple[str, ...]:
    """The keyword arguments of ``cls.__init__`` (without ``self``)."""
    params = inspect.signature(cls.__init__).parameters
    return tuple(name for name in params if name != "self")


class GraphModel(nn.Module):
    """Base class of the models: ``forward(data) -> [num_graphs, out_dim]``."""

    hparams: dict[str, Any]
    readout: nn.Module
    #: recompute each layer's activations in the backward pass (see ``set_activation_checkpointing``)
    activation_checkpointing: bool = False

    @classmethod
    def from_hparams(cls, **hparams: Any) -> GraphModel:
        """``cls(**hparams)``, with an error that names unknown keys and lists the accepted ones."""
        accepted = constructor_arguments(cls)
        unknown = sorted(set(hparams) - set(accepted))
        if unknown:
            raise ValueError(
                f"unknown hyper-parameter(s) for {cls.__name__}: {', '.join(unknown)}; "
                f"accepted: {', '.join(sorted(accepted))}"
            )
        return cls(**hparams)

    def record_hparams(self, constructor_locals: dict[str, Any]) -> None:
        """Keep the constructor's arguments in ``self.hparams`` (pass ``locals()``)."""
        self.hparams = {name: constructor_locals[name] for name in constructor_arguments(type(self))}

    @staticmethod
    def check_dtype(pos: Tensor, parameter: Tensor) -> None:
        """Raise ``TypeError`` unless the coordinates have the parameters' dtype."""
        if pos.dtype != parameter.dtype:
            raise TypeError(f"pos has dtype {pos.dtype} but the model's parameters are {parameter.dtype}")

    def set_activation_checkpointing(self, enabled: bool) -> None:
        """Store only each layer's inputs in training and recompute its activations in the backward pass."""
        self.activation_checkpointing = bool(enabled)

    def run_layer(self, layer: nn.Module, *args: Tensor) -> Any:
        """``layer(*args)``, checkpointed when activation checkpointing is on, training and grad enabled."""
        if self.activation_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(layer, *args, use_reentrant=False)
        return layer(*args)

    def encode(self, data) -> Tensor | tuple[Tensor, ...]:
        raise NotImplementedError

    def forward(self, data) -> Tensor:
        features = self.encode(data)
        if isinstance(features, Tensor):
            features = (features,)
        batch, num_graphs = batch_vector(data, features[0].shape[0], features[0].device)
        return self.readout(*features, batch, num_graphs, data)
