"""Graph geometry shared by every model: edge distances and directions, the batch vector."""
from __future__ import annotations

import torch
from torch import Tensor

from .radial import safe_norm


def edge_geometry(pos: Tensor, edge_index: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """Distances ``d`` [E] and unit vectors ``r = (p_j - p_i) / d`` [E, 3] (j = row 0, the
    neighbour; i = row 1, the centre), with ``d = sqrt(max(|p_j - p_i|^2, eps))``: coincident
    atoms give ``d = sqrt(eps)``, ``r = 0`` and finite gradients."""
    diff = pos[edge_index[0]] - pos[edge_index[1]]
    d = safe_norm(diff, dim=-1, eps=eps)
    return d, diff / d.unsqueeze(-1)


def batch_vector(data, num_nodes: int, device) -> tuple[Tensor, int]:
    """The graph index of every node and the number of graphs (one graph if `data` has no batch)."""
    batch = getattr(data, "batch", None)
    if batch is None:
        return torch.zeros(num_nodes, dtype=torch.long, device=device), 1
    num_graphs = getattr(data, "num_graphs", None)
    if num_graphs is None:
        num_graphs = int(batch.max()) + 1 if batch.numel() > 0 else 0
    return batch, int(num_graphs)
