"""Baselines SchNet, PaiNN, SEGNN: interface, symmetries, robustness, parameter counts, training.

All three are O(3)/E(3)-invariant (no cross product, parity-respecting tensor products), so
unlike EQGAT their outputs must also be unchanged under reflections.
Tolerance (float64): 1e-8 absolute, times max(1, |reference output|).
"""

import importlib.util

import pytest
import torch

import _graphs as G
from eqgat.models import MODELS, build_model, count_parameters, fit_hparams, model_arguments, task_model_hparams
from eqgat.tasks import TASKS

e3nn_missing = pytest.mark.skipif(importlib.util.find_spec("e3nn") is None, reason="SEGNN needs e3nn")
NAMES = ["schnet", "painn", pytest.param("segnn", marks=e3nn_missing)]
SMALL = dict(hidden_scalars=12, hidden_vectors=4, num_layers=2, num_radial=6, cutoff=4.5)
TOL = 1e-8
MIRROR = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))
# paper Table 3 (Triangle), thousands of parameters
PAPER_TRIANGLE = {"schnet": 16_800, "painn": 27_100, "segnn": 60_900}


def _model(name, seed=0, std=0.3, dtype=torch.float64, **kw):
    torch.manual_seed(seed)
    m = build_model(name, **fit_hparams(name, {**SMALL, **kw})).to(dtype)
    if std is not None and name != "segnn":  # e3nn layers keep their own (normalised) init
        G.reinit_(m, std, torch.Generator().manual_seed(seed + 100))
    return m.eval()


def _graphs(seed=0, sizes=(10, 7, 12), **extra):
    g = torch.Generator().manual_seed(seed)
    return [G.make_graph(n, g, scale=1.5, **extra) for n in sizes]


def _close(a, b, ref):
    torch.testing.assert_close(a, b, atol=TOL * G.scale_of(ref), rtol=0)


def _with_centres(datas, seed=0):
    g = torch.Generator().manual_seed(seed)
    for d in datas:
        n = d.num_nodes
        d.center_index = torch.randint(0, n, (1,), generator=g)
        d.center_index0 = torch.randint(0, n, (1,), generator=g)
        d.center_index1 = torch.randint(0, n, (1,), generator=g)
    return datas


# --------------------------------------------------------------------------- interface


def test_registered():
    assert {"schnet", "painn", "segnn", "eqgat"} <= set(MODELS)


ALL_NAMES = ["eqgat", "eqgat_nocross", "eqgat_noatt", *NAMES]


@pytest.mark.parametrize("name", ALL_NAMES)
def test_hparams_rebuild_the_same_model(name):
    """`model.hparams` holds every constructor argument (defaults and derived values included),
    so `build_model(name, **hparams)` with the same seed gives the same parameters and outputs."""
    torch.manual_seed(3)
    first = build_model(name, **fit_hparams(name, SMALL)).double().eval()
    torch.manual_seed(3)
    again = build_model(name, **first.hparams).double().eval()
    assert first.hparams == again.hparams and first.hparams["cutoff"] == SMALL["cutoff"]
    assert "self" not in first.hparams and "__class__" not in first.hparams
    for (k1, a), (k2, b) in zip(first.state_dict().items(), again.state_dict().items()):
        assert k1 == k2 and torch.equal(a, b)
    data = _graphs()[0]
    torch.testing.assert_close(first(data), again(data), atol=0, rtol=0)


@pytest.mark.parametrize("name", ["eqgat", "eqgat_nocross"])
def test_eqgat_rejects_unknown_hparams_by_name(name):
    with pytest.raises(ValueError, match=r"unknown hyper-parameter\(s\) for EQGAT: bogus; accepted: .*cross_product"):
        build_model(name, bogus=1)


@pytest.mark.parametrize("name", NAMES)
def test_unknown_hparam_rejected_common_accepted(name):
    with pytest.raises(ValueError, match="unknown hyper-parameter.*bogus"):
        build_model(name, bogus=1)
    with pytest.raises(ValueError, match="cross_product"):
        build_model(name, cross_product=False)
    build_model(name, **fit_hparams(name, {**SMALL, "num_elements": 3, "out_dim": 2, "readout": "node", "vector_aggr": "sum"}))
    with pytest.raises(ValueError, match="readout"):
        build_model(name, **fit_hparams(name, SMALL), readout="bogus")


def test_each_model_takes_only_its_own_arguments():
    """SchNet has no vector features: vector settings are refused, not silently ignored."""
    assert "hidden_vectors" not in model_arguments("schnet") and "vector_aggr" not in model_arguments("schnet")
    for key, value in (("hidden_vectors", 4), ("vector_aggr", "sum")):
        with pytest.raises(ValueError, match=f"unknown hyper-parameter.*{key}"):
            build_model("schnet", **{key: value})
    assert {"hidden_vectors", "vector_aggr"} <= set(model_arguments("painn"))
    assert "norm" in model_arguments("eqgat_nocross") and "cross_product" not in model_arguments("eqgat_nocross")
    with pytest.raises(ValueError, match="fixes cross_product=False"):
        build_model("eqgat_nocross", cross_product=True)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("readout,out_dim", [("graph", 3), ("node", 20), ("pair", 1)])
def test_readout_shapes(name, readout, out_dim):
    m = _model(name, readout=readout, out_dim=out_dim, dtype=torch.float32)
    b = G.batch(_with_centres(_graphs(dtype=torch.float32)))
    out = m(b)
    assert out.shape == (3, out_dim) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


# --------------------------------------------------------------------------- symmetries


@pytest.mark.parametrize("name", NAMES)
def test_invariant_rotation_translation_reflection(name):
    m = _model(name)
    b = G.batch(_graphs())
    out = m(b)
    assert out.abs().max() > 1e-3 and (out[0] - out[1]).abs().max() > 1e-6  # not trivial
    g = torch.Generator().manual_seed(7)
    for k in range(3):
        R = G.random_rotation(g)
        if k > 0:  # improper: reflection (k = 1) and the inversion composed with R (k = 2)
            R = R @ MIRROR if k == 1 else -R
            assert torch.det(R) < 0
        t = 5 * torch.randn(3, generator=g, dtype=torch.float64)
        _close(m(G.transform(b, R, t)), out, out)
    # sanity: a non-rigid deformation does change the output
    moved = b.clone()
    moved.pos = moved.pos.clone()
    moved.pos[0] += 0.3
    assert (m(moved)[0] - out[0]).abs().max() > 1e-6


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("readout", ["graph", "node", "pair"])
def test_invariant_under_permutation(name, readout):
    m = _model(name, readout=readout)
    datas = _with_centres(_graphs(seed=3))
    out = m(G.batch(datas))
    g = torch.Generator().manual_seed(5)
    perm_datas = []
    for d in datas:
        perm = torch.randperm(d.num_nodes, generator=g)
        edge_perm = torch.randperm(d.edge_index.shape[1], generator=g)
        perm_datas.append(G.permute(d, perm, edge_perm))
    _close(m(G.batch(perm_datas)), out, out)


def test_painn_vectors_are_o3_equivariant():
    m = _model("painn")
    b = G.batch(_graphs(seed=1))
    s, v = m.encode(b)
    assert v.abs().max() > 1e-2
    R = G.random_rotation(torch.Generator().manual_seed(2)) @ MIRROR
    s2, v2 = m.encode(G.transform(b, R, torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)))
    ref = torch.cat([s.flatten(), v.flatten()])
    _close(s2, s, ref)
    _close(v2, R @ v, ref)


@pytest.mark.parametrize("name", NAMES)
def test_batch_independence(name):
    m = _model(name)
    datas = _graphs(seed=4)
    out = m(G.batch(datas))
    for k, d in enumerate(datas):
        alone = m(G.batch([d]))
        _close(alone[0], out[k], out)
    other = _graphs(seed=9, sizes=(5, 11))
    mixed = m(G.batch([other[0], datas[1], other[1]]))
    _close(mixed[1], out[1], out)


# --------------------------------------------------------------------------- robustness


@pytest.mark.parametrize("name", NAMES)
def test_isolated_and_coincident_atoms_finite(name):
    m = _model(name).train()
    g = torch.Generator().manual_seed(6)
    d = G.make_graph(6, g, scale=1.0)
    pos = torch.cat([d.pos, d.pos[:1], torch.tensor([[50.0, 0.0, 0.0]], dtype=torch.float64)])  # twin + isolated
    z = torch.cat([d.z, d.z[:1], torch.tensor([1])])
    pos.requires_grad_(True)
    from torch_geometric.data import Data

    data = Data(z=z, pos=pos, edge_index=G.radius_graph(pos.detach(), 4.5))
    assert (data.edge_index == 6).any() and not (data.edge_index == 7).any()
    lone = Data(z=torch.tensor([0]), pos=torch.zeros(1, 3, dtype=torch.float64), edge_index=torch.zeros(2, 0, dtype=torch.long))
    b = G.batch([data, lone])
    out = m(b)
    assert out.shape == (2, 1) and torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(pos.grad).all()
    for n, p in m.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), n


# --------------------------------------------------------------------------- sizes


def _triangle_cfg(name):
    return task_model_hparams(TASKS["triangle"], name, cutoff=10.0)


@pytest.mark.parametrize(
    "name,ours,rel",
    [("schnet", 16_483, 0.03), ("painn", 25_179, 0.08), pytest.param("segnn", 61_757, 0.02, marks=e3nn_missing)],
)
def test_triangle_parameter_counts(name, ours, rel):
    cfg = _triangle_cfg(name)
    assert cfg["out_dim"] == 3 and cfg["readout"] == "graph"
    n = count_parameters(build_model(name, **cfg))
    assert n == ours
    assert abs(n - PAPER_TRIANGLE[name]) / PAPER_TRIANGLE[name] < rel


def test_schnet_count_formula():
    """Embedding + PyG interaction blocks + our scalar readout, by hand."""
    cfg = task_model_hparams(TASKS["psr"], "schnet", cutoff=4.5)
    assert "hidden_vectors" not in cfg and "norm" not in cfg
    F, K, L = cfg["hidden_scalars"], cfg["num_radial"], cfg["num_layers"]
    lin = lambda i, o, b=True: i * o + (o if b else 0)  # noqa: E731
    block = lin(K, F) + lin(F, F) + lin(F, F, False) + lin(F, F) + lin(F, F)
    expected = cfg["num_elements"] * F + L * block + lin(F, F) + lin(F, F) + lin(F, cfg["out_dim"])
    assert count_parameters(build_model("schnet", **cfg)) == expected == 239_201


# --------------------------------------------------------------------------- training


@pytest.mark.parametrize("name", NAMES)
def test_tiny_model_loss_falls(name):
    torch.manual_seed(0)
    m = build_model(name, **fit_hparams(name, dict(hidden_scalars=8, hidden_vectors=4, num_layers=2, num_radial=4, out_dim=2)))
    datas = _graphs(seed=8, sizes=(6, 8, 5, 7), dtype=torch.float32)
    b = G.batch(datas)
    y = torch.randn(4, 2, generator=torch.Generator().manual_seed(1))
    opt = torch.optim.Adam(m.parameters(), lr=2e-2)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(m(b), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
