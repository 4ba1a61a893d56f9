"""The EQGAT layer, the gated update and the norm in isolation."""

import pytest
import torch

import _graphs as G
from eqgat.nn import EQGATConv, EquivariantNorm, GatedEquivariantUpdate, feature_softmax
from torch_geometric.utils import scatter

DTYPES = [torch.float64, torch.float32]
Fs, Fv, K = 12, 5, 6


def _layer_inputs(dtype, seed=0, n=9, cutoff=3.0):
    g = torch.Generator().manual_seed(seed)
    data = G.make_graph(n, g, cutoff=cutoff, scale=1.0, dtype=dtype)
    # node n-1 is moved far away: no incoming edges
    data.pos[-1] = torch.tensor([50.0, 0.0, 0.0], dtype=dtype)
    data.edge_index = G.radius_graph(data.pos, cutoff)
    s = torch.randn(n, Fs, generator=g, dtype=torch.float64).to(dtype)
    v = torch.randn(n, 3, Fv, generator=g, dtype=torch.float64).to(dtype)
    j, i = data.edge_index
    diff = data.pos[j] - data.pos[i]
    d = diff.norm(dim=-1)
    r = diff / d[:, None]
    e = torch.randn(d.shape[0], K, generator=g, dtype=torch.float64).to(dtype)
    return data, s, v, r, e


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("feature_attention", [True, False])
def test_attention_sums_to_one_per_channel(dtype, feature_attention):
    torch.manual_seed(0)
    data, s, v, r, e = _layer_inputs(dtype)
    conv = EQGATConv(Fs, Fv, K, feature_attention=feature_attention).to(dtype)
    m_s, m_v, alpha = conv(s, v, data.edge_index, r, e, return_attention=True)
    A = Fs if feature_attention else 1
    assert alpha.shape == (data.edge_index.shape[1], A)
    assert (alpha > 0).all()
    n = s.shape[0]
    sums = scatter(alpha, data.edge_index[1], dim=0, dim_size=n, reduce="sum")
    has_in = torch.zeros(n, dtype=torch.bool)
    has_in[data.edge_index[1]] = True
    assert has_in.sum() >= n - 2 and not has_in[-1]
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(sums[has_in], torch.ones_like(sums[has_in]), atol=tol, rtol=0)
    # the isolated node gets exactly zero messages
    assert (m_s[-1] == 0).all() and (m_v[-1] == 0).all()
    # attention is not stored after the call
    assert conv._attention is None


def test_feature_softmax_helper():
    logits = torch.tensor([[0.0, 1.0], [0.0, -1.0], [5.0, 2.0]], dtype=torch.float64)
    index = torch.tensor([0, 0, 1])
    a = feature_softmax(logits, index, num_nodes=3)
    e = torch.exp(torch.tensor([1.0, -1.0], dtype=torch.float64))
    expected = torch.tensor([[0.5, e[0] / e.sum()], [0.5, e[1] / e.sum()], [1.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(a, expected)


def _reference_messages(conv, s, v, edge_index, r, e):
    """The equations of the layer written as a loop over target nodes."""
    n = s.shape[0]
    m_s = torch.zeros_like(s)
    m_v = torch.zeros_like(v)
    A = conv.num_logits
    for i in range(n):
        edges = (edge_index[1] == i).nonzero(as_tuple=True)[0]
        if edges.numel() == 0:
            continue
        js = edge_index[0, edges]
        feats = torch.cat([s[i].expand(len(js), Fs), s[js], e[edges]], dim=-1)
        f = conv.edge_lin2(torch.nn.functional.silu(conv.edge_lin1(feats)))
        a, b = f[:, :A], f[:, A:]
        alpha = torch.softmax(a, dim=0)
        m_s[i] = (alpha * conv.scalar_lin(s[js])).sum(0)
        terms = r[edges][:, :, None] * b[:, None, 0:Fv]
        if not conv.first_layer:
            vt = torch.einsum("nxc,dc->nxd", v[js], conv.vector_lin.weight)
            terms = terms + b[:, None, Fv : 2 * Fv] * vt
            if conv.cross_product:
                terms = terms + b[:, None, 2 * Fv : 3 * Fv] * torch.cross(v[i].expand_as(vt), vt, dim=1)
        m_v[i] = terms.mean(0) if conv.vector_aggr == "mean" else terms.sum(0)
    return m_s, m_v


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(first_layer=True),
        dict(cross_product=False),
        dict(feature_attention=False),
        dict(vector_aggr="sum"),
    ],
)
def test_layer_matches_loop_reference(kwargs):
    torch.manual_seed(1)
    data, s, v, r, e = _layer_inputs(torch.float64, seed=3)
    conv = EQGATConv(Fs, Fv, K, **kwargs).double()
    m_s, m_v = conv(s, v, data.edge_index, r, e)
    ref_s, ref_v = _reference_messages(conv, s, v, data.edge_index, r, e)
    torch.testing.assert_close(m_s, ref_s, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(m_v, ref_v, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reflect", [False, True])
def test_norm_and_update_equivariance(dtype, reflect):
    g = torch.Generator().manual_seed(7)
    n = 11
    s = torch.randn(n, Fs, generator=g, dtype=torch.float64).to(dtype)
    v = (3.0 * torch.randn(n, 3, Fv, generator=g, dtype=torch.float64)).to(dtype)
    v[0] = 0.0  # a node with zero vectors: finite output
    R = G.random_rotation(g, dtype)
    if reflect:  # the norm and the update are O(3)-equivariant
        R = R @ torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=dtype))
    torch.manual_seed(0)
    norm = EquivariantNorm(Fs, Fv).to(dtype)
    G.reinit_(norm, 0.5, g)
    update = GatedEquivariantUpdate(Fs, Fv).to(dtype)
    tol = G.TOL[dtype]
    for mod in (norm, update):
        s1, v1 = mod(s, v)
        s2, v2 = mod(s, R @ v)
        sc = G.scale_of(torch.cat([s1.flatten(), v1.flatten()]))
        torch.testing.assert_close(s2, s1, atol=tol * sc, rtol=0)
        torch.testing.assert_close(v2, R @ v1, atol=tol * sc, rtol=0)
        assert torch.isfinite(s1).all() and torch.isfinite(v1).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_norm_statistics(dtype):
    g = torch.Generator().manual_seed(1)
    s = (5 * torch.randn(6, Fs, generator=g, dtype=torch.float64) + 3).to(dtype)
    v = (7 * torch.randn(6, 3, Fv, generator=g, dtype=torch.float64)).to(dtype)
    v[2] = 0.0
    norm = EquivariantNorm(Fs, Fv).to(dtype)
    assert sum(p.numel() for p in norm.parameters()) == 2 * Fs
    s1, v1 = norm(s, v)
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(s1.mean(-1), torch.zeros(6, dtype=dtype), atol=tol, rtol=0)
    rms = (v1 * v1).sum(1).mean(-1).sqrt()
    expected = torch.ones(6, dtype=dtype)
    expected[2] = 0.0
    torch.testing.assert_close(rms, expected, atol=tol, rtol=0)
