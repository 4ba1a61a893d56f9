"""PPI: protein interface prediction (does residue r0 of partner 0 touch r1 of partner 1?).

Record (DIPS-split): ``atoms_pairs`` (atoms of both partners; one ``ensemble`` per complex,
the partners told apart by ``subunit``: names ending ``_0``/``_1`` in DIPS, or
``ligand_bound``/``receptor_bound`` (+ unbound) in DB5), ``atoms_neighbors`` (positive
residue pairs, columns ``{ensemble,subunit,structure,model,chain,residue}{0,1}``), ``id``.

One sample per ensemble (sorted by name): the **complex**, from which residue pairs are drawn
when the data are loaded (:mod:`eqgat.data.pairs`: at most 10 positives and as many negatives
per complex, redrawn every epoch), so the shards hold each complex once, whatever the sampling:

* atoms: the heavy atoms of partner 0 in table order, then those of partner 1 (``parts``: the
  two partners; no edges are stored, each drawn pair gets its radius graphs when loaded);
* residues are identified by (chain, residue number) within their partner; a residue is
  usable if its partner's heavy atoms contain exactly one atom named 'CA' (element C) for it;
  fields ``ca0`` / ``ca1``: the C-alpha atom of every usable residue of partner 0 / 1 (index
  into the complex's atoms, first-appearance order), ``res0`` / ``res1``: their labels
  ``"chain:number"``;
* field ``positives`` [P, 2]: the rows of ``atoms_neighbors`` (deduplicated, in table order)
  as (residue of partner 0, residue of partner 1) positions into ``ca0`` / ``ca1``; listed pairs
  with an unusable residue are counted as ``ca_not_unique``; a complex with no usable positive
  pair is skipped (``no_positives``);
* ``y`` is ``None``: labels belong to the drawn pairs (1 = listed neighbours, 0 = not).
"""
from __future__ import annotations

from collections import Counter
from typing import Iterator

import numpy as np
import pandas as pd

from preprocess.elements import ELEMENTS, HYDROGEN_INDEX, OTHER_INDEX

from . import Sample, SkipSample, atom_table, coordinates, elements, guard, record_id, require
from .report import CA_NOT_UNIQUE, EMPTY_ATOMS, MALFORMED, NO_PARTNERS, SkipReport

NO_POSITIVES = "no_positives"
_CARBON = ELEMENTS.index("C")


def _side(name: str, sub0: str, sub1: str) -> int:
    if name == sub0:
        return 0
    if name == sub1:
        return 1
    if name.endswith(("ligand_bound", "ligand_unbound", "_0")):
        return 0
    if name.endswith(("receptor_bound", "receptor_unbound", "_1")):
        return 1
    return -1


def partner_subunits(ensemble_df: pd.DataFrame) -> tuple[str, str]:
    """Names of the (partner 0, partner 1) subunits, as atom3d's ``get_subunits``."""
    if "subunit" not in ensemble_df.columns:
        raise SkipSample(NO_PARTNERS, "no 'subunit' column")
    subs = [str(s) for s in pd.unique(ensemble_df["subunit"])]
    if len(subs) == 4:
        lb = [s for s in subs if s.endswith("ligand_bound")]
        rb = [s for s in subs if s.endswith("receptor_bound")]
        if len(lb) == 1 and len(rb) == 1:
            return lb[0], rb[0]
    if len(subs) == 2:
        s0 = [s for s in subs if s.endswith("_0")]
        s1 = [s for s in subs if s.endswith("_1")]
        if len(s0) == 1 and len(s1) == 1:
            return s0[0], s1[0]
        return tuple(sorted(subs))  # type: ignore[return-value]
    raise SkipSample(NO_PARTNERS, f"{len(subs)} subunits: {subs[:4]}")


class _Partner:
    """One partner's heavy atoms and its usable residues (exactly one C-alpha each)."""

    def __init__(self, df: pd.DataFrame, what: str, report: SkipReport | None):
        df = df.reset_index(drop=True)
        z, _ = elements(df, None)
        keep = z != HYDROGEN_INDEX
        df = df[keep].reset_index(drop=True)
        self.z = z[keep]
        self.pos = coordinates(df, what)  # raises on empty / NaN
        if report is not None and (self.z == OTHER_INDEX).any():
            elements(df, report)  # counts the unknown element symbols of the kept atoms
        chain = df["chain"].fillna("").astype(str).str.strip().to_numpy(dtype=object)
        resnum = pd.to_numeric(df["residue"], errors="coerce").to_numpy()
        name = df["name"].fillna("").astype(str).str.strip().str.upper().to_numpy(dtype=object)
        ca_rows = [int(r) for r in np.flatnonzero((name == "CA") & (self.z == _CARBON)) if np.isfinite(resnum[r])]
        keys = [(chain[r], int(resnum[r])) for r in ca_rows]
        counts = Counter(keys)
        self.order = [k for k in dict.fromkeys(keys) if counts[k] == 1]  # first-appearance order
        row_of = dict(zip(keys, ca_rows))
        self.ca = np.array([row_of[k] for k in self.order], dtype=np.int64)
        self.index = {k: i for i, k in enumerate(self.order)}

    @property
    def labels(self) -> list[str]:
        return [f"{c}:{r}" for c, r in self.order]


def _key(chain, residue) -> tuple[str, int]:
    return (str(chain).strip(), int(residue))


def samples(record, index: int, strict: bool = False, report: SkipReport | None = None) -> Iterator[Sample]:
    prep = guard(record, index, strict, report, lambda: _prepare(record))
    if prep is None:
        return
    pairs, neighbors = prep
    rid = record_id(record, index)
    for ensemble in sorted(pd.unique(pairs["ensemble"]).tolist(), key=str):
        sample = guard(record, index, strict, report,
                       lambda: _complex(pairs, neighbors, ensemble, rid, report), what=f"ensemble {ensemble}")
        if sample is not None:
            yield sample


def _prepare(record):
    pairs = atom_table(record, "atoms_pairs")
    neighbors = atom_table_any(record, "atoms_neighbors")
    if len(pairs) == 0:
        raise SkipSample(EMPTY_ATOMS, "no atoms in atoms_pairs")
    for col in ("chain", "residue", "name"):
        if col not in pairs.columns:
            raise SkipSample(MALFORMED, f"atoms_pairs lacks {col!r}")
    for col in ("chain0", "residue0", "chain1", "residue1"):
        if col not in neighbors.columns:
            raise SkipSample(MALFORMED, f"atoms_neighbors lacks {col!r}")
    if "ensemble" not in pairs.columns:
        pairs = pairs.assign(ensemble="")
    return pairs, neighbors


def atom_table_any(record, key):
    """``record[key]`` as a DataFrame, without requiring coordinate columns."""
    df = require(record, key)
    if isinstance(df, dict) and "columns" in df:
        df = pd.DataFrame(**df)
    if not isinstance(df, pd.DataFrame):
        raise SkipSample(MALFORMED, f"{key!r} is a {type(df).__name__}")
    return df


def _positives(neighbors: pd.DataFrame, pairs: pd.DataFrame, ensemble, sub0: str, sub1: str,
               p0: _Partner, p1: _Partner, report: SkipReport | None) -> np.ndarray:
    """[P, 2] residue positions of the listed neighbour pairs whose two residues are usable."""
    nb = neighbors
    if "ensemble0" in nb.columns and len(pd.unique(pairs["ensemble"])) > 1:
        nb = nb[nb["ensemble0"] == ensemble]
    flip = "subunit0" in nb.columns and "subunit1" in nb.columns
    seen: set = set()
    positives, skipped = [], 0
    for row in nb.itertuples(index=False):
        k0, k1 = _key(row.chain0, row.residue0), _key(row.chain1, row.residue1)
        if flip and (_side(str(row.subunit0), sub0, sub1), _side(str(row.subunit1), sub0, sub1)) == (1, 0):
            k0, k1 = k1, k0
        if (k0, k1) in seen:
            continue
        seen.add((k0, k1))
        if k0 in p0.index and k1 in p1.index:
            positives.append((p0.index[k0], p1.index[k1]))
        else:
            skipped += 1
    if report is not None and skipped:
        report.add(CA_NOT_UNIQUE, f"{ensemble} (positive pairs)", n=skipped)
    return np.array(positives, dtype=np.int64).reshape(-1, 2)


def _complex(pairs, neighbors, ensemble, rid: str, report) -> Sample:
    edf = pairs[pairs["ensemble"] == ensemble]
    sub0, sub1 = partner_subunits(edf)
    p0 = _Partner(edf[edf["subunit"].astype(str) == sub0], f"partner {sub0}", report)
    p1 = _Partner(edf[edf["subunit"].astype(str) == sub1], f"partner {sub1}", report)
    positives = _positives(neighbors, pairs, ensemble, sub0, sub1, p0, p1, report)
    if len(positives) == 0:
        raise SkipSample(NO_POSITIVES, f"no listed neighbour pair with a C-alpha on both sides in {ensemble}", bad=False)
    n0 = len(p0.z)
    return Sample(
        id=f"{rid}/{ensemble}" if str(ensemble) else rid,
        pos=np.concatenate([p0.pos, p1.pos]).astype(np.float32),
        z=np.concatenate([p0.z, p1.z]).astype(np.int8), y=None,
        fields={"num_atoms0": n0, "ca0": p0.ca, "ca1": n0 + p1.ca, "res0": p0.labels, "res1": p1.labels,
                "positives": positives},
        parts=(n0, len(p1.z)),
    )
