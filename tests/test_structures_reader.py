"""The structures task's reading layer: PDB / mmCIF files read with gemmi, the labels CSV, splits.

Every structure here is a real file written by gemmi (``structure_fixtures``).
"""
from __future__ import annotations

import csv
import gzip
import os
import random
import re
from pathlib import Path

import numpy as np
import pytest

gemmi = pytest.importorskip("gemmi")

import structure_fixtures as sf  # noqa: E402
from preprocess.elements import ELEMENTS  # noqa: E402
from preprocess.readers import RecordError, SkipSample  # noqa: E402
from preprocess.readers.report import (  # noqa: E402
    ALTLOC_DROPPED, EMPTY_ATOMS, INVALID_LABEL, MISSING_FILE, MISSING_LABEL, NAN_COORDINATES, UNKNOWN_ELEMENT,
    UNLABELLED_FILE, UNPARSEABLE, UNSUPPORTED_FORMAT, SkipReport,
)
from preprocess.readers.structures import (  # noqa: E402
    Entry, LabelsError, StructureAtoms, StructureOptions, read_entry, read_structure, scan_labels, seeded_split,
    split_sizes, structure_format, write_split_csv,
)

# model 1 of sf.peptide() by default: no hydrogens, no waters, SER altloc B (0.6), VAL altloc A (tie)
DEFAULT_ATOMS = [
    ("A", "GLY", 1, "", name) for name in ("N", "CA", "C", "O")
] + [
    ("A", "SER", 2, "", name) for name in ("N", "CA", "C", "O", "CB", "OG")
] + [
    ("A", "VAL", 3, "", name) for name in ("N", "CA", "C", "O", "CB", "CG1", "CG2")
] + [
    ("A", "MSE", 4, "", name) for name in ("N", "CA", "C", "O", "CB", "CG", "SE", "CE")
] + [
    ("A", "ALA", 4, "A", name) for name in ("N", "CA", "C", "O", "CB")
] + [("B", "ZN", 101, "", "ZN"), ("B", "CL", 102, "", "CL")] + [
    ("B", "ACT", 103, "", name) for name in ("C", "O", "OXT", "CH3")
]


def rows(atoms: StructureAtoms) -> list[tuple]:
    return list(zip(atoms.chain_ids.tolist(), atoms.residue_names.tolist(), atoms.residue_numbers.tolist(),
                    atoms.insertion_codes.tolist(), atoms.atom_names.tolist()))


def position(atoms: StructureAtoms, residue: str, name: str) -> list[float]:
    (index,) = np.flatnonzero((atoms.residue_names == residue) & (atoms.atom_names == name))
    return atoms.pos[index].tolist()


def close(xyz: list[float], expected: tuple[float, float, float]) -> bool:
    return np.allclose(xyz, expected, atol=1e-4)


@pytest.fixture(scope="module")
def peptide_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("peptide")
    names = ["p.pdb", "p.ent", "p.cif", "p.mmcif", "p.pdb.gz", "p.cif.gz", "p.ent.gz", "P.PDB"]
    return {name: sf.write_structure(sf.peptide(), folder / name) for name in names}


# ---------------------------------------------------------------------------------------
# reading one structure
# ---------------------------------------------------------------------------------------
def test_default_reading(peptide_files):
    report = SkipReport()
    atoms = read_structure(peptide_files["p.pdb"], report=report)
    assert rows(atoms) == DEFAULT_ATOMS
    assert atoms.pos.dtype == np.float32 and atoms.pos.shape == (36, 3)
    assert atoms.z.dtype == np.int8 and atoms.residue_numbers.dtype == np.int32 and atoms.hetero.dtype == bool
    symbols = dict(zip(atoms.atom_names.tolist(), atoms.elements.tolist()))
    assert symbols["SE"] == "Se" and symbols["ZN"] == "Zn" and symbols["CL"] == "Cl"
    vocab = [ELEMENTS[i] for i in atoms.z]
    assert vocab[atoms.atom_names.tolist().index("SE")] == "other" and vocab[-4:] == ["C", "O", "O", "C"]
    assert "Cl" in vocab and "H" not in vocab
    hetero = {res for res, het in zip(atoms.residue_names.tolist(), atoms.hetero.tolist()) if het}
    assert hetero == {"MSE", "ZN", "CL", "ACT"}
    assert close(position(atoms, "MSE", "SE"), (9.2, 10.2, 2.7))
    assert report.total == 0


@pytest.mark.parametrize("name", ["p.ent", "p.cif", "p.mmcif", "p.pdb.gz", "p.cif.gz", "p.ent.gz", "P.PDB"])
def test_every_format_reads_the_same_atoms(peptide_files, name):
    reference = read_structure(peptide_files["p.pdb"])
    atoms = read_structure(peptide_files[name])
    for field in ("pos", "z", "elements", "atom_names", "residue_names", "chain_ids", "residue_numbers",
                  "insertion_codes", "hetero"):
        np.testing.assert_array_equal(getattr(atoms, field), getattr(reference, field), err_msg=field)
    assert atoms.dropped_altloc_atoms == reference.dropped_altloc_atoms == 4


def test_structure_format():
    assert structure_format("a/b.pdb") == structure_format("x.ENT.GZ") == "pdb"
    assert structure_format("x.cif") == structure_format("x.mmcif.gz") == "mmcif"
    assert structure_format("x.txt") is None and structure_format("x.gz") is None and structure_format("pdb") is None


def test_altloc_highest_occupancy_first_on_ties(peptide_files):
    report = SkipReport()
    atoms = read_structure(peptide_files["p.cif"], report=report)
    # SER: B (0.6) beats A (0.4), although A comes first
    assert close(position(atoms, "SER", "CB"), (3.520, 3.650, -1.190))
    assert close(position(atoms, "SER", "OG"), (3.900, 5.000, -1.100))
    # VAL: A and B both 0.5, interleaved atom by atom: A, the first in the file, wins for both atoms
    assert close(position(atoms, "VAL", "CG1"), (9.670, 3.250, 1.240))
    assert close(position(atoms, "VAL", "CG2"), (7.700, 3.900, 2.500))
    assert atoms.dropped_altloc_atoms == 4 and report.notes[ALTLOC_DROPPED] == 4


def _swap_altlocs(spec: sf.ResidueSpec, occupancies: dict[str, float], first: str) -> sf.ResidueSpec:
    """The residue with new altloc occupancies and the altloc atoms of ``first`` written first."""
    name, number, icode, hetero, atoms = spec
    plain = [a for a in atoms if not a[3]]
    alt = [(n, e, xyz, loc, occupancies[loc]) for n, e, xyz, loc, _ in atoms if loc]
    alt.sort(key=lambda a: a[3] != first)
    return name, number, icode, hetero, plain + alt


@pytest.mark.parametrize("occupancies, first, kept", [
    ({"A": 0.6, "B": 0.4}, "A", "A"),   # highest occupancy first in the file
    ({"A": 0.6, "B": 0.4}, "B", "A"),   # highest occupancy second in the file
    ({"A": 0.5, "B": 0.5}, "B", "B"),   # tie: the first in the file, whatever its letter
    ({"A": 0.33, "B": 0.33}, "A", "A"),
])
def test_altloc_choice_is_occupancy_then_file_order(tmp_path, occupancies, first, kept):
    ser = _swap_altlocs(sf.SER, occupancies, first)
    path = sf.write_structure(sf.make_structure({"A": [sf.GLY, ser]}), tmp_path / "s.pdb")
    atoms = read_structure(path)
    expected = {loc: xyz for n, _, xyz, loc, _ in sf.SER[4] if n == "CB" and loc}[kept]
    assert close(position(atoms, "SER", "CB"), expected)
    assert atoms.atom_names.tolist().count("CB") == 1 and atoms.dropped_altloc_atoms == 2


@pytest.mark.parametrize("suffix", [".pdb", ".cif"])
def test_microheterogeneity_keeps_one_whole_residue(tmp_path, suffix):
    path = sf.write_structure(sf.make_structure(sf.MICROHETEROGENEITY), tmp_path / f"m{suffix}")
    atoms = read_structure(path)
    assert rows(atoms) == [("A", "GLY", 5, "", n) for n in ("N", "CA", "C", "O")] + [
        ("A", "THR", 6, "", n) for n in ("N", "CA", "CB", "OG1", "CG2")]
    assert atoms.dropped_altloc_atoms == 4  # the SER conformer (0.3)


GLY_H, ALA_H = ("A", "GLY", 1, "", "H"), ("A", "ALA", 4, "A", "HA")
WATER_O = [("B", "HOH", 201, "", "O"), ("B", "HOH", 202, "", "O")]
WATER_H = [("B", "HOH", 201, "", "H1"), ("B", "HOH", 201, "", "H2")]


@pytest.mark.parametrize("hydrogens, waters, extra, n_hydrogens", [
    ("drop", "drop", [], 0),
    ("keep", "drop", [GLY_H, ALA_H], 2),
    ("drop", "keep", WATER_O, 0),
    ("keep", "keep", [GLY_H, ALA_H, *WATER_O, *WATER_H], 4),
])
def test_hydrogens_and_waters(peptide_files, hydrogens, waters, extra, n_hydrogens):
    atoms = read_structure(peptide_files["p.cif.gz"], StructureOptions(hydrogens=hydrogens, waters=waters))
    assert atoms.num_atoms == len(DEFAULT_ATOMS) + len(extra)
    assert sorted(set(rows(atoms)) - set(DEFAULT_ATOMS)) == sorted(extra)
    assert set(DEFAULT_ATOMS) <= set(rows(atoms))
    assert int((atoms.z == ELEMENTS.index("H")).sum()) == n_hydrogens


def test_options_are_validated():
    with pytest.raises(ValueError, match="hydrogens"):
        StructureOptions(hydrogens="remove")
    with pytest.raises(ValueError, match="waters"):
        StructureOptions(waters="")
    assert StructureOptions() == StructureOptions("drop", "drop")


@pytest.mark.parametrize("name", ["p.pdb", "p.cif"])
def test_first_model_only(peptide_files, name):
    atoms = read_structure(peptide_files[name])
    assert atoms.pos[:, 0].max() < 20.0  # model 2 sits at x >= 20
    assert [r for r in rows(atoms) if r[1] == "GLY"] == DEFAULT_ATOMS[:4]  # model 2's GLY has a CB


def test_unknown_elements_counted_per_symbol(peptide_files):
    first, second = SkipReport(), SkipReport()
    read_structure(peptide_files["p.pdb"], report=first)
    read_structure(peptide_files["p.pdb"], report=second)
    read_structure(peptide_files["p.cif"], report=second)
    assert first.unknown_elements == {"Se": 1, "Zn": 1} and first.notes[UNKNOWN_ELEMENT] == 2
    assert first.total == 0 and not first  # notes are not skips
    merged = SkipReport.from_json(first.to_json()) + second
    assert merged.unknown_elements == {"Se": 3, "Zn": 3} and merged.notes[UNKNOWN_ELEMENT] == 6
    assert merged.notes[ALTLOC_DROPPED] == 12
    assert SkipReport.from_json(merged.to_json()).to_dict() == merged.to_dict()


def _pdb_with_letters(text: str) -> str:
    """The PDB text with the x coordinate of the first atom replaced by letters (columns kept)."""
    lines = text.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith("ATOM"))
    lines[i] = lines[i][:30] + "    abcd" + lines[i][38:]
    return "\n".join(lines) + "\n"


def _unparseable(name: str) -> bytes:
    pdb = sf.structure_bytes(sf.peptide(), "p.pdb")
    return {
        "garbage.cif": b"this is not an mmCIF file\nloop_\n",
        "empty.cif": b"",
        "truncated.pdb.gz": gzip.compress(pdb, mtime=0)[:400],
        "not-gzipped.pdb.gz": pdb,
        "letters.pdb": _pdb_with_letters(pdb.decode()).encode(),
        "short-line.ent": b"ATOM      1  N   GLY A   1 \n",
    }[name]


UNPARSEABLE_NAMES = ["garbage.cif", "empty.cif", "truncated.pdb.gz", "not-gzipped.pdb.gz", "letters.pdb",
                     "short-line.ent"]


@pytest.mark.parametrize("name", UNPARSEABLE_NAMES)
def test_unparseable_files_are_skipped(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(_unparseable(name))
    with pytest.raises(SkipSample) as info:
        read_structure(path)
    assert info.value.reason == UNPARSEABLE
    report = SkipReport()
    entry = Entry(file=name, path=path, label=1.0, split="train")
    assert read_entry(entry, report=report) is None
    assert report.counts == {UNPARSEABLE: 1} and report.examples[UNPARSEABLE] == [name] and not report.notes
    with pytest.raises(RecordError, match=name) as info:
        read_entry(entry, strict=True)
    assert info.value.reason == UNPARSEABLE and info.value.path == str(path)


def test_letters_in_pdb_coordinates_name_the_line(tmp_path):
    path = tmp_path / "letters.pdb"
    path.write_bytes(_unparseable("letters.pdb"))
    with pytest.raises(SkipSample, match=r"line \d+: coordinates are not numbers: '    abcd"):
        read_structure(path)


@pytest.mark.parametrize("suffix", [".pdb", ".cif.gz"])
def test_empty_after_filtering(tmp_path, suffix):
    path = sf.write_structure(sf.make_structure(sf.WATERS_ONLY), tmp_path / f"w{suffix}")
    report = SkipReport()
    assert read_entry(Entry(f"w{suffix}", path, 1.0, "train"), report=report) is None
    assert report.counts == {EMPTY_ATOMS: 1}
    with pytest.raises(RecordError, match=f"w{suffix}.*{EMPTY_ATOMS}"):
        read_entry(Entry(f"w{suffix}", path, 1.0, "train"), strict=True)
    kept = read_structure(path, StructureOptions(waters="keep"))
    assert kept.atom_names.tolist() == ["O", "O"] and kept.residue_names.tolist() == ["HOH", "HOH"]


@pytest.mark.parametrize("suffix", [".pdb", ".cif"])
def test_nan_coordinates_skipped_without_notes(tmp_path, suffix):
    structure = sf.peptide()
    structure[0]["A"][0][0].pos = gemmi.Position(float("nan"), 0.0, 0.0)
    path = sf.write_structure(structure, tmp_path / f"nan{suffix}")
    report = SkipReport()
    assert read_entry(Entry(path.name, path, 1.0, "train"), report=report) is None
    assert report.counts == {NAN_COORDINATES: 1} and report.notes == {}  # its Se/Zn are not counted


def test_missing_file(tmp_path):
    with pytest.raises(SkipSample) as info:
        read_structure(tmp_path / "gone.pdb")
    assert info.value.reason == MISSING_FILE
    with pytest.raises(SkipSample) as info:
        read_structure(tmp_path / "gone.txt")
    assert info.value.reason == UNSUPPORTED_FORMAT


# ---------------------------------------------------------------------------------------
# the labels CSV
# ---------------------------------------------------------------------------------------
def put(folder: Path, *names: str) -> None:
    """Real (identical) peptide structures under ``folder``, in the format each name says."""
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(sf.structure_bytes(sf.peptide(), name))


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "structures"
    put(root, "a.pdb", "b.cif", "sub/c.pdb.gz", "sub/deeper/d.mmcif")
    return root


def test_scan_with_split_column(folder, tmp_path):
    labels = sf.write_labels(tmp_path / "labels.csv", [
        ["sub/deeper/d.mmcif", "4.5", "test"], ["b.cif", "-2", "train"], ["sub/c.pdb.gz", "3e-1", "val"],
        ["a.pdb", "1", "train"]], header=("file", "label", "split"))
    report = SkipReport()
    entries, classes = scan_labels(folder, labels, "regression", seed=0, report=report)
    assert classes is None and report.total == 0
    assert [(e.file, e.label, e.split) for e in entries] == [
        ("a.pdb", 1.0, "train"), ("b.cif", -2.0, "train"), ("sub/c.pdb.gz", 0.3, "val"),
        ("sub/deeper/d.mmcif", 4.5, "test")]
    assert all(e.path.is_absolute() and e.path == (folder / e.file).resolve() for e in entries)
    assert all(isinstance(e.label, float) for e in entries)
    # the entries read as structures
    assert {read_structure(e.path).num_atoms for e in entries} == {36}


def test_csv_layout_tolerated(folder, tmp_path):
    """BOM, CRLF, blank lines, spaces, header case, column order, extra columns, trailing commas."""
    labels = tmp_path / "labels.csv"
    labels.write_bytes("\ufeff Label , notes, FILE ,Split\r\n\r\n 1.5 , x , a.pdb , Train \r\n"
                       "   \r\n2,,./sub//c.pdb.gz,TEST,\r\n".encode())
    entries, _ = scan_labels(folder, labels, "regression", seed=0)
    assert [(e.file, e.label, e.split) for e in entries] == [("a.pdb", 1.5, "train"), ("sub/c.pdb.gz", 2.0, "test")]


BAD_ROWS = {  # file name -> (label, reason)
    "gone.pdb": ("1", MISSING_FILE),
    "sub/gone.cif.gz": ("1", MISSING_FILE),
    "folder.pdb": ("1", MISSING_FILE),       # a folder, not a file
    "notes.txt": ("1", UNSUPPORTED_FORMAT),  # exists
    "a.pdb": ("", MISSING_LABEL),
    "b.cif": ("high", INVALID_LABEL),
    "sub/c.pdb.gz": ("nan", INVALID_LABEL),
    "sub/deeper/d.mmcif": ("-inf", INVALID_LABEL),
}


@pytest.fixture
def bad_labels(folder, tmp_path) -> Path:
    (folder / "folder.pdb").mkdir()
    (folder / "notes.txt").write_text("not a structure\n")
    put(folder, "good.pdb", "also-good.ent.gz")
    rows_ = [[name, label] for name, (label, _) in BAD_ROWS.items()] + [["good.pdb", "7"], ["also-good.ent.gz", "8"]]
    return sf.write_labels(tmp_path / "labels.csv", rows_)


def test_bad_rows_skipped_and_counted(folder, bad_labels):
    report = SkipReport()
    entries, _ = scan_labels(folder, bad_labels, "regression", seed=1, report=report)
    assert sorted(e.file for e in entries) == ["also-good.ent.gz", "good.pdb"]
    expected: dict[str, list[str]] = {}
    for name, (_, reason) in BAD_ROWS.items():
        expected.setdefault(reason, []).append(name)
    assert report.counts == {reason: len(names) for reason, names in expected.items()}
    assert report.examples == expected


@pytest.mark.parametrize("name", list(BAD_ROWS))
def test_bad_rows_strict_name_the_file(folder, bad_labels, name):
    lines = bad_labels.read_text().splitlines()
    keep = [lines[0]] + [line for line in lines[1:] if line.split(",")[0] in (name, "good.pdb")]
    bad_labels.write_text("\n".join(keep) + "\n")
    with pytest.raises(RecordError, match=re.escape(f"{bad_labels} line 2: structure file '{name}'")) as info:
        scan_labels(folder, bad_labels, "regression", seed=1, strict=True)
    assert info.value.reason == BAD_ROWS[name][1] and info.value.record_id == name


def test_unlabelled_files_are_counted_not_used(folder, tmp_path):
    (folder / "README.txt").write_text("not a structure\n")
    labels = sf.write_labels(tmp_path / "labels.csv", [["a.pdb", "1"], ["sub/c.pdb.gz", "2"]])
    for strict in (False, True):
        report = SkipReport()
        entries, _ = scan_labels(folder, labels, "regression", seed=0, strict=strict, report=report)
        assert sorted(e.file for e in entries) == ["a.pdb", "sub/c.pdb.gz"]
        assert report.counts == {UNLABELLED_FILE: 2}
        assert report.examples[UNLABELLED_FILE] == ["b.cif", "sub/deeper/d.mmcif"]


def test_labels_csv_inside_the_folder_is_not_a_structure(folder):
    labels = sf.write_labels(folder / "labels.csv", [["a.pdb", "1"], ["b.cif", "2"], ["sub/c.pdb.gz", "3"],
                                                     ["sub/deeper/d.mmcif", "4"]])
    report = SkipReport()
    entries, _ = scan_labels(folder, labels, "regression", seed=0, report=report)
    assert len(entries) == 4 and report.total == 0


# ---------------------------------------------------------------------------------------
# names that leave the folder
# ---------------------------------------------------------------------------------------
@pytest.fixture
def outside(tmp_path) -> Path:
    put(tmp_path / "elsewhere", "secret.pdb")
    return tmp_path / "elsewhere"


@pytest.mark.parametrize("name, message", [
    ("../elsewhere/secret.pdb", r"'\.\.'"),
    ("sub/../../elsewhere/secret.pdb", r"'\.\.'"),
    ("sub/../a.pdb", r"'\.\.'"),  # '..' is refused even where it stays inside
    ("{outside}/secret.pdb", "absolute path"),
    ("{folder}/a.pdb", "absolute path"),
    ("C:\\data\\secret.pdb", "absolute path"),
    ("link.pdb", "outside the structures folder"),
    ("linked-folder/secret.pdb", "outside the structures folder"),
])
def test_names_outside_the_folder_are_refused(folder, outside, tmp_path, name, message):
    (folder / "link.pdb").symlink_to(outside / "secret.pdb")
    (folder / "linked-folder").symlink_to(outside, target_is_directory=True)
    name = name.format(outside=outside, folder=folder)
    labels = sf.write_labels(tmp_path / "labels.csv", [["a.pdb", "1"], [name, "2"]])
    for strict in (False, True):
        with pytest.raises(LabelsError, match=message) as info:
            scan_labels(folder, labels, "regression", seed=0, strict=strict, report=SkipReport())
        assert f"{labels} line 3" in str(info.value) and repr(name) in str(info.value)


def test_symlink_inside_the_folder_is_followed(folder, tmp_path):
    (folder / "alias.pdb.gz").symlink_to(Path("sub") / "c.pdb.gz")  # a relative link
    labels = sf.write_labels(tmp_path / "labels.csv", [["alias.pdb.gz", "1"], ["a.pdb", "2"]])
    report = SkipReport()
    entries, _ = scan_labels(folder, labels, "regression", seed=0, report=report)
    alias = next(e for e in entries if e.file == "alias.pdb.gz")
    assert alias.path == (folder / "sub" / "c.pdb.gz").resolve()
    assert read_structure(alias.path).num_atoms == 36
    # sub/c.pdb.gz is named through the link: not unlabelled
    assert report.examples[UNLABELLED_FILE] == ["b.cif", "sub/deeper/d.mmcif"]


# ---------------------------------------------------------------------------------------
# CSV errors
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, message", [
    ("file,value\na.pdb,1\n", r"no column label \(columns found: \['file', 'value'\]"),
    ("name;label\na.pdb;1\n", "no column file"),
    ("file,label,file\na.pdb,1,a.pdb\n", r"repeated columns \['file'\]"),
    ("", "empty"),
    ("\n\n", "empty"),
    ("file,label\na.pdb,1\nb.cif,2\na.pdb,3\n", r"line 4: file 'a.pdb' is the same file as on line 2"),
    ("file,label\na.pdb,1\n./a.pdb,3\n", r"line 3: file './a.pdb' is the same file as on line 2"),
    ("file,label\nsame.pdb,1\na.pdb,3\n", r"line 3: file 'a.pdb' is the same file as on line 2"),
    ("file,label,split\na.pdb,1,train\nb.cif,2,training\n", r"line 3: split 'training'; expected one of"),
    ("file,label,split\na.pdb,1,train\nb.cif,2,\n", r"line 3: split ''"),
    ("file,label\n,1\n", "line 2: no file name"),
    ("file,label\na.pdb,1,extra\n", "line 2: 3 values for 2 columns"),
    ('file,label\n"a.pdb,1\n', "line 2: unexpected end of data"),  # an unterminated quote
    ('file,label\n"a.pdb"x,1\n', "line 2: ',' expected after '\"'"),
])
def test_malformed_csv_is_an_error_naming_it(folder, tmp_path, text, message):
    (folder / "same.pdb").symlink_to("a.pdb")
    labels = tmp_path / "labels.csv"
    labels.write_text(text)
    with pytest.raises(LabelsError, match=message) as info:
        scan_labels(folder, labels, "regression", seed=0)
    assert str(labels) in str(info.value)


def test_bad_arguments(folder, tmp_path):
    labels = sf.write_labels(tmp_path / "labels.csv", [["a.pdb", "1"]])
    with pytest.raises(ValueError, match="kind"):
        scan_labels(folder, labels, "ranking", seed=0)
    with pytest.raises(LabelsError, match="nowhere"):
        scan_labels(tmp_path / "nowhere", labels, "regression", seed=0)
    with pytest.raises(LabelsError, match="missing.csv"):
        scan_labels(folder, tmp_path / "missing.csv", "regression", seed=0)


# ---------------------------------------------------------------------------------------
# splits and classes
# ---------------------------------------------------------------------------------------
def many(tmp_path: Path, n: int) -> tuple[Path, list[list[str]]]:
    root = tmp_path / "many"
    root.mkdir(exist_ok=True)
    data = sf.structure_bytes(sf.peptide(), "x.pdb")
    names = [f"s{i:03d}.pdb" for i in range(n)]
    for name in names:
        (root / name).write_bytes(data)
    return root, [[name, str(i)] for i, name in enumerate(names)]


def scan(root: Path, csv_path: Path, rows_: list[list[str]], seed: int, **kw) -> list[Entry]:
    sf.write_labels(csv_path, rows_)
    return scan_labels(root, csv_path, "regression", seed=seed, **kw)[0]


def test_seeded_split_is_deterministic_and_ignores_row_order(tmp_path):
    root, rows_ = many(tmp_path, 50)
    csv_path = tmp_path / "labels.csv"
    first = scan(root, csv_path, rows_, seed=7)
    assert [sum(e.split == s for e in first) for s in ("train", "val", "test")] == [40, 5, 5]
    assert first == scan(root, csv_path, rows_, seed=7)
    shuffled = rows_[:]
    random.Random(3).shuffle(shuffled)
    assert first == scan(root, csv_path, shuffled, seed=7)
    assert first == scan(root, csv_path, rows_[::-1], seed=7)
    other = scan(root, csv_path, rows_, seed=8)
    assert {e.file: e.split for e in other} != {e.file: e.split for e in first}
    # entries come by split, then file
    assert [e.split for e in first] == ["train"] * 40 + ["val"] * 5 + ["test"] * 5
    for s in ("train", "val", "test"):
        files = [e.file for e in first if e.split == s]
        assert files == sorted(files)
    # the split is a permutation of the sorted names by default_rng(seed)
    order = np.random.default_rng(7).permutation(50)
    assert {e.file for e in first if e.split == "test"} == {f"s{i:03d}.pdb" for i in order[45:]}


def test_seeded_split_leaves_skipped_rows_out(tmp_path):
    root, rows_ = many(tmp_path, 20)
    rows_ += [["gone.pdb", "1"], ["s000.pdb.gz", "2"]]
    report = SkipReport()
    entries = scan(root, tmp_path / "labels.csv", rows_, seed=0, report=report)
    assert len(entries) == 20 and report.counts == {MISSING_FILE: 2}
    assert {e.file: e.split for e in entries} == seeded_split([f"s{i:03d}.pdb" for i in range(20)], 0)


@pytest.mark.parametrize("n", range(0, 26))
def test_split_sizes(n):
    train, val, test = split_sizes(n)
    assert train + val + test == n and min(train, val, test) >= 0
    if n >= 3:
        assert min(train, val, test) >= 1 and train >= val and train >= test
    else:
        assert (train, val, test) == (n, 0, 0)
    if n >= 10:
        assert abs(val - n / 10) <= 0.5 and abs(test - n / 10) <= 0.5
    assert sorted(seeded_split([f"f{i}" for i in range(n)], 0).values()) == sorted(
        ["train"] * train + ["val"] * val + ["test"] * test)


def test_three_files_fill_every_split(tmp_path):
    root, rows_ = many(tmp_path, 3)
    for seed in range(5):
        entries = scan(root, tmp_path / "labels.csv", rows_, seed=seed)
        assert sorted(e.split for e in entries) == ["test", "train", "val"]


def test_classification_classes_sorted(folder, tmp_path):
    labels = sf.write_labels(tmp_path / "labels.csv", [
        ["a.pdb", " kinase "], ["b.cif", "Protease"], ["sub/c.pdb.gz", "kinase"], ["sub/deeper/d.mmcif", "10"]])
    entries, classes = scan_labels(folder, labels, "classification", seed=0)
    assert classes == ["10", "Protease", "kinase"]
    assert {e.file: e.label for e in entries} == {"a.pdb": "kinase", "b.cif": "Protease", "sub/c.pdb.gz": "kinase",
                                                  "sub/deeper/d.mmcif": "10"}
    # a class whose only row is skipped is not a class
    put(folder, "e.pdb")
    labels.write_text(labels.read_text() + "gone.pdb,Zymogen\ne.pdb,\n")
    report = SkipReport()
    _, classes = scan_labels(folder, labels, "classification", seed=0, report=report)
    assert classes == ["10", "Protease", "kinase"] and report.counts == {MISSING_FILE: 1, MISSING_LABEL: 1}


def test_write_split_csv(tmp_path, folder):
    labels = sf.write_labels(tmp_path / "labels.csv", [["a.pdb", "1"], ["b.cif", "2"], ["sub/c.pdb.gz", "3"],
                                                       ["sub/deeper/d.mmcif", "4"]])
    entries, _ = scan_labels(folder, labels, "regression", seed=5)
    out = tmp_path / "graphs" / "split.csv"
    out.parent.mkdir()
    out.write_text("stale\n")
    write_split_csv(out, entries)
    with open(out, newline="") as fh:
        assert list(csv.reader(fh)) == [["file", "split"]] + [[e.file, e.split] for e in entries]
    assert os.listdir(out.parent) == ["split.csv"]  # no temporary file left behind
    # the written split, read back as a split column, gives the same entries
    with open(out, newline="") as fh:
        written = {r["file"]: r["split"] for r in csv.DictReader(fh)}
    again = sf.write_labels(tmp_path / "again.csv", [[e.file, str(e.label), written[e.file]] for e in entries],
                            header=("file", "label", "split"))
    assert scan_labels(folder, again, "regression", seed=999)[0] == entries
