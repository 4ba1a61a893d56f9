"""EQGAT: equivariant graph attention networks for 3D biomolecular structures."""

__version__ = "0.1.0"
