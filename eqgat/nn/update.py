"""Gated equivariant update (paper Fig. 1b; PaiNN-style gate), applied with a residual.

    [v_n || v_g] = v W_u                         W_u: Fv -> 2Fv, no bias
    n            = sqrt(max(sum_xyz v_n^2, eps))  per channel, rotation invariant
    [g || ds]    = W_b SiLU(W_a [s || n])         W_a: Fs+Fv -> Fs, W_b: Fs -> Fv+Fs
    dv           = (g * v_g) W_o                  W_o: Fv -> Fv, no bias
    s <- s + ds,  v <- v + dv

Only linear maps over the channel axis and multiplications by invariant scalars act on the
vectors, so the update is equivariant under every orthogonal transformation.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .radial import safe_norm

__all__ = ["GatedEquivariantUpdate"]


class GatedEquivariantUpdate(nn.Module):
    def __init__(self, hidden_scalars: int, hidden_vectors: int, eps: float = 1e-8) -> None:
        super().__init__()
        self.hidden_scalars = Fs = int(hidden_scalars)
        self.hidden_vectors = Fv = int(hidden_vectors)
        self.eps = float(eps)
        self.vector_in = nn.Linear(Fv, 2 * Fv, bias=False)  # W_u
        self.lin_a = nn.Linear(Fs + Fv, Fs)  # W_a
        self.lin_b = nn.Linear(Fs, Fv + Fs)  # W_b
        self.vector_out = nn.Linear(Fv, Fv, bias=False)  # W_o

    def reset_parameters(self) -> None:
        for m in (self.vector_in, self.lin_a, self.lin_b, self.vector_out):
            m.reset_parameters()

    def forward(self, s: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        Fv = self.hidden_vectors
        vv = self.vector_in(v)  # [N, 3, 2Fv]
        v_n, v_g = vv[..., :Fv], vv[..., Fv:]
        n = safe_norm(v_n, dim=1, eps=self.eps)  # [N, Fv]
        out = self.lin_b(nn.functional.silu(self.lin_a(torch.cat([s, n], dim=-1))))
        g, ds = out[:, :Fv], out[:, Fv:]
        dv = self.vector_out(g.unsqueeze(1) * v_g)
        return s + ds, v + dv
