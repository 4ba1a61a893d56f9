"""Readouts: invariant projection of the node features, pooling / node selection, heads.

Node projection (all tasks)::

    x = W_r [s || |v W_q|]      W_q: Fv -> Fv (no bias), W_r: Fs+Fv -> Fs

where ``|.|`` is the per-channel norm ``sqrt(max(sum_xyz (.)^2, eps))`` (rotation and
reflection invariant, finite gradient at 0).

Modes
-----
``"graph"``  mean over the nodes of every graph, then ``Linear(Fs,Fs) -> SiLU -> Linear(Fs,out)``.
``"node"``   the node ``batch.center_index[g]`` of every graph g, then the same head.
``"pair"``   the nodes ``batch.center_index0[g]`` and ``batch.center_index1[g]``:
             ``[x0 || x1] -> Linear(2Fs,Fs) -> SiLU -> Linear(Fs,out)`` (out = 1 for PPI).

Index convention (node / pair)
------------------------------
``center_index``, ``center_index0`` and ``center_index1`` are *global* indices into the
batched node arrays, one per graph.  Store them on every ``Data`` as the *local* index of
the centre atom (a long tensor of shape ``[1]``, or a 0-d tensor): because the attribute
names contain ``"index"``, ``Batch.from_data_list`` / the PyG ``DataLoader`` concatenates
them and adds each graph's node offset (``batch.ptr[g]``) automatically.  Any other name
would NOT be offset; code that builds batches by hand must add ``ptr`` itself.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter

from .radial import safe_norm

__all__ = ["InvariantProjection", "MLPHead", "global_mean_pool", "Readout", "READOUTS", "ScalarReadout", "check_readout_mode", "pool"]

READOUTS = ("graph", "node", "pair")


def global_mean_pool(x: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
    """Mean of ``x`` [N, F] over the nodes of each graph -> [num_graphs, F]."""
    return scatter(x, batch, dim=0, dim_size=num_graphs, reduce="mean")


class InvariantProjection(nn.Module):
    """``x = W_r [s || |v W_q|]`` -> [N, Fs]."""

    def __init__(self, hidden_scalars: int, hidden_vectors: int, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = float(eps)
        self.vector_lin = nn.Linear(hidden_vectors, hidden_vectors, bias=False)  # W_q
        self.lin = nn.Linear(hidden_scalars + hidden_vectors, hidden_scalars)  # W_r

    def forward(self, s: Tensor, v: Tensor) -> Tensor:
        n = safe_norm(self.vector_lin(v), dim=1, eps=self.eps)
        return self.lin(torch.cat([s, n], dim=-1))


class MLPHead(nn.Sequential):
    """``Linear(in, hidden) -> SiLU -> Linear(hidden, out)``."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__(nn.Linear(in_dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, out_dim))


def _get(data, name: str) -> Tensor | None:
    try:
        return getattr(data, name)
    except (AttributeError, KeyError):
        return None


def _index(data, name: str, device) -> Tensor:
    idx = _get(data, name)
    if idx is None:
        raise ValueError(
            f"this readout needs `{name}` on the batch: the local index of the centre atom on "
            f"every Data object (long tensor of shape [1]); PyG offsets it when batching"
        )
    return torch.as_tensor(idx, dtype=torch.long, device=device).reshape(-1)


def pool(x: Tensor, mode: str, batch: Tensor, num_graphs: int, data=None) -> Tensor:
    """Per-graph features: mean over nodes ("graph"), the centre node ("node", `center_index`),
    or the two centre nodes side by side ("pair", `center_index0`, `center_index1`)."""
    if mode == "graph":
        return global_mean_pool(x, batch, num_graphs)
    if mode == "node":
        return x[_index(data, "center_index", x.device)]
    i0 = _index(data, "center_index0", x.device)
    i1 = _index(data, "center_index1", x.device)
    return torch.cat([x[i0], x[i1]], dim=-1)


def check_readout_mode(mode: str) -> None:
    """Raise ``ValueError`` unless `mode` is one of :data:`READOUTS`."""
    if mode not in READOUTS:
        raise ValueError(f"readout must be one of {READOUTS}, got {mode!r}")


class _PooledReadout(nn.Module):
    """What both readouts share: per-node ``project``, then :func:`pool` in `mode`, then
    ``Linear(F or 2F, F) -> SiLU -> Linear(F, out_dim)`` (2F for pairs)."""

    def __init__(self, project: nn.Module, hidden: int, out_dim: int, mode: str) -> None:
        super().__init__()
        check_readout_mode(mode)
        self.mode = mode
        self.project = project
        self.head = MLPHead(2 * hidden if mode == "pair" else hidden, hidden, out_dim)

    def pool_and_head(self, x: Tensor, batch: Tensor, num_graphs: int, data=None) -> Tensor:
        return self.head(pool(x, self.mode, batch, num_graphs, data))

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


class Readout(_PooledReadout):
    """Readout of scalar and vector node features: ``x = W_r [s || |v W_q|]`` per node
    (:class:`InvariantProjection`), then pooling and the MLP head."""

    def __init__(
        self,
        hidden_scalars: int,
        hidden_vectors: int,
        out_dim: int,
        mode: str = "graph",
        eps: float = 1e-8,
    ) -> None:
        super().__init__(InvariantProjection(hidden_scalars, hidden_vectors, eps), hidden_scalars, out_dim, mode)

    def forward(self, s: Tensor, v: Tensor, batch: Tensor, num_graphs: int, data=None) -> Tensor:
        return self.pool_and_head(self.project(s, v), batch, num_graphs, data)


class ScalarReadout(_PooledReadout):
    """Readout of invariant node features ``x`` [N, F] with the same modes and heads as
    :class:`Readout`: optional per-node ``Linear(F, F)``, then graph mean pooling / the node
    ``center_index`` / the pair ``center_index0, center_index1``, then
    ``Linear(F or 2F, F) -> SiLU -> Linear(F, out_dim)``."""

    def __init__(self, hidden: int, out_dim: int, mode: str = "graph", project: bool = True) -> None:
        super().__init__(nn.Linear(hidden, hidden) if project else nn.Identity(), hidden, out_dim, mode)

    def forward(self, x: Tensor, batch: Tensor, num_graphs: int, data=None) -> Tensor:
        return self.pool_and_head(self.project(x), batch, num_graphs, data)
