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

Hidden width = number of filters = ``hidden_scalars``. SchNet has no vector features and CFConv
always sums, so it takes no vector settings.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.nn.models.schnet import GaussianSmearing, InteractionBlock

from ..nn.geometry import edge_geometry
from ..nn.readout import ScalarReadout
from .base import GraphModel, check_common

__all__ = ["SchNet"]


class SchNet(GraphModel):
    r"""The SchNet baseline (Schuett et al. 2017): PyG's interaction blocks on the batch's own
    edges, with residual updates, then the task's readout. It has no vector features.

    Args:
        num_elements (int): element classes of ``z``.
        hidden_scalars (int): width of the atom features and number of filters.
        num_layers (int): interaction blocks.
        num_radial (int): Gaussians of the edge length, evenly spaced on ``[0, cutoff]``.
        cutoff (float): radius of the graphs, in Å (the cosine cutoff's).
        out_dim (int): outputs per graph (targets, classes, or 1 logit).
        readout (str): where the output is read: ``"graph"`` (mean over the atoms), ``"node"``
            (at ``center_index``) or ``"pair"`` (at ``center_index0`` and ``center_index1``).
        eps (float): floor of the squared distances.
    """

    def __init__(
        self,
        num_elements: int = 9,
        hidden_scalars: int = 100,
        num_layers: int = 5,
        num_radial: int = 32,
        cutoff: float = 4.5,
        out_dim: int = 1,
        readout: str = "graph",
        eps: float = 1e-8,
    ) -> None:
        super().__init__()
        self.record_hparams(locals())
        check_common(num_layers, readout)
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
        self.check_dtype(pos, h)
        d, _ = edge_geometry(pos, data.edge_index, self.eps)
        rbf = self.rbf(d)
        d_cut = torch.clamp(d, max=self.cutoff)  # PyG's cosine cutoff is 0 at d = cutoff
        for block in self.interactions:
            h = h + self.run_layer(block, h, data.edge_index, d_cut, rbf)
        return h
