"""The NAS-Bench-101 cell space: specs, pruning, iso-hash, enumeration, sampling. No torch."""

from ecnas.space.hashing import iso_hash
from ecnas.space.spec import (
    CONV1X1,
    CONV3X3,
    INPUT,
    LABELS,
    MAXPOOL3X3,
    OPS,
    OUTPUT,
    ModelSpec,
    prune,
)

__all__ = [
    "CONV1X1", "CONV3X3", "INPUT", "LABELS", "MAXPOOL3X3", "OPS", "OUTPUT",
    "ModelSpec", "iso_hash", "prune",
]
