"""Element vocabulary, LMDB record access, SkipReport."""
import gzip
import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("lmdb")
pytest.importorskip("atom3d")

import atom3d_fixtures as af  # noqa: E402
from preprocess.elements import (  # noqa: E402
    ELEMENTS, NUM_ELEMENTS, OTHER_INDEX, RESIDUE_CLASSES, element_index, residue_index,
)
from preprocess.readers import RecordError, ranking, read_samples  # noqa: E402
from preprocess.readers.lmdb_records import (  # noqa: E402
    close_all, decode_record, id_to_index, iter_records, num_records, open_env, read_record,
)
from preprocess.readers.report import SkipReport  # noqa: E402


def test_element_vocabulary():
    assert ELEMENTS == ("H", "C", "N", "O", "F", "S", "Cl", "P", "other")
    assert NUM_ELEMENTS == 9 and OTHER_INDEX == 8
    unknown = {}
    z = element_index(["H", "c", "N", "o", "F", "s", "CL", "Cl", "p", "Se", "", None, " n "],
                      unknown=unknown)
    assert z.dtype == np.int8
    assert z.tolist() == [0, 1, 2, 3, 4, 5, 6, 6, 7, 8, 8, 8, 2]
    assert unknown == {"SE": 1, "": 2}
    assert element_index([]).shape == (0,)


def test_residue_classes_alphabetical():
    assert len(RESIDUE_CLASSES) == 20 and list(RESIDUE_CLASSES) == sorted(RESIDUE_CLASSES)
    assert residue_index("ALA") == 0 and residue_index("val") == 19
    assert residue_index("GLN") == 5 and residue_index("GLU") == 6
    assert residue_index("MSE") == -1 and residue_index(None) == -1


@pytest.fixture(scope="module")
def psr(tmp_path_factory):
    return af.make_psr(tmp_path_factory.mktemp("psr"), bad=True, corrupt=True)


def test_layout_and_atom3d_format(psr):
    from atom3d.datasets import LMDBDataset

    train = psr.paths["train"]
    assert train == psr.root / "split-by-year" / "data" / "train"
    assert (train / "data.mdb").exists()
    # raw layout as atom3d writes it: str(index) keys, gzip(json) values
    with open_env(train).begin() as txn:
        assert int(txn.get(b"num_examples")) == len(psr.records["train"])
        assert txn.get(b"serialization_format") == b"json"
        raw = json.loads(gzip.decompress(txn.get(b"0")))
    assert set(raw["atoms"]) == {"columns", "index", "data"}
    assert raw["atoms"]["columns"] == af.ATOM_COLUMNS
    # our decoder agrees with atom3d's own reader (LMDB allows one open env per process)
    close_all()
    ds = LMDBDataset(str(train))
    theirs = ds[0]
    ds._env.close()
    del ds
    ours = read_record(train, 0)
    pd.testing.assert_frame_equal(ours["atoms"], theirs["atoms"])
    assert ours["id"] == theirs["id"] == "('T0759', 'server01_TS1')"
    assert ours["_lmdb"] == str(train) and ours["_index"] == 0
    assert isinstance(ours["scores"], pd.Series)  # atom3d leaves it a dict; we restore it
    assert id_to_index(train)["('T0800', 'server01_TS1')"] == 2


def test_num_records_and_slices(psr):
    train = psr.paths["train"]
    n = num_records(train)
    assert n == len(psr.records["train"])
    rep = SkipReport()
    whole = [i for i, _ in iter_records(train, report=rep)]
    parts = [i for a, b in [(0, 3), (3, 5), (5, 100)] for i, _ in iter_records(train, a, b, report=SkipReport())]
    assert whole == parts == [i for i in range(n) if i != 2]  # index 2 is corrupt
    assert rep.counts == {"undecodable": 1}
    assert rep.examples["undecodable"] == [f"{train}#2"]


def test_undecodable_raises_with_path_and_index(psr):
    train = psr.paths["train"]
    with pytest.raises(RecordError) as ei:
        list(iter_records(train))  # no report -> raise
    assert str(train) in str(ei.value) and "record 2" in str(ei.value)
    assert ei.value.index == 2 and ei.value.path == str(train)
    with pytest.raises(RecordError):
        read_record(train, 2)
    with pytest.raises(RecordError):
        list(read_samples(ranking.psr_samples, train, strict=True))
    with pytest.raises(ValueError):
        decode_record(b"garbage")


def test_other_records_unaffected_by_bad_ones(psr):
    rep = SkipReport()
    got = {s.id: float(s.y[0]) for s in read_samples(ranking.psr_samples, psr.paths["train"], report=rep)}
    assert got["('T0759', 'server01_TS1')"] == pytest.approx(0.61)
    assert got["('T0901', 'after_bad')"] == pytest.approx(0.5)
    assert got["('T0900', 'unknown_element')"] == pytest.approx(0.61)  # kept, counted
    assert rep.counts == {"undecodable": 1, "nan_coordinates": 1, "empty_atoms": 1,
                          "missing_label": 1}
    assert rep.notes == {"unknown_element_atoms": 1, "unknown_element:ZZ": 1}
    assert rep.examples["nan_coordinates"] == ["('T0900', 'bad_nan')"]


def test_strict_errors_name_the_record(psr):
    train = psr.paths["train"]
    # start after the corrupt index 2; index 3 is the NaN record
    with pytest.raises(RecordError) as ei:
        list(read_samples(ranking.psr_samples, train, 3, None, strict=True))
    e = ei.value
    assert e.index == 3 and e.record_id == "('T0900', 'bad_nan')" and e.reason == "nan_coordinates"
    assert str(train) in str(e) and "bad_nan" in str(e)


def test_skip_report_merge_and_json():
    a, b = SkipReport(max_examples=2), SkipReport()
    a.add("nan_coordinates", "r1")
    a.add("nan_coordinates", "r2")
    b.add("nan_coordinates", "r3")
    b.add("missing_label", "r4", n=2)
    b.note("unknown_element_atoms", 5)
    m = SkipReport.merged([a.to_dict(), b])
    assert m.counts == {"nan_coordinates": 3, "missing_label": 2} and m.total == 5
    assert m.examples["nan_coordinates"] == ["r1", "r2", "r3"]
    assert m.notes == {"unknown_element_atoms": 5}
    assert SkipReport.from_json(m.to_json()).to_dict() == m.to_dict()
    c = a + b
    assert c.examples["nan_coordinates"] == ["r1", "r2"] and c.counts["nan_coordinates"] == 3
    assert not SkipReport() and c
