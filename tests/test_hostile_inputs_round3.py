"""Hostile inputs, round 3 (issue 20): users' files and ``predict``.

Each test is a probe of the issue that did not hold before: unbounded reads (decompression bombs,
devices, FIFOs), structures without per-file limits, an ``--out`` that overwrites an input, CSV
injection, names that are not UTF-8, crafted checkpoints, SIGTERM, bad ``--batch-size``. The
checkpoints here are made, not trained: a tiny untrained EQGAT with the reading settings
``eqgat train`` records, which is all ``predict`` reads.
"""
from __future__ import annotations

import csv
import gzip
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import tracemalloc
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("gemmi")

from eqgat import cli  # noqa: E402
from eqgat.models import build_model, task_model_hparams  # noqa: E402
from eqgat.predict import predict_files, spreadsheet_safe  # noqa: E402
from eqgat.tasks import TASKS  # noqa: E402
from eqgat.tasks.config import task_section  # noqa: E402
from eqgat.train.checkpoint import CheckpointError, save_checkpoint  # noqa: E402
from preprocess.elements import ELEMENTS  # noqa: E402
from preprocess.readers import SkipSample  # noqa: E402
from preprocess.readers.structures import StructureOptions, folder_digest, read_structure  # noqa: E402
from preprocess.task_shards import build_task_shards  # noqa: E402
from structure_dataset import write_dataset  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TINY = {"hidden_scalars": 8, "hidden_vectors": 2, "num_layers": 1, "num_radial": 4}
CPU = torch.device("cpu")


def make_checkpoint(path: Path, classes: list[str] | None = None, **data) -> Path:
    """An untrained tiny EQGAT of the structures task saved as ``eqgat train`` saves ``best.pt``."""
    kind = "regression" if classes is None else "classification"
    task = TASKS["structures"].for_section({"kind": kind}, classes)
    spec = {"name": "eqgat", "hparams": task_model_hparams(task, "eqgat", 4.5, TINY)}
    torch.manual_seed(0)
    model = build_model("eqgat", **spec["hparams"])
    settings = {"task": "structures", "cutoff": 4.5, "max_neighbors": None, "max_degree": 256, "label_kind": kind,
                "label_names": list(task.label.names), "reader": {"hydrogens": "drop", "waters": "drop"},
                "elements": list(ELEMENTS), **data}
    save_checkpoint(path, {"model": model.state_dict(), "model_spec": spec, "task": "structures", "data": settings})
    return path


@pytest.fixture(scope="module")
def regression_pt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "best.pt")


@pytest.fixture(scope="module")
def good_pdb(tmp_path_factory) -> Path:
    """A small readable PDB file."""
    folder = tmp_path_factory.mktemp("good")
    write_dataset(folder, 1, seed=5)
    return folder / "sub" / "mol000.pdb"


def rows_of(path: Path) -> dict[str, dict[str, str]]:
    return {Path(r["file"].lstrip("'")).name: r for r in csv.DictReader(open(path, encoding="utf-8"))}


def pdb_atoms(path: Path, coords: np.ndarray) -> Path:
    """A PDB file of carbon atoms at `coords` (one HETATM line each)."""
    lines = [f"HETATM{i % 100000:5d}  C   MOL A{i % 10000:4d}    {x:8.3f}{y:8.3f}{z:8.3f}  1.00 20.00           C"
             for i, (x, y, z) in enumerate(coords, start=1)]
    path.write_text("\n".join(lines) + "\nEND\n")
    return path


def gzip_bomb(path: Path, expanded: int) -> Path:
    """A .pdb.gz holding one atom, then `expanded` bytes of blanks (a few KB compressed per MB)."""
    block = b" " * (1 << 20)
    with gzip.open(path, "wb", compresslevel=1) as fh:
        fh.write(b"HETATM    1  C   MOL A   1       0.000   0.000   0.000  1.00 20.00           C\n")
        for _ in range(expanded >> 20):
            fh.write(block)
    return path


@contextmanager
def alarm(seconds: int):
    """Fail instead of hanging: SIGALRM interrupts a blocking open() or read()."""
    def _timeout(signum, frame):
        raise TimeoutError(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# ---------------------------------------------------------------------------------------------
# 1. unbounded reads
# ---------------------------------------------------------------------------------------------
def test_decompression_bomb_is_read_only_up_to_the_cap(tmp_path):
    """A 64 MB expansion under a 1 MB cap: skipped as file_too_large, naming the file, having
    held about the cap in memory, not the expansion."""
    bomb = gzip_bomb(tmp_path / "bomb.pdb.gz", 64 << 20)
    assert bomb.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(SkipSample, match="bomb.pdb.gz holds more than 1000000 bytes after decompression") as exc:
            read_structure(bomb, StructureOptions(max_file_bytes=1_000_000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert exc.value.reason == "file_too_large" and peak < 4_000_000, peak
    # a plain file over the cap is refused by its size, before reading
    big = pdb_atoms(tmp_path / "big.pdb", np.arange(30).reshape(10, 3) * 2.0)
    with pytest.raises(SkipSample, match="big.pdb holds more than 100 bytes") as exc:
        read_structure(big, StructureOptions(max_file_bytes=100))
    assert exc.value.reason == "file_too_large"


def test_out_of_memory_while_parsing_names_the_file(tmp_path, good_pdb, monkeypatch):
    """Within the caps but too much for the machine: the error names the file, no bare MemoryError."""
    import gemmi  # the reader imports it when it parses (the task declarations import the reader)

    def exhausted(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(gemmi, "read_pdb_string", exhausted)
    with pytest.raises(SkipSample, match=f"{good_pdb.name}: out of memory while reading it") as exc:
        read_structure(good_pdb)
    assert exc.value.reason == "file_too_large"


def test_devices_fifos_and_folders_are_not_read_by_predict(tmp_path, regression_pt, good_pdb):
    """A symlink to /dev/zero, a FIFO and a folder named like structure files: each gets its row
    (not_regular_file) at once, the good file is scored, no temp file is left."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "zero.pdb").symlink_to("/dev/zero")
    os.mkfifo(folder / "pipe.pdb")
    (folder / "dir.cif").mkdir()
    good = folder / good_pdb.name
    good.write_bytes(good_pdb.read_bytes())
    files = [str(folder / n) for n in ("zero.pdb", "pipe.pdb", "dir.cif", good.name)]
    out = tmp_path / "out" / "pred.csv"
    with alarm(60):
        counts = predict_files(regression_pt, files, out, CPU, progress=False)
    rows = rows_of(out)
    assert counts["scored"] == 1 and counts["skipped"] == {"not_regular_file": 3}
    assert "zero.pdb is a character device, not a regular file" in rows["zero.pdb"]["error"]
    assert "pipe.pdb is a FIFO" in rows["pipe.pdb"]["error"] and "dir.cif is a folder" in rows["dir.cif"]["error"]
    assert rows[good.name]["error"] == "" and np.isfinite(float(rows[good.name]["prediction"]))
    assert sorted(p.name for p in out.parent.iterdir()) == ["pred.csv"]


# ---------------------------------------------------------------------------------------------
# 1 + 2. caps in the build: counted skips naming the files
# ---------------------------------------------------------------------------------------------
def test_build_skips_and_counts_files_over_the_caps(tmp_path):
    data = tmp_path / "data"
    labels = write_dataset(data, 6, seed=2)
    gzip_bomb(data / "bomb.pdb.gz", 8 << 20)
    pdb_atoms(data / "huge.pdb", np.stack(np.meshgrid(*[np.arange(5)] * 3, indexing="ij"), -1).reshape(-1, 3) * 2.0)
    with open(labels, "a") as fh:
        fh.write("bomb.pdb.gz,0.5\nhuge.pdb,0.5\n")
    (data / os.fsdecode(b"\xff.pdb")).write_text("HETATM\n")  # unlabelled, a name that is not UTF-8
    (data / "dangling.cif").symlink_to(data / "deleted.cif")  # unlabelled, dangling
    section = task_section(TASKS["structures"], {"files": str(data), "labels": str(labels),
                                                "max_file_bytes": 1_000_000, "max_atoms": 100})
    manifest = build_task_shards(TASKS["structures"], data, tmp_path / "graphs", 4.5, shard_size=16, progress=False,
                                 options=section)
    report = json.loads((tmp_path / "graphs" / "skip_report.json").read_text())
    skipped = {reason: ex for split in ("train", "val", "test") for reason, ex in report[split]["examples"].items()}
    assert skipped == {"file_too_large": ["bomb.pdb.gz"], "too_many_atoms": ["huge.pdb"]}
    assert report["sources"]["counts"] == {"unlabelled_file": 2}
    assert sum(s["num_graphs"] for s in manifest["splits"].values()) == 6
    # the caps are the shards' settings: a config that changes them rebuilds the graphs
    assert {"max_file_bytes", "max_atoms"} <= set(TASKS["structures"].build_options)


def test_build_graphs_cli_caps_and_their_refusal_for_other_tasks(tmp_path, capsys):
    data = tmp_path / "data"
    labels = write_dataset(data, 4, seed=3)
    options = json.dumps({"labels": str(labels)})
    from eqgat.tasks import preprocess_main  # build-graphs with the task declarations

    assert preprocess_main(["build-graphs", "--task", "structures", "--source", str(data), "--out",
                            str(tmp_path / "g"), "--options", options, "--cutoff", "4.5", "--max-atoms", "5",
                            "--no-progress"]) == 0
    report = json.loads((tmp_path / "g" / "skip_report.json").read_text())
    assert sum(report[s]["counts"].get("too_many_atoms", 0) for s in ("train", "val", "test")) == 4
    assert preprocess_main(["build-graphs", "--task", "triangle", "--source", str(tmp_path / "x.h5"), "--out",
                            str(tmp_path / "t"), "--cutoff", "4.0", "--max-atoms", "5", "--no-progress"]) == 1
    assert "task triangle reads no structure files" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# 2. predict: per-file limits, the good rows kept
# ---------------------------------------------------------------------------------------------
def test_predict_applies_atom_cap_and_degree_guard_per_file(tmp_path, regression_pt, good_pdb):
    coincident = pdb_atoms(tmp_path / "coincident.pdb", np.zeros((260, 3)))  # 259 neighbours each
    grid = np.stack(np.meshgrid(*[np.arange(7)] * 3, indexing="ij"), -1).reshape(-1, 3) * 2.0  # 343 atoms
    many = pdb_atoms(tmp_path / "many.pdb", grid)
    out = tmp_path / "pred.csv"
    counts = predict_files(regression_pt, [str(coincident), str(many), str(good_pdb)], out, CPU, progress=False,
                           limits={"max_atoms": 300})
    rows = rows_of(out)
    assert counts == {"scored": 1, "failed": 2, "skipped": {"too_many_atoms": 1, "too_many_neighbors": 1}}
    assert "more than max_degree = 256" in rows["coincident.pdb"]["error"]
    assert "343 atoms in the first model, more than max_atoms = 300" in rows["many.pdb"]["error"]
    assert np.isfinite(float(rows[good_pdb.name]["prediction"]))
    # the checkpoint's own max_degree is the default: no limit there scores the coincident atoms
    loose = make_checkpoint(tmp_path / "loose.pt", max_degree=None)
    counts = predict_files(loose, [str(coincident)], out, CPU, progress=False)
    assert counts["scored"] == 1


def test_lba_pocket_of_a_large_ligand_takes_bounded_memory():
    """LBA's pocket (atoms within the radius of any ligand atom) in blocks of ligand atoms: a
    9,000-atom file with a 1,000-atom "ligand" no longer takes an 8,000 x 1,000 x 3 array."""
    from types import SimpleNamespace

    from eqgat.tasks.lba import pocket_then_ligand

    rng = np.random.default_rng(0)
    n, n_lig = 9000, 1000
    names = np.array(["ALA"] * (n - n_lig) + ["LIG"] * n_lig)
    atoms = SimpleNamespace(pos=rng.uniform(0, 60, (n, 3)).astype(np.float32), z=np.zeros(n, np.int8),
                            residue_names=names, chain_ids=np.array(["A"] * n),
                            residue_numbers=np.arange(n, dtype=np.int32), insertion_codes=np.array([""] * n))
    tracemalloc.start()
    try:
        pos, _ = pocket_then_ligand(atoms, "lig", 2.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    other, ligand = atoms.pos[:n - n_lig], atoms.pos[n - n_lig:]
    near = np.array([(((ligand - p) ** 2).sum(-1) <= 4.0).any() for p in other])  # one residue per atom here
    np.testing.assert_array_equal(pos, np.concatenate([other[near], ligand]))
    assert peak < 60_000_000, peak


# ---------------------------------------------------------------------------------------------
# 3. + 11. --out
# ---------------------------------------------------------------------------------------------
def test_out_that_is_an_input_or_a_folder_is_refused(tmp_path, regression_pt, good_pdb, caplog):
    ckpt = make_checkpoint(tmp_path / "model.pt")
    structure = tmp_path / good_pdb.name
    structure.write_bytes(good_pdb.read_bytes())
    before = {p: p.read_bytes() for p in (ckpt, structure)}
    alias = tmp_path / "sub" / ".." / structure.name  # the same file spelled otherwise
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.pdb").symlink_to(structure)
    cases = ((str(ckpt), "is the checkpoint"), (str(alias), "is an input structure"),
             (str(tmp_path / "link.pdb"), "is an input structure"))
    for out, message in cases:
        caplog.clear()
        with caplog.at_level(logging.ERROR):
            assert cli.main(["predict", "--checkpoint", str(ckpt), "--out", out, "--device", "cpu", "--no-progress",
                             str(structure)]) == 1
        assert message in caplog.text and "would overwrite it" in caplog.text
    assert {p: p.read_bytes() for p in (ckpt, structure)} == before
    # a folder is refused before anything is read: even the (missing) checkpoint is not opened
    with pytest.raises(ValueError, match="is a folder; give the path of the CSV file"):
        predict_files(tmp_path / "no such.pt", [str(structure)], tmp_path, CPU, progress=False)


# ---------------------------------------------------------------------------------------------
# 7. CSV injection
# ---------------------------------------------------------------------------------------------
def test_formula_cells_are_neutralised_and_numbers_are_not(tmp_path, good_pdb, monkeypatch):
    assert [spreadsheet_safe(t) for t in ("=1+2", "+cmd", "-2+3", "@SUM(A1)", "\tx", "\rx", "-1.5", "+2e3", "ok")] == \
        ["'=1+2", "'+cmd", "'-2+3", "'@SUM(A1)", "'\tx", "'\rx", "-1.5", "+2e3", "ok"]
    evil = ['=HYPERLINK("http://x","y")', "@SUM(1)"]
    ckpt = make_checkpoint(tmp_path / "cls.pt", classes=evil)
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("=cmd.pdb", "-x.pdb"):
        (folder / name).write_bytes(good_pdb.read_bytes())
    monkeypatch.chdir(folder)  # relative names: the file cells start with the names
    out = tmp_path / "pred.csv"
    predict_files(ckpt, ["=cmd.pdb", "-x.pdb", "+gone.pdb"], out, CPU, progress=False)
    table = list(csv.reader(open(out, encoding="utf-8")))
    assert table[0] == ["file", "prediction", "prob_=HYPERLINK(\"http://x\",\"y\")", "prob_@SUM(1)", "error"]
    assert [row[0] for row in table[1:]] == ["'=cmd.pdb", "'-x.pdb", "'+gone.pdb"]
    cells = [c for row in table[1:] for c in (row[0], row[1], row[-1]) if c]
    assert all(not c.startswith(("=", "+", "-", "@", "\t", "\r")) for c in cells), cells
    assert {row[1] for row in table[1:3]} <= {"'" + e for e in evil}
    assert all(0 <= float(p) <= 1 for row in table[1:3] for p in row[2:4])  # probabilities stay numbers
    reg = make_checkpoint(tmp_path / "reg.pt", reader={"hydrogens": "drop", "waters": "drop"})
    predict_files(reg, ["-x.pdb"], out, CPU, progress=False)
    (row,) = list(csv.DictReader(open(out, encoding="utf-8")))
    assert row["file"] == "'-x.pdb" and np.isfinite(float(row["prediction"]))  # a number, written as one


# ---------------------------------------------------------------------------------------------
# 9. names that are not UTF-8, dangling symlinks
# ---------------------------------------------------------------------------------------------
def test_predict_folder_with_a_non_utf8_name_scores_the_rest(tmp_path, regression_pt, good_pdb):
    folder = tmp_path / "in"
    folder.mkdir()
    bad = os.fsdecode(b"caf\xe9.pdb")
    (folder / bad).write_bytes(good_pdb.read_bytes())
    (folder / "ok.pdb").write_bytes(good_pdb.read_bytes())
    out = tmp_path / "pred.csv"
    code = cli.main(["predict", "--checkpoint", str(regression_pt), "--out", str(out), "--device", "cpu",
                     "--no-progress", str(folder)])
    rows = rows_of(out)
    assert code == 0 and set(rows) == {"caf\\xe9.pdb", "ok.pdb"}
    assert "non_utf8_name" in rows["caf\\xe9.pdb"]["error"] and rows["ok.pdb"]["error"] == ""


def test_folder_digest_survives_non_utf8_names_and_dangling_symlinks(tmp_path):
    (tmp_path / os.fsdecode(b"x\xff.pdb")).write_text("HETATM\n")
    (tmp_path / "gone.pdb").symlink_to(tmp_path / "nowhere.pdb")
    first = folder_digest(tmp_path)
    (tmp_path / "gone.pdb").unlink()
    assert len(first) == 16 and folder_digest(tmp_path) != first


@pytest.mark.slow  # a copied workflow and one Snakemake dry run: ~30 s on a busy 2-core machine
def test_dry_run_with_a_non_utf8_name_and_a_dangling_symlink(tmp_path):
    """`snakemake -n` of the structures task with both in the folder, neither named in the CSV."""
    from workflow_helpers import TINY_CONFIG, copy_repo, planned_jobs, write_config

    workdir = copy_repo(tmp_path)
    data = workdir / "data"
    write_dataset(data, 6, seed=4)
    (data / os.fsdecode(b"\xff\xfe.pdb")).write_text("HETATM\n")
    (data / "dangling.cif").symlink_to(data / "deleted.cif")
    config = {**TINY_CONFIG, "tasks": ["structures"], "seeds": [0],
              "structures": {"files": "data", "labels": "data/labels.csv"}}
    jobs = planned_jobs(workdir, write_config(workdir, config))
    assert jobs.get("build_graphs") == 1 and jobs.get("train") == 1


# ---------------------------------------------------------------------------------------------
# 11. crafted checkpoints, SIGTERM, --batch-size; the task declarations' predict hook
# ---------------------------------------------------------------------------------------------
def test_crafted_checkpoints_get_errors_naming_them(tmp_path, good_pdb, caplog):
    cases = ((make_checkpoint(tmp_path / "cutoff.pt", cutoff="abc"), "the recorded cutoff 'abc' is not a number"),
             (make_checkpoint(tmp_path / "nan.pt", cutoff=float("nan")), "is not a finite number > 0"),
             (make_checkpoint(tmp_path / "unnamed.pt", classes=["a", "b"], label_names=[]),
              "a classification model without class names"),
             (make_checkpoint(tmp_path / "fewer.pt", classes=["a", "b", "c"], label_names=["a", "b"]),
              "the model gives 3 outputs but the checkpoint names 2 classes"))
    for path, message in cases:
        caplog.clear()
        with caplog.at_level(logging.ERROR):
            assert cli.main(["predict", "--checkpoint", str(path), "--out", str(tmp_path / "o.csv"), "--device", "cpu",
                             "--no-progress", str(good_pdb)]) == 1
        assert message in caplog.text and path.name in caplog.text, caplog.text
    assert not (tmp_path / "o.csv").exists()
    with pytest.raises(CheckpointError, match="cutoff.pt"):
        predict_files(tmp_path / "cutoff.pt", [str(good_pdb)], tmp_path / "o.csv", CPU, progress=False)


def test_predict_follows_the_declarations_hook(tmp_path, monkeypatch):
    """Which models can score files is the declaration's ``predict_reader``; none: refused."""
    from eqgat.predict import ReadingSettings, predictable_tasks

    assert sorted(predictable_tasks()) == ["lba", "psr", "rsr", "structures"]
    saved = {"data": {"task": "psr", "cutoff": 4.5, "label_kind": "regression", "label_names": ["gdt_ts"],
                      "elements": list(ELEMENTS)}}
    assert ReadingSettings.of(saved, "psr.pt").limits == {"max_file_bytes": 100_000_000, "max_atoms": 100_000,
                                                           "max_degree": 256}
    monkeypatch.setitem(TASKS, "psr", replace(TASKS["psr"], predict_reader=None))
    with pytest.raises(ValueError, match="psr.pt is a model of task 'psr'; predict scores whole structures with "
                                         "models of the graph-level tasks lba, rsr, structures"):
        ReadingSettings.of(saved, "psr.pt")


@pytest.mark.parametrize("value", ["0", "-1", "x"])
def test_batch_size_must_be_a_positive_integer(value, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["predict", "--checkpoint", "c.pt", "--out", str(tmp_path / "o.csv"), "--batch-size", value, "x.pdb"])
    assert exc.value.code == 2 and "--batch-size" in capsys.readouterr().err
    with pytest.raises(ValueError, match="batch size 0"):
        predict_files("c.pt", ["x.pdb"], tmp_path / "o.csv", CPU, batch_size=0)


def test_sigterm_leaves_no_temporary_file(tmp_path, regression_pt, good_pdb):
    """Killed while scoring (a slow read stands in for a large file): exit 143, no temp file, no CSV."""
    out = tmp_path / "out" / "pred.csv"
    script = textwrap.dedent(f"""
        import sys, time
        import eqgat.predict as predict
        def slow(*args, **kwargs):
            print("reading", flush=True)
            time.sleep(120)
        predict.read_graph = slow
        from eqgat.cli import main
        sys.exit(main(["predict", "--checkpoint", {str(regression_pt)!r}, "--out", {str(out)!r}, "--device", "cpu",
                       "--no-progress", {str(good_pdb)!r}]))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout.readline().strip() == "reading"
        assert [p.name for p in out.parent.iterdir()][0].endswith(".tmp")  # the temp file exists while scoring
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 143 and list(out.parent.iterdir()) == []
