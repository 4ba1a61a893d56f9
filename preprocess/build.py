"""Build HDF5 graph shards, serially or with Dask (one task = one shard file).

The generic part is :func:`build_shards`: it takes a list of :class:`ShardTask` and a
picklable ``make_block(task) -> GraphBlock`` callable (the "source"), runs one task per shard
(serially in-process, on a ``LocalCluster`` or on an existing scheduler), each task writing its
own shard file atomically and returning small metadata; the driver then writes
``manifest.json`` last, atomically. Sources for new datasets only need to produce
``ShardTask`` payloads and a ``make_block``; :func:`block_from_records` turns records
``(id, pos, z, y, center_index)`` into a block (one batched neighbour search per block).

The sources of the declared tasks are in :mod:`preprocess.sources` and
:mod:`preprocess.triangle`; :mod:`preprocess.task_shards` drives them.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from .atomic import atomic_write_bytes, remove_stale_temps
from .shards import BUILDING_MARKER, GraphBlock, write_manifest, write_shard, sha256_file

__all__ = [
    "ShardTask",
    "build_shards",
    "run_shard_task",
    "DenseGraphError",
    "block_from_arrays",
    "block_from_records",
    "drop_dense_graphs",
    "set_numba_threads",
    "shard_relpath",
]

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
SPLIT_ORDER = ("train", "val", "test")


@dataclass(frozen=True)
class ShardTask:
    """One unit of work: the graphs of one shard file.

    ``path`` is relative to the output directory (``{split}/shard-{index:05d}.h5``);
    ``payload`` is whatever the source's ``make_block`` needs (keep it small: it is pickled).
    """

    split: str
    index: int
    path: str
    payload: Any = None


def shard_relpath(split: str, index: int) -> str:
    return f"{split}/shard-{index:05d}.h5"


def set_numba_threads(n: int | None) -> int:
    """Set Numba's thread count (clamped to [1, NUMBA_NUM_THREADS]); return the value set."""
    import numba

    n = 1 if not n or n < 1 else int(n)
    n = min(n, numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(n)
    return n


def _default_graph_fn():
    """The exact batched radius graph, with int32 local indices (shards store int16/int32)."""
    from .neighbors import radius_graph_batch

    return functools.partial(radius_graph_batch, dtype=np.int32)


# ----------------------------------------------------------------------------------------
# Blocks from data
# ----------------------------------------------------------------------------------------
def block_from_arrays(pos: np.ndarray, z: np.ndarray, node_ptr: np.ndarray, y: np.ndarray,
                      ids: Sequence[str], cutoff: float, max_neighbors: int | None = None,
                      columns: Mapping[str, np.ndarray] | None = None,
                      graph_fn: Callable | None = None, max_degree: int | None = None) -> GraphBlock:
    """Concatenated clouds (``pos`` [sumN,3], ``node_ptr`` [G+1]) -> GraphBlock with radius
    graphs from ``graph_fn`` (default ``preprocess.neighbors.radius_graph_batch``).

    ``max_degree`` (None or < 0: no limit) is passed on to ``graph_fn``, which raises
    ``NeighborLimitError`` for clouds with an atom of more neighbours (see
    :func:`drop_dense_graphs`)."""
    from .neighbors import optional_limit

    graph_fn = graph_fn or _default_graph_fn()
    pos = np.ascontiguousarray(pos, dtype=np.float32)
    node_ptr = np.ascontiguousarray(node_ptr, dtype=np.int64)
    max_neighbors, max_degree = optional_limit(max_neighbors), optional_limit(max_degree)
    limit = {} if max_degree is None else {"max_degree": max_degree}
    edge_index, edge_ptr = graph_fn(pos, node_ptr, float(cutoff), max_neighbors, **limit)
    return GraphBlock(node_ptr=node_ptr, edge_ptr=edge_ptr, pos=pos, z=z,
                      edge_index=edge_index, y=y, ids=ids, columns=dict(columns or {}))


def block_from_records(records: Iterable, cutoff: float, max_neighbors: int | None = None,
                       column_names: Sequence[str] = ("center_index",),
                       graph_fn: Callable | None = None) -> GraphBlock:
    """Records ``(id, pos [n,3], z [n], y, center_index)`` (or dicts with those keys; extra
    keys named in ``column_names``) -> GraphBlock. One neighbour search for the whole block."""
    ids, pos, z, y, cols = [], [], [], [], {c: [] for c in column_names}
    for r in records:
        if not isinstance(r, Mapping):
            r = dict(zip(("id", "pos", "z", "y", "center_index"), r))
        ids.append(str(r["id"]))
        pos.append(np.asarray(r["pos"], np.float32).reshape(-1, 3))
        z.append(np.asarray(r["z"], np.int8).reshape(-1))
        y.append(np.asarray(r["y"]))
        for c in column_names:
            v = r.get(c)
            cols[c].append(-1 if v is None else int(v))
    counts = np.array([p.shape[0] for p in pos], dtype=np.int64)
    node_ptr = np.zeros(len(pos) + 1, np.int64)
    np.cumsum(counts, out=node_ptr[1:])
    P = np.concatenate(pos) if pos else np.zeros((0, 3), np.float32)
    Z = np.concatenate(z) if z else np.zeros(0, np.int8)
    Y = np.stack(y) if y else np.zeros((0, 1), np.float32)
    C = {c: np.asarray(v, np.int64) for c, v in cols.items()}
    return block_from_arrays(P, Z, node_ptr, Y, ids, cutoff, max_neighbors, C, graph_fn)


class DenseGraphError(ValueError):
    """A structure with an atom of more than ``max_degree`` neighbours (strict mode)."""


def dense_graph_message(graph_id: str, excess, cutoff: float, limit: int) -> str:
    """What is wrong with a structure refused by ``max_degree`` (``excess``: a
    ``preprocess.neighbors.DegreeExcess``)."""
    return (f"structure {graph_id!r}: atom {excess.atom} has {excess.degree} neighbours within {cutoff:g} Å, "
            f"more than max_degree = {limit} (coincident or overlapping atoms?); raise the task's "
            f"graph.max_degree if the structure is sound")


def drop_dense_graphs(excess_by_graph: Mapping[int, Any], ids: Sequence[str], cutoff: float, limit: int,
                      strict: bool, report=None) -> set[int]:
    """Graphs refused by ``max_degree`` (graph index -> ``DegreeExcess``): in strict mode a
    ``DenseGraphError`` naming the first; otherwise each is logged and counted in ``report``
    (a ``SkipReport``) as ``too_many_neighbors``. Returns the graph indices to leave out."""
    from .readers.report import TOO_MANY_NEIGHBORS

    for g in sorted(excess_by_graph):
        message = dense_graph_message(ids[g], excess_by_graph[g], cutoff, limit)
        if strict:
            raise DenseGraphError(message)
        log.warning("skipped %s", message)
        if report is not None:
            report.add(TOO_MANY_NEIGHBORS, ids[g])
    return set(excess_by_graph)


# ----------------------------------------------------------------------------------------
# Generic driver
# ----------------------------------------------------------------------------------------
_freeze_depth = 0


@contextmanager
def frozen_heap(keep: bool = False):
    """Keep Python's cyclic garbage collector off the objects that exist on entry
    (``gc.freeze``) while the block is built.

    Reading a shard's records makes millions of small containers (the JSON of the atom
    tables, the DataFrames), so the collector runs often, and each of its full collections
    walks every object of the process: the imported modules (NumPy, pandas, Numba, Dask ...)
    that outlive the build among them. That walk was 8-10 % of a shard's CPU time, serially
    and in a Dask worker, and it is memory-bound work, which two workers running at once slow
    down in each other (docs/performance.md). Objects made while frozen are collected as usual.

    * ``keep=False`` (the serial build in the caller's process, a worker of someone else's
      scheduler): unfrozen when the outermost ``frozen_heap`` exits; an inner one (a shard of
      the serial build) first collects the garbage, then freezes what the shards before it
      left (Numba's kernels, h5py ...) too. A heap that something else froze is left as it is.
    * ``keep=True`` (a worker process that the build started and that ends with it): collect
      the garbage, then freeze for good; that also spares the worker's exit a walk over its
      whole heap.
    """
    global _freeze_depth
    if not keep and _freeze_depth == 0 and gc.get_freeze_count():
        yield  # frozen by someone else
        return
    if keep or _freeze_depth:
        gc.collect()  # no garbage stays frozen
    gc.freeze()
    if keep:
        yield
        return
    _freeze_depth += 1
    try:
        yield
    finally:
        _freeze_depth -= 1
        if _freeze_depth == 0:
            gc.unfreeze()


def run_shard_task(task: ShardTask, make_block: Callable[[ShardTask], GraphBlock | tuple[GraphBlock, dict]],
                   out_dir: str, attrs: Mapping, compression: str | None = None,
                   numba_threads: int = 1, keep_heap_frozen: bool = False) -> dict:
    """Make one block and write its shard; return small metadata for the manifest (counts,
    file size and SHA-256, and the source's skip report). The heap that exists when the task
    starts is frozen meanwhile (:func:`frozen_heap`; ``keep_heap_frozen``: for good, in a
    worker process that ends with the build)."""
    set_numba_threads(numba_threads)
    with frozen_heap(keep_heap_frozen):
        made = make_block(task)
        # a source may also return a small JSON-able report (e.g. skipped records) for the manifest
        block, report = made if isinstance(made, tuple) else (made, None)
        path = Path(out_dir) / task.path
        write_shard(path, block, attrs, compression=compression)
    meta = {"split": task.split, "index": task.index, "path": task.path,
            "num_graphs": block.num_graphs, "num_nodes": block.num_nodes,
            "num_edges": block.num_edges, "size": path.stat().st_size, "sha256": sha256_file(path)}
    if report:
        meta["skipped"] = report
    return meta


def _progress(total: int, enabled: bool, desc: str):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, disable=not enabled, desc=desc, unit="shard")


def build_shards(tasks: Sequence[ShardTask], make_block: Callable[[ShardTask], GraphBlock],
                 out_dir, attrs: Mapping, workers: int = 1, scheduler: str | None = None,
                 threads: int = 1, progress: bool = True,
                 compression: str | None = None, desc: str = "shards",
                 slurm: Mapping | None = None, splits: Sequence[str] = ()) -> dict:
    """Run every task, then write ``out_dir/manifest.json`` (atomically, last).

    * ``scheduler`` given: connect to that Dask scheduler address (its workers run tasks with
      one Numba thread each);
    * else ``slurm`` given: a dask-jobqueue ``SLURMCluster`` (see ``preprocess.cluster``);
    * else ``workers > 1``: a ``LocalCluster(n_workers=workers, threads_per_worker=1,
      processes=True)``, one Numba thread per worker;
    * else (``workers`` 0 or 1): serially in this process with ``threads`` Numba threads.

    An existing manifest is removed first (a failed build leaves no manifest), and so are the
    temp files a killed build left; while the build runs, the folder holds ``BUILDING_MARKER``
    (so that a look at the folder meanwhile does not call it damaged). Shard files
    of an earlier build that the new manifest does not list are deleted at the end.
    `splits` are listed in the manifest even when they have no shard (an empty split is then
    an error where it is used, naming the split, not a missing key). Returns the manifest dict.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / MANIFEST_NAME
    manifest_path.unlink(missing_ok=True)
    _start_marker(out_dir)
    tasks = list(tasks)
    seen = set()
    for t in tasks:
        if t.path in seen:
            raise ValueError(f"duplicate shard path {t.path}")
        seen.add(t.path)
    attrs = dict(attrs)
    bar = _progress(len(tasks), progress, desc)
    results = []
    try:
        if scheduler is None and not slurm and (workers is None or workers <= 1):
            log.info("building %d shards serially (numba threads=%d)", len(tasks), threads)
            with frozen_heap():  # this process's heap, unfrozen after the last shard
                for t in tasks:
                    results.append(run_shard_task(t, make_block, str(out_dir), attrs,
                                                  compression, threads))
                    if bar is not None:
                        bar.update(1)
        else:
            results = _run_dask(tasks, make_block, str(out_dir), attrs, workers, scheduler,
                                compression, bar, slurm)
    finally:
        if bar is not None:
            bar.close()

    order = {s: i for i, s in enumerate(SPLIT_ORDER)}
    results.sort(key=lambda m: (order.get(m["split"], len(order)), m["split"], m["index"]))
    _remove_stale_shards(out_dir, {m["path"] for m in results})
    manifest = write_manifest(manifest_path, results, task=attrs.get("task"), attrs=attrs, splits=splits)
    (out_dir / BUILDING_MARKER).unlink(missing_ok=True)
    log.info("wrote %s: %s", manifest_path,
             ", ".join(f"{k}={v['num_graphs']}" for k, v in manifest["splits"].items()))
    return manifest


def _run_dask(tasks, make_block, out_dir, attrs, workers, scheduler, compression, bar, slurm=None):
    from dask.distributed import as_completed

    from .cluster import dask_client

    # workers of a cluster started here end with the build: their heap stays frozen
    own_workers = scheduler is None
    with dask_client(workers, scheduler, slurm) as client:
        futures = [client.submit(run_shard_task, t, make_block, out_dir, attrs, compression, 1,
                                 own_workers,
                                 key=f"shard-{t.split}-{t.index}-{os.getpid()}-"
                                             f"{id(tasks)}", pure=False)
                   for t in tasks]
        results = []
        try:
            for fut in as_completed(futures):
                results.append(fut.result())
                if bar is not None:
                    bar.update(1)
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
        return results


def _start_marker(out_dir: Path) -> None:
    """Mark the folder as being built, and delete the temp files a killed earlier build left."""
    for folder in (out_dir, *(p for p in out_dir.iterdir() if p.is_dir())):
        for tmp in remove_stale_temps(folder):
            log.info("removed %s, left by an interrupted build", tmp)
    atomic_write_bytes(out_dir / BUILDING_MARKER, f"being built by process {os.getpid()} on {os.uname().nodename}\n".encode())


def _remove_stale_shards(out_dir: Path, keep: set) -> None:
    for split_dir in out_dir.iterdir():
        if not split_dir.is_dir():
            continue
        for f in split_dir.glob("shard-*.h5"):
            rel = f"{split_dir.name}/{f.name}"
            if rel not in keep:
                log.info("removing stale shard %s", f)
                f.unlink()
