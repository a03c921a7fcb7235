"""The in-memory dataset every training run reads, and the dispatcher by dataset name."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ecnas.errors import InputError

DATASETS = ("embedded", "cifar10")


@dataclass(frozen=True)
class Split:
    """One split: ``images`` uint8 (N, 3, H, W) channel-major, ``labels`` int64 (N,)."""

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise InputError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} "
                             f"{self.images.shape}")
        if self.labels.shape != (self.images.shape[0],):
            raise InputError(f"{self.images.shape[0]} images but labels of shape "
                             f"{self.labels.shape}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def head(self, n: int | None) -> Split:
        """The first ``n`` examples (all when ``n`` is None)."""
        if n is None or n >= len(self):
            return self
        return Split(self.images[:n], self.labels[:n])


@dataclass(frozen=True)
class ImageData:
    """Train / validation / test splits of one dataset and where they came from."""

    name: str
    train: Split
    valid: Split
    test: Split
    num_classes: int
    source: str  # a file or folder, for provenance in logs and docs

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """One image's shape as (channels, height, width)."""
        return tuple(self.train.images.shape[1:])
