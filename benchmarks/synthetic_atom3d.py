"""Synthetic ATOM3D datasets of realistic size, in the real on-disk format.

Records are written with atom3d's own ``atom3d.datasets.make_lmdb_dataset`` (gzip-compressed
JSON, DataFrames serialised by atom3d) into the directory layout of the Zenodo archives (the
same layouts as ``tests/atom3d_fixtures.py``):

* PSR: ``<root>/split-by-year/data/{train,val,test}``, one record per decoy:
  ``atoms`` (DataFrame with atom3d's 20 columns), ``id`` = ``"('T0xxx', 'decoy_k')"``,
  ``scores`` (pandas Series ``rmsd, gdt_ts, gdt_ha, tm``), ``file_path``.
* RES: one LMDB ``<root>/raw/RES/data`` plus ``<root>/indices/{train,val,test}_indices.txt``;
  each record is one protein (``atoms``) with many labelled environments: ``labels``
  (DataFrame ``subunit`` = ``"chain_resnum_resname"``, ``label`` = atom3d's integer code,
  ``x, y, z`` of the central C-alpha) and ``subunit_indices`` (row positions into ``atoms``
  of each environment: all atoms within ``env_radius`` of the central C-alpha, the central
  residue's side chain removed, its backbone kept).

Proteins: a self-avoiding-ish random walk of C-alphas (3.8 A steps) confined to a sphere
whose radius gives the requested atom density (default 0.05 atoms/A^3, that of proteins),
with backbone N, CA, C, O and the residue's real side-chain atom names (CB, CG, OD1, ...)
placed around each C-alpha, plus H and HA hydrogens on a fraction of residues. The
coordinates are not chemistry, but atom counts, names, elements, neighbour counts at
4.5 A (~20 per heavy atom) and record sizes on disk are those of real decoys.

Usage::

    python benchmarks/synthetic_atom3d.py psr --records 400 --out /tmp/a3d/psr
    python benchmarks/synthetic_atom3d.py res --records 100 --envs 40 --out /tmp/a3d/res

Everything depends only on ``--seed`` (record k uses ``default_rng([seed, k])``).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ATOM_COLUMNS = [
    "ensemble", "subunit", "structure", "model", "chain", "hetero", "insertion_code",
    "residue", "segid", "resname", "altloc", "occupancy", "bfactor", "x", "y", "z",
    "element", "name", "fullname", "serial_number",
]
PSR_LAYOUT = "split-by-year"
RES_LAYOUT = "raw/RES"
SPLITS = ("train", "val", "test")

BACKBONE = ("N", "CA", "C", "O")
SIDECHAINS = {
    "GLY": (), "ALA": ("CB",), "SER": ("CB", "OG"), "CYS": ("CB", "SG"),
    "VAL": ("CB", "CG1", "CG2"), "THR": ("CB", "OG1", "CG2"), "PRO": ("CB", "CG", "CD"),
    "LEU": ("CB", "CG", "CD1", "CD2"), "ILE": ("CB", "CG1", "CG2", "CD1"),
    "ASN": ("CB", "CG", "OD1", "ND2"), "ASP": ("CB", "CG", "OD1", "OD2"),
    "MET": ("CB", "CG", "SD", "CE"), "GLN": ("CB", "CG", "CD", "OE1", "NE2"),
    "GLU": ("CB", "CG", "CD", "OE1", "OE2"), "LYS": ("CB", "CG", "CD", "CE", "NZ"),
    "HIS": ("CB", "CG", "ND1", "CD2", "CE1", "NE2"),
    "PHE": ("CB", "CG", "CD1", "CD2", "CE1", "CE2", "CZ"),
    "ARG": ("CB", "CG", "CD", "NE", "CZ", "NH1", "NH2"),
    "TYR": ("CB", "CG", "CD1", "CD2", "CE1", "CE2", "CZ", "OH"),
    "TRP": ("CB", "CG", "CD1", "CD2", "NE1", "CE2", "CE3", "CZ2", "CZ3", "CH2"),
}
# rough natural abundances (percent)
ABUNDANCE = {
    "ALA": 8.3, "ARG": 5.5, "ASN": 4.1, "ASP": 5.5, "CYS": 1.4, "GLN": 3.9, "GLU": 6.7,
    "GLY": 7.1, "HIS": 2.3, "ILE": 5.9, "LEU": 9.7, "LYS": 5.8, "MET": 2.4, "PHE": 3.9,
    "PRO": 4.7, "SER": 6.6, "THR": 5.4, "TRP": 1.1, "TYR": 2.9, "VAL": 6.9,
}
RESNAMES = tuple(sorted(ABUNDANCE))
_P = np.array([ABUNDANCE[r] for r in RESNAMES])
_P = _P / _P.sum()
HEAVY_PER_RESIDUE = float(sum(p * (4 + len(SIDECHAINS[r])) for r, p in zip(RESNAMES, _P)))
# atom3d's own RES label coding (examples/res)
ATOM3D_RES_CODE = {r: i for i, r in enumerate((
    "HIS", "LYS", "ARG", "ASP", "GLU", "SER", "THR", "ASN", "GLN", "ALA",
    "VAL", "LEU", "ILE", "MET", "PHE", "TYR", "TRP", "PRO", "GLY", "CYS"))}


def _element(name: str) -> str:
    return name[0]


def _fullname(name: str) -> str:
    return f" {name:<3}" if len(name) < 4 else f"{name:<4}"


def _unit(rng, n):
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def ca_walk(rng, n_res: int, radius: float, step: float = 3.8, tries: int = 12) -> np.ndarray:
    """C-alpha trace: a random walk with `step` A steps, kept inside a sphere of `radius`
    (half of the candidate steps are biased towards the centre), taking the first candidate
    at >= 3.8 A from the earlier C-alphas, else the one farthest from them."""
    ca = np.zeros((n_res, 3))
    ca[0] = _unit(rng, 1)[0] * radius * 0.5 * rng.random()
    dirs = _unit(rng, n_res * tries).reshape(n_res, tries, 3)
    half = tries // 2
    for i in range(1, n_res):
        prev = ca[i - 1]
        d = dirs[i].copy()
        d[half:] -= 0.5 * prev / (np.sqrt(prev @ prev) + 1e-9)
        d /= np.sqrt((d * d).sum(1))[:, None]
        cand = prev + step * d
        inside = (cand * cand).sum(1) <= radius * radius
        if not inside.any():  # step straight towards the centre
            ca[i] = prev - step * prev / (np.sqrt(prev @ prev) + 1e-9)
            continue
        cand = cand[inside]
        if i > 1:
            old = ca[max(0, i - 200):i - 1]
            dmin = np.sqrt(((cand[:, None, :] - old[None]) ** 2).sum(-1).min(1))
            ok = np.flatnonzero(dmin >= 3.8)
            ca[i] = cand[ok[0]] if ok.size else cand[np.argmax(dmin)]
        else:
            ca[i] = cand[0]
    return ca


def protein_atoms(rng, n_res: int, *, density: float = 0.05, h_fraction: float = 0.3,
                  ensemble: str = "prot.pdb", chains: tuple[str, ...] = ("A",)) -> tuple[pd.DataFrame, dict]:
    """Atom table of a synthetic protein of `n_res` residues in atom3d's columns.

    Returns (atoms, info) with info: ``resnames``, ``chain``, ``resnum`` per residue,
    ``ca_row`` (row of each C-alpha), ``residue_rows`` (list of row arrays per residue).
    """
    res_k = rng.choice(len(RESNAMES), size=n_res, p=_P)
    resnames = [RESNAMES[r] for r in res_k]
    nside = np.array([len(SIDECHAINS[r]) for r in resnames])
    n_heavy = int(4 * n_res + nside.sum())
    radius = (3.0 * n_heavy / (4.0 * np.pi * density)) ** (1.0 / 3.0)
    ca = ca_walk(rng, n_res, radius)
    with_h = rng.random(n_res) < h_fraction
    # all positions per residue slot: 0 N, 1 CA, 2 C, 3 O, 4..13 side chain, 14 H, 15 HA
    u = _unit(rng, n_res * 16).reshape(n_res, 16, 3)
    slot = np.zeros((n_res, 16, 3))
    slot[:, 1] = ca
    slot[:, 0] = ca + 1.46 * u[:, 0]
    slot[:, 2] = ca + 1.52 * u[:, 1]
    slot[:, 3] = slot[:, 2] + 1.23 * u[:, 2]
    out = ca / (np.linalg.norm(ca, axis=1, keepdims=True) + 1e-9)
    side = u[:, 3] + 0.6 * out
    side /= np.linalg.norm(side, axis=1, keepdims=True)
    prev = ca
    for k in range(10):
        d = side + 0.55 * u[:, 4 + k]
        prev = prev + 1.5 * d / np.linalg.norm(d, axis=1, keepdims=True)
        slot[:, 4 + k] = prev
    slot[:, 14] = slot[:, 0] + 1.01 * u[:, 14]
    slot[:, 15] = ca + 1.09 * u[:, 15]
    per_chain = int(np.ceil(n_res / len(chains)))
    res_i, slot_i, names = [], [], []
    for i, rn in enumerate(resnames):
        nm = list(BACKBONE) + list(SIDECHAINS[rn])
        sl = list(range(4 + len(SIDECHAINS[rn])))
        if with_h[i]:
            nm += ["H", "HA"]
            sl += [14, 15]
        names += nm
        slot_i += sl
        res_i += [i] * len(nm)
    res_i = np.asarray(res_i)
    xyz = np.round(slot[res_i, np.asarray(slot_i)], 3)
    n = len(names)
    chain_of_res = np.array([chains[min(i // per_chain, len(chains) - 1)] for i in range(n_res)], dtype=object)
    resnum_of_res = np.arange(n_res) % per_chain + 1
    starts = np.zeros(n_res + 1, np.int64)
    np.cumsum(np.bincount(res_i, minlength=n_res), out=starts[1:])
    info = {"resnames": resnames, "chain": chain_of_res.tolist(), "resnum": resnum_of_res.tolist(),
            "ca_row": (starts[:-1] + 1).tolist(),
            "residue_rows": [np.arange(starts[i], starts[i + 1]) for i in range(n_res)]}
    df = pd.DataFrame({
        "ensemble": [ensemble] * n, "subunit": [ensemble] * n, "structure": [ensemble] * n,
        "model": np.ones(n, np.int64), "chain": chain_of_res[res_i], "hetero": [" "] * n,
        "insertion_code": [" "] * n, "residue": resnum_of_res[res_i].astype(np.int64),
        "segid": ["    "] * n, "resname": np.asarray(resnames, dtype=object)[res_i], "altloc": [" "] * n,
        "occupancy": np.ones(n), "bfactor": np.round(rng.uniform(10, 80, n), 2),
        "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2], "element": [_element(s) for s in names],
        "name": names, "fullname": [_fullname(s) for s in names], "serial_number": np.arange(1, n + 1),
    }, columns=ATOM_COLUMNS)
    return df, info


class _LazyRecords:
    """A sequence that makes record k on demand, so writing never holds the whole dataset."""

    def __init__(self, make, indices):
        self.make, self.indices = make, list(indices)

    def __len__(self):
        return len(self.indices)

    def __iter__(self):
        for k in self.indices:
            yield self.make(k)


def _write(records, path: Path) -> Path:
    import logging

    from atom3d.datasets import make_lmdb_dataset

    logging.getLogger("atom3d").setLevel(logging.WARNING)
    path.mkdir(parents=True, exist_ok=True)
    if (path / "data.mdb").exists():
        raise FileExistsError(f"{path} already holds an LMDB")
    devnull = open(os.devnull, "w")  # atom3d's writer prints a tqdm bar
    old, sys.stderr = sys.stderr, devnull
    try:
        make_lmdb_dataset(records, str(path))
    finally:
        sys.stderr = old
        devnull.close()
    return path


def split_counts(n: int, fractions=(0.8, 0.1, 0.1)) -> dict[str, int]:
    n_val = max(1, int(round(n * fractions[1])))
    n_test = max(1, int(round(n * fractions[2])))
    return {"train": max(1, n - n_val - n_test), "val": n_val, "test": n_test}


# ------------------------------------------------------------------------------------
# PSR
# ------------------------------------------------------------------------------------
def psr_record(k: int, seed: int = 0, min_heavy: int = 1000, max_heavy: int = 2000,
               decoys_per_target: int = 20, h_fraction: float = 0.3, density: float = 0.05) -> dict:
    rng = np.random.default_rng([seed, k])
    target = f"T0{700 + k // decoys_per_target:03d}"
    decoy = f"decoy_{k % decoys_per_target}"
    n_heavy = int(rng.integers(min_heavy, max_heavy + 1))
    n_res = max(1, int(round(n_heavy / HEAVY_PER_RESIDUE)))
    atoms, _ = protein_atoms(rng, n_res, density=density, h_fraction=h_fraction,
                             ensemble=f"{target}/{decoy}.pdb")
    gdt = float(np.round(rng.uniform(0.1, 0.95), 4))
    scores = pd.Series({"rmsd": float(np.round(20 * (1 - gdt) + rng.uniform(0, 2), 3)),
                        "gdt_ts": gdt, "gdt_ha": float(np.round(gdt * 0.7, 4)),
                        "tm": float(np.round(min(1.0, gdt + 0.1), 4))})
    return {"atoms": atoms, "id": str((target, decoy)), "scores": scores,
            "file_path": f"/casp/{target}/{decoy}.pdb"}


def make_psr(root, records: int = 400, seed: int = 0, **kw) -> dict[str, Path]:
    """Write a synthetic PSR download under `root`; returns the LMDB path of each split."""
    root = Path(root)
    counts = split_counts(records)
    paths, start = {}, 0
    for split in SPLITS:
        idx = range(start, start + counts[split])
        start += counts[split]
        paths[split] = _write(_LazyRecords(lambda k: psr_record(k, seed, **kw), idx),
                              root / PSR_LAYOUT / "data" / split)
    return paths


# ------------------------------------------------------------------------------------
# RES
# ------------------------------------------------------------------------------------
BACKBONE_SET = frozenset(BACKBONE)


def res_record(k: int, seed: int = 0, envs: int = 40, min_res: int = 150, max_res: int = 300,
               env_radius: float = 10.0, h_fraction: float = 0.3, density: float = 0.05) -> dict:
    rng = np.random.default_rng([seed, 1_000_003 + k])
    rid = f"{k:04d}.pdb"
    n_res = int(rng.integers(min_res, max_res + 1))
    atoms, info = protein_atoms(rng, n_res, density=density, h_fraction=h_fraction,
                                ensemble=rid, chains=("A", "B"))
    xyz = atoms[["x", "y", "z"]].to_numpy()
    names = atoms["name"].to_numpy()
    centres = np.sort(rng.choice(n_res, size=min(envs, n_res), replace=False))
    label_rows, subunit_indices = [], []
    for r in centres:
        ca = xyz[info["ca_row"][r]]
        near = np.flatnonzero(np.sum((xyz - ca) ** 2, axis=1) <= env_radius ** 2)
        own = info["residue_rows"][r]
        drop = own[~np.isin(names[own], list(BACKBONE_SET))]  # central side chain (and H)
        env = near[~np.isin(near, drop)]
        rn = info["resnames"][r]
        subunit_indices.append(env.tolist())
        label_rows.append({"subunit": f"{info['chain'][r]}_{info['resnum'][r]}_{rn}",
                           "label": ATOM3D_RES_CODE[rn], "x": float(ca[0]), "y": float(ca[1]),
                           "z": float(ca[2])})
    return {"atoms": atoms, "labels": pd.DataFrame(label_rows), "subunit_indices": subunit_indices,
            "id": rid, "file_path": f"/pdb/{rid}"}


def make_res(root, records: int = 100, seed: int = 0, **kw) -> dict:
    """Write a synthetic RES download (raw LMDB + split index files) under `root`."""
    root = Path(root)
    path = _write(_LazyRecords(lambda k: res_record(k, seed, **kw), range(records)),
                  root / RES_LAYOUT / "data")
    counts = split_counts(records)
    perm = np.random.default_rng([seed, 7]).permutation(records)
    idx_dir = root / "indices"
    idx_dir.mkdir(parents=True, exist_ok=True)
    split_idx, start = {}, 0
    for split in SPLITS:
        split_idx[split] = np.sort(perm[start:start + counts[split]])
        start += counts[split]
        (idx_dir / f"{split}_indices.txt").write_text("\n".join(map(str, split_idx[split])) + "\n")
    return {"data": path, "indices": split_idx}


def describe(task: str, root) -> str:
    """Atoms per record and environment, neighbours per heavy atom at 4.5 A, bytes per record."""
    from scipy.spatial import cKDTree

    root = Path(root)
    lmdb_dir = root / PSR_LAYOUT / "data" / "train" if task == "psr" else root / RES_LAYOUT / "data"
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from preprocess.readers.lmdb_records import num_records, read_record

    n = num_records(lmdb_dir)
    size = sum(f.stat().st_size for f in lmdb_dir.iterdir())
    heavy, allat, deg, envs, env_atoms = [], [], [], [], []
    for i in range(min(n, 10)):
        rec = read_record(lmdb_dir, i)
        a = rec["atoms"]
        h = a[a["element"] != "H"]
        allat.append(len(a))
        heavy.append(len(h))
        p = h[["x", "y", "z"]].to_numpy()
        deg.append(2 * len(cKDTree(p).query_pairs(4.5)) / len(p))
        if task == "res":
            envs.append(len(rec["subunit_indices"]))
            env_atoms += [len(e) for e in rec["subunit_indices"]]
    out = (f"{task}: {n} records in {lmdb_dir} ({size / 2**20:.1f} MiB on disk incl. LMDB slack); "
           f"first {len(heavy)}: atoms {np.mean(allat):.0f} (heavy {np.mean(heavy):.0f}), "
           f"neighbours per heavy atom at 4.5 A {np.mean(deg):.1f}")
    if task == "res":
        out += f", environments/record {np.mean(envs):.1f}, atoms/environment {np.mean(env_atoms):.0f}"
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("task", choices=("psr", "res"))
    ap.add_argument("--out", required=True, help="dataset root (the extracted-download folder)")
    ap.add_argument("--records", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--h-fraction", type=float, default=0.3, help="residues carrying H and HA")
    ap.add_argument("--density", type=float, default=0.05, help="heavy atoms per A^3")
    ap.add_argument("--min-heavy", type=int, default=1000, help="PSR: heavy atoms per decoy, min")
    ap.add_argument("--max-heavy", type=int, default=2000, help="PSR: heavy atoms per decoy, max")
    ap.add_argument("--envs", type=int, default=40, help="RES: environments per record")
    ap.add_argument("--min-res", type=int, default=150, help="RES: residues per protein, min")
    ap.add_argument("--max-res", type=int, default=300, help="RES: residues per protein, max")
    ap.add_argument("--env-radius", type=float, default=10.0, help="RES: environment radius (A)")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    common = dict(h_fraction=a.h_fraction, density=a.density)
    if a.task == "psr":
        make_psr(a.out, a.records, a.seed, min_heavy=a.min_heavy, max_heavy=a.max_heavy, **common)
    else:
        make_res(a.out, a.records, a.seed, envs=a.envs, min_res=a.min_res, max_res=a.max_res,
                 env_radius=a.env_radius, **common)
    print(f"wrote {a.records} {a.task} records in {time.perf_counter() - t0:.1f} s")
    print(describe(a.task, a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
