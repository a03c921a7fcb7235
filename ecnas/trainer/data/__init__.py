"""Image datasets for the trainer: the embedded default and CIFAR-10 from local files.

Both load into the same :class:`ImageData` (uint8 images N×3×32×32, channel-major, and int64
labels per split), with numpy only: no torch, no download, no unrestricted unpickling.
"""

from __future__ import annotations

from pathlib import Path

from ecnas.errors import InputError
from ecnas.trainer.data.base import DATASETS, ImageData, Split
from ecnas.trainer.data.cifar10 import HOW_TO_GET, load_cifar10
from ecnas.trainer.data.embedded import load_embedded

__all__ = ["DATASETS", "ImageData", "Split", "load_dataset"]


def load_dataset(name: str, data_dir: str | Path | None = None) -> ImageData:
    """``embedded`` (packaged, no files needed) or ``cifar10`` (``data_dir`` holds the
    python-version batch files)."""
    if name == "embedded":
        return load_embedded()
    if name == "cifar10":
        if data_dir is None:
            raise InputError(f"--dataset cifar10 needs --data-dir: {HOW_TO_GET}")
        return load_cifar10(data_dir)
    raise InputError(f"unknown dataset {name!r} (choose from {', '.join(DATASETS)})")
