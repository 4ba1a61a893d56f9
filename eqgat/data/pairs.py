"""Residue pairs drawn from protein complexes (PPI), as graphs for the pair readout.

The PPI shards hold each complex once (:mod:`preprocess.readers.ppi`): both partners' heavy
atoms, the C-alpha of every usable residue, and the listed neighbour pairs (the positives).
Which pairs a model sees is decided here, when the data are loaded:

* per complex, at most ``max_positives`` positives (ATOM3D's example and the authors' script
  take 10; ``None`` = all), drawn without replacement, and ``round(k * negatives_per_positive)``
  negatives drawn without replacement from the residue pairs that are not listed neighbours
  (fewer when the complex has fewer);
* training pairs are drawn from ``numpy.random.default_rng([seed, epoch, complex])``: anew every
  epoch (``resample``), identical for the same (seed, epoch), independent of shard layout,
  workers and load order; with ``resample: false`` from epoch 0's generator every epoch;
* validation and test pairs are drawn once from ``eval_seed`` (epoch 0): the same pairs for
  every epoch, run, training seed and model, so that runs are compared on the same pairs.

A drawn pair (r0, r1) becomes one graph: the heavy atoms of partner 0 within ``radius`` (30 Å,
inclusive) of r0's C-alpha, then those of partner 1 within ``radius`` of r1's C-alpha, with
radius-graph edges (the shards' cutoff) inside each part only; ``center_index0`` and
``center_index1`` are the two C-alphas, ``y`` = 1 for a listed neighbour pair, else 0.
"""
from __future__ import annotations

import bisect
from collections import OrderedDict
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch.utils.data import Dataset

from preprocess.shards import ShardReader, read_manifest

from .shard_dataset import check_split

__all__ = ["PairDataset", "PairSampling", "draw_pairs", "num_drawn"]

#: complexes with at most this many candidate pairs are enumerated, larger ones rejection-sampled
ENUMERATE_BELOW = 1 << 16


@dataclass(frozen=True)
class PairSampling:
    """How residue pairs are drawn from each complex (the ``pairs`` section of a PPI config)."""

    max_positives: int | None = 10
    negatives_per_positive: float = 1.0
    resample: bool = True
    eval_seed: int = 0
    radius: float = 30.0

    @classmethod
    def from_section(cls, section: Mapping[str, Any] | None) -> PairSampling:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(section or {}) - known)
        if unknown:
            raise ValueError(f"unknown pair sampling option(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(section or {}))


def num_drawn(num_positives: int, n0: int, n1: int, sampling: PairSampling) -> tuple[int, int]:
    """(positives, negatives) drawn from a complex: a function of its sizes only."""
    k = num_positives if sampling.max_positives is None else min(num_positives, sampling.max_positives)
    wanted = int(round(k * sampling.negatives_per_positive))
    return k, min(wanted, n0 * n1 - num_positives)


def _negatives(total: int, excluded: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` distinct integers of [0, total) not in `excluded` (sorted, unique), drawn
    without replacement."""
    if count <= 0:
        return np.zeros(0, np.int64)
    if total <= ENUMERATE_BELOW or total - len(excluded) <= 4 * count:
        candidates = np.setdiff1d(np.arange(total, dtype=np.int64), excluded, assume_unique=True)
        return rng.choice(candidates, size=count, replace=False)
    chosen: list[int] = []
    taken = set(excluded.tolist())
    while len(chosen) < count:  # candidates are plentiful here: few rounds
        for value in rng.integers(0, total, size=2 * (count - len(chosen))).tolist():
            if value not in taken:
                taken.add(value)
                chosen.append(value)
                if len(chosen) == count:
                    break
    return np.array(chosen, dtype=np.int64)


def draw_pairs(positives: np.ndarray, n0: int, n1: int, sampling: PairSampling,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Residue pairs [K, 2] (positions into the partners' residue lists) and their labels [K]:
    the drawn positives first (in table order), then the negatives (never a listed pair)."""
    listed = np.asarray(positives, dtype=np.int64).reshape(-1, 2)
    k, n_neg = num_drawn(len(listed), n0, n1, sampling)
    chosen = listed if k == len(listed) else listed[np.sort(rng.choice(len(listed), size=k, replace=False))]
    excluded = np.unique(listed[:, 0] * n1 + listed[:, 1])
    flat = _negatives(n0 * n1, excluded, n_neg, rng)
    negatives = np.stack([flat // n1, flat % n1], axis=1) if len(flat) else np.zeros((0, 2), np.int64)
    pairs = np.concatenate([chosen, negatives]).astype(np.int64)
    labels = np.concatenate([np.ones(len(chosen), np.int64), np.zeros(len(negatives), np.int64)])
    return pairs, labels


def _within(pos: np.ndarray, centre: int, radius: float) -> tuple[np.ndarray, int]:
    """Rows of `pos` within `radius` of row `centre` (inclusive, float32 as the shards), and
    the centre's position among them."""
    d2 = ((pos - pos[centre]) ** 2).sum(axis=1)
    rows = np.flatnonzero(d2 <= np.float32(radius) ** 2)
    return rows, int(np.searchsorted(rows, centre))


class PairDataset(Dataset):
    """The residue pairs of one split of PPI complex shards (see the module docstring).

    ``PairDataset(manifest_path, split, sampling, seed)``; call ``set_epoch(e)`` before each
    training epoch (the evaluation splits ignore it). Items are ``torch_geometric.data.Data``
    with ``z``, ``pos``, ``edge_index``, ``y`` (long [1]), ``center_index0``,
    ``center_index1`` and ``id`` = ``"<complex id>/<chain:residue>-<chain:residue>"``.
    """

    def __init__(self, manifest_path, split: str, sampling: PairSampling, seed: int, cache_size: int = 64,
                 verify: str = "cheap"):
        from preprocess.neighbors import DEFAULT_MAX_DEGREE, optional_limit, radius_graph_batch

        self._radius_graph = radius_graph_batch
        self.manifest = read_manifest(manifest_path)
        if split not in self.manifest["splits"]:
            raise KeyError(f"split {split!r} not in {manifest_path}")
        check_split(self.manifest, split, verify)
        self.split, self.sampling, self.seed = split, sampling, int(seed)
        attrs = self.manifest.get("attrs", {})
        self.cutoff = float(attrs["cutoff"])
        self.max_neighbors = optional_limit(attrs.get("max_neighbors"))
        # the build left out complexes over the limit; shards built before it had one get the default
        self.max_degree = optional_limit(attrs.get("max_degree", DEFAULT_MAX_DEGREE))
        root = Path(self.manifest["root"])
        self._readers = [ShardReader(root / e["path"]) for e in self.manifest["splits"][split]["shards"]]
        sizes = []  # (shard, index in shard, positives, residues of partner 0, of partner 1)
        for s, reader in enumerate(self._readers):
            with reader:
                lengths = {name: np.diff(reader.ragged_ptr(name)) for name in ("positives", "ca0", "ca1")}
            sizes += [(s, j, int(p), int(a), int(b)) for j, (p, a, b) in
                      enumerate(zip(lengths["positives"], lengths["ca0"], lengths["ca1"]))]
        self._complexes = sizes
        self._offsets = np.concatenate([[0], np.cumsum([sum(num_drawn(p, a, b, sampling)) for _, _, p, a, b in sizes])]).tolist()
        self.epoch = 0
        self._cache: OrderedDict = OrderedDict()
        self._cache_size = cache_size

    @property
    def evaluation(self) -> bool:
        return self.split != "train"

    def set_epoch(self, epoch: int) -> None:
        """Training pairs of this epoch (a no-op for fixed pairs)."""
        self.epoch = int(epoch)

    @property
    def draw_epoch(self) -> int:
        """The epoch whose pairs are served: the current one for resampled training pairs, else 0."""
        return self.epoch if (self.sampling.resample and not self.evaluation) else 0

    def generator(self, complex_index: int) -> np.random.Generator:
        """The generator a complex's pairs are drawn from in the current epoch."""
        seed = self.sampling.eval_seed if self.evaluation else self.seed
        return np.random.default_rng([seed, self.draw_epoch, complex_index])

    def __len__(self) -> int:
        return int(self._offsets[-1])

    @property
    def num_complexes(self) -> int:
        return len(self._complexes)

    def pairs_of(self, complex_index: int) -> tuple[np.ndarray, np.ndarray]:
        """The drawn residue pairs [K, 2] and labels [K] of one complex in the current epoch."""
        key = (complex_index, self.draw_epoch)
        got = self._cache.get(key)
        if got is None:
            s, j, _, n0, n1 = self._complexes[complex_index]
            got = draw_pairs(self._readers[s].read_ragged("positives", j), n0, n1, self.sampling,
                             self.generator(complex_index))
            self._cache[key] = got
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return got

    def labels(self) -> np.ndarray:
        """The labels of every pair of an epoch (1 listed, 0 not; the counts are the same every epoch)."""
        counts = [num_drawn(p, a, b, self.sampling) for _, _, p, a, b in self._complexes]
        return np.concatenate([np.r_[np.ones(k, np.int64), np.zeros(m, np.int64)] for k, m in counts] or [np.zeros(0, np.int64)])

    def locate(self, idx: int) -> tuple[int, int]:
        """(complex, pair within it) of item `idx`."""
        if not 0 <= idx < len(self):
            raise IndexError(f"pair {idx} out of range for {len(self)} pairs ({self.split})")
        g = bisect.bisect_right(self._offsets, idx) - 1
        return g, idx - self._offsets[g]

    def __getitem__(self, idx: int):
        from torch_geometric.data import Data

        g, k = self.locate(int(idx))
        pairs, labels = self.pairs_of(g)
        s, j, _, _, _ = self._complexes[g]
        reader = self._readers[s]
        graph = reader.read(j, ragged=False)
        n0 = int(graph["num_atoms0"])
        r0, r1 = (int(v) for v in pairs[k])
        ca0 = int(reader.read_ragged("ca0", j)[r0])
        ca1 = int(reader.read_ragged("ca1", j)[r1]) - n0
        pos0, pos1 = graph["pos"][:n0], graph["pos"][n0:]
        rows0, c0 = _within(pos0, ca0, self.sampling.radius)
        rows1, c1 = _within(pos1, ca1, self.sampling.radius)
        pos = np.concatenate([pos0[rows0], pos1[rows1]]).astype(np.float32)
        z = np.concatenate([graph["z"][:n0][rows0], graph["z"][n0:][rows1]]).astype(np.int64)
        ptr = np.array([0, len(rows0), len(rows0) + len(rows1)], np.int64)
        res0, res1 = reader.read_ragged("res0", j)[r0], reader.read_ragged("res1", j)[r1]
        edge_index, edge_ptr = self._pair_edges(pos, ptr, graph["id"], f"{res0}-{res1}", reader.path)
        edge_index = edge_index.astype(np.int64)
        edge_index[:, edge_ptr[1]:] += len(rows0)  # part 1's local indices follow part 0's atoms
        data = Data(z=torch.from_numpy(z), pos=torch.from_numpy(pos), edge_index=torch.from_numpy(edge_index),
                    y=torch.tensor([int(labels[k])], dtype=torch.long), id=f"{graph['id']}/{res0}-{res1}",
                    center_index0=torch.tensor(c0, dtype=torch.long),
                    center_index1=torch.tensor(len(rows0) + c1, dtype=torch.long))
        data.num_nodes = len(z)
        return data

    def _pair_edges(self, pos: np.ndarray, ptr: np.ndarray, complex_id: str, pair: str,
                    shard: str) -> tuple[np.ndarray, np.ndarray]:
        """The radius graphs of a pair's two neighbourhoods; a neighbourhood with an atom of more
        than ``max_degree`` neighbours is an error naming the complex (the build leaves such
        complexes out: this is reached only with shards built without the limit)."""
        from preprocess.build import DenseGraphError, dense_graph_message
        from preprocess.neighbors import NeighborLimitError

        try:
            return self._radius_graph(pos, ptr, self.cutoff, self.max_neighbors, max_degree=self.max_degree)
        except NeighborLimitError as exc:
            first = exc.excess[0]
            raise DenseGraphError(f"PPI pair {pair} of partner {first.cloud}'s neighbourhood in {shard}: "
                                  + dense_graph_message(complex_id, first, self.cutoff, exc.limit)) from None

    def close(self) -> None:
        for r in self._readers:
            r.close()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(split={self.split!r}, complexes={self.num_complexes}, pairs={len(self)}, "
                f"seed={self.seed}, epoch={self.epoch})")
