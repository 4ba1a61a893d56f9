"""Hostile structures and damaged graph folders (issue 13, items 8 and 9).

* A structure with thousands of coincident atoms is left out of the graphs and counted as
  ``too_many_neighbors`` (strict: an error naming it) before its edges exist, so the build goes
  on in bounded memory; the other structures' graphs are written as usual.
* A shard that is missing, truncated, replaced, or disagrees with its manifest is an error naming
  it when a split is opened (its SHA-256 on request), and the workflow rebuilds a graph folder
  whose shards went missing.

The ATOM3D records are written with atom3d's own writer (tests/atom3d_fixtures.py).
"""
from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from _graphs import build_triangle_shards
from preprocess.build import DenseGraphError
from preprocess.shards import ShardIntegrityError, ShardReader, read_manifest, sha256_file, verify_manifest
from preprocess.triangle import generate_triangle_clouds, write_raw

REPO = Path(__file__).resolve().parents[1]
BLOB = 15_000  # coincident atoms: 225 M edges, 1.8 GB as int32, without the guard


def _skips(graphs: Path, split: str = "train") -> dict:
    return json.loads((graphs / "skip_report.json").read_text())[split]


def _graphs_by_id(graphs: Path, split: str) -> dict[str, dict]:
    out = {}
    for entry in read_manifest(graphs / "manifest.json")["splits"][split]["shards"]:
        with ShardReader(graphs / entry["path"]) as r:
            for i in range(len(r)):
                g = r.read(i)
                out[g["id"]] = g
    return out


# ---------------------------------------------------------------------------------------------
# item 8: coincident atoms
# ---------------------------------------------------------------------------------------------
def blob_record(af, n: int = BLOB) -> dict:
    """A PSR decoy whose `n` heavy atoms all sit on one spot."""
    rec = af.psr_record("T0666", "blob", 0.5)
    rows = [dict(row, name="CA", fullname=" CA ", residue=1 + k // 4, x=1.0, y=2.0, z=3.0)
            for k, row in enumerate([rec["atoms"].iloc[1].to_dict()] * n)]
    rec["atoms"] = af.frame(rows)
    return rec


@pytest.fixture(scope="module")
def psr_sets(tmp_path_factory):
    """Two PSR datasets: good records only, and the same with a blob record in the middle."""
    pytest.importorskip("atom3d")
    import atom3d_fixtures as af

    root = tmp_path_factory.mktemp("psr")
    good = af.make_psr(root / "good")
    train = list(good.records["train"])
    hostile = {**good.records, "train": train[:2] + [blob_record(af)] + train[2:]}
    af._write_splits(root / "hostile", "psr", hostile)
    return root / "good", root / "hostile", blob_record(af, 1)["id"]


MEMORY_PROBE = """
import json, resource, sys
from pathlib import Path
from eqgat.tasks import TASKS
from preprocess.task_shards import build_task_shards

good, hostile, out = map(Path, sys.argv[1:4])
build_task_shards(TASKS["psr"], good, out / "warm", cutoff=4.5, shard_size=2, progress=False)
vm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmSize:")) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + (1 << 30), resource.RLIM_INFINITY))  # 1 GiB more
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
build_task_shards(TASKS["psr"], hostile, out / "graphs", cutoff=4.5, shard_size=2, progress=False)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"growth_mb": (after - before) / 1024}))
"""


def test_coincident_atoms_are_skipped_and_counted_in_bounded_memory(psr_sets, tmp_path):
    """Before: the blob's 225 M edges were allocated (MemoryError after 5 GB) and no graph was
    written. Now its count pass stops at the first atom over max_degree (256): the build runs
    under an address-space limit of 1 GiB above its start, its peak RSS grows by a few MB, the
    blob is counted, the good records' graphs are the ones a build without it writes."""
    good, hostile, blob_id = psr_sets
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    proc = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(good), str(hostile), str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    growth = json.loads(proc.stdout.strip().splitlines()[-1])["growth_mb"]
    assert growth < 150, growth  # the blob's edges alone: 1,800 MB as int32
    assert f"skipped structure {blob_id!r}: atom 0 has {BLOB - 1} neighbours within 4.5 Å" in proc.stderr

    graphs = tmp_path / "graphs"
    skips = _skips(graphs)
    assert skips["counts"] == {"too_many_neighbors": 1}
    assert skips["examples"] == {"too_many_neighbors": [blob_id]}
    assert skips["num_graphs"] == 3
    manifest = read_manifest(graphs / "manifest.json")
    assert manifest["attrs"]["max_degree"] == 256
    ours, reference = _graphs_by_id(graphs, "train"), _graphs_by_id(tmp_path / "warm", "train")
    assert list(ours) == list(reference) and blob_id not in ours
    for gid, g in ours.items():
        for key in ("pos", "z", "edge_index", "y"):
            np.testing.assert_array_equal(g[key], reference[gid][key], err_msg=f"{gid} {key}")
    assert verify_manifest(graphs / "manifest.json") == []


def test_strict_build_names_the_structure_and_its_degree(psr_sets, tmp_path):
    from eqgat.tasks import TASKS
    from preprocess.task_shards import build_task_shards

    _, hostile, blob_id = psr_sets
    with pytest.raises(DenseGraphError, match=re.escape(repr(blob_id)) + rf": atom 0 has {BLOB - 1} neighbours"
                                              r".*max_degree = 256"):
        build_task_shards(TASKS["psr"], hostile, tmp_path / "graphs", cutoff=4.5, shard_size=2, strict=True,
                          progress=False)
    assert not (tmp_path / "graphs" / "manifest.json").exists()


def test_cli_passes_max_degree(psr_sets, tmp_path):
    """`--max-degree K` reaches the build and the manifest: with K the densest good atom's degree
    only the blob is left out, with K - 1 every training record is."""
    from eqgat.tasks import TASKS
    from eqgat.tasks import preprocess_main as main
    from preprocess.neighbors import radius_graph
    from preprocess.readers import read_samples

    good, hostile, _ = psr_sets
    samples = list(read_samples(TASKS["psr"].reader, next(good.glob("*/data/train"))))
    k = max(int(np.bincount(radius_graph(s.pos, 4.5)[1]).max()) for s in samples)
    for limit, skipped in ((k, 1), (k - 1, len(samples) + 1)):
        out = tmp_path / f"graphs{limit}"
        assert main(["build-graphs", "--task", "psr", "--source", str(hostile), "--out", str(out), "--cutoff", "4.5",
                     "--max-degree", str(limit), "--no-progress"]) == 0
        assert _skips(out)["counts"] == {"too_many_neighbors": skipped}
        assert read_manifest(out / "manifest.json")["attrs"]["max_degree"] == limit
    assert set(_graphs_by_id(tmp_path / f"graphs{k}", "train")) == {s.id for s in samples}


def test_triangle_cloud_of_coincident_points_is_skipped(tmp_path):
    data = generate_triangle_clouds(20, seed=3, num_points=300, radius=30.0, min_dist=1.5)
    data["pos"][5] = data["pos"][5][0]  # cloud 5: 300 points on one spot
    raw = tmp_path / "raw.h5"
    write_raw(raw, data)
    build_triangle_shards(raw, tmp_path / "graphs", cutoff=4.0, shard_size=4, progress=False)
    split = ("train", "val", "test")[int(data["split"][5])]
    skips = _skips(tmp_path / "graphs", split)
    assert skips["counts"] == {"too_many_neighbors": 1}
    assert skips["examples"]["too_many_neighbors"] == ["triangle-000005"]
    manifest = read_manifest(tmp_path / "graphs" / "manifest.json")
    assert sum(info["num_graphs"] for info in manifest["splits"].values()) == 19
    with pytest.raises(DenseGraphError, match="'triangle-000005': atom 0 has 299 neighbours"):
        build_triangle_shards(raw, tmp_path / "strict", cutoff=4.0, shard_size=4, strict=True, progress=False)


# ------------------------------------------------------------------------------------- PPI
@pytest.fixture(scope="module")
def ppi_blob(tmp_path_factory):
    """PPI complexes, one of whose partner 0 has 2,000 extra atoms on its first C-alpha."""
    pytest.importorskip("atom3d")
    import atom3d_fixtures as af

    root = tmp_path_factory.mktemp("ppi")
    recs = [af.many_pairs_record(f"c{k}", 6, 7) for k in range(3)]
    blob = copy.deepcopy(recs[1])
    atoms = blob["atoms_pairs"]
    ca = atoms[(atoms["chain"] == "A") & (atoms["name"] == "CA")].iloc[0].to_dict()
    extra = [dict(ca, name="CX", fullname=" CX ") for _ in range(2000)]
    blob["atoms_pairs"] = af.frame(atoms.to_dict("records") + extra)
    recs[1] = blob
    af._write_splits(root, "ppi", {"train": recs, "val": recs[:1], "test": recs[2:]})
    return root, "c1/c1"  # the sample id: record id / ensemble


def test_ppi_complex_over_the_limit_is_skipped_at_build(ppi_blob, tmp_path):
    """PPI shards hold no edges (pairs are drawn when loading), yet the build checks each partner's
    degrees by the count pass: a pair's neighbourhood is part of a partner, never denser."""
    from eqgat.data.pairs import PairDataset, PairSampling
    from eqgat.tasks import TASKS
    from preprocess.task_shards import build_task_shards

    root, blob_id = ppi_blob
    build_task_shards(TASKS["ppi"], root, tmp_path / "graphs", cutoff=4.5, shard_size=2, progress=False)
    assert _skips(tmp_path / "graphs")["examples"] == {"too_many_neighbors": [blob_id]}
    ds = PairDataset(tmp_path / "graphs" / "manifest.json", "train", PairSampling(), seed=0)
    assert ds.num_complexes == 2 and all(ds[i].edge_index.shape[1] > 0 for i in range(len(ds)))


def test_ppi_pair_over_the_limit_is_an_error_naming_the_complex(ppi_blob, tmp_path):
    """Shards built without the limit (max_degree -1): drawing a pair of the dense complex is an
    error naming it and the pair, not 4 M edges."""
    from eqgat.data.pairs import PairDataset, PairSampling
    from eqgat.tasks import TASKS
    from preprocess.task_shards import build_task_shards

    root, blob_id = ppi_blob
    graphs = tmp_path / "graphs"
    build_task_shards(TASKS["ppi"], root, graphs, cutoff=4.5, shard_size=2, max_degree=-1, progress=False)
    manifest = json.loads((graphs / "manifest.json").read_text())
    del manifest["attrs"]["max_degree"]  # as written before the limit existed: the default applies
    (graphs / "manifest.json").write_text(json.dumps(manifest))
    ds = PairDataset(graphs / "manifest.json", "train", PairSampling(radius=8.0), seed=0, verify="none")
    assert ds.max_degree == 256
    first = ds._offsets[1]  # the blob's pairs follow complex 0's
    with pytest.raises(DenseGraphError, match=rf"PPI pair A:\d+-B:\d+ .*{blob_id!r}: atom \d+ has \d+ neighbours"):
        for i in range(first, ds._offsets[2]):
            ds[i]
    ds[0]  # other complexes load


# ---------------------------------------------------------------------------------------------
# item 9: damaged shards
# ---------------------------------------------------------------------------------------------
@pytest.fixture()
def triangle_graphs(tmp_path):
    raw = tmp_path / "raw.h5"
    write_raw(raw, generate_triangle_clouds(40, seed=2, num_points=12, radius=5.0, min_dist=1.0))
    out = tmp_path / "graphs"
    build_triangle_shards(raw, out, cutoff=4.0, shard_size=8, progress=False)
    return out


def _entry(graphs: Path, split: str = "train", k: int = 1) -> tuple[dict, Path]:
    entry = json.loads((graphs / "manifest.json").read_text())["splits"][split]["shards"][k]
    return entry, graphs / entry["path"]


def _edit_manifest(graphs: Path, edit) -> None:
    manifest = json.loads((graphs / "manifest.json").read_text())
    edit(manifest)
    (graphs / "manifest.json").write_text(json.dumps(manifest))


def _open_train(graphs: Path, verify: str = "cheap"):
    from eqgat.data import ShardDataset

    return ShardDataset(graphs / "manifest.json", "train", verify=verify)


def test_intact_graphs_open_and_record_size_and_checksum(triangle_graphs):
    entry, path = _entry(triangle_graphs)
    assert entry["size"] == path.stat().st_size and entry["sha256"] == sha256_file(path)
    assert len(_open_train(triangle_graphs, "full")) == 32


def test_missing_shard_is_an_error_naming_it(triangle_graphs):
    """Before: the dataset opened, and reading a graph of the shard failed later with
    'OSError: cannot open shard'."""
    _, path = _entry(triangle_graphs)
    path.unlink()
    with pytest.raises(ShardIntegrityError, match=re.escape(f"{path}: missing (the manifest lists it)")):
        _open_train(triangle_graphs)


def test_truncated_shard_is_an_error_naming_its_size(triangle_graphs):
    entry, path = _entry(triangle_graphs)
    with open(path, "r+b") as fh:
        fh.truncate(entry["size"] // 2)
    with pytest.raises(ShardIntegrityError, match=re.escape(f"{path}: {entry['size'] // 2} bytes but the manifest "
                                                            f"says {entry['size']}")):
        _open_train(triangle_graphs)
    assert any("bytes but the manifest says" in p for p in verify_manifest(triangle_graphs / "manifest.json"))


def test_manifest_count_disagreeing_with_the_shard_is_an_error(triangle_graphs):
    """Before: the manifest's smaller count silently dropped the shard's last graphs (a larger
    one failed later with an IndexError)."""
    def fewer(m):
        m["splits"]["train"]["shards"][1]["num_graphs"] = 5
        m["splits"]["train"]["num_graphs"] -= 3

    _edit_manifest(triangle_graphs, fewer)
    _, path = _entry(triangle_graphs)
    with pytest.raises(ShardIntegrityError, match=re.escape(f"{path}: num_graphs is 8 in the file but 5 in the manifest")):
        _open_train(triangle_graphs)
    assert verify_manifest(triangle_graphs / "manifest.json") == [
        f"train: {path}: num_graphs is 8 in the file but 5 in the manifest"]


def test_split_total_disagreeing_with_its_shards_is_an_error(triangle_graphs):
    _edit_manifest(triangle_graphs, lambda m: m["splits"]["train"].update(num_graphs=40))
    with pytest.raises(ShardIntegrityError, match="split train has num_graphs 40 but its shards list 32"):
        _open_train(triangle_graphs)


def test_shard_of_another_build_is_an_error(triangle_graphs):
    """The manifest says cutoff 4.0; a shard built with cutoff 5.0 (same size, re-recorded) is
    refused, and so is one of another format version."""
    entry, path = _entry(triangle_graphs)
    with h5py.File(path, "r+") as f:
        f.attrs["cutoff"] = 5.0
    _edit_manifest(triangle_graphs, lambda m: m["splits"]["train"]["shards"][1].update(size=path.stat().st_size))
    with pytest.raises(ShardIntegrityError, match=re.escape(f"{path}: built with cutoff = 5.0 but the manifest says 4.0")):
        _open_train(triangle_graphs)
    with h5py.File(path, "r+") as f:
        f.attrs["cutoff"] = 4.0
        f.attrs["format_version"] = 1
    _edit_manifest(triangle_graphs, lambda m: m["splits"]["train"]["shards"][1].update(size=path.stat().st_size))
    with pytest.raises(ShardIntegrityError, match=re.escape(f"{path}: shard format_version 1")):
        _open_train(triangle_graphs)


def test_changed_bytes_are_found_by_full_verification_only(triangle_graphs):
    _, path = _entry(triangle_graphs)
    with h5py.File(path, "r") as f:
        offset = f["pos"].id.get_chunk_info(0).byte_offset  # format 3: chunked
    with open(path, "r+b") as fh:  # one coordinate's bytes, same size
        fh.seek(offset)
        fh.write(b"\x00\x00\x80\x7f")
    assert len(_open_train(triangle_graphs)) == 32  # cheap: metadata only
    with pytest.raises(ShardIntegrityError, match=re.escape(f"{path}: checksum mismatch")):
        _open_train(triangle_graphs, "full")


def test_train_verify_shards_flag(triangle_graphs, caplog):
    """`python -m eqgat train --verify-shards` checks the SHA-256 before training."""
    from eqgat.cli import main

    _, path = _entry(triangle_graphs, "val", 0)
    with h5py.File(path, "r") as f:
        offset = f["pos"].id.get_chunk_info(0).byte_offset  # format 3: chunked
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(b"\x00\x00\x80\x7f")
    section = json.dumps({"graph": {"cutoff": 4.0}})
    args = ["train", "--task", "triangle", "--data", str(triangle_graphs), "--section", section,
            "--out", str(triangle_graphs.parent / "run"), "--device", "cpu", "--epochs", "1"]
    assert main([*args, "--verify-shards"]) == 1
    assert f"{path}: checksum mismatch" in caplog.text
    assert not (triangle_graphs.parent / "run" / "best.pt").exists()


def test_pair_dataset_verifies_its_shards(ppi_blob, tmp_path):
    from eqgat.data.pairs import PairDataset, PairSampling
    from eqgat.tasks import TASKS
    from preprocess.task_shards import build_task_shards

    root, _ = ppi_blob
    graphs = tmp_path / "graphs"
    build_task_shards(TASKS["ppi"], root, graphs, cutoff=4.5, shard_size=1, progress=False)
    _, path = _entry(graphs, "train", 1)
    path.unlink()
    with pytest.raises(ShardIntegrityError, match=re.escape(f"{path}: missing")):
        PairDataset(graphs / "manifest.json", "train", PairSampling(), seed=0)


# ------------------------------------------------------------------------------- workflow
@pytest.mark.slow
def test_workflow_rebuilds_a_graph_folder_whose_shard_was_deleted(tiny_workflow_copy):
    """Before: after deleting a shard, `snakemake` said "Nothing to be done" and training failed
    later with an OSError. Now the dry run plans the rebuild and names the shard, the run restores
    it (the same bytes) and retrains on it, and then nothing is left to do."""
    from workflow_helpers import TINY_CONFIG, planned_jobs, snakemake, write_config

    workdir, configfile = tiny_workflow_copy  # the finished tiny workflow (seeds 0 and 1)
    config = copy.deepcopy(TINY_CONFIG)
    graphs = workdir / "results/triangle/graphs"
    shard = graphs / "train/shard-00001.h5"
    original = shard.read_bytes()
    shard.unlink()

    assert planned_jobs(workdir, configfile) == {"build_graphs": 1, "train": 2, "evaluate": 2, "aggregate": 1,
                                                 "plot_test": 1, "all": 1}
    stamp = (workdir / "results/triangle/graphs.check").read_text()
    assert "results/triangle/graphs is damaged: train/shard-00001.h5 is missing" in stamp
    run = snakemake(workdir, "all", "--cores", "2", "--configfile", str(configfile))
    assert "train/shard-00001.h5 is missing: the graphs will be rebuilt" in run.stderr
    assert shard.read_bytes() == original
    assert planned_jobs(workdir, configfile) == {}

    # a truncated shard and a deleted manifest are noticed the same way
    with open(shard, "r+b") as fh:
        fh.truncate(1000)
    assert planned_jobs(workdir, configfile)["build_graphs"] == 1
    assert f"has 1000 bytes, the manifest says {len(original)}" in (workdir / "results/triangle/graphs.check").read_text()
    snakemake(workdir, "results/triangle/graphs", "--cores", "1", "--configfile", str(configfile))
    (graphs / "manifest.json").unlink()
    assert planned_jobs(workdir, configfile)["build_graphs"] == 1

    # the task section's graph.max_degree reaches the build's command line (default 256)
    def build_command(path: Path) -> str:
        proc = snakemake(workdir, "results/triangle/graphs", "-n", "-p", "--cores", "1", "--configfile", str(path))
        return next(line for line in proc.stdout.splitlines() if "build-graphs" in line)

    assert "--max-degree 256" in build_command(configfile)
    config["triangle"]["graph"]["max_degree"] = 100
    assert "--max-degree 100" in build_command(write_config(workdir, config, "max_degree.yaml"))
