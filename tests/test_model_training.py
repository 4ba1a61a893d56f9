"""A small EQGAT fits a handful of random graphs (sanity check that it can learn)."""

import torch

import _graphs as G
from eqgat.models import build_model


def test_small_model_overfits_random_targets():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    datas = [G.make_graph(n, g, scale=1.5, y=torch.randn(1, 1, generator=g, dtype=torch.float64))
             for n in (6, 8, 10, 7, 9, 11)]
    b = G.batch(datas)
    m = build_model("eqgat", hidden_scalars=16, hidden_vectors=4, num_layers=2, num_radial=8).double()
    opt = torch.optim.Adam(m.parameters(), lr=5e-3)
    losses = []
    for _ in range(150):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(m(b), b.y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1])
