"""PaiNN baseline (Schuett, Unke, Gastegger 2021) with Fs scalar and Fv vector channels.

Node state: ``s`` [N, Fs] (invariant), ``v`` [N, 3, Fv] (polar vectors); ``s0 = Embedding(z)``,
``v0 = 0``.  Edge j -> i (row 0 = j, row 1 = i), ``r_ij = (p_j - p_i) / d_ij``.

Radial features (exactly what the PaiNN paper uses, with our basis): the Bessel/sinc basis of
:class:`eqgat.nn.radial.BesselBasis`, ``e_k(d) = sqrt(2/c) sin(k pi d / c) / d`` (k = 1..K;
PaiNN uses ``sin(k pi d / c) / d``: the same functions up to the constant ``sqrt(2/c)``, which
the following linear layer absorbs), times the cosine cutoff
``f(d) = 0.5 (cos(pi d / c) + 1)`` for d < c, else 0 (PaiNN's cutoff; *not* the polynomial
envelope EQGAT uses).

Message block (PaiNN eq. 7-8), per layer::

    x_ij = phi(s_j) * (W e(d_ij)) f(d_ij)          phi = Linear(Fs,Fs) SiLU Linear(Fs, Fs+2Fv)
                                                   W = Linear(K, Fs+2Fv)
    [ds_ij | gv_ij | gr_ij] = x_ij                  (Fs | Fv | Fv)
    ds_i = AGG_j ds_ij
    dv_i = AGG_j ( gv_ij * v_j + gr_ij * r_ij )     (per channel)
    s += ds,  v += dv

Update block (PaiNN eq. 9-11), adapted to Fs != Fv::

    Uv = v U,  Vv = v V                             U, V: Fv -> Fv, no bias
    [a_vv | a_sv | a_ss] = a([s || |Vv|])            a = Linear(Fs+Fv,Fs) SiLU Linear(Fs, Fv+2Fs)
    dv = a_vv * Uv
    ds = a_ss + a_sv * P(<Uv, Vv>)                  P: Fv -> Fs, no bias (our projection)
    s += ds,  v += dv

With ``Fs == Fv`` and ``P = identity`` this is the original PaiNN update; the only addition is
the projection ``P`` of the Fv scalar products ``<Uv, Vv>`` to Fs channels (the original has
one width F for both).  ``|.|`` is the per-channel norm ``sqrt(max(sum_xyz (.)^2, eps))``.

AGG is ``vector_aggr`` ("sum" as in the original PaiNN for the Triangle task, "mean" for ATOM3D
as our EQGAT) and is used for both the scalar and the vector messages.

Readout: EQGAT's :class:`eqgat.nn.Readout` (``x = W_r [s || |v W_q|]`` then graph mean /
centre node / centre pair and ``Linear -> SiLU -> Linear``), so all equivariant models share
the head.  Everything the output sees is a function of distances, norms and inner products of
polar vectors, so the outputs are invariant under rotations *and reflections* (O(3)), unlike
EQGAT whose cross product is a pseudo-vector.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter

from ..nn.geometry import edge_geometry
from ..nn.radial import BesselBasis, CosineCutoff, safe_norm
from ..nn.readout import Readout
from .base import GraphModel, check_common

__all__ = ["PaiNN", "PaiNNMessage", "PaiNNUpdate"]


def _aggr(x: Tensor, index: Tensor, num_nodes: int, aggr: str) -> Tensor:
    return scatter(x, index, dim=0, dim_size=num_nodes, reduce="sum" if aggr == "sum" else "mean")


class PaiNNMessage(nn.Module):
    def __init__(self, hidden_scalars: int, hidden_vectors: int, num_radial: int, vector_aggr: str) -> None:
        super().__init__()
        self.Fs, self.Fv = hidden_scalars, hidden_vectors
        self.aggr = vector_aggr
        width = hidden_scalars + 2 * hidden_vectors
        self.phi = nn.Sequential(
            nn.Linear(hidden_scalars, hidden_scalars), nn.SiLU(), nn.Linear(hidden_scalars, width)
        )
        self.filter = nn.Linear(num_radial, width)

    def forward(self, s: Tensor, v: Tensor, edge_index: Tensor, r: Tensor, rbf: Tensor, fcut: Tensor):
        j, i = edge_index[0], edge_index[1]
        x = self.phi(s)[j] * self.filter(rbf) * fcut.unsqueeze(-1)
        ds, gv, gr = torch.split(x, [self.Fs, self.Fv, self.Fv], dim=-1)
        dv = gv.unsqueeze(1) * v[j] + gr.unsqueeze(1) * r.unsqueeze(-1)  # [E, 3, Fv]
        n = s.shape[0]
        return _aggr(ds, i, n, self.aggr), _aggr(dv, i, n, self.aggr)


class PaiNNUpdate(nn.Module):
    def __init__(self, hidden_scalars: int, hidden_vectors: int, eps: float) -> None:
        super().__init__()
        self.Fs, self.Fv = hidden_scalars, hidden_vectors
        self.eps = float(eps)
        self.U = nn.Linear(hidden_vectors, hidden_vectors, bias=False)
        self.V = nn.Linear(hidden_vectors, hidden_vectors, bias=False)
        self.a = nn.Sequential(
            nn.Linear(hidden_scalars + hidden_vectors, hidden_scalars),
            nn.SiLU(),
            nn.Linear(hidden_scalars, hidden_vectors + 2 * hidden_scalars),
        )
        self.P = nn.Linear(hidden_vectors, hidden_scalars, bias=False)

    def forward(self, s: Tensor, v: Tensor):
        Uv, Vv = self.U(v), self.V(v)  # [N, 3, Fv]
        a = self.a(torch.cat([s, safe_norm(Vv, dim=1, eps=self.eps)], dim=-1))
        a_vv, a_sv, a_ss = torch.split(a, [self.Fv, self.Fs, self.Fs], dim=-1)
        dv = a_vv.unsqueeze(1) * Uv
        ds = a_ss + a_sv * self.P((Uv * Vv).sum(dim=1))
        return ds, dv


class PaiNN(GraphModel):
    r"""The PaiNN baseline (Schuett, Unke, Gastegger 2021) with separate scalar and vector
    widths: message and update blocks as in the module docstring, then the task's readout.

    Args:
        num_elements (int): element classes of ``z``.
        hidden_scalars (int): scalar channels ``Fs``.
        hidden_vectors (int): vector channels ``Fv``.
        num_layers (int): message + update blocks.
        num_radial (int): Bessel functions of the edge length (times PaiNN's cosine cutoff).
        cutoff (float): radius of the graphs, in Å.
        out_dim (int): outputs per graph (targets, classes, or 1 logit).
        readout (str): where the output is read: ``"graph"`` (mean over the atoms), ``"node"``
            (at ``center_index``) or ``"pair"`` (at ``center_index0`` and ``center_index1``).
        vector_aggr (str): ``"mean"`` or ``"sum"`` of the messages over the neighbours.
        eps (float): floor of the squared norms and distances.
    """

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
        self.record_hparams(locals())
        check_common(num_layers, readout, vector_aggr)
        self.hidden_vectors = hidden_vectors
        self.eps = float(eps)
        self.embedding = nn.Embedding(num_elements, hidden_scalars)
        self.rbf = BesselBasis(num_radial, cutoff)
        self.fcut = CosineCutoff(cutoff)
        self.messages = nn.ModuleList(
            PaiNNMessage(hidden_scalars, hidden_vectors, num_radial, vector_aggr) for _ in range(num_layers)
        )
        self.updates = nn.ModuleList(PaiNNUpdate(hidden_scalars, hidden_vectors, eps) for _ in range(num_layers))
        self.readout = Readout(hidden_scalars, hidden_vectors, out_dim, readout, eps)

    def encode(self, data) -> tuple[Tensor, Tensor]:
        """``s`` [N, Fs] (invariant) and ``v`` [N, 3, Fv] (rotates with the input)."""
        s = self.embedding(data.z)
        self.check_dtype(data.pos, s)
        v = s.new_zeros(s.shape[0], 3, self.hidden_vectors)
        d, r = edge_geometry(data.pos, data.edge_index, self.eps)
        rbf, fcut = self.rbf(d), self.fcut(d)
        for message, update in zip(self.messages, self.updates):
            ds, dv = self.run_layer(message, s, v, data.edge_index, r, rbf, fcut)
            s, v = s + ds, v + dv
            ds, dv = self.run_layer(update, s, v)
            s, v = s + ds, v + dv
        return s, v
