"""What the ATOM3D task declarations share: the element vocabulary and EQGAT's Table 2 sizes."""
from __future__ import annotations

from preprocess.elements import NUM_ELEMENTS

#: EQGAT on every ATOM3D task (paper Table 2): Fs 100, Fv 16, K 32, mean vector aggregation
EQGAT_ATOM3D = dict(num_elements=NUM_ELEMENTS, hidden_scalars=100, hidden_vectors=16, num_radial=32,
                    vector_aggr="mean", norm=True)

#: SEGNN has 3 layers on every ATOM3D task (paper section 4)
SEGNN_ATOM3D = {"segnn": {"num_layers": 3}}

#: keys every ATOM3D task section may hold besides graph / model / train
ATOM3D_OPTIONS = {
    "strict": {"type": "boolean", "description": "a bad record is an error naming it (default: skipped and counted)"},
    "max_records": {"type": ["integer", "null"], "minimum": 1, "description": "read at most this many records per split (trials)"},
}
