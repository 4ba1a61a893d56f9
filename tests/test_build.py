import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from _graphs import build_triangle_shards
from preprocess.build import (
    ShardTask,
    block_from_records,
    build_shards,
)
from eqgat.tasks import preprocess_main as main
from preprocess.shards import ShardReader, read_manifest, sha256_file
from preprocess.triangle import generate_triangle_clouds, write_raw

CUTOFF = 5.0


def brute_radius_graph_batch(pos, ptr, cutoff, max_neighbors=None):
    """Reference: edges j->i, i != j, |x_i - x_j|^2 <= cutoff^2, sorted by (i, j), local."""
    eis, counts = [], []
    for b in range(len(ptr) - 1):
        p = np.asarray(pos[ptr[b]:ptr[b + 1]], np.float64)
        d = ((p[:, None] - p[None]) ** 2).sum(-1)  # squared distances, as neighbors.py
        adj = d <= cutoff * cutoff
        np.fill_diagonal(adj, False)
        if max_neighbors is not None:
            for i in range(len(p)):
                nb = np.flatnonzero(adj[i])
                if len(nb) > max_neighbors:
                    keep = nb[np.argsort(d[i, nb], kind="stable")[:max_neighbors]]
                    adj[i] = False
                    adj[i, keep] = True
        i, j = np.nonzero(adj)  # row-major: sorted by (i, j)
        eis.append(np.stack([j, i]))
        counts.append(len(i))
    edge_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    ei = np.concatenate(eis, axis=1) if eis else np.zeros((2, 0))
    return ei.astype(np.int64), edge_ptr


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    path = tmp_path_factory.mktemp("raw") / "raw.h5"
    data = generate_triangle_clouds(50, seed=11, num_points=30, radius=6.0, min_dist=1.5)
    write_raw(path, data)
    return path, data


@pytest.fixture(scope="module")
def serial_build(raw, tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    m = build_triangle_shards(raw[0], out, cutoff=CUTOFF, shard_size=16, workers=1,
                              progress=False)
    return out, m


def all_datasets(out):
    res = {}
    for p in sorted(Path(out).rglob("*.h5")):
        with h5py.File(p, "r") as f:
            for k in f:
                res[(p.relative_to(out).as_posix(), k)] = f[k][()]
            res[(p.relative_to(out).as_posix(), "attrs")] = {k: f.attrs[k] for k in f.attrs}
    return res


def test_serial_build_contents(raw, serial_build):
    path, data = raw
    out, m = serial_build
    assert read_manifest(out / "manifest.json")["splits"] == m["splits"]
    assert {k: v["num_graphs"] for k, v in m["splits"].items()} == {
        "train": 40, "val": 5, "test": 5}
    assert [e["path"] for e in m["splits"]["train"]["shards"]] == [
        "train/shard-00000.h5", "train/shard-00001.h5", "train/shard-00002.h5"]
    assert [e["num_graphs"] for e in m["splits"]["train"]["shards"]] == [16, 16, 8]
    assert m["attrs"]["cutoff"] == CUTOFF and m["attrs"]["max_neighbors"] == -1
    assert "seed=11" in m["attrs"]["source"]

    from eqgat.data import ShardDataset

    for code, split in enumerate(["train", "val", "test"]):
        ds = ShardDataset(out / "manifest.json", split)
        idx = np.flatnonzero(data["split"] == code)
        assert len(ds) == len(idx)
        ref_ei, ref_ptr = brute_radius_graph_batch(
            data["pos"][idx].reshape(-1, 3), np.arange(len(idx) + 1) * 30, CUTOFF)
        for n, k in enumerate(idx):
            d = ds[n]
            assert d.id == f"triangle-{k:06d}"
            np.testing.assert_array_equal(d.pos.numpy(), data["pos"][k])
            np.testing.assert_array_equal(d.z.numpy(), data["z"][k])
            np.testing.assert_array_equal(d.y.numpy()[0], data["y"][k])
            np.testing.assert_array_equal(d.edge_index.numpy(),
                                          ref_ei[:, ref_ptr[n]:ref_ptr[n + 1]])
    with ShardReader(out / "train" / "shard-00000.h5") as r:
        a = r.attrs
        assert a["task"] == "triangle" and a["cutoff"] == CUTOFF
        assert a["edge_index_dtype"] == "int16" and a["format_version"] == 3
        assert a["target_names"] == "centroid_distance,perimeter,area"


def test_parallel_build_identical(raw, serial_build, tmp_path):
    out_s, m_s = serial_build
    m_p = build_triangle_shards(raw[0], tmp_path, cutoff=CUTOFF, shard_size=16, workers=2,
                                progress=False)
    assert m_p["splits"] == m_s["splits"]
    a, b = all_datasets(out_s), all_datasets(tmp_path)
    assert a.keys() == b.keys()
    for key in a:
        if key[1] == "attrs":
            assert a[key].keys() == b[key].keys()
            for k in a[key]:
                assert np.array_equal(a[key][k], b[key][k]), key
        else:
            assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key]), key
    # with track_times=False even the files are byte-identical
    for p in sorted(out_s.rglob("*.h5")):
        assert p.read_bytes() == (tmp_path / p.relative_to(out_s)).read_bytes()


def test_rebuild_removes_stale_shards_and_max_neighbors(raw, tmp_path):
    build_triangle_shards(raw[0], tmp_path, cutoff=CUTOFF, shard_size=8, progress=False,)
    assert len(list((tmp_path / "train").glob("shard-*.h5"))) == 5
    m = build_triangle_shards(raw[0], tmp_path, cutoff=CUTOFF, shard_size=64, max_neighbors=3,
                              progress=False)
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == ["shard-00000.h5"]
    assert m["attrs"]["max_neighbors"] == 3
    entry = m["splits"]["train"]["shards"][0]
    assert entry["sha256"] == sha256_file(tmp_path / entry["path"])
    assert entry["size"] == (tmp_path / entry["path"]).stat().st_size
    with ShardReader(tmp_path / "train" / "shard-00000.h5") as r:
        for i in range(len(r)):
            tgt = r.read(i)["edge_index"][1]
            assert np.bincount(tgt, minlength=30).max() <= 3


def _records_block(task):
    rng = np.random.default_rng(task.index)
    recs = []
    for g in range(task.payload):
        n = int(rng.integers(1, 20))
        recs.append((f"{task.split}-{task.index}-{g}", rng.uniform(0, 6, (n, 3)),
                     rng.integers(0, 9, n), np.float32(rng.normal()), n - 1))
    return block_from_records(recs, cutoff=3.0, graph_fn=brute_radius_graph_batch)


def test_generic_build_shards_records(tmp_path):
    tasks = [ShardTask("train", 0, "train/shard-00000.h5", 3),
             ShardTask("train", 1, "train/shard-00001.h5", 2),
             ShardTask("test", 0, "test/shard-00000.h5", 1)]
    attrs = {"task": "toy", "cutoff": 3.0, "max_neighbors": -1, "source": "records"}
    m = build_shards(tasks, _records_block, tmp_path, attrs, progress=False)
    assert m["task"] == "toy" and m["splits"]["train"]["num_graphs"] == 5
    from eqgat.data import ShardDataset

    ds = ShardDataset(tmp_path / "manifest.json", "train")
    assert [d.id for d in ds] == ["train-0-0", "train-0-1", "train-0-2", "train-1-0", "train-1-1"]
    for d in ds:
        assert int(d.center_index) == d.num_nodes - 1
        assert d.y.shape == (1, 1)


class _Node:
    pass


_CYCLES = []  # weak references to the garbage cycles the shards of this process left


def _freeze_report_block(task):
    """A block, and how the garbage collector saw the heap while it was made."""
    import gc
    import os
    import weakref

    earlier = [ref() is None for ref in _CYCLES]
    node = _Node()
    node.self = node  # garbage only the collector frees, once this shard is done
    _CYCLES.append(weakref.ref(node))
    return _records_block(task), {"frozen": gc.get_freeze_count() > 0, "earlier_garbage_collected": all(earlier),
                                  "pid": os.getpid()}


@pytest.mark.parametrize("workers", [1, 2])
def test_shards_are_made_with_the_older_heap_frozen(tmp_path, workers):
    """While a shard is made, the collector leaves the objects that were there before it alone
    (gc.freeze), and the garbage the earlier shards left was collected first; the serial build
    unfreezes the caller's heap at the end."""
    import gc

    tasks = [ShardTask("train", k, f"train/shard-{k:05d}.h5", 2) for k in range(4)]
    attrs = {"task": "toy", "cutoff": 3.0, "max_neighbors": -1, "source": "records"}
    m = build_shards(tasks, _freeze_report_block, tmp_path, attrs, workers=workers, progress=False)
    reports = [s["skipped"] for s in m["splits"]["train"]["shards"]]
    assert all(r["frozen"] and r["earlier_garbage_collected"] for r in reports), reports
    assert len({r["pid"] for r in reports}) <= workers
    assert gc.get_freeze_count() == 0


def test_frozen_heap_nests_and_leaves_a_foreign_freeze_alone():
    import gc
    import weakref

    from preprocess.build import frozen_heap

    def garbage():
        node = _Node()
        node.self = node
        return weakref.ref(node)

    assert gc.get_freeze_count() == 0
    with frozen_heap():
        outer = gc.get_freeze_count()
        assert outer > 0
        made_while_frozen = garbage()
        gc.collect()
        assert made_while_frozen() is None  # new objects are collected as usual
        earlier = garbage()
        with frozen_heap():  # the next shard: the garbage is collected before the rest is frozen
            assert earlier() is None and gc.get_freeze_count() >= outer
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0
    gc.freeze()  # someone else's
    try:
        frozen = gc.get_freeze_count()
        with frozen_heap():
            pass
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()


def test_failed_build_writes_no_manifest(tmp_path):
    def boom(task):
        raise RuntimeError("reader failed")

    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(RuntimeError, match="reader failed"):
        build_shards([ShardTask("train", 0, "train/shard-00000.h5")], boom, tmp_path,
                     {"task": "t", "cutoff": 1.0, "max_neighbors": -1, "source": "x"},
                     progress=False)
    assert not (tmp_path / "manifest.json").exists()


def test_cli_end_to_end(tmp_path):
    raw = tmp_path / "raw.h5"
    assert main(["generate-triangle", "--num-clouds", "20", "--seed", "3", "--out", str(raw),
                 "--num-points", "20", "--radius", "6", "--min-dist", "1.5"]) == 0
    with h5py.File(raw, "r") as f:
        assert f["pos"].shape == (20, 20, 3) and f.attrs["seed"] == 3
    assert main(["build-graphs", "--task", "triangle", "--raw", str(raw), "--out",
                 str(tmp_path / "g"), "--cutoff", "4", "--shard-size", "5",
                 "--no-progress"]) == 0
    m = read_manifest(tmp_path / "g" / "manifest.json")
    assert m["splits"]["train"]["num_graphs"] == 16
    assert len(m["splits"]["train"]["shards"]) == 4


def test_cli_errors_exit_nonzero(tmp_path):
    r = subprocess.run([sys.executable, "-m", "eqgat.tasks", "build-graphs", "--task",
                        "triangle", "--raw", str(tmp_path / "missing.h5"), "--out",
                        str(tmp_path / "g"), "--cutoff", "4"], capture_output=True, text=True)
    assert r.returncode == 1
    assert "missing.h5" in r.stderr and "build-graphs failed" in r.stderr
    r = subprocess.run([sys.executable, "-m", "preprocess", "generate-triangle"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--num-clouds" in r.stderr
    # preprocess alone has no task declarations: it names the command that has them
    r = subprocess.run([sys.executable, "-m", "preprocess", "build-graphs", "--task", "triangle"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "python -m eqgat.tasks build-graphs" in r.stderr


def _malloc_settings() -> dict:
    import os

    import dask

    return {**{k: os.environ.get(k) for k in ("MALLOC_TRIM_THRESHOLD_", "NUMBA_NUM_THREADS", "OMP_NUM_THREADS")},
            "profile": dask.config.get("distributed.worker.profile.enabled"),
            "monitors": (dask.config.get("distributed.worker.memory.monitor-interval"),
                         dask.config.get("distributed.admin.system-monitor.interval"))}


def test_local_workers_keep_glibc_dynamic_mmap_threshold(monkeypatch):
    """Dask's nanny would set MALLOC_TRIM_THRESHOLD_ in its workers, which turns off glibc's dynamic
    mmap threshold: every large array of a shard is then freshly mapped and zeroed (40x the page
    faults, about a quarter more CPU per shard than serially). The build's workers run without it,
    with one Numba and BLAS thread each, without the statistical profiler, with slower memory and
    system monitors, forked by Dask's
    forkserver; also when this process has the variable, as it has after any Dask cluster with
    the default settings (its nanny leaves it in os.environ), and this process gets its own
    value back afterwards."""
    import os

    from preprocess.cluster import dask_client

    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    with dask_client(1) as client:
        (settings,) = client.run(_malloc_settings).values()
        meanwhile = os.environ.get("MALLOC_TRIM_THRESHOLD_")
        # forked by Dask's forkserver (NumPy, pandas, Dask imported there once), not spawned here
        (parent,) = client.run(os.getppid).values()
    assert parent != os.getpid()
    # the memory and system monitors wake the worker's event loop every 1 s and 5 s (Dask: 100 and
    # 500 ms; each wake-up takes the GIL from the shard being built)
    assert settings == {"MALLOC_TRIM_THRESHOLD_": None, "NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
                        "profile": False, "monitors": ("1s", "5s")}
    assert meanwhile is None and os.environ["MALLOC_TRIM_THRESHOLD_"] == "65536"


def test_slurm_workers_get_the_same_malloc_settings(tmp_path):
    """The SLURM job script hands its nanny the local cluster's worker settings: a fresh
    interpreter with the script's exports spawns workers without MALLOC_TRIM_THRESHOLD_, even
    where the submitting process had it (sbatch hands its environment on)."""
    import os
    import shlex

    from preprocess.cluster import slurm_cluster_options

    kwargs, _ = slurm_cluster_options({"queue": "q"}, 2)
    env = dict(os.environ, MALLOC_TRIM_THRESHOLD_="65536")
    for line in kwargs["job_script_prologue"]:
        command, rest = line.split(" ", 1)
        if command == "unset":
            env.pop(rest, None)
        else:
            assert command == "export"
            name, value = rest.split("=", 1)
            env[name] = shlex.split(value)[0]
    code = ("import os; from distributed.nanny import _get_env_variables; "
            "print(sorted(_get_env_variables('distributed.nanny.pre-spawn-environ')), "
            "'MALLOC_TRIM_THRESHOLD_' in os.environ)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert "OMP_NUM_THREADS" in out and "MALLOC_TRIM_THRESHOLD_'" not in out and out.strip().endswith("False")
