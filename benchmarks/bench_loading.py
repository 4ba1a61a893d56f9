"""Benchmark training-time data loading: our HDF5 shards vs per-sample ATOM3D LMDB reading.

Usage (the numbers in docs/performance.md come from)::

    python benchmarks/bench_loading.py --task psr --records 400 --work /tmp/a3d_bench
    python benchmarks/bench_loading.py --task res --records 50 --work /tmp/a3d_bench

Both pipelines iterate every graph of the train split once (one epoch) through the same
``torch_geometric.loader.DataLoader(batch_size=16, shuffle=True, num_workers=0)``:

(a) ``eqgat.data.ShardDataset(manifest, "train")`` over shards built beforehand with
    ``preprocess.task_shards.build_task_shards`` (serial, in a subprocess; not timed);
(b) ``atom3d.datasets.LMDBDataset`` over the same LMDB records, building each graph when the
    sample is requested: hydrogen removal, ``preprocess.elements.element_index``,
    ``preprocess.neighbors.radius_graph`` (cutoff 4.5 A), ``torch_geometric.data.Data``
    (RES: one sample per environment, so each sample decodes its whole record, cuts the
    environment out and finds the central C-alpha).

Before timing, both are warmed up (a few batches: Numba JIT, file handles, page cache), and
the first graphs of (a) and (b) are checked to be the same graph (same atoms, same edges).
torch and Numba run with ``--threads`` threads (default 1, what DataLoader worker processes
use): on a busy 2-core machine, PyG's collation of 16 PSR graphs (~560k edges) took
0.5-0.7 s with 2 torch threads and 0.02 s with 1 (OpenMP threads waiting for a descheduled
sibling), which would swamp (a).
The two are timed alternately ``--repeats`` times in this process; the table gives the
median epoch time of each and their ratio.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402

from preprocess.elements import HYDROGEN_SYMBOLS, RESIDUE_INDEX, element_index  # noqa: E402
from preprocess.neighbors import radius_graph  # noqa: E402


def _scores(value) -> dict:
    """atom3d leaves a pandas Series as a ``{name, index, data}`` dict."""
    if isinstance(value, dict) and "index" in value and "data" in value:
        return dict(zip(value["index"], value["data"]))
    return dict(value)


def _heavy(atoms: pd.DataFrame) -> pd.DataFrame:
    return atoms[~atoms["element"].astype(str).str.strip().str.upper().isin(HYDROGEN_SYMBOLS)]


class Atom3dPSRGraphs(Dataset):
    """(b) for PSR/RSR: atom3d's LMDBDataset, one graph built per sample."""

    def __init__(self, lmdb_path, cutoff=4.5, label="gdt_ts"):
        from atom3d.datasets import LMDBDataset

        self.ds = LMDBDataset(str(lmdb_path))
        self.cutoff, self.label = cutoff, label

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        from torch_geometric.data import Data

        item = self.ds[i]
        atoms = _heavy(item["atoms"])
        pos = atoms[["x", "y", "z"]].to_numpy(dtype=np.float32)
        z = element_index(atoms["element"]).astype(np.int64)
        edge_index = radius_graph(pos, self.cutoff)
        y = torch.tensor([[float(_scores(item["scores"])[self.label])]], dtype=torch.float32)
        return Data(z=torch.from_numpy(z), pos=torch.from_numpy(pos), edge_index=torch.from_numpy(edge_index),
                    y=y, id=str(item["id"]), num_nodes=len(z))


class Atom3dRESGraphs(Dataset):
    """(b) for RES: one sample per (record, environment); each sample decodes its record."""

    def __init__(self, lmdb_path, record_indices, cutoff=4.5):
        from atom3d.datasets import LMDBDataset

        self.ds = LMDBDataset(str(lmdb_path))
        self.cutoff = cutoff
        self.index = []
        for r in record_indices:  # environment counts: one pass over the records (not timed)
            n = len(self.ds[int(r)]["subunit_indices"])
            self.index += [(int(r), k) for k in range(n)]

    def __len__(self):
        return len(self.index)

    def __getitem__(self, i):
        from torch_geometric.data import Data

        r, k = self.index[i]
        item = self.ds[r]
        env = item["atoms"].iloc[list(item["subunit_indices"][k])]
        env = _heavy(env)
        label = item["labels"].iloc[k]
        chain, resnum, resname = str(label["subunit"]).rsplit("_", 2)
        is_ca = ((env["name"].astype(str).str.strip() == "CA") & (env["element"] == "C")
                 & (env["chain"].astype(str) == chain) & (env["residue"].astype(str) == resnum)).to_numpy()
        pos = env[["x", "y", "z"]].to_numpy(dtype=np.float32)
        z = element_index(env["element"]).astype(np.int64)
        edge_index = radius_graph(pos, self.cutoff)
        return Data(z=torch.from_numpy(z), pos=torch.from_numpy(pos), edge_index=torch.from_numpy(edge_index),
                    y=torch.tensor([RESIDUE_INDEX[resname]], dtype=torch.long), id=f"{item['id']}/{label['subunit']}",
                    center_index=torch.tensor(int(np.flatnonzero(is_ca)[0])), num_nodes=len(z))


def epoch(loader, limit=None) -> tuple[float, int, int, int]:
    """Seconds, graphs, nodes, edges of one pass (``limit`` batches at most)."""
    g = n = e = 0
    t0 = time.perf_counter()
    for b, batch in enumerate(loader):
        if limit is not None and b >= limit:
            break
        g += batch.num_graphs
        n += batch.num_nodes
        e += batch.edge_index.shape[1]
    return time.perf_counter() - t0, g, n, e


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", choices=("psr", "res"), default="psr")
    ap.add_argument("--records", type=int, default=400, help="synthetic records (all splits)")
    ap.add_argument("--envs", type=int, default=40, help="RES environments per record")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "a3d_bench"))
    ap.add_argument("--shard-size", type=int, default=None, help="default: 50 (PSR), 8 records (RES)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--cutoff", type=float, default=4.5)
    ap.add_argument("--repeats", type=int, default=3, help="alternating timed epochs of each")
    ap.add_argument("--warmup-batches", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch and numba threads (default 1, as in DataLoader worker processes)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)

    import numba
    import torch_geometric

    numba.set_num_threads(min(a.threads, numba.config.NUMBA_NUM_THREADS))
    from torch_geometric.loader import DataLoader

    from bench_atom3d_shards import ensure_data, run_build
    from eqgat.data import ShardDataset
    from eqgat.tasks import get_task

    print(f"# python {platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"numba threads {numba.get_num_threads()}, "
          f"torch_geometric {torch_geometric.__version__}, numba {numba.__version__}, cpus {os.cpu_count()}, "
          f"load {os.getloadavg()[0]:.2f}", flush=True)
    work = Path(a.work)
    kw = {"envs": a.envs} if a.task == "res" else {}
    src = ensure_data(work, a.task, a.records, a.seed, **kw)
    shard_size = a.shard_size or (50 if a.task == "psr" else 8)
    out = work / f"loading-shards-{src.name}-ss{shard_size}"
    if not (out / "manifest.json").exists():
        # in a subprocess: our reader caches its LMDB handles per process, and atom3d's
        # LMDBDataset refuses to open an environment already open in this process
        r = run_build(a.task, src, out, a.cutoff, shard_size, 1)
        print(f"# built shards in {r['wall_s']:.1f} s: {out}", flush=True)

    shards = ShardDataset(out / "manifest.json", "train")
    if a.task == "psr":
        base = Atom3dPSRGraphs(src / "split-by-year" / "data" / "train", a.cutoff)
    else:
        lmdb, idx = get_task("res").source.sources(src)
        base = Atom3dRESGraphs(lmdb, idx["train"], a.cutoff)
    assert len(shards) == len(base), (len(shards), len(base))

    # same graphs? (unshuffled order: shards keep the LMDB / index-file order)
    for i in list(range(3)) + [len(base) - 1]:
        ga, gb = shards[i], base[i]
        same = (torch.equal(ga.z, gb.z) and torch.allclose(ga.pos, gb.pos) and torch.equal(ga.edge_index, gb.edge_index)
                and torch.allclose(ga.y.float(), gb.y.float()))
        if a.task == "res":
            same = same and int(ga.center_index) == int(gb.center_index)
        if not same:
            raise SystemExit(f"graph {i} differs between shards ({ga}) and atom3d ({gb})")
    print(f"# graphs 0-2 and {len(base) - 1} identical in both pipelines (z, pos, edge_index, y)", flush=True)

    gen = torch.Generator().manual_seed(a.seed)
    loaders = {
        "(a) shards: ShardDataset": DataLoader(shards, batch_size=a.batch_size, shuffle=True, generator=gen),
        "(b) atom3d LMDBDataset + per-sample graph": DataLoader(base, batch_size=a.batch_size, shuffle=True, generator=gen),
    }
    for loader in loaders.values():  # warm-up
        epoch(loader, a.warmup_batches)
    times = {k: [] for k in loaders}
    stats = {}
    for _ in range(a.repeats):
        for k, loader in loaders.items():
            t, g, n, e = epoch(loader)
            times[k].append(t)
            stats[k] = (g, n, e)
            print(f"# {k}: {t:.2f} s, {g / t:.1f} samples/s, load {os.getloadavg()[0]:.2f}", flush=True)

    g, n, e = next(iter(stats.values()))
    print(f"\n## Loading one epoch of {a.task.upper()} train: {g} graphs, {n / g:.0f} atoms and {e / g:.0f} edges per "
          f"graph, batch {a.batch_size}, median of {a.repeats} epochs\n")
    print("| pipeline | epoch s (median) | min s | samples/s | atoms/s | edges/s |")
    print("|---|---|---|---|---|---|")
    med = {}
    for k in loaders:
        med[k] = statistics.median(times[k])
        print(f"| {k} | {med[k]:.2f} | {min(times[k]):.2f} | {g / med[k]:.1f} | {n / med[k]:,.0f} | {e / med[k]:,.0f} |")
    ka, kb = list(loaders)
    print(f"\nratio (a)/(b) samples/s: {med[kb] / med[ka]:.1f}x (target >= 20x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
