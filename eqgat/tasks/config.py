"""The workflow config, as the task declarations shape it.

* :func:`config_schema`: the JSON schema of a config file: the static part in
  ``workflow/schemas/config.schema.yaml`` with the task and model names and one section per task
  filled in from the registries (a task's section: ``graph``, ``model``, ``train`` and the keys
  its declaration adds);
* :func:`task_section`: a task's effective section: its paper protocol (the declaration) with
  the config's section laid over it, key by key;
* :func:`validate_config`: check a config against the schema (a typo or a float where an
  integer belongs is an error) and fill in every task section.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping

import yaml

from . import TASKS
from .spec import TaskSpec

__all__ = ["SCHEMA_PATH", "check_config_size", "config_schema", "deep_merge", "task_section", "validate_config"]

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"

_TRAIN_KEYS = {
    "epochs": {"type": "integer", "minimum": 1, "description": "number of epochs"},
    "batch_size": {"type": "integer", "minimum": 1},
    "lr": {"type": "number", "exclusiveMinimum": 0, "description": "Adam learning rate (the peak, with warm-up)"},
    "schedule": {"enum": ["plateau", "cosine"],
                 "description": "plateau: ReduceLROnPlateau on the selection metric (the paper); cosine: constant, then a cosine decay to lr_min (see decay_epochs)"},
    "warmup_epochs": {"type": "number", "minimum": 0, "description": "linear warm-up from 0 over this many epochs (fractions allowed)"},
    "decay_epochs": {"type": ["number", "null"], "minimum": 0,
                     "description": "cosine: decay over this many last epochs, the rate constant before (null: every epoch after the warm-up)"},
    "lr_factor": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1, "description": "ReduceLROnPlateau factor"},
    "lr_patience": {"type": "integer", "minimum": 0, "description": "ReduceLROnPlateau patience (epochs)"},
    "lr_min": {"type": "number", "minimum": 0},
    "clip_norm": {"type": "number", "exclusiveMinimum": 0, "description": "gradient-norm clip"},
    "standardize_targets": {"type": "boolean",
                            "description": "regression: train on (label - mean) / std of the training split (stored in the "
                                           "checkpoint); metrics and predictions stay in the label's units"},
    "max_atoms": {"type": ["integer", "null"], "minimum": 1,
                  "description": "batches by size: at most this many atoms in a rank's batch (and at most batch_size "
                                 "graphs); null: fixed batches of batch_size graphs"},
    "max_edges": {"type": ["integer", "null"], "minimum": 1,
                  "description": "batches by size: at most this many directed edges in a rank's batch"},
    "oversize": {"enum": ["error", "skip"],
                 "description": "a training graph over max_atoms / max_edges: an error naming it, or left out and "
                                "counted (train.json: oversize_left_out)"},
    "activation_checkpointing": {"type": "boolean",
                                 "description": "recompute each layer's activations in the backward pass: less memory, "
                                                "more time; same gradients"},
    "compile": {"type": "boolean", "description": "torch.compile the training forward pass (a compile before the first step)"},
    "checkpoint_minutes": {"type": "number", "minimum": 0,
                           "description": "write the step-level resume state this often, so a kill loses at most this "
                                          "long (0: only at epoch ends and when stopping)"},
    "time_limit_minutes": {"type": ["number", "null"], "exclusiveMinimum": 0,
                           "description": "stop resumably (exit status 75) this long after the start; the job's runtime "
                                          "resource and SLURM's end time also stop training in time"},
}


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any] | None) -> dict[str, Any]:
    """`base` with `over` laid on top, mappings merged key by key (neither is changed)."""
    out = copy.deepcopy(dict(base))
    for key, value in (over or {}).items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def task_section(task: TaskSpec, section: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The effective config section of a task: its paper protocol (as the section configures
    the task, e.g. a structures kind), overridden by `section`."""
    configured = task.for_section(deep_merge(task.protocol, section))
    return deep_merge(configured.protocol, section)


def _section_schema(task: TaskSpec, model_names: list[str]) -> dict[str, Any]:
    train = dict(_TRAIN_KEYS)
    train["loss"] = {"enum": list(task.loss_names), "description": "training loss"}
    train["selection"] = {"enum": list(task.selection_choices),
                          "description": "validation metric selecting the best checkpoint and driving the LR plateau"}
    return {
        "type": "object",
        "additionalProperties": False,
        "description": f"{task.title}; unset keys take the paper protocol's values (eqgat/tasks/{task.name}.py)",
        "properties": {
            "graph": {"type": "object", "additionalProperties": False, "properties": {
                "cutoff": {"type": "number", "exclusiveMinimum": 0, "description": "radius-graph cutoff in Å (the model's too)"},
                "max_neighbors": {"type": ["integer", "null"], "minimum": 1,
                                  "description": "keep only the k nearest neighbours (null = exact radius graph)"},
                "max_degree": {"type": ["integer", "null"], "minimum": 1,
                               "description": "a structure with an atom of more neighbours (after max_neighbors) is "
                                              "skipped and counted as too_many_neighbors, or an error when strict; "
                                              "coincident atoms would otherwise need n² edges (null = no limit)"},
            }},
            "model": {"type": "object", "additionalProperties": False, "properties": {
                "overrides": {"type": "object", "propertyNames": {"enum": model_names},
                              "additionalProperties": {"type": "object"},
                              "description": "per model: hyper-parameters replacing the task's preset"},
            }},
            "train": {"type": "object", "additionalProperties": False, "properties": train},
            **copy.deepcopy(dict(task.options_schema)),
        },
    }


def config_schema(base_path: str | Path = SCHEMA_PATH) -> dict[str, Any]:
    """The config schema: the static part with the registries' names and task sections."""
    from eqgat.models import MODELS

    schema = yaml.safe_load(Path(base_path).read_text())
    names = list(MODELS)
    props = schema["properties"]
    props["tasks"]["items"] = {"enum": list(TASKS)}
    props["models"]["items"] = {"enum": names}
    props["notes"]["propertyNames"] = {"enum": list(TASKS)}
    for task in TASKS.values():
        props[task.name] = _section_schema(task, names)
    return schema


def _is_integer(checker, instance) -> bool:
    """Integers are ints: 1.0 is not (JSON Schema would accept it and the job fail later)."""
    return isinstance(instance, int) and not isinstance(instance, bool)


def _is_number(checker, instance) -> bool:
    return isinstance(instance, (int, float)) and not isinstance(instance, bool)


def _validator(schema: dict[str, Any]):
    """A Draft 2020-12 validator with strict integers that also fills in the schema's defaults."""
    from jsonschema import Draft202012Validator, validators

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub:
                    instance.setdefault(name, copy.deepcopy(sub["default"]))
        yield from Draft202012Validator.VALIDATORS["properties"](validator, properties, instance, schema)

    types = Draft202012Validator.TYPE_CHECKER.redefine_many({"integer": _is_integer, "number": _is_number})
    return validators.extend(Draft202012Validator, {"properties": set_defaults}, type_checker=types)(schema)


#: values (mappings, lists, scalars) a config may hold once YAML aliases are expanded, and the
#: characters of its strings: real configs hold hundreds; an alias bomb would hold billions
MAX_CONFIG_VALUES = 100_000
MAX_CONFIG_CHARS = 10_000_000
#: characters of one schema error message (a message quotes the offending value)
MAX_MESSAGE_CHARS = 300


def check_config_size(config: Any, max_values: int = MAX_CONFIG_VALUES, max_chars: int = MAX_CONFIG_CHARS) -> None:
    """Refuse a config that is huge once its YAML aliases are expanded (each alias counts every
    time it is used), naming the key where the limit was passed; stops at the limit."""
    values = chars = 0
    stack: list[tuple[str, Any]] = [("", config)]
    while stack:
        where, value = stack.pop()
        values += 1
        if isinstance(value, str):
            chars += len(value)
        elif isinstance(value, dict):
            stack.extend((f"{where}.{k}" if where else str(k), v) for k, v in value.items())
        elif isinstance(value, (list, tuple)):
            stack.extend((f"{where}[{i}]", v) for i, v in enumerate(value))
        if values > max_values or chars > max_chars:
            raise ValueError(f"invalid config: {where or '<top>'}: the config holds more than {max_values:,} values or "
                             f"{max_chars:,} characters once its YAML aliases (*name) are expanded; refused "
                             "(an alias repeated inside itself?)")


def _short(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """A schema error message cut to `limit` characters (it quotes the offending value)."""
    return message if len(message) <= limit else f"{message[:limit]}... ({len(message):,} characters)"


def validate_config(config: dict[str, Any], base_path: str | Path = SCHEMA_PATH) -> dict[str, Any]:
    """Check `config` (in place: defaults added, every task section made effective) and return
    it; ``ValueError`` lists every problem with its key path (messages cut short), after refusing
    a config too large to check (:func:`check_config_size`)."""
    check_config_size(config)
    validator = _validator(config_schema(base_path))
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.path))
    if errors:
        lines = [f"  {'.'.join(str(p) for p in e.path) or '<top>'}: {_short(e.message)}" for e in errors]
        raise ValueError("invalid config:\n" + "\n".join(lines))
    for task in TASKS.values():
        config[task.name] = task_section(task, config.get(task.name))
    missing = [f"{name}.{key}" for name in config["tasks"] for key in TASKS[name].required_options
               if config[name].get(key) in (None, "")]
    if missing:
        raise ValueError(f"invalid config: set {', '.join(missing)} to run {', '.join(sorted({m.split('.')[0] for m in missing}))}")
    return config
