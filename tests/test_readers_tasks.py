"""LBA, PSR, RSR and RES readers on hand-made records with known answers."""
import numpy as np
import pytest

pytest.importorskip("lmdb")
pytest.importorskip("atom3d")

import atom3d_fixtures as af  # noqa: E402
from eqgat.tasks import TASKS  # noqa: E402
from preprocess.readers import RecordError, Sample, read_samples  # noqa: E402
from preprocess.readers import lba, res  # noqa: E402
from preprocess.readers.lmdb_records import read_record  # noqa: E402
from preprocess.readers.ranking import PSR, RSR, parse_id, parse_target  # noqa: E402
from preprocess.readers.report import SkipReport  # noqa: E402

H, C, N, O, F, S, CL, P, OTHER = range(9)


# ----------------------------------------------------------------------------- LBA
@pytest.fixture(scope="module")
def lba_fx(tmp_path_factory):
    return af.make_lba(tmp_path_factory.mktemp("lba"), bad=True)


def test_lba_pocket_then_ligand_hydrogens_kept(lba_fx):
    assert lba_fx.paths["train"].relative_to(lba_fx.root).as_posix() == \
        "split-by-sequence-identity-30/data/train"
    rec = read_record(lba_fx.paths["train"], 0)
    (s,) = list(lba.samples(rec, 0))
    assert isinstance(s, Sample) and s.id == "1abc"
    # pocket: SER N CA C O CB OG H HA, GLY N CA C O; ligand: C O N Cl H
    assert s.z.tolist() == [N, C, C, O, C, O, H, H, N, C, C, O] + [C, O, N, CL, H]
    assert s.z.dtype == np.int8 and s.pos.dtype == np.float32 and s.pos.shape == (17, 3)
    assert s.fields == {"num_ligand_atoms": 5}
    assert lba.ligand_flag(s).tolist() == [False] * 12 + [True] * 5
    np.testing.assert_allclose(s.pos[12], [1.0, 5.0, 0.0])  # first ligand atom
    np.testing.assert_allclose(s.pos[1], [1.46, 0.0, 0.0])  # SER CA
    assert s.y.dtype == np.float32 and s.y.tolist() == [6.25]
    assert s.parts is None


def test_lba_bad_records(lba_fx):
    rep = SkipReport()
    ids = [s.id for s in read_samples(lba.samples, lba_fx.paths["train"], report=rep)]
    assert ids == ["1abc", "2xyz", "unknown_element", "after_bad"]
    assert rep.counts == {"nan_coordinates": 1, "empty_atoms": 1, "missing_label": 1}
    assert rep.notes == {"unknown_element_atoms": 1, "unknown_element:ZZ": 1}
    assert rep.unknown_elements == {"ZZ": 1}
    with pytest.raises(RecordError, match="bad_nan"):
        list(read_samples(lba.samples, lba_fx.paths["train"], strict=True))


# ----------------------------------------------------------------------------- PSR / RSR
@pytest.mark.parametrize("rid,target,decoy", [
    ("('T0759', 'server01_TS1')", "T0759", "server01_TS1"),
    ('("T0759", "server01_TS1")', "T0759", "server01_TS1"),
    ("['T0759', 'x']", "T0759", "x"),
    ("(T0759, server01_TS1)", "T0759", "server01_TS1"),
    (("T0759", "server01_TS1"), "T0759", "server01_TS1"),
    ("T0759/server01_TS1", "T0759", "server01_TS1"),
    ("T0759", "T0759", ""),
    ("  T0866  ", "T0866", ""),
    ("('1a9n_Q', )", "1a9n_Q", ""),
    ("", "", ""),
    (None, "", ""),
])
def test_parse_target(rid, target, decoy):
    assert parse_id(rid) == (target, decoy)
    assert parse_target(rid) == target


@pytest.fixture(scope="module")
def psr_fx(tmp_path_factory):
    return af.make_psr(tmp_path_factory.mktemp("psr"))


def test_psr_heavy_atoms_gdt_ts_target(psr_fx):
    out = list(read_samples(PSR.samples, psr_fx.paths["train"]))
    assert [s.fields["target"] for s in out] == ["T0759", "T0759", "T0800"]
    s = out[0]
    assert s.id == "('T0759', 'server01_TS1')" and s.fields["decoy"] == "server01_TS1"
    # MET N CA C O CB SD (its 2 H removed), GLY N CA C O, CYS N CA C O CB SG
    assert s.z.tolist() == [N, C, C, O, C, S, N, C, C, O, N, C, C, O, C, S]
    assert (s.z != H).all() and s.pos.shape == (16, 3)
    assert s.y.tolist() == [pytest.approx(0.61)] and PSR.score_key == "gdt_ts"
    assert [float(x.y[0]) for x in out] == pytest.approx([0.61, 0.35, 0.80])
    assert TASKS["psr"].label.names == ("gdt_ts",) and TASKS["psr"].reader(af.psr_record(), 0)


def test_psr_plain_string_id_and_dict_scores():
    rec = af.psr_record()
    rec["id"] = "T0777"
    rec["scores"] = {"gdt_ts": 0.5}
    (s,) = list(PSR.samples(rec, 3))
    assert s.fields["target"] == "T0777" and s.id == "T0777"
    # atom3d leaves a Series as {'name','index','data'} when no 'types' is present
    rec["scores"] = {"name": None, "index": ["rmsd", "gdt_ts"], "data": [1.0, 0.25]}
    assert float(next(PSR.samples(rec, 3)).y[0]) == pytest.approx(0.25)


@pytest.fixture(scope="module")
def rsr_fx(tmp_path_factory):
    return af.make_rsr(tmp_path_factory.mktemp("rsr"), bad=True)


def test_rsr_rmsd_label_heavy_atoms(rsr_fx):
    assert rsr_fx.paths["test"].relative_to(rsr_fx.root).as_posix() == \
        "candidates-split-by-time/data/test"
    rep = SkipReport()
    out = list(read_samples(RSR.samples, rsr_fx.paths["train"], report=rep))
    assert [float(s.y[0]) for s in out[:2]] == [7.5, 2.25]  # RMSD as-is, not negated
    s = out[0]
    assert s.z.tolist() == [P, O, C, N] * 2 and s.fields["target"] == "1a9n"
    assert RSR.score_key == "rms" and TASKS["rsr"].label.names == ("rms",)
    assert rep.counts == {"nan_coordinates": 1, "empty_atoms": 1, "missing_label": 1}


def test_rsr_missing_scores_strict():
    rec = af.rsr_record()
    del rec["scores"]
    assert list(RSR.samples(rec, 0)) == []
    with pytest.raises(RecordError, match="missing_label"):
        list(RSR.samples(rec, 0, strict=True))


# ----------------------------------------------------------------------------- RES
@pytest.fixture(scope="module")
def res_fx(tmp_path_factory):
    return af.make_res(tmp_path_factory.mktemp("res"), bad=True)


def test_res_layout(res_fx):
    assert res_fx.paths["data"].relative_to(res_fx.root).as_posix() == "raw/RES/data"
    assert (res_fx.root / "indices" / "train_indices.txt").exists()


def test_res_environments_known_answers(res_fx):
    rec = read_record(res_fx.paths["data"], 0)
    exp = res_fx.notes["expected"]
    rep = SkipReport()
    out = list(res.samples(rec, 0, report=rep))
    assert [s.id for s in out] == ["1res.pdb/A_2_GLY", "1res.pdb/A_3_SER"]
    atoms = rec["atoms"]
    for s, k in zip(out, (0, 1)):
        e = exp[k]
        assert s.y == e["y"] and isinstance(s.y, int)
        assert s.num_atoms == e["n"] and s.fields["center_index"] == e["center"]
        np.testing.assert_allclose(s.pos, atoms.loc[e["rows"], ["x", "y", "z"]].to_numpy(), atol=1e-6)
        assert (s.z != H).all()
        ca = atoms.loc[e["rows"][s.fields["center_index"]]]
        assert ca["name"] == "CA" and f"{ca['chain']}_{ca['residue']}_" in s.id.split("/")[-1] + "_"
    assert out[0].y == 7 and out[1].y == 15  # GLY, SER alphabetical
    assert out[1].num_atoms == 8  # A2 backbone + A3 backbone; A3's H removed
    assert rep.counts == {"noncanonical_residue": 1, "ca_not_unique": 2}
    assert rep.examples["ca_not_unique"] == ["1res.pdb [environment 3 (A_5_LYS)]",
                                             "1res.pdb [environment 4 (A_1_ALA)]"]


def test_res_parse_subunit():
    assert res.parse_subunit("A_52_GLY") == ("A", 52, "", "GLY")
    assert res.parse_subunit("A_52B_gly") == ("A", 52, "B", "GLY")
    assert res.parse_subunit("A_x_B_-3_ALA") == ("A_x_B", -3, "", "ALA")
    with pytest.raises(ValueError):
        res.parse_subunit("A_GLY")


def test_res_bad_records_and_strict(res_fx):
    rep = SkipReport()
    out = list(read_samples(res.samples, res_fx.paths["data"], report=rep))
    # 3 good records x 2 environments (+ bad_nan's environment 1, untouched by the NaN)
    assert [s.id for s in out][-1] == "bad_nan/A_3_SER" and len(out) == 7
    assert rep.counts["nan_coordinates"] == 2 and rep.counts["empty_atoms"] == 1
    with pytest.raises(RecordError, match="nan_coordinates"):
        list(read_samples(res.samples, res_fx.paths["data"], 3, 4, strict=True))
    # filter rules never raise, even with strict
    assert len(list(read_samples(res.samples, res_fx.paths["data"], 0, 1, strict=True))) == 2


def test_res_label_fallback_to_atom3d_code():
    rec, exp = af.res_record()
    rec["labels"] = rec["labels"].copy()
    rec["labels"]["subunit"] = ["A_2_", "A_3_", "A_4_", "A_5_", "A_1_"]
    out = list(res.samples(rec, 0))
    assert [s.y for s in out] == [7, 15]  # atom3d codes 18 (GLY), 5 (SER) -> alphabetical
