"""Building blocks of EQGAT."""

from .conv import EQGATConv, feature_softmax
from .norm import EquivariantNorm
from .radial import BesselBasis, CosineCutoff, PolynomialEnvelope, RadialEmbedding, safe_norm
from .readout import READOUTS, InvariantProjection, MLPHead, Readout, ScalarReadout, global_mean_pool
from .update import GatedEquivariantUpdate

__all__ = [
    "BesselBasis",
    "CosineCutoff",
    "EQGATConv",
    "EquivariantNorm",
    "GatedEquivariantUpdate",
    "InvariantProjection",
    "MLPHead",
    "PolynomialEnvelope",
    "RadialEmbedding",
    "READOUTS",
    "Readout",
    "ScalarReadout",
    "feature_softmax",
    "global_mean_pool",
    "safe_norm",
]
