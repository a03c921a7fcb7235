"""ecnas: measure the energy of deep-learning training and build energy-aware NAS benchmarks.

The top-level names are loaded lazily so that ``import ecnas`` stays cheap: in-code metering
must not pay for torch, pandas or dask.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from ecnas._version import __version__

_LAZY = {
    "measure": "ecnas.monitor",
    "Monitor": "ecnas.monitor",
    "EnergyReport": "ecnas.monitor",
    "ModelSpec": "ecnas.space",
    "EnergyTracker": "ecnas.trainer.tracker",
    "Benchmark": "ecnas.benchmark",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ecnas' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
