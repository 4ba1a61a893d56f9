"""What a task declaration holds (:class:`TaskSpec`) and its parts.

A task is declared once, in its own module of :mod:`eqgat.tasks`, and everything else (the
config schema and defaults, the command-line choices, the download rules, shard building,
training, evaluation and the results table) reads that declaration. Nothing here imports torch,
pandas or gemmi: Snakemake reads every declaration when it parses the workflow. What
preprocessing needs from a declaration (:class:`Source`, :class:`Field`, the reader as a
:class:`Ref`) is defined in :mod:`preprocess.spec`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from preprocess.spec import DEFAULT_MAX_DEGREE, FIELD_KINDS, Field, Ref, Source

__all__ = [
    "FIELD_KINDS", "LABEL_KINDS", "READOUTS", "Field", "Label", "Metric", "Ref", "Source", "TaskSpec",
    "atom3d_protocol", "train_protocol",
]

READOUTS = ("graph", "node", "pair")
LABEL_KINDS = ("regression", "classification", "binary")


@dataclass(frozen=True)
class Metric:
    """A test metric: its name in ``evaluate``'s result and which way is better."""

    name: str
    higher_is_better: bool
    in_table: bool = False  # a column of the results table

    @property
    def direction(self) -> str:
        return "higher" if self.higher_is_better else "lower"


@dataclass(frozen=True)
class Label:
    """What is predicted per graph (or per residue pair).

    ``regression``: ``names`` are the targets (float32 [T] per graph, MSE by default);
    ``classification``: ``names`` are the classes in label order (an int per graph,
    cross-entropy); ``binary``: 0/1 (an int, BCE on one logit).
    """

    kind: str
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in LABEL_KINDS:
            raise ValueError(f"label kind must be one of {LABEL_KINDS}, got {self.kind!r}")

    @property
    def out_dim(self) -> int:
        return 1 if self.kind == "binary" else len(self.names)

    @property
    def default_loss(self) -> str:
        return {"regression": "mse", "classification": "cross_entropy", "binary": "bce"}[self.kind]


Evaluate = Callable[[np.ndarray, np.ndarray, Mapping[str, Sequence]], dict]


@dataclass(frozen=True)
class TaskSpec:
    """One learning task, declared once (see the modules of :mod:`eqgat.tasks`).

    * ``source``, ``reader``: where the structures come from (a :class:`Source`) and how one
      record becomes samples (``reader(record, index, strict=, report=, **options) ->
      Iterator[Sample]``, a function or a :class:`Ref` to one, imported when first called);
    * ``fields``: the per-graph shard columns the reader fills besides ``id`` and ``y``;
    * ``label``, ``readout``: what is predicted and where the model reads it out
      (``graph`` mean pooling, ``node`` at ``center_index``, ``pair`` at ``center_index0/1``);
    * ``losses``: the training losses a config may choose (the first is the label's default
      unless ``protocol['train']['loss']`` says otherwise), ``metrics`` and ``evaluate``
      (``evaluate(pred, y, columns) -> {metric: value}``, ``columns`` the string and integer
      fields of the evaluated graphs);
    * ``model``: EQGAT's hyper-parameters for this task (paper Table 2 / appendix B) without
      the cutoff, which is the graphs' own; ``model_presets``: how other models deviate;
    * ``protocol``: the paper's experiment as a config section (``graph``, ``train``, and the
      task's own keys, described by ``options_schema``): config sections only override it;
      ``build_options`` names the keys the shards depend on (source and reader; a key that only
      the training view reads, like PPI's ``pairs``, is not one), ``reader_options`` those of
      them the reader takes;
    * ``dataset``: the training / evaluation view of a split (``None``: one graph per shard
      entry; PPI: residue pairs drawn per epoch), called as
      ``dataset(manifest_path, split, section, seed)``; ``edges_in_shards=False`` when that view
      builds the graphs' edges itself (PPI: the neighbourhoods of the drawn residues);
    * ``configure``: for a task whose label depends on its config (users' structures: regression
      or classes named in a CSV), ``configure(spec, section, label_names) -> TaskSpec`` gives
      the task as a section configures it (:meth:`for_section`); ``required_options`` are keys
      a config must set when it runs the task;
    * ``predict_reader``: how ``python -m eqgat predict`` reads a new PDB / mmCIF file for this
      task's models (``None``: they cannot score files), called as
      ``predict_reader(path, options) -> (pos float32 [N, 3], z int [N])``; ``options`` holds the
      reader settings the checkpoint recorded, the read caps (``max_file_bytes``, ``max_atoms``)
      and predict's own options (``ligand_resname``, ``pocket_radius``). It raises
      ``SkipSample`` or ``ValueError`` for a file it cannot use. A declaration imports what the
      reader needs inside the function, so declarations stay light to import.
    """

    name: str
    title: str
    source: Source
    reader: Callable[..., Iterator] | None
    label: Label
    readout: str
    metrics: tuple[Metric, ...]
    evaluate: Evaluate
    model: Mapping[str, Any]
    protocol: Mapping[str, Any]
    fields: tuple[Field, ...] = ()
    losses: tuple[str, ...] = ()
    model_presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    options_schema: Mapping[str, Any] = field(default_factory=dict)
    reader_options: tuple[str, ...] = ()
    build_options: tuple[str, ...] = ("strict", "max_records")
    required_options: tuple[str, ...] = ()
    dataset: Callable[..., Any] | None = None
    edges_in_shards: bool = True
    configure: Callable[..., TaskSpec] | None = None
    predict_reader: Callable[[Any, Mapping[str, Any]], tuple[np.ndarray, np.ndarray]] | None = None

    def __post_init__(self) -> None:
        # the protocol states the loss and the selection metric even where they are the defaults
        train = {"loss": self.label.default_loss, "selection": "loss", **self.protocol.get("train", {})}
        object.__setattr__(self, "protocol", {**self.protocol, "train": train})
        if self.readout not in READOUTS:
            raise ValueError(f"{self.name}: readout must be one of {READOUTS}, got {self.readout!r}")
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: duplicate metric names {names}")
        needed = {"node": ("center_index",), "pair": ("center_index0", "center_index1")}.get(self.readout, ())
        declared = {f.name for f in self.fields}
        if self.dataset is None and not set(needed) <= declared:
            raise ValueError(f"{self.name}: readout {self.readout!r} needs the int fields {needed}")
        selection = train["selection"]
        if selection not in self.selection_choices:
            raise ValueError(f"{self.name}: selection {selection!r} is not 'loss' or a declared metric")
        if train["loss"] not in self.loss_names:
            raise ValueError(f"{self.name}: the protocol's loss is not among the declared losses")

    def for_section(self, section: Mapping[str, Any], label_names: Sequence[str] | None = None) -> TaskSpec:
        """The task as a config section (and, where the data name them, its classes) configure it."""
        return self if self.configure is None else self.configure(self, section, label_names)

    # -- derived facts ---------------------------------------------------------------------------
    @property
    def out_dim(self) -> int:
        return self.label.out_dim

    @property
    def loss_names(self) -> tuple[str, ...]:
        """The losses a config may choose: the label's default first, then the declared ones."""
        return tuple(dict.fromkeys((self.label.default_loss, *self.losses)))

    @property
    def table_metrics(self) -> tuple[Metric, ...]:
        return tuple(m for m in self.metrics if m.in_table)

    @property
    def selection_choices(self) -> tuple[str, ...]:
        """What may select the best checkpoint and drive the LR plateau."""
        return ("loss", *(m.name for m in self.metrics))

    def metric(self, name: str) -> Metric:
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(f"task {self.name!r} has no metric {name!r}; it has {[m.name for m in self.metrics]}")

    def selection_higher_is_better(self, selection: str) -> bool:
        """Direction of a selection criterion: the loss falls, metrics go their declared way."""
        return False if selection == "loss" else self.metric(selection).higher_is_better

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"task {self.name!r} has no field {name!r}")

    def model_preset(self, model: str) -> dict[str, Any]:
        """The task's model hyper-parameters for `model` (before dropping arguments it lacks)."""
        return {**self.model, "out_dim": self.out_dim, "readout": self.readout,
                **self.model_presets.get(model, {})}


def train_protocol(epochs: int, batch_size: int, lr: float = 1e-4, **other: Any) -> dict[str, Any]:
    """The authors' training settings (Adam, ReduceLROnPlateau(0.75, 10, min 1e-7), clip 10,
    unscaled targets) with a task's epochs and batch size."""
    return {"epochs": epochs, "batch_size": batch_size, "lr": lr, "schedule": "plateau", "warmup_epochs": 0, "decay_epochs": None,
            "lr_factor": 0.75, "lr_patience": 10, "lr_min": 1e-7, "clip_norm": 10.0, "standardize_targets": False, **other}


def atom3d_protocol(epochs: int, batch_size: int, **train: Any) -> dict[str, Any]:
    """Config section of an ATOM3D task: 4.5 Å exact radius graphs (a structure with an atom of more
    than ``DEFAULT_MAX_DEGREE`` neighbours is skipped), the authors' training."""
    return {"graph": {"cutoff": 4.5, "max_neighbors": None, "max_degree": DEFAULT_MAX_DEGREE}, "model": {"overrides": {}},
            "train": train_protocol(epochs, batch_size, **train), "strict": False, "max_records": None}
