"""Model registry and factory.

``build_model(name, **hparams)`` builds a registered model; ``model_arguments(name)`` lists the
hyper-parameters it takes (its constructor's, less those an entry fixes: the ablations fix
``cross_product`` / ``feature_attention``). ``task_model_hparams`` gives a model the sizes its
task declares: each model takes only its own arguments from the task's preset.

The registry itself imports no torch: each entry loads its class on first use, so reading the
model names (the config schema, Snakemake's wildcards) costs nothing.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:
    from torch import nn

    from .base import GraphModel

__all__ = ["EQGAT", "EQGATBlock", "GraphModel", "MODELS", "ModelEntry", "PaiNN", "SchNet", "build_model",
           "count_parameters", "fit_hparams", "model_arguments", "register_model", "task_model_hparams"]


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its class (loaded on first use) and the arguments it fixes."""

    load: Callable[[], type[GraphModel]]
    fixed: Mapping[str, Any] = field(default_factory=dict)
    doc: str = ""

    def arguments(self) -> tuple[str, ...]:
        from .base import constructor_arguments

        return tuple(a for a in constructor_arguments(self.load()) if a not in self.fixed)

    def build(self, **hparams: Any) -> GraphModel:
        clash = sorted(k for k in set(hparams) & set(self.fixed) if hparams[k] != self.fixed[k])
        if clash:
            raise ValueError(f"this model fixes {', '.join(f'{k}={self.fixed[k]!r}' for k in clash)}; "
                             f"do not set {', '.join(clash)}")
        return self.load().from_hparams(**{**hparams, **self.fixed})


#: the classes this package exports, by module (imported on first access, see ``__getattr__``)
_CLASSES = {"EQGAT": ".eqgat", "EQGATBlock": ".eqgat", "GraphModel": ".base", "PaiNN": ".painn", "SchNet": ".schnet",
            "SEGNN": ".segnn"}


def _class(name: str) -> Callable[[], type[GraphModel]]:
    """A loader of model class `name` (torch, and for SEGNN e3nn, are imported when it runs)."""
    return lambda: getattr(importlib.import_module(_CLASSES[name], __name__), name)


def __getattr__(name: str) -> Any:
    if name in _CLASSES:
        return _class(name)()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


MODELS: dict[str, ModelEntry] = {
    "eqgat": ModelEntry(_class("EQGAT"), doc="EQGAT"),
    "eqgat_nocross": ModelEntry(_class("EQGAT"), {"cross_product": False}, "EQGAT without the cross product (Table 4)"),
    "eqgat_noatt": ModelEntry(_class("EQGAT"), {"feature_attention": False}, "EQGAT without feature attention (Table 4)"),
    # baselines (docs/baselines.md)
    "schnet": ModelEntry(_class("SchNet"), doc="SchNet"),
    "painn": ModelEntry(_class("PaiNN"), doc="PaiNN"),
    "segnn": ModelEntry(_class("SEGNN"), doc="SEGNN (e3nn)"),
}


def _entry(name: str) -> ModelEntry:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}") from None


def register_model(name: str, entry: ModelEntry) -> None:
    if name in MODELS:
        raise ValueError(f"model {name!r} is already registered")
    MODELS[name] = entry


def build_model(name: str, **hparams: Any) -> GraphModel:
    return _entry(name).build(**hparams)


def model_arguments(name: str) -> tuple[str, ...]:
    return _entry(name).arguments()


def fit_hparams(name: str, hparams: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of a shared set of sizes (a task preset) that model `name` takes."""
    accepted = set(model_arguments(name))
    return {k: v for k, v in hparams.items() if k in accepted}


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def task_model_hparams(task, name: str, cutoff: float, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Hyper-parameters of model `name` for a task: the arguments it takes from the task's
    preset (:meth:`~eqgat.tasks.spec.TaskSpec.model_preset`), the graphs' `cutoff`, then
    `overrides` (an unknown key, or a cutoff other than the graphs', is an error)."""
    accepted = set(model_arguments(name))
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - accepted)
    if unknown:
        raise ValueError(f"unknown hyper-parameter(s) for {name}: {', '.join(unknown)}; "
                         f"accepted: {', '.join(sorted(accepted))}")
    if "cutoff" in overrides and float(overrides["cutoff"]) != float(cutoff):
        raise ValueError(f"model cutoff {overrides['cutoff']} Å differs from the cutoff the graphs were built "
                         f"with ({cutoff} Å): the cutoff is the graphs' (set it in the task's graph section)")
    hparams = fit_hparams(name, task.model_preset(name))
    hparams["cutoff"] = float(cutoff)
    return {**hparams, **overrides}
