"""The NAS-Bench-101 cell space: specs, pruning, iso-hash, enumeration, sampling. No torch.

Analytic network costs (parameters, FLOPs) live in :mod:`ecnas.space.cost`.
"""

from ecnas.space.canonical import canonical_spec
from ecnas.space.enumeration import count_cells, enumerate_cells
from ecnas.space.hashing import iso_hash
from ecnas.space.sampling import sample_cells
from ecnas.space.spec import (
    CONV1X1,
    CONV3X3,
    INPUT,
    LABELS,
    MAX_EDGES,
    MAX_VERTICES,
    MAXPOOL3X3,
    OPS,
    OUTPUT,
    ModelSpec,
    prune,
)

__all__ = [
    "CONV1X1", "CONV3X3", "INPUT", "LABELS", "MAX_EDGES", "MAX_VERTICES", "MAXPOOL3X3", "OPS",
    "OUTPUT", "ModelSpec", "canonical_spec", "count_cells", "enumerate_cells", "iso_hash", "prune", "sample_cells",
]
