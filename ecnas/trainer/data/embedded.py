"""The embedded default dataset (``digits32.npz`` next to this file; see README.md here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ecnas.errors import InputError
from ecnas.trainer.data.base import ImageData, Split

PATH = Path(__file__).with_name("digits32.npz")


def load_embedded(path: Path = PATH) -> ImageData:
    """UCI handwritten digits upscaled to 3×32×32 (1,197 / 300 / 300 images, 10 classes)."""
    try:
        # allow_pickle=False: the file holds plain arrays and nothing else may be loaded
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the embedded dataset ({exc}); reinstall ecnas "
                         "or rebuild it with scripts/build_embedded_dataset.py") from exc
    try:
        splits = {s: Split(arrays[f"x_{s}"], arrays[f"y_{s}"].astype(np.int64))
                  for s in ("train", "valid", "test")}
    except KeyError as exc:
        raise InputError(f"{path}: missing array {exc.args[0]!r}") from exc
    return ImageData("embedded", splits["train"], splits["valid"], splits["test"],
                     num_classes=10, source=str(path))
