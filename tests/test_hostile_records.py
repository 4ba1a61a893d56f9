"""Hostile ATOM3D LMDB headers: every bad header is an error naming the file and the problem.

The LMDBs are written with atom3d's own writer (tests/atom3d_fixtures.py), then their header is
overwritten with the ``lmdb`` package, the way a damaged or hand-edited file would look.
"""
import pytest

pytest.importorskip("lmdb")
pytest.importorskip("atom3d")

import lmdb  # noqa: E402

import atom3d_fixtures as af  # noqa: E402
from preprocess.readers import RecordError, read_samples  # noqa: E402
from preprocess.readers.lmdb_records import (  # noqa: E402
    close_all, iter_records, num_records, read_record,
)
from preprocess.readers.report import SkipReport  # noqa: E402

NUM = 5


def psr_lmdb(path, header: dict[bytes, bytes | None] | None = None):
    """A 5-record PSR LMDB written by atom3d; ``header`` overwrites (or, with None, deletes) keys."""
    records = [af.psr_record(decoy=f"server0{i}_TS1") for i in range(NUM)]
    af.write_lmdb(records, path)
    if header:
        env = lmdb.open(str(path), map_size=1 << 30)
        with env.begin(write=True) as txn:
            for key, value in header.items():
                if value is None:
                    txn.delete(key)
                else:
                    txn.put(key, value)
        env.close()
    return path


@pytest.fixture(autouse=True)
def _fresh_envs():
    yield
    close_all()  # every test writes its own LMDB: forget the environments it opened


def readers(path):
    """Every way the pipeline reads an LMDB (all must refuse a bad header)."""
    return {
        "num_records": lambda: num_records(path),
        "iter_records": lambda: list(iter_records(path, report=SkipReport())),
        "read_record": lambda: read_record(path, 0),
        "read_samples": lambda: list(read_samples("psr", path, report=SkipReport())),
    }


@pytest.mark.parametrize("value, problem", [
    (b"abc", "not a whole number"),
    (b"-3", "not a whole number"),
    (b"", "not a whole number"),
    (b"50", "holds 5 record entries"),   # more than the file holds
    (b"3", "holds 5 record entries"),    # fewer: records 3 and 4 would be ignored silently
    (b"0", "holds 5 record entries"),
])
def test_bad_num_examples_is_an_error_naming_the_file(tmp_path, value, problem):
    path = psr_lmdb(tmp_path / "train", {b"num_examples": value})
    for name, read in readers(path).items():
        with pytest.raises(RecordError) as ei:
            read()
        msg = str(ei.value)
        assert str(path) in msg and "num_examples" in msg and problem in msg, (name, msg)
        assert ei.value.path == str(path)


def test_no_undecodable_count_for_a_header_that_overstates(tmp_path):
    # before: num_examples 50 on a 5-record file read 5 records and counted 45 'undecodable'
    path = psr_lmdb(tmp_path / "train", {b"num_examples": b"50"})
    report = SkipReport()
    with pytest.raises(RecordError, match="num_examples is 50"):
        list(iter_records(path, report=report))
    assert report.counts == {}


def test_unsupported_serialization_format(tmp_path):
    path = psr_lmdb(tmp_path / "train", {b"serialization_format": b"pkl"})
    with pytest.raises(RecordError, match="serialization_format b'pkl'") as ei:
        list(iter_records(path, report=SkipReport()))
    assert str(path) in str(ei.value)


def test_good_headers_still_read(tmp_path):
    path = psr_lmdb(tmp_path / "train", {b"num_examples": b" 5\n"})  # whitespace tolerated
    assert num_records(path) == NUM
    assert [i for i, _ in iter_records(path)] == list(range(NUM))
    missing_format = psr_lmdb(tmp_path / "val", {b"serialization_format": None})
    assert len(list(iter_records(missing_format))) == NUM  # atom3d's default: json
    empty = af.write_lmdb([], tmp_path / "empty")
    assert num_records(empty) == 0 and list(iter_records(empty)) == []
