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

Implementation (same math, fewer and smaller per-edge tensors)
---------------------------------------------------------------
* ``W1 [s_i || s_j || e]`` is split into ``W1a s_i + W1b s_j + W1c e``: ``W1a s``, ``W1b s``
  and ``h = W_s s + b_s`` are one [N, 3Fs] matmul over the nodes, then gathered per edge.
* Softmax: ``ex = exp(a - max_i a)`` (the per-target, per-channel maximum, no gradient),
  ``m_s = (sum_j ex_ij h_j) / (sum_j ex_ij + 1e-16)``: the normalisation is done per node,
  so alpha is only materialised when ``return_attention=True``.
* ``sum_j b2_ij (v_i x vt_j) = v_i x (sum_j b2_ij vt_j)``: ``b1 vt_j`` and ``b2 vt_j`` are
  aggregated together and the cross product is taken once per node.
* Sums over edges are sparse CSR matmuls (:mod:`eqgat.nn.segment`; the structures are built
  once per ``edge_index`` and shared by the layers); gathers are ``index_select`` with a CSR
  backward.  Mean aggregation divides the node sums by the in-degree (at least 1).
* Per-edge tensors are kept at most ``Fs + 3Fv`` columns wide (no concatenated message
  tensor): on CPU a fresh allocation above the allocator's mmap threshold (32 MiB in
  glibc) page-faults every time, which costs more than the arithmetic.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import softmax

from .segment import edge_adjacency, gather, scatter_sum

__all__ = ["EQGATConv", "feature_softmax"]


def feature_softmax(logits: Tensor, index: Tensor, num_nodes: int, ptr: Tensor | None = None) -> Tensor:
    """Softmax of ``logits`` [E, A] over the edges that share the same target ``index``,
    separately for every channel (column).  For each target with at least one incoming edge
    and each channel the weights sum to one."""
    return softmax(logits, index=index, ptr=ptr, num_nodes=num_nodes, dim=0)


def _cross(a: Tensor, b: Tensor) -> Tensor:
    """Cross product along dim 1 of [N, 3, F] tensors, from component slices."""
    a0, a1, a2 = a.unbind(1)
    b0, b1, b2 = b.unbind(1)
    return torch.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], dim=1)


class EQGATConv(MessagePassing):
    r"""The EQGAT attention layer (paper eqs. 1-6): per-channel attention over the neighbours
    for the scalar messages, and vector messages built from the edge direction, the neighbour's
    vectors and their cross product with the centre's. Returns the messages ``(m_s, m_v)``;
    see the module docstring for the equations.

    Args:
        hidden_scalars (int): scalar channels ``Fs``.
        hidden_vectors (int): vector channels ``Fv``.
        num_radial (int): size of the edge features ``e_ij`` the layer receives.
        first_layer (bool): the input vectors are zero, so only the edge-direction term is
            built (and there is no vector weight matrix).
        cross_product (bool): include the ``v_i x v_j`` term (``False``: the Table 4 ablation).
        feature_attention (bool): one attention logit per scalar channel (``False``: one per
            edge, broadcast over the channels).
        vector_aggr (str): ``"mean"`` or ``"sum"`` of the vector messages over the neighbours.
    """

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

        # kept for backward compatibility: the attention is returned, never stored
        self._attention: Tensor | None = None

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
        without feature attention), aligned with the columns of ``edge_index``.

        The computation is organised for speed (see "Implementation" in the module
        docstring); the result equals the per-edge formulas up to round-off."""
        Fs, Fv, A = self.hidden_scalars, self.hidden_vectors, self.num_logits
        N = s.shape[0]
        dst = edge_index[1]  # i
        E = dst.numel()
        by_src, by_dst = edge_adjacency(edge_index, N)  # CSR structures, shared by all layers

        # --- node-level linear maps (N rows instead of E rows) -------------------------
        # W1 [s_i || s_j || e] = W1a s_i + W1b s_j + W1c e, and h = W_s s + b_s.
        W1 = self.edge_lin1.weight
        w_node = torch.cat([W1[:, :Fs], W1[:, Fs : 2 * Fs], self.scalar_lin.weight], dim=0)
        b_node = torch.cat([self.scalar_lin.bias.new_zeros(2 * Fs), self.scalar_lin.bias])
        node = nn.functional.linear(s, w_node, b_node)  # [N, 3 Fs]
        p_i, p_j, h = node[:, :Fs], node[:, Fs : 2 * Fs], node[:, 2 * Fs :]

        # --- edge MLP ------------------------------------------------------------------
        pre = nn.functional.linear(edge_attr, W1[:, 2 * Fs :], self.edge_lin1.bias)  # [E, Fs]
        pre = pre.add_(gather(p_i, by_dst)).add_(gather(p_j, by_src))
        f = self.edge_lin2(nn.functional.silu(pre))  # [E, A + n Fv]
        logits, b = f[:, :A], f[:, A:]

        # --- attention: numerically stable softmax over the incoming edges of each target,
        # per channel.  The per-target maximum only shifts the logits (no gradient).
        with torch.no_grad():
            idx_a = dst.view(-1, 1).expand(E, A)
            mx = logits.new_full((N, A), float("-inf"))
            # (a contiguous copy: scatter_reduce_ is ~3x slower on a strided source on CPU)
            mx.scatter_reduce_(0, idx_a, logits.detach().contiguous(), reduce="amax", include_self=True)
            mx_e = mx.index_select(0, dst)
        ex = (logits - mx_e).exp_()  # [E, A], in (0, 1]
        del mx_e
        den = scatter_sum(ex, by_dst) + 1e-16  # softmax denominator
        # m_s = sum_j alpha_ij h_j = (sum_j ex_ij h_j) / den_i
        num = scatter_sum(ex * gather(h, by_src), by_dst)
        m_s = num / den
        alpha = ex / den.index_select(0, dst) if return_attention else None

        # --- vector messages -------------------------------------------------------------
        m_v = scatter_sum(r.unsqueeze(-1) * b[:, :Fv].unsqueeze(1), by_dst)
        if not self.first_layer:
            assert self.vector_lin is not None
            vt_j = gather(self.vector_lin(v), by_src)  # [E, 3, Fv]
            if self.cross_product:
                # sum_j b2_ij (v_i x vt_j) = v_i x (sum_j b2_ij vt_j): the cross product is
                # bilinear and v_i does not depend on j, so it is taken once per node.
                coef = b[:, Fv : 3 * Fv].unflatten(1, (2, Fv)).unsqueeze(1)  # [E, 1, 2, Fv]
                agg = scatter_sum(vt_j.unsqueeze(2) * coef, by_dst)
                m_v = m_v + agg[:, :, 0] + _cross(v, agg[:, :, 1])
            else:
                m_v = m_v + scatter_sum(vt_j * b[:, Fv : 2 * Fv].unsqueeze(1), by_dst)
        if self.vector_aggr == "mean":
            deg = torch.bincount(dst, minlength=N).clamp_(min=1).to(m_v.dtype)
            m_v = m_v / deg.view(N, 1, 1)

        if return_attention:
            return m_s, m_v, alpha
        return m_s, m_v

    def __repr__(self) -> str:  # MessagePassing's short repr hides the sub-modules
        return nn.Module.__repr__(self)

    def extra_repr(self) -> str:
        return (
            f"hidden_scalars={self.hidden_scalars}, hidden_vectors={self.hidden_vectors}, "
            f"num_radial={self.num_radial}, first_layer={self.first_layer}, "
            f"cross_product={self.cross_product}, feature_attention={self.feature_attention}, "
            f"vector_aggr={self.vector_aggr!r}"
        )
