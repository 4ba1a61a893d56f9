"""Element and residue vocabularies shared by all ATOM3D tasks.

Element vocabulary (9 classes, ``docs/model.md``): H, C, N, O, F, S, Cl, P, other.
``element_index`` maps symbols case-insensitively ('CL', 'Cl', 'cl' -> Cl), strips
whitespace, treats deuterium 'D' as hydrogen, and maps anything else (unknown symbols,
empty strings, None/NaN) to ``other`` (index 8). Unknown symbols are not an error: they
are counted (see ``element_index(..., unknown=counter)``).

Residue vocabulary (RES task, 20 classes): the canonical amino acids in alphabetical
order of their three-letter codes, ALA=0 ... VAL=19. Note GLN (5) sorts before GLU (6).
"""
from __future__ import annotations

from typing import Iterable, MutableMapping

import numpy as np

ELEMENTS: tuple[str, ...] = ("H", "C", "N", "O", "F", "S", "Cl", "P", "other")
NUM_ELEMENTS = len(ELEMENTS)  # 9
OTHER_INDEX = ELEMENTS.index("other")  # 8
HYDROGEN_INDEX = ELEMENTS.index("H")  # 0
HYDROGEN_SYMBOLS = frozenset({"H", "D"})  # upper-cased symbols removed as "hydrogens"

_ELEMENT_LOOKUP: dict[str, int] = {e.upper(): i for i, e in enumerate(ELEMENTS[:-1])}
_ELEMENT_LOOKUP["D"] = ELEMENTS.index("H")  # deuterium is hydrogen

RESIDUE_CLASSES: tuple[str, ...] = (
    "ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE",
    "LEU", "LYS", "MET", "PHE", "PRO", "SER", "THR", "TRP", "TYR", "VAL",
)
RESIDUE_INDEX: dict[str, int] = {r: i for i, r in enumerate(RESIDUE_CLASSES)}
assert list(RESIDUE_CLASSES) == sorted(RESIDUE_CLASSES)


def normalize_symbol(symbol) -> str:
    """Upper-cased, stripped element symbol; '' for None/NaN/non-strings."""
    if symbol is None:
        return ""
    if isinstance(symbol, float):  # NaN from pandas
        return ""
    return str(symbol).strip().upper()


def element_index(
    symbols: Iterable, unknown: MutableMapping[str, int] | None = None
) -> np.ndarray:
    """Map element symbols to vocabulary indices (int8 array).

    Unknown or empty symbols map to ``OTHER_INDEX``; if ``unknown`` is a mapping (e.g. a
    ``collections.Counter``) the number of such atoms per (normalised) symbol is added
    to it, '' standing for empty/missing symbols.
    """
    import pandas as pd  # here, not at the top: the task declarations import this module

    values = symbols if isinstance(symbols, (pd.Series, np.ndarray)) else list(symbols)
    codes, uniques = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=True)
    table = np.empty(len(uniques) + 1, dtype=np.int8)  # last slot: missing (code -1)
    table[-1] = OTHER_INDEX
    for k, sym in enumerate(uniques):
        table[k] = _ELEMENT_LOOKUP.get(normalize_symbol(sym), OTHER_INDEX)
    out = table[codes]  # code -1 picks the last slot
    if unknown is not None:
        bad = out == OTHER_INDEX
        if bad.any():
            for k in np.unique(codes[bad]):
                sym = "" if k < 0 else normalize_symbol(uniques[k])
                unknown[sym] = unknown.get(sym, 0) + int(np.count_nonzero(codes == k))
    return out.astype(np.int8, copy=False)


def is_hydrogen(symbols: Iterable) -> np.ndarray:
    """Boolean mask: True where the symbol is H or D (case-insensitive)."""
    return element_index(symbols) == HYDROGEN_INDEX


def residue_index(name) -> int:
    """Class index of a canonical residue three-letter code (case-insensitive), or -1."""
    if name is None:
        return -1
    return RESIDUE_INDEX.get(str(name).strip().upper(), -1)
