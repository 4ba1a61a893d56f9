"""Synthetic ATOM3D records of realistic size, as atom3d's readers yield them (decoded: atom
tables as pandas DataFrames), for benchmarks and ``python -m eqgat gpu-check``.

Proteins: a self-avoiding-ish random walk of C-alphas (3.8 A steps) confined to a sphere
whose radius gives the requested atom density (default 0.05 atoms/A^3, that of proteins),
with backbone N, CA, C, O and the residue's real side-chain atom names (CB, CG, OD1, ...)
placed around each C-alpha, plus H and HA hydrogens on a fraction of residues. The
coordinates are not chemistry, but atom counts, names, elements, neighbour counts at
4.5 A (~20 per heavy atom) and record sizes on disk are those of real structures.

* :func:`psr_record`: one PSR decoy (``atoms``, ``id`` = ``"('T0xxx', 'decoy_k')"``, ``scores``).
* :func:`res_record`: one RES protein with labelled environments (``labels``, ``subunit_indices``).
* :func:`ppi_record`: one PPI complex: two proteins side by side (``atoms_pairs``) and their
  residue pairs with C-alphas within ``contact`` A (``atoms_neighbors``).

Every record depends only on (seed, k). ``benchmarks/synthetic_atom3d.py`` writes them as
LMDB datasets with atom3d's writer.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .spec import Source

ATOM_COLUMNS = [
    "ensemble", "subunit", "structure", "model", "chain", "hetero", "insertion_code",
    "residue", "segid", "resname", "altloc", "occupancy", "bfactor", "x", "y", "z",
    "element", "name", "fullname", "serial_number",
]

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



def ppi_record(k: int, seed: int = 0, min_res: int = 150, max_res: int = 300, contact: float = 8.0,
               gap: float = 4.0, h_fraction: float = 0.3, density: float = 0.05) -> dict:
    """A complex of two synthetic proteins side by side along x, their closest C-alphas about
    `gap` + 2 A apart; the listed neighbours are the residue pairs across the two whose C-alphas
    are within `contact` A."""
    rng = np.random.default_rng([seed, 2_000_003 + k])
    rid = f"c{k:05d}.pdb"
    tables, cas = [], []
    for side in (0, 1):
        n_res = int(rng.integers(min_res, max_res + 1))
        atoms, info = protein_atoms(rng, n_res, density=density, h_fraction=h_fraction, ensemble=rid,
                                    chains=("A",) if side == 0 else ("B",))
        atoms["subunit"] = f"{rid}_{side}"
        tables.append(atoms)
        cas.append(info)
    ca0 = tables[0][["x", "y", "z"]].to_numpy()[cas[0]["ca_row"]]
    ca1 = tables[1][["x", "y", "z"]].to_numpy()[cas[1]["ca_row"]]
    # slide partner 1 along x towards partner 0 until their closest C-alphas are `gap` + 2 A apart
    shift = float(ca0[:, 0].max() - ca1[:, 0].min()) + contact
    while shift > 0:
        moved = ca1 + [shift - 0.5, 0.0, 0.0]
        if np.sqrt(np.sum((ca0[:, None, :] - moved[None]) ** 2, axis=-1).min()) < gap + 2.0:
            break
        shift -= 0.5
    tables[1]["x"] = np.round(tables[1]["x"] + shift, 3)
    ca1 = ca1 + [shift, 0.0, 0.0]
    close = np.argwhere(np.sum((ca0[:, None, :] - ca1[None]) ** 2, axis=-1) <= contact ** 2)
    if len(close) == 0:  # always one contact: the closest C-alpha pair
        d = np.sum((ca0[:, None, :] - ca1[None]) ** 2, axis=-1)
        close = np.array([np.unravel_index(np.argmin(d), d.shape)])
    neighbors = pd.DataFrame({
        "ensemble0": rid, "subunit0": f"{rid}_0", "structure0": rid, "model0": 1,
        "chain0": [cas[0]["chain"][i] for i in close[:, 0]], "residue0": [cas[0]["resnum"][i] for i in close[:, 0]],
        "ensemble1": rid, "subunit1": f"{rid}_1", "structure1": rid, "model1": 1,
        "chain1": [cas[1]["chain"][j] for j in close[:, 1]], "residue1": [cas[1]["resnum"][j] for j in close[:, 1]],
    })
    return {"atoms_pairs": pd.concat(tables, ignore_index=True), "atoms_neighbors": neighbors, "id": rid}


class SyntheticSource(Source):
    """Synthetic records as a task's shard source (a :class:`preprocess.spec.Source`):
    ``counts[split]`` records per split, record k made by ``make(k)`` when its shard is built,
    numbered across the splits in train, val, test order."""

    kind = "generated"

    def __init__(self, make, counts):
        self.make, self.counts = make, dict(counts)

    def shard_tasks(self, location, shard_size: int, options=None) -> list:
        from .build import SPLIT_ORDER, ShardTask, shard_relpath

        if shard_size < 1:
            raise ValueError("shard_size must be >= 1")
        tasks, first = [], 0
        for split in SPLIT_ORDER:
            n = int(self.counts.get(split, 0))
            for k, start in enumerate(range(first, first + n, shard_size)):
                tasks.append(ShardTask(split, k, shard_relpath(split, k), (start, min(first + n, start + shard_size))))
            first += n
        return tasks

    def records(self, payload, report, strict: bool):
        """``(k, record)`` for the record numbers of one shard task."""
        for k in range(*payload):
            yield k, self.make(k)
