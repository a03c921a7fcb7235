"""CIFAR-10 from the local "python version" batch files, unpickled with a restricted unpickler.

The files (``data_batch_1`` … ``data_batch_5``, ``test_batch``) are pickled dicts with ``data``
(N×3072 uint8, channel-major 32×32) and ``labels``. Pickle can run arbitrary code, so
:class:`BatchUnpickler` resolves only the globals a numpy array needs to be rebuilt and refuses
everything else; the result is then checked field by field.

Split as in NAS-Bench-101: ``data_batch_1``–``4`` train (40,000), ``data_batch_5`` validation
(10,000), ``test_batch`` test (10,000).
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ecnas.errors import InputError
from ecnas.trainer.data.base import ImageData, Split

TRAIN_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4")
VALID_FILES = ("data_batch_5",)
TEST_FILES = ("test_batch",)
SUBDIR = "cifar-10-batches-py"  # what the official archive unpacks to
HOW_TO_GET = (
    "on a machine with internet access download cifar-10-python.tar.gz from "
    "https://www.cs.toronto.edu/~kriz/cifar.html, unpack it (tar xzf cifar-10-python.tar.gz) "
    f"and pass the folder {SUBDIR}/ (or its parent) as --data-dir; nothing is downloaded at "
    "run time"
)

# (module, name) pairs a pickled numpy uint8 array needs, across numpy 1.x and 2.x
_ALLOWED = frozenset({
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
})


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    # Python 3 writes an array's bytes in protocol-2 pickles as _codecs.encode(str, "latin1");
    # only that exact call is honoured, never another codec.
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


class BatchUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and plain containers, and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        """Allow only the numpy globals an array needs (and ``_codecs.encode`` with latin1,
        which Python 3 pickles of arrays use); anything else is refused with an
        UnpicklingError."""
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        raise pickle.UnpicklingError(
            f"refused global {module}.{name}: a CIFAR-10 batch file holds only arrays, "
            "labels and names")


def read_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) int64 of one batch file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise InputError(f"{path}: CIFAR-10 batch file not found; {HOW_TO_GET}") from exc
    try:
        # encoding="bytes": the official files were pickled by Python 2 (keys are bytes)
        obj = BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        if str(exc).startswith("refused"):
            raise InputError(f"{path}: not loaded: {exc}") from exc
        raise InputError(f"{path}: not a CIFAR-10 python batch file ({exc})") from exc
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            UnicodeDecodeError, MemoryError) as exc:
        raise InputError(f"{path}: not a CIFAR-10 python batch file "
                         f"({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, dict):
        raise InputError(f"{path}: expected a pickled dict, found {type(obj).__name__}")
    data = _field(obj, "data", path)
    labels = _field(obj, "labels", path)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise InputError(f"{path}: 'data' must be an N×3072 uint8 array, got "
                         f"{type(data).__name__} {getattr(data, 'dtype', '')} {shape}")
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path}: 'labels' must be integers ({exc})") from exc
    if y.shape != (data.shape[0],):
        raise InputError(f"{path}: {data.shape[0]} images but {y.size} labels")
    if y.size and (y.min() < 0 or y.max() > 9):
        raise InputError(f"{path}: labels must lie in 0..9, found {y.min()}..{y.max()}")
    return np.ascontiguousarray(data.reshape(-1, 3, 32, 32)), y


def _field(obj: dict, key: str, path: Path) -> Any:
    for k in (key.encode(), key):
        if k in obj:
            return obj[k]
    raise InputError(f"{path}: batch dict has no {key!r} key (keys: "
                     f"{', '.join(sorted(str(k) for k in obj))})")


def find_batch_dir(data_dir: str | Path) -> Path:
    """``data_dir`` itself or its ``cifar-10-batches-py`` folder, whichever holds the files."""
    root = Path(data_dir)
    if not root.is_dir():
        raise InputError(f"--data-dir {root}: no such folder; {HOW_TO_GET}")
    for candidate in (root, root / SUBDIR):
        if all((candidate / f).is_file() for f in TRAIN_FILES + VALID_FILES + TEST_FILES):
            return candidate
    missing = [f for f in TRAIN_FILES + VALID_FILES + TEST_FILES if not (root / f).is_file()]
    raise InputError(f"--data-dir {root}: CIFAR-10 batch files missing ({', '.join(missing)}); "
                     f"{HOW_TO_GET}")


def _concat(folder: Path, names: tuple[str, ...]) -> Split:
    parts = [read_batch(folder / n) for n in names]
    return Split(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))


def load_cifar10(data_dir: str | Path) -> ImageData:
    """CIFAR-10 split 40k / 10k / 10k (NAS-Bench-101's split) from local batch files."""
    folder = find_batch_dir(data_dir)
    return ImageData("cifar10", _concat(folder, TRAIN_FILES), _concat(folder, VALID_FILES),
                     _concat(folder, TEST_FILES), num_classes=10, source=str(folder))
