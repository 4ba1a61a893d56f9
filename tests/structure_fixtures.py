"""Small synthetic structures written with gemmi (PDB, mmCIF, gzipped) for the structures reader tests.

``peptide()`` is a four-residue chain A (GLY, SER with altlocs A 0.4 / B 0.6, VAL with altlocs
A 0.5 / B 0.5, selenomethionine MSE as HETATM) plus ALA 4A (insertion code), and chain B with a
zinc ion, a chloride ion, an acetate ligand and two waters; hydrogens on GLY, ALA and one water.
A second model holds one shifted GLY. Coordinates are made up but sensible (bonded atoms about
1.2-1.5 A apart) and have 3 decimals, so PDB and mmCIF carry exactly the same numbers.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import gemmi

# (atom name, element, (x, y, z), altloc, occupancy)
AtomSpec = tuple[str, str, tuple[float, float, float], str, float]
# (residue name, number, insertion code, HETATM, atoms)
ResidueSpec = tuple[str, int, str, bool, list[AtomSpec]]


def a(name: str, element: str, xyz: tuple[float, float, float], altloc: str = "", occ: float = 1.0) -> AtomSpec:
    return name, element, xyz, altloc, occ


GLY = ("GLY", 1, "", False, [
    a("N", "N", (0.000, 0.000, 0.000)), a("CA", "C", (1.458, 0.000, 0.000)),
    a("C", "C", (2.009, 1.420, 0.000)), a("O", "O", (1.251, 2.390, 0.000)),
    a("H", "H", (-0.950, -0.300, 0.000)),
])
SER = ("SER", 2, "", False, [
    a("N", "N", (3.332, 1.536, 0.000)), a("CA", "C", (3.988, 2.839, 0.000)),
    a("C", "C", (5.504, 2.693, 0.000)), a("O", "O", (6.071, 1.601, 0.000)),
    a("CB", "C", (3.500, 3.700, 1.200), "A", 0.4), a("OG", "O", (2.100, 3.900, 1.300), "A", 0.4),
    a("CB", "C", (3.520, 3.650, -1.190), "B", 0.6), a("OG", "O", (3.900, 5.000, -1.100), "B", 0.6),
])
VAL = ("VAL", 3, "", False, [  # altlocs interleaved atom by atom, as PDB files usually have them
    a("N", "N", (6.140, 3.850, 0.000)), a("CA", "C", (7.590, 3.920, 0.000)),
    a("C", "C", (8.100, 5.350, 0.000)), a("O", "O", (7.350, 6.320, 0.000)),
    a("CB", "C", (8.150, 3.200, 1.230)),
    a("CG1", "C", (9.670, 3.250, 1.240), "A", 0.5), a("CG1", "C", (7.600, 1.780, 1.300), "B", 0.5),
    a("CG2", "C", (7.700, 3.900, 2.500), "A", 0.5), a("CG2", "C", (9.700, 2.900, 0.400), "B", 0.5),
])
MSE = ("MSE", 4, "", True, [
    a("N", "N", (9.400, 5.600, 0.000)), a("CA", "C", (10.000, 6.900, 0.000)),
    a("C", "C", (11.500, 6.800, 0.000)), a("O", "O", (12.100, 5.700, 0.000)),
    a("CB", "C", (9.500, 7.700, 1.200)), a("CG", "C", (9.900, 9.200, 1.200)),
    a("SE", "Se", (9.200, 10.200, 2.700)), a("CE", "C", (10.200, 11.800, 2.400)),
])
ALA = ("ALA", 4, "A", False, [
    a("N", "N", (12.100, 7.900, 0.000)), a("CA", "C", (13.500, 8.000, 0.000)),
    a("C", "C", (14.000, 9.400, 0.000)), a("O", "O", (13.200, 10.300, 0.000)),
    a("CB", "C", (14.000, 7.200, 1.200)), a("HA", "H", (13.850, 7.500, -0.900)),
])
ZN = ("ZN", 101, "", True, [a("ZN", "Zn", (4.000, 6.500, 3.000))])
CL = ("CL", 102, "", True, [a("CL", "Cl", (0.500, 4.500, 2.000))])
ACT = ("ACT", 103, "", True, [
    a("C", "C", (6.000, 8.000, 3.000)), a("O", "O", (5.300, 7.000, 3.000)),
    a("OXT", "O", (5.600, 9.200, 3.000)), a("CH3", "C", (7.500, 7.800, 3.000)),
])
WATERS = [
    ("HOH", 201, "", True, [a("O", "O", (2.000, -3.000, 0.000)), a("H1", "H", (2.960, -3.000, 0.000)),
                            a("H2", "H", (1.760, -2.070, 0.000))]),
    ("HOH", 202, "", True, [a("O", "O", (-3.000, 2.000, 1.000))]),
]

#: model 1 of ``peptide()``: chain -> residues
PEPTIDE: dict[str, list[ResidueSpec]] = {"A": [GLY, SER, VAL, MSE, ALA], "B": [ZN, CL, ACT, *WATERS]}
#: model 2 of ``peptide()``: one GLY, shifted by 20 A along x, with an extra (made-up) CB
SECOND_MODEL: dict[str, list[ResidueSpec]] = {"A": [("GLY", 1, "", False, [
    a("N", "N", (20.000, 0.000, 0.000)), a("CA", "C", (21.458, 0.000, 0.000)),
    a("C", "C", (22.009, 1.420, 0.000)), a("O", "O", (21.251, 2.390, 0.000)),
    a("CB", "C", (22.000, -1.000, 0.500)),
])]}
#: SER in altloc A (occupancy 0.3) and THR in altloc B (0.7) at the same residue number
MICROHETEROGENEITY: dict[str, list[ResidueSpec]] = {"A": [
    ("GLY", 5, "", False, [a("N", "N", (0.000, 0.000, 0.000)), a("CA", "C", (1.458, 0.000, 0.000)),
                           a("C", "C", (2.009, 1.420, 0.000)), a("O", "O", (1.251, 2.390, 0.000))]),
    ("SER", 6, "", False, [a("N", "N", (3.332, 1.536, 0.000), "A", 0.3), a("CA", "C", (3.988, 2.839, 0.000), "A", 0.3),
                           a("CB", "C", (3.500, 3.700, 1.200), "A", 0.3), a("OG", "O", (2.100, 3.900, 1.300), "A", 0.3)]),
    ("THR", 6, "", False, [a("N", "N", (3.340, 1.540, 0.000), "B", 0.7), a("CA", "C", (3.990, 2.850, 0.000), "B", 0.7),
                           a("CB", "C", (3.520, 3.650, -1.190), "B", 0.7), a("OG1", "O", (3.900, 5.000, -1.100), "B", 0.7),
                           a("CG2", "C", (2.000, 3.600, -1.500), "B", 0.7)]),
]}
#: only waters (nothing left once they are dropped)
WATERS_ONLY: dict[str, list[ResidueSpec]] = {"W": WATERS}


def make_residue(spec: ResidueSpec) -> gemmi.Residue:
    name, number, icode, hetero, atoms = spec
    residue = gemmi.Residue()
    residue.name = name
    residue.seqid = gemmi.SeqId(number, icode or " ")
    residue.het_flag = "H" if hetero else "A"
    for atom_name, element, xyz, altloc, occ in atoms:
        atom = gemmi.Atom()
        atom.name = atom_name
        atom.element = gemmi.Element(element)
        atom.pos = gemmi.Position(*xyz)
        atom.altloc = altloc or "\0"
        atom.occ = occ
        atom.b_iso = 20.0
        residue.add_atom(atom)
    return residue


def make_structure(*models: dict[str, list[ResidueSpec]], name: str = "TEST") -> gemmi.Structure:
    """A structure with one model per ``{chain: residues}`` mapping."""
    structure = gemmi.Structure()
    structure.name = name
    for number, chains in enumerate(models, start=1):
        model = gemmi.Model(str(number))
        for chain_name, residues in chains.items():
            chain = gemmi.Chain(chain_name)
            for spec in residues:
                chain.add_residue(make_residue(spec))
            model.add_chain(chain)
        structure.add_model(model)
    structure.setup_entities()
    return structure


def peptide() -> gemmi.Structure:
    return make_structure(PEPTIDE, SECOND_MODEL)


def structure_bytes(structure: gemmi.Structure, name: str) -> bytes:
    """The structure as PDB (.pdb, .ent) or mmCIF (.cif, .mmcif) text, gzipped when ``name`` ends in .gz."""
    lower = name.lower()
    inner = lower[:-3] if lower.endswith(".gz") else lower
    if inner.endswith((".pdb", ".ent")):
        data = structure.make_pdb_string().encode()
    elif inner.endswith((".cif", ".mmcif")):
        data = structure.make_mmcif_document().as_string().encode()
    else:
        raise ValueError(f"no structure format for {name}")
    return gzip.compress(data, mtime=0) if lower.endswith(".gz") else data


def write_structure(structure: gemmi.Structure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(structure_bytes(structure, path.name))
    return path


def write_labels(path: Path, rows: list[list[str]], header: tuple[str, ...] = ("file", "label")) -> Path:
    """A labels CSV (rows as given, no quoting needed for the tests' names)."""
    path.write_text("\n".join(",".join(r) for r in [list(header), *rows]) + "\n")
    return path
