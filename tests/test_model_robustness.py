"""Degenerate inputs (isolated atoms, coincident atoms, no edges), factory and device."""

import pytest
import torch
from torch_geometric.data import Data

import _graphs as G
from eqgat.device import select_device
from eqgat.models import MODELS, build_model

DTYPES = [torch.float64, torch.float32]
SMALL = dict(hidden_scalars=16, hidden_vectors=6, num_layers=3, num_radial=8, cutoff=4.5)


def _all_finite_grads(model, pos):
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    assert pos.grad is not None and torch.isfinite(pos.grad).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("readout", ["graph", "node", "pair"])
def test_isolated_and_coincident_atoms(dtype, readout):
    g = torch.Generator().manual_seed(0)
    data = G.make_graph(8, g, scale=1.0, dtype=dtype)
    pos = data.pos.clone()
    pos[3] = pos[2]  # two atoms at the same position (an edge with d = 0 both ways)
    pos[7] = torch.tensor([100.0, 100.0, 100.0], dtype=dtype)  # an atom with no neighbours
    data.pos = pos
    data.edge_index = G.radius_graph(pos, 4.5)
    ei = data.edge_index
    assert ((ei[0] == 2) & (ei[1] == 3)).any()
    assert not (ei == 7).any()
    data.center_index = torch.tensor([7])  # the isolated atom as centre
    data.center_index0 = torch.tensor([2])
    data.center_index1 = torch.tensor([7])
    other = G.make_graph(5, g, dtype=dtype, center_index=torch.tensor([0]),
                         center_index0=torch.tensor([1]), center_index1=torch.tensor([2]))
    b = G.batch([data, other])
    b.pos.requires_grad_(True)
    torch.manual_seed(0)
    m = build_model("eqgat", readout=readout, **SMALL).to(dtype)
    s, v = m.encode(b)
    assert torch.isfinite(s).all() and torch.isfinite(v).all()
    out = m(b)
    assert out.shape == (2, 1) and torch.isfinite(out).all()
    out.pow(2).sum().backward()
    _all_finite_grads(m, b.pos)


@pytest.mark.parametrize("dtype", DTYPES)
def test_graph_without_edges_and_self_loop(dtype):
    torch.manual_seed(0)
    m = build_model("eqgat", **SMALL).to(dtype)
    pos = torch.zeros(1, 3, dtype=dtype, requires_grad=True)
    d = Data(z=torch.tensor([3]), pos=pos, edge_index=torch.zeros(2, 0, dtype=torch.long))
    out = m(d)
    assert out.shape == (1, 1) and torch.isfinite(out).all()
    # a self loop (d = 0, r = 0) is harmless too
    d2 = Data(z=torch.tensor([3]), pos=pos, edge_index=torch.zeros(2, 1, dtype=torch.long))
    out2 = m(d2)
    (out + out2).sum().backward()
    assert torch.isfinite(out2).all()
    _all_finite_grads(m, pos)


def test_gradient_is_finite_when_atoms_merge():
    """Positions gradient stays finite (and the output continuous) as two atoms approach."""
    torch.manual_seed(0)
    m = build_model("eqgat", **SMALL).double()
    g = torch.Generator().manual_seed(1)
    data = G.make_graph(6, g, scale=1.0)
    outs = []
    for gap in (1e-2, 1e-5, 0.0):
        pos = data.pos.clone()
        pos[1] = pos[0] + torch.tensor([gap, 0.0, 0.0], dtype=torch.float64)
        pos.requires_grad_(True)
        d = Data(z=data.z, pos=pos, edge_index=G.radius_graph(pos.detach(), 4.5))
        out = m(d)
        out.sum().backward()
        assert torch.isfinite(pos.grad).all()
        outs.append(out.item())
    assert abs(outs[1] - outs[2]) < 1e-2 * max(1.0, abs(outs[2]))


def test_model_without_norm_runs():
    torch.manual_seed(0)
    m = build_model("eqgat", norm=False, **SMALL).double()
    assert not any("norm" in n for n, _ in m.named_parameters())
    out = m(G.make_graph(6, torch.Generator().manual_seed(0)))
    assert torch.isfinite(out).all()


def test_factory():
    assert {"eqgat", "eqgat_nocross", "eqgat_noatt"} <= set(MODELS)
    with pytest.raises(ValueError, match="eqgat_nocross"):
        build_model("schnetz")
    m = build_model("eqgat_nocross", **SMALL)
    assert all(not layer.conv.cross_product and layer.conv.feature_attention for layer in m.layers)
    m = build_model("eqgat_noatt", **SMALL)
    assert all(layer.conv.cross_product and not layer.conv.feature_attention for layer in m.layers)
    with pytest.raises(ValueError):
        build_model("eqgat_noatt", feature_attention=True)
    with pytest.raises(ValueError):
        build_model("eqgat", readout="nodes")
    with pytest.raises(ValueError):
        build_model("eqgat", vector_aggr="max")
    # defaults are the PSR configuration
    m = build_model("eqgat")
    assert m.hparams["num_layers"] == 5 and m.hparams["hidden_scalars"] == 100
    assert m.hparams["readout"] == "graph" and m.hparams["vector_aggr"] == "mean"


def test_node_readout_without_center_index_raises():
    m = build_model("eqgat", readout="node", **SMALL).double()
    with pytest.raises(ValueError, match="center_index"):
        m(G.make_graph(5, torch.Generator().manual_seed(0)))


def test_select_device(monkeypatch):
    assert select_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device().type == expected
    assert select_device("auto").type == expected
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(RuntimeWarning, match="CUDA"):
        assert select_device("cuda") == torch.device("cpu")
    assert select_device() == torch.device("cpu")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    torch.manual_seed(0)
    m = build_model("eqgat", **SMALL).double()
    b = G.batch([G.make_graph(n, torch.Generator().manual_seed(n)) for n in (6, 9)])
    out_cpu = m(b)
    dev = select_device("cuda")
    out_gpu = m.to(dev)(b.to(dev))
    torch.testing.assert_close(out_gpu.cpu(), out_cpu, atol=1e-10, rtol=0)
