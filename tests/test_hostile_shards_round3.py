"""Hostile inputs, round 3 (issue 20): shards changed in place, a full disk, the HTML report,
results that mean nothing, config values that run away.

Tiny shards written here; in-process calls; one Snakemake dry run. The full-disk tests mount a
small tmpfs (root only; skipped with the reason otherwise).
"""
from __future__ import annotations

import errno
import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from preprocess.atomic import FREE_SPACE_MARGIN, DiskFullError, atomic_write_bytes
from preprocess.build import ShardTask, build_shards
from preprocess.shards import (
    BUILDING_MARKER,
    GraphBlock,
    ShardIntegrityError,
    ShardReader,
    damaged_shards,
    write_manifest,
    write_shard,
)

ROOT = Path(__file__).resolve().parents[1]
ATTRS = {"task": "test", "cutoff": 4.5, "max_neighbors": None, "source": "round 3", "z_classes": 9}


def tiny_block(seed: int = 0, sizes=(5, 6, 7), classes: bool = False) -> GraphBlock:
    """A few small graphs: every local edge index and type in range."""
    rng = np.random.default_rng(seed)
    graphs = []
    for g, n in enumerate(sizes):
        graphs.append({"pos": rng.normal(size=(n, 3)).astype(np.float32),
                       "z": rng.integers(0, 9, size=n).astype(np.int8),
                       "edge_index": np.stack([np.arange(n), (np.arange(n) + 1) % n]),
                       "y": np.int64(g % 2) if classes else rng.normal(size=2).astype(np.float32),
                       "id": f"g{g}"})
    return GraphBlock.from_graphs(graphs)


def one_shard(tmp_path: Path) -> Path:
    """A graph folder with one train shard (3 graphs) and its manifest; returns the shard."""
    path = tmp_path / "graphs" / "train" / "shard-00000.h5"
    write_shard(path, tiny_block(), ATTRS)
    write_manifest(tmp_path / "graphs" / "manifest.json",
                   [{"split": "train", "path": str(path), "num_graphs": 3, "num_nodes": 18, "num_edges": 18,
                     "size": path.stat().st_size}], attrs=ATTRS)
    return path


def read_all(path: Path) -> None:
    with ShardReader(path) as reader:
        for i in range(len(reader)):
            reader.read(i)


# ----------------------------------------------------------------------------------------
# item 4: shards changed in place are found by default
# ----------------------------------------------------------------------------------------
def flip_byte_in(path: Path, dataset: str, at: int = 4) -> None:
    """Change one byte of `dataset`'s first chunk in place, as an editor or a bad disk would."""
    with h5py.File(path, "r") as f:
        offset = f[dataset].id.get_chunk_info(0).byte_offset
    with open(path, "r+b") as fh:
        fh.seek(offset + at)
        byte = fh.read(1)
        fh.seek(offset + at)
        fh.write(bytes([byte[0] ^ 0x10]))


@pytest.mark.parametrize("dataset", ["pos", "y"])
def test_bytes_changed_in_place_fail_the_read_naming_shard_and_graph(tmp_path, dataset):
    """A changed position or label keeps the file's size: Fletcher32 finds it when read (the
    default, no --verify-shards); before, training used the changed values silently."""
    path = one_shard(tmp_path)
    size = path.stat().st_size
    flip_byte_in(path, dataset)
    assert path.stat().st_size == size and damaged_shards(tmp_path / "graphs") == []
    with pytest.raises(ShardIntegrityError, match=rf"{path}: .*(graph 0 \('g0'\)|index arrays).*checksum"):
        read_all(path)


def test_shards_carry_checksums(tmp_path):
    path = one_shard(tmp_path)
    with h5py.File(path, "r") as f:
        numeric = [name for name in f if f[name].dtype.kind != "O"]
        assert set(numeric) >= {"node_ptr", "edge_ptr", "pos", "z", "edge_index", "y"}
        assert all(f[name].fletcher32 for name in numeric)
        assert f.attrs["format_version"] == 3


def rewrite(path: Path, dataset: str, index, value) -> None:
    """Change a value through HDF5 (its checksum is recomputed: only the structure check sees it)."""
    with h5py.File(path, "r+") as f:
        f[dataset][index] = value


@pytest.mark.parametrize("dataset,index,value,message", [
    ("edge_index", (0, 0), -1, r"graph 0 \('g0'\): edge_index holds -1\.\.4, outside 0\.\.4"),
    ("edge_index", (1, 7), 40, r"graph 1 \('g1'\): edge_index holds 0\.\.40, outside 0\.\.5"),
    ("z", 6, 9, r"graph 1 \('g1'\): z holds \d\.\.9, outside 0\.\.8"),
    ("z", 0, -3, r"graph 0 \('g0'\): z holds -3\.\.\d, outside 0\.\.8"),
    ("node_ptr", 1, 100, r"node_ptr decreases at graph 1 \(starts at 100, ends at 11\)"),
    ("edge_ptr", 3, 17, r"edge_ptr ends at 17 but the data has 18 rows"),
])
def test_index_arrays_out_of_range_name_shard_and_graph(tmp_path, dataset, index, value, message):
    """Before: a negative index or changed node_ptr trained silently, an index past the end was
    an IndexError traceback naming no shard."""
    path = one_shard(tmp_path)
    rewrite(path, dataset, index, value)
    with pytest.raises(ShardIntegrityError, match=rf"{path}: {message}.*rebuild the graphs"):
        read_all(path)


def test_sound_shards_read_back_exactly(tmp_path):
    """The checks refuse nothing sound: every graph reads back as written."""
    block = tiny_block(3, sizes=(1, 4, 0, 9))
    path = tmp_path / "s.h5"
    write_shard(path, block, ATTRS)
    with ShardReader(path) as reader:
        for i in range(block.num_graphs):
            got, want = reader.read(i), block.graph(i)
            for key in ("pos", "z", "edge_index", "y"):
                np.testing.assert_array_equal(got[key], want[key])


# ----------------------------------------------------------------------------------------
# item 5 (and 11): a full disk while building graphs or training
# ----------------------------------------------------------------------------------------
@pytest.fixture()
def small_disk(tmp_path):
    """A 4 MiB tmpfs (so that 'disk full' is real: ENOSPC from the kernel)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root and mount(8); the full-disk tests cannot run here")
    mnt = tmp_path / "small"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(mnt)], check=False)  # busy (a file left open): detach


def fill(disk: Path, leave: int) -> Path:
    """Fill `disk` up to `leave` free bytes with one file; returns it."""
    filler = disk / "filler"
    with open(filler, "wb") as fh:
        fh.write(b"\0" * max(0, shutil.disk_usage(disk).free - leave))
    return filler


def _block_for(task: ShardTask) -> GraphBlock:
    return tiny_block(task.index, sizes=(40, 50, 60))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*.tmp"))


def test_disk_full_while_building_is_a_clear_error_and_a_rerun_works(small_disk):
    """Before: HDF5 crashed on ENOSPC (segmentation fault) and left its temp file for good."""
    out = small_disk / "graphs"
    tasks = [ShardTask("train", k, f"train/shard-{k:05d}.h5") for k in range(3)]
    filler = fill(small_disk, FREE_SPACE_MARGIN + 4096)
    with pytest.raises(DiskFullError, match=rf"disk full: no space left in {out / 'train'} for shard-00000\.h5"):
        build_shards(tasks, _block_for, out, ATTRS, progress=False)
    assert leftovers(out) == [] and not (out / "manifest.json").exists()
    filler.unlink()
    manifest = build_shards(tasks, _block_for, out, ATTRS, progress=False)
    assert manifest["splits"]["train"]["num_graphs"] == 9 and damaged_shards(out) == []
    assert not (out / BUILDING_MARKER).exists()


def test_enospc_from_the_write_itself_names_the_folder(small_disk):
    """What the free-space check cannot foresee (another writer): the write's own ENOSPC."""
    fill(small_disk, 64 * 1024)
    target = small_disk / "sub" / "big.bin"
    target.parent.mkdir()
    with pytest.raises(DiskFullError, match=rf"disk full: no space left in {target.parent}") as info:
        atomic_write_bytes(target, b"x" * (1 << 20))
    assert info.value.errno == errno.ENOSPC
    assert list(target.parent.iterdir()) == []


def test_disk_full_while_saving_a_checkpoint_says_so(small_disk):
    """Before: "[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0"."""
    import torch

    from eqgat.train.checkpoint import save_checkpoint

    fill(small_disk, 64 * 1024)
    with pytest.raises(DiskFullError, match=rf"disk full: no space left in {small_disk} for last\.pt"):
        save_checkpoint(small_disk / "last.pt", {"w": torch.zeros(1 << 18)})
    assert leftovers(small_disk) == []


def test_the_next_build_removes_a_killed_builds_temp_file(tmp_path):
    out = tmp_path / "graphs"
    (out / "train").mkdir(parents=True)
    stale = out / "train" / ".shard-00000.h5.k2j3h4.tmp"
    stale.write_bytes(b"half a shard")
    build_shards([ShardTask("train", 0, "train/shard-00000.h5")], _block_for, out, ATTRS, progress=False)
    assert not stale.exists() and leftovers(out) == []


def _block_while_watching(task: ShardTask, out: Path, seen: list) -> GraphBlock:
    seen.append(damaged_shards(out))
    return _block_for(task)


def test_a_folder_being_built_is_not_called_damaged(tmp_path):
    """Before: `snakemake -n` during a build rewrote graphs.check ("manifest.json is missing")."""
    out, seen = tmp_path / "graphs", []
    build_shards([ShardTask("train", 0, "train/shard-00000.h5")],
                 functools.partial(_block_while_watching, out=out, seen=seen), out, ATTRS, progress=False)
    assert seen == [[]]
    (out / "manifest.json").unlink()  # a finished folder that lost its manifest is still damaged
    assert damaged_shards(out) == ["manifest.json is missing"]



# ----------------------------------------------------------------------------------------
# item 8: results that mean nothing
# ----------------------------------------------------------------------------------------
def class_folder(tmp_path: Path, names: list[str], labels: dict[str, list[int]]) -> Path:
    """A structures-task graph folder of classification shards, one per split."""
    from eqgat.tasks import get_task
    from eqgat.tasks.config import task_section

    cutoff = task_section(get_task("structures"), {"kind": "classification"})["graph"]["cutoff"]
    attrs = {**ATTRS, "task": "structures", "cutoff": cutoff, "max_degree": 256, "label_kind": "classification",
             "label_names": json.dumps(names)}
    out, entries = tmp_path / "graphs", []
    for split, ys in labels.items():
        block = tiny_block(len(entries), sizes=(4,) * len(ys))
        block = GraphBlock(block.node_ptr, block.edge_ptr, block.pos, block.z, block.edge_index,
                           np.asarray(ys, np.int64), [f"{split}-{i}" for i in range(len(ys))],
                           columns={"file": [f"{split}-{i}.pdb" for i in range(len(ys))]})
        path = out / split / "shard-00000.h5"
        write_shard(path, block, attrs)
        entries.append({"split": split, "path": str(path), "num_graphs": len(ys), "size": path.stat().st_size})
    write_manifest(out / "manifest.json", entries, attrs=attrs)
    return out


def eqgat_main(*args: str) -> int:
    from eqgat.cli import main

    return main(list(args))


@pytest.mark.parametrize("names", [["active"], ["active", "inactive"]])
def test_training_on_one_class_is_refused_naming_it(tmp_path, names, caplog):
    """Before: a one-output model trained to loss 0 and reported accuracy 1.0."""
    data = class_folder(tmp_path, names, {"train": [0, 0, 0], "val": [0, 0], "test": [0, 0]})
    rc = eqgat_main("train", "--task", "structures", "--model", "eqgat", "--seed", "0", "--data", str(data),
                    "--out", str(tmp_path / "run"), "--device", "cpu", "--section", '{"kind": "classification"}')
    assert rc != 0 and not (tmp_path / "run" / "best.pt").exists()
    assert f"{data}: every training graph is of class 'active'" in caplog.text


def test_a_class_only_in_the_test_split_is_a_warning(tmp_path, caplog):
    import torch

    from eqgat.models import build_model, task_model_hparams
    from eqgat.tasks import get_task
    from eqgat.train.checkpoint import save_checkpoint

    names = ["a", "b", "c"]
    data = class_folder(tmp_path, names, {"train": [0, 1, 0, 1], "val": [0, 1], "test": [0, 2, 2]})
    task = get_task("structures").for_section({"kind": "classification"}, names)
    hparams = task_model_hparams(task, "eqgat", 4.5, {"hidden_scalars": 4, "hidden_vectors": 2, "num_layers": 1,
                                                      "num_radial": 4})
    torch.manual_seed(0)
    model = build_model("eqgat", **hparams)
    save_checkpoint(tmp_path / "best.pt", {"model": model.state_dict(), "model_spec": {"name": "eqgat", "hparams": hparams},
                                           "task": "structures", "loss": "cross_entropy", "epoch": 1})
    metrics = tmp_path / "metrics.json"
    rc = eqgat_main("evaluate", "--task", "structures", "--seed", "0", "--data", str(data), "--checkpoint",
                    str(tmp_path / "best.pt"), "--out", str(metrics), "--predictions", str(tmp_path / "p.csv"),
                    "--device", "cpu", "--section", '{"kind": "classification"}')
    assert rc == 0
    warning = "the test split has classes that no training graph has: 'c'"
    assert warning in caplog.text
    assert [w for w in json.loads(metrics.read_text())["warnings"] if warning in w]


def write_metrics(path: Path, seed: int, mse: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"task": "triangle", "model": "eqgat", "seed": seed, "test": {"mse": mse},
                                "directions": {"mse": "lower"}, "table_metrics": ["mse"]}))
    return path


def test_aggregate_counts_a_run_given_twice_once(tmp_path):
    """Before: the same metrics.json twice gave n = 2 and std 0."""
    from eqgat.aggregate import load_runs, summarise

    first = write_metrics(tmp_path / "seed0" / "metrics.json", 0, 0.5)
    copy = tmp_path / "copy" / "metrics.json"
    copy.parent.mkdir()
    shutil.copy(first, copy)
    second = write_metrics(tmp_path / "seed1" / "metrics.json", 1, 0.7)
    for given in ([first, first, second], [first, tmp_path / "seed0" / ".." / "seed0" / "metrics.json", second],
                  [first, copy, second]):
        (row,) = summarise(load_runs(given))
        assert row["n_runs"] == 2 and row["seeds"] == "0 1" and row["mean"] == pytest.approx(0.6)
    other = write_metrics(tmp_path / "other" / "metrics.json", 0, 0.9)
    with pytest.raises(ValueError, match=rf"{first} and {other} are two different results of one run"):
        load_runs([first, other])


# ----------------------------------------------------------------------------------------
# item 10: config values that run away
# ----------------------------------------------------------------------------------------
def base_config() -> dict:
    import yaml

    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def test_a_yaml_alias_bomb_is_refused_quickly_naming_the_key():
    """Before: the schema error message repr'd the expanded value (6.5 GB)."""
    import time

    import yaml

    from eqgat.tasks.config import validate_config

    levels = "\n".join(f"  l{k}: &l{k} [*l{k - 1}, *l{k - 1}, *l{k - 1}, *l{k - 1}, *l{k - 1}, *l{k - 1}, *l{k - 1}, "
                        f"*l{k - 1}, *l{k - 1}]" for k in range(1, 10))
    bomb = yaml.safe_load(f"x:\n  l0: &l0 ['lol']\n{levels}\nnotes:\n  triangle: *l9\n")  # 9**9 strings
    config = {**base_config(), "notes": bomb["notes"]}
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"invalid config: notes\.triangle.*more than 100,000 values.*YAML aliases") as info:
        validate_config(config)
    assert time.perf_counter() - start < 2 and len(str(info.value)) < 1000


def test_schema_messages_are_cut_short():
    from eqgat.tasks.config import validate_config

    config = {**base_config(), "notes": {"triangle": ["word"] * 5000}}
    with pytest.raises(ValueError, match=r"notes\.triangle: \['word'.*\.\.\. \(\d[\d,]* characters\)") as info:
        validate_config(config)
    assert len(str(info.value)) < 1000


def test_a_billion_clouds_are_refused_before_generating(tmp_path):
    """Before: seeds toward 7.45 GB were made before 2.4 TB of coordinates were asked for."""
    from eqgat.tasks.config import validate_config

    config = base_config()
    config["triangle"] = {**config.get("triangle", {}), "data": {"num_clouds": 1_000_000_000}}
    with pytest.raises(ValueError, match=r"triangle\.data\.num_clouds: 1000000000 is greater than the maximum of 1000000"):
        validate_config(config)


# ----------------------------------------------------------------------------------------
# item 6: the HTML report
# ----------------------------------------------------------------------------------------
def render_caption(caption: Path, config: dict) -> str:
    """A report caption as Snakemake renders it (Jinja2, then docutils to HTML)."""
    from docutils.core import publish_parts
    from jinja2 import Environment

    class Snakemake:
        pass

    Snakemake.config = config
    text = Environment(trim_blocks=True, lstrip_blocks=True).from_string(caption.read_text()).render(snakemake=Snakemake)
    return publish_parts(text, writer="html", settings_overrides={"report_level": 2})["body"]


def test_a_checkpoint_path_is_not_read_as_markup():
    """Before: `models/run_1_/best.pt` was a reference to an unknown target (an error box)."""
    for path in ("models/run_1_/best.pt", "*a*/`b`/c_.pt", "x\n\n.. raw:: html\n\n   <b>y</b>"):
        html = render_caption(ROOT / "workflow/report/predictions.rst", {"predict": {"checkpoint": path}})
        assert "system-message" not in html and "<b>y</b>" not in html
        assert path.split("\n")[0].replace("<", "&lt;") in html


def test_the_report_warns_about_seeds_not_in_the_table(tmp_path):
    from eqgat.aggregate import unreported_runs, write_csv

    rows = [{"task": "triangle", "model": "eqgat", "metric": "mse", "direction": "lower", "n_runs": 2, "seeds": "0 1",
             "mean": 0.1, "std": 0.01, "paper_mean": None, "paper_std": None, "num_parameters": 1,
             "paper_num_parameters": None, "trivial_mean": None, "not_learned": 0}]
    table = tmp_path / "results.csv"
    write_csv(table, rows)
    missing = unreported_runs(table, ["triangle"], ["eqgat"], [0, 1, 2])
    assert missing == ["triangle/eqgat/seed 2"]
    config = {"tasks": ["triangle"], "models": ["eqgat"], "seeds": [0, 1, 2], "_report": {"unreported": missing}}
    html = render_caption(ROOT / "workflow/report/workflow.rst", config)
    assert 'class="admonition warning"' in html and "Missing: triangle/eqgat/seed 2." in html
    config["_report"]["unreported"] = unreported_runs(table, ["triangle"], ["eqgat"], [0, 1])
    assert "warning" not in render_caption(ROOT / "workflow/report/workflow.rst", config)


def test_names_in_a_predict_folder_reach_neither_the_dag_nor_the_report(tmp_path):
    """Before: `model_<v2>.pdb` failed the DAG (UndefinedPathvarException) and a name with
    `</script>` was written into the report's script block."""
    for name in ("Snakefile", "workflow", "config", "eqgat", "preprocess"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, tmp_path / name, **(
            {"ignore": shutil.ignore_patterns("__pycache__")} if src.is_dir() else {}))
    folder = tmp_path / "new"
    folder.mkdir()
    (folder / "a<").mkdir()  # the path new/a</script><img ...>.pdb: a name cannot hold "/"
    for name in ("model_<v2>.pdb", "a</script><img src=x onerror=alert(1)>.pdb"):
        (folder / name).write_text("ATOM\n")
    (tmp_path / "best.pt").write_bytes(b"weights")
    config = {**base_config(), "predict": {"checkpoint": "best.pt", "files": ["new"]}}
    (tmp_path / "config" / "hostile.yaml").write_text(json.dumps(config))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "results/predictions.csv", "-n", "-p", "--cores", "1",
                           "--configfile", "config/hostile.yaml"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-3000:]
    assert "python -m eqgat predict" in text and "new" in text
    assert not [name for name in ("<v2>", "</script>") if name in text]
