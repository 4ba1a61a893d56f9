"""ATOM3D datasets -> HDF5 graph shards: one Dask task per slice of an LMDB.

A task reads its records (an index range, or for RES a list of record indices from the split
files), turns them into samples with the task's reader, builds radius graphs for the whole
block in one neighbour search, and writes one shard. Memory is bounded by one block per worker
(``shard_size`` records and the samples they yield), whatever the dataset size. Skipped records
are counted per split in ``skip_report.json`` beside the manifest.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Iterator

import numpy as np

from .build import ShardTask, block_from_arrays, build_shards, shard_relpath
from .readers import Sample, reader
from .readers.lmdb_records import iter_records, num_records
from .readers.ranking import parse_id
from .readers.report import SkipReport
from .atomic import write_json_atomic
from .shards import GraphBlock

SPLITS = ("train", "val", "test")
CLASSIFICATION = {"res", "ppi"}
COLUMNS = {"res": ("center_index",), "ppi": ("center_index0", "center_index1")}


def split_lmdbs(task: str, source: str | Path) -> dict[str, Path]:
    """The LMDB folder of each split under an extracted download (``<layout>/data/<split>``)."""
    source = Path(source)
    if task == "res":
        raise ValueError("RES reads one raw LMDB with split index files: use res_split_indices")
    candidates = sorted(p.parent for p in source.glob("*/data/train")) + sorted(p.parent for p in source.glob("data/train"))
    if len(candidates) != 1:
        raise FileNotFoundError(f"{source}: expected exactly one '<layout>/data/{{train,val,test}}' folder, found {[str(c) for c in candidates]}")
    data = candidates[0]
    missing = [s for s in SPLITS if not (data / s).is_dir()]
    if missing:
        raise FileNotFoundError(f"{data}: missing split folders {missing}")
    return {s: data / s for s in SPLITS}


def res_sources(source: str | Path) -> tuple[Path, dict[str, np.ndarray]]:
    """RES: the raw LMDB and the record indices of each split (``indices/<split>_indices.txt``)."""
    source = Path(source)
    lmdbs = sorted(p for p in source.glob("raw/*/data") if p.is_dir()) or sorted(p for p in source.glob("raw/data") if p.is_dir())
    if len(lmdbs) != 1:
        raise FileNotFoundError(f"{source}: expected one raw LMDB at raw/RES/data, found {[str(p) for p in lmdbs]}")
    indices = {}
    for split in SPLITS:
        path = source / "indices" / f"{split}_indices.txt"
        if not path.exists():
            raise FileNotFoundError(f"RES split file {path} is missing")
        indices[split] = np.loadtxt(path, dtype=np.int64, ndmin=1)
    return lmdbs[0], indices


def atom3d_tasks(task: str, source: str | Path, shard_size: int, max_records: int | None = None) -> list[ShardTask]:
    """One ShardTask per `shard_size` records of each split."""
    if shard_size < 1:
        raise ValueError("shard_size must be >= 1")
    tasks = []
    if task == "res":
        lmdb, indices = res_sources(source)
        for split in SPLITS:
            idx = indices[split][:max_records]
            for k, start in enumerate(range(0, len(idx), shard_size)):
                tasks.append(ShardTask(split, k, shard_relpath(split, k), {"lmdb": str(lmdb), "indices": idx[start:start + shard_size]}))
        return tasks
    for split, lmdb in split_lmdbs(task, source).items():
        n = num_records(lmdb) if max_records is None else min(num_records(lmdb), max_records)
        for k, start in enumerate(range(0, n, shard_size)):
            tasks.append(ShardTask(split, k, shard_relpath(split, k), {"lmdb": str(lmdb), "start": start, "stop": min(n, start + shard_size)}))
    return tasks


def _records(payload: dict, report: SkipReport, strict: bool) -> Iterator[tuple[int, dict]]:
    if "indices" in payload:
        for index in payload["indices"].tolist():
            yield from iter_records(payload["lmdb"], index, index + 1, report=report, strict=strict)
    else:
        yield from iter_records(payload["lmdb"], payload["start"], payload["stop"], report=report, strict=strict)


def sample_id(task: str, sample: Sample) -> str:
    """PSR/RSR ids become "<target>/<decoy>" (the per-target metrics group by the target)."""
    if task in ("psr", "rsr"):
        target, decoy = parse_id(sample.id)
        return f"{target}/{decoy}"
    return sample.id


def parts(task: str, sample: Sample) -> list[int]:
    """Atom counts of the parts of a sample that get edges only among themselves (PPI: the two
    partners' neighbourhoods are separate graphs joined only by the pair head)."""
    if task == "ppi":
        n0 = int(sample.extra["num_atoms0"])
        return [n0, sample.num_atoms - n0]
    return [sample.num_atoms]


def block_from_samples(task: str, samples: list[Sample], cutoff: float, max_neighbors: int | None) -> GraphBlock:
    """Samples -> GraphBlock; one batched neighbour search over every part of every sample."""
    part_sizes = [n for s in samples for n in parts(task, s)]
    part_ptr = np.zeros(len(part_sizes) + 1, np.int64)
    np.cumsum(part_sizes, out=part_ptr[1:])
    pos = np.concatenate([s.pos for s in samples]).astype(np.float32) if samples else np.zeros((0, 3), np.float32)
    z = np.concatenate([s.z for s in samples]).astype(np.int8) if samples else np.zeros(0, np.int8)
    if task in CLASSIFICATION:
        y = np.array([int(s.y) for s in samples], dtype=np.int64)
    else:
        y = np.stack([np.asarray(s.y, np.float32).reshape(-1) for s in samples]) if samples else np.zeros((0, 1), np.float32)
    columns = {name: [] for name in COLUMNS.get(task, ())}
    for s in samples:
        if task == "res":
            columns["center_index"].append(s.center_index)
        elif task == "ppi":
            columns["center_index0"].append(int(s.extra["center_index0"]))
            columns["center_index1"].append(int(s.extra["num_atoms0"]) + int(s.extra["center_index1"]))
    parts_block = block_from_arrays(pos, z, part_ptr, np.zeros((len(part_sizes), 1), np.float32), [""] * len(part_sizes), cutoff, max_neighbors)
    return merge_parts(parts_block, [len(parts(task, s)) for s in samples], y, [sample_id(task, s) for s in samples],
                       {k: np.asarray(v, np.int64) for k, v in columns.items()})


def merge_parts(block: GraphBlock, parts_per_sample: list[int], y: np.ndarray, ids: list[str], columns: dict[str, np.ndarray]) -> GraphBlock:
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
    edge_offset = np.repeat(part_offset, np.diff(part_edge_ptr))
    edge_index += edge_offset[None, :]
    return GraphBlock(node_ptr=node_ptr, edge_ptr=edge_ptr, pos=block.pos, z=block.z, edge_index=edge_index, y=y, ids=ids, columns=columns)


def atom3d_make_block(shard: ShardTask, task: str, cutoff: float, max_neighbors: int | None, strict: bool, seed: int) -> tuple[GraphBlock, dict]:
    """Read one shard's records, build its graphs; return the block and its skip report."""
    report = SkipReport()
    read = reader(task)
    options = {"seed": seed} if task == "ppi" else {}
    samples = [
        sample
        for index, record in _records(shard.payload, report, strict)
        for sample in read.samples(record, index, strict=strict, report=report, **options)
    ]
    return block_from_samples(task, samples, cutoff, max_neighbors), report.to_dict()


def write_skip_report(out_dir: Path, manifest: dict) -> dict:
    """Sum the per-shard skip reports into one per split (``skip_report.json``)."""
    per_split: dict[str, SkipReport] = {}
    for split, info in manifest["splits"].items():
        total = SkipReport()
        for shard in info["shards"]:
            if shard.get("skipped"):
                total = total + SkipReport.from_dict(shard["skipped"])
        per_split[split] = total
    summary = {split: {"num_graphs": manifest["splits"][split]["num_graphs"], **r.to_dict()} for split, r in per_split.items()}
    write_json_atomic(out_dir / "skip_report.json", summary)
    return summary


def build_atom3d_shards(task: str, source, out_dir, cutoff: float, max_neighbors: int | None = None, shard_size: int = 1000,
                        workers: int = 1, scheduler: str | None = None, threads: int = 1, strict: bool = False,
                        max_records: int | None = None, seed: int = 0, progress: bool = True, slurm: dict | None = None) -> dict:
    """Shard one ATOM3D task's download (see `atom3d_tasks`); returns the manifest."""
    out_dir = Path(out_dir)
    attrs = {"task": task, "cutoff": float(cutoff), "max_neighbors": -1 if max_neighbors is None else int(max_neighbors),
             "source": f"ATOM3D {task} from {Path(source).resolve()}", "sampling_seed": int(seed)}
    make_block = functools.partial(atom3d_make_block, task=task, cutoff=float(cutoff), max_neighbors=max_neighbors, strict=strict, seed=seed)
    manifest = build_shards(atom3d_tasks(task, source, shard_size, max_records), make_block, out_dir, attrs, workers=workers,
                            scheduler=scheduler, threads=threads, progress=progress, desc=f"{task} shards", slurm=slurm)
    write_skip_report(out_dir, manifest)
    return manifest
