"""Activation checkpointing (``GraphModel.set_activation_checkpointing``) for every registered
model: the same outputs and gradients (float64, 1e-12), the same parameters, and each layer
really recomputed in the backward pass."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

import _graphs as G
from eqgat.models import MODELS, build_model, fit_hparams

SMALL = dict(hidden_scalars=12, hidden_vectors=4, num_layers=2, num_radial=6, cutoff=4.5)
TOL = 1e-12
NAMES = [
    pytest.param(name, marks=pytest.mark.skipif(importlib.util.find_spec("e3nn") is None, reason="SEGNN needs e3nn"))
    if name == "segnn" else name
    for name in MODELS
]


def _model(name: str) -> nn.Module:
    """A small float64 model of `name` in training mode."""
    torch.manual_seed(0)
    return build_model(name, **fit_hparams(name, SMALL)).double().train()


def _batch():
    """Three random graphs with radius-graph edges and a target each."""
    g = torch.Generator().manual_seed(1)
    return G.batch(G.make_graph(n, g, scale=1.5, y=torch.randn(1, 1, generator=g, dtype=torch.float64))
                   for n in (10, 7, 12))


def _step(model: nn.Module, data) -> tuple[torch.Tensor, dict[str, torch.Tensor | None]]:
    """Outputs and parameter gradients of one forward and backward pass of an MSE loss."""
    model.zero_grad(set_to_none=True)
    out = model(data)
    torch.nn.functional.mse_loss(out, data.y).backward()
    return out.detach(), {name: p.grad for name, p in model.named_parameters()}


def _layers(model: nn.Module) -> list[nn.Module]:
    """The message-passing layers: the entries of the model's top-level module lists."""
    return [layer for child in model.children() if isinstance(child, nn.ModuleList) for layer in child]


def _layer_calls(model: nn.Module, data, grad: bool = True) -> int:
    """How many times the layers' forwards start in one forward (and backward, with grad) pass (a
    pre-hook: the recomputation stops as soon as it has what the backward pass needs)."""
    calls = []
    handles = [layer.register_forward_pre_hook(lambda *_: calls.append(1)) for layer in _layers(model)]
    try:
        with torch.set_grad_enabled(grad):
            out = model(data)
        if grad:
            out.sum().backward()
    finally:
        for handle in handles:
            handle.remove()
    return len(calls)


@pytest.mark.parametrize("name", NAMES)
def test_outputs_and_gradients_are_unchanged(name):
    model, data = _model(name), _batch()
    out, grads = _step(model, data)
    model.set_activation_checkpointing(True)
    out_ckpt, grads_ckpt = _step(model, data)
    torch.testing.assert_close(out_ckpt, out, atol=TOL, rtol=TOL)
    assert grads_ckpt.keys() == grads.keys()
    for key, grad in grads.items():
        assert grad is not None and grads_ckpt[key] is not None, key
        torch.testing.assert_close(grads_ckpt[key], grad, atol=TOL, rtol=TOL, msg=key)


@pytest.mark.parametrize("name", NAMES)
def test_each_layer_is_recomputed_in_the_backward_pass(name):
    model, data = _model(name), _batch()
    num_layers = len(_layers(model))
    assert num_layers >= SMALL["num_layers"]
    assert _layer_calls(model, data) == num_layers
    model.set_activation_checkpointing(True)
    assert _layer_calls(model, data) == 2 * num_layers
    # no recomputation without a backward pass to serve: evaluation mode or no grad
    assert _layer_calls(model, data, grad=False) == num_layers
    model.eval()
    assert _layer_calls(model, data) == num_layers
    model.train()
    model.set_activation_checkpointing(False)
    assert _layer_calls(model, data) == num_layers


@pytest.mark.parametrize("name", NAMES)
def test_the_switch_is_not_part_of_the_model(name):
    model = _model(name)
    keys, hparams = list(model.state_dict()), dict(model.hparams)
    params = [p.detach().clone() for p in model.parameters()]
    model.set_activation_checkpointing(True)
    assert model.activation_checkpointing and not _model(name).activation_checkpointing
    assert list(model.state_dict()) == keys and model.hparams == hparams
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), params, strict=True))
    _model(name).load_state_dict(model.state_dict())
