"""The trainer room: meter any epoch loop (:class:`EnergyTracker`), train NAS-Bench-101 cells
with NAS-Bench-101's recipe (:func:`train_architecture`), and run campaigns.

Importing this package is light: names load on first use, and only the training parts import
torch (``EnergyTracker`` never does).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "EnergyTracker": "ecnas.trainer.tracker",
    "Checkpoint": "ecnas.trainer.tracker",
    "EpochMark": "ecnas.trainer.tracker",
    "WarmUp": "ecnas.trainer.tracker",
    "Recipe": "ecnas.trainer.recipe",
    "TrainConfig": "ecnas.trainer.train",
    "EpochProgress": "ecnas.trainer.train",
    "train_architecture": "ecnas.trainer.train",
    "run_training": "ecnas.trainer.train",
    "TrainResult": "ecnas.trainer.train",
    "load_dataset": "ecnas.trainer.data",
    "write_rows": "ecnas.trainer.rows",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ecnas.trainer' has no attribute {name!r}")
    return getattr(import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
