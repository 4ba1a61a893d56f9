"""Which graphs each rank trains on in each optimiser step of an epoch.

An epoch's order is a function of (seed, epoch) only. It is cut into *steps*; a step holds one
batch per rank (``steps[k][r]``), so every rank takes the same number of steps, which
data-parallel training needs (a rank that runs out early would hang the others).

* Fixed batches (``batch_size`` graphs per rank, the paper protocols): the order is cut into
  global batches of ``batch_size * world_size`` graphs, each split into ``world_size``
  consecutive parts whose sizes differ by at most one graph. With one rank these are the
  ``batch_size`` chunks a plain ``DataLoader`` makes.
* Batches by size (``max_atoms`` and/or ``max_edges``): graphs are packed in the epoch order
  into batches of at most ``batch_size`` graphs under the caps; consecutive batches form the
  steps, and the last step's missing batches are empty.

A rank whose batch is empty still runs the step (on a stand-in graph that adds nothing to the
loss), so that the collective operations of every rank match.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

__all__ = ["OversizeGraphs", "SizeCaps", "epoch_order", "plan_epoch", "steps_per_epoch"]

Step = list[list[int]]


def epoch_order(num_items: int, seed: int, epoch: int, left_out: Sequence[int] = ()) -> list[int]:
    """The shuffled sample order of one epoch, a function of (seed, epoch) only, without the
    items `left_out` (graphs over a batch cap)."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(num_items, generator=gen).tolist()
    if len(left_out) == 0:
        return order
    skip = {int(i) for i in left_out}
    return [i for i in order if i not in skip]


@dataclass(frozen=True)
class SizeCaps:
    """Per-batch caps on atoms and edges (None: no cap) and each graph's sizes."""

    atoms: np.ndarray  # [N] atoms of every graph
    edges: np.ndarray  # [N] directed edges of every graph
    max_atoms: int | None = None
    max_edges: int | None = None

    @property
    def capped(self) -> bool:
        return self.max_atoms is not None or self.max_edges is not None

    def oversize(self) -> np.ndarray:
        """Indices of the graphs that exceed a cap on their own."""
        over = np.zeros(len(self.atoms), bool)
        if self.max_atoms is not None:
            over |= self.atoms > self.max_atoms
        if self.max_edges is not None:
            over |= self.edges > self.max_edges
        return np.flatnonzero(over)


class OversizeGraphs(ValueError):
    """Graphs larger than a batch cap, which no batch can hold."""

    def __init__(self, indices: Sequence[int], message: str) -> None:
        super().__init__(message)
        self.indices = list(indices)


def _split_even(chunk: list[int], parts: int) -> Step:
    """`chunk` in `parts` consecutive pieces whose sizes differ by at most one."""
    q, rem = divmod(len(chunk), parts)
    out, start = [], 0
    for r in range(parts):
        end = start + q + (1 if r < rem else 0)
        out.append(chunk[start:end])
        start = end
    return out


def _fixed_steps(order: Sequence[int], batch_size: int, world_size: int) -> list[Step]:
    glob = batch_size * world_size
    return [_split_even(list(order[i:i + glob]), world_size) for i in range(0, len(order), glob)]


def _packed_batches(order: Sequence[int], batch_size: int, caps: SizeCaps) -> list[list[int]]:
    """Greedy packing in order: a graph opens a new batch when it would break a cap."""
    max_atoms = caps.max_atoms if caps.max_atoms is not None else np.inf
    max_edges = caps.max_edges if caps.max_edges is not None else np.inf
    batches: list[list[int]] = []
    current: list[int] = []
    atoms = edges = 0
    for i in order:
        a, e = int(caps.atoms[i]), int(caps.edges[i])
        if current and (len(current) >= batch_size or atoms + a > max_atoms or edges + e > max_edges):
            batches.append(current)
            current, atoms, edges = [], 0, 0
        current.append(int(i))
        atoms += a
        edges += e
    if current:
        batches.append(current)
    return batches


def plan_epoch(order: Sequence[int], batch_size: int, world_size: int = 1, caps: SizeCaps | None = None) -> list[Step]:
    """The steps of an epoch: ``steps[k][r]`` lists the dataset indices rank ``r`` trains on in
    step ``k``. With `caps`, graphs that exceed a cap on their own must already be left out of
    `order` (see :meth:`SizeCaps.oversize`)."""
    if batch_size < 1 or world_size < 1:
        raise ValueError(f"batch_size and world_size must be >= 1, got {batch_size}, {world_size}")
    if caps is None or not caps.capped:
        return _fixed_steps(order, batch_size, world_size)
    batches = _packed_batches(order, batch_size, caps)
    steps = []
    for k in range(0, len(batches), world_size):
        group = batches[k:k + world_size]
        steps.append(group + [[] for _ in range(world_size - len(group))])
    return steps


def steps_per_epoch(num_items: int, batch_size: int, world_size: int, caps: SizeCaps | None, seed: int) -> int:
    """Optimiser steps of an epoch (for the learning-rate schedule); with caps, those of epoch 1."""
    if caps is None or not caps.capped:
        return -(-num_items // (batch_size * world_size))
    return len(plan_epoch(epoch_order(num_items, seed, 1, caps.oversize()), batch_size, world_size, caps))
