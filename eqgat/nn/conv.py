"""The EQGAT message-passing layer (paper section 3, eqs. 1-6).

Conventions
-----------
* ``edge_index[0]`` is the source / neighbour ``j``, ``edge_index[1]`` the target / centre
  ``i`` (PyG's default ``flow="source_to_target"``).  Both directions of an undirected edge
  must be present.
* ``r`` [E, 3] is the unit vector ``r_ij = (p_j - p_i) / max(d_ij, eps)``, i.e. it points
  from the centre ``i`` to the neighbour ``j``.  The paper writes ``p_i - p_j``; the other
  sign is equivalent to flipping the sign of the learned coefficient ``b0``.
* Scalars ``s`` are [N, Fs], vectors ``v`` are [N, 3, Fv] (spatial axis before channels).

Per edge ``j -> i``::

    f_ij   = W2 SiLU(W1 [s_i || s_j || e_ij] + b1) + b2          (edge MLP)
    f_ij   = [a_ij || b0_ij || b1_ij || b2_ij]
    alpha  = softmax over j in N(i) of a_ij, separately per channel
    m_s,i  = sum_j alpha_ij * (W_s s_j + b_s)
    vt_j   = v_j W_v                                               (no bias)
    m_v,i  = AGG_j [ r_ij (x) b0 + b1 * vt_j + b2 * (v_i x vt_j) ]  (AGG = mean or sum)

The layer returns the messages ``(m_s, m_v)``; the residual, the gated update and the norm
are applied by the block in :mod:`eqgat.models.eqgat`.

Variants
--------
* ``first_layer=True``: the input vectors are zero, so only the ``r (x) b0`` term is built,
  the edge MLP outputs ``A + Fv`` values and there is no ``W_v``.
* ``cross_product=False`` (ablation): no ``b2 * (v_i x vt_j)`` term and the edge MLP does
  not produce ``b2`` (no dead parameters): it outputs ``A + 2 Fv`` values.
* ``feature_attention=False`` (ablation): one attention logit per edge (A = 1) broadcast
  over all Fs channels, instead of A = Fs per-channel logits.

A node without incoming edges receives zero messages (the scatter of an empty set is zero),
never NaN.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import scatter, softmax

__all__ = ["EQGATConv", "feature_softmax"]


def feature_softmax(logits: Tensor, index: Tensor, num_nodes: int, ptr: Optional[Tensor] = None) -> Tensor:
    """Softmax of ``logits`` [E, A] over the edges that share the same target ``index``,
    separately for every channel (column).  For each target with at least one incoming edge
    and each channel the weights sum to one."""
    return softmax(logits, index=index, ptr=ptr, num_nodes=num_nodes, dim=0)


class EQGATConv(MessagePassing):
    def __init__(
        self,
        hidden_scalars: int,
        hidden_vectors: int,
        num_radial: int,
        *,
        first_layer: bool = False,
        cross_product: bool = True,
        feature_attention: bool = True,
        vector_aggr: str = "mean",
    ) -> None:
        super().__init__(aggr=None, node_dim=0)
        if vector_aggr not in ("mean", "sum"):
            raise ValueError(f"vector_aggr must be 'mean' or 'sum', got {vector_aggr!r}")
        self.hidden_scalars = Fs = int(hidden_scalars)
        self.hidden_vectors = Fv = int(hidden_vectors)
        self.num_radial = int(num_radial)
        self.first_layer = bool(first_layer)
        self.cross_product = bool(cross_product)
        self.feature_attention = bool(feature_attention)
        self.vector_aggr = vector_aggr

        self.num_logits = Fs if self.feature_attention else 1
        if self.first_layer:
            self.num_vector_coeffs = 1  # b0 only
        else:
            self.num_vector_coeffs = 3 if self.cross_product else 2  # b0, b1(, b2)

        self.edge_lin1 = nn.Linear(2 * Fs + self.num_radial, Fs)
        self.edge_lin2 = nn.Linear(Fs, self.num_logits + self.num_vector_coeffs * Fv)
        self.scalar_lin = nn.Linear(Fs, Fs)  # W_s, b_s
        self.vector_lin = None if self.first_layer else nn.Linear(Fv, Fv, bias=False)  # W_v

        self._store_attention = False
        self._attention: Optional[Tensor] = None

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self.edge_lin1.reset_parameters()
        self.edge_lin2.reset_parameters()
        self.scalar_lin.reset_parameters()
        if self.vector_lin is not None:
            self.vector_lin.reset_parameters()

    def forward(
        self,
        s: Tensor,
        v: Tensor,
        edge_index: Tensor,
        r: Tensor,
        edge_attr: Tensor,
        return_attention: bool = False,
    ):
        """Return the aggregated messages ``(m_s [N, Fs], m_v [N, 3, Fv])``; with
        ``return_attention=True`` also the attention weights ``alpha`` [E, A] (A = Fs, or 1
        without feature attention), aligned with the columns of ``edge_index``."""
        h = self.scalar_lin(s)
        if self.first_layer:
            v_in, vt = None, None
        else:
            v_in, vt = v, self.vector_lin(v)  # Linear acts on the channel (last) axis
        self._store_attention = return_attention
        try:
            m_s, m_v = self.propagate(edge_index, s=s, h=h, v=v_in, vt=vt, r=r, edge_attr=edge_attr)
            alpha = self._attention
        finally:
            self._store_attention = False
            self._attention = None
        if return_attention:
            return m_s, m_v, alpha
        return m_s, m_v

    def message(
        self,
        s_i: Tensor,
        s_j: Tensor,
        h_j: Tensor,
        v_i: Optional[Tensor],
        vt_j: Optional[Tensor],
        r: Tensor,
        edge_attr: Tensor,
        index: Tensor,
        ptr: Optional[Tensor],
        size_i: Optional[int],
    ):
        Fv = self.hidden_vectors
        f = self.edge_lin2(nn.functional.silu(self.edge_lin1(torch.cat([s_i, s_j, edge_attr], dim=-1))))
        logits = f[:, : self.num_logits]
        b = f[:, self.num_logits :]
        alpha = feature_softmax(logits, index, num_nodes=size_i, ptr=ptr)  # [E, A]
        msg_s = alpha * h_j  # broadcasts when A = 1

        b0 = b[:, 0:Fv]
        msg_v = r.unsqueeze(-1) * b0.unsqueeze(1)  # r (x) b0: [E, 3, Fv]
        if not self.first_layer:
            assert v_i is not None and vt_j is not None
            b1 = b[:, Fv : 2 * Fv]
            msg_v = msg_v + b1.unsqueeze(1) * vt_j
            if self.cross_product:
                b2 = b[:, 2 * Fv : 3 * Fv]
                msg_v = msg_v + b2.unsqueeze(1) * torch.linalg.cross(v_i, vt_j, dim=1)
        return msg_s, msg_v, alpha

    def aggregate(self, inputs, index: Tensor, ptr: Optional[Tensor] = None, dim_size: Optional[int] = None):
        msg_s, msg_v, alpha = inputs
        if self._store_attention:
            self._attention = alpha
        m_s = scatter(msg_s, index, dim=0, dim_size=dim_size, reduce="sum")
        m_v = scatter(msg_v, index, dim=0, dim_size=dim_size, reduce=self.vector_aggr)
        return m_s, m_v

    def update(self, inputs):
        return inputs

    def __repr__(self) -> str:  # MessagePassing's short repr hides the sub-modules
        return nn.Module.__repr__(self)

    def extra_repr(self) -> str:
        return (
            f"hidden_scalars={self.hidden_scalars}, hidden_vectors={self.hidden_vectors}, "
            f"num_radial={self.num_radial}, first_layer={self.first_layer}, "
            f"cross_product={self.cross_product}, feature_attention={self.feature_attention}, "
            f"vector_aggr={self.vector_aggr!r}"
        )
