"""Parameter counts of the models the paper configuration trains (``python -m eqgat params``)."""
from __future__ import annotations

from eqgat.models import build_model, count_parameters, task_model_hparams
from eqgat.paper import AUTHORS_EQGAT_PARAMS, paper_param_count
from eqgat.tasks import TASKS

__all__ = ["param_rows", "print_param_table"]


def paper_protocol_count(model: str, task_name: str) -> int:
    """Trainable parameters of `model` as the paper protocol builds it for a task."""
    task = TASKS[task_name]
    hparams = task_model_hparams(task, model, task.protocol["graph"]["cutoff"])
    return count_parameters(build_model(model, **hparams))


def param_rows(model: str = "eqgat") -> list[tuple[str, int, int | None, int | None]]:
    """Rows ``(task, ours, the authors' scripts or None, the paper (rounded) or None)``."""
    return [(name, paper_protocol_count(model, name), AUTHORS_EQGAT_PARAMS.get(name) if model == "eqgat" else None,
             paper_param_count(model, name)) for name in TASKS]


def print_param_table(models: list[str]) -> None:
    for model in models:
        print(f"{model}\n{'task':<10}{'ours':>10}{'authors':>10}{'paper':>10}")
        for task, ours, authors, paper in param_rows(model):
            fmt = lambda n: "n/a" if n is None else f"{n:,}"
            print(f"{task:<10}{ours:>10,}{fmt(authors):>10}{fmt(paper):>10}")
        print()
