"""Image datasets for the trainer: the embedded default and CIFAR-10 from local files.

Both load into the same :class:`ImageData` (uint8 images N×3×32×32, channel-major, and int64
labels per split), with numpy only: no torch, no download, no unrestricted unpickling.
"""

from __future__ import annotations

from ecnas.trainer.data.base import DATASETS, ImageData, Split, load_dataset

__all__ = ["DATASETS", "ImageData", "Split", "load_dataset"]
