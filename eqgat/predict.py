"""Predictions of a trained model for new PDB / mmCIF files (``python -m eqgat predict``).

The files are read the way the model's training data were (the settings a checkpoint carries
under ``data``: task, cutoff, neighbour cap, degree guard, element vocabulary, the structures
task's hydrogen and water policy and read caps, the class names) and go through the model in
batches, so thousands of files take bounded memory; every file gets one row, with the reason
where it could not be read.

Which tasks' models can score files, and how a file becomes their graph, is the task
declaration's: its ``predict_reader`` (:class:`eqgat.tasks.spec.TaskSpec`). Each file is
bounded on its own: at most ``max_file_bytes`` bytes (after decompression) of a regular file,
at most ``max_atoms`` atoms, no atom with more than ``max_degree`` neighbours; a file over a
cap gets its row with the reason (``file_too_large``, ``too_many_atoms``,
``too_many_neighbors``, ``not_regular_file``) and the other files are scored as usual.

``predictions.csv`` is safe to open in a spreadsheet: a text cell (file name, class name,
error) starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading
apostrophe, so that it is not run as a formula (OWASP's advice on CSV injection); numbers such
as ``-1.5`` are written as they are.
"""
from __future__ import annotations

import csv
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from tqdm import tqdm

from eqgat.tasks import predictable_tasks
from eqgat.train.checkpoint import CheckpointError
from preprocess.atomic import atomic_path, terminate_unwinds
from preprocess.elements import ELEMENTS
from preprocess.readers.structures import expand  # re-exported: the files predict scores

log = logging.getLogger(__name__)

__all__ = ["ReadingSettings", "expand", "predict_files", "predictable_tasks", "read_graph", "spreadsheet_safe"]

#: read caps a checkpoint may record and ``predict`` may override
LIMITS = ("max_file_bytes", "max_atoms", "max_degree")
#: first characters a spreadsheet reads as the start of a formula (OWASP, CSV injection)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: the reason of a file whose name is not UTF-8 (it cannot be written to the CSV as it is)
NON_UTF8_NAME = "non_utf8_name"


def _limit(value: Any, name: str, path: str | Path | None) -> int | None:
    """A cap recorded in checkpoint `path` (or given, `path` None) as an int >= 1, or None (no
    limit: None or -1)."""
    if value is None or value == -1:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        what = f"{name} {value!r} is not an integer >= 1 (or -1: no limit)"
        raise CheckpointError(f"{path}: the recorded {what}") if path is not None else ValueError(f"predict: {what}")
    return value


@dataclass(frozen=True)
class ReadingSettings:
    """How a checkpoint's training structures were read (``best.pt['data']``), and the caps
    ``predict`` applies to each file."""

    task: str
    cutoff: float
    max_neighbors: int | None
    label_kind: str
    label_names: tuple[str, ...]
    reader: dict
    elements: tuple[str, ...]
    limits: Mapping[str, int | None] = field(default_factory=dict)

    @classmethod
    def of(cls, saved: dict, path: str | Path, limits: Mapping[str, int | None] | None = None) -> ReadingSettings:
        """The settings of a loaded checkpoint (`path` names it in errors); `limits` (keys of
        ``LIMITS``) override the caps it recorded, which override the defaults."""
        from eqgat.tasks import TASKS

        data = saved.get("data")
        if not isinstance(data, dict) or "task" not in data:
            raise CheckpointError(f"{path}: no reading settings (task, cutoff, elements, ...): not a model "
                                  f"checkpoint written by `eqgat train` of this version")
        spec = TASKS.get(data["task"]) if isinstance(data["task"], str) else None
        if spec is None or spec.predict_reader is None:
            raise ValueError(f"{path} is a model of task {data['task']!r}; predict scores whole structures with "
                             f"models of the graph-level tasks {', '.join(predictable_tasks())}")
        if tuple(data.get("elements", ())) != ELEMENTS:
            raise ValueError(f"{path} was trained with the element vocabulary {data.get('elements')}, "
                             f"this version reads {list(ELEMENTS)}")
        names = data.get("label_names", ())
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
            raise CheckpointError(f"{path}: the recorded label names {names!r} are not a list of strings")
        if data.get("label_kind") == "classification" and not names:
            raise CheckpointError(f"{path}: a classification model without class names (data.label_names is "
                                  f"empty): its predictions could not be named")
        return cls(data["task"], _cutoff(data.get("cutoff"), path), _limit(data.get("max_neighbors"), "max_neighbors", path),
                   str(data.get("label_kind")), tuple(names), dict(data.get("reader") or {}), tuple(data["elements"]),
                   _limits(data, limits or {}, path))

    @property
    def spec(self):
        from eqgat.tasks import get_task

        return get_task(self.task)


def _cutoff(value: Any, path: str | Path) -> float:
    try:
        cutoff = float(value)
    except (TypeError, ValueError):
        raise CheckpointError(f"{path}: the recorded cutoff {value!r} is not a number") from None
    if not math.isfinite(cutoff) or cutoff <= 0:
        raise CheckpointError(f"{path}: the recorded cutoff {value!r} is not a finite number > 0")
    return cutoff


def _limits(data: Mapping[str, Any], given: Mapping[str, int | None], path: str | Path) -> dict[str, int | None]:
    """The caps: given ones, else the checkpoint's (``max_degree`` of its graphs, the read caps of
    its reader settings), else the defaults."""
    from preprocess.neighbors import DEFAULT_MAX_DEGREE
    from preprocess.readers.structures import DEFAULT_MAX_ATOMS, DEFAULT_MAX_FILE_BYTES

    recorded = {**dict(data.get("reader") or {}), "max_degree": data.get("max_degree", DEFAULT_MAX_DEGREE)}
    defaults = {"max_file_bytes": DEFAULT_MAX_FILE_BYTES, "max_atoms": DEFAULT_MAX_ATOMS, "max_degree": DEFAULT_MAX_DEGREE}
    out = {}
    for name in LIMITS:
        value = given[name] if name in given else recorded.get(name, defaults[name])
        out[name] = _limit(value, name, None if name in given else path)
    return out


def _edges(pos: np.ndarray, settings: ReadingSettings) -> np.ndarray:
    """The radius graph of one file, refused (``too_many_neighbors``) when an atom has more than
    ``max_degree`` neighbours: the count pass finds it before any edge is allocated. A file of at
    most ``max_degree + 1`` atoms cannot exceed it and takes the plain search (the same edges)."""
    from preprocess.neighbors import NeighborLimitError, radius_graph, radius_graph_batch
    from preprocess.readers import SkipSample
    from preprocess.readers.report import TOO_MANY_NEIGHBORS

    limit = settings.limits.get("max_degree")
    if limit is None or len(pos) <= limit + 1:
        return radius_graph(pos, settings.cutoff, settings.max_neighbors)
    try:
        edge_index, _ = radius_graph_batch(pos, np.array([0, len(pos)]), settings.cutoff, settings.max_neighbors,
                                           max_degree=limit)
    except NeighborLimitError as exc:
        e = exc.excess[0]
        raise SkipSample(TOO_MANY_NEIGHBORS, f"atom {e.atom} has {e.degree} neighbours within {exc.cutoff:g} Å, more "
                                             f"than max_degree = {exc.limit} (coincident or overlapping atoms?)") from None
    return edge_index


def read_graph(path: str | Path, settings: ReadingSettings, ligand_resname: str | None = None,
               pocket_radius: float | None = None):
    """One file as the graph its model expects (``torch_geometric.data.Data``), read by the task's
    ``predict_reader`` within the caps of ``settings.limits`` (`ligand_resname`, `pocket_radius`:
    LBA models; None: the declaration's default)."""
    from torch_geometric.data import Data

    from preprocess.readers import SkipSample

    if not _utf8(str(path)):
        raise SkipSample(NON_UTF8_NAME, "the file name is not UTF-8; rename the file to score it")
    options = {**settings.reader, **{k: v for k, v in settings.limits.items() if k != "max_degree"},
               "ligand_resname": ligand_resname}
    if pocket_radius is not None:
        options["pocket_radius"] = pocket_radius
    pos, z = settings.spec.predict_reader(path, options)
    edge_index = _edges(pos, settings)
    data = Data(z=torch.from_numpy(np.asarray(z).astype(np.int64)),
                pos=torch.from_numpy(np.ascontiguousarray(pos, np.float32)),
                edge_index=torch.from_numpy(np.asarray(edge_index, np.int64)))
    data.num_nodes = len(z)
    return data


def _failure(exc: Exception) -> tuple[str, str]:
    """Why a file could not be scored: its skip reason and the message on one line."""
    from preprocess.readers import SkipSample

    reason = exc.reason if isinstance(exc, SkipSample) else "unreadable" if isinstance(exc, ValueError) else type(exc).__name__
    text = str(exc) if isinstance(exc, (SkipSample, ValueError)) else f"{type(exc).__name__}: {exc}"
    return reason, " ".join(text.split())


def spreadsheet_safe(text: str) -> str:
    """A text cell a spreadsheet will not run: one starting with ``FORMULA_START`` gets a leading
    apostrophe, unless it is a number (``-1.5`` stays a number)."""
    if not text.startswith(FORMULA_START):
        return text
    try:
        float(text)
        return text
    except ValueError:
        return "'" + text


def _display_name(name: str) -> str:
    """A file name as text: bytes that are not UTF-8 written as \\xNN escapes."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _header(settings: ReadingSettings) -> list[str]:
    probs = [spreadsheet_safe(f"prob_{c}") for c in settings.label_names] if settings.label_kind == "classification" else []
    return ["file", "prediction", *probs, "error"]


def _rows(files: Sequence[str], out: torch.Tensor | None, settings: ReadingSettings,
          errors: dict[int, str]) -> Iterable[list[Any]]:
    """CSV rows of one chunk: predictions of the files that were read, errors of the others."""
    k = 0
    n_probs = len(settings.label_names) if settings.label_kind == "classification" else 0
    for i, name in enumerate(files):
        cell = spreadsheet_safe(_display_name(name))
        if i in errors:
            yield [cell, "", *[""] * n_probs, spreadsheet_safe(errors[i])]
            continue
        row = out[k]
        k += 1
        if settings.label_kind == "classification":
            p = torch.softmax(row.double(), dim=-1).tolist()
            yield [cell, spreadsheet_safe(settings.label_names[int(np.argmax(p))]), *[repr(v) for v in p], ""]
        else:
            yield [cell, repr(float(row.reshape(-1)[0])), ""]


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_out(out_csv: str | Path, checkpoint: str | Path, files: Sequence[str]) -> None:
    """Refuse an output that is a folder, the checkpoint or one of the structure files (paths
    resolved, hard links and symlinks included), before anything is scored."""
    out = Path(out_csv)
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give the path of the CSV file to write")
    if not out.exists() and not out.is_symlink():
        return
    for what, path in (("the checkpoint", Path(checkpoint)), *(("an input structure", Path(f)) for f in files)):
        if _same_file(out, path):
            raise ValueError(f"--out {out} is {what} ({path}): predictions would overwrite it; give another path")


def _checked_width(out: torch.Tensor, settings: ReadingSettings, checkpoint: str | Path) -> None:
    """A classifier's outputs must match its class names (a crafted checkpoint may disagree)."""
    if settings.label_kind == "classification" and out.shape[-1] != len(settings.label_names):
        raise CheckpointError(f"{checkpoint}: the model gives {out.shape[-1]} outputs but the checkpoint names "
                              f"{len(settings.label_names)} classes {list(settings.label_names)}")


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def predict_files(checkpoint: str | Path, files: Sequence[str | Path], out_csv: str | Path, device: torch.device,
                  batch_size: int = 16, ligand_resname: str | None = None,
                  pocket_radius: float | None = None, progress: bool = True,
                  limits: Mapping[str, int | None] | None = None) -> dict[str, Any]:
    """Score `files` with a best checkpoint; write ``file,prediction[,prob_<class>...],error``
    atomically to `out_csv`. `limits` override the checkpoint's caps (``max_file_bytes``,
    ``max_atoms``, ``max_degree``; None: no limit). Returns how many files were scored and
    failed, and the failures per reason (``skipped``)."""
    from torch_geometric.data import Batch

    from eqgat.train.checkpoint import load_checkpoint
    from eqgat.train.evaluate import load_best_model
    from preprocess.readers.report import SkipReport

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch size {batch_size!r}: expected an integer >= 1")
    names = [str(f) for f in files]
    check_out(out_csv, checkpoint, names)
    settings = ReadingSettings.of(load_checkpoint(checkpoint, map_location="cpu"), checkpoint, limits)
    model, _ = load_best_model(checkpoint, device)
    model.eval()
    skipped = SkipReport()
    scored = 0
    with terminate_unwinds(), atomic_path(out_csv) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(_header(settings))
        bar = tqdm(total=len(names), desc="predict", unit="file", disable=not progress)
        for chunk in _chunks(names, batch_size):
            graphs, errors = [], {}
            for i, name in enumerate(chunk):
                try:
                    graphs.append(read_graph(name, settings, ligand_resname, pocket_radius))
                except Exception as exc:  # every file gets its row; the reason is reported there
                    reason, errors[i] = _failure(exc)
                    skipped.add(reason, _display_name(name))
            out = None
            if graphs:
                with torch.no_grad():
                    out = model(Batch.from_data_list(graphs).to(device)).cpu()
                _checked_width(out, settings, checkpoint)
            writer.writerows(_rows(chunk, out, settings, errors))
            scored += len(graphs)
            bar.update(len(chunk))
        bar.close()
    counts = {"scored": scored, "failed": skipped.total, "skipped": dict(sorted(skipped.counts.items()))}
    detail = ", ".join(f"{reason}: {n}" for reason, n in counts["skipped"].items())
    log.info("scored %d file(s), %d could not be read%s (see the error column of %s)", scored, skipped.total,
             f" ({detail})" if detail else "", out_csv)
    return counts

