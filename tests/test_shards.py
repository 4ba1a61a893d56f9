import json
import os

import h5py
import numpy as np
import pytest
import torch

from preprocess.shards import (
    FORMAT_VERSION,
    GraphBlock,
    ShardFormatError,
    ShardReader,
    read_manifest,
    verify_manifest,
    write_manifest,
    write_shard,
)

ATTRS = {"task": "test", "cutoff": 4.5, "max_neighbors": None, "source": "unit test"}


def random_graphs(rng, sizes, num_targets=2, classification=False, big=None):
    graphs = []
    for g, n in enumerate(sizes):
        e = 0 if n <= 1 else int(rng.integers(0, 3 * n))
        ei = rng.integers(0, max(n, 1), size=(2, e))
        if big is not None and g == big and n > 1:
            ei[:, 0] = [n - 1, 0]  # make sure the largest local index is used
        y = (rng.integers(0, 5) if classification
             else rng.normal(size=num_targets).astype(np.float32))
        graphs.append({"pos": rng.normal(size=(n, 3)).astype(np.float32),
                       "z": rng.integers(0, 9, size=n).astype(np.int8),
                       "edge_index": ei, "y": y, "id": f"graph-{g}-é",
                       "center_index": int(rng.integers(-1, n))})
    return graphs


def check_equal(got, want, columns=("center_index",)):
    np.testing.assert_array_equal(got["pos"], want["pos"])
    assert got["pos"].dtype == np.float32 and got["pos"].shape == (len(want["z"]), 3)
    np.testing.assert_array_equal(got["z"], want["z"])
    assert got["z"].dtype == np.int8
    np.testing.assert_array_equal(got["edge_index"], np.asarray(want["edge_index"]).reshape(2, -1))
    assert got["edge_index"].dtype == np.int64 and got["edge_index"].shape[0] == 2
    np.testing.assert_array_equal(got["y"], want["y"])
    assert got["id"] == want["id"]
    for c in columns:
        assert got[c] == want[c]


@pytest.mark.parametrize("big_nodes,expected", [(0, "int16"), (40_000, "int32")])
def test_round_trip(tmp_path, big_nodes, expected):
    rng = np.random.default_rng(0)
    sizes = [5, 0, 1, 12, 3, 30] + ([big_nodes] if big_nodes else [])
    graphs = random_graphs(rng, sizes, big=len(sizes) - 1)
    block = GraphBlock.from_graphs(graphs, columns=["center_index"])
    path = tmp_path / "s.h5"
    write_shard(path, block, ATTRS)
    with h5py.File(path, "r") as f:
        assert f["edge_index"].dtype == np.dtype(expected)
        assert f.attrs["edge_index_dtype"] == expected
        assert f.attrs["format_version"] == FORMAT_VERSION
        assert f.attrs["num_graphs"] == len(sizes)
        assert f.attrs["max_neighbors"] == -1
        assert f["node_ptr"].dtype == np.int64 and f["edge_ptr"].dtype == np.int64
        assert f["pos"].chunks[1:] == (3,) and f["pos"].fletcher32  # format 3: whole rows per chunk, checksummed
    r = ShardReader(path)
    assert len(r) == len(sizes)
    assert r.attrs["task"] == "test" and r.attrs["cutoff"] == 4.5
    assert r.attrs["created_by"].startswith("eqgat-workflow")
    for i, g in enumerate(graphs):
        check_equal(r.read(i), g)
        check_equal(block.graph(i), g)
    check_equal(r.read(-1), graphs[-1])
    with pytest.raises(IndexError):
        r.read(len(sizes))
    back = r.read_block()
    assert back.ids == block.ids
    np.testing.assert_array_equal(back.edge_index, block.edge_index)
    r.close()


def test_zero_edge_graph_and_one_node(tmp_path):
    graphs = [
        {"pos": np.zeros((1, 3), np.float32), "z": [3], "edge_index": np.zeros((2, 0)),
         "y": np.float32([1, 2]), "id": "one"},
        {"pos": np.ones((4, 3), np.float32), "z": [1, 2, 3, 4], "edge_index": np.zeros((2, 0)),
         "y": np.float32([3, 4]), "id": "noedges"},
    ]
    block = GraphBlock.from_graphs(graphs)
    write_shard(tmp_path / "s.h5", block, ATTRS)
    with ShardReader(tmp_path / "s.h5") as r:
        a, b = r.read(0), r.read(1)
    assert a["pos"].shape == (1, 3) and a["edge_index"].shape == (2, 0)
    assert b["edge_index"].shape == (2, 0) and b["id"] == "noedges"
    assert "center_index" not in a


def test_classification_and_compression(tmp_path):
    rng = np.random.default_rng(1)
    graphs = random_graphs(rng, [4, 6, 2], classification=True)
    block = GraphBlock.from_graphs(graphs, columns=["center_index"])
    assert block.y.dtype == np.int64 and block.y.shape == (3,)
    write_shard(tmp_path / "c.h5", block, ATTRS, compression="gzip")
    with h5py.File(tmp_path / "c.h5", "r") as f:
        assert f["pos"].compression == "gzip" and f.attrs["y_kind"] == "classification"
    with ShardReader(tmp_path / "c.h5") as r:
        for i, g in enumerate(graphs):
            check_equal(r.read(i), g)
            assert r.read(i)["y"].dtype == np.int64


def test_empty_block(tmp_path):
    block = GraphBlock.from_graphs([])
    write_shard(tmp_path / "e.h5", block, ATTRS)
    with ShardReader(tmp_path / "e.h5") as r:
        assert len(r) == 0


def test_block_validation():
    with pytest.raises(ShardFormatError, match="local"):
        GraphBlock(node_ptr=[0, 2, 4], edge_ptr=[0, 1, 2], pos=np.zeros((4, 3)), z=np.zeros(4),
                   edge_index=[[0, 3], [1, 0]], y=np.zeros((2, 1)), ids=["a", "b"])
    with pytest.raises(ShardFormatError, match="pos"):
        GraphBlock(node_ptr=[0, 2], edge_ptr=[0, 0], pos=np.zeros((3, 3)), z=np.zeros(2),
                   edge_index=np.zeros((2, 0)), y=np.zeros((1, 1)), ids=["a"])
    with pytest.raises(ShardFormatError, match="required attrs"):
        write_shard("/nonexistent/x.h5", GraphBlock.from_graphs([]), {"task": "t"})


def test_atomic_write_leaves_nothing_on_error(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    block = GraphBlock.from_graphs(random_graphs(rng, [3, 4]))
    path = tmp_path / "out" / "s.h5"

    calls = {"n": 0}
    orig = h5py.Group.create_dataset

    def failing(self, name, *a, **k):
        calls["n"] += 1
        if name == "y":
            raise RuntimeError("disk full (simulated)")
        return orig(self, name, *a, **k)

    monkeypatch.setattr(h5py.Group, "create_dataset", failing)
    with pytest.raises(RuntimeError, match="simulated"):
        write_shard(path, block, ATTRS)
    assert calls["n"] >= 5
    assert list((tmp_path / "out").iterdir()) == []
    monkeypatch.undo()

    # an existing shard is untouched by a failed rewrite
    write_shard(path, block, ATTRS)
    before = path.read_bytes()
    monkeypatch.setattr(h5py.Group, "create_dataset", failing)
    with pytest.raises(RuntimeError):
        write_shard(path, GraphBlock.from_graphs(random_graphs(rng, [9])), ATTRS)
    assert path.read_bytes() == before
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["s.h5"]


def test_identical_writes_are_byte_identical(tmp_path):
    rng = np.random.default_rng(3)
    block = GraphBlock.from_graphs(random_graphs(rng, [3, 7, 2]))
    write_shard(tmp_path / "a.h5", block, ATTRS)
    write_shard(tmp_path / "b.h5", block, ATTRS)
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()


def test_bad_format_version(tmp_path):
    rng = np.random.default_rng(4)
    path = tmp_path / "bad.h5"
    write_shard(path, GraphBlock.from_graphs(random_graphs(rng, [3])), ATTRS)
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = 99
    r = ShardReader(path)  # lazy: no error yet
    with pytest.raises(ShardFormatError, match=r"bad\.h5.*format_version 99"):
        r.read(0)
    with h5py.File(path, "r+") as f:
        del f.attrs["format_version"]
    with pytest.raises(ShardFormatError, match="format_version None"):
        len(ShardReader(path))


def test_missing_file_error(tmp_path):
    with pytest.raises(OSError, match="nope.h5"):
        ShardReader(tmp_path / "nope.h5").read(0)


def test_reader_reopens_after_fork(tmp_path):
    rng = np.random.default_rng(5)
    graphs = random_graphs(rng, [3, 4, 5])
    write_shard(tmp_path / "s.h5", GraphBlock.from_graphs(graphs), ATTRS)
    r = ShardReader(tmp_path / "s.h5")
    r.read(0)  # opened in the parent
    parent_file = r._file
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            ok = r.read(2)["id"] == graphs[2]["id"] and r._file is not parent_file
            os.write(wfd, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(wfd)
    os.waitpid(pid, 0)
    assert os.read(rfd, 1) == b"1"
    assert r.read(1)["id"] == graphs[1]["id"]  # parent handle still fine
    r.close()


def test_manifest_round_trip(tmp_path):
    rng = np.random.default_rng(6)
    entries = []
    for split, k, n in [("train", 0, 3), ("train", 1, 2), ("val", 0, 1), ("test", 0, 2)]:
        p = tmp_path / split / f"shard-{k:05d}.h5"
        write_shard(p, GraphBlock.from_graphs(random_graphs(rng, [2] * n)), ATTRS)
        entries.append({"split": split, "path": str(p), "num_graphs": n})
    # given out of split order: the manifest orders splits train, val, test
    m = write_manifest(tmp_path / "manifest.json", entries[2:] + entries[:2], task="test",
                       attrs=ATTRS, sha256=True)
    assert list(m["splits"]) == ["train", "val", "test"]
    back = read_manifest(tmp_path / "manifest.json")
    assert back["root"] == str(tmp_path.resolve())
    assert back["splits"] == m["splits"] and back["task"] == "test"
    assert back["splits"]["train"]["num_graphs"] == 5
    assert [e["path"] for e in back["splits"]["train"]["shards"]] == [
        "train/shard-00000.h5", "train/shard-00001.h5"]
    assert all(len(e["sha256"]) == 64 for s in back["splits"].values() for e in s["shards"])
    assert back["attrs"]["cutoff"] == 4.5 and back["attrs"]["max_neighbors"] is None
    assert verify_manifest(tmp_path / "manifest.json") == []
    (tmp_path / "val" / "shard-00000.h5").write_bytes(b"garbage")
    problems = verify_manifest(tmp_path / "manifest.json")
    assert "checksum" in problems[0] and all("val" in q for q in problems)
    # no temp files left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json", "test", "train", "val"]


def test_manifest_errors(tmp_path):
    p = tmp_path / "manifest.json"
    p.write_text(json.dumps({"manifest_version": 7}))
    with pytest.raises(ShardFormatError, match="manifest_version"):
        read_manifest(p)
    with pytest.raises(FileNotFoundError):
        read_manifest(tmp_path / "none.json")
    with pytest.raises(ValueError, match="not inside"):
        write_manifest(p, [{"split": "train", "path": "/elsewhere/x.h5", "num_graphs": 1}],
                       task="t")


# ------------------------------------------------------------------------------------------
# ShardDataset
# ------------------------------------------------------------------------------------------
@pytest.fixture()
def shard_dir(tmp_path):
    rng = np.random.default_rng(7)
    entries, all_graphs = [], {"train": [], "val": []}
    layout = [("train", 0, [4, 1, 6]), ("train", 1, [3]), ("train", 2, [5, 2]), ("val", 0, [7])]
    for split, k, sizes in layout:
        graphs = random_graphs(rng, sizes)
        for g in graphs:
            g["id"] = f"{split}-{k}-{g['id']}-{len(all_graphs[split])}"
        p = tmp_path / split / f"shard-{k:05d}.h5"
        write_shard(p, GraphBlock.from_graphs(graphs, columns=["center_index"]), ATTRS)
        entries.append({"split": split, "path": str(p), "num_graphs": len(graphs)})
        all_graphs[split].extend(graphs)
    write_manifest(tmp_path / "manifest.json", entries, task="test", attrs=ATTRS)
    return tmp_path, all_graphs


def test_dataset_yields_written_graphs(shard_dir):
    from eqgat.data import ShardDataset

    root, graphs = shard_dir
    ds = ShardDataset(root / "manifest.json", "train")
    assert len(ds) == 6 and len(ShardDataset(root / "manifest.json", "val")) == 1
    assert ds.attrs["cutoff"] == 4.5 and ds.attrs["task"] == "test"
    for i, g in enumerate(graphs["train"]):
        d = ds[i]
        assert d.id == g["id"]
        assert d.z.dtype == torch.long and d.z.tolist() == list(g["z"])
        assert d.pos.dtype == torch.float32
        np.testing.assert_array_equal(d.pos.numpy(), g["pos"])
        assert d.edge_index.dtype == torch.long
        np.testing.assert_array_equal(d.edge_index.numpy(), g["edge_index"])
        assert d.y.shape == (1, 2) and d.y.dtype == torch.float32
        np.testing.assert_array_equal(d.y.numpy()[0], g["y"])
        assert d.center_index.dim() == 0 and int(d.center_index) == g["center_index"]
        assert d.num_nodes == len(g["z"])
    assert ds[-1].id == graphs["train"][-1]["id"]
    few = ShardDataset(root / "manifest.json", "train", max_open_files=1)
    assert [few[i].id for i in (5, 0, 3, 4, 1)] == [graphs["train"][i]["id"] for i in (5, 0, 3, 4, 1)]
    assert sum(r._file is not None for r in few._readers) == 1
    with pytest.raises(IndexError):
        ds[6]
    with pytest.raises(KeyError, match="split"):
        ShardDataset(root / "manifest.json", "test")


def test_dataloader_with_fork_workers(shard_dir):
    from torch_geometric.loader import DataLoader

    from eqgat.data import ShardDataset

    root, graphs = shard_dir
    ds = ShardDataset(root / "manifest.json", "train")
    ds[0]  # open a handle in the parent before forking
    loader = DataLoader(ds, batch_size=4, shuffle=False, num_workers=2,
                        multiprocessing_context="fork")
    ids, ys = [], []
    for batch in loader:
        ids.extend(batch.id)
        ys.append(batch.y)
        assert batch.y.shape[1] == 2
    assert ids == [g["id"] for g in graphs["train"]]
    np.testing.assert_array_equal(torch.cat(ys).numpy(), np.stack([g["y"] for g in graphs["train"]]))


def test_dataset_pickles_without_handles(shard_dir):
    import pickle

    from eqgat.data import ShardDataset

    root, graphs = shard_dir
    ds = ShardDataset(root / "manifest.json", "val")
    ds[0]
    ds2 = pickle.loads(pickle.dumps(ds))
    assert ds2[0].id == graphs["val"][0]["id"]
