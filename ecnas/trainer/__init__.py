"""The trainer room: train NAS-Bench-101 cells in PyTorch with NAS-Bench-101's recipe
(:func:`train_architecture`). Metering any epoch loop is :mod:`ecnas.tracker`; campaigns over
many cells are :mod:`ecnas.campaign`.

Importing this package is light: names load on first use, and only the training parts import
torch.
"""

from __future__ import annotations

from ecnas._lazy import lazy_exports

_EXPORTS = {
    "Recipe": "ecnas.trainer.recipe",
    "TrainConfig": "ecnas.trainer.config",
    "EpochProgress": "ecnas.trainer.train",
    "train_architecture": "ecnas.trainer.train",
    "run_training": "ecnas.trainer.train",
    "TrainResult": "ecnas.trainer.train",
    "load_dataset": "ecnas.trainer.data",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
