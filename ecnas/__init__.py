"""ecnas: measure the energy of deep-learning training and build energy-aware NAS benchmarks.

The top-level names are loaded lazily so that ``import ecnas`` stays cheap: in-code metering
must not pay for torch, pandas or dask.
"""

from __future__ import annotations

from ecnas._lazy import lazy_exports
from ecnas._version import __version__

_LAZY = {
    "measure": "ecnas.monitor",
    "Monitor": "ecnas.monitor",
    "EnergyReport": "ecnas.monitor",
    "ModelSpec": "ecnas.space",
    "EnergyTracker": "ecnas.tracker",
    "Benchmark": "ecnas.benchmark",
}

__all__ = ["__version__", *_LAZY]
__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
