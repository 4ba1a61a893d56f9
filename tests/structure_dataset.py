"""A small learnable dataset of users' structures, written with gemmi: random molecules of
carbon, nitrogen and oxygen atoms, labelled by their share of oxygen atoms (regression) or by
whether oxygen outnumbers nitrogen (classification): something a model sees through its
element embeddings and mean pooling within a few epochs."""
from __future__ import annotations

import csv
from pathlib import Path

import gemmi
import numpy as np

from structure_fixtures import structure_bytes

ELEMENTS = ("C", "N", "O")


def molecule(rng: np.random.Generator, n_atoms: int, weights) -> tuple[gemmi.Structure, np.ndarray]:
    """One chain of single-atom HETATM residues on a jittered grid (no two atoms closer than ~1.3 Å)."""
    st = gemmi.Structure()
    st.name = "MOL"
    model = gemmi.Model("1")
    chain = gemmi.Chain("A")
    symbols = rng.choice(ELEMENTS, size=n_atoms, p=weights)
    grid = np.stack(np.meshgrid(*[np.arange(4)] * 3, indexing="ij"), -1).reshape(-1, 3) * 1.6
    pos = grid[rng.choice(len(grid), size=n_atoms, replace=False)] + rng.uniform(-0.15, 0.15, (n_atoms, 3))
    for k, (symbol, xyz) in enumerate(zip(symbols, pos), start=1):
        res = gemmi.Residue()
        res.name, res.seqid, res.het_flag = "MOL", gemmi.SeqId(k, " "), "H"
        atom = gemmi.Atom()
        atom.name, atom.element = f"{symbol}{k}", gemmi.Element(symbol)
        atom.pos, atom.occ, atom.b_iso = gemmi.Position(*np.round(xyz, 3)), 1.0, 20.0
        res.add_atom(atom)
        chain.add_residue(res)
    model.add_chain(chain)
    st.add_model(model)
    st.setup_entities()
    return st, symbols


def write_dataset(folder: Path, n: int, seed: int = 0, kind: str = "regression") -> Path:
    """`n` molecules as .pdb / .cif.gz / .ent files under `folder` and its sub-folder, and
    `folder/labels.csv`; returns the CSV path."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        share_o, share_n = rng.uniform(0.05, 0.45, size=2)
        st, symbols = molecule(rng, int(rng.integers(12, 30)), [1 - share_o - share_n, share_n, share_o])
        name = ("sub/" if i % 5 == 0 else "") + f"mol{i:03d}" + (".pdb", ".cif.gz", ".ent")[i % 3]
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(structure_bytes(st, name))
        o, nn = int((symbols == "O").sum()), int((symbols == "N").sum())
        label = f"{o / len(symbols):.4f}" if kind == "regression" else ("oxygen" if o > nn else "nitrogen")
        rows.append([name, label])
    labels = folder / "labels.csv"
    with open(labels, "w", newline="") as fh:
        csv.writer(fh).writerows([["file", "label"], *rows])
    return labels
