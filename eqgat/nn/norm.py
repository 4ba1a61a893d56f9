"""Exactly SO(3)-equivariant normalisation of (scalar, vector) node features.

* Scalars ``s`` [N, Fs]: per-node layer norm over the Fs channels (``eps`` added to the
  variance), with an affine weight and bias (2*Fs parameters).  Scalars are rotation invariant, so this is invariant.
* Vectors ``v`` [N, 3, Fv]: divided by the root-mean-square over the Fv channels of the
  per-channel Euclidean norms,

      v <- v / sqrt(max(mean_c |v_c|^2, eps)),

  no parameters.  ``|R v_c| = |v_c|`` for any orthogonal R, so the divisor is invariant and
  the output is ``R v`` whenever the input is ``R v``: exact equivariance, also under
  reflections.  (The reference implementation instead normalises by the x-component only
  and divides by the variance, which is neither invariant nor a standardisation.)

The statistics are per node, so a node's output never depends on other nodes or on the
other graphs in a batch.
"""

from __future__ import annotations

from torch import Tensor, nn
import torch

__all__ = ["EquivariantNorm"]


class EquivariantNorm(nn.Module):
    def __init__(self, hidden_scalars: int, hidden_vectors: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.hidden_scalars = hidden_scalars
        self.hidden_vectors = hidden_vectors
        self.eps = float(eps)
        self.scalar_norm = nn.LayerNorm(hidden_scalars, eps=eps, elementwise_affine=True, bias=True)

    def reset_parameters(self) -> None:
        self.scalar_norm.reset_parameters()

    def forward(self, s: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        s = self.scalar_norm(s)
        # mean over channels of the squared channel norms: [N, 1, 1]
        ms = (v * v).sum(dim=1, keepdim=True).mean(dim=2, keepdim=True)
        v = v / torch.sqrt(torch.clamp_min(ms, self.eps))
        return s, v

    def extra_repr(self) -> str:
        return f"hidden_scalars={self.hidden_scalars}, hidden_vectors={self.hidden_vectors}, eps={self.eps}"
