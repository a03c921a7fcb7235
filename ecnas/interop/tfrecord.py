"""TFRecord files (NAS-Bench-101 / EC-NAS framing) without TensorFlow.

Framing per record: ``uint64 length`` (little-endian), ``uint32 masked CRC32C(length bytes)``,
the data, ``uint32 masked CRC32C(data)``. EC-NAS's data is UTF-8 JSON
``[hash, epochs, adjacency 0/1 string, "op,op,…", base64(ModelMetricsEnergy)]``, one record per
(architecture, budget, repeat); repeats of one (hash, epochs) follow in file order.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ecnas.errors import InputError
from ecnas.interop.convert import RunInput, runs_to_table
from ecnas.interop.crc32c import crc32c, crc32c_many, mask
from ecnas.interop.proto import DecodeError, ModelMetricsEnergy
from ecnas.outputs import atomic_open

_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
#: records checksummed together (bounded memory, vectorized CRC)
_BATCH_BYTES = 4 << 20


def _frame(data: bytes) -> bytes:
    header = _U64.pack(len(data))
    return (header + _U32.pack(mask(crc32c(header))) + data + _U32.pack(mask(crc32c(data))))


def frame_records(records: Iterable[bytes]) -> bytes:
    """The TFRecord bytes of ``records`` (CRCs computed in vectorized batches)."""
    datas = [bytes(r) for r in records]
    headers = [_U64.pack(len(d)) for d in datas]
    hcrc = np.asarray(mask(crc32c_many(headers)))
    dcrc = np.asarray(mask(crc32c_many(datas)))
    out = bytearray()
    for h, hc, d, dc in zip(headers, hcrc, datas, dcrc, strict=True):
        out += h + _U32.pack(int(hc)) + d + _U32.pack(int(dc))
    return bytes(out)


def write_records(path: str | Path, records: Iterable[bytes]) -> Path:
    """Write ``records`` as a TFRecord file, atomically (temp file, then rename)."""
    p = Path(path)
    if not p.parent.exists():
        raise InputError(f"{p}: folder {p.parent} does not exist")
    with atomic_open(p, "wb") as fh:
        batch: list[bytes] = []
        size = 0
        for r in records:
            batch.append(bytes(r))
            size += len(r)
            if size >= _BATCH_BYTES:
                fh.write(frame_records(batch))
                batch, size = [], 0
        fh.write(frame_records(batch))
    return p


def _verify(name: str, offsets: list[int], datas: list[bytes], dcrcs: list[int]) -> None:
    bad_d = np.nonzero(np.asarray(mask(crc32c_many(datas))) != np.array(dcrcs, dtype=np.uint32))[0]
    if bad_d.size:
        i = int(bad_d[0])
        raise InputError(f"{name}: record at byte {offsets[i]}: data CRC mismatch "
                         "(corrupt TFRecord)")


def iter_records(source: str | Path | bytes, *, verify: bool = True) -> Iterator[bytes]:
    """Yield each record's data; CRCs are verified (in batches) before a batch is yielded.

    ``source`` is a path or the file's bytes. A truncated file or a CRC mismatch raises
    ``InputError`` naming the file and the byte offset.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        buf, name = bytes(source), "TFRecord bytes"
    else:
        p = Path(source)
        if not p.is_file():
            raise InputError(f"{p}: no such file")
        buf, name = p.read_bytes(), str(p)
    pos, end = 0, len(buf)
    offsets: list[int] = []
    datas: list[bytes] = []
    dcrcs: list[int] = []
    size = 0
    while pos < end:
        if pos + 12 > end:
            raise InputError(f"{name}: truncated record header at byte {pos} "
                             f"({end - pos} bytes left, 12 needed)")
        header = buf[pos:pos + 8]
        (length,) = _U64.unpack(header)
        (hcrc,) = _U32.unpack_from(buf, pos + 8)
        if verify and mask(crc32c(header)) != hcrc:
            # checked at once: a corrupt length would send us anywhere in the file
            raise InputError(f"{name}: record at byte {pos}: length CRC mismatch (corrupt TFRecord)")
        start = pos + 12
        if start + length + 4 > end:
            raise InputError(f"{name}: truncated record at byte {pos} (length {length}, "
                             f"{end - start} bytes left)")
        offsets.append(pos)
        datas.append(buf[start:start + length])
        dcrcs.append(_U32.unpack_from(buf, start + length)[0])
        size += length
        pos = start + length + 4
        if size >= _BATCH_BYTES:
            if verify:
                _verify(name, offsets, datas, dcrcs)
            yield from datas
            offsets, datas, dcrcs, size = [], [], [], 0
    if verify:
        _verify(name, offsets, datas, dcrcs)
    yield from datas


@dataclass(frozen=True)
class EcnasRecord:
    """One EC-NAS TFRecord entry: architecture, budget and its metrics."""

    arch_hash: str
    epochs: int
    adjacency: str  # row-major 0/1 string (as stored; may be unpruned)
    ops: str  # comma-separated op labels
    metrics: ModelMetricsEnergy

    def to_bytes(self) -> bytes:
        """The record as EC-NAS stores it in a TFRecord: the JSON list ``[hash, epochs,
        adjacency, ops, base64 proto]``."""
        payload = base64.b64encode(self.metrics.to_bytes()).decode("ascii")
        return json.dumps([self.arch_hash, self.epochs, self.adjacency, self.ops, payload]).encode()

    @classmethod
    def from_bytes(cls, data: bytes, *, where: str = "record") -> EcnasRecord:
        """Parse one TFRecord entry written by EC-NAS (or :meth:`to_bytes`); anything else is an
        :class:`~ecnas.errors.InputError` naming ``where``."""
        try:
            item = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{where}: not EC-NAS JSON ({exc})") from None
        if not (isinstance(item, list) and len(item) == 5):
            raise InputError(f"{where}: expected [hash, epochs, adjacency, ops, base64 proto], "
                             f"got {str(item)[:60]!r}")
        h, epochs, adjacency, ops, payload = item
        if not isinstance(h, str) or not isinstance(adjacency, str) or not isinstance(ops, str):
            raise InputError(f"{where}: hash, adjacency and ops must be strings")
        if isinstance(epochs, bool) or not isinstance(epochs, (int, float)) or epochs != int(epochs):
            raise InputError(f"{where}: epochs {epochs!r} is not an integer")
        try:
            raw = base64.b64decode(payload, validate=True)
        except (binascii.Error, TypeError, ValueError) as exc:
            raise InputError(f"{where}: proto payload is not base64 ({exc})") from None
        try:
            metrics = ModelMetricsEnergy.from_bytes(raw)
        except DecodeError as exc:
            raise InputError(f"{where} (hash {h}): {exc}") from None
        return cls(h, int(epochs), adjacency, ops, metrics)


def read_ecnas_records(path: str | Path | bytes) -> Iterator[EcnasRecord]:
    """Decoded EC-NAS records of a TFRecord file."""
    name = "TFRecord bytes" if isinstance(path, (bytes, bytearray)) else str(path)
    for i, data in enumerate(iter_records(path)):
        yield EcnasRecord.from_bytes(data, where=f"{name}: record {i}")


def records_to_table(records: Iterable[EcnasRecord | bytes], *,
                     flags: Sequence[tuple[bool | None, tuple[str, ...]]] | None = None,
                     **kwargs: Any) -> Any:
    """The energy table of EC-NAS records (decoded or raw); see ``ecnas.interop.convert``.

    ``flags`` gives, per record, (estimated, meters) as a sidecar recorded them; without it
    every record's measured/estimated flag is unknown (the format has no field for it)."""
    seen: dict[tuple[str, int], int] = {}
    digests: dict[bytes, int] = {}
    runs = []
    for i, rec in enumerate(records):
        r = rec if isinstance(rec, EcnasRecord) else EcnasRecord.from_bytes(rec, where=f"record {i}")
        # two runs never log the same metrics to the bit (timestamps, energies): a record equal
        # to an earlier one is that record twice, never a second repeat
        digest = hashlib.sha256(r.to_bytes()).digest()
        if digest in digests:
            raise InputError(f"record {i} (hash {r.arch_hash}, {r.epochs} epochs): the same as "
                             f"record {digests[digest]}, a duplicated record, not another repeat")
        digests[digest] = i
        key = (r.arch_hash, r.epochs)
        seen[key] = seen.get(key, 0) + 1
        est, meters = flags[i] if flags is not None and i < len(flags) else (None, ())
        runs.append(RunInput(r.arch_hash, r.adjacency, r.ops, r.epochs, seen[key], r.metrics,
                             where=f"record {i} (hash {r.arch_hash})", estimated=est,
                             meters=meters))
    kwargs.setdefault("source_kind", "tfrecord")
    return runs_to_table(runs, **kwargs)
