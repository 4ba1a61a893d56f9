"""SEGNN baseline (Brandstetter, Hesselink, van der Pol, Bekkers, Welling 2022), with e3nn.

Steerable E(3)-equivariant message passing: node features are e3nn irreps
``hidden = "{Fs}x0e + {Fv}x1o + {Ft}x2e"`` (ATOM3D: ``100x0e+16x1o+8x2e``, the paper's
(100, 16, 8) channels for l = 0, 1, 2), with ``Fs = hidden_scalars``, ``Fv = hidden_vectors``
and ``Ft = hidden_tensors`` (default ``Fv // 2``).

Geometric attributes (lmax = 2, e3nn "component" normalisation, so ``Y_0 = 1``):

* edge attribute ``a_ij = Y(r_ij)``, ``r_ij = (p_j - p_i) / d_ij`` (irreps ``0e+1o+2e``);
* node attribute ``a_i = mean_j a_ij`` over the incoming edges, with its l = 0 entry set to 1
  (it is 1 anyway for any atom with an edge; an isolated atom gets ``(1, 0, 0)`` instead of all
  zeros, which would otherwise zero every node-conditioned layer).

Steerable layers: ``TP(x, a)`` is an e3nn ``FullyConnectedTensorProduct`` of the features with
an attribute (all parity-allowed paths, trainable weights) plus a bias on the 0e outputs.
``Gated(x, a)``: a TP to ``scalars + gates + gated`` followed by the gated nonlinearity (SiLU
on the scalars, sigmoid gates, one gate per l > 0 irrep; written here, like e3nn's ``Gate``
but without its activation-normalisation constants).

Network::

    h0 = TP(onehot(z), a_i)                                   embedding, num_elements x 0e -> hidden
    per layer:
        m_ij = Gated(Gated([h_i || h_j || e(d_ij)], a_ij), a_ij)     message (2 steerable layers)
        m_i  = AGG_j m_ij                                              vector_aggr: sum | mean
        h_i  = h_i + TP(Gated([h_i || m_i], a_i), a_i)                 update (2 layers, residual)
    x_i = TP(Gated(h_i, a_i), a_i) -> Fs x 0e                 pre-pool (invariant)
    graph mean / centre node / centre pair -> Linear -> SiLU -> Linear   (our common head)

``e(d)`` is our radial feature :class:`eqgat.nn.RadialEmbedding` (``num_radial`` Bessel
functions times the polynomial envelope, so every message fades to zero at the cutoff) used
as the "additional message features" (``num_radial x 0e``).

Simplifications w.r.t. the official code (documented in docs/baselines.md): no instance/batch
norm; radial Bessel features instead of the squared distance as the additional message input;
e3nn's default weight initialisation; post-pooling head = our common 2-layer MLP head.

Everything is built from parity-respecting tensor products of polar inputs, so the 0e outputs
are invariant under rotations, translations, permutations *and* reflections.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch_geometric.utils import scatter

try:
    from e3nn import o3
except ImportError as exc:  # pragma: no cover - exercised only without e3nn
    raise ImportError("the SEGNN baseline needs e3nn: pip install e3nn") from exc

from ..nn.geometry import edge_geometry
from ..nn.radial import RadialEmbedding
from ..nn.readout import ScalarReadout
from .base import GraphModel, check_common

__all__ = [
    "SEGNN",
    "SEGNNLayer",
    "SteerableGated",
    "SteerableLinear",
    "concat_blocks",
    "concat_irreps",
    "concat_layout",
    "grouped_irreps",
    "hidden_irreps",
]

LMAX = 2


def hidden_irreps(hidden_scalars: int, hidden_vectors: int, hidden_tensors: int) -> o3.Irreps:
    parts = [f"{m}x{ir}" for m, ir in ((hidden_scalars, "0e"), (hidden_vectors, "1o"), (hidden_tensors, "2e")) if m > 0]
    if not parts:
        raise ValueError("SEGNN needs at least one hidden channel")
    return o3.Irreps("+".join(parts))


def grouped_irreps(*irreps_list: o3.Irreps) -> o3.Irreps:
    """Irreps of :func:`concat_irreps` of features with these irreps."""
    muls: dict[o3.Irrep, int] = {}
    for irreps in irreps_list:
        for mul, ir in irreps:
            if mul > 0:
                muls[ir] = muls.get(ir, 0) + mul
    return o3.Irreps([(muls[ir], ir) for ir in sorted(muls)])


def concat_irreps(*parts: tuple[Tensor, o3.Irreps]) -> Tensor:
    """Concatenate features ``(x, irreps)`` grouped by irrep type (sorted: all 0e blocks, then
    all 1o, then all 2e), so that the result has the *simplified* irreps
    :func:`grouped_irreps`, e.g. ``(2Fs+K)x0e + 2Fv x1o + 2Ft x2e``: fewer, larger
    tensor-product paths (same parameter count as the plain concatenation)."""
    return concat_blocks(concat_layout(*(irreps for _, irreps in parts)), *(x for x, _ in parts))


def concat_layout(*irreps_list: o3.Irreps) -> tuple[tuple[int, int, int], ...]:
    """The column blocks ``(part, start, stop)`` that :func:`concat_irreps` puts one after the
    other, in plain integers (no e3nn objects in the forward pass, which ``torch.compile`` traces)."""
    blocks: dict[o3.Irrep, list[tuple[int, int, int]]] = {}
    for part, irreps in enumerate(irreps_list):
        for sl, (mul, ir) in zip(irreps.slices(), irreps):
            if mul > 0:
                blocks.setdefault(ir, []).append((part, sl.start, sl.stop))
    return tuple(b for ir in sorted(blocks) for b in blocks[ir])


def concat_blocks(layout: tuple[tuple[int, int, int], ...], *xs: Tensor) -> Tensor:
    """The columns ``xs[part][..., start:stop]`` of a :func:`concat_layout`, concatenated."""
    return torch.cat([xs[part][..., start:stop] for part, start, stop in layout], dim=-1)


class SteerableLinear(nn.Module):
    """``TP(x, a) + b``: fully connected tensor product with an attribute, bias on 0e outputs."""

    def __init__(self, irreps_in, irreps_attr, irreps_out) -> None:
        super().__init__()
        self.irreps_out = o3.Irreps(irreps_out)
        # _optimize_einsums=False: skips e3nn's opt_einsum_fx pass, which costs ~0.2 s per layer
        # at construction and made no measurable difference to the forward time on CPU.
        self.tp = o3.FullyConnectedTensorProduct(irreps_in, irreps_attr, self.irreps_out, _optimize_einsums=False)
        idx = []
        for sl, (_mul, ir) in zip(self.irreps_out.slices(), self.irreps_out):
            if ir == o3.Irrep("0e"):
                idx.extend(range(sl.start, sl.stop))
        self.register_buffer("bias_index", torch.tensor(idx, dtype=torch.long), persistent=False)
        self.bias = nn.Parameter(torch.zeros(len(idx)))

    def forward(self, x: Tensor, attr: Tensor) -> Tensor:
        out = self.tp(x, attr)
        if self.bias.numel() == 0:
            return out
        b = out.new_zeros(out.shape[-1]).index_copy(0, self.bias_index, self.bias.to(out.dtype))
        return out + b


class SteerableGated(nn.Module):
    """Gated steerable layer: ``y = TP(x, a) + b`` laid out as ``[scalars | gates | gated]``;
    returns ``[SiLU(scalars) | sigmoid(gate_k) * gated_k]`` with one gate per l > 0 irrep
    (the gated nonlinearity of SEGNN / e3nn's ``Gate``, without e3nn's second-moment
    normalisation constants of the activations)."""

    def __init__(self, irreps_in, irreps_attr, irreps_out) -> None:
        super().__init__()
        irreps_out = o3.Irreps(irreps_out)
        scalars = o3.Irreps([(m, ir) for m, ir in irreps_out if ir.l == 0])
        gated = o3.Irreps([(m, ir) for m, ir in irreps_out if ir.l > 0])
        if any(ir.p != 1 for _, ir in scalars) or scalars.dim + gated.dim != irreps_out.dim:
            raise ValueError(f"expected 0e scalars first, then l > 0 irreps; got {irreps_out}")
        self.num_scalars = scalars.dim
        self.num_gates = gated.num_irreps
        self.gated = [(m, ir.dim) for m, ir in gated]
        self.irreps_out = irreps_out
        gates = o3.Irreps(f"{self.num_gates}x0e") if self.num_gates else o3.Irreps("")
        self.linear = SteerableLinear(irreps_in, irreps_attr, scalars + gates + gated)

    def forward(self, x: Tensor, attr: Tensor) -> Tensor:
        y = self.linear(x, attr)
        s, g, rest = torch.split(y, [self.num_scalars, self.num_gates, y.shape[-1] - self.num_scalars - self.num_gates], -1)
        out = [F.silu(s)]
        g = torch.sigmoid(g)
        k = off = 0
        for mul, dim in self.gated:
            block = rest[..., off : off + mul * dim].reshape(*rest.shape[:-1], mul, dim)
            out.append((g[..., k : k + mul, None] * block).reshape(*rest.shape[:-1], mul * dim))
            k, off = k + mul, off + mul * dim
        return torch.cat(out, dim=-1)


class SEGNNLayer(nn.Module):
    def __init__(self, irreps_hidden: o3.Irreps, irreps_attr: o3.Irreps, num_radial: int, aggr: str) -> None:
        super().__init__()
        self.aggr = aggr
        self.irreps_hidden = irreps_hidden
        self.irreps_radial = o3.Irreps(f"{num_radial}x0e")
        self.message_layout = concat_layout(irreps_hidden, irreps_hidden, self.irreps_radial)
        self.update_layout = concat_layout(irreps_hidden, irreps_hidden)
        msg_in = grouped_irreps(irreps_hidden, irreps_hidden, self.irreps_radial)
        upd_in = grouped_irreps(irreps_hidden, irreps_hidden)
        self.message1 = SteerableGated(msg_in, irreps_attr, irreps_hidden)
        self.message2 = SteerableGated(irreps_hidden, irreps_attr, irreps_hidden)
        self.update1 = SteerableGated(upd_in, irreps_attr, irreps_hidden)
        self.update2 = SteerableLinear(irreps_hidden, irreps_attr, irreps_hidden)

    def forward(self, h: Tensor, edge_index: Tensor, edge_attr: Tensor, node_attr: Tensor, radial: Tensor) -> Tensor:
        j, i = edge_index[0], edge_index[1]
        x = concat_blocks(self.message_layout, h[i], h[j], radial)
        m = self.message1(x, edge_attr)
        m = self.message2(m, edge_attr)
        m = scatter(m, i, dim=0, dim_size=h.shape[0], reduce="sum" if self.aggr == "sum" else "mean")
        x = concat_blocks(self.update_layout, h, m)
        u = self.update1(x, node_attr)
        return h + self.update2(u, node_attr)


class SEGNN(GraphModel):
    r"""The SEGNN baseline (Brandstetter et al. 2022) with e3nn: steerable messages and
    updates conditioned on spherical harmonics of the edges (lmax 2), then an invariant
    projection and the task's readout. See the module docstring for the network.

    Args:
        num_elements (int): element classes of ``z``.
        hidden_scalars (int): ``l = 0`` channels.
        hidden_vectors (int): ``l = 1`` channels.
        hidden_tensors (int, optional): ``l = 2`` channels (default ``hidden_vectors // 2``).
        num_layers (int): message-passing layers.
        num_radial (int): Bessel features of the edge length added to each message.
        cutoff (float): radius of the graphs, in Å.
        out_dim (int): outputs per graph (targets, classes, or 1 logit).
        readout (str): where the output is read: ``"graph"`` (mean over the atoms), ``"node"``
            (at ``center_index``) or ``"pair"`` (at ``center_index0`` and ``center_index1``).
        vector_aggr (str): ``"mean"`` or ``"sum"`` of the messages over the neighbours.
        eps (float): floor of the squared distances.
    """

    def __init__(
        self,
        num_elements: int = 9,
        hidden_scalars: int = 100,
        hidden_vectors: int = 16,
        hidden_tensors: int | None = None,
        num_layers: int = 3,
        num_radial: int = 32,
        cutoff: float = 4.5,
        out_dim: int = 1,
        readout: str = "graph",
        vector_aggr: str = "mean",
        eps: float = 1e-8,
    ) -> None:
        super().__init__()
        if hidden_tensors is None:
            hidden_tensors = hidden_vectors // 2
        self.record_hparams(locals())
        check_common(num_layers, readout, vector_aggr)
        self.num_elements = num_elements
        self.eps = float(eps)
        self.irreps_hidden = hidden_irreps(hidden_scalars, hidden_vectors, hidden_tensors)
        self.irreps_attr = o3.Irreps.spherical_harmonics(LMAX)  # 1x0e+1x1o+1x2e
        self.sh_degrees = list(range(LMAX + 1))  # the degrees of irreps_attr, for the forward pass
        self.radial = RadialEmbedding(num_radial, cutoff)
        self.embedding = SteerableLinear(f"{num_elements}x0e", self.irreps_attr, self.irreps_hidden)
        self.layers = nn.ModuleList(
            SEGNNLayer(self.irreps_hidden, self.irreps_attr, num_radial, vector_aggr) for _ in range(num_layers)
        )
        self.pre_pool1 = SteerableGated(self.irreps_hidden, self.irreps_attr, self.irreps_hidden)
        self.pre_pool2 = SteerableLinear(self.irreps_hidden, self.irreps_attr, f"{hidden_scalars}x0e")
        self.readout = ScalarReadout(hidden_scalars, out_dim, readout, project=False)

    def attributes(self, pos: Tensor, edge_index: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Edge attributes [E, 9], node attributes [N, 9], radial features [E, K]."""
        d, r = edge_geometry(pos, edge_index, self.eps)
        # r is already a unit vector (or 0 for coincident atoms): no renormalisation, whose
        # gradient would be undefined at 0.
        edge_attr = o3.spherical_harmonics(self.sh_degrees, r, normalize=False, normalization="component")
        node_attr = scatter(edge_attr, edge_index[1], dim=0, dim_size=pos.shape[0], reduce="mean")
        node_attr = torch.cat([torch.ones_like(node_attr[:, :1]), node_attr[:, 1:]], dim=-1)
        return edge_attr, node_attr, self.radial(d)

    def encode(self, data) -> Tensor:
        """Invariant node features [N, Fs] (after the pre-pooling layers)."""
        pos, edge_index = data.pos, data.edge_index
        dtype = self.pre_pool2.bias.dtype
        self.check_dtype(pos, self.pre_pool2.bias)
        edge_attr, node_attr, radial = self.attributes(pos, edge_index)
        h = self.embedding(F.one_hot(data.z, self.num_elements).to(dtype), node_attr)
        for layer in self.layers:
            h = self.run_layer(layer, h, edge_index, edge_attr, node_attr, radial)
        return self.pre_pool2(self.pre_pool1(h, node_attr), node_attr)
