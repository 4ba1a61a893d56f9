"""Users' own PDB / mmCIF files (the ``structures`` task): atoms of one file, and the labels CSV.

Reading (``read_structure``): gemmi parses the file, first model only. The bytes are read here,
bounded (``StructureOptions``): only regular files are opened for reading (a FIFO, a device such
as ``/dev/zero`` or a symlink to one is skipped as ``not_regular_file`` without reading a byte),
and at most ``max_file_bytes`` bytes after decompression are read (more: ``file_too_large``);
``.gz`` goes through Python's gzip, which decompresses only as much as asked and refuses
truncated or non-gzip files (gemmi reads them silently as far as they go). PDB coordinate
columns are checked to be numbers (gemmi reads ``abc`` as 0.0); a first model of more than
``max_atoms`` atoms after dropping hydrogens and waters (each alternate location counted) is
skipped as ``too_many_atoms`` before any per-atom work. Hydrogens (H, D) and waters are removed
with gemmi unless kept (before the atom cap), and alternate locations are resolved per residue
position (chain, number, insertion code): the altloc label with the highest occupancy (mean over
its atoms, to 4 decimals) is kept, the first in file order on ties, together with every atom that has no altloc. Choosing one label per
residue, not per atom, keeps a residue's conformer whole, also for microheterogeneity (SER in
altloc A, THR in altloc B at the same number: one of the two residues, not a mixture).
Elements outside the vocabulary of ``preprocess.elements`` map to 'other' and are counted in
the report, in total (``unknown_element_atoms``) and per symbol as gemmi names it
(``unknown_element:Se``; gemmi names symbols it does not know ``X``).

Labels (``scan_labels``): the CSV has columns ``file``, ``label`` and optionally ``split``;
file names are paths relative to the structures folder. Names that leave the folder
(absolute, ``..``, symlinks to outside) and malformed CSVs raise ``LabelsError`` (also without
``strict``); rows whose file is missing or has an unsupported suffix, or whose label is missing
or not a finite number (regression), are skipped and counted, or raise ``RecordError`` under
``strict``. Structure files in the folder without a row are not used and counted as
``unlabelled_file``.
"""
from __future__ import annotations

import csv
import gzip
import io
import math
import os
import stat
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any, BinaryIO, Iterable, Iterator, Mapping, Sequence, Union

import numpy as np

if TYPE_CHECKING:
    import gemmi

from preprocess.atomic import write_text_atomic
from preprocess.elements import OTHER_INDEX, element_index

from . import RecordError, Sample, SkipSample
from .report import (
    ALTLOC_DROPPED, EMPTY_ATOMS, FILE_TOO_LARGE, INVALID_LABEL, MISSING_FILE, MISSING_LABEL, NAN_COORDINATES,
    NOT_REGULAR_FILE, TOO_MANY_ATOMS, UNLABELLED_FILE, UNPARSEABLE, UNSUPPORTED_FORMAT, SkipReport,
)

FORMATS: dict[str, str] = {".pdb": "pdb", ".ent": "pdb", ".cif": "mmcif", ".mmcif": "mmcif"}
SPLITS: tuple[str, ...] = ("train", "val", "test")
SPLIT_FRACTIONS: tuple[float, float, float] = (0.8, 0.1, 0.1)
KINDS: tuple[str, ...] = ("regression", "classification")
CHOICES: tuple[str, ...] = ("drop", "keep")
#: ``residue_numbers`` of residues without a number (an mmCIF ``auth_seq_id`` of '?').
NO_RESIDUE_NUMBER = int(np.iinfo(np.int32).min)
#: default ``max_file_bytes``: bytes read from one structure file, after decompression (100 MB;
#: a 100,000-atom PDB file is about 8 MB)
DEFAULT_MAX_FILE_BYTES = 100_000_000
#: default ``max_atoms``: atoms of one structure's first model (hydrogens and waters dropped first)
DEFAULT_MAX_ATOMS = 100_000

Label = Union[float, str]


class LabelsError(ValueError):
    """The labels CSV or the folder is unusable (names the CSV and row): a configuration error."""


@dataclass(frozen=True)
class StructureOptions:
    """What to keep of each structure (``hydrogens``, ``waters``: "drop" or "keep") and how much
    of a file may be read: ``max_file_bytes`` after decompression, ``max_atoms`` in the first
    model (None or -1: no limit)."""

    hydrogens: str = "drop"
    waters: str = "drop"
    max_file_bytes: int | None = DEFAULT_MAX_FILE_BYTES
    max_atoms: int | None = DEFAULT_MAX_ATOMS

    def __post_init__(self) -> None:
        for name in ("hydrogens", "waters"):
            value = getattr(self, name)
            if value not in CHOICES:
                raise ValueError(f"structures option {name}: {value!r}; expected one of {CHOICES}")
        for name in ("max_file_bytes", "max_atoms"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < -1 or value == 0):
                raise ValueError(f"structures option {name}: {value!r}; expected an integer >= 1, or -1 / None (no limit)")
            object.__setattr__(self, name, None if value in (None, -1) else value)

    @classmethod
    def of(cls, options: Mapping[str, Any], **fixed: Any) -> StructureOptions:
        """The options among `options`' keys (others are ignored), `fixed` laid over them."""
        names = ("hydrogens", "waters", "max_file_bytes", "max_atoms")
        return cls(**{**{k: options[k] for k in names if k in options}, **fixed})


@dataclass
class StructureAtoms:
    """The kept atoms of one structure, one row per atom in file order.

    ``pos`` float32 [N, 3]; ``z`` int8 [N] (``preprocess.elements`` vocabulary); ``elements``
    the symbols as gemmi read them ('Se', 'X' for unknown ones); string arrays for the names,
    ``insertion_codes`` '' where there is none; ``residue_numbers`` int32; ``hetero`` bool
    (HETATM); ``dropped_altloc_atoms`` the alternate-location atoms not kept.
    """

    pos: np.ndarray
    z: np.ndarray
    elements: np.ndarray
    atom_names: np.ndarray
    residue_names: np.ndarray
    chain_ids: np.ndarray
    residue_numbers: np.ndarray
    insertion_codes: np.ndarray
    hetero: np.ndarray
    dropped_altloc_atoms: int = 0

    @property
    def num_atoms(self) -> int:
        return int(self.z.shape[0])


@dataclass(frozen=True)
class Entry:
    """One labelled structure: ``file`` as named in the CSV (relative, POSIX), ``path`` resolved."""

    file: str
    path: Path
    label: Label
    split: str


# ---------------------------------------------------------------------------------------
# reading one structure
# ---------------------------------------------------------------------------------------
def structure_format(name: str | os.PathLike) -> str | None:
    """'pdb' or 'mmcif' from the file name's suffix (case-insensitive, optional .gz), else None."""
    lower = str(name).lower()
    if lower.endswith(".gz"):
        lower = lower[:-3]
    return FORMATS.get(os.path.splitext(lower)[1])


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"


def _open_regular(path: Path) -> tuple[BinaryIO, int]:
    """The file open for reading and its size; SkipSample unless it is a regular file.

    Opened non-blocking and checked on the open descriptor, so a FIFO neither blocks nor is
    read, and a file swapped for a device after a check cannot slip through."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError as exc:
        raise SkipSample(MISSING_FILE, str(path)) from exc
    except OSError as exc:
        raise SkipSample(UNPARSEABLE, f"cannot read {path}: {exc}") from exc
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise SkipSample(NOT_REGULAR_FILE, f"{path} is a {_file_kind(info.st_mode)}, not a regular file")
    return os.fdopen(fd, "rb"), info.st_size


def _too_large(path: Path, limit: int, packed: bool) -> SkipSample:
    after = " after decompression" if packed else ""
    return SkipSample(FILE_TOO_LARGE, f"{path} holds more than {limit} bytes{after} (max_file_bytes)")


def _read_upto(stream: BinaryIO, limit: int, chunk: int = 1 << 20) -> bytes:
    """At most `limit` bytes of `stream`, in chunks (a read of `limit` bytes would reserve them
    all at once), or `limit` + 1 when there are more."""
    parts: list[bytes] = []
    total = 0
    while total <= limit:
        part = stream.read(min(chunk, limit + 1 - total))
        if not part:
            break
        parts.append(part)
        total += len(part)
    return b"".join(parts)


def _read_bytes(path: Path, max_bytes: int | None = DEFAULT_MAX_FILE_BYTES) -> bytes:
    """The file's content, decompressed when it ends in .gz, at most `max_bytes` of it (None: no
    limit); SkipSample when it cannot be read, is not a regular file or holds more."""
    packed = path.name.lower().endswith(".gz")
    fh, size = _open_regular(path)
    with fh:
        if max_bytes is not None and not packed and size > max_bytes:
            raise _too_large(path, max_bytes, packed)
        try:
            stream = gzip.GzipFile(fileobj=fh, mode="rb") if packed else fh
            data = stream.read() if max_bytes is None else _read_upto(stream, max_bytes)
        except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
            raise SkipSample(UNPARSEABLE, f"cannot read {path}: {exc}") from exc
    if max_bytes is not None and len(data) > max_bytes:
        raise _too_large(path, max_bytes, packed)
    return data


def _check_pdb_coordinates(data: bytes) -> None:
    """Raise SkipSample unless the x, y, z columns of every ATOM/HETATM line of the first model are numbers."""
    for number, line in enumerate(data.splitlines(), start=1):
        if line.startswith(b"ENDMDL"):
            return
        if line.startswith((b"ATOM  ", b"HETATM")):
            try:
                for start in (30, 38, 46):
                    float(line[start:start + 8])
            except ValueError:
                raise SkipSample(UNPARSEABLE, f"line {number}: coordinates are not numbers: "
                                              f"{line[30:54].decode(errors='replace')!r}") from None


def _parse(path: Path, max_bytes: int | None = DEFAULT_MAX_FILE_BYTES) -> gemmi.Structure:
    """The whole file parsed by gemmi; SkipSample(UNPARSEABLE) when gemmi refuses it."""
    import gemmi  # here, not at the top: the task declarations import this module

    fmt = structure_format(path.name)
    if fmt is None:
        raise SkipSample(UNSUPPORTED_FORMAT, f"{path.name}: expected {', '.join(FORMATS)} (optionally .gz)")
    data = _read_bytes(path, max_bytes)
    try:
        if fmt == "pdb":
            _check_pdb_coordinates(data)
            return gemmi.read_pdb_string(data)
        return gemmi.make_structure_from_block(gemmi.cif.read_string(data)[0])
    except (RuntimeError, ValueError, IndexError) as exc:
        raise SkipSample(UNPARSEABLE, f"{path.name}: {exc}") from exc


def _first_model(structure: gemmi.Structure, options: StructureOptions) -> gemmi.Model:
    """The first model with hydrogens and waters removed as ``options`` say."""
    if len(structure) == 0:
        raise SkipSample(EMPTY_ATOMS, "no models")
    model = structure[0]
    if options.hydrogens == "drop":
        model.remove_hydrogens()
    if options.waters == "drop":
        model.remove_waters()
    if options.max_atoms is not None and model.count_atom_sites() > options.max_atoms:
        raise SkipSample(TOO_MANY_ATOMS, f"{model.count_atom_sites()} atoms in the first model, more than "
                                         f"max_atoms = {options.max_atoms}")
    return model


ResidueKey = tuple[str, object, str]


def _position(chain: gemmi.Chain, residue: gemmi.Residue) -> ResidueKey:
    return chain.name, residue.seqid.num, residue.seqid.icode


def conformer_choice(model: gemmi.Model) -> dict[ResidueKey, str]:
    """Per residue position with alternate locations: the altloc label to keep.

    The label whose atoms have the highest mean occupancy (rounded to 4 decimals, so equal
    occupancies tie exactly); on ties the label met first in file order.
    """
    occupancies: dict[ResidueKey, dict[str, list[float]]] = {}
    for chain in model:
        for residue in chain:
            for atom in residue:
                if atom.has_altloc():
                    labels = occupancies.setdefault(_position(chain, residue), {})
                    labels.setdefault(atom.altloc, []).append(atom.occ)
    # max() returns the first of equal keys and dicts keep insertion (file) order
    return {key: max(labels, key=lambda a: round(sum(labels[a]) / len(labels[a]), 4))
            for key, labels in occupancies.items()}


def _collect(model: gemmi.Model) -> tuple[dict[str, list], int]:
    """Columns of the atoms kept after altloc resolution, and the number of altloc atoms dropped."""
    choice = conformer_choice(model)
    cols: dict[str, list] = {k: [] for k in ("pos", "elements", "atom_names", "residue_names", "chain_ids",
                                             "residue_numbers", "insertion_codes", "hetero")}
    dropped = 0
    for chain in model:
        for residue in chain:
            key = _position(chain, residue)
            for atom in residue:
                if atom.has_altloc() and atom.altloc != choice[key]:
                    dropped += 1
                    continue
                cols["pos"].append((atom.pos.x, atom.pos.y, atom.pos.z))
                cols["elements"].append(atom.element.name)
                cols["atom_names"].append(atom.name)
                cols["residue_names"].append(residue.name)
                cols["chain_ids"].append(chain.name)
                num = residue.seqid.num
                cols["residue_numbers"].append(NO_RESIDUE_NUMBER if num is None else num)
                cols["insertion_codes"].append(residue.seqid.icode.strip())
                cols["hetero"].append(residue.het_flag == "H")
    return cols, dropped


def _atoms(cols: dict[str, list], dropped: int) -> StructureAtoms:
    """Arrays from the collected columns; SkipSample on no atoms or non-finite coordinates."""
    if not cols["pos"]:
        raise SkipSample(EMPTY_ATOMS, "no atoms left in the first model after filtering")
    pos = np.asarray(cols["pos"], dtype=np.float64)
    finite = np.isfinite(pos).all(axis=1)
    if not finite.all():
        raise SkipSample(NAN_COORDINATES, f"{int((~finite).sum())} atom(s) with non-finite coordinates")
    elements = np.asarray(cols["elements"], dtype=str)
    return StructureAtoms(
        pos=pos.astype(np.float32), z=element_index(elements), elements=elements,
        atom_names=np.asarray(cols["atom_names"], dtype=str),
        residue_names=np.asarray(cols["residue_names"], dtype=str),
        chain_ids=np.asarray(cols["chain_ids"], dtype=str),
        residue_numbers=np.asarray(cols["residue_numbers"], dtype=np.int32),
        insertion_codes=np.asarray(cols["insertion_codes"], dtype=str),
        hetero=np.asarray(cols["hetero"], dtype=bool),
        dropped_altloc_atoms=dropped,
    )


def _note(atoms: StructureAtoms, report: SkipReport) -> None:
    """Count the structure's unknown elements (in total and per symbol) and dropped altloc atoms."""
    unknown = Counter(atoms.elements[atoms.z == OTHER_INDEX].tolist())
    report.note_unknown_elements(dict(sorted(unknown.items())))
    report.note(ALTLOC_DROPPED, atoms.dropped_altloc_atoms)


def read_structure(path: str | os.PathLike, options: StructureOptions | None = None,
                   report: SkipReport | None = None) -> StructureAtoms:
    """The kept atoms of the first model of a PDB / mmCIF file (see the module docstring).

    Raises ``SkipSample`` (reason ``unparseable``, ``unsupported_format``, ``missing_file``,
    ``not_regular_file``, ``file_too_large``, ``too_many_atoms``, ``empty_atoms`` or
    ``nan_coordinates``), naming the file; notes go to ``report`` only for a kept structure.
    """
    options = StructureOptions() if options is None else options
    path = Path(path)
    try:
        model = _first_model(_parse(path, options.max_file_bytes), options)
        atoms = _atoms(*_collect(model))
    except MemoryError:  # within the caps but still too much for this machine: name the file
        raise SkipSample(FILE_TOO_LARGE, f"{path}: out of memory while reading it (lower max_file_bytes "
                                         f"or max_atoms)") from None
    if report is not None:
        _note(atoms, report)
    return atoms


def read_entry(entry: Entry, options: StructureOptions | None = None, strict: bool = False,
               report: SkipReport | None = None) -> StructureAtoms | None:
    """``read_structure`` of an entry; None when skipped (counted), RecordError under ``strict``."""
    try:
        return read_structure(entry.path, options, report)
    except SkipSample as exc:
        _skip(exc, entry.file, entry.path, strict, report)
    return None


def _skip(exc: SkipSample, file: str, path: Path, strict: bool, report: SkipReport | None,
          where: str = "") -> None:
    """Count a skipped file in ``report`` or, under ``strict``, raise RecordError naming it."""
    if strict and exc.bad:
        raise RecordError(f"{where}structure file {file!r} ({path}): {exc}", path=str(path),
                          record_id=file, reason=exc.reason) from exc
    if report is not None:
        report.add(exc.reason, file)


# ---------------------------------------------------------------------------------------
# the labels CSV
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LabelRow:
    """One data row of the labels CSV; ``line`` its (last) line number in the file."""

    line: int
    file: str
    label: str
    split: str | None


def _header(row: list[str], csv_path: Path) -> dict[str, int]:
    """Column name (stripped, lower-case) -> index; LabelsError on missing or repeated columns."""
    names = [c.strip().lower() for c in row]
    repeated = sorted({n for n in names if n and names.count(n) > 1})
    if repeated:
        raise LabelsError(f"labels CSV {csv_path}: repeated columns {repeated}")
    missing = [c for c in ("file", "label") if c not in names]
    if missing:
        raise LabelsError(f"labels CSV {csv_path}: no column {' or '.join(missing)} "
                          f"(columns found: {[c.strip() for c in row]}; expected file, label and optionally split)")
    return {n: i for i, n in enumerate(names) if n}


def _split_value(value: str, csv_path: Path, line: int) -> str:
    split = value.strip().lower()
    if split not in SPLITS:
        raise LabelsError(f"labels CSV {csv_path} line {line}: split {value!r}; expected one of {SPLITS}")
    return split


def read_labels_csv(csv_path: str | os.PathLike) -> tuple[list[LabelRow], bool]:
    """The data rows (values stripped, blank lines ignored, BOM allowed) and whether there is a split column."""
    csv_path = Path(csv_path)
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelsError(f"labels CSV {csv_path}: cannot read it: {exc}") from exc
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    columns: dict[str, int] | None = None
    rows: list[LabelRow] = []
    try:
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            if columns is None:
                columns = _header(cells, csv_path)
                continue
            rows.append(_row(cells, columns, csv_path, reader.line_num))
    except csv.Error as exc:
        raise LabelsError(f"labels CSV {csv_path} line {reader.line_num}: {exc}") from exc
    if columns is None:
        raise LabelsError(f"labels CSV {csv_path}: empty (expected a header: file,label[,split])")
    return rows, "split" in columns


def _row(cells: list[str], columns: dict[str, int], csv_path: Path, line: int) -> LabelRow:
    """One data row; LabelsError on extra cells, an empty file name or a bad split."""
    width = max(columns.values()) + 1
    if any(c.strip() for c in cells[width:]):  # trailing empty cells are fine
        raise LabelsError(f"labels CSV {csv_path} line {line}: {len(cells)} values for {len(columns)} columns")
    values = {name: cells[i].strip() if i < len(cells) else "" for name, i in columns.items()}
    if not values["file"]:
        raise LabelsError(f"labels CSV {csv_path} line {line}: no file name")
    split = _split_value(values["split"], csv_path, line) if "split" in values else None
    return LabelRow(line=line, file=values["file"], label=values["label"], split=split)


# ---------------------------------------------------------------------------------------
# file names inside the folder
# ---------------------------------------------------------------------------------------
def _relative_name(name: str, csv_path: Path, line: int) -> str:
    """The CSV's file name as a normalised relative POSIX path; LabelsError if absolute or with '..'."""
    where = f"labels CSV {csv_path} line {line}: file {name!r}"
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute() or PureWindowsPath(name).drive:
        raise LabelsError(f"{where} is an absolute path; names are relative to the structures folder")
    parts = [p for p in PurePosixPath(name).parts if p != "."]
    if ".." in parts:
        raise LabelsError(f"{where} contains '..'; names must stay inside the structures folder")
    if not parts:
        raise LabelsError(f"{where} names no file")
    return "/".join(parts)


def _inside(root: Path, name: str, csv_path: Path, line: int) -> Path:
    """``root/name`` with symlinks resolved; LabelsError if that is outside ``root`` (a resolved folder)."""
    path = (root / name).resolve()
    if not path.is_relative_to(root):
        raise LabelsError(f"labels CSV {csv_path} line {line}: file {name!r} resolves to {path}, "
                          f"outside the structures folder {root} (a symlink?)")
    return path


def _label(value: str, kind: str) -> Label:
    """The label as a finite float (regression) or a class name; SkipSample otherwise."""
    if not value:
        raise SkipSample(MISSING_LABEL, "empty label")
    if kind == "classification":
        return value
    try:
        number = float(value)
    except ValueError:
        raise SkipSample(INVALID_LABEL, f"label {value!r} is not a number") from None
    if not math.isfinite(number):
        raise SkipSample(INVALID_LABEL, f"label {value!r} is not finite")
    return number


def _check_file(path: Path, name: str) -> None:
    """SkipSample unless ``path`` is an existing regular file with a supported suffix."""
    if structure_format(name) is None:
        raise SkipSample(UNSUPPORTED_FORMAT, f"expected {', '.join(FORMATS)} (optionally .gz)")
    if not path.is_file():
        raise SkipSample(MISSING_FILE, "no such file" if not path.exists() else "not a regular file")


def structure_files(root: Path) -> list[str]:
    """Names (relative POSIX paths) of the files with a supported suffix under ``root``, sorted.

    Symlinked folders are not followed."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        rel = Path(folder).relative_to(root)
        found += [(rel / f).as_posix() for f in sorted(files) if structure_format(f) is not None]
    return found


def expand(paths: Sequence[str | Path]) -> list[str]:
    """Files as given; folders become their structure files (sorted, recursively)."""
    out: list[str] = []
    for p in paths:
        p = Path(p)
        out += [str(p / name) for name in structure_files(p)] if p.is_dir() else [str(p)]
    return out


def listing_digest(files: Iterable[tuple[str, Path]]) -> str:
    """A digest of ``(name, path)`` pairs by name, size and modification time, for the workflow's
    rerun checks. A name that is not UTF-8 counts by its bytes, and a dangling symlink (or any
    file that cannot be stat'ed) as "missing": neither may break parsing the workflow."""
    import hashlib

    digest = hashlib.sha256()
    for name, path in files:
        try:
            info = path.stat()
            line = f"{name}\0{info.st_size}\0{info.st_mtime_ns}\n"
        except OSError:
            line = f"{name}\0missing\n"
        digest.update(line.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:16]


def folder_digest(root: Path) -> str:
    """:func:`listing_digest` of the structure files under ``root``."""
    return listing_digest((name, root / name) for name in (structure_files(root) if root.is_dir() else []))


# ---------------------------------------------------------------------------------------
# splits
# ---------------------------------------------------------------------------------------
def split_sizes(n: int) -> tuple[int, int, int]:
    """(train, val, test) sizes of a seeded 80/10/10 split; val and test at least 1 from 3 files on."""
    val, test = (math.floor(n * f + 0.5) for f in SPLIT_FRACTIONS[1:])
    if n >= 3:
        val, test = max(val, 1), max(test, 1)
    return n - val - test, val, test


def seeded_split(files: list[str], seed: int) -> dict[str, str]:
    """File -> split: a permutation by ``numpy.random.default_rng(seed)`` of the sorted names, cut 80/10/10."""
    names = sorted(files)
    order = np.random.default_rng(seed).permutation(len(names))
    n_train, n_val, _ = split_sizes(len(names))
    return {names[i]: SPLITS[0] if k < n_train else SPLITS[1] if k < n_train + n_val else SPLITS[2]
            for k, i in enumerate(order)}


def write_split_csv(path: str | os.PathLike, entries: list[Entry]) -> None:
    """Write ``file,split`` rows (in the entries' order) to ``path`` atomically."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["file", "split"])
    writer.writerows([e.file, e.split] for e in entries)
    write_text_atomic(path, out.getvalue())


# ---------------------------------------------------------------------------------------
# scanning the labels
# ---------------------------------------------------------------------------------------
def _folder(folder: str | os.PathLike) -> Path:
    root = Path(folder).resolve()
    if not root.is_dir():
        raise LabelsError(f"structures folder {folder} does not exist or is not a folder")
    return root


def _checked_rows(rows: list[LabelRow], root: Path, csv_path: Path) -> list[tuple[LabelRow, str, Path]]:
    """Each row with its normalised name and resolved path; LabelsError on names outside or repeated."""
    by_name: dict[str, int] = {}
    by_path: dict[Path, int] = {}
    out = []
    for row in rows:
        name = _relative_name(row.file, csv_path, row.line)
        path = _inside(root, name, csv_path, row.line)
        earlier = by_name.get(name, by_path.get(path))
        if earlier is not None:
            raise LabelsError(f"labels CSV {csv_path} line {row.line}: file {row.file!r} is the same file "
                              f"as on line {earlier}; each structure needs exactly one row")
        by_name[name], by_path[path] = row.line, row.line
        out.append((row, name, path))
    return out


def scan_labels(folder: str | os.PathLike, labels_csv: str | os.PathLike, kind: str, seed: int,
                strict: bool = False, report: SkipReport | None = None) -> tuple[list[Entry], list[str] | None]:
    """The labelled structures of ``folder`` as listed in ``labels_csv`` and, for classification, the classes.

    Entries are sorted by split (train, val, test) and then file; classes are the sorted distinct
    labels of the entries (None for regression). Without a split column the entries get a seeded
    80/10/10 split (``seeded_split``). See the module docstring for what is skipped or refused.
    """
    if kind not in KINDS:
        raise ValueError(f"structures kind {kind!r}; expected one of {KINDS}")
    csv_path = Path(labels_csv)
    root = _folder(folder)
    rows, has_split = read_labels_csv(csv_path)
    checked = _checked_rows(rows, root, csv_path)
    kept: list[tuple[LabelRow, str, Path, Label]] = []
    for row, name, path in checked:
        try:
            _check_file(path, name)
            kept.append((row, name, path, _label(row.label, kind)))
        except SkipSample as exc:
            _skip(exc, name, path, strict, report, where=f"labels CSV {csv_path} line {row.line}: ")
    _count_unlabelled(root, {path for _, _, path in checked}, report)
    splits = {name: row.split for row, name, _, _ in kept} if has_split else seeded_split([k[1] for k in kept], seed)
    entries = sorted((Entry(file=name, path=path, label=label, split=splits[name]) for _, name, path, label in kept),
                     key=lambda e: (SPLITS.index(e.split), e.file))
    classes = sorted({str(e.label) for e in entries}) if kind == "classification" else None
    return entries, classes


def samples(entry: dict, index: int, strict: bool = False, report: SkipReport | None = None,
            hydrogens: str = "drop", waters: str = "drop", max_file_bytes: int | None = DEFAULT_MAX_FILE_BYTES,
            max_atoms: int | None = DEFAULT_MAX_ATOMS) -> Iterator[Sample]:
    """The sample of one labelled structure (a record of :class:`preprocess.sources.StructureFolder`:
    ``file``, ``path``, ``split`` and ``y``, the float label or the class index)."""
    e = Entry(file=entry["file"], path=Path(entry["path"]), label=entry["y"], split=entry["split"])
    atoms = read_entry(e, StructureOptions(hydrogens, waters, max_file_bytes, max_atoms), strict, report)
    if atoms is not None:
        y = entry["y"]
        y = np.array([y], dtype=np.float32) if isinstance(y, float) else int(y)
        yield Sample(id=e.file, pos=atoms.pos, z=atoms.z, y=y, fields={"file": e.file})


def _count_unlabelled(root: Path, listed: set[Path], report: SkipReport | None) -> None:
    """Count the structure files under ``root`` that no CSV row names (they are not used)."""
    if report is None:
        return
    for name in structure_files(root):
        if (root / name).resolve() not in listed:
            report.add(UNLABELLED_FILE, name)


__all__ = [
    "DEFAULT_MAX_ATOMS", "DEFAULT_MAX_FILE_BYTES", "Entry", "folder_digest", "LabelsError", "StructureAtoms", "StructureOptions", "read_entry", "read_labels_csv",
    "read_structure", "samples", "scan_labels", "seeded_split", "split_sizes", "structure_format",
    "write_split_csv",
]
