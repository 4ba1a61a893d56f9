"""Batches by size and the steps of an epoch across ranks (eqgat/train/batches.py)."""
from __future__ import annotations

import numpy as np
import pytest

from eqgat.train.batches import SizeCaps, epoch_order, plan_epoch, steps_per_epoch


def sizes(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    atoms = rng.integers(10, 400, n)
    return atoms, atoms * rng.integers(5, 30, n)


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("caps", [(1000, None), (None, 6000), (800, 9000)])
def test_packed_steps(world, caps):
    atoms, edges = sizes(203)
    cap = SizeCaps(atoms, edges, *caps)
    keep = np.ones(len(atoms), bool)
    keep[cap.oversize()] = False
    order = [i for i in epoch_order(len(atoms), 5, 2) if keep[i]]
    steps = plan_epoch(order, 6, world, cap)
    assert all(len(step) == world for step in steps)  # every rank takes every step
    flat = [i for step in steps for batch in step for i in batch]
    assert flat == order  # every kept graph once, in the epoch order
    for step in steps:
        assert step[0]  # rank 0 never idles (a stand-in needs a graph of the step)
        for batch in step:
            assert len(batch) <= 6
            if caps[0] is not None:
                assert atoms[batch].sum() <= caps[0]
            if caps[1] is not None:
                assert edges[batch].sum() <= caps[1]
    assert all(all(step) for step in steps[:-1])  # only the last step may leave ranks empty
    assert plan_epoch(order, 6, world, cap) == steps  # the same (seed, epoch), the same packing
    k = len(steps) // 2
    resumed_order = [i for step in steps[k:] for b in step for i in b]
    assert plan_epoch(order, 6, world, cap)[k:] == steps[k:] and resumed_order == order[len(order) - len(resumed_order):]
    assert steps_per_epoch(len(atoms), 6, world, cap, 5) == len(plan_epoch(
        [i for i in epoch_order(len(atoms), 5, 1) if keep[i]], 6, world, cap))


def test_packing_fills_batches_greedily():
    atoms = np.array([5, 5, 5, 9, 1, 1])
    cap = SizeCaps(atoms, atoms * 10, max_atoms=10)
    assert plan_epoch(list(range(6)), 8, 1, cap) == [[[0, 1]], [[2]], [[3, 4]], [[5]]]
    assert plan_epoch(list(range(6)), 8, 2, cap) == [[[0, 1], [2]], [[3, 4], [5]]]
    assert plan_epoch(list(range(6)), 8, 3, cap) == [[[0, 1], [2], [3, 4]], [[5], [], []]]


def test_oversize_graphs():
    atoms = np.array([5, 50, 5])
    assert SizeCaps(atoms, atoms, max_atoms=10).oversize().tolist() == [1]
    assert SizeCaps(atoms, atoms * 3, max_edges=100).oversize().tolist() == [1]
    assert SizeCaps(atoms, atoms).oversize().tolist() == []


@pytest.mark.parametrize("n,world", [(10, 1), (10, 2), (7, 2), (9, 4), (3, 4)])
def test_fixed_batches(n, world):
    """One rank: the DataLoader's chunks of batch_size; N ranks: global batches of
    batch_size * N, split as evenly as possible (ranks differ by at most one graph)."""
    order = epoch_order(n, 0, 1)
    steps = plan_epoch(order, 2, world)
    if world == 1:
        assert steps == [[order[i:i + 2]] for i in range(0, n, 2)]
    for k, step in enumerate(steps):
        assert len(step) == world
        assert [i for b in step for i in b] == order[k * 2 * world:(k + 1) * 2 * world]
        assert max(map(len, step)) - min(map(len, step)) <= 1 and len(step[0]) >= 1
    assert len(steps) == steps_per_epoch(n, 2, world, None, 0)


def test_epoch_order_depends_on_seed_and_epoch_only():
    assert epoch_order(50, 1, 2) == epoch_order(50, 1, 2)
    assert epoch_order(50, 1, 2) != epoch_order(50, 1, 3) and epoch_order(50, 1, 2) != epoch_order(50, 2, 2)
    assert sorted(epoch_order(50, 1, 2)) == list(range(50))


def test_graph_sizes_and_the_oversize_setting(tiny_workflow):
    """Sizes from the shards' offsets equal the graphs read one by one; a graph over the cap is
    an error naming it, or left out and counted."""
    from eqgat.data.shard_dataset import ShardDataset
    from eqgat.train.batches import OversizeGraphs
    from eqgat.train.loop import TrainSettings, size_caps

    workdir, _ = tiny_workflow
    ds = ShardDataset(workdir / "results/triangle/graphs/manifest.json", "train")
    atoms, edges = ds.graph_sizes()
    assert atoms.tolist() == [ds[i].num_nodes for i in range(len(ds))]
    assert edges.tolist() == [ds[i].edge_index.shape[1] for i in range(len(ds))]
    cap = int(np.sort(edges)[-3])  # the two largest graphs are over it (ties aside)
    over = np.flatnonzero(edges > cap)
    strict = TrainSettings(epochs=1, batch_size=4, max_edges=cap)
    with pytest.raises(OversizeGraphs, match=repr(ds.graph_id(int(over[0])))):
        size_caps(ds, strict, "triangle")
    caps, left_out = size_caps(ds, TrainSettings(epochs=1, batch_size=4, max_edges=cap, oversize="skip"), "triangle")
    assert left_out.tolist() == over.tolist() and caps.max_edges == cap
    with pytest.raises(ValueError, match="oversize"):
        TrainSettings.from_section({"epochs": 1, "batch_size": 4, "oversize": "truncate"})
