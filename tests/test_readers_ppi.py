"""PPI: the reader stores each complex once; residue pairs are drawn when loaded (at most 10
positives and as many negatives per complex, per (seed, epoch) for training, fixed for
validation and test), each pair becoming two 30 Å neighbourhoods with their own radius graphs."""
import numpy as np
import pytest

pytest.importorskip("lmdb")
pytest.importorskip("atom3d")

import atom3d_fixtures as af  # noqa: E402
from eqgat.data.pairs import PairDataset, PairSampling, draw_pairs, num_drawn  # noqa: E402
from eqgat.tasks import TASKS  # noqa: E402
from preprocess.neighbors import radius_graph  # noqa: E402
from preprocess.readers import RecordError, read_samples  # noqa: E402
from preprocess.readers import ppi  # noqa: E402
from preprocess.readers.lmdb_records import read_record  # noqa: E402
from preprocess.readers.report import SkipReport  # noqa: E402
from preprocess.task_shards import build_task_shards  # noqa: E402

H, C = 0, 1
PAPER = PairSampling()  # the paper protocol: 10 positives, as many negatives, redrawn each epoch


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    return af.make_ppi(tmp_path_factory.mktemp("ppi"), bad=True)


def test_layout(fx):
    assert fx.paths["train"].relative_to(fx.root).as_posix() == "DIPS-split/data/train"


# ----------------------------------------------------------------------------- the reader
def test_a_complex_is_one_sample_with_its_residues_and_positives(fx):
    rec = read_record(fx.paths["train"], 0)
    exp = fx.notes["expected"]
    rep = SkipReport()
    (s,) = list(ppi.samples(rec, 0, report=rep))
    assert s.id == "cplx.pdb1/cplx.pdb1" and s.y is None
    n0 = s.fields["num_atoms0"]
    assert s.parts == (n0, s.num_atoms - n0) and (s.z != H).all()
    assert list(s.fields["res0"]) == [f"{c}:{r}" for c, r in exp["usable0"]]
    assert list(s.fields["res1"]) == [f"{c}:{r}" for c, r in exp["usable1"]]
    # positives as positions into the residue lists; (A3, B5) is listed but B5 has no C-alpha
    as_keys = [(exp["usable0"][i], exp["usable1"][j]) for i, j in s.fields["positives"]]
    assert as_keys == exp["positives"]
    assert rep.counts == {"ca_not_unique": 1}
    atoms = rec["atoms_pairs"]
    for part, (cas, keys) in enumerate(((s.fields["ca0"], exp["usable0"]), (s.fields["ca1"], exp["usable1"]))):
        for ca, (chain, res) in zip(cas, keys):
            row = atoms[(atoms.chain == chain) & (atoms.residue == res) & (atoms.name == "CA")]
            np.testing.assert_allclose(s.pos[ca], row[["x", "y", "z"]].to_numpy()[0], atol=1e-6)
            assert s.z[ca] == C and (ca >= n0) == bool(part)


def test_swapped_neighbour_columns_are_oriented():
    rec, exp = af.ppi_record("sw")
    nb = rec["atoms_neighbors"].copy()
    cols0 = [c for c in nb.columns if c.endswith("0")]
    ren = {c: c[:-1] + "1" for c in cols0} | {c[:-1] + "1": c for c in cols0}
    rec["atoms_neighbors"] = nb.rename(columns=ren)
    (s,) = list(ppi.samples(rec, 0))
    assert [(exp["usable0"][i], exp["usable1"][j]) for i, j in s.fields["positives"]] == exp["positives"]


def test_partner_subunits():
    import pandas as pd

    df = pd.DataFrame({"subunit": ["x_1", "x_0"]})
    assert ppi.partner_subunits(df) == ("x_0", "x_1")
    df = pd.DataFrame({"subunit": ["c_receptor_bound", "c_ligand_bound", "c_ligand_unbound", "c_receptor_unbound"]})
    assert ppi.partner_subunits(df) == ("c_ligand_bound", "c_receptor_bound")


def test_complex_without_usable_positives_is_skipped():
    rec = af.many_pairs_record("none", 3, 3, positives=[(1, 9)])  # B9 does not exist
    rep = SkipReport()
    assert list(ppi.samples(rec, 0, report=rep)) == []
    assert rep.counts == {"ca_not_unique": 1, "no_positives": 1}
    assert list(ppi.samples(rec, 0, strict=True)) == []  # a filter rule, not bad input


def test_bad_records(fx):
    rep = SkipReport()
    out = list(read_samples(ppi.samples, fx.paths["train"], report=rep))
    assert [s.id.split("/")[0] for s in out] == ["cplx.pdb1", "cplx2.pdb1", "after_bad"]
    assert rep.counts["nan_coordinates"] == 1 and rep.counts["empty_atoms"] == 1
    with pytest.raises(RecordError, match="bad_nan"):
        list(read_samples(ppi.samples, fx.paths["train"], strict=True))


# ----------------------------------------------------------------------------- drawing pairs
def _draw(positives, n0, n1, sampling, key):
    return draw_pairs(np.array(positives), n0, n1, sampling, np.random.default_rng(key))


LISTED = [(i, j) for i in range(15) for j in range(20) if (i + 2 * j) % 7 == 0]  # 43 listed pairs


def test_at_most_10_positives_and_as_many_negatives():
    pairs, labels = _draw(LISTED, 15, 20, PAPER, [0, 1, 0])
    assert labels.tolist() == [1] * 10 + [0] * 10
    listed = set(LISTED)
    assert {tuple(p) for p in pairs[:10]} <= listed
    assert not {tuple(p) for p in pairs[10:]} & listed  # a negative is never a listed pair
    assert len({tuple(p) for p in pairs}) == 20
    assert (pairs[:, 0] < 15).all() and (pairs[:, 1] < 20).all()
    assert num_drawn(len(LISTED), 15, 20, PAPER) == (10, 10)


def test_small_complexes_give_what_they_have():
    pairs, labels = _draw([(0, 0), (1, 1)], 2, 2, PAPER, [0, 0, 0])
    assert labels.tolist() == [1, 1, 0, 0] and {tuple(p) for p in pairs[2:]} == {(0, 1), (1, 0)}
    pairs, labels = _draw([(0, 0), (0, 1), (1, 0)], 2, 2, PAPER, [0, 0, 0])
    assert labels.tolist() == [1, 1, 1, 0] and tuple(pairs[3]) == (1, 1)  # only one non-listed pair
    assert num_drawn(3, 2, 2, PAPER) == (3, 1)


def test_all_positives_option_and_ratio():
    every = PairSampling(max_positives=None, negatives_per_positive=0.5)
    pairs, labels = _draw(LISTED, 15, 20, every, [0, 1, 0])
    assert labels.sum() == len(LISTED) == 43 and (labels == 0).sum() == round(43 * 0.5) == 22
    assert {tuple(p) for p in pairs[labels == 1]} == set(LISTED)


def test_large_complexes_are_sampled_without_enumerating():
    rng_pairs = [(i, (7 * i) % 3000) for i in range(0, 3000, 3)]
    pairs, labels = _draw(rng_pairs, 3000, 3000, PAPER, [4, 2, 9])
    negatives = {tuple(p) for p in pairs[labels == 0]}
    assert len(negatives) == 10 and not negatives & set(rng_pairs)
    again, _ = _draw(rng_pairs, 3000, 3000, PAPER, [4, 2, 9])
    assert np.array_equal(pairs, again)


# ----------------------------------------------------------------------------- the pair view
@pytest.fixture(scope="module")
def ppi_graphs(tmp_path_factory):
    """Complex shards of a split with 3 complexes of 12 listed pairs each (> 10)."""
    root = tmp_path_factory.mktemp("ppi_pairs")
    recs = [af.many_pairs_record(f"c{k}", 8 + k, 9) for k in range(3)]
    af._write_splits(root, "ppi", {"train": recs, "val": recs[:2], "test": recs[2:]})
    out = root / "graphs"
    build_task_shards(TASKS["ppi"], root, out, cutoff=4.5, shard_size=2, progress=False)
    return out / "manifest.json"


def _epoch_pairs(ds, epoch=None):
    if epoch is not None:
        ds.set_epoch(epoch)
    return [(d.id, int(d.y)) for d in (ds[i] for i in range(len(ds)))]


def test_training_pairs_per_epoch_seeded_and_balanced(ppi_graphs):
    ds = PairDataset(ppi_graphs, "train", PAPER, seed=0)
    assert ds.num_complexes == 3 and len(ds) == 3 * 20
    e1, e2 = _epoch_pairs(ds, 1), _epoch_pairs(ds, 2)
    for pairs in (e1, e2):
        by_complex: dict = {}
        for pid, y in pairs:
            by_complex.setdefault(pid.split("/")[0], []).append(y)
        assert all(ys.count(1) == 10 and ys.count(0) == 10 for ys in by_complex.values())
    assert e1 != e2  # drawn anew every epoch
    assert _epoch_pairs(PairDataset(ppi_graphs, "train", PAPER, seed=0), 1) == e1  # same (seed, epoch)
    assert _epoch_pairs(PairDataset(ppi_graphs, "train", PAPER, seed=1), 1) != e1  # another seed
    fixed = PairSampling(resample=False)
    once = PairDataset(ppi_graphs, "train", fixed, seed=0)
    assert _epoch_pairs(once, 1) == _epoch_pairs(once, 5)


def test_validation_pairs_fixed_across_epochs_runs_and_seeds(ppi_graphs):
    ds = PairDataset(ppi_graphs, "val", PAPER, seed=0)
    first = _epoch_pairs(ds, 1)
    assert _epoch_pairs(ds, 7) == first
    assert _epoch_pairs(PairDataset(ppi_graphs, "val", PAPER, seed=5), 3) == first
    other = PairDataset(ppi_graphs, "val", PairSampling(eval_seed=1), seed=0)
    assert _epoch_pairs(other) != first
    assert [y for _, y in first].count(1) == 20


def test_pair_graph_is_two_neighbourhoods_with_their_own_edges(ppi_graphs):
    """Each drawn pair: the atoms of each partner within `radius` of its residue's C-alpha, the
    exact radius graph (shard cutoff) within each part, the C-alphas as centres, y = listed."""
    from preprocess.shards import ShardReader

    ds = PairDataset(ppi_graphs, "test", PairSampling(radius=6.0), seed=0)
    root = ppi_graphs.parent
    with ShardReader(next((root / "test").glob("shard-*.h5"))) as reader:
        complex_ = reader.read(0)
    n0 = int(complex_["num_atoms0"])
    listed = {tuple(p) for p in complex_["positives"]}
    for i in range(len(ds)):
        d = ds[i]
        _, k = ds.locate(i)
        pairs, _ = ds.pairs_of(0)
        r0, r1 = pairs[k]
        parts = []
        for pos, ca in ((complex_["pos"][:n0], complex_["ca0"][r0]), (complex_["pos"][n0:], complex_["ca1"][r1] - n0)):
            rows = np.flatnonzero(((pos - pos[ca]) ** 2).sum(axis=1) <= np.float32(6.0) ** 2)
            parts.append((pos[rows], int(np.searchsorted(rows, ca))))
        (p0, c0), (p1, c1) = parts
        assert np.array_equal(d.pos.numpy(), np.concatenate([p0, p1]))
        assert (int(d.center_index0), int(d.center_index1)) == (c0, len(p0) + c1)
        expected = np.concatenate([radius_graph(p0, 4.5), radius_graph(p1, 4.5) + len(p0)], axis=1)
        assert np.array_equal(d.edge_index.numpy(), expected)
        assert int(d.y) == int((int(r0), int(r1)) in listed)
        assert d.z[c0] == C and d.z[len(p0) + c1] == C
