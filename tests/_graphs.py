"""Helpers for the model tests: brute-force radius graphs, random clouds, random rotations.

Imported by ``tests/test_model_*.py`` as ``import _graphs`` (pytest puts ``tests/`` on
``sys.path`` in its default import mode)."""

from __future__ import annotations

import torch
from torch_geometric.data import Batch, Data

TOL = {
    # absolute tolerance relative to the output scale (multiply by max(1, |out|.max()))
    torch.float64: 1e-10,
    torch.float32: 5e-5,  # observed errors are ~1e-6 relative
}


def radius_graph(pos: torch.Tensor, cutoff: float) -> torch.Tensor:
    """All ordered pairs (j, i), j != i, with |p_j - p_i| < cutoff; row 0 = source j,
    row 1 = target i.  Brute force O(N^2), exact."""
    n = pos.shape[0]
    d = torch.cdist(pos.double(), pos.double())
    mask = (d < cutoff) & ~torch.eye(n, dtype=torch.bool)
    i, j = mask.nonzero(as_tuple=True)  # mask is symmetric: row index = target here
    return torch.stack([j, i], dim=0)


def random_cloud(n: int, generator: torch.Generator, scale: float = 2.0, dtype=torch.float64) -> torch.Tensor:
    """n points, normally distributed with std ``scale`` (generically chiral)."""
    return (scale * torch.randn(n, 3, generator=generator, dtype=torch.float64)).to(dtype)


def make_graph(
    n: int,
    generator: torch.Generator,
    *,
    num_elements: int = 9,
    cutoff: float = 4.5,
    scale: float = 2.0,
    dtype=torch.float64,
    **extra,
) -> Data:
    pos = random_cloud(n, generator, scale, dtype)
    z = torch.randint(0, num_elements, (n,), generator=generator)
    return Data(z=z, pos=pos, edge_index=radius_graph(pos, cutoff), **extra)


def random_rotation(generator: torch.Generator, dtype=torch.float64) -> torch.Tensor:
    """Uniformly random proper rotation (det = +1)."""
    a = torch.randn(3, 3, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q.to(dtype)


def transform(data: Data, rot: torch.Tensor | None = None, shift: torch.Tensor | None = None) -> Data:
    """Copy of ``data`` with positions ``p -> p R^T + t`` (i.e. ``R p + t`` per point)."""
    out = data.clone()
    pos = out.pos
    if rot is not None:
        pos = pos @ rot.T
    if shift is not None:
        pos = pos + shift
    out.pos = pos
    return out


def permute(data: Data, perm: torch.Tensor, edge_perm: torch.Tensor | None = None) -> Data:
    """Relabel the nodes: new node k is old node ``perm[k]``; edges follow (and are optionally
    reordered by ``edge_perm``).  ``*index*`` attributes of size 1 (centre indices) follow too."""
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel())
    out = Data(z=data.z[perm], pos=data.pos[perm], edge_index=inv[data.edge_index])
    if edge_perm is not None:
        out.edge_index = out.edge_index[:, edge_perm]
    for key in data.keys():
        if key not in ("z", "pos", "edge_index"):
            out[key] = inv[data[key]] if "index" in key else data[key]
    return out


def batch(datas) -> Batch:
    return Batch.from_data_list(list(datas))


def reinit_(model: torch.nn.Module, std: float, generator: torch.Generator) -> torch.nn.Module:
    """Re-draw every parameter from N(0, std^2) (LayerNorm weights around 1) so that a random
    model has clearly non-trivial outputs."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = std * torch.randn(p.shape, generator=generator, dtype=torch.float64).to(p.dtype)
            if name.endswith("scalar_norm.weight"):
                p.copy_(1.0 + noise)
            else:
                p.copy_(noise)
    return model


def scale_of(x: torch.Tensor) -> float:
    return max(1.0, float(x.detach().abs().max()))


def build_triangle_shards(raw_path, out_dir, cutoff: float, **kwargs) -> dict:
    """Shards of a raw Triangle file through the task declaration, as the workflow builds them."""
    from eqgat.tasks import get_task
    from preprocess.task_shards import build_task_shards

    return build_task_shards(get_task("triangle"), raw_path, out_dir, cutoff, **kwargs)
