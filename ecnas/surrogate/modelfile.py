"""Model files as data: one ``.npz`` holding named float arrays plus a JSON header.

The header (``__meta__``, UTF-8 JSON stored as a uint8 array) says what the file is, which
format version, and everything that is not an array. Reading uses ``allow_pickle=False``:
a file cannot run code, whatever it contains.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ecnas.errors import InputError

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
    payload = {_META: np.frombuffer(json.dumps(header, allow_nan=False).encode(), dtype=np.uint8)}
    for name, arr in arrays.items():
        a = np.asarray(arr)
        if a.dtype == object:
            raise InputError(f"array {name!r} has dtype object: model files hold numbers only")
        payload[name] = a
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, **payload)
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return p


def read_model(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such model file")
    data = p.read_bytes()
    if not data.startswith(b"PK"):  # npz is a zip archive; anything else is refused unread
        raise InputError(f"{p}: not an ecnas surrogate model file (not an npz archive)")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise InputError(f"{p}: not an ecnas surrogate model file ({exc})") from None
    odd = [k for k, v in arrays.items() if not isinstance(v, np.ndarray)]
    if odd:  # numpy hands back members that are not .npy data as raw bytes
        raise InputError(f"{p}: member {odd[0]!r} is not an array (not an ecnas surrogate model file)")
    raw = arrays.pop(_META, None)
    if raw is None:
        raise InputError(f"{p}: no {_META} header (not an ecnas surrogate model file)")
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{p}: unreadable header ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else None
        raise InputError(f"{p}: format {got!r}, expected {FORMAT!r}")
    return meta, arrays
