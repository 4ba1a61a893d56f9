"""What the default corruption checks of the graph shards cost: writing, opening and reading.

Usage (the numbers in docs/performance.md and docs/shards.md come from)::

    PYTHONPATH=<checkout> python benchmarks/bench_shard_checks.py --work /tmp/shard_bench

Run it once with the checkout before the checks (shard format 2: contiguous datasets, no
checksum) and once after (format 3: Fletcher32 per chunk, the structural check when a shard is
opened, the index-range check per graph read); `PYTHONPATH` picks the code. The graphs are
Triangle-sized by default (100 nodes, 4,500 local edges each, random but valid; ``--nodes`` and
``--edges`` for others), so no neighbour search runs. Timed: writing the shards; opening a split (the manifest check and every shard's
index arrays); ``ShardReader.read`` of random graphs (median); one epoch of ``ShardDataset``
through PyG's ``DataLoader`` (batch 64, shuffled, no workers), the median of ``--repeats``.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path

import numpy as np


def make_block(rng: np.random.Generator, graphs: int, nodes: int, edges: int):
    from preprocess.shards import GraphBlock

    n = np.full(graphs, nodes)
    node_ptr = np.concatenate([[0], np.cumsum(n)])
    edge_ptr = np.concatenate([[0], np.cumsum(np.full(graphs, edges))])
    edge_index = rng.integers(0, nodes, size=(2, graphs * edges))
    return GraphBlock(node_ptr=node_ptr, edge_ptr=edge_ptr, pos=rng.normal(size=(graphs * nodes, 3)) * 5,
                      z=rng.integers(0, 2, size=graphs * nodes), edge_index=edge_index,
                      y=rng.normal(size=(graphs, 3)).astype(np.float32),
                      ids=[f"triangle-{k:06d}" for k in range(graphs)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="/tmp/shard_bench")
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--graphs", type=int, default=500, help="graphs per shard")
    ap.add_argument("--nodes", type=int, default=100, help="nodes per graph (PSR-sized: 1513)")
    ap.add_argument("--edges", type=int, default=4500, help="edges per graph (PSR-sized: 33038)")
    ap.add_argument("--reads", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--chunk-bytes", type=int, default=None, help="format 3: bytes per chunk (default: the code's)")
    args = ap.parse_args()

    import torch
    from torch_geometric.loader import DataLoader

    import preprocess.shards as shards
    from eqgat.data import ShardDataset

    torch.set_num_threads(1)
    if args.chunk_bytes and hasattr(shards, "CHUNK_BYTES"):
        shards.CHUNK_BYTES = args.chunk_bytes
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    rng = np.random.default_rng(0)
    attrs = {"task": "triangle", "cutoff": 10.0, "max_neighbors": -1, "max_degree": 256, "source": "bench",
             "z_classes": 2}
    blocks = [make_block(rng, args.graphs, args.nodes, args.edges) for _ in range(args.shards)]
    start = time.perf_counter()
    entries = []
    for k, block in enumerate(blocks):
        path = work / "train" / f"shard-{k:05d}.h5"
        shards.write_shard(path, block, attrs)
        entries.append({"split": "train", "path": str(path), "num_graphs": block.num_graphs,
                        "num_nodes": block.num_nodes, "num_edges": block.num_edges, "size": path.stat().st_size})
    write_s = time.perf_counter() - start
    shards.write_manifest(work / "manifest.json", entries, attrs=attrs)
    size = sum(e["size"] for e in entries)

    start = time.perf_counter()
    dataset = ShardDataset(work / "manifest.json", "train")
    for k in range(args.shards):  # open every shard (index arrays read and checked)
        dataset.get_raw(k * args.graphs)
    open_s = time.perf_counter() - start

    reader = shards.ShardReader(work / "train" / "shard-00000.h5")
    order = rng.integers(0, args.graphs, size=args.reads)
    for i in order[:200]:
        reader.read(int(i))
    times = []
    for i in order:
        t = time.perf_counter()
        reader.read(int(i))
        times.append(time.perf_counter() - t)
    read_us = statistics.median(times) * 1e6

    epochs = []
    for r in range(args.repeats + 1):
        loader = DataLoader(dataset, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(r))
        t = time.perf_counter()
        for _ in loader:
            pass
        if r:  # the first pass warms the page cache and the handles
            epochs.append(time.perf_counter() - t)
    chunks = f", chunks of {shards.CHUNK_BYTES} bytes" if hasattr(shards, "CHUNK_BYTES") else ""
    print(f"shard format {shards.FORMAT_VERSION}{chunks}: {args.shards} shards x {args.graphs} graphs of {args.nodes} nodes, "
          f"{args.edges} edges; {size / 1e6:.1f} MB")
    print(f"write {write_s:.2f} s; open split {open_s * 1e3:.1f} ms; ShardReader.read median {read_us:.0f} us; "
          f"epoch (batch 64) median {statistics.median(epochs):.2f} s "
          f"({statistics.median(epochs) / (args.shards * args.graphs) * 1e6:.0f} us/graph)")


if __name__ == "__main__":
    main()
