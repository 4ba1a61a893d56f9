"""Tiny ATOM3D datasets in the real on-disk format, written with atom3d's own writer.

Every builder writes hand-made records (small proteins with realistic atom names) with
``atom3d.datasets.make_lmdb_dataset`` (gzip-compressed JSON, DataFrames serialised by
atom3d) into the directory layout of the Zenodo archives, and returns a ``Fixture`` with
the LMDB paths and the hand-made records (so tests know the answers). With ``bad=True``
the train split also holds bad records (NaN coordinates, empty atom table, missing label,
an unknown element) and, with ``corrupt=True``, one entry overwritten with bytes that are
not gzip (written with lmdb directly after atom3d's writer).

Layouts (``LAYOUTS``): ``<root>/<layout>/data/{train,val,test}``; RES is one LMDB
``<root>/raw/RES/data`` plus ``<root>/indices/{train,val,test}_indices.txt``.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

ATOM_COLUMNS = [
    "ensemble", "subunit", "structure", "model", "chain", "hetero", "insertion_code",
    "residue", "segid", "resname", "altloc", "occupancy", "bfactor", "x", "y", "z",
    "element", "name", "fullname", "serial_number",
]
LAYOUTS = {
    "lba": "split-by-sequence-identity-30",
    "psr": "split-by-year",
    "rsr": "candidates-split-by-time",
    "ppi": "DIPS-split",
    "res": "raw/RES",
}
SPLITS = ("train", "val", "test")

# Local backbone/side-chain geometry (Angstrom); residues are laid out along x.
_BACKBONE = [("N", "N", (0.0, 0.0, 0.0)), ("CA", "C", (1.46, 0.0, 0.0)),
             ("C", "C", (2.0, 1.42, 0.0)), ("O", "O", (1.25, 2.4, 0.0))]
_SIDECHAIN = {
    "GLY": [],
    "ALA": [("CB", "C", (2.0, -0.77, 1.2))],
    "SER": [("CB", "C", (2.0, -0.77, 1.2)), ("OG", "O", (3.4, -0.8, 1.3))],
    "CYS": [("CB", "C", (2.0, -0.77, 1.2)), ("SG", "S", (3.8, -0.8, 1.3))],
    "LYS": [("CB", "C", (2.0, -0.77, 1.2)), ("CG", "C", (3.5, -0.8, 1.3)),
            ("NZ", "N", (4.9, -0.9, 1.4))],
    "MET": [("CB", "C", (2.0, -0.77, 1.2)), ("SD", "S", (3.6, -0.8, 1.3))],
    "MSE": [("CB", "C", (2.0, -0.77, 1.2)), ("SE", "SE", (3.6, -0.8, 1.3))],
    "PHE": [("CB", "C", (2.0, -0.77, 1.2)), ("CG", "C", (3.5, -0.8, 1.3))],
}
_HYDROGENS = [("H", "H", (-0.9, 0.4, 0.0)), ("HA", "H", (1.7, -0.6, -0.9))]
SPACING = 3.8


def fullname(name: str, element: str) -> str:
    return f" {name:<3}" if len(element) == 1 and len(name) < 4 else f"{name:<4}"


def residue_atoms(chain: str, resnum: int, resname: str, origin=(0.0, 0.0, 0.0), *,
                  ensemble: str = "prot.pdb", subunit: str | None = None,
                  structure: str | None = None, with_h: bool = False,
                  sidechain: bool = True, hetero: str = " ", insertion_code: str = " ",
                  skip: tuple[str, ...] = ()) -> list[dict]:
    """Atom rows of one residue (backbone N CA C O, a short side chain, optional H)."""
    spec = list(_BACKBONE)
    if sidechain:
        spec += _SIDECHAIN.get(resname, _SIDECHAIN["ALA"])
    if with_h:
        spec += _HYDROGENS
    rows = []
    for name, element, (dx, dy, dz) in spec:
        if name in skip:
            continue
        rows.append(dict(
            ensemble=ensemble, subunit=subunit or ensemble, structure=structure or ensemble,
            model=1, chain=chain, hetero=hetero, insertion_code=insertion_code,
            residue=int(resnum), segid="    ", resname=resname, altloc=" ",
            occupancy=1.0, bfactor=20.0, x=origin[0] + dx, y=origin[1] + dy,
            z=origin[2] + dz, element=element, name=name,
            fullname=fullname(name, element), serial_number=0,
        ))
    return rows


def chain_atoms(chain: str, residues, start=(0.0, 0.0, 0.0), **kw) -> list[dict]:
    """Consecutive residues ``[(resnum, resname), ...]`` spaced ``SPACING`` along x."""
    rows = []
    for i, (num, name) in enumerate(residues):
        origin = (start[0] + SPACING * i, start[1], start[2])
        rows += residue_atoms(chain, num, name, origin, **kw)
    return rows


def frame(rows: list[dict]) -> pd.DataFrame:
    """DataFrame with exactly atom3d's columns and serial numbers 1..n."""
    df = pd.DataFrame(rows, columns=ATOM_COLUMNS)
    df["serial_number"] = np.arange(1, len(df) + 1)
    return df.reset_index(drop=True)


def write_lmdb(records: list[dict], path: Path, corrupt: tuple[int, ...] = ()) -> Path:
    """Write ``records`` with atom3d's ``make_lmdb_dataset``; overwrite ``corrupt`` keys."""
    from atom3d.datasets import make_lmdb_dataset

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    make_lmdb_dataset([copy.deepcopy(r) for r in records], str(path))
    if corrupt:
        import lmdb

        env = lmdb.open(str(path), map_size=1 << 30)
        with env.begin(write=True) as txn:
            for i in corrupt:
                txn.put(str(i).encode(), b"this is not gzip")
        env.close()
    return path


@dataclass
class Fixture:
    root: Path
    paths: dict[str, Path]                       # split -> LMDB directory
    records: dict[str, list[dict]] = field(default_factory=dict)  # split -> records written
    notes: dict = field(default_factory=dict)    # expected answers / indices of bad records


def _write_splits(root: Path, task: str, splits: dict[str, list[dict]],
                  corrupt: dict[str, tuple[int, ...]] | None = None) -> Fixture:
    base = Path(root) / LAYOUTS[task] / "data"
    paths = {}
    for split, recs in splits.items():
        paths[split] = write_lmdb(recs, base / split, (corrupt or {}).get(split, ()))
    return Fixture(root=Path(root), paths=paths, records=splits)


def _bad_records(make, label_key: str | None, atom_key: str = "atoms",
                 scores_key: str = "scores") -> list[dict]:
    """[NaN coordinates, empty atom table, missing label, unknown element] variants
    (corruptions applied to ``record[atom_key]``)."""
    nan = make("bad_nan")
    unk = make("unknown_element")
    empty = make("bad_empty")
    nolabel = make("bad_nolabel")
    nan[atom_key] = nan[atom_key].copy()
    nan[atom_key].loc[0, "x"] = np.nan
    empty[atom_key] = empty[atom_key].iloc[0:0].copy()
    unk[atom_key] = unk[atom_key].copy()
    unk[atom_key].loc[len(unk[atom_key]) - 1, "element"] = "Zz"
    if label_key is not None:
        sc = nolabel[scores_key]
        if isinstance(sc, pd.Series):
            nolabel[scores_key] = sc.drop(label_key)
        else:
            nolabel[scores_key] = {k: v for k, v in sc.items() if k != label_key}
    return [nan, empty, nolabel, unk]


# ------------------------------------------------------------------------------------
# LBA
# ------------------------------------------------------------------------------------
def lba_record(rid: str = "1abc", neglog_aff: float = 6.25) -> dict:
    """Pocket: A10 SER (with H) + A11 GLY; ligand: 5 atoms C, O, N, Cl, H."""
    pocket_rows = (residue_atoms("A", 10, "SER", (0, 0, 0), ensemble=rid, with_h=True)
                   + residue_atoms("A", 11, "GLY", (3.8, 0, 0), ensemble=rid))
    protein_rows = pocket_rows + residue_atoms("A", 12, "LYS", (7.6, 0, 0), ensemble=rid)
    lig = [("C1", "C", (1.0, 5.0, 0.0)), ("O1", "O", (2.2, 5.0, 0.0)),
           ("N1", "N", (0.3, 6.1, 0.0)), ("CL1", "Cl", (0.2, 3.6, 0.0)),
           ("H1", "H", (0.9, 5.0, 1.0))]
    ligand_rows = [dict(ensemble=rid, subunit="LIG", structure=rid, model=1, chain="L",
                        hetero="H_LIG", insertion_code=" ", residue=1, segid="    ",
                        resname="LIG", altloc=" ", occupancy=1.0, bfactor=0.0, x=x, y=y,
                        z=z, element=e, name=n, fullname=fullname(n, e), serial_number=0)
                   for n, e, (x, y, z) in lig]
    return {"atoms_protein": frame(protein_rows), "atoms_pocket": frame(pocket_rows),
            "atoms_ligand": frame(ligand_rows), "id": rid, "seq": "SGK",
            "smiles": "NC(=O)Cl", "scores": {"neglog_aff": neglog_aff}}


def make_lba(root, bad: bool = False, corrupt: bool = False) -> Fixture:
    train = [lba_record("1abc", 6.25), lba_record("2xyz", 4.5)]
    if bad:
        train += _bad_records(lambda rid: lba_record(rid), "neglog_aff", atom_key="atoms_pocket")
        train.append(lba_record("after_bad", 7.0))
    splits = {"train": train, "val": [lba_record("3val", 5.0)], "test": [lba_record("4tst", 8.0)]}
    fx = _write_splits(root, "lba", splits,
                       {"train": (1,)} if corrupt else None)
    fx.notes = {"corrupt_index": 1 if corrupt else None}
    return fx


# ------------------------------------------------------------------------------------
# PSR / RSR
# ------------------------------------------------------------------------------------
def psr_record(target: str = "T0759", decoy: str = "server01_TS1", gdt_ts: float = 0.61) -> dict:
    """Three residues (MET with H, GLY, CYS) -> 5 + 4 + 6 heavy atoms; scores as a Series."""
    rid = str((target, decoy))
    rows = (residue_atoms("A", 1, "MET", (0, 0, 0), ensemble=decoy, with_h=True)
            + residue_atoms("A", 2, "GLY", (3.8, 0, 0), ensemble=decoy)
            + residue_atoms("A", 3, "CYS", (7.6, 0, 0), ensemble=decoy))
    scores = pd.Series({"rmsd": 3.2, "gdt_ts": gdt_ts, "gdt_ha": gdt_ts / 2, "tm": 0.7})
    return {"atoms": frame(rows), "id": rid, "scores": scores}


def rsr_record(target: str = "1a9n", decoy: str = "1a9n_rosetta_001", rms: float = 7.5) -> dict:
    """A 'nucleotide' like chain: atoms P, O5', C5', N1, H (H removed by the reader)."""
    atoms = [("P", "P", (0, 0, 0)), ("O5'", "O", (1.5, 0, 0)), ("C5'", "C", (2.3, 1.1, 0)),
             ("N1", "N", (3.5, 1.5, 0.5)), ("H5'", "H", (2.0, 2.0, 0.5))]
    rows = []
    for i, resname in enumerate(["G", "C"]):
        for n, e, (x, y, z) in atoms:
            rows.append(dict(ensemble=decoy, subunit=decoy, structure=decoy, model=1,
                             chain="A", hetero=" ", insertion_code=" ", residue=i + 1,
                             segid="    ", resname=resname, altloc=" ", occupancy=1.0,
                             bfactor=0.0, x=x + 6.0 * i, y=y, z=z, element=e, name=n,
                             fullname=fullname(n, e), serial_number=0))
    return {"atoms": frame(rows), "id": str((target, decoy)), "scores": {"rms": rms}}


def make_psr(root, bad: bool = False, corrupt: bool = False) -> Fixture:
    train = [psr_record("T0759", "server01_TS1", 0.61), psr_record("T0759", "server02_TS1", 0.35),
             psr_record("T0800", "server01_TS1", 0.80)]
    if bad:
        train += _bad_records(lambda d: psr_record("T0900", d), "gdt_ts")
        train.append(psr_record("T0901", "after_bad", 0.5))
    splits = {"train": train, "val": [psr_record("T0950", "s1", 0.2)],
              "test": [psr_record("T1000", "s1", 0.9)]}
    fx = _write_splits(root, "psr", splits, {"train": (2,)} if corrupt else None)
    fx.notes = {"corrupt_index": 2 if corrupt else None}
    return fx


def make_rsr(root, bad: bool = False, corrupt: bool = False) -> Fixture:
    train = [rsr_record("1a9n", "1a9n_rosetta_001", 7.5), rsr_record("1a9n", "1a9n_rosetta_002", 2.25)]
    if bad:
        train += _bad_records(lambda d: rsr_record("2bad", d), "rms")
    splits = {"train": train, "val": [rsr_record("3val", "d", 4.0)],
              "test": [rsr_record("4tst", "d", 9.0)]}
    return _write_splits(root, "rsr", splits, {"train": (0,)} if corrupt else None)


# ------------------------------------------------------------------------------------
# RES
# ------------------------------------------------------------------------------------
ATOM3D_RES_CODE = {"HIS": 0, "LYS": 1, "ARG": 2, "ASP": 3, "GLU": 4, "SER": 5, "THR": 6,
                   "ASN": 7, "GLN": 8, "ALA": 9, "VAL": 10, "LEU": 11, "ILE": 12, "MET": 13,
                   "PHE": 14, "TYR": 15, "TRP": 16, "PRO": 17, "GLY": 18, "CYS": 19}


def res_record(rid: str = "1res.pdb") -> tuple[dict, dict]:
    """Chain A: 1 ALA, 2 GLY, 3 SER (with H), 4 MSE (hetero), 5 LYS; chain B: 2 ALA.

    Environments (labels rows):
      0 ``A_2_GLY``: A1 + A2 backbone + A3 (with H) + B2 -> 5+4+6 heavy + 5 = 20 atoms,
        centre = A2's CA (B2's CA has the same residue number, other chain);
      1 ``A_3_SER``: A2 + A3 backbone (with H) -> centre A3 CA;
      2 ``A_4_MSE``: non-canonical -> skipped;
      3 ``A_5_LYS``: A5's CA not in the environment -> skipped (ca_not_unique);
      4 ``A_1_ALA``: A1 listed twice -> two C-alphas -> skipped (ca_not_unique).
    Returns (record, expected) where expected describes environments 0 and 1.
    """
    groups = {}
    rows: list[dict] = []

    def add(key, new_rows):
        groups[key] = list(range(len(rows), len(rows) + len(new_rows)))
        rows.extend(new_rows)

    add("A1", residue_atoms("A", 1, "ALA", (0, 0, 0), ensemble=rid))
    add("A2", residue_atoms("A", 2, "GLY", (3.8, 0, 0), ensemble=rid))
    add("A3", residue_atoms("A", 3, "SER", (7.6, 0, 0), ensemble=rid, with_h=True))
    add("A4", residue_atoms("A", 4, "MSE", (11.4, 0, 0), ensemble=rid, hetero="H_MSE"))
    add("A5", residue_atoms("A", 5, "LYS", (15.2, 0, 0), ensemble=rid))
    add("B2", residue_atoms("B", 2, "ALA", (3.8, 6.0, 0), ensemble=rid))
    atoms = frame(rows)
    bb = lambda key: groups[key][:4]  # noqa: E731  backbone N CA C O only
    env = [
        groups["A1"] + bb("A2") + groups["A3"] + groups["B2"],
        bb("A2") + groups["A3"][:4] + groups["A3"][6:],  # A3 backbone + its 2 H
        groups["A3"] + bb("A4") + groups["A5"],
        groups["A3"] + [i for i in groups["A5"] if rows[i]["name"] != "CA"],
        groups["A1"] + groups["A1"] + groups["A2"],
    ]
    subunits = ["A_2_GLY", "A_3_SER", "A_4_MSE", "A_5_LYS", "A_1_ALA"]
    label_rows = []
    for s in subunits:
        ch, num, name = s.split("_")
        ca = next(r for r in rows if r["chain"] == ch and r["residue"] == int(num) and r["name"] == "CA")
        label_rows.append({"subunit": s, "label": ATOM3D_RES_CODE.get(name, 20),
                           "x": ca["x"], "y": ca["y"], "z": ca["z"]})
    record = {"atoms": atoms, "labels": pd.DataFrame(label_rows), "subunit_indices": env,
              "id": rid}
    heavy0 = [i for i in env[0] if rows[i]["element"] != "H"]
    heavy1 = [i for i in env[1] if rows[i]["element"] != "H"]
    expected = {
        0: {"subunit": "A_2_GLY", "y": 7, "n": len(heavy0),
            "center": heavy0.index(groups["A2"][1]), "rows": heavy0},
        1: {"subunit": "A_3_SER", "y": 15, "n": len(heavy1),
            "center": heavy1.index(groups["A3"][1]), "rows": heavy1},
    }
    return record, expected


def make_res(root, bad: bool = False, corrupt: bool = False) -> Fixture:
    rec, expected = res_record("1res.pdb")
    recs = [rec, res_record("2res.pdb")[0], res_record("3res.pdb")[0]]
    if bad:
        nan, _ = res_record("bad_nan")
        nan["atoms"].loc[0, "x"] = np.nan  # A1's N: breaks envs 0 and 4 only
        empty, _ = res_record("bad_empty")
        empty["atoms"] = empty["atoms"].iloc[0:0].copy()
        empty["subunit_indices"] = [[] for _ in empty["subunit_indices"]]
        recs += [nan, empty]
    base = Path(root) / LAYOUTS["res"]
    path = write_lmdb(recs, base / "data", (1,) if corrupt else ())
    idx_dir = Path(root) / "indices"
    idx_dir.mkdir(parents=True, exist_ok=True)
    split_idx = {"train": [0] + list(range(3, len(recs))), "val": [1], "test": [2]}
    for split, ids in split_idx.items():
        (idx_dir / f"{split}_indices.txt").write_text("\n".join(map(str, ids)) + "\n")
    fx = Fixture(root=Path(root), paths={"data": path}, records={"data": recs})
    fx.notes = {"expected": expected, "indices": split_idx, "indices_dir": idx_dir}
    return fx


# ------------------------------------------------------------------------------------
# PPI
# ------------------------------------------------------------------------------------
def ppi_record(rid: str = "cplx.pdb1") -> tuple[dict, dict]:
    """Partner 0 (subunit ``<rid>_0``, chain A): 1 ALA, 2 SER (with H), 3 GLY at x=0..7.6,
    4 LYS far away (x=100). Partner 1 (``<rid>_1``, chain B): 1 ALA, 2 GLY, 3 CYS at y=8,
    4 PHE far away, 5 ALA without a CA atom.
    Positives: (A1,B1), (A2,B2), (A3,B5: no CA -> skipped). 4 x 4 usable residues, 14
    negative candidates, 2 negatives drawn."""
    s0, s1 = f"{rid}_0", f"{rid}_1"
    p0 = (chain_atoms("A", [(1, "ALA")], ensemble=rid, subunit=s0)
          + residue_atoms("A", 2, "SER", (3.8, 0, 0), ensemble=rid, subunit=s0, with_h=True)
          + residue_atoms("A", 3, "GLY", (7.6, 0, 0), ensemble=rid, subunit=s0)
          + residue_atoms("A", 4, "LYS", (100.0, 0, 0), ensemble=rid, subunit=s0))
    p1 = (chain_atoms("B", [(1, "ALA"), (2, "GLY"), (3, "CYS")], start=(0, 8.0, 0),
                      ensemble=rid, subunit=s1)
          + residue_atoms("B", 4, "PHE", (0, 108.0, 0), ensemble=rid, subunit=s1)
          + residue_atoms("B", 5, "ALA", (3.8, 12.0, 0), ensemble=rid, subunit=s1, skip=("CA",)))
    pairs = frame(p0 + p1)
    nb = []
    for (c0, r0), (c1, r1) in [(("A", 1), ("B", 1)), (("A", 2), ("B", 2)), (("A", 3), ("B", 5))]:
        nb.append({"ensemble0": rid, "subunit0": s0, "structure0": rid, "model0": 1,
                   "chain0": c0, "residue0": r0, "ensemble1": rid, "subunit1": s1,
                   "structure1": rid, "model1": 1, "chain1": c1, "residue1": r1})
    record = {"atoms_pairs": pairs, "atoms_neighbors": pd.DataFrame(nb), "id": rid}
    # heavy atoms per residue: A1 ALA 5, A2 SER 6 (+2 H), A3 GLY 4, A4 LYS 7 (far)
    expected = {
        "positives": [(("A", 1), ("B", 1)), (("A", 2), ("B", 2))],
        "skipped_positive": (("A", 3), ("B", 5)),
        "usable0": [("A", 1), ("A", 2), ("A", 3), ("A", 4)],
        "usable1": [("B", 1), ("B", 2), ("B", 3), ("B", 4)],
        "env_atoms0": {1: 15, 2: 15, 3: 15, 4: 7},   # A1..A3 within 30 A of each other
        "env_atoms1": {1: 19, 2: 19, 3: 19, 4: 6},    # B1(5)+B2(4)+B3(6)+B5(4, no CA)
        "center0": {1: 1, 2: 6, 3: 12, 4: 1},
        "center1": {1: 1, 2: 6, 3: 10, 4: 1},
    }
    return record, expected


def many_pairs_record(rid: str, n0: int = 8, n1: int = 9, positives=None) -> dict:
    """A complex with `n0` ALA residues in chain A (partner 0) and `n1` in chain B (partner 1),
    and the listed neighbour pairs `positives` [(residue of A, residue of B)] (1-based numbers;
    default: the first 12 pairs (i, i) and (i, i + 1))."""
    s0, s1 = f"{rid}_0", f"{rid}_1"
    p0 = chain_atoms("A", [(i, "ALA") for i in range(1, n0 + 1)], ensemble=rid, subunit=s0)
    p1 = chain_atoms("B", [(i, "ALA") for i in range(1, n1 + 1)], start=(0, 8.0, 0), ensemble=rid, subunit=s1)
    if positives is None:
        positives = ([(i, i) for i in range(1, min(n0, n1) + 1)] + [(i, i + 1) for i in range(1, min(n0, n1 - 1) + 1)])[:12]
    nb = [{"ensemble0": rid, "subunit0": s0, "structure0": rid, "model0": 1, "chain0": "A", "residue0": a,
           "ensemble1": rid, "subunit1": s1, "structure1": rid, "model1": 1, "chain1": "B", "residue1": b}
          for a, b in positives]
    return {"atoms_pairs": frame(p0 + p1), "atoms_neighbors": pd.DataFrame(nb), "id": rid}


def make_ppi(root, bad: bool = False, corrupt: bool = False) -> Fixture:
    rec, expected = ppi_record("cplx.pdb1")
    train = [rec, ppi_record("cplx2.pdb1")[0]]
    if bad:
        nan, _ = ppi_record("bad_nan")
        nan["atoms_pairs"].loc[0, "y"] = np.nan
        empty, _ = ppi_record("bad_empty")
        empty["atoms_pairs"] = empty["atoms_pairs"].iloc[0:0].copy()
        train += [nan, empty, ppi_record("after_bad")[0]]
    splits = {"train": train, "val": [ppi_record("v.pdb1")[0]], "test": [ppi_record("t.pdb1")[0]]}
    fx = _write_splits(root, "ppi", splits, {"train": (1,)} if corrupt else None)
    fx.notes = {"expected": expected}
    return fx


BUILDERS = {"lba": make_lba, "psr": make_psr, "rsr": make_rsr, "res": make_res, "ppi": make_ppi}


def make_dataset(task: str, root, **kw) -> Fixture:
    return BUILDERS[task](root, **kw)
