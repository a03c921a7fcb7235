"""Trainer data: the CIFAR-10 reader on batch files in the real format, the restricted
unpickler against malicious pickles, and the embedded dataset."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from ecnas.errors import InputError
from ecnas.trainer.data import load_dataset
from ecnas.trainer.data.cifar10 import SUBDIR, read_batch
from ecnas.trainer.data.embedded import PATH as EMBEDDED_PATH

NAMES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def write_batches(folder: Path, n: int = 3, *, protocol: int = 2, bytes_keys: bool = True) -> dict:
    """Tiny batch files in CIFAR-10's python format; returns name -> (data, labels)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    rng = np.random.default_rng(0)
    for k, name in enumerate(NAMES):
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [(k + j) % 10 for j in range(n)]
        key = (lambda s: s.encode()) if bytes_keys else (lambda s: s)
        obj = {key("batch_label"): key(f"batch {k}"), key("labels"): labels,
               key("data"): data, key("filenames"): [key(f"img{j}.png") for j in range(n)]}
        with open(folder / name, "wb") as fh:
            pickle.dump(obj, fh, protocol=protocol)
        written[name] = (data, labels)
    return written


def test_cifar10_reader_splits_and_channel_major_layout(tmp_path: Path) -> None:
    written = write_batches(tmp_path / SUBDIR)
    data = load_dataset("cifar10", tmp_path)  # the parent folder works too
    assert (len(data.train), len(data.valid), len(data.test)) == (12, 3, 3)
    raw, labels = written["data_batch_2"]
    # image 0 of batch 2 is train image 3; channel-major: the first 1024 bytes are red
    np.testing.assert_array_equal(data.train.images[3, 0].ravel(), raw[0, :1024])
    np.testing.assert_array_equal(data.train.images[3, 2].ravel(), raw[0, 2048:])
    assert data.train.labels[3:6].tolist() == labels
    np.testing.assert_array_equal(data.valid.images.reshape(3, -1), written["data_batch_5"][0])
    assert data.test.labels.tolist() == written["test_batch"][1]
    assert data.train.images.dtype == np.uint8 and data.train.labels.dtype == np.int64


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_cifar10_reader_accepts_every_pickle_protocol(tmp_path: Path, protocol: int) -> None:
    write_batches(tmp_path, protocol=protocol, bytes_keys=protocol % 2 == 0)
    images, labels = read_batch(tmp_path / "data_batch_1")
    assert images.shape == (3, 3, 32, 32) and labels.tolist() == [0, 1, 2]


class _RunsCommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # what an attacker's pickle does: call os.system on load
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_before_it_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": _RunsCommand(marker), b"labels": [0]}, protocol=2))
    with pytest.raises(InputError, match=r"refused global (posix|os)\.system"):
        read_batch(path)
    assert not marker.exists()


def test_codecs_other_than_latin1_are_refused(tmp_path: Path) -> None:
    import _codecs

    class Sneaky:
        def __reduce__(self):
            return (_codecs.encode, ("x", "rot13"))

    path = tmp_path / "b"
    path.write_bytes(pickle.dumps({b"data": Sneaky()}, protocol=2))
    with pytest.raises(InputError, match="rot13"):
        read_batch(path)


def test_batch_with_wrong_contents_says_what_is_wrong(tmp_path: Path) -> None:
    p = tmp_path / "b"
    p.write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(InputError, match=r"N×3072 uint8"):
        read_batch(p)
    p.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 11]}))
    with pytest.raises(InputError, match=r"0\.\.9"):
        read_batch(p)
    p.write_bytes(b"not a pickle at all")
    with pytest.raises(InputError, match="not a CIFAR-10 python batch file"):
        read_batch(p)


def test_missing_cifar10_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"cifar-10-python\.tar\.gz"):
        load_dataset("cifar10", tmp_path)
    with pytest.raises(InputError, match="needs --data-dir"):
        load_dataset("cifar10", None)
    with pytest.raises(InputError, match="unknown dataset"):
        load_dataset("mnist")


def test_embedded_dataset_is_small_packaged_and_balanced() -> None:
    assert EMBEDDED_PATH.stat().st_size < 300_000
    data = load_dataset("embedded")
    assert (len(data.train), len(data.valid), len(data.test)) == (1197, 300, 300)
    assert data.image_shape == (3, 32, 32) and data.num_classes == 10
    for split in (data.train, data.valid, data.test):
        counts = np.bincount(split.labels, minlength=10)
        assert counts.min() >= 0.8 * counts.mean()  # stratified
        assert split.images.max() == 255 and split.images.min() == 0
    # no image appears in two splits
    keys = [{s.tobytes() for s in split.images} for split in (data.train, data.valid, data.test)]
    assert not (keys[1] & keys[2]) and len(keys[0] & keys[1]) <= 2  # optdigits has a few duplicates
    assert (EMBEDDED_PATH.parent / "README.md").read_text().count("CC BY 4.0") >= 1
