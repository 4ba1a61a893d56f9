"""Radial features of an edge: Bessel basis times a polynomial envelope.

Bessel basis (K functions, fixed frequencies, cutoff c):

    e_k(d) = sqrt(2/c) * sin(k*pi*d/c) / d,         k = 1..K

The d -> 0 limit is finite: sqrt(2/c) * k*pi/c.  We evaluate it as

    e_k(d) = sqrt(2/c) * (k*pi/c) * sinc(k*d/c)      (sinc(x) = sin(pi x)/(pi x))

which is the same function, but ``torch.sinc`` is defined (value 1, gradient 0) at
x = 0, so both the value and the gradient are finite for coincident atoms.

Polynomial envelope (DimeNet, p = 6), x = d/c:

    u(x) = 1 - 28 x^6 + 48 x^7 - 21 x^8   for x < 1,   0 otherwise.

u(0) = 1, u(1) = 0 and u'(1) = u''(1) = 0, so the edge features fade smoothly to zero
at the cutoff.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["BesselBasis", "CosineCutoff", "PolynomialEnvelope", "RadialEmbedding", "safe_norm"]


def safe_norm(x: Tensor, dim: int, eps: float, keepdim: bool = False) -> Tensor:
    """Euclidean norm ``sqrt(max(sum x^2, eps))``.

    Clamping the *squared* norm keeps the backward pass finite at x = 0 (the gradient of
    ``clamp_min`` is zero where it clamps, whereas the gradient of ``sqrt`` at 0 is inf,
    which would turn into NaN when multiplied by the zero gradient of ``x^2``).
    """
    return torch.sqrt(torch.clamp_min((x * x).sum(dim=dim, keepdim=keepdim), eps))


class BesselBasis(nn.Module):
    """``e_k(d) = sqrt(2/c) sin(k pi d / c) / d`` for k = 1..K (no trainable parameters)."""

    def __init__(self, num_radial: int, cutoff: float) -> None:
        super().__init__()
        if num_radial < 1:
            raise ValueError("num_radial must be >= 1")
        if cutoff <= 0:
            raise ValueError("cutoff must be > 0")
        self.num_radial = int(num_radial)
        self.cutoff = float(cutoff)
        # k = 1..K as a buffer so that it follows .to(device/dtype)
        self.register_buffer(
            "k", torch.arange(1, num_radial + 1, dtype=torch.get_default_dtype()), persistent=False
        )

    def forward(self, d: Tensor) -> Tensor:
        """d: [E] distances -> [E, K]."""
        c = self.cutoff
        k = self.k.to(dtype=d.dtype, device=d.device)
        pref = math.sqrt(2.0 / c) * math.pi / c
        return pref * k * torch.sinc(d.unsqueeze(-1) * k / c)

    def extra_repr(self) -> str:
        return f"num_radial={self.num_radial}, cutoff={self.cutoff}"


class PolynomialEnvelope(nn.Module):
    """DimeNet envelope with p = 6: ``1 - 28x^6 + 48x^7 - 21x^8`` for ``x = d/c < 1``, else 0."""

    def __init__(self, cutoff: float) -> None:
        super().__init__()
        self.cutoff = float(cutoff)

    def forward(self, d: Tensor) -> Tensor:
        x = torch.clamp(d / self.cutoff, min=0.0, max=1.0)
        x6 = x.pow(6)
        u = 1.0 - 28.0 * x6 + 48.0 * x6 * x - 21.0 * x6 * x * x
        # The polynomial is exactly 0 at x = 1 already; the mask makes it exactly 0 beyond
        # (where x is clamped to 1) and guards against round-off.  Both branches are finite,
        # so torch.where has a finite gradient everywhere.
        return torch.where(d < self.cutoff, u, torch.zeros_like(u))

    def extra_repr(self) -> str:
        return f"cutoff={self.cutoff}"


class RadialEmbedding(nn.Module):
    """Edge feature ``u(d) * e(d)`` of shape [E, K]."""

    def __init__(self, num_radial: int, cutoff: float) -> None:
        super().__init__()
        self.basis = BesselBasis(num_radial, cutoff)
        self.envelope = PolynomialEnvelope(cutoff)

    def forward(self, d: Tensor) -> Tensor:
        return self.envelope(d).unsqueeze(-1) * self.basis(d)


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
