"""A folder of crops of real protein chains with a label the architecture can learn.

The chains are the 52 PDB files that MDAnalysisTests ships for its DSSP tests
(``MDAnalysisTests/data/dssp/*.pdb.gz``; ``pip install MDAnalysisTests``, in the ``test``
extra). Each crop keeps the protein heavy atoms within a radius (drawn from `radius`) of a
randomly chosen C-alpha, and is written as PDB, gzipped PDB or mmCIF. Its label is the crop's
radius of gyration with an arbitrary scale and offset (``OFFSET + SCALE * Rg``), as users'
labels come in any unit; the radius of gyration of a sphere cut from a protein follows from
how many of its atoms sit at the cut, which an equivariant network sees.

``python tests/real_structures.py OUT_DIR --n 200 --seed 0`` writes the folder and
``OUT_DIR/labels.csv``.
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
from pathlib import Path

import gemmi
import numpy as np

#: the label's unit: OFFSET + SCALE * radius of gyration (Å)
OFFSET, SCALE = 300.0, 4.0
FORMATS = (".pdb", ".pdb.gz", ".cif")


def source_chains() -> list[Path]:
    """The real protein chains MDAnalysisTests ships (a clear error when it is not installed)."""
    spec = importlib.util.find_spec("MDAnalysisTests")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the real-structure data need MDAnalysisTests: pip install -e '.[test]'")
    folder = Path(list(spec.submodule_search_locations)[0]) / "data" / "dssp"
    files = sorted(folder.glob("*.pdb.gz"))
    if not files:
        raise FileNotFoundError(f"no PDB files in {folder}")
    return files


def _protein(path: Path) -> gemmi.Structure:
    st = gemmi.read_structure(str(path))
    st.setup_entities()
    st.remove_alternative_conformations()
    st.remove_hydrogens()
    st.remove_ligands_and_waters()
    st.remove_empty_chains()
    while len(st) > 1:
        del st[1]
    return st


def crop(st: gemmi.Structure, centre: np.ndarray, radius: float) -> tuple[gemmi.Structure, np.ndarray]:
    """The structure's heavy atoms within `radius` of `centre`, and their positions."""
    out = st.clone()
    kept = []
    for chain in out[0]:
        for residue in chain:
            for i in reversed(range(len(residue))):
                p = residue[i].pos
                xyz = np.array([p.x, p.y, p.z])
                if np.sum((xyz - centre) ** 2) > radius ** 2:
                    del residue[i]
                else:
                    kept.append(xyz)
    out.remove_empty_chains()
    for chain in out[0]:
        for j in reversed(range(len(chain))):
            if len(chain[j]) == 0:
                del chain[j]
    out.remove_empty_chains()
    return out, np.array(kept)


def radius_of_gyration(pos: np.ndarray) -> float:
    return float(np.sqrt(((pos - pos.mean(axis=0)) ** 2).sum(axis=1).mean()))


def _write(st: gemmi.Structure, path: Path) -> None:
    if path.name.endswith(".cif"):
        st.make_mmcif_document().write_file(str(path))
    else:
        text = st.make_pdb_string()
        path.write_bytes(gemmi_gzip(text) if path.name.endswith(".gz") else text.encode())


def gemmi_gzip(text: str) -> bytes:
    import gzip

    return gzip.compress(text.encode(), mtime=0)


def write_crops(folder: str | Path, n: int, seed: int = 0, radius: tuple[float, float] = (6.0, 12.0),
                min_atoms: int = 20) -> Path:
    """`n` crops under `folder` and ``folder/labels.csv`` (file,label); returns the CSV path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    chains = [_protein(p) for p in source_chains()]
    names = [p.name.split(".")[0] for p in source_chains()]
    rows = []
    while len(rows) < n:
        k = int(rng.integers(len(chains)))
        st = chains[k]
        cas = [np.array([a.pos.x, a.pos.y, a.pos.z]) for ch in st[0] for r in ch for a in r if a.name == "CA"]
        centre = cas[int(rng.integers(len(cas)))]
        piece, pos = crop(st, centre, float(rng.uniform(*radius)))
        if len(pos) < min_atoms:
            continue
        name = f"{names[k]}_{len(rows):04d}{FORMATS[len(rows) % len(FORMATS)]}"
        _write(piece, folder / name)
        rows.append([name, f"{OFFSET + SCALE * radius_of_gyration(pos):.4f}"])
    labels = folder / "labels.csv"
    with open(labels, "w", newline="") as fh:
        csv.writer(fh).writerows([["file", "label"], *rows])
    return labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="folder to write (labels.csv inside)")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--radius", type=float, nargs=2, default=(6.0, 12.0), help="crop radii (Å), drawn uniformly")
    args = parser.parse_args()
    print(write_crops(args.out, args.n, args.seed, tuple(args.radius)))


if __name__ == "__main__":
    main()
