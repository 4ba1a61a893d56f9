"""PPI: protein interface prediction (does residue r0 of partner 0 touch r1 of partner 1?).

Record (DIPS-split): ``atoms_pairs`` (atoms of both partners; one ``ensemble`` per complex,
the partners told apart by ``subunit``: names ending ``_0``/``_1`` in DIPS, or
``ligand_bound``/``receptor_bound`` (+ unbound) in DB5), ``atoms_neighbors`` (positive
residue pairs, columns ``{ensemble,subunit,structure,model,chain,residue}{0,1}``), ``id``.

Per ensemble (sorted by name):
* residues are identified by (chain, residue number) within their partner; a residue is
  usable if its partner's heavy atoms contain exactly one atom named 'CA' (element C) for it;
* positives: the rows of ``atoms_neighbors`` (deduplicated, in table order) whose two
  residues are usable (others counted as ``ca_not_unique``); optionally at most
  ``max_positives`` of them, drawn with the generator below;
* negatives: as many pairs (``neg_ratio`` x positives) drawn without replacement from
  usable partner-0 x partner-1 residue pairs that are not positives, with
  ``numpy.random.default_rng([seed, record_index])``: reproducible, identical across runs
  and independent of how records are split across workers;
* each sample: the heavy atoms of partner 0 within ``radius`` (30 A, inclusive) of r0's
  C-alpha, in table order, followed by those of partner 1 within ``radius`` of r1's
  C-alpha. ``y`` = 1 (positive) or 0. ``center_index`` = ``extra['center_index0']`` = r0's
  C-alpha in part 0; ``extra['center_index1']`` = r1's C-alpha *local to part 1* (global
  index ``num_atoms0 + center_index1``); ``extra['num_atoms0']``/``['num_atoms1']`` split the
  atoms. The two parts come from different coordinate frames of one complex and may
  overlap in space: build edges within each part only (``segment(sample)``).
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import pandas as pd

from preprocess.elements import ELEMENTS, HYDROGEN_INDEX, OTHER_INDEX

from . import Sample, SkipSample, atom_table, guard, record_id
from .report import (
    CA_NOT_UNIQUE, EMPTY_ATOMS, MALFORMED, NO_PARTNERS, UNKNOWN_ELEMENT,
    SkipReport,
)

LABELS = {
    "task": "ppi",
    "kind": "binary",
    "targets": ["interacts"],
    "source": "atoms_neighbors rows = positives (1); sampled non-neighbour pairs = 0",
    "readout": "extra center_index0 (part 0) and num_atoms0 + center_index1 (part 1)",
}
RADIUS = 30.0
NEGATIVES_SHORT = "ppi_negatives_short"  # note: fewer negative candidates than wanted
_CARBON = ELEMENTS.index("C")


def segment(sample: Sample) -> np.ndarray:
    """int8 [N]: 0 for the partner-0 part, 1 for the partner-1 part."""
    seg = np.zeros(sample.num_atoms, dtype=np.int8)
    seg[int(sample.extra["num_atoms0"]):] = 1
    return seg


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
    def __init__(self, df: pd.DataFrame, what: str):
        from . import coordinates, elements

        df = df.reset_index(drop=True)
        z, _ = elements(df, None)
        keep = z != HYDROGEN_INDEX
        df = df[keep].reset_index(drop=True)
        self.z = z[keep]
        self.pos = coordinates(df, what)  # raises on empty / NaN
        chain = df["chain"].fillna("").astype(str).str.strip().to_numpy(dtype=object)
        resnum = pd.to_numeric(df["residue"], errors="coerce").to_numpy()
        name = df["name"].fillna("").astype(str).str.strip().str.upper().to_numpy(dtype=object)
        ca_rows = np.flatnonzero((name == "CA") & (self.z == _CARBON))
        self.ca: dict[tuple[str, int], int] = {}
        self.order: list[tuple[str, int]] = []  # usable residues, first-appearance order
        dup: set = set()
        for r in ca_rows:
            if not np.isfinite(resnum[r]):
                continue
            key = (chain[r], int(resnum[r]))
            if key in self.ca or key in dup:
                self.ca.pop(key, None)
                dup.add(key)
            else:
                self.ca[key] = int(r)
        self.order = [k for k in dict.fromkeys(
            (chain[r], int(resnum[r])) for r in ca_rows if np.isfinite(resnum[r])) if k in self.ca]
        self.index = {k: i for i, k in enumerate(self.order)}
        self._cache: dict[tuple[str, int], tuple[np.ndarray, int]] = {}

    def env(self, key, radius: float) -> tuple[np.ndarray, int]:
        got = self._cache.get(key)
        if got is None:
            ca = self.ca[key]
            d2 = ((self.pos - self.pos[ca]) ** 2).sum(axis=1)
            rows = np.flatnonzero(d2 <= np.float32(radius) ** 2)
            got = (rows, int(np.searchsorted(rows, ca)))
            self._cache[key] = got
        return got


def _key(chain, residue) -> tuple[str, int]:
    return (str(chain).strip(), int(residue))


def samples(record, index: int, strict: bool = False, report: SkipReport | None = None, *,
            seed: int = 0, radius: float = RADIUS, max_positives: int | None = None,
            neg_ratio: float = 1.0) -> Iterator[Sample]:
    prep = guard(record, index, strict, report, lambda: _prepare(record))
    if prep is None:
        return
    pairs, neighbors = prep
    rid = record_id(record, index)
    rng = np.random.default_rng([int(seed), int(index)])
    for ensemble in sorted(pd.unique(pairs["ensemble"]).tolist(), key=str):
        built = guard(record, index, strict, report,
                      lambda: _ensemble(pairs, neighbors, ensemble, rng, max_positives,
                                        neg_ratio, report),
                      what=f"ensemble {ensemble}")
        if built is None:
            continue
        p0, p1, chosen = built
        for label, k0, k1 in chosen:
            yield _pair_sample(p0, p1, k0, k1, label, radius, rid, str(ensemble), report)


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
    from . import require

    df = require(record, key)
    if isinstance(df, dict) and "columns" in df:
        df = pd.DataFrame(**df)
    if not isinstance(df, pd.DataFrame):
        raise SkipSample(MALFORMED, f"{key!r} is a {type(df).__name__}")
    return df


def _ensemble(pairs, neighbors, ensemble, rng, max_positives, neg_ratio, report):
    edf = pairs[pairs["ensemble"] == ensemble]
    sub0, sub1 = partner_subunits(edf)
    p0 = _Partner(edf[edf["subunit"].astype(str) == sub0], f"partner {sub0}")
    p1 = _Partner(edf[edf["subunit"].astype(str) == sub1], f"partner {sub1}")
    nb = neighbors
    if "ensemble0" in nb.columns and len(pd.unique(pairs["ensemble"])) > 1:
        nb = nb[nb["ensemble0"] == ensemble]
    positives: list[tuple[tuple[str, int], tuple[str, int]]] = []
    seen: set = set()
    skipped = 0
    for row in nb.itertuples(index=False):
        k0, k1 = _key(row.chain0, row.residue0), _key(row.chain1, row.residue1)
        if "subunit0" in nb.columns and "subunit1" in nb.columns:
            s0, s1 = _side(str(row.subunit0), sub0, sub1), _side(str(row.subunit1), sub0, sub1)
            if (s0, s1) == (1, 0):
                k0, k1 = k1, k0
        if (k0, k1) in seen:
            continue
        seen.add((k0, k1))
        if k0 in p0.ca and k1 in p1.ca:
            positives.append((k0, k1))
        else:
            skipped += 1
    if report is not None and skipped:
        report.add(CA_NOT_UNIQUE, f"{ensemble} (positive pairs)", n=skipped)
    if max_positives is not None and len(positives) > max_positives:
        pick = np.sort(rng.choice(len(positives), size=int(max_positives), replace=False))
        positives = [positives[i] for i in pick]
    n_neg = int(round(len(positives) * neg_ratio))
    negatives = []
    if n_neg > 0 and p0.order and p1.order:
        n0, n1 = len(p0.order), len(p1.order)
        excluded = np.zeros(n0 * n1, dtype=bool)
        for k0, k1 in seen:  # every listed neighbour pair, usable or not
            i, j = p0.index.get(k0), p1.index.get(k1)
            if i is not None and j is not None:
                excluded[i * n1 + j] = True
        candidates = np.flatnonzero(~excluded)
        take = min(n_neg, candidates.size)
        if take < n_neg and report is not None:
            report.note(NEGATIVES_SHORT, n_neg - take)
        for f in rng.choice(candidates, size=take, replace=False):
            negatives.append((p0.order[int(f) // n1], p1.order[int(f) % n1]))
    chosen = [(1, a, b) for a, b in positives] + [(0, a, b) for a, b in negatives]
    return p0, p1, chosen


def _pair_sample(p0: _Partner, p1: _Partner, k0, k1, label: int, radius: float,
                 rid: str, ensemble: str, report) -> Sample:
    rows0, c0 = p0.env(k0, radius)
    rows1, c1 = p1.env(k1, radius)
    z = np.concatenate([p0.z[rows0], p1.z[rows1]]).astype(np.int8)
    n_unknown = int(np.count_nonzero(z == OTHER_INDEX))
    if report is not None and n_unknown:
        report.note(UNKNOWN_ELEMENT, n_unknown)
    tag = f"{k0[0]}:{k0[1]}-{k1[0]}:{k1[1]}"
    return Sample(
        id=f"{rid}/{ensemble}/{tag}" if ensemble else f"{rid}/{tag}",
        pos=np.concatenate([p0.pos[rows0], p1.pos[rows1]]).astype(np.float32),
        z=z, y=int(label), center_index=c0,
        extra={"center_index0": c0, "center_index1": c1,
               "num_atoms0": int(rows0.size), "num_atoms1": int(rows1.size),
               "chain0": k0[0], "residue0": k0[1], "chain1": k1[0], "residue1": k1[1],
               "ensemble": ensemble, "record_id": rid, "unknown_elements": n_unknown},
    )
