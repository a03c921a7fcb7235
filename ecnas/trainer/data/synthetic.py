"""CIFAR-10-shaped batch files made on the spot, for machines that cannot fetch the data set.

A training step's time and energy depend on the tensors' shapes, not on the pixel values, so
random images in CIFAR-10's "python version" layout measure what CIFAR-10 would; accuracies
trained on them mean nothing (each image's mean brightness depends on its label, so the
network has something to learn). Used by ``ecnas validate gpu`` and the 5V GPU campaign.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ecnas.trainer.data.cifar10 import TEST_FILES, TRAIN_FILES, VALID_FILES


def write_synthetic_cifar10(folder: Path, n_train: int, n_eval: int, seed: int = 0) -> None:
    """``data_batch_1``–``5`` and ``test_batch`` in ``folder``: ``n_train`` training images
    over the four training files, ``n_eval`` each in validation and test."""
    rng = np.random.default_rng(seed)

    def batch(n: int) -> dict[bytes, Any]:
        labels = rng.integers(0, 10, n)
        base = rng.integers(0, 200, (n, 3072), dtype=np.uint8)
        data = (base + (labels[:, None] * 5).astype(np.uint8)).astype(np.uint8)
        return {b"data": data, b"labels": labels.tolist()}

    per_train = -(-n_train // len(TRAIN_FILES))
    for name in TRAIN_FILES:
        (folder / name).write_bytes(pickle.dumps(batch(per_train), protocol=2))
    for name in VALID_FILES + TEST_FILES:
        (folder / name).write_bytes(pickle.dumps(batch(n_eval), protocol=2))
