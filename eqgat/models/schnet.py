"""SchNet baseline (Schuett et al. 2017) on our batch interface.

The interaction blocks are PyG's own (:class:`torch_geometric.nn.models.schnet.InteractionBlock`:
filter network ``Linear(K, F) -> ssp -> Linear(F, F)``, cosine cutoff, continuous-filter
convolution ``CFConv`` summing ``x_j W(d_ij)`` over the neighbours, ``ssp -> Linear(F, F)``)
and so is the Gaussian expansion (:class:`GaussianSmearing`, ``num_radial`` centres evenly
spaced on ``[0, cutoff]``, width = spacing).  PyG's ``SchNet`` model class is *not* used: it
builds its own radius graph (needs torch-cluster) and has its own readout.  This wrapper

* takes ``z, pos, edge_index`` (row 0 = source j, row 1 = target i, both directions) from the
  batch and never rebuilds the graph,
* computes ``d_ij = sqrt(max(|p_j - p_i|^2, eps))`` (finite gradient for coincident atoms),
* passes ``min(d_ij, cutoff)`` to the blocks as the edge weight, so PyG's cosine cutoff
  ``0.5 (cos(pi d / c) + 1)`` is exactly 0 for edges at or beyond the cutoff (PyG assumes
  its own radius graph and does not mask),
* updates ``h <- h + block(h)`` (residual, as PyG's SchNet),
* reads out with our common heads: ``x = Linear(Fs, Fs)(h)`` per node, then graph mean /
  centre node / centre pair, then ``Linear -> SiLU -> Linear`` (see :class:`ScalarReadout`).

Hidden width = number of filters = ``hidden_scalars``; ``hidden_vectors`` and ``vector_aggr``
are accepted and ignored (SchNet has no vector features; CFConv always sums).

This module also holds the helpers shared by the baselines (hyper-parameter checking, scalar
readout, cosine cutoff, edge geometry).
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import Tensor, nn
from torch_geometric.nn.models.schnet import GaussianSmearing, InteractionBlock

from ..nn.geometry import batch_vector, edge_geometry
from ..nn.readout import READOUTS, MLPHead, pool

__all__ = [
    "COMMON_HPARAMS",
    "CosineCutoff",
    "ScalarReadout",
    "SchNet",
    "build_schnet",
    "check_hparams",
]

#: Keys every baseline builder accepts (a model ignores those it does not use).
COMMON_HPARAMS = (
    "num_elements",
    "hidden_scalars",
    "hidden_vectors",
    "num_layers",
    "num_radial",
    "cutoff",
    "out_dim",
    "readout",
    "vector_aggr",
    "eps",
)


def check_hparams(model: str, hparams: dict, extra: Iterable[str] = ()) -> None:
    """Raise ``ValueError`` naming the offending keys if ``hparams`` has keys outside
    :data:`COMMON_HPARAMS` + ``extra``."""
    allowed = set(COMMON_HPARAMS) | set(extra)
    unknown = sorted(set(hparams) - allowed)
    if unknown:
        raise ValueError(
            f"unknown hyper-parameter(s) for model {model!r}: {', '.join(unknown)}; "
            f"accepted: {', '.join(sorted(allowed))}"
        )


def check_common(num_layers: int, readout: str, vector_aggr: str) -> None:
    if num_layers < 1:
        raise ValueError("num_layers must be >= 1")
    if readout not in READOUTS:
        raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
    if vector_aggr not in ("mean", "sum"):
        raise ValueError(f"vector_aggr must be 'mean' or 'sum', got {vector_aggr!r}")


class CosineCutoff(nn.Module):
    """``f(d) = 0.5 (cos(pi d / c) + 1)`` for ``d < c``, else 0 (Behler; SchNet / PaiNN)."""

    def __init__(self, cutoff: float) -> None:
        super().__init__()
        self.cutoff = float(cutoff)

    def forward(self, d: Tensor) -> Tensor:
        x = torch.clamp(d, max=self.cutoff)  # cos(pi) = -1 -> exactly 0 at and beyond c
        return 0.5 * (torch.cos(x * (math.pi / self.cutoff)) + 1.0)

    def extra_repr(self) -> str:
        return f"cutoff={self.cutoff}"


class ScalarReadout(nn.Module):
    """Readout of invariant node features ``x`` [N, F] with the same modes and heads as
    :class:`eqgat.nn.Readout`: optional per-node ``Linear(F, F)``, then graph mean pooling /
    the node ``center_index`` / the pair ``center_index0, center_index1``, then
    ``Linear(F or 2F, F) -> SiLU -> Linear(F, out_dim)``."""

    def __init__(self, hidden: int, out_dim: int, mode: str = "graph", project: bool = True) -> None:
        super().__init__()
        if mode not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {mode!r}")
        self.mode = mode
        self.project = nn.Linear(hidden, hidden) if project else nn.Identity()
        self.head = MLPHead(2 * hidden if mode == "pair" else hidden, hidden, out_dim)

    def forward(self, x: Tensor, batch: Tensor, num_graphs: int, data=None) -> Tensor:
        return self.head(pool(self.project(x), self.mode, batch, num_graphs, data))

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


class SchNet(nn.Module):
    def __init__(
        self,
        num_elements: int = 9,
        hidden_scalars: int = 100,
        hidden_vectors: int = 16,
        num_layers: int = 5,
        num_radial: int = 32,
        cutoff: float = 4.5,
        out_dim: int = 1,
        readout: str = "graph",
        vector_aggr: str = "mean",
        eps: float = 1e-8,
    ) -> None:
        super().__init__()
        check_common(num_layers, readout, vector_aggr)
        self.hparams = dict(
            num_elements=num_elements,
            hidden_scalars=hidden_scalars,
            hidden_vectors=hidden_vectors,
            num_layers=num_layers,
            num_radial=num_radial,
            cutoff=cutoff,
            out_dim=out_dim,
            readout=readout,
            vector_aggr=vector_aggr,
            eps=eps,
        )
        self.cutoff = float(cutoff)
        self.eps = float(eps)
        self.embedding = nn.Embedding(num_elements, hidden_scalars)
        self.rbf = GaussianSmearing(0.0, self.cutoff, num_radial)
        self.interactions = nn.ModuleList(
            InteractionBlock(hidden_scalars, num_radial, hidden_scalars, self.cutoff) for _ in range(num_layers)
        )
        self.readout = ScalarReadout(hidden_scalars, out_dim, readout, project=True)

    def encode(self, data) -> Tensor:
        """Node features [N, Fs] after the last interaction (invariant)."""
        h = self.embedding(data.z)
        pos = data.pos
        if pos.dtype != h.dtype:
            raise TypeError(f"pos has dtype {pos.dtype} but the model's parameters are {h.dtype}")
        d, _ = edge_geometry(pos, data.edge_index, self.eps)
        rbf = self.rbf(d)
        d_cut = torch.clamp(d, max=self.cutoff)  # PyG's cosine cutoff is 0 at d = cutoff
        for block in self.interactions:
            h = h + block(h, data.edge_index, d_cut, rbf)
        return h

    def forward(self, data) -> Tensor:
        h = self.encode(data)
        batch, num_graphs = batch_vector(data, h.shape[0], h.device)
        return self.readout(h, batch, num_graphs, data)


def build_schnet(**hparams) -> SchNet:
    """Registry builder: checks the keys, then ``SchNet(**hparams)``."""
    check_hparams("schnet", hparams)
    return SchNet(**hparams)
