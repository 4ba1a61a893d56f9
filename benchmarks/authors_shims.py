"""A stand-in for the ``torch_scatter`` package, so that the authors' code runs here.

The authors' EQGAT (Bayer-Group/eqgat, loaded at run time by ``benchmarks/bench_authors.py``;
none of it is kept in this repository) imports ``torch_scatter``, which has no wheels for the
PyTorch of this project. :func:`install` registers a module object under
``sys.modules["torch_scatter"]`` (and ``torch_scatter.composite``) that implements only what
their model files import:

* ``scatter(src, index, dim=-1, out=None, dim_size=None, reduce="sum")``, reductions ``sum`` /
  ``add`` / ``mean`` / ``max`` / ``min``;
* ``scatter_sum`` = ``scatter_add``, ``scatter_mean``;
* ``scatter_softmax(src, index, dim=-1, dim_size=None)`` (also as
  ``torch_scatter.composite.scatter_softmax``).

Semantics are torch_scatter 2.0.x's: ``index`` is one-dimensional along ``dim`` or of ``src``'s
shape and is broadcast over the other dimensions; ``dim_size`` defaults to ``index.max() + 1``;
empty segments give 0 (sum, mean, max, min, as torch_scatter's zero-filled output); the mean
divides by the segment's size clamped at 1; the softmax subtracts each segment's maximum and
divides by the segment's sum, with no epsilon. ``tests/test_authors_shims.py`` checks every
function against ``torch_geometric.utils.scatter`` / ``softmax``.

**The shim's speed is part of their timing.** Sum and mean are written as torch_scatter 2.0.x
writes them in Python (``Tensor.scatter_add_`` with an expanded index), so those run the same
kernels as the real package. The maximum is different: torch_scatter computes it with its own
compiled ``scatter_max`` (with arg-max indices and a backward), the shim with
``Tensor.scatter_reduce_(..., "amax")`` on the *detached* input (the shift of a softmax does not
change its value, so its gradient is zero in exact arithmetic; torch_scatter propagates the
round-off). That is one of the two reductions in each of their attention softmaxes; the
difference is small beside a layer's dense products, but it is not the package they ran.

Install it **after** ``torch_geometric`` is imported (:func:`install` imports it first): PyG
probes ``import torch_scatter`` once at import time and would otherwise route its own scatter
calls here.
"""
from __future__ import annotations

import sys
import types

import torch
from torch import Tensor

__all__ = ["install", "scatter", "scatter_add", "scatter_mean", "scatter_softmax", "scatter_sum"]

_REDUCE = {"max": "amax", "min": "amin"}


def _broadcast(index: Tensor, src: Tensor, dim: int) -> Tensor:
    """``index`` expanded (a view, no copy) to ``src``'s shape, as torch_scatter's ``broadcast``."""
    dim = src.dim() + dim if dim < 0 else dim
    if index.dim() == 1:
        index = index.view([1] * dim + [-1] + [1] * (src.dim() - dim - 1))
    elif index.dim() != src.dim():
        raise ValueError(f"index has {index.dim()} dimensions, src {src.dim()}: give a 1-D index or one of src's shape")
    return index.expand_as(src)


def _out_size(src: Tensor, index: Tensor, dim: int, dim_size: int | None) -> tuple[list[int], int]:
    dim = src.dim() + dim if dim < 0 else dim
    if dim_size is None:
        dim_size = int(index.max()) + 1 if index.numel() > 0 else 0
    size = list(src.size())
    size[dim] = dim_size
    return size, dim


def _no_out(out: Tensor | None) -> None:
    if out is not None:
        raise NotImplementedError("the torch_scatter shim does not take out=")


def scatter_sum(src: Tensor, index: Tensor, dim: int = -1, out: Tensor | None = None,
                dim_size: int | None = None) -> Tensor:
    """Sum of ``src`` over the segments ``index`` along ``dim`` (0 for an empty segment)."""
    _no_out(out)
    size, dim = _out_size(src, index, dim, dim_size)
    return src.new_zeros(size).scatter_add_(dim, _broadcast(index, src, dim), src)


scatter_add = scatter_sum


def scatter_mean(src: Tensor, index: Tensor, dim: int = -1, out: Tensor | None = None,
                 dim_size: int | None = None) -> Tensor:
    """Mean of ``src`` over the segments ``index`` along ``dim`` (0 for an empty segment)."""
    total = scatter_sum(src, index, dim, out, dim_size)
    dim = src.dim() + dim if dim < 0 else dim
    if index.dim() == 1:
        count = src.new_zeros(total.size(dim)).scatter_add_(0, index, src.new_ones(index.numel()))
        count = count.view([1] * dim + [-1] + [1] * (src.dim() - dim - 1))
    else:  # an index of src's shape: a count per position
        count = scatter_sum(torch.ones_like(src), index, dim, None, total.size(dim))
    return total / count.clamp(min=1)


def scatter(src: Tensor, index: Tensor, dim: int = -1, out: Tensor | None = None,
            dim_size: int | None = None, reduce: str = "sum") -> Tensor:
    """torch_scatter's ``scatter``: ``reduce`` is ``sum`` / ``add`` / ``mean`` / ``max`` / ``min``
    (values only, 0 for an empty segment)."""
    if reduce in ("sum", "add"):
        return scatter_sum(src, index, dim, out, dim_size)
    if reduce == "mean":
        return scatter_mean(src, index, dim, out, dim_size)
    if reduce in _REDUCE:
        _no_out(out)
        size, dim = _out_size(src, index, dim, dim_size)
        return src.new_zeros(size).scatter_reduce_(dim, _broadcast(index, src, dim), src, reduce=_REDUCE[reduce],
                                                   include_self=False)
    raise ValueError(f"the torch_scatter shim has no reduce={reduce!r}")


def scatter_softmax(src: Tensor, index: Tensor, dim: int = -1, dim_size: int | None = None) -> Tensor:
    """Softmax of ``src`` within each segment ``index`` along ``dim`` (torch_scatter.composite's:
    shift by the segment maximum, no epsilon in the denominator)."""
    if not torch.is_floating_point(src):
        raise ValueError("scatter_softmax needs a floating-point src")
    dim = src.dim() + dim if dim < 0 else dim
    full = _broadcast(index, src, dim)
    with torch.no_grad():
        shift = scatter(src.detach(), index, dim, dim_size=dim_size, reduce="max").gather(dim, full)
    e = (src - shift).exp()
    return e / scatter_sum(e, index, dim, dim_size=dim_size).gather(dim, full)


def install() -> types.ModuleType:
    """Register the shim as ``torch_scatter`` and ``torch_scatter.composite``; returns the module.

    Imports ``torch_geometric`` first (see the module docstring). Refuses if a real
    ``torch_scatter`` is already imported; does nothing if the shim is."""
    import torch_geometric  # noqa: F401  (before the shim exists: PyG's probe must fail)

    current = sys.modules.get("torch_scatter")
    if current is not None:
        if getattr(current, "__shim__", False):
            return current
        raise RuntimeError("a real torch_scatter is already imported; the shim would shadow it")
    mod = types.ModuleType("torch_scatter", __doc__)
    composite = types.ModuleType("torch_scatter.composite", "scatter_softmax of the shim")
    for name in ("scatter", "scatter_sum", "scatter_add", "scatter_mean", "scatter_softmax"):
        setattr(mod, name, globals()[name])
    composite.scatter_softmax = scatter_softmax
    mod.composite = composite
    mod.__shim__ = True
    mod.__version__ = "0+shim"
    sys.modules["torch_scatter"] = mod
    sys.modules["torch_scatter.composite"] = composite
    return mod
