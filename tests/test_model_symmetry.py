"""Symmetries of the full model: rotations, translations, permutations, reflections, batching.

Tolerances (absolute, multiplied by max(1, |reference output|)): float64 1e-10, float32 5e-5.
"""

import pytest
import torch

import _graphs as G
from eqgat.models import build_model

DTYPES = [torch.float64, torch.float32]
SMALL = dict(hidden_scalars=16, hidden_vectors=6, num_layers=3, num_radial=8, cutoff=4.5)
MIRROR = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))


def _model(name="eqgat", dtype=torch.float64, seed=0, std=0.5, **kw):
    torch.manual_seed(seed)
    m = build_model(name, **{**SMALL, **kw}).to(dtype)
    if std is not None:
        G.reinit_(m, std, torch.Generator().manual_seed(seed + 100))
    return m.eval()


def _graphs(dtype, seed=0, sizes=(12, 9, 15), **extra):
    g = torch.Generator().manual_seed(seed)
    return [G.make_graph(n, g, scale=1.5, dtype=dtype, **extra) for n in sizes]


def _close(a, b, dtype, ref):
    tol = G.TOL[dtype] * G.scale_of(ref)
    torch.testing.assert_close(a, b, atol=tol, rtol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["eqgat", "eqgat_nocross", "eqgat_noatt"])
def test_invariant_under_rotation_and_translation(dtype, name):
    m = _model(name, dtype)
    g = torch.Generator().manual_seed(11)
    b = G.batch(_graphs(dtype))
    out = m(b)
    assert out.shape == (3, 1) and torch.isfinite(out).all()
    for _ in range(3):
        R = G.random_rotation(g, dtype)
        t = (10 * torch.randn(3, generator=g, dtype=torch.float64)).to(dtype)
        _close(m(G.transform(b, R, t)), out, dtype, out)


@pytest.mark.parametrize("dtype", DTYPES)
def test_paper_sized_model_is_invariant(dtype):
    """Default (PSR) hyper-parameters, default initialisation."""
    torch.manual_seed(0)
    m = build_model("eqgat").to(dtype).eval()
    b = G.batch(_graphs(dtype, seed=5, sizes=(10, 14)))
    g = torch.Generator().manual_seed(3)
    out = m(b)
    R = G.random_rotation(g, dtype)
    _close(m(G.transform(b, R, torch.ones(3, dtype=dtype))), out, dtype, out)


@pytest.mark.parametrize("dtype", DTYPES)
def test_encode_is_equivariant(dtype):
    m = _model("eqgat", dtype)
    b = G.batch(_graphs(dtype, seed=1))
    R = G.random_rotation(torch.Generator().manual_seed(2), dtype)
    s, v = m.encode(b)
    assert s.shape == (b.num_nodes, SMALL["hidden_scalars"])
    assert v.shape == (b.num_nodes, 3, SMALL["hidden_vectors"])
    assert v.abs().max() > 0.1  # non-trivial vectors
    s2, v2 = m.encode(G.transform(b, R, torch.tensor([1.0, -2.0, 3.0], dtype=dtype)))
    ref = torch.cat([s.flatten(), v.flatten()])
    _close(s2, s, dtype, ref)
    _close(v2, R @ v, dtype, ref)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("readout", ["graph", "node", "pair"])
def test_invariant_under_permutation(dtype, readout):
    m = _model("eqgat", dtype, readout=readout)
    g = torch.Generator().manual_seed(4)
    datas = _graphs(dtype, seed=2, center_index=torch.tensor([3]), center_index0=torch.tensor([1]),
                    center_index1=torch.tensor([5]))
    out = m(G.batch(datas))
    permuted = []
    for d in datas:
        perm = torch.randperm(d.num_nodes, generator=g)
        eperm = torch.randperm(d.edge_index.shape[1], generator=g)
        permuted.append(G.permute(d, perm, eperm))
    assert not torch.equal(permuted[0].z, datas[0].z) or not torch.equal(permuted[0].pos, datas[0].pos)
    _close(m(G.batch(permuted)), out, dtype, out)


@pytest.mark.parametrize("dtype", DTYPES)
def test_mirror_image_changes_eqgat_but_not_nocross(dtype):
    """The cross product makes EQGAT SO(3)- but not O(3)-invariant: a mirror image gets a
    different prediction.  Without the cross product the model is O(3)-invariant."""
    datas = _graphs(dtype, seed=3)
    b = G.batch(datas)
    g = torch.Generator().manual_seed(9)
    R = G.random_rotation(g, dtype)
    improper = R @ MIRROR.to(dtype)
    assert torch.det(improper) < 0

    full = _model("eqgat", dtype, seed=1)
    out = full(b)
    mirrored = full(G.transform(b, improper))
    tol = G.TOL[dtype] * G.scale_of(out)
    diff = (mirrored - out).abs()
    assert (diff > 50 * tol).all(), (diff, tol)  # every graph changes, by far more than tol
    assert diff.max() > 1e-2 * G.scale_of(out)  # and by > 1% of the output scale
    _close(full(G.transform(b, R)), out, dtype, out)  # while a proper rotation changes nothing

    nocross = _model("eqgat_nocross", dtype)
    out_nc = nocross(b)
    _close(nocross(G.transform(b, improper)), out_nc, dtype, out_nc)
    # and its hidden vectors are O(3)-equivariant: v' = P v for the improper P
    s, v = nocross.encode(b)
    s2, v2 = nocross.encode(G.transform(b, improper))
    ref = torch.cat([s.flatten(), v.flatten()])
    _close(s2, s, dtype, ref)
    _close(v2, improper @ v, dtype, ref)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("readout", ["graph", "node", "pair"])
def test_output_does_not_depend_on_batch_mates(dtype, readout):
    m = _model("eqgat", dtype, readout=readout, vector_aggr="sum")
    datas = _graphs(dtype, seed=6, sizes=(7, 13, 10, 4), center_index=torch.tensor([2]),
                    center_index0=torch.tensor([0]), center_index1=torch.tensor([3]))
    alone = torch.cat([m(G.batch([d])) for d in datas])
    assert alone.shape == (4, 1)
    for order in ([0, 1, 2, 3], [3, 1, 0, 2], [2, 0, 3, 1]):
        out = m(G.batch([datas[k] for k in order]))
        _close(out, alone[order], dtype, alone)
    # a single Data without a `batch` vector is one graph
    single = datas[1].clone()
    _close(m(single), alone[1:2], dtype, alone)


def test_center_index_is_offset_by_batching():
    datas = _graphs(torch.float64, seed=7, sizes=(5, 8, 6), center_index=torch.tensor([4]))
    b = G.batch(datas)
    assert b.center_index.tolist() == [4, 5 + 4, 5 + 8 + 4]
    assert torch.equal(b.center_index, b.ptr[:-1] + 4)
