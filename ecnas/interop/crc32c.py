"""CRC32C (Castagnoli), as TFRecord framing uses it, without a compiled dependency.

Checksumming many short buffers (TFRecord records are ~1 kB) runs in lockstep with numpy: one
table lookup per byte position across all buffers at once, so the Python loop runs once per
byte of the *longest* buffer, not once per byte of the file. ``google_crc32c`` is used when it
happens to be installed; it is not required.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

POLY = 0x82F63B78  # reflected Castagnoli polynomial
MASK_DELTA = 0xA282EAD8


def _make_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(POLY), table >> 1).astype(np.uint32)
    return table


TABLE = _make_table()
_TABLE_LIST = [int(x) for x in TABLE]

try:  # optional accelerator, same results
    import google_crc32c as _google
except ImportError:
    _google = None


def crc32c(data: bytes) -> int:
    """CRC32C of one buffer."""
    if _google is not None:
        return int(_google.value(bytes(data)))
    crc = 0xFFFFFFFF
    table = _TABLE_LIST
    for byte in bytes(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def crc32c_many(buffers: Sequence[bytes]) -> np.ndarray:
    """CRC32C of each buffer (uint32 array), vectorized across buffers."""
    n = len(buffers)
    if n == 0:
        return np.zeros(0, dtype=np.uint32)
    if _google is not None or n == 1:
        return np.array([crc32c(b) for b in buffers], dtype=np.uint32)
    lengths = np.fromiter((len(b) for b in buffers), dtype=np.int64, count=n)
    order = np.argsort(-lengths, kind="stable")  # longest first: the active set is a prefix
    sorted_len = lengths[order]
    width = int(sorted_len[0])
    block = np.zeros((n, max(width, 1)), dtype=np.uint8)
    for row, idx in enumerate(order):
        b = buffers[int(idx)]
        block[row, : len(b)] = np.frombuffer(b, dtype=np.uint8)
    # active[j] = number of buffers longer than j
    active = np.searchsorted(-sorted_len, -np.arange(width), side="left")
    crc = np.full(n, 0xFFFFFFFF, dtype=np.uint32)
    table = TABLE
    for j in range(width):
        k = int(active[j])
        c = crc[:k]
        crc[:k] = table[(c ^ block[:k, j]) & 0xFF] ^ (c >> 8)
    out = np.empty(n, dtype=np.uint32)
    out[order] = crc ^ np.uint32(0xFFFFFFFF)
    return out


def mask(crc: int | np.ndarray) -> int | np.ndarray:
    """TFRecord's masked CRC: rotate right by 15 bits and add a constant (mod 2**32)."""
    if isinstance(crc, np.ndarray):
        c = crc.astype(np.uint64)
        return ((((c >> 15) | (c << 17)) + MASK_DELTA) & 0xFFFFFFFF).astype(np.uint32)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + MASK_DELTA) & 0xFFFFFFFF
