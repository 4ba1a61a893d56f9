"""PyTorch dataset over the HDF5 graph shards listed in a manifest (see docs/shards.md)."""

from __future__ import annotations

import bisect
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from preprocess.shards import ShardReader, read_manifest, verify_split

__all__ = ["VERIFY_LEVELS", "ShardDataset", "check_split"]

#: how much opening a split checks of its shards: nothing; presence, size, format version,
#: counts and build settings (metadata only); all that and each file's SHA-256
VERIFY_LEVELS = ("none", "cheap", "full")


def check_split(manifest: dict, split: str, verify: str) -> None:
    """Verify the shards of one split of a loaded manifest at level `verify` (see
    ``VERIFY_LEVELS``); ``ShardIntegrityError`` names each file and what is wrong."""
    if verify not in VERIFY_LEVELS:
        raise ValueError(f"verify must be one of {VERIFY_LEVELS}, got {verify!r}")
    if verify != "none":
        verify_split(manifest, split, full=verify == "full")


class ShardDataset(Dataset):
    """Random access over every graph of one split of a shard directory.

    ``ShardDataset(manifest_path, split)``; item ``i`` is a ``torch_geometric.data.Data``
    with ``z`` long [N], ``pos`` float32 [N,3], ``edge_index`` long [2,E] (local), ``y``
    float32 [1,T] (regression; batches stack to [B,T]) or long [1] (classes), ``id`` str, and
    each per-graph column of the shard: integers (e.g. ``center_index``) as long scalars,
    strings (e.g. ``target``) as str (a list in a batch). Ragged columns are not loaded.
    Note: PyG's batching adds the node offset to attributes whose name contains "index",
    so in a batch ``center_index`` becomes an index into the batched node tensor.

    Graph order: shards in manifest order, graphs in file order. Files are opened lazily,
    one handle per shard per process (fork-safe, so DataLoader workers open their own); at
    most ``max_open_files`` handles stay open per process (least recently used are closed).

    Opening checks every shard of the split against the manifest (``verify="cheap"``: present,
    of the recorded size, format version, graph counts, cutoff and other build settings, from
    the files' metadata; ``"full"`` adds each file's SHA-256; ``"none"`` skips it): a shard that
    disagrees is a ``ShardIntegrityError`` naming it, never a silent loss of graphs.
    """

    def __init__(self, manifest_path, split: str, transform=None, max_open_files: int = 256,
                 verify: str = "cheap"):
        self.manifest_path = str(manifest_path)
        self.manifest = read_manifest(manifest_path)
        if split not in self.manifest["splits"]:
            raise KeyError(f"split {split!r} not in {self.manifest_path} "
                           f"(has {sorted(self.manifest['splits'])})")
        check_split(self.manifest, split, verify)
        self.split = split
        self.transform = transform
        root = Path(self.manifest["root"])
        entries = self.manifest["splits"][split]["shards"]
        self.shard_paths = [str(root / e["path"]) for e in entries]
        counts = [int(e["num_graphs"]) for e in entries]
        self._offsets = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).tolist()
        self._readers = [ShardReader(p) for p in self.shard_paths]
        self.max_open_files = max(1, int(max_open_files))
        self._lru: OrderedDict = OrderedDict()

    @property
    def attrs(self) -> dict:
        """Dataset attributes from the manifest (task, cutoff, max_neighbors, source, ...)."""
        a = dict(self.manifest.get("attrs", {}))
        a.setdefault("task", self.manifest["task"])
        return a

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def locate(self, idx: int) -> tuple[int, int]:
        """(shard number, index within that shard) of global index ``idx``."""
        n = len(self)
        if idx < 0:
            idx += n
        if not 0 <= idx < n:
            raise IndexError(f"index {idx} out of range for {n} graphs ({self.split})")
        s = bisect.bisect_right(self._offsets, idx) - 1
        return s, idx - self._offsets[s]

    def get_raw(self, idx: int) -> dict:
        s, j = self.locate(int(idx))
        out = self._readers[s].read(j, ragged=False)
        lru = self._lru
        lru[s] = None
        lru.move_to_end(s)
        while len(lru) > self.max_open_files:
            old, _ = lru.popitem(last=False)
            self._readers[old].close()
        return out

    def __getitem__(self, idx):
        from torch_geometric.data import Data

        g = self.get_raw(int(idx))
        y = g["y"]
        if np.ndim(y) == 0:  # classification label
            y_t = torch.tensor([int(y)], dtype=torch.long)
        else:
            y_t = torch.from_numpy(np.array(y, dtype=np.float32)).view(1, -1)
        data = Data(z=torch.from_numpy(g["z"].astype(np.int64)),
                    pos=torch.from_numpy(np.ascontiguousarray(g["pos"], dtype=np.float32)),
                    edge_index=torch.from_numpy(g["edge_index"]), y=y_t, id=g["id"])
        data.num_nodes = int(g["z"].shape[0])
        for k, v in g.items():
            if k not in ("pos", "z", "edge_index", "y", "id"):
                data[k] = v if isinstance(v, str) else torch.tensor(int(v), dtype=torch.long)
        if self.transform is not None:
            data = self.transform(data)
        return data

    def graph_sizes(self) -> tuple[np.ndarray, np.ndarray]:
        """Atoms and directed edges of every graph in dataset order (from the shards' offsets)."""
        atoms = [np.diff(reader.pointers("node_ptr")) for reader in self._readers]
        edges = [np.diff(reader.pointers("edge_ptr")) for reader in self._readers]
        empty = np.zeros(0, np.int64)
        return (np.concatenate(atoms) if atoms else empty), (np.concatenate(edges) if edges else empty)

    def graph_id(self, idx: int) -> str:
        """The id of graph ``idx`` (without reading the graph)."""
        s, j = self.locate(int(idx))
        return self._readers[s].graph_id(j)

    def labels(self) -> np.ndarray:
        """Every graph's label in dataset order (what ``y`` holds; shards' labels are read once)."""
        parts = [reader.labels() for reader in self._readers]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def close(self) -> None:
        for r in self._readers:
            r.close()
        self._lru.clear()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.manifest_path!r}, split={self.split!r}, "
                f"graphs={len(self)}, shards={len(self.shard_paths)})")
