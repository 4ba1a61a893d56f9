"""The full EQGAT network (Le, Noe, Clevert 2022), with an exactly equivariant norm.

Input: a PyG ``Data``/``Batch`` with

* ``z`` long [N]: element ids (0 .. num_elements-1),
* ``pos`` float [N, 3] (same dtype as the model's parameters),
* ``edge_index`` long [2, E]: both directions of every edge, row 0 = source / neighbour j,
  row 1 = target / centre i; a radius graph built with the model's ``cutoff`` (edges longer
  than the cutoff are not removed here: their radial features are zero but they still take
  part in the attention),
* ``batch`` long [N] (optional: all zeros, i.e. one graph, when missing),
* ``center_index`` [num_graphs] for ``readout="node"``; ``center_index0`` and
  ``center_index1`` [num_graphs] for ``readout="pair"`` (see :mod:`eqgat.nn.readout`).

Output: [num_graphs, out_dim].  ``encode`` returns the node features after the last layer
(and, with ``norm=True``, one more norm, as in the authors' trained models), ``s`` [N, Fs]
(invariant) and ``v`` [N, 3, Fv] (rotates with the input).

``norm=True`` places an :class:`~eqgat.nn.EquivariantNorm` after every layer and one more on
``(s, v)`` just before the readout, where the authors' models have their (non-equivariant)
norms; ``norm=False`` has none (the authors' LBA model).  ``eps`` (1e-6, as theirs) clamps the
squared norms inside the gated update, the readout and the edge directions.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..nn import EQGATConv, EquivariantNorm, GatedEquivariantUpdate, RadialEmbedding, Readout
from ..nn.geometry import edge_geometry
from .base import GraphModel, check_common

__all__ = ["EQGAT", "EQGATBlock"]


class EQGATBlock(nn.Module):
    """Message (residual) -> gated update (residual) -> norm."""

    def __init__(
        self,
        hidden_scalars: int,
        hidden_vectors: int,
        num_radial: int,
        *,
        first_layer: bool,
        cross_product: bool,
        feature_attention: bool,
        vector_aggr: str,
        norm: bool,
        eps: float,
    ) -> None:
        super().__init__()
        self.conv = EQGATConv(
            hidden_scalars,
            hidden_vectors,
            num_radial,
            first_layer=first_layer,
            cross_product=cross_product,
            feature_attention=feature_attention,
            vector_aggr=vector_aggr,
        )
        self.update = GatedEquivariantUpdate(hidden_scalars, hidden_vectors, eps)
        self.norm = EquivariantNorm(hidden_scalars, hidden_vectors, eps) if norm else None

    def forward(self, s: Tensor, v: Tensor, edge_index: Tensor, r: Tensor, edge_attr: Tensor):
        m_s, m_v = self.conv(s, v, edge_index, r, edge_attr)
        s, v = s + m_s, v + m_v
        s, v = self.update(s, v)
        if self.norm is not None:
            s, v = self.norm(s, v)
        return s, v


class EQGAT(GraphModel):
    r"""The EQGAT network (Le, Noe, Clevert 2022): an element embedding, ``num_layers``
    :class:`EQGATBlock` s (attention layer, residual, gated update, optional norm), then the
    task's readout. See the module docstring for the input and output.

    Args:
        num_elements (int): element classes of ``z`` (9 for ATOM3D, 2 for Triangle).
        hidden_scalars (int): scalar channels ``Fs`` per atom.
        hidden_vectors (int): vector channels ``Fv`` per atom.
        num_layers (int): message-passing layers.
        num_radial (int): Bessel functions of the edge length (times a polynomial envelope).
        cutoff (float): radius of the graphs, in Å; the radial features vanish there.
        out_dim (int): outputs per graph (targets, classes, or 1 logit).
        readout (str): where the output is read: ``"graph"`` (mean over the atoms), ``"node"``
            (at ``center_index``) or ``"pair"`` (at ``center_index0`` and ``center_index1``).
        vector_aggr (str): how vector messages are combined over the neighbours: ``"mean"``
            or ``"sum"``.
        cross_product (bool): include the cross-product term of the vector messages (``False``:
            the Table 4 ablation).
        feature_attention (bool): one attention weight per scalar channel (``False``: one per
            edge, the Table 4 ablation).
        norm (bool): an equivariant norm after every layer and before the readout.
        eps (float): floor of the squared norms and distances (finite gradients for coincident
            atoms).
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
        vector_aggr: str = "mean",
        readout: str = "graph",
        cross_product: bool = True,
        feature_attention: bool = True,
        norm: bool = True,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.record_hparams(locals())
        check_common(num_layers, readout, vector_aggr)
        self.hidden_scalars = hidden_scalars
        self.hidden_vectors = hidden_vectors
        self.cutoff = float(cutoff)
        self.eps = float(eps)
        self.embedding = nn.Embedding(num_elements, hidden_scalars)
        self.radial = RadialEmbedding(num_radial, cutoff)
        self.layers = nn.ModuleList(
            EQGATBlock(
                hidden_scalars,
                hidden_vectors,
                num_radial,
                first_layer=(i == 0),
                cross_product=cross_product,
                feature_attention=feature_attention,
                vector_aggr=vector_aggr,
                norm=norm,
                eps=eps,
            )
            for i in range(num_layers)
        )
        self.final_norm = EquivariantNorm(hidden_scalars, hidden_vectors, eps) if norm else None
        self.readout = Readout(hidden_scalars, hidden_vectors, out_dim, readout, eps)
        self.zero_biases()

    def zero_biases(self) -> None:
        """Linear layers start with zero biases, as the authors' dense layers do (their weights
        and embeddings have PyTorch's default initialisation, as ours)."""
        for module in self.modules():
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def reset_parameters(self) -> None:
        """Re-draw all parameters as at construction."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding, nn.LayerNorm)):
                module.reset_parameters()
        self.zero_biases()

    def edge_geometry(self, pos: Tensor, edge_index: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Distances d [E], unit vectors r [E, 3] (from centre i to neighbour j) and radial
        features [E, K] (see :func:`eqgat.nn.geometry.edge_geometry`)."""
        d, r = edge_geometry(pos, edge_index, self.eps)
        return d, r, self.radial(d)

    def encode(self, data) -> tuple[Tensor, Tensor]:
        z, pos, edge_index = data.z, data.pos, data.edge_index
        s = self.embedding(z)
        self.check_dtype(pos, s)
        v = s.new_zeros(s.shape[0], 3, self.hidden_vectors)
        _, r, edge_attr = self.edge_geometry(pos, edge_index)
        for layer in self.layers:
            s, v = self.run_layer(layer, s, v, edge_index, r, edge_attr)
        if self.final_norm is not None:
            s, v = self.final_norm(s, v)
        return s, v
