"""What a task declaration hands to preprocessing: its :class:`Source`, its shard columns
(:class:`Field`) and its reader as a :class:`Ref`.

The declarations themselves live in :mod:`eqgat.tasks`, which imports these classes;
preprocessing never imports the declarations: the caller passes one in. This module imports
nothing heavy, so a declaration can be read (by Snakemake, by a Dask worker unpickling one)
without loading the readers' libraries.
"""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Iterator, Mapping

__all__ = ["DEFAULT_MAX_DEGREE", "FIELD_KINDS", "Field", "Ref", "Source"]

#: the default ``max_degree`` of a declaration's graphs (:mod:`preprocess.neighbors`): an atom
#: with more neighbours within the cutoff marks a broken structure (coincident or overlapping atoms).  At protein density (~0.058 heavy
#: atoms per cubic Å, ~0.11 with hydrogens) a 4.5 Å ball holds ~22 heavy atoms (~43 with
#: hydrogens) and at most ~60-80 even in dense packing; a Triangle cloud has at most 99
#: neighbours (100 points)
DEFAULT_MAX_DEGREE = 256

#: per-graph shard columns: one integer, one string, or a variable-length integer / string array
FIELD_KINDS = ("int", "str", "ints", "strs")


@dataclass(frozen=True)
class Field:
    """A per-graph column of the shards besides ``id`` and ``y`` (see docs/shards.md).

    ``int`` and ``str`` are one value per graph (integer columns whose name contains
    ``index`` are node indices: PyG adds each graph's node offset when batching); ``ints`` and
    ``strs`` are a variable-length array per graph (``ints`` may have a fixed trailing shape).
    """

    name: str
    kind: str
    doc: str = ""

    def __post_init__(self) -> None:
        if self.kind not in FIELD_KINDS:
            raise ValueError(f"field kind must be one of {FIELD_KINDS}, got {self.kind!r}")

    @property
    def ragged(self) -> bool:
        return self.kind in ("ints", "strs")


@dataclass(frozen=True)
class Ref:
    """A function named by its module and attribute, imported on its first call (a reader
    whose module needs pandas or gemmi costs nothing until records are read)."""

    module: str
    name: str

    def file(self) -> str:
        """The module's source file, found without importing the module."""
        return importlib.util.find_spec(self.module).origin

    def resolve(self) -> Callable[..., Any]:
        return getattr(importlib.import_module(self.module), self.name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)


class Source:
    """Where a task's structures come from and how they are cut into shard tasks.

    A subclass sets ``kind`` (``"generated"``, ``"download"`` or ``"folder"``) and implements
    :meth:`shard_tasks`; the other hooks have defaults that add nothing.
    """

    kind: str = ""
    #: dataset name -> its archives (:class:`preprocess.download.Archive`); none by default
    datasets: Mapping[str, tuple] = MappingProxyType({})

    def shard_tasks(self, location: Any, shard_size: int, options: Mapping[str, Any]) -> list:
        """One :class:`~preprocess.build.ShardTask` per shard file."""
        raise NotImplementedError(f"{type(self).__name__} does not cut its data into shard tasks")

    def records(self, payload: Any, report: Any, strict: bool) -> Iterator[tuple[int, Any]]:
        """``(index, record)`` of one shard task, for the task's reader."""
        raise NotImplementedError(f"{type(self).__name__} has no records for a reader")

    def plan(self, location: Any, shard_size: int, options: Mapping[str, Any],
             out_dir: Any) -> tuple[list, dict[str, Any], Any]:
        """Shard tasks, extra shard attributes, and a skip report of what was left out before
        splitting (``None``: nothing); by default just :meth:`shard_tasks`."""
        return self.shard_tasks(location, shard_size, options), {}, None

    def attrs(self, location: Any, options: Mapping[str, Any]) -> dict[str, Any]:
        """Shard attributes describing the source (none by default)."""
        return {}

    def block_maker(self, location: Any, **graph: Any) -> Callable | None:
        """A function shard task -> graph block that replaces the reader route (``None``: records
        go through the task's reader)."""
        return None
