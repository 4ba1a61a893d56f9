"""One declaration per task: the config schema, its defaults, the CLIs' choices and the download
rules all come from the task registry; the paper config is exactly the declared protocol."""
import copy
from pathlib import Path

import pytest
import yaml

from eqgat.models import MODELS
from eqgat.tasks import TASKS, get_task
from eqgat.tasks.config import config_schema, task_section, validate_config
from eqgat.tasks import archives

REPO = Path(__file__).resolve().parents[1]


def load(*names: str) -> dict:
    """Config files merged as Snakemake merges --configfile over the default."""
    from eqgat.tasks.config import deep_merge

    config: dict = {}
    for name in names:
        config = deep_merge(config, yaml.safe_load((REPO / "config" / name).read_text()))
    return config


def test_schema_enums_and_sections_come_from_the_registries():
    schema = config_schema()
    props = schema["properties"]
    assert props["tasks"]["items"]["enum"] == list(TASKS)
    assert props["models"]["items"]["enum"] == list(MODELS)
    for name, task in TASKS.items():
        section = props[name]["properties"]
        assert section["train"]["properties"]["loss"]["enum"] == list(task.loss_names)
        assert section["train"]["properties"]["selection"]["enum"] == ["loss", *(m.name for m in task.metrics)]
        assert section["model"]["properties"]["overrides"]["propertyNames"]["enum"] == list(MODELS)
        assert set(task.options_schema) <= set(section)
    assert "split" in props["lba"]["properties"] and "pairs" in props["ppi"]["properties"]


def test_sections_are_the_protocol_with_the_config_laid_over_it():
    config = validate_config(load("config.yaml"))
    assert config["psr"] == get_task("psr").protocol
    tri = config["triangle"]
    assert tri["data"]["num_clouds"] == 1000 and tri["data"]["num_points"] == 100  # one key overridden
    assert tri["graph"]["cutoff"] == 10.0 and tri["train"]["clip_norm"] == 10.0
    assert task_section(get_task("lba"), {"split": 60})["split"] == 60
    assert get_task("lba").source.dataset(task_section(get_task("lba"), {"split": 60})) == "lba60"


def test_paper_config_is_exactly_the_declared_protocol():
    """config/paper.yaml undoes what the embedded default makes smaller, for every task."""
    config = validate_config(load("config.yaml", "paper.yaml"))
    for name, task in TASKS.items():
        assert config[name] == task.protocol, name
    assert config["seeds"] == [0, 1, 2] and config["tasks"] == [t for t in TASKS if t != "structures"]
    assert set(config["models"]) == set(MODELS)


def test_declared_protocols():
    p = {name: t.protocol["train"] for name, t in TASKS.items()}
    assert {n: (v["epochs"], v["batch_size"], v["lr"]) for n, v in p.items()} == {
        "triangle": (50, 64, 1e-4), "lba": (20, 16, 1e-4), "psr": (30, 16, 1e-4), "rsr": (30, 16, 1e-4),
        "res": (40, 32, 1e-4), "ppi": (10, 10, 1e-4), "structures": (20, 8, 1e-3)}
    assert {n: v.get("selection", "loss") for n, v in p.items()} == {
        "triangle": "loss", "lba": "loss", "psr": "loss", "rsr": "mse", "res": "loss", "ppi": "roc_auc",
        "structures": "loss"}
    paper = {n: v for n, v in p.items() if n != "structures"}  # users' structures: made for small folders
    assert all(v["schedule"] == "plateau" and v["lr_factor"] == 0.75 and v["lr_patience"] == 10 and
               v["lr_min"] == 1e-7 and v["clip_norm"] == 10.0 and not v["standardize_targets"] for v in paper.values())
    assert {k: p["structures"][k] for k in ("schedule", "warmup_epochs", "decay_epochs", "standardize_targets")} == {
        "schedule": "cosine", "warmup_epochs": 1, "decay_epochs": 5, "standardize_targets": True}
    assert TASKS["ppi"].protocol["pairs"]["max_positives"] == 10
    assert TASKS["triangle"].protocol["data"]["num_clouds"] == 50_000
    assert {n: t.build_options for n, t in TASKS.items() if n in ("ppi", "triangle", "lba")} == {
        "ppi": ("strict", "max_records"), "triangle": (), "lba": ("strict", "max_records", "split")}  # not PPI's pairs


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["triangle"]["train"].update(epochs=1.0), "triangle.train.epochs: 1.0 is not of type 'integer'"),
    (lambda c: c["triangle"]["data"].update(num_clouds=20.0), "triangle.data.num_clouds: 20.0 is not of type 'integer'"),
    (lambda c: c["preprocess"].update(shard_size=16.0), "preprocess.shard_size: 16.0 is not of type 'integer'"),
    (lambda c: c.update(seeds=[1.0]), "seeds.0: 1.0 is not of type 'integer'"),
    (lambda c: c["download"].update(checksums={"a.tar.gz": "md5:abc"}), "download.checksums.a.tar.gz"),
    (lambda c: c["download"].update(checksums={"a.tar.gz": "md5:" + "0" * 32 + "\n"}), "download.checksums.a.tar.gz"),
    (lambda c: c["download"].update(checksums={"a.tar.gz": "sha256:" + "0" * 32}), "download.checksums.a.tar.gz"),
    (lambda c: c.update(tasks=["triangle", "psrr"]), "'psrr' is not one of"),
    (lambda c: c.update(models=["eqgat", "gcn"]), "'gcn' is not one of"),
    (lambda c: c.update(psr={"train": {"loss": "pearson_mse"}}), "psr.train.loss: 'pearson_mse' is not one of ['mse']"),
    (lambda c: c.update(ppi={"train": {"selection": "accuracy"}}), "ppi.train.selection: 'accuracy' is not one of"),
    (lambda c: c.update(psr={"model": {"overrides": {"gcn": {}}}}), "psr.model.overrides: 'gcn' is not one of"),
    (lambda c: c.update(psr={"model": {"preset": "psr"}}), "'preset' was unexpected"),
    (lambda c: c.update(psr={"pairs": {}}), "'pairs' was unexpected"),
    (lambda c: c.update(lba={"split": 45}), "lba.split: 45 is not one of [30, 60]"),
])
def test_schema_errors_name_the_key(edit, message):
    config = load("config.yaml")
    edit(config)
    with pytest.raises(ValueError) as err:
        validate_config(config)
    assert message in str(err.value)


def test_checksums_of_the_right_form_pass():
    config = load("config.yaml")
    config["download"]["checksums"] = {"a.tar.gz": "md5:" + "0" * 32, "b.tar.gz": "sha256:" + "F" * 64}
    validate_config(config)


def test_command_line_choices_and_downloads_come_from_the_registry():
    from eqgat.cli import build_parser as eqgat_parser
    from preprocess.cli import build_parser as preprocess_parser

    def choices(parser, command, option):
        sub = next(a for a in parser._actions if a.dest == "command").choices[command]
        return list(next(a for a in sub._actions if option in a.option_strings).choices)

    assert choices(eqgat_parser(), "train", "--task") == list(TASKS)
    assert choices(eqgat_parser(), "train", "--model") == list(MODELS)
    assert choices(preprocess_parser(TASKS), "build-graphs", "--task") == list(TASKS)
    datasets = {name for t in TASKS.values() if t.source.kind == "download" for name in t.source.datasets}
    assert set(archives()) == datasets == {"lba30", "lba60", "psr", "rsr", "res", "ppi"}


def test_a_task_declaration_is_checked():
    from eqgat.tasks.spec import Label, Metric, TaskSpec

    base = dict(name="x", title="x", source=None, reader=None, label=Label("binary"), metrics=(Metric("auc", True),),
                evaluate=None, model={}, protocol={"train": {}})
    with pytest.raises(ValueError, match="readout 'node' needs the int fields"):
        TaskSpec(readout="node", **base)
    with pytest.raises(ValueError, match="selection 'f1' is not 'loss' or a declared metric"):
        TaskSpec(readout="graph", **{**base, "protocol": {"train": {"selection": "f1"}}})
    with pytest.raises(ValueError, match="label kind"):
        Label("ordinal")
    spec = TaskSpec(readout="graph", **copy.deepcopy(base))
    assert spec.out_dim == 1 and spec.loss_names == ("bce",) and spec.selection_higher_is_better("auc")
