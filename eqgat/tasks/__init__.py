"""The task registry: every task is declared once, in its own module of this package.

``TASKS`` maps a task name to its :class:`~eqgat.tasks.spec.TaskSpec`; the config schema and
defaults (:mod:`eqgat.tasks.config`), the command-line choices, the download rules, shard
building, training, evaluation and the results table all read these declarations. Adding a
task: write its module (reader + ``TASK = TaskSpec(...)``), add it to ``_MODULES`` below, and
give it a config section where its protocol's defaults do not fit.
"""
from __future__ import annotations

from pathlib import Path
from types import ModuleType

from . import lba, ppi, psr, res, rsr, structures, triangle
from .spec import TaskSpec

__all__ = ["TASKS", "archives", "get_task", "predictable_tasks", "preprocess_main", "task_module_file"]

_MODULES: tuple[ModuleType, ...] = (triangle, lba, psr, rsr, res, ppi, structures)

TASKS: dict[str, TaskSpec] = {m.TASK.name: m.TASK for m in _MODULES}
_FILES: dict[str, Path] = {m.TASK.name: Path(m.__file__) for m in _MODULES}


def get_task(name: str) -> TaskSpec:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(TASKS)}") from None


def task_module_file(name: str) -> Path:
    """The file declaring a task (its code version is part of the task's stages)."""
    get_task(name)
    return _FILES[name]


def archives() -> dict[str, tuple]:
    """Every dataset the declared tasks download: dataset name -> its archives
    (:class:`preprocess.download.Archive`); what the download rules are made from."""
    out: dict[str, tuple] = {}
    for task in TASKS.values():
        out.update(task.source.datasets)
    return out


def predictable_tasks() -> list[str]:
    """The tasks whose declarations say how ``predict`` reads a file for their models."""
    return [name for name, spec in TASKS.items() if spec.predict_reader is not None]


def preprocess_main(argv: list[str] | None = None) -> int:
    """``python -m eqgat.tasks``: preprocessing's command line (:mod:`preprocess.cli`) with the
    declared tasks, so that ``build-graphs --task NAME`` finds its declaration."""
    from preprocess.cli import main

    return main(argv, tasks=TASKS)
