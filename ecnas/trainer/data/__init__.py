"""Image datasets for the trainer: the embedded default and CIFAR-10 from local files.

Both load into the same :class:`ImageData` (uint8 images N×3×32×32, channel-major, and int64
labels per split), with numpy only: no torch, no download, no unrestricted unpickling.
"""

from __future__ import annotations

from pathlib import Path

from ecnas.errors import InputError
from ecnas.trainer.data.base import DATASETS, ImageData, Split
from ecnas.trainer.data.cifar10 import (
    HOW_TO_GET,
    TEST_FILES,
    TRAIN_FILES,
    VALID_FILES,
    find_batch_dir,
    load_cifar10,
)
from ecnas.trainer.data.embedded import load_embedded

__all__ = ["DATASETS", "ImageData", "Split", "load_dataset"]


#: the CIFAR-10 folder last loaded in this process, by its files' identity: a process that
#: trains many cells (an inline campaign) reads and unpickles the 60,000 images once, not per
#: run (1.7-2 s a run on a 2-core machine). The arrays are shared: callers must not write them.
_LAST_CIFAR10: dict[tuple, ImageData] = {}


def _files_key(data_dir: str | Path) -> tuple | None:
    """(folder, (name, size, mtime) of every batch file): changes when any file does."""
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
        return load_embedded()
    if name == "cifar10":
        if data_dir is None:
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
