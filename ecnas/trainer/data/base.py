"""The in-memory dataset every training run reads, and the dispatcher by dataset name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
        return tuple(self.train.images.shape[1:])  # type: ignore[return-value]


#: the CIFAR-10 folder last loaded in this process, by its files' identity: a process that
#: trains many cells (an inline campaign) reads and unpickles the 60,000 images once, not per
#: run (1.7-2 s a run on a 2-core machine). The arrays are shared: callers must not write them.
_LAST_CIFAR10: dict[tuple, ImageData] = {}


def _files_key(data_dir: str | Path) -> tuple | None:
    """(folder, (name, size, mtime) of every batch file): changes when any file does."""
    from ecnas.trainer.data.cifar10 import TEST_FILES, TRAIN_FILES, VALID_FILES, find_batch_dir

    try:
        folder = find_batch_dir(data_dir).resolve()
        stats = [(n, (folder / n).stat()) for n in TRAIN_FILES + VALID_FILES + TEST_FILES]
    except (InputError, OSError):
        return None  # the loader itself says what is wrong
    return (str(folder), tuple((n, st.st_size, st.st_mtime_ns, st.st_ino) for n, st in stats))


def load_dataset(name: str, data_dir: str | Path | None = None) -> ImageData:
    """``embedded`` (packaged, no files needed) or ``cifar10`` (``data_dir`` holds the
    python-version batch files)."""
    if name == "embedded":
        from ecnas.trainer.data.embedded import load_embedded

        return load_embedded()
    if name == "cifar10":
        from ecnas.trainer.data.cifar10 import load_cifar10

        if data_dir is None:
            from ecnas.trainer.data.cifar10 import HOW_TO_GET

            raise InputError(f"--dataset cifar10 needs --data-dir: {HOW_TO_GET}")
        key = _files_key(data_dir)
        hit = _LAST_CIFAR10.get(key) if key is not None else None
        if hit is None:
            hit = load_cifar10(data_dir)
            _LAST_CIFAR10.clear()  # one data set kept: 180 MB for CIFAR-10
            if key is not None:
                _LAST_CIFAR10[key] = hit
        return hit
    raise InputError(f"unknown dataset {name!r} (choose from {', '.join(DATASETS)})")
