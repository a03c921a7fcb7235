"""Model files as data: one ``.npz`` holding named float arrays plus a JSON header.

The header (``__meta__``, UTF-8 JSON stored as a uint8 array) says what the file is, which
format version, and everything that is not an array. Reading uses ``allow_pickle=False``:
a file cannot run code, whatever it contains.
"""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ecnas.errors import InputError
from ecnas.outputs import atomic_open

FORMAT = "ecnas-surrogate/1"
_META = "__meta__"


def write_model(path: str | Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path:
    """Write atomically (temp file + rename) so a crash never leaves half a model."""
    p = Path(path)
    if not p.parent.exists():
        raise InputError(f"{p}: folder {p.parent} does not exist")
    if _META in arrays:
        raise InputError(f"array name {_META!r} is reserved")
    header = dict(meta, format=FORMAT)
    payload: dict[str, Any] = {_META: np.frombuffer(json.dumps(header, allow_nan=False).encode(), dtype=np.uint8)}
    for name, arr in arrays.items():
        a = np.asarray(arr)
        if a.dtype == object:
            raise InputError(f"array {name!r} has dtype object: model files hold numbers only")
        payload[name] = a
    with atomic_open(p, "wb") as fh:
        np.savez_compressed(fh, **payload)
    return p


#: a model file is KBs to a few MBs; anything claiming more is refused before it is read
MAX_BYTES = 64 << 20
#: array dtypes a model file may hold (bool, integers, floats): never objects or strings
_KINDS = "biuf"


def _read_member(z: zipfile.ZipFile, info: zipfile.ZipInfo, p: Path) -> np.ndarray:
    """One ``.npy`` member, its header checked against its size before any data is read."""
    fmt = np.lib.format
    with z.open(info) as fh:
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(fh)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = fmt.read_array_header_2_0(fh)
        else:
            raise ValueError(f"npy format version {version}")
        if dtype.kind not in _KINDS or dtype.fields is not None or dtype.subdtype is not None:
            raise InputError(f"{p}: member {info.filename!r} has dtype {dtype}: model files "
                             "hold numbers only")
        count = 1
        for n in shape:
            count *= int(n)
        need = count * dtype.itemsize
        header = fh.tell()
        if header + need != info.file_size:
            raise InputError(f"{p}: member {info.filename!r} claims shape {tuple(shape)} "
                             f"({need} bytes) but holds {info.file_size - header}")
        data = fh.read(need + 1)
    if len(data) != need:
        raise InputError(f"{p}: member {info.filename!r} is truncated")
    arr = np.frombuffer(data, dtype=dtype, count=count)
    return arr.reshape(shape, order="F" if fortran else "C")


def read_model(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a model file as data, bounded: member sizes, dtypes and shapes are checked
    from the archive's directory and each array's header before anything is decompressed
    (a zip bomb or a member claiming 745 GiB is refused unread); no pickles."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such model file")
    if p.stat().st_size > MAX_BYTES:
        raise InputError(f"{p}: {p.stat().st_size} bytes; a model file is at most {MAX_BYTES}")
    data = p.read_bytes()
    if not data.startswith(b"PK"):  # npz is a zip archive; anything else is refused unread
        raise InputError(f"{p}: not an ecnas surrogate model file (not an npz archive)")
    arrays: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            members = z.infolist()
            total = sum(i.file_size for i in members)
            if total > MAX_BYTES:
                raise InputError(f"{p}: members unpack to {total} bytes; a model file holds "
                                 f"at most {MAX_BYTES} (refused unread)")
            for info in members:
                if not info.filename.endswith(".npy"):
                    raise InputError(f"{p}: member {info.filename!r} is not an array (not an "
                                     "ecnas surrogate model file)")
                arrays[info.filename[:-4]] = _read_member(z, info, p)
    except InputError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, ValueError, OSError,
            EOFError, NotImplementedError, SyntaxError, RuntimeError) as exc:
        # SyntaxError: a malformed .npy header dict; RuntimeError: an encrypted member
        raise InputError(f"{p}: not an ecnas surrogate model file ({exc})") from None
    raw = arrays.pop(_META, None)
    if raw is None:
        raise InputError(f"{p}: no {_META} header (not an ecnas surrogate model file)")
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise InputError(f"{p}: unreadable header ({type(exc).__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else None
        raise InputError(f"{p}: format {got!r}, expected {FORMAT!r}")
    return meta, arrays
