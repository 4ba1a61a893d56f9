"""A declared task's structures -> HDF5 graph shards: one Dask task per shard file.

The task's source (:mod:`preprocess.sources`, :mod:`preprocess.triangle`) cuts the data into
shard tasks and reads their records; the task's reader turns each record into
:class:`~preprocess.readers.Sample` s; here the samples of one shard become one block of graphs
(one batched neighbour search for the whole block) whose per-graph columns are the task's
declared fields. Memory is bounded by one block per worker. Skipped records are counted per
split in ``skip_report.json`` beside the manifest.

This module knows nothing about particular tasks: it reads what the declaration
(:class:`eqgat.tasks.spec.TaskSpec`) says.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .atomic import write_json_atomic
from .build import SPLIT_ORDER, ShardTask, block_from_arrays, build_shards, drop_dense_graphs
from .neighbors import DEFAULT_MAX_DEGREE, DegreeExcess, NeighborLimitError, degree_excess, optional_limit
from .readers import Sample
from .readers.report import SkipReport
from .shards import GraphBlock, ragged_from_lists

__all__ = ["DEFAULT_MAX_DEGREE", "GraphSettings", "block_from_samples", "build_task_shards", "make_sample_block",
           "samples_block", "write_skip_report"]


@dataclass(frozen=True)
class GraphSettings:
    """How a task's graphs are built: the cutoff, the neighbour cap, the degree guard, and whether the
    shards store edges (``edges=False``: they are built when loading, PPI; only the guard runs)."""

    cutoff: float
    max_neighbors: int | None = None
    max_degree: int | None = DEFAULT_MAX_DEGREE
    edges: bool = True


def _part_sizes(sample: Sample) -> tuple[int, ...]:
    """Atom counts of the parts of a sample that get edges only among themselves (PPI: the two
    partners); one part by default."""
    parts = sample.parts or (sample.num_atoms,)
    if sum(parts) != sample.num_atoms:
        raise ValueError(f"sample {sample.id}: parts {parts} do not add up to {sample.num_atoms} atoms")
    return tuple(parts)


def _labels(samples: Sequence[Sample]) -> np.ndarray:
    """float32 [G, T] targets, int64 [G] classes, or float32 [G, 0] when samples carry none."""
    if not samples or all(s.y is None for s in samples):
        return np.zeros((len(samples), 0), np.float32)
    if any(s.y is None for s in samples):
        raise ValueError("some samples of a block have a label and others none")
    if isinstance(samples[0].y, (int, np.integer)):
        return np.array([int(s.y) for s in samples], dtype=np.int64)
    return np.stack([np.asarray(s.y, np.float32).reshape(-1) for s in samples])


def _field_values(samples: Sequence[Sample], fields: Sequence) -> tuple[dict, dict]:
    """The declared per-graph columns and ragged columns of the samples."""
    columns, ragged = {}, {}
    for f in fields:
        try:
            values = [s.fields[f.name] for s in samples]
        except KeyError:
            missing = next(s.id for s in samples if f.name not in s.fields)
            raise ValueError(f"the reader did not fill the declared field {f.name!r} (sample {missing})") from None
        if f.ragged:
            ragged[f.name] = ragged_from_lists(values)
        elif f.kind == "str":
            columns[f.name] = np.array([str(v) for v in values], dtype=object)
        else:
            columns[f.name] = np.array([int(v) for v in values], dtype=np.int64)
    return columns, ragged


def _parts(samples: Sequence[Sample]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The samples' parts back to back: ``pos`` float32 [sumN, 3], ``z`` int8 [sumN] and the
    parts' CSR offsets [P+1]."""
    part_sizes = [n for s in samples for n in _part_sizes(s)]
    part_ptr = np.zeros(len(part_sizes) + 1, np.int64)
    np.cumsum(part_sizes, out=part_ptr[1:])
    pos = np.concatenate([s.pos for s in samples]).astype(np.float32) if samples else np.zeros((0, 3), np.float32)
    z = np.concatenate([s.z for s in samples]).astype(np.int8) if samples else np.zeros(0, np.int8)
    return pos, z, part_ptr


def _part_owners(samples: Sequence[Sample]) -> np.ndarray:
    """The sample of each part [P] (see :func:`_parts`)."""
    return np.repeat(np.arange(len(samples)), [len(_part_sizes(s)) for s in samples])


def block_from_samples(samples: Sequence[Sample], fields: Sequence, cutoff: float | None,
                       max_neighbors: int | None, max_degree: int | None = None) -> GraphBlock:
    """Samples -> GraphBlock; one batched neighbour search over every part of every sample,
    edges only within each part (no edges at all when `cutoff` is None). A part with an atom of
    more than `max_degree` neighbours raises ``NeighborLimitError`` (its ``cloud`` numbers the
    parts; see :func:`dense_samples`)."""
    pos, z, part_ptr = _parts(samples)
    num_parts = len(part_ptr) - 1
    y = np.zeros((num_parts, 1), np.float32)
    if cutoff is None:
        parts_block = GraphBlock(node_ptr=part_ptr, edge_ptr=np.zeros_like(part_ptr), pos=pos, z=z,
                                 edge_index=np.zeros((2, 0), np.int64), y=y, ids=[""] * num_parts)
    else:
        parts_block = block_from_arrays(pos, z, part_ptr, y, [""] * num_parts, cutoff, max_neighbors,
                                        max_degree=max_degree)
    columns, ragged = _field_values(samples, fields)
    return merge_parts(parts_block, [len(_part_sizes(s)) for s in samples], _labels(samples),
                       [s.id for s in samples], columns, ragged)


def merge_parts(block: GraphBlock, parts_per_sample: list[int], y: np.ndarray, ids: list[str],
                columns: dict, ragged: dict) -> GraphBlock:
    """Join consecutive parts into samples: part-local edge indices become sample-local."""
    part_node_ptr, part_edge_ptr = block.node_ptr, block.edge_ptr
    sample_part_ptr = np.zeros(len(parts_per_sample) + 1, np.int64)
    np.cumsum(parts_per_sample, out=sample_part_ptr[1:])
    node_ptr = part_node_ptr[sample_part_ptr]
    edge_ptr = part_edge_ptr[sample_part_ptr]
    edge_index = np.asarray(block.edge_index, dtype=np.int64).copy()
    # offset of each part's first node within its sample
    part_sample = np.repeat(np.arange(len(parts_per_sample)), parts_per_sample)
    part_offset = part_node_ptr[:-1] - node_ptr[part_sample]
    edge_index += np.repeat(part_offset, np.diff(part_edge_ptr))[None, :]
    return GraphBlock(node_ptr=node_ptr, edge_ptr=edge_ptr, pos=block.pos, z=block.z, edge_index=edge_index,
                      y=y, ids=ids, columns=columns, ragged=ragged)


def dense_samples(excess: Sequence[DegreeExcess], samples: Sequence[Sample]) -> dict[int, DegreeExcess]:
    """Sample index -> the first excess among its parts, from the parts' ``DegreeExcess`` es."""
    owner = _part_owners(samples)
    out: dict[int, DegreeExcess] = {}
    for e in excess:
        out.setdefault(int(owner[e.cloud]), e)
    return out


def _drop_dense(samples: list[Sample], excess: Sequence[DegreeExcess], graphs: GraphSettings, strict: bool,
                report: SkipReport) -> list[Sample]:
    """The samples without those `excess` names (strict: ``DenseGraphError`` naming the first)."""
    dense = drop_dense_graphs(dense_samples(excess, samples), [s.id for s in samples], graphs.cutoff,
                              int(graphs.max_degree), strict, report)
    return [s for k, s in enumerate(samples) if k not in dense]


def samples_block(samples: list[Sample], fields: Sequence, graphs: GraphSettings, strict: bool,
                  report: SkipReport) -> GraphBlock:
    """The block of the samples whose graphs respect ``graphs.max_degree``; the others are left
    out and counted as ``too_many_neighbors`` (strict: an error naming the first). Checked by the
    neighbour search's count pass before any edge is allocated: with stored edges the search is
    repeated without the refused samples; without (PPI: edges are built when loading, within
    subsets of each part, whose degrees are never larger) only the count pass runs."""
    limited = graphs.max_degree is not None and graphs.max_degree >= 0
    if not graphs.edges:
        if limited:
            pos, _, part_ptr = _parts(samples)
            excess = degree_excess(pos, part_ptr, graphs.cutoff, graphs.max_degree, graphs.max_neighbors)
            samples = _drop_dense(samples, excess, graphs, strict, report)
        return block_from_samples(samples, fields, None, graphs.max_neighbors)
    limit = graphs.max_degree if limited else None
    try:
        return block_from_samples(samples, fields, graphs.cutoff, graphs.max_neighbors, limit)
    except NeighborLimitError as exc:
        kept = _drop_dense(samples, exc.excess, graphs, strict, report)
        return block_from_samples(kept, fields, graphs.cutoff, graphs.max_neighbors, limit)


def make_sample_block(shard: ShardTask, source, reader: Callable, fields: Sequence, graphs: GraphSettings,
                      strict: bool, options: Mapping[str, Any]) -> tuple[GraphBlock, dict]:
    """Read one shard task's records, turn them into samples, build their graphs; return the
    block and the shard's skip report."""
    report = SkipReport()
    samples = [sample
               for index, record in source.records(shard.payload, report, strict)
               for sample in reader(record, index, strict=strict, report=report, **options)]
    return samples_block(samples, fields, graphs, strict, report), report.to_dict()


def write_skip_report(out_dir: Path, manifest: dict, before: SkipReport | None = None) -> dict:
    """Sum the per-shard skip reports into one per split (``skip_report.json``); `before` is
    what the source skipped before splitting (e.g. rows of a labels CSV), under ``sources``."""
    summary = {}
    for split, info in manifest["splits"].items():
        total = SkipReport.merged(shard["skipped"] for shard in info["shards"] if shard.get("skipped"))
        summary[split] = {"num_graphs": info["num_graphs"], **total.to_dict()}
    if before is not None:
        summary["sources"] = before.to_dict()
    write_json_atomic(Path(out_dir) / "skip_report.json", summary)
    return summary


def build_task_shards(task, location, out_dir, cutoff: float, max_neighbors: int | None = None,
                      shard_size: int = 1000, workers: int = 1, scheduler: str | None = None,
                      threads: int = 1, strict: bool = False, options: Mapping[str, Any] | None = None,
                      progress: bool = True, slurm: dict | None = None, compression: str | None = None,
                      max_degree: int | None = DEFAULT_MAX_DEGREE) -> dict:
    """Shard a declared task's data at `location` (an extracted download, a raw Triangle file,
    a structure folder); returns the manifest.

    `options` are the task's config keys its source and reader read (``max_records``, the
    LBA ``split``, a folder's ``labels`` ...). A structure with an atom of more than
    `max_degree` neighbours within the cutoff (None or < 0: no limit) is left out and counted as
    ``too_many_neighbors`` (strict: an error naming it), before its edges are made. A negative
    `max_neighbors` means no limit, as None does (the workflow passes -1).
    """
    options = dict(options or {})
    out_dir = Path(out_dir)
    task = task.for_section(options)
    source = task.source
    max_degree, max_neighbors = optional_limit(max_degree), optional_limit(max_neighbors)
    attrs = {"task": task.name, "cutoff": float(cutoff),
             "max_neighbors": -1 if max_neighbors is None else int(max_neighbors),
             "max_degree": -1 if max_degree is None else int(max_degree),
             "source": f"{task.name} from {Path(location).resolve()}",
             "label_kind": task.label.kind, "label_names": json.dumps(list(task.label.names)),
             "edges": "stored" if task.edges_in_shards else "built when loaded"}
    if "num_elements" in task.model:  # the readers refuse a graph with a type outside 0..z_classes-1
        attrs["z_classes"] = int(task.model["num_elements"])
    attrs.update(source.attrs(location, options))
    make_block = source.block_maker(location, cutoff=float(cutoff), max_neighbors=max_neighbors,
                                    max_degree=max_degree, strict=strict)
    if make_block is None:  # the reader route: records -> samples -> one block per shard task
        reader_options = {k: options[k] for k in task.reader_options if k in options}
        graphs = GraphSettings(float(cutoff), max_neighbors, max_degree, edges=task.edges_in_shards)
        make_block = functools.partial(make_sample_block, source=source, reader=task.reader, fields=task.fields,
                                       graphs=graphs, strict=strict, options=reader_options)
    shard_tasks, planned, before = source.plan(location, shard_size, options, out_dir)
    attrs.update(planned)
    manifest = build_shards(shard_tasks, make_block, out_dir, attrs, workers=workers, scheduler=scheduler,
                            threads=threads, progress=progress, compression=compression,
                            desc=f"{task.name} shards", slurm=slurm, splits=SPLIT_ORDER)
    write_skip_report(out_dir, manifest, before)
    return manifest
