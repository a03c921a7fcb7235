"""``<file>.tfrecord.ecnas.json``: what EC-NAS's TFRecord format cannot say about its records.

EC-NAS's ``ModelMetricsEnergy`` has no field for "this energy was estimated": a record written
from a CPU-time estimate reads exactly like one measured by carbontracker. ``ecnas export
--format ecnas-tfrecord`` therefore writes, beside the file, a small JSON sidecar with one
entry per record in file order (hash, epochs, repeat, device, ``estimated``, the table's
``source`` and its meters) and the SHA-256 of the TFRecord it describes; ``ecnas
import-ecnas`` / ``ecnas query`` read it back. A TFRecord without a sidecar, or whose sidecar
describes another file (the digest differs), is read as *unknown*: the table's metadata says
``estimated_unknown``, and ``query``, ``import-ecnas`` and ``check`` say "unknown", never
"measured".
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecnas.errors import InputError
from ecnas.outputs import sha256_file, write_json

FORMAT = "ecnas-tfrecord-sidecar/1"
SUFFIX = ".ecnas.json"


def sidecar_path(tfrecord: str | Path) -> Path:
    """The sidecar of ``tfrecord``: the same name with ``.ecnas.json`` appended."""
    p = Path(tfrecord)
    return p.with_name(p.name + SUFFIX)


@dataclass(frozen=True)
class RecordFlags:
    """What the sidecar says about one record: estimated or measured, by which meters."""

    estimated: bool
    source: str
    meters: tuple[str, ...] = ()


@dataclass(frozen=True)
class Sidecar:
    """A sidecar read back: one :class:`RecordFlags` per record, or ``None`` with the reason
    why nothing is known (no sidecar, another file's sidecar, unreadable)."""

    flags: tuple[RecordFlags, ...] | None
    reason: str = ""


def write_sidecar(tfrecord: str | Path, entries: Sequence[dict[str, Any]], *,
                  meters: Sequence[str], estimated_because: Sequence[str]) -> Path:
    """Write the sidecar of the (already written) ``tfrecord``; ``entries`` one per record."""
    p = Path(tfrecord)
    n_est = sum(1 for e in entries if e["estimated"])
    doc = {
        "format": FORMAT,
        "tfrecord": p.name,
        "tfrecord_sha256": sha256_file(p),
        "note": "EC-NAS's TFRecord format has no field for estimated energy: this file says, "
                "per record in file order, whether its energy was measured or estimated",
        "records": len(entries),
        "records_estimated": n_est,
        "meters": list(meters),
        "estimated_because": list(estimated_because),
        "entries": list(entries),
    }
    return write_json(sidecar_path(p), doc, indent=1)


def read_sidecar(tfrecord: str | Path, n_records: int) -> Sidecar:
    """The flags of ``tfrecord``'s ``n_records`` records from its sidecar, or why none are known.

    A sidecar that is not JSON or not this format is bad input (one line); one that describes
    another file (digest or record count differ) is ignored, with the reason, so that a
    TFRecord replaced after its export is read as unknown rather than mislabelled."""
    p = Path(tfrecord)
    side = sidecar_path(p)
    if not side.is_file():
        return Sidecar(None, f"no sidecar {side.name}")
    try:
        doc = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{side}: not a readable sidecar ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InputError(f"{side}: not an ecnas TFRecord sidecar (format {FORMAT!r} expected)")
    if doc.get("tfrecord_sha256") != sha256_file(p):
        return Sidecar(None, f"{side.name} describes another file (SHA-256 differs)")
    entries = doc.get("entries")
    if not isinstance(entries, list) or len(entries) != n_records:
        return Sidecar(None, f"{side.name} lists {len(entries) if isinstance(entries, list) else 0}"
                             f" records, the file holds {n_records}")
    meters = tuple(str(m) for m in doc.get("meters") or ())
    if any(isinstance(e, dict) and e.get("estimated", False) is None for e in entries):
        # written from a table that did not know either: it stays unknown
        return Sidecar(None, f"{side.name} says measured or estimated is unknown")
    try:
        flags = tuple(RecordFlags(bool(e["estimated"]), str(e.get("source", "measured")), meters)
                      for e in entries)
    except (KeyError, TypeError):
        raise InputError(f"{side}: an entry without 'estimated'") from None
    return Sidecar(flags)
