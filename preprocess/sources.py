"""Where a task's structures come from, and how they are cut into shard tasks.

A source turns a location (a downloaded and extracted dataset folder) into
:class:`~preprocess.build.ShardTask` s, one per shard file, and reads the records of one
shard task. A task declaration (:mod:`eqgat.tasks`) names its source; the task's reader then
turns each record into samples.

* :class:`LmdbSplits`: ATOM3D's ``<layout>/data/{train,val,test}`` LMDBs (LBA, PSR, RSR, PPI);
* :class:`IndexedLmdb`: one raw LMDB plus ``indices/{split}_indices.txt`` (RES);
* :class:`StructureFolder`: users' PDB / mmCIF files with a labels CSV (the ``structures`` task).

The Triangle task is generated, not downloaded (:mod:`preprocess.triangle`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from .build import ShardTask, shard_relpath
from .readers.report import SkipReport
from .spec import Source

__all__ = ["SPLITS", "Downloaded", "IndexedLmdb", "LmdbSplits", "StructureFolder"]

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Downloaded(Source):
    """What every downloaded source shares: its datasets (Zenodo archives,
    :class:`preprocess.download.Archive`) and, where a task has several, the config option
    choosing one (LBA: ``split`` 30 or 60)."""

    datasets: Mapping[str, tuple] = field(default_factory=dict)
    option: str | None = None  # task config key whose value picks the dataset
    choices: Mapping[Any, str] = field(default_factory=dict)  # option value -> dataset name
    kind = "download"

    def dataset(self, section: Mapping[str, Any]) -> str:
        """The dataset a task config section reads."""
        if self.option is None:
            (name,) = self.datasets
            return name
        value = section[self.option]
        if value not in self.choices:
            raise ValueError(f"{self.option}={value!r} is not one of {sorted(self.choices)}")
        return self.choices[value]

    def records(self, payload: Mapping[str, Any], report: SkipReport, strict: bool) -> Iterator[tuple[int, dict]]:
        """``(index, record)`` of one shard task: a record range, or a list of record indices."""
        from .readers.lmdb_records import iter_records

        if "indices" in payload:
            for index in payload["indices"].tolist():
                yield from iter_records(payload["lmdb"], index, index + 1, report=report, strict=strict)
        else:
            yield from iter_records(payload["lmdb"], payload["start"], payload["stop"], report=report, strict=strict)


def _check_shard_size(shard_size: int) -> None:
    if shard_size < 1:
        raise ValueError("shard_size must be >= 1")


@dataclass(frozen=True)
class LmdbSplits(Downloaded):
    """ATOM3D split datasets: ``<layout>/data/{train,val,test}``, one LMDB each."""

    def split_lmdbs(self, location: str | Path) -> dict[str, Path]:
        """The LMDB folder of each split under an extracted download."""
        location = Path(location)
        candidates = sorted(p.parent for p in location.glob("*/data/train")) + sorted(p.parent for p in location.glob("data/train"))
        if len(candidates) != 1:
            raise FileNotFoundError(f"{location}: expected exactly one '<layout>/data/{{train,val,test}}' folder, "
                                    f"found {[str(c) for c in candidates]}")
        data = candidates[0]
        missing = [s for s in SPLITS if not (data / s).is_dir()]
        if missing:
            raise FileNotFoundError(f"{data}: missing split folders {missing}")
        return {s: data / s for s in SPLITS}

    def shard_tasks(self, location: str | Path, shard_size: int, options: Mapping[str, Any]) -> list[ShardTask]:
        """One task per `shard_size` records of each split (at most ``options['max_records']``)."""
        from .readers.lmdb_records import num_records

        _check_shard_size(shard_size)
        max_records = options.get("max_records")
        tasks = []
        for split, lmdb in self.split_lmdbs(location).items():
            n = num_records(lmdb) if max_records is None else min(num_records(lmdb), max_records)
            for k, start in enumerate(range(0, n, shard_size)):
                payload = {"lmdb": str(lmdb), "start": start, "stop": min(n, start + shard_size)}
                tasks.append(ShardTask(split, k, shard_relpath(split, k), payload))
        return tasks


@dataclass(frozen=True)
class IndexedLmdb(Downloaded):
    """One raw LMDB (``raw/<name>/data``) with the record indices of each split in
    ``indices/<split>_indices.txt`` (ATOM3D RES)."""

    def sources(self, location: str | Path) -> tuple[Path, dict[str, np.ndarray]]:
        location = Path(location)
        lmdbs = sorted(p for p in location.glob("raw/*/data") if p.is_dir()) or sorted(p for p in location.glob("raw/data") if p.is_dir())
        if len(lmdbs) != 1:
            raise FileNotFoundError(f"{location}: expected one raw LMDB at raw/<name>/data, found {[str(p) for p in lmdbs]}")
        indices = {}
        for split in SPLITS:
            path = location / "indices" / f"{split}_indices.txt"
            if not path.exists():
                raise FileNotFoundError(f"split file {path} is missing")
            indices[split] = np.loadtxt(path, dtype=np.int64, ndmin=1)
        return lmdbs[0], indices

    def shard_tasks(self, location: str | Path, shard_size: int, options: Mapping[str, Any]) -> list[ShardTask]:
        """One task per `shard_size` listed records of each split (at most ``options['max_records']``)."""
        _check_shard_size(shard_size)
        max_records = options.get("max_records")
        lmdb, indices = self.sources(location)
        tasks = []
        for split in SPLITS:
            idx = indices[split][:max_records]
            for k, start in enumerate(range(0, len(idx), shard_size)):
                payload = {"lmdb": str(lmdb), "indices": idx[start:start + shard_size]}
                tasks.append(ShardTask(split, k, shard_relpath(split, k), payload))
        return tasks


@dataclass(frozen=True)
class StructureFolder(Source):
    """A folder of PDB / mmCIF files and a labels CSV (``file,label[,split]``;
    :mod:`preprocess.readers.structures`). Planning scans the CSV once: it refuses names outside
    the folder, counts skipped rows, assigns the seeded split where the CSV has none and writes
    it to ``split.csv`` beside the shards; each shard task then carries its labelled files."""

    kind = "folder"

    def plan(self, location: str | Path, shard_size: int, options: Mapping[str, Any],
             out_dir: str | Path) -> tuple[list[ShardTask], dict[str, Any], SkipReport]:
        """Shard tasks, shard attributes (the classes) and the report of the CSV scan."""
        import json

        from .readers.structures import scan_labels, write_split_csv

        _check_shard_size(shard_size)
        if not options.get("labels"):
            raise ValueError("the structures task needs `labels`, the CSV of file names and labels")
        report = SkipReport()
        kind = options.get("kind", "regression")
        entries, classes = scan_labels(location, options["labels"], kind, int(options.get("split_seed", 0)),
                                       bool(options.get("strict", False)), report)
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        write_split_csv(Path(out_dir) / "split.csv", entries)
        index = {c: i for i, c in enumerate(classes or [])}
        max_records = options.get("max_records")
        tasks = []
        for split in SPLITS:
            records = [{"file": e.file, "path": str(e.path), "split": split,
                        "y": float(e.label) if classes is None else index[str(e.label)]}
                       for e in entries if e.split == split][:max_records]
            for k, start in enumerate(range(0, len(records), shard_size)):
                tasks.append(ShardTask(split, k, shard_relpath(split, k), {"entries": records[start:start + shard_size]}))
        attrs = {"label_names": json.dumps(classes if classes is not None else ["label"]),
                 "labels_csv": str(Path(options["labels"]).resolve())}
        return tasks, attrs, report

    def records(self, payload: Mapping[str, Any], report: SkipReport, strict: bool) -> Iterator[tuple[int, dict]]:
        yield from enumerate(payload["entries"])
