"""Fast gather / scatter-sum along the edges of a graph (device independent).

``scatter_add_`` with a broadcast index (what ``torch_geometric.utils.scatter`` and, in
recent PyTorch, ``index_add_`` run on CPU) sorts the index on every call and was the
largest cost of an EQGAT training step.  Here the sum over the edges that share a node is
a sparse [N, E] CSR matrix (ones) times the dense [E, F] edge tensor, built once per
``edge_index`` and shared by all layers of a forward pass:

* :func:`scatter_sum` ``x [E, ...] -> [N, ...]``: ``out[n] = sum_{e: index[e] = n} x[e]``;
  backward: ``grad[index]`` (an ``index_select``).
* :func:`gather` ``x [N, ...] -> [E, ...]``: ``x[index]``; backward: :func:`scatter_sum`.

Both backward passes are written with the other function, so higher-order gradients work.
The sums are exact sums (no approximation); only the order of the additions differs from
``scatter_add_``, i.e. results agree to round-off.

Under ``torch.compile`` the three public functions run eagerly (``torch.compiler.disable``):
Dynamo does not trace sparse tensors, and tracing the adjacency cache would guard on the previous
batch's sizes and recompile for every new batch.
"""

from __future__ import annotations

import warnings
import weakref

import torch
from torch import Tensor

__all__ = ["Adjacency", "edge_adjacency", "gather", "scatter_sum"]


class Adjacency:
    """Which edges point at which node: the CSR form of ``index`` [E] (values in [0, N))."""

    def __init__(self, index: Tensor, num_nodes: int) -> None:
        index = index.reshape(-1)
        self.index = index
        self.num_nodes = int(num_nodes)
        self.num_edges = E = index.numel()
        if E > 1 and bool((index[1:] < index[:-1]).any()):
            sorted_index, perm = torch.sort(index, stable=True)
        else:
            sorted_index, perm = index, torch.arange(E, device=index.device)
        # crow[n] = number of edges whose index is < n (deterministic on every device)
        nodes = torch.arange(self.num_nodes + 1, dtype=sorted_index.dtype, device=index.device)
        self.crow = torch.searchsorted(sorted_index, nodes)
        self.col = perm
        self._matrices: dict = {}

    def matrix(self, dtype: torch.dtype) -> Tensor:
        m = self._matrices.get(dtype)
        if m is None:
            values = torch.ones(self.num_edges, dtype=dtype, device=self.index.device)
            with warnings.catch_warnings():  # "sparse CSR support is in beta"
                warnings.simplefilter("ignore", UserWarning)
                m = torch.sparse_csr_tensor(
                    self.crow, self.col, values, (self.num_nodes, self.num_edges), check_invariants=False
                )
            self._matrices[dtype] = m
        return m

    def sum(self, x: Tensor) -> Tensor:
        """``out[n] = sum_{e: index[e] = n} x[e]`` (no autograd; use :func:`scatter_sum`)."""
        tail = x.shape[1:]
        if self.num_edges == 0 or self.num_nodes == 0:
            return x.new_zeros((self.num_nodes,) + tuple(tail))
        dense = x.reshape(self.num_edges, -1)
        # outside autocast, which would cast both operands of the product to bfloat16: a bfloat16
        # accumulation, and no such sparse kernel at all on the CPU
        with torch.autocast(dense.device.type, enabled=False):
            if dense.dtype in (torch.float16, torch.bfloat16):
                # mixed precision: accumulate in float32 (and avoid half-precision sparse kernels)
                out = (self.matrix(torch.float32) @ dense.float()).to(x.dtype)
            else:
                out = self.matrix(x.dtype) @ dense
        return out.reshape((self.num_nodes,) + tuple(tail))


class _ScatterSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, adj: Adjacency) -> Tensor:
        ctx.adj = adj
        return adj.sum(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return _Gather.apply(grad, ctx.adj), None


class _Gather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, adj: Adjacency) -> Tensor:
        ctx.adj = adj
        return x.index_select(0, adj.index)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return _ScatterSum.apply(grad, ctx.adj), None


@torch.compiler.disable
def scatter_sum(x: Tensor, adj: Adjacency) -> Tensor:
    """[E, ...] -> [N, ...]: sum of the rows of ``x`` over the edges of every node."""
    return _ScatterSum.apply(x, adj)


@torch.compiler.disable
def gather(x: Tensor, adj: Adjacency) -> Tensor:
    """[N, ...] -> [E, ...]: ``x[adj.index]``."""
    return _Gather.apply(x, adj)


# One-entry cache: every layer of a forward pass receives the same ``edge_index`` object,
# so the CSR structures are built once per forward pass.  The entry is keyed by the tensor
# object itself (a weak reference, so a freed tensor never matches), its in-place version
# counter and the node count.
_cache_key: tuple | None = None
_cache_ref: weakref.ref | None = None
_cache_val: tuple[Adjacency, Adjacency] | None = None


@torch.compiler.disable
def edge_adjacency(edge_index: Tensor, num_nodes: int) -> tuple[Adjacency, Adjacency]:
    """``(by_source, by_target)`` adjacencies of ``edge_index`` [2, E] (row 0 = source j,
    row 1 = target i)."""
    global _cache_key, _cache_ref, _cache_val
    key = (edge_index._version, int(num_nodes), edge_index.device, tuple(edge_index.shape))
    if _cache_ref is not None and _cache_ref() is edge_index and _cache_key == key:
        assert _cache_val is not None
        return _cache_val
    val = (Adjacency(edge_index[0], num_nodes), Adjacency(edge_index[1], num_nodes))
    try:
        _cache_ref = weakref.ref(edge_index)
    except TypeError:  # pragma: no cover - tensors support weak references
        _cache_ref = None
    _cache_key, _cache_val = key, val
    return val
