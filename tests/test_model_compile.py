"""``torch.compile(model)`` (what training does with ``train.compile``) gives the eager model's
outputs and gradients (float32, 1e-5), with and without activation checkpointing, on two batches
of different sizes (the second one recompiles with dynamic sizes).

Slow: Dynamo traces every model class anew with the ``aot_eager`` backend, which traces forward
and backward as Inductor does but runs them without generating C++ (2-12 s each on 2 quiet
cores); one test compiles SchNet with Inductor itself, for one batch (seconds with Inductor's
on-disk cache warm, 13-23 s cold). The EQGAT ablations are the EQGAT class
with other flags; SEGNN is left out: its e3nn tensor products take minutes to trace
(docs/performance.md, "Activation checkpointing and torch.compile")."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import _graphs as G
from eqgat.models import build_model, fit_hparams

pytestmark = pytest.mark.slow

SMALL = dict(hidden_scalars=12, hidden_vectors=4, num_layers=2, num_radial=6, cutoff=4.5)
TOL = 1e-5
SIZES = ((10, 7, 12), (9, 14, 8, 11))


def _batch(sizes: tuple[int, ...], seed: int):
    g = torch.Generator().manual_seed(seed)
    return G.batch(G.make_graph(n, g, scale=1.5, dtype=torch.float32) for n in sizes)


def _step(model: nn.Module, data) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Outputs and parameter gradients of a forward and backward pass."""
    model.zero_grad(set_to_none=True)
    out = model(data)
    (out**2).sum().backward()
    return out.detach(), [p.grad.clone() for p in model.parameters()]


def _check_compiled(name: str, checkpointing: bool, backend: str, sizes: tuple[tuple[int, ...], ...] = SIZES) -> None:
    torch.manual_seed(0)
    model = build_model(name, **fit_hparams(name, SMALL)).train()
    model.set_activation_checkpointing(checkpointing)
    compiled = torch.compile(model, backend=backend)
    for seed, graph_sizes in enumerate(sizes):
        data = _batch(graph_sizes, seed)
        out, grads = _step(compiled, data)
        ref_out, ref_grads = _step(model, data)
        torch.testing.assert_close(out, ref_out, atol=TOL, rtol=TOL)
        for grad, ref in zip(grads, ref_grads, strict=True):
            torch.testing.assert_close(grad, ref, atol=TOL * G.scale_of(ref), rtol=TOL)


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("checkpointing", [False, True])
@pytest.mark.parametrize("name", ["eqgat", "schnet", "painn"])
def test_traced_model_matches_eager(name, checkpointing):
    _check_compiled(name, checkpointing, "aot_eager")


def test_inductor_compiled_checkpointed_schnet_matches_eager():
    _check_compiled("schnet", True, "inductor", SIZES[:1])
