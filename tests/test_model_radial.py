"""Radial basis, envelope and the safe norm: values and NaN-free gradients."""

import math

import pytest
import torch

from eqgat.nn import BesselBasis, PolynomialEnvelope, RadialEmbedding, safe_norm

DTYPES = [torch.float64, torch.float32]
# value tolerances: float64 is exact to round-off, float32 to ~1e-6 relative
ATOL = {torch.float64: 1e-12, torch.float32: 1e-5}


def bessel_by_hand(d: float, k: int, c: float) -> float:
    return math.sqrt(2.0 / c) * math.sin(k * math.pi * d / c) / d


def envelope_by_hand(d: float, c: float) -> float:
    x = d / c
    return 1 - 28 * x**6 + 48 * x**7 - 21 * x**8 if x < 1 else 0.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_bessel_matches_hand_computed_values(dtype):
    c, K = 4.5, 6
    basis = BesselBasis(K, c).to(dtype)
    ds = [0.37, 1.0, 2.25, 3.9, 4.5, 6.0]
    out = basis(torch.tensor(ds, dtype=dtype))
    assert out.shape == (len(ds), K) and out.dtype == dtype
    for a, d in enumerate(ds):
        for k in range(1, K + 1):
            assert float(out[a, k - 1]) == pytest.approx(bessel_by_hand(d, k, c), abs=ATOL[dtype], rel=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bessel_finite_limit_and_gradient_at_zero(dtype):
    c, K = 10.0, 16
    basis = BesselBasis(K, c).to(dtype)
    d = torch.zeros(3, dtype=dtype, requires_grad=True)
    out = basis(d)
    expected = torch.tensor([math.sqrt(2 / c) * k * math.pi / c for k in range(1, K + 1)], dtype=dtype)
    torch.testing.assert_close(out[0], expected, atol=ATOL[dtype], rtol=1e-6)
    out.sum().backward()
    assert torch.isfinite(d.grad).all()
    # continuity: a tiny distance gives (almost) the limit
    tiny = basis(torch.tensor([1e-4], dtype=dtype))[0]
    torch.testing.assert_close(tiny, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_envelope_values_and_smoothness(dtype):
    c = 4.5
    env = PolynomialEnvelope(c)
    ds = torch.tensor([0.0, 0.3 * c, 0.5 * c, 0.9 * c, c, 1.2 * c, 100.0], dtype=dtype)
    u = env(ds)
    for a in range(len(ds)):
        assert float(u[a]) == pytest.approx(envelope_by_hand(float(ds[a]), c), abs=ATOL[dtype])
    assert float(u[0]) == 1.0
    assert float(u[4]) == 0.0 and float(u[5]) == 0.0 and float(u[6]) == 0.0
    # monotone non-increasing on [0, c], values in [0, 1]
    grid = torch.linspace(0, c, 501, dtype=torch.float64)
    ug = env(grid)
    assert (ug.diff() <= 1e-12).all() and (ug >= 0).all() and (ug <= 1).all()
    # smooth: first derivative vanishes at the cutoff (from below) and at 0
    x = torch.tensor([1e-9, c - 1e-7, c + 0.5], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(env(x).sum(), x)
    assert torch.isfinite(g).all()
    assert g.abs().max() < 1e-6


@pytest.mark.parametrize("dtype", DTYPES)
def test_radial_embedding_is_zero_beyond_cutoff(dtype):
    emb = RadialEmbedding(8, 3.0).to(dtype)
    d = torch.tensor([0.0, 1.0, 3.0, 3.5], dtype=dtype, requires_grad=True)
    e = emb(d)
    assert e.shape == (4, 8)
    assert torch.isfinite(e).all()
    assert (e[2:] == 0).all()
    assert (e[1] != 0).any()
    e.pow(2).sum().backward()
    assert torch.isfinite(d.grad).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_safe_norm_gradient_at_zero(dtype):
    x = torch.zeros(2, 3, dtype=dtype, requires_grad=True)
    n = safe_norm(x, dim=-1, eps=1e-8)
    assert torch.allclose(n, torch.full_like(n, 1e-4))
    n.sum().backward()
    assert torch.isfinite(x.grad).all()
    y = torch.tensor([[3.0, 4.0, 0.0]], dtype=dtype)
    assert float(safe_norm(y, dim=-1, eps=1e-8)) == pytest.approx(5.0)
