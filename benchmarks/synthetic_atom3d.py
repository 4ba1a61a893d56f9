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

The records themselves (proteins of realistic size and atom names) come from
:mod:`preprocess.synthetic`.

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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from preprocess.synthetic import (  # noqa: E402, F401  (the record makers, re-exported)
    ATOM_COLUMNS, HEAVY_PER_RESIDUE, RESNAMES, SIDECHAINS, ca_walk, ppi_record, protein_atoms, psr_record, res_record,
)

PSR_LAYOUT = "split-by-year"
RES_LAYOUT = "raw/RES"
SPLITS = ("train", "val", "test")


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
