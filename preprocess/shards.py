"""HDF5 graph shards: many graphs per file, CSR offsets, random access (format version 3).

See docs/shards.md for the full specification. In short, one shard file holds ``G`` graphs as

=================  ===========================  ==========================================
dataset            dtype / shape                meaning
=================  ===========================  ==========================================
``node_ptr``       int64 [G+1]                  nodes of graph g: ``node_ptr[g]:node_ptr[g+1]``
``edge_ptr``       int64 [G+1]                  edges of graph g: ``edge_ptr[g]:edge_ptr[g+1]``
``pos``            float32 [sumN, 3]            coordinates
``z``              int8 [sumN]                  element / type ids
``edge_index``     int16|int32 [2, sumE]        LOCAL node indices (row 0 source j, row 1
                                                target i)
``y``              float32 [G, T] | int64 [G]   regression targets (T may be 0) | class labels
``ids``            vlen UTF-8 str [G]           graph identifiers
``<column>``       int64 [G] | vlen str [G]     per-graph columns, e.g. ``center_index``
                                                (local, -1 = none) or ``target`` (a string)
``<ragged>``,      [sum, ...] + int64 [G+1]     per-graph variable-length arrays (int64 or
``<ragged>_ptr``                                strings): values of graph g are rows
                                                ``ptr[g]:ptr[g+1]``
=================  ===========================  ==========================================

Every numeric dataset is chunked with HDF5's Fletcher32 checksum per chunk, so bytes changed in
place fail the read of their chunk; opening a shard checks the structure of its index arrays,
reading a graph the ranges of its edge indices and types. A shard is made in memory and written
with ordinary file I/O (a full disk is a clear error, never a crash inside HDF5), atomically
(temp file in the same directory, fsync, ``os.replace``); reading is lazy and fork-safe (one
handle per process, opened on first access).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from .atomic import atomic_write_bytes, atomic_write_hdf5

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_VERSION",
    "SUPPORTED_FORMAT_VERSIONS",
    "ShardFormatError",
    "ShardIntegrityError",
    "damaged_shards",
    "shard_problems",
    "split_problems",
    "verify_split",
    "GraphBlock",
    "write_shard",
    "ShardReader",
    "write_manifest",
    "read_manifest",
    "verify_manifest",
    "sha256_file",
    "package_version",
    "atomic_write_bytes",
]

FORMAT_VERSION = 3  # 3: Fletcher32 checksums on every numeric dataset (2 had none)
SUPPORTED_FORMAT_VERSIONS = frozenset({3})
MANIFEST_VERSION = 2
INT16_MAX_NODES = 32768  # int16 edges when every graph has fewer nodes than this
CORE_DATASETS = ("node_ptr", "edge_ptr", "pos", "z", "edge_index", "y", "ids")
REQUIRED_ATTRS = ("task", "cutoff", "max_neighbors", "source")
#: bytes per chunk of the checksummed datasets: a random read of one graph reads (and checks)
#: a chunk or two; smaller chunks check less per read but index more chunks
CHUNK_BYTES = 1 << 16
#: present in a graph folder while a build runs (written first, removed after the manifest)
BUILDING_MARKER = ".build-in-progress"


class ShardFormatError(ValueError):
    """A shard or manifest is malformed or has an unsupported version."""


def package_version() -> str:
    try:
        from importlib.metadata import version

        return f"eqgat-workflow {version('eqgat-workflow')}"
    except Exception:  # pragma: no cover - not installed
        return "eqgat-workflow (unknown version)"


# --------------------------------------------------------------------------------------
# In-memory block of graphs
# --------------------------------------------------------------------------------------
@dataclass
class GraphBlock:
    """A block of ``G`` graphs in CSR form (what one shard file holds).

    ``edge_index`` holds LOCAL node indices (0 .. n_g-1 within each graph) of any integer
    dtype; ``write_shard`` picks int16/int32. ``columns`` holds per-graph columns, int64 [G]
    (e.g. ``center_index``) or strings [G] (e.g. ``target``); ``ragged`` holds per-graph
    variable-length arrays as ``name -> (values, ptr)``: int64 ``[sum, ...]`` or strings
    ``[sum]``, with ``ptr`` int64 [G+1].
    """

    node_ptr: np.ndarray
    edge_ptr: np.ndarray
    pos: np.ndarray
    z: np.ndarray
    edge_index: np.ndarray
    y: np.ndarray
    ids: Sequence[str]
    columns: dict = field(default_factory=dict)
    ragged: dict = field(default_factory=dict)

    def __post_init__(self):
        self.node_ptr = np.ascontiguousarray(self.node_ptr, dtype=np.int64)
        self.edge_ptr = np.ascontiguousarray(self.edge_ptr, dtype=np.int64)
        self.pos = np.ascontiguousarray(self.pos, dtype=np.float32)
        self.z = np.ascontiguousarray(self.z, dtype=np.int8)
        ei = np.asarray(self.edge_index)
        if ei.size == 0:
            ei = ei.reshape(2, 0)
        self.edge_index = np.ascontiguousarray(ei)
        y = np.asarray(self.y)
        if np.issubdtype(y.dtype, np.floating):
            y = np.ascontiguousarray(y, dtype=np.float32)
            if y.ndim == 1:
                y = y.reshape(-1, 1)
        elif np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_:
            y = np.ascontiguousarray(y, dtype=np.int64)
        else:
            raise ShardFormatError(f"y must be float (regression) or int (classes), got {y.dtype}")
        self.y = y
        self.ids = [str(s) for s in self.ids]
        self.columns = {str(k): _column_array(v) for k, v in dict(self.columns).items()}
        self.ragged = {str(k): (_column_array(values), np.ascontiguousarray(ptr, dtype=np.int64))
                       for k, (values, ptr) in dict(self.ragged).items()}
        self.validate()

    @property
    def num_graphs(self) -> int:
        return int(self.node_ptr.shape[0] - 1)

    @property
    def num_nodes(self) -> int:
        return int(self.node_ptr[-1])

    @property
    def num_edges(self) -> int:
        return int(self.edge_ptr[-1])

    @property
    def task_kind(self) -> str:
        return "regression" if self.y.dtype == np.float32 else "classification"

    def validate(self) -> None:
        G = self.num_graphs
        for name in ("node_ptr", "edge_ptr"):
            p = getattr(self, name)
            if p.ndim != 1 or p.shape[0] < 1 or p[0] != 0 or np.any(np.diff(p) < 0):
                raise ShardFormatError(f"{name} must be int64 [G+1], start at 0, non-decreasing")
        if self.edge_ptr.shape[0] != G + 1:
            raise ShardFormatError("node_ptr and edge_ptr must have the same length")
        N, E = self.num_nodes, self.num_edges
        if self.pos.shape != (N, 3):
            raise ShardFormatError(f"pos must be [{N},3], got {self.pos.shape}")
        if self.z.shape != (N,):
            raise ShardFormatError(f"z must be [{N}], got {self.z.shape}")
        if self.edge_index.ndim != 2 or self.edge_index.shape != (2, E):
            raise ShardFormatError(f"edge_index must be [2,{E}], got {self.edge_index.shape}")
        if not np.issubdtype(self.edge_index.dtype, np.integer):
            raise ShardFormatError("edge_index must be integer")
        if E:
            n_per_edge = np.repeat(np.diff(self.node_ptr), np.diff(self.edge_ptr))
            if self.edge_index.min() < 0 or np.any(self.edge_index >= n_per_edge[None, :]):
                raise ShardFormatError("edge_index must hold local indices in [0, n_g)")
        if self.y.shape[0] != G:
            raise ShardFormatError(f"y must have {G} rows, got {self.y.shape}")
        if len(self.ids) != G:
            raise ShardFormatError(f"ids must have {G} entries, got {len(self.ids)}")
        for k, v in self.columns.items():
            if k in CORE_DATASETS:
                raise ShardFormatError(f"column name {k!r} clashes with a core dataset")
            if v.shape != (G,):
                raise ShardFormatError(f"column {k!r} must have shape [{G}], got {v.shape}")
        for k, (values, ptr) in self.ragged.items():
            if k in CORE_DATASETS or k in self.columns or k.endswith("_ptr") or f"{k}_ptr" in self.columns:
                raise ShardFormatError(f"ragged column name {k!r} clashes with another dataset")
            if ptr.shape != (G + 1,) or ptr[0] != 0 or np.any(np.diff(ptr) < 0) or ptr[-1] != len(values):
                raise ShardFormatError(f"ragged column {k!r}: ptr must be int64 [{G + 1}] from 0 to "
                                       f"{len(values)}, non-decreasing")

    @classmethod
    def from_graphs(cls, graphs: Iterable[Mapping], columns: Sequence[str] = ()) -> GraphBlock:
        """Build a block from per-graph records with one concatenation per array.

        Each record needs ``pos`` [n,3], ``z`` [n], ``edge_index`` [2,e] (local), ``y`` and
        ``id``; names in ``columns`` are read from the record (default -1 when missing).
        """
        graphs = list(graphs)
        n = np.fromiter((len(g["z"]) for g in graphs), dtype=np.int64, count=len(graphs))
        e = np.fromiter((np.shape(g["edge_index"])[1] for g in graphs), dtype=np.int64,
                        count=len(graphs))
        node_ptr = np.zeros(len(graphs) + 1, np.int64)
        edge_ptr = np.zeros(len(graphs) + 1, np.int64)
        np.cumsum(n, out=node_ptr[1:])
        np.cumsum(e, out=edge_ptr[1:])

        def cat(key, shape_tail, dtype):
            if not graphs:
                return np.zeros((0,) + shape_tail, dtype)
            return np.concatenate([np.asarray(g[key], dtype=dtype).reshape((-1,) + shape_tail)
                                   for g in graphs])

        ei = (np.concatenate([np.asarray(g["edge_index"], np.int64).reshape(2, -1)
                              for g in graphs], axis=1)
              if graphs else np.zeros((2, 0), np.int64))
        if graphs:
            y = np.stack([np.asarray(g["y"]) for g in graphs])
        else:
            y = np.zeros((0, 1), np.float32)
        cols = {c: np.array([int(g.get(c, -1)) for g in graphs], dtype=np.int64)
                for c in columns}
        return cls(node_ptr=node_ptr, edge_ptr=edge_ptr, pos=cat("pos", (3,), np.float32),
                   z=cat("z", (), np.int8), edge_index=ei, y=y,
                   ids=[g["id"] for g in graphs], columns=cols)

    def graph(self, i: int) -> dict:
        """Graph ``i`` as a dict (same keys as ``ShardReader.read``)."""
        n0, n1 = self.node_ptr[i], self.node_ptr[i + 1]
        e0, e1 = self.edge_ptr[i], self.edge_ptr[i + 1]
        out = {"pos": self.pos[n0:n1], "z": self.z[n0:n1],
               "edge_index": self.edge_index[:, e0:e1].astype(np.int64),
               "y": self.y[i], "id": self.ids[i]}
        for k, v in self.columns.items():
            out[k] = v[i]
        for k, (values, ptr) in self.ragged.items():
            out[k] = values[ptr[i]:ptr[i + 1]]
        return out


def _column_array(values) -> np.ndarray:
    """Per-graph values as int64, or as an object array of str when they are strings."""
    arr = np.asarray(values)
    if arr.dtype.kind in "USO":
        return np.array([str(v) for v in arr.reshape(-1)], dtype=object).reshape(arr.shape)
    if arr.dtype.kind not in "iub":
        raise ShardFormatError(f"per-graph columns hold integers or strings, got {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def ragged_from_lists(per_graph: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """``(values, ptr)`` of a ragged column from one array (or list) per graph."""
    arrays = [np.asarray(a) for a in per_graph]
    ptr = np.zeros(len(arrays) + 1, np.int64)
    np.cumsum([len(a) for a in arrays], out=ptr[1:])
    if not arrays:
        return np.zeros(0, np.int64), ptr
    nonempty = [a for a in arrays if len(a)] or arrays[:1]
    return np.concatenate(nonempty), ptr


# --------------------------------------------------------------------------------------
# Atomic writing
# --------------------------------------------------------------------------------------
def write_shard(path, block: GraphBlock, attrs: Mapping, compression: str | None = None,
                compression_opts=None) -> None:
    """Write ``block`` as one shard file at ``path``, atomically.

    ``attrs`` must contain ``task``, ``cutoff``, ``max_neighbors`` (None or -1 = none) and
    ``source``; any other scalar/string attrs are stored too. ``format_version``,
    ``num_graphs``, ``num_nodes``, ``num_edges``, ``edge_index_dtype``, ``y_kind``,
    ``graph_columns``, ``ragged_columns`` and ``created_by`` are set here. Numeric datasets are
    chunked with Fletcher32 checksums (and ``compression``, e.g. ``"gzip"``, ``"lzf"``, when
    given). The file is made in memory and written atomically; a full disk (or less free space
    than the shard and ``FREE_SPACE_MARGIN``) is a ``DiskFullError`` naming the folder.
    """
    missing = [k for k in REQUIRED_ATTRS if k not in attrs]
    if missing:
        raise ShardFormatError(f"write_shard: missing required attrs {missing}")
    block.validate()
    max_n = int(np.diff(block.node_ptr).max()) if block.num_graphs else 0
    edge_dtype = np.int16 if max_n < INT16_MAX_NODES else np.int32
    root = {k: v for k, v in attrs.items()}
    for limit in ("max_neighbors", "max_degree"):  # None: no limit
        if limit in root and root[limit] is None:
            root[limit] = -1
    root.update({
        "format_version": FORMAT_VERSION,
        "num_graphs": block.num_graphs,
        "num_nodes": block.num_nodes,
        "num_edges": block.num_edges,
        "edge_index_dtype": np.dtype(edge_dtype).name,
        "y_kind": block.task_kind,
        "graph_columns": json.dumps(sorted(block.columns)),
        "ragged_columns": json.dumps(sorted(block.ragged)),
        "created_by": root.get("created_by", package_version()),
    })

    atomic_write_hdf5(path, functools.partial(_fill, block=block, edge_dtype=edge_dtype, root=root,
                                              compression=compression, compression_opts=compression_opts))


def _chunks(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """Chunks of about ``CHUNK_BYTES`` along the graph axis (the last one of ``edge_index``),
    whole along the others, so a graph's rows are read from one chunk or two."""
    if len(shape) == 2 and shape[0] == 2 and itemsize <= 4:  # edge_index [2, E]
        return (2, max(1, min(shape[1], CHUNK_BYTES // (2 * itemsize))))
    row = itemsize * int(np.prod(shape[1:], dtype=np.int64))
    return (max(1, min(shape[0], CHUNK_BYTES // max(row, 1))), *shape[1:])


def _fill(f, block: GraphBlock, edge_dtype, root: Mapping, compression, compression_opts) -> None:
    """Write `block`'s datasets and the attrs `root` into the open HDF5 file `f`."""
    import h5py

    def dset(name, data, dtype=None):
        data = np.asarray(data)
        kw = {"track_times": False}
        if data.dtype == object:  # variable-length strings: HDF5 filters cannot apply
            dtype = h5py.string_dtype("utf-8")
        elif data.size > 0:
            kw.update(chunks=_chunks(data.shape, data.dtype.itemsize), fletcher32=True)
            if compression is not None:
                kw.update(compression=compression, compression_opts=compression_opts, shuffle=True)
        f.create_dataset(name, data=data, dtype=dtype, **kw)

    dset("node_ptr", block.node_ptr)
    dset("edge_ptr", block.edge_ptr)
    dset("pos", block.pos)
    dset("z", block.z)
    dset("edge_index", block.edge_index.astype(edge_dtype))
    dset("y", block.y)
    dset("ids", np.array(block.ids, dtype=object))
    for k in sorted(block.columns):
        dset(k, block.columns[k])
    for k in sorted(block.ragged):
        values, ptr = block.ragged[k]
        dset(k, values)
        dset(f"{k}_ptr", ptr)
    for k in sorted(root):
        v = root[k]
        f.attrs[k] = "" if v is None else v


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------
def _py(v):
    """An HDF5 attribute as a plain Python value (lists, ints, floats, str)."""
    if isinstance(v, np.ndarray):
        return [_py(x) for x in v.tolist()]
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, bytes):
        return v.decode()
    return v


def _read_column(dataset) -> np.ndarray:
    """A whole per-graph or ragged dataset; strings as an object array of str."""
    if dataset.dtype.kind == "O":
        return np.array(dataset.asstr()[()], dtype=object)
    return dataset[()]


def _pointer_problem(name: str, ptr: np.ndarray, num_graphs: int, total: int) -> str | None:
    """What is wrong with CSR offsets `ptr` of `num_graphs` graphs over `total` rows, if anything."""
    if ptr.shape != (num_graphs + 1,):
        return f"{name} has shape {ptr.shape}, expected ({num_graphs + 1},)"
    if ptr[0] != 0:
        return f"{name} starts at {ptr[0]}, not 0"
    drops = np.flatnonzero(np.diff(ptr) < 0)
    if drops.size:
        return f"{name} decreases at graph {drops[0]} (starts at {ptr[drops[0]]}, ends at {ptr[drops[0] + 1]})"
    if ptr[-1] != total:
        return f"{name} ends at {ptr[-1]} but the data has {total} rows"
    return None


def structure_problem(cache: Mapping) -> str | None:
    """The first inconsistency of a shard's index arrays (CSR offsets against the datasets they
    index, per-graph lengths), or None: a cheap check of arrays held in memory when opened."""
    G = int(cache["node_ptr"].shape[0]) - 1
    if G != cache["attrs"].get("num_graphs", G):
        return f"node_ptr has {G + 1} entries for {cache['attrs'].get('num_graphs')} graphs"
    edge_index = cache["edge_index"]
    checks = [("node_ptr", cache["node_ptr"], cache["pos"].shape[0]),
              ("edge_ptr", cache["edge_ptr"], edge_index.shape[-1] if edge_index.ndim == 2 else -1),
              *((f"{name}_ptr", ptr, values.shape[0]) for name, (values, ptr) in cache["ragged"].items())]
    for name, ptr, total in checks:
        problem = _pointer_problem(name, ptr, G, total)
        if problem:
            return problem
    if cache["z"].shape != (cache["pos"].shape[0],) or edge_index.ndim != 2 or edge_index.shape[0] != 2:
        return f"z {cache['z'].shape}, pos {cache['pos'].shape} and edge_index {edge_index.shape} do not fit"
    lengths = {"y": cache["y"].shape[0], "ids": len(cache["ids"]),
               **{name: len(values) for name, values in cache["columns"].items()}}
    wrong = {name: n for name, n in lengths.items() if n != G}
    return f"per-graph datasets of another length than {G} graphs: {wrong}" if wrong else None


def index_problem(edge_index: np.ndarray, z: np.ndarray, z_classes: int | None) -> str | None:
    """What is out of range in one graph's local edge indices (0..n-1) and types (0..z_classes-1)."""
    n = z.shape[0]
    if edge_index.size and (edge_index.min() < 0 or edge_index.max() >= n):
        return f"edge_index holds {edge_index.min()}..{edge_index.max()}, outside 0..{n - 1} (its {n} nodes)"
    if n and (z.min() < 0 or (z_classes is not None and z.max() >= z_classes)):
        top = "" if z_classes is None else f"..{z_classes - 1}"
        return f"z holds {z.min()}..{z.max()}, outside 0{top}"
    return None


class ShardReader:
    """Random access to the graphs of one shard file.

    The file is opened lazily on first access, once per process: after a ``fork`` (e.g. in
    PyTorch DataLoader workers) the child notices the changed pid and opens its own handle.
    Pickling drops the handle, so spawn/forkserver workers work too.
    """

    def __init__(self, path):
        self.path = str(path)
        self._file = None
        self._pid = None
        self._cache = None

    # -- handle management --------------------------------------------------------
    def _ensure_open(self):
        pid = os.getpid()
        if self._file is not None and self._pid == pid:
            return self._file
        import h5py

        # A handle inherited from the parent process is never used (nor closed) here.
        self._file = None
        try:
            f = h5py.File(self.path, "r")
        except (OSError, FileNotFoundError) as exc:
            raise OSError(f"cannot open shard {self.path}: {exc}") from exc
        try:
            version = f.attrs.get("format_version", None)
            version = _py(version)
            if version not in SUPPORTED_FORMAT_VERSIONS:
                raise ShardFormatError(
                    f"{self.path}: unsupported shard format_version {version!r} "
                    f"(this reader supports {sorted(SUPPORTED_FORMAT_VERSIONS)}); "
                    "rebuild the shards with this version of the package")
            missing = [d for d in CORE_DATASETS if d not in f]
            if missing:
                raise ShardFormatError(f"{self.path}: missing datasets {missing}")
            attrs = {k: _py(v) for k, v in f.attrs.items()}
            cols = json.loads(attrs.get("graph_columns", "[]") or "[]")
            ragged = json.loads(attrs.get("ragged_columns", "[]") or "[]")
            with self._checksummed("its index arrays"):
                self._cache = {
                    "attrs": attrs,
                    "node_ptr": f["node_ptr"][()],
                    "edge_ptr": f["edge_ptr"][()],
                    "y": f["y"][()],
                    "columns": {c: _read_column(f[c]) for c in cols},
                    "ragged": {r: (f[r], f[f"{r}_ptr"][()]) for r in ragged},
                    # ids are read once (a per-graph variable-length string read costs ~80 us)
                    "ids": f["ids"].asstr()[()],
                    # dataset objects are cached: a lookup by name costs tens of microseconds
                    "pos": f["pos"], "z": f["z"], "edge_index": f["edge_index"],
                    "z_classes": attrs.get("z_classes"),
                }
            problem = structure_problem(self._cache)
            if problem:
                raise ShardIntegrityError(f"{self.path}: {problem}: the shard was changed after it was "
                                          "written; rebuild the graphs")
        except BaseException:
            f.close()
            raise
        self._file, self._pid = f, pid
        return f

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None
        self._pid = None
        self._cache = None

    def __getstate__(self):
        return {"path": self.path, "_file": None, "_pid": None, "_cache": None}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # -- access -----------------------------------------------------------------------
    @property
    def attrs(self) -> dict:
        self._ensure_open()
        return dict(self._cache["attrs"])

    def __len__(self) -> int:
        self._ensure_open()
        return int(self._cache["node_ptr"].shape[0] - 1)

    def read(self, i: int, ragged: bool = True) -> dict:
        """Graph ``i``: ``pos`` float32 [n,3], ``z`` int8 [n], ``edge_index`` int64 [2,e]
        (local), ``y`` (float32 [T] or int64 scalar), ``id`` str, plus per-graph columns
        (int64 scalars or str) and, with `ragged`, the graph's slices of the ragged columns."""
        self._ensure_open()
        c = self._cache
        G = c["node_ptr"].shape[0] - 1
        i = int(i)
        if i < 0:
            i += G
        if not 0 <= i < G:
            raise IndexError(f"graph index {i} out of range for {G} graphs in {self.path}")
        n0, n1 = int(c["node_ptr"][i]), int(c["node_ptr"][i + 1])
        e0, e1 = int(c["edge_ptr"][i]), int(c["edge_ptr"][i + 1])
        with self._checksummed(f"graph {i} ({c['ids'][i]!r})"):
            stored = c["edge_index"][:, e0:e1] if e1 > e0 else np.zeros((2, 0), np.int16)
            out = {
                "pos": c["pos"][n0:n1] if n1 > n0 else np.zeros((0, 3), np.float32),
                "z": c["z"][n0:n1] if n1 > n0 else np.zeros(0, np.int8),
                "y": c["y"][i],
                "id": str(c["ids"][i]),
            }
        problem = index_problem(stored, out["z"], c["z_classes"])  # on the stored int16/int32: cheaper
        if problem:
            raise ShardIntegrityError(f"{self.path}: graph {i} ({out['id']!r}): {problem}: the shard was "
                                      "changed after it was written; rebuild the graphs")
        out["edge_index"] = stored.astype(np.int64)
        for k, v in c["columns"].items():
            out[k] = v[i]
        if ragged:
            for k in c["ragged"]:
                out[k] = self.read_ragged(k, i)
        return out

    @contextmanager
    def _checksummed(self, what: str):
        """Turn HDF5's failed read (a Fletcher32 checksum that does not match: bytes changed in
        place) into a ``ShardIntegrityError`` naming the shard and `what` was read."""
        try:
            yield
        except OSError as exc:
            raise ShardIntegrityError(f"{self.path}: {what} cannot be read (HDF5: {exc}; a Fletcher32 checksum "
                                      "fails where bytes were changed in place): the shard was changed after "
                                      "it was written; rebuild the graphs") from None

    def labels(self) -> np.ndarray:
        """Every graph's label (``y``: float32 [G, T] or int64 [G]), read once when opened."""
        self._ensure_open()
        return self._cache["y"]

    def pointers(self, name: str) -> np.ndarray:
        """The CSR offsets [G+1] of the nodes (``node_ptr``) or edges (``edge_ptr``) of every graph."""
        if name not in ("node_ptr", "edge_ptr"):
            raise KeyError(f"no offsets {name!r}: node_ptr or edge_ptr")
        self._ensure_open()
        return self._cache[name]

    def graph_id(self, i: int) -> str:
        self._ensure_open()
        return str(self._cache["ids"][i])

    def read_ragged(self, name: str, i: int) -> np.ndarray:
        """Graph ``i``'s values of the ragged column `name` (int64, or an object array of str)."""
        self._ensure_open()
        values, ptr = self._cache["ragged"][name]
        lo, hi = int(ptr[i]), int(ptr[i + 1])
        if values.dtype.kind == "O":
            return np.array(values.asstr()[lo:hi], dtype=object)
        with self._checksummed(f"graph {i}'s {name}"):
            return values[lo:hi] if hi > lo else np.zeros((0, *values.shape[1:]), values.dtype)

    def ragged_ptr(self, name: str) -> np.ndarray:
        """The CSR offsets [G+1] of the ragged column `name`."""
        self._ensure_open()
        return self._cache["ragged"][name][1]

    def column(self, name: str) -> np.ndarray:
        """The per-graph column `name` of every graph."""
        self._ensure_open()
        return self._cache["columns"][name]

    def read_block(self) -> GraphBlock:
        """The whole shard as a GraphBlock (edge_index keeps its stored dtype)."""
        f = self._ensure_open()
        c = self._cache
        with self._checksummed("its datasets"):
            ragged = {k: (_read_column(values), ptr) for k, (values, ptr) in c["ragged"].items()}
            pos, z, edge_index = f["pos"][()], f["z"][()], f["edge_index"][()]
        return GraphBlock(node_ptr=c["node_ptr"], edge_ptr=c["edge_ptr"], pos=pos,
                          z=z, edge_index=edge_index, y=c["y"],
                          ids=list(c["ids"]), columns=dict(c["columns"]), ragged=ragged)


# --------------------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------------------
def sha256_file(path, bufsize: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            b = fh.read(bufsize)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


_SPLIT_ORDER = {"train": 0, "val": 1, "test": 2}


def write_manifest(path, shards: list[dict], task: str | None = None,
                   attrs: Mapping | None = None, sha256: bool = False, splits: Sequence[str] = ()) -> dict:
    """Write the JSON manifest of a shard directory atomically and return it.

    ``shards``: one dict per shard file with at least ``split``, ``path`` (absolute, or
    relative to the manifest's directory; stored relative) and ``num_graphs``; optional
    ``num_nodes``, ``num_edges``, ``sha256``, ``index``. Shards keep their given order within a
    split (the order defines the dataset's global graph order). ``sha256=True`` computes
    missing checksums. ``task`` defaults to ``attrs["task"]``.
    """
    path = Path(path)
    root = path.parent.resolve()
    attrs = dict(attrs or {})
    task = task if task is not None else attrs.get("task")
    if task is None:
        raise ValueError("write_manifest: task is required")
    listed: dict = {str(name): [] for name in splits}
    for s in shards:
        p = Path(s["path"])
        abs_p = p if p.is_absolute() else root / p
        try:
            rel = abs_p.resolve().relative_to(root)
        except ValueError:
            raise ValueError(f"shard {abs_p} is not inside the manifest directory {root}") from None
        entry = {"path": rel.as_posix(), "num_graphs": int(s["num_graphs"])}
        for k in ("num_nodes", "num_edges", "size"):
            if k in s:
                entry[k] = int(s[k])
        if s.get("skipped"):
            entry["skipped"] = s["skipped"]  # the source's report of records it skipped
        if s.get("sha256"):
            entry["sha256"] = s["sha256"]
        elif sha256:
            entry["sha256"] = sha256_file(abs_p)
        listed.setdefault(str(s["split"]), []).append(entry)
    ordered = dict(sorted(listed.items(), key=lambda kv: (_SPLIT_ORDER.get(kv[0], 99), kv[0])))
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "shard_format_version": FORMAT_VERSION,
        "task": task,
        "created_by": package_version(),
        "attrs": {k: _py(v) for k, v in attrs.items()},
        "splits": {name: {"num_graphs": sum(e["num_graphs"] for e in lst), "shards": lst}
                   for name, lst in ordered.items()},
    }
    atomic_write_bytes(path, (json.dumps(manifest, indent=1, sort_keys=False) + "\n").encode())
    return manifest


def read_manifest(path) -> dict:
    """Load and check a manifest. Adds ``"root"`` (absolute directory of the manifest)."""
    path = Path(path)
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"manifest not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise ShardFormatError(f"{path}: not valid JSON ({exc})") from exc
    if manifest.get("manifest_version") != MANIFEST_VERSION:
        raise ShardFormatError(f"{path}: unsupported manifest_version "
                               f"{manifest.get('manifest_version')!r} (expected {MANIFEST_VERSION})")
    if manifest.get("shard_format_version") not in SUPPORTED_FORMAT_VERSIONS:
        raise ShardFormatError(f"{path}: unsupported shard_format_version "
                               f"{manifest.get('shard_format_version')!r}")
    for key in ("task", "splits"):
        if key not in manifest:
            raise ShardFormatError(f"{path}: missing key {key!r}")
    manifest["root"] = str(path.parent.resolve())
    return manifest


#: manifest attrs a shard file must repeat: the settings its graphs were built with
BUILD_ATTRS = ("task", "cutoff", "max_neighbors", "max_degree")
_COUNTS = ("num_graphs", "num_nodes", "num_edges")


class ShardIntegrityError(ShardFormatError):
    """Shards disagree with their manifest: a file is missing, has another size, another format
    version, other graph counts, other build settings or (full verification) another SHA-256."""


def _file_problems(path: Path, entry: Mapping, attrs: Mapping) -> list[str]:
    """What the HDF5 attributes of one shard say against its manifest entry and the manifest's
    attrs (metadata only: no dataset is read)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            found = {k: _py(v) for k, v in f.attrs.items()}
            ptr_len = f["node_ptr"].shape[0] if "node_ptr" in f else None
    except OSError as exc:
        return [f"{path}: not a readable HDF5 shard ({exc})"]
    version = found.get("format_version")
    if version not in SUPPORTED_FORMAT_VERSIONS:
        return [f"{path}: shard format_version {version!r}, this reader supports {sorted(SUPPORTED_FORMAT_VERSIONS)}"]
    problems = [f"{path}: {key} is {found.get(key)!r} in the file but {entry[key]!r} in the manifest"
                for key in _COUNTS if key in entry and found.get(key) != entry[key]]
    if ptr_len != int(found.get("num_graphs", -2)) + 1:
        problems.append(f"{path}: node_ptr has {ptr_len} entries for {found.get('num_graphs')!r} graphs")
    problems += [f"{path}: built with {key} = {found.get(key)!r} but the manifest says {attrs[key]!r}"
                 for key in BUILD_ATTRS if key in attrs and found.get(key) != _stored(attrs[key])]
    return problems


def _stored(value):
    """An attr value as ``write_shard`` stores it (None limits as -1)."""
    return -1 if value is None else value


def shard_problems(path, entry: Mapping, attrs: Mapping, full: bool = False) -> list[str]:
    """Problems of one shard against its manifest entry (empty: none found): the file is present,
    has the recorded size, format version, graph/node/edge counts and build settings (`attrs`:
    the manifest's); with `full` also the recorded SHA-256 (reads the whole file)."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return [f"{path}: missing (the manifest lists it)"]
    if "size" in entry and size != entry["size"]:
        return [f"{path}: {size} bytes but the manifest says {entry['size']} (truncated or replaced?)"]
    problems = []
    if full and entry.get("sha256") and sha256_file(path) != entry["sha256"]:
        problems.append(f"{path}: checksum mismatch: its SHA-256 differs from the manifest's (changed after the build)")
    return problems + _file_problems(path, entry, attrs)


def split_problems(manifest: Mapping, split: str, full: bool = False) -> list[str]:
    """Problems of one split of a manifest (from :func:`read_manifest`): its total against its
    entries, then every shard (:func:`shard_problems`)."""
    root = Path(manifest["root"])
    info = manifest["splits"][split]
    listed = sum(int(e["num_graphs"]) for e in info["shards"])
    problems = []
    if "num_graphs" in info and int(info["num_graphs"]) != listed:
        problems.append(f"{root / 'manifest.json'}: split {split} has num_graphs {info['num_graphs']} but its "
                        f"shards list {listed}")
    attrs = manifest.get("attrs", {})
    for entry in info["shards"]:
        problems += shard_problems(root / entry["path"], entry, attrs, full)
    return problems


def verify_split(manifest: Mapping, split: str, full: bool = False) -> None:
    """Raise ``ShardIntegrityError`` listing every problem of a split (see :func:`split_problems`)."""
    problems = split_problems(manifest, split, full)
    if problems:
        shown = "\n  ".join(problems[:20]) + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise ShardIntegrityError(f"the {split} shards of {Path(manifest['root'])} do not match their manifest "
                                  f"(rebuild the graphs):\n  {shown}")


def verify_manifest(path, full: bool = True) -> list[str]:
    """Return a list of problems of every split (missing files, other sizes, counts, build
    settings; with `full` also checksums)."""
    m = read_manifest(path)
    return [f"{split}: {problem}" for split in m["splits"] for problem in split_problems(m, split, full)]


def damaged_shards(graph_dir) -> list[str]:
    """What a look at the file system alone (no file is opened) finds wrong with a finished
    graph folder: no or an unreadable manifest, a listed shard missing or of another size than
    recorded. Empty for a folder that does not exist (not built yet) or holds ``BUILDING_MARKER``
    (a build is writing it)."""
    graph_dir = Path(graph_dir)
    if not graph_dir.is_dir() or (graph_dir / BUILDING_MARKER).exists():
        return []  # not built yet, or being built (an interrupted build Snakemake marks incomplete)
    try:
        manifest = json.loads((graph_dir / "manifest.json").read_text())
        entries = [(str(e["path"]), e.get("size")) for info in manifest["splits"].values() for e in info["shards"]]
    except FileNotFoundError:
        return ["manifest.json is missing"]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return [f"manifest.json is unreadable ({type(exc).__name__}: {exc})"]
    problems = []
    for rel, size in entries:
        path = graph_dir / rel
        if not path.is_file():
            problems.append(f"{rel} is missing")
        elif size is not None and path.stat().st_size != size:
            problems.append(f"{rel} has {path.stat().st_size} bytes, the manifest says {size}")
    return problems
