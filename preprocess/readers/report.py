"""Skip accounting for the ATOM3D readers and the users' structure files.

A ``SkipReport`` counts, per reason, the records (or samples: RES environments, PPI
pairs; structure files) that were skipped, keeps the first few identifiers per reason, and
separately counts non-fatal notes (e.g. atoms with an unknown element mapped to 'other';
per element symbol under ``unknown_element:<symbol>`` keys, see ``unknown_elements``). It is
JSON-serialisable (``to_dict``/``from_dict``/``to_json``) and mergeable (``merge`` or
``+``), so every Dask task can keep its own report and the driver sums them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Iterable

# Reasons used by the readers (free-form strings are allowed too).
UNDECODABLE = "undecodable"            # LMDB value is missing / not gzip+json / bad types
MISSING_FIELD = "missing_field"        # a required key (atom table, labels ...) is absent
MALFORMED = "malformed"                # a field has the wrong shape/type/columns
EMPTY_ATOMS = "empty_atoms"            # no atoms left (after hydrogen removal / selection)
NAN_COORDINATES = "nan_coordinates"    # non-finite x/y/z among the atoms of a sample
MISSING_LABEL = "missing_label"        # label key absent, None or NaN
NONCANONICAL_RESIDUE = "noncanonical_residue"  # RES: central residue not one of the 20
CA_NOT_UNIQUE = "ca_not_unique"        # RES/PPI: central C-alpha found 0 or >1 times
NO_PARTNERS = "no_partners"            # PPI: could not identify the two partners
UNPARSEABLE = "unparseable"            # structures: not a readable PDB / mmCIF (or corrupt .gz)
MISSING_FILE = "missing_file"          # structures: a labels CSV row names no file on disk
UNSUPPORTED_FORMAT = "unsupported_format"  # structures: not .pdb/.ent/.cif/.mmcif (optionally .gz)
INVALID_LABEL = "invalid_label"        # structures: a regression label that is not a finite number
UNLABELLED_FILE = "unlabelled_file"    # structures: a structure file with no labels CSV row (not used)
TOO_MANY_NEIGHBORS = "too_many_neighbors"  # graphs: an atom has more than graph.max_degree neighbours
FILE_TOO_LARGE = "file_too_large"      # structures: more bytes (after decompression) than max_file_bytes
TOO_MANY_ATOMS = "too_many_atoms"      # structures: more kept atoms than max_atoms
NOT_REGULAR_FILE = "not_regular_file"  # structures: a FIFO, device, socket or folder (or a symlink to one)

# Non-fatal notes
UNKNOWN_ELEMENT = "unknown_element_atoms"  # atoms mapped to 'other' (counted, kept)
UNKNOWN_SYMBOL = "unknown_element:"        # + the symbol: such atoms per element symbol
ALTLOC_DROPPED = "altloc_dropped_atoms"    # structures: atoms of the alternate locations not kept


@dataclass
class SkipReport:
    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    notes: dict[str, int] = field(default_factory=dict)
    max_examples: int = 5

    # -- recording -------------------------------------------------------------------
    def add(self, reason: str, record_id: str | None = None, n: int = 1) -> None:
        """Count ``n`` skipped items for ``reason``; remember ``record_id`` if room."""
        self.counts[reason] = self.counts.get(reason, 0) + int(n)
        if record_id is not None:
            ex = self.examples.setdefault(reason, [])
            rid = str(record_id)
            if len(ex) < self.max_examples and rid not in ex:
                ex.append(rid)

    def note(self, what: str, n: int = 1) -> None:
        """Count a non-fatal event (nothing is skipped)."""
        if n:
            self.notes[what] = self.notes.get(what, 0) + int(n)

    def note_unknown_elements(self, per_symbol: dict[str, int]) -> None:
        """Count atoms mapped to 'other': in total and per element symbol."""
        self.note(UNKNOWN_ELEMENT, sum(per_symbol.values()))
        for symbol, n in per_symbol.items():
            self.note(f"{UNKNOWN_SYMBOL}{symbol or '?'}", n)

    @property
    def unknown_elements(self) -> dict[str, int]:
        """Atoms mapped to 'other' per element symbol."""
        return {k[len(UNKNOWN_SYMBOL):]: v for k, v in sorted(self.notes.items()) if k.startswith(UNKNOWN_SYMBOL)}

    # -- queries -----------------------------------------------------------------------
    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __bool__(self) -> bool:  # a report is truthy only when something was skipped
        return self.total > 0

    # -- merging -----------------------------------------------------------------------
    def merge(self, other: SkipReport | dict) -> SkipReport:
        """Add ``other`` into ``self`` in place; returns ``self``."""
        if isinstance(other, dict):
            other = SkipReport.from_dict(other)
        for k, v in other.counts.items():
            self.counts[k] = self.counts.get(k, 0) + v
        for k, ids in other.examples.items():
            ex = self.examples.setdefault(k, [])
            for rid in ids:
                if len(ex) >= self.max_examples:
                    break
                if rid not in ex:
                    ex.append(rid)
        for k, v in other.notes.items():
            self.notes[k] = self.notes.get(k, 0) + v
        return self

    def __add__(self, other: SkipReport) -> SkipReport:
        out = SkipReport(max_examples=self.max_examples)
        return out.merge(self).merge(other)

    @classmethod
    def merged(cls, reports: Iterable[SkipReport | dict]) -> SkipReport:
        out = cls()
        for r in reports:
            out.merge(r)
        return out

    # -- (de)serialisation -------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "counts": dict(sorted(self.counts.items())),
            "examples": {k: list(v) for k, v in sorted(self.examples.items())},
            "notes": dict(sorted(self.notes.items())),
            "total": self.total,
            "max_examples": self.max_examples,
        }

    @classmethod
    def from_dict(cls, d: dict) -> SkipReport:
        return cls(
            counts={k: int(v) for k, v in d.get("counts", {}).items()},
            examples={k: [str(x) for x in v] for k, v in d.get("examples", {}).items()},
            notes={k: int(v) for k, v in d.get("notes", {}).items()},
            max_examples=int(d.get("max_examples", 5)),
        )

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)

    @classmethod
    def from_json(cls, s: str) -> SkipReport:
        return cls.from_dict(json.loads(s))
