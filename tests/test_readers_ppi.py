"""PPI reader: positives, seeded balanced negatives, 30 A environments, two segments."""
import numpy as np
import pytest

pytest.importorskip("lmdb")
pytest.importorskip("atom3d")

import atom3d_fixtures as af  # noqa: E402
from preprocess.readers import RecordError, read_samples  # noqa: E402
from preprocess.readers import ppi  # noqa: E402
from preprocess.readers.lmdb_records import read_record  # noqa: E402
from preprocess.readers.report import SkipReport  # noqa: E402

H, C = 0, 1


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    return af.make_ppi(tmp_path_factory.mktemp("ppi"), bad=True)


def _pairs(out):
    return [((s.extra["chain0"], s.extra["residue0"]), (s.extra["chain1"], s.extra["residue1"]), s.y)
            for s in out]


def test_layout(fx):
    assert fx.paths["train"].relative_to(fx.root).as_posix() == "DIPS-split/data/train"


def test_positives_and_balanced_negatives(fx):
    rec = read_record(fx.paths["train"], 0)
    exp = fx.notes["expected"]
    rep = SkipReport()
    out = list(ppi.samples(rec, 0, report=rep, seed=7))
    pairs = _pairs(out)
    pos = [(a, b) for a, b, y in pairs if y == 1]
    neg = [(a, b) for a, b, y in pairs if y == 0]
    assert pos == exp["positives"]
    assert len(neg) == len(pos) == 2 and len(set(neg)) == 2
    for a, b in neg:
        assert a in exp["usable0"] and b in exp["usable1"]
        assert (a, b) not in exp["positives"] and (a, b) != exp["skipped_positive"]
    assert rep.counts == {"ca_not_unique": 1}  # (A3, B5): B5 has no CA


def test_negatives_reproducible_and_seeded(fx):
    rec = read_record(fx.paths["train"], 0)
    a = _pairs(ppi.samples(rec, 0, seed=7))
    b = _pairs(ppi.samples(read_record(fx.paths["train"], 0), 0, seed=7))
    assert a == b
    # a different seed (or record index) draws from a different stream
    draws = {tuple(_pairs(ppi.samples(rec, 0, seed=s))[2:]) for s in range(12)}
    assert len(draws) > 1
    # reading a slice gives the same samples as reading the whole split
    whole = [s.id for s in read_samples("ppi", fx.paths["train"], seed=3, report=SkipReport())]
    part = [s.id for s in read_samples("ppi", fx.paths["train"], 2, None, seed=3,
                                       report=SkipReport())]
    assert whole[-len(part):] == part


def test_environments_segments_and_centres(fx):
    rec = read_record(fx.paths["train"], 0)
    exp = fx.notes["expected"]
    atoms = rec["atoms_pairs"]
    for s in ppi.samples(rec, 0, seed=1):
        r0, r1 = s.extra["residue0"], s.extra["residue1"]
        n0, n1 = s.extra["num_atoms0"], s.extra["num_atoms1"]
        assert n0 == exp["env_atoms0"][r0] and n1 == exp["env_atoms1"][r1]
        assert s.num_atoms == n0 + n1 and s.pos.shape == (n0 + n1, 3)
        assert s.extra["center_index0"] == exp["center0"][r0] == s.center_index
        assert s.extra["center_index1"] == exp["center1"][r1]
        assert (s.z != H).all()
        seg = ppi.segment(s)
        assert seg.tolist() == [0] * n0 + [1] * n1
        # the two C-alphas sit where the raw table has them
        for part, (chain, res, ci) in enumerate([
                (s.extra["chain0"], r0, s.extra["center_index0"]),
                (s.extra["chain1"], r1, n0 + s.extra["center_index1"])]):
            row = atoms[(atoms.chain == chain) & (atoms.residue == res) & (atoms.name == "CA")]
            np.testing.assert_allclose(s.pos[ci], row[["x", "y", "z"]].to_numpy()[0], atol=1e-6)
            assert s.z[ci] == C and seg[ci] == part
        # every atom of part 0 is within 30 A of its centre
        d0 = np.linalg.norm(s.pos[:n0] - s.pos[s.center_index], axis=1)
        d1 = np.linalg.norm(s.pos[n0:] - s.pos[n0 + s.extra["center_index1"]], axis=1)
        assert d0.max() <= 30.0 and d1.max() <= 30.0
        assert s.y in (0, 1)


def test_max_positives_and_ratio(fx):
    rec = read_record(fx.paths["train"], 0)
    out = _pairs(ppi.samples(rec, 0, seed=0, max_positives=1, neg_ratio=3))
    assert sum(y for *_, y in out) == 1 and sum(1 - y for *_, y in out) == 3


def test_partner_subunits():
    import pandas as pd

    df = pd.DataFrame({"subunit": ["x_1", "x_0"]})
    assert ppi.partner_subunits(df) == ("x_0", "x_1")
    df = pd.DataFrame({"subunit": ["c_receptor_bound", "c_ligand_bound",
                                   "c_ligand_unbound", "c_receptor_unbound"]})
    assert ppi.partner_subunits(df) == ("c_ligand_bound", "c_receptor_bound")


def test_swapped_neighbour_columns_are_oriented():
    rec, exp = af.ppi_record("sw")
    nb = rec["atoms_neighbors"].copy()
    cols0 = [c for c in nb.columns if c.endswith("0")]
    ren = {c: c[:-1] + "1" for c in cols0} | {c[:-1] + "1": c for c in cols0}
    rec["atoms_neighbors"] = nb.rename(columns=ren)
    pos = [(a, b) for a, b, y in _pairs(ppi.samples(rec, 0)) if y == 1]
    assert pos == exp["positives"]


def test_bad_records(fx):
    rep = SkipReport()
    out = list(read_samples("ppi", fx.paths["train"], report=rep))
    ids = {s.extra["record_id"] for s in out}
    assert ids == {"cplx.pdb1", "cplx2.pdb1", "after_bad"} and len(out) == 12
    assert rep.counts["nan_coordinates"] == 1 and rep.counts["empty_atoms"] == 1
    with pytest.raises(RecordError, match="bad_nan"):
        list(read_samples("ppi", fx.paths["train"], strict=True))
