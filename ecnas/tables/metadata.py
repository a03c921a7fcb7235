"""Table-level metadata: devices, facility factor (PUE), provenance.

It lives in ``df.attrs["ecnas"]`` in pandas and, on disk, as JSON under the key ``ecnas`` of
the Parquet file's key-value metadata (CSV: a sidecar ``<table>.csv.meta.json``). Keys with a
meaning the checks rely on:

- ``devices``: ``{"gpu": {"profile": id, "count": n, "names": [...]}, "cpu": {...}}`` — what
  was metered, so the power-bounds check can bound the sum of all metered components;
- ``pue``: the facility factor the source applied (never folded into ``energy_j``) and
  ``energy_includes_pue`` (always false for tables ecnas writes);
- ``component_split``: how component columns were derived when the source had only totals;
- ``provenance``: list of ``{"tool", "source", "created", ...}`` entries, newest last.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping
from typing import Any

from ecnas._version import __version__

KEY = "ecnas"
FORMAT = "ecnas-energy-table/1"


def get_metadata(df: Any) -> dict[str, Any]:
    """The table's metadata (a copy; empty when the table has none)."""
    meta = getattr(df, "attrs", {}).get(KEY) or {}
    return json.loads(json.dumps(meta, default=str))


def set_metadata(df: Any, metadata: Mapping[str, Any] | None) -> Any:
    """Attach ``metadata`` (JSON-able) to ``df`` in place and return ``df``."""
    meta = dict(metadata or {})
    meta.setdefault("format", FORMAT)
    df.attrs[KEY] = json.loads(json.dumps(meta, default=str))
    return df


def provenance_entry(tool: str, source: str, **extra: Any) -> dict[str, Any]:
    """One provenance record: what produced the table, from what, and when (UTC)."""
    return {"tool": tool, "ecnas_version": __version__, "source": source,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **extra}


def merge_metadata(base: Mapping[str, Any], extra: Mapping[str, Any] | None) -> dict[str, Any]:
    """``base`` updated with ``extra``; provenance lists are concatenated, not replaced."""
    out = dict(base)
    for key, value in (extra or {}).items():
        if key == "provenance" and isinstance(value, list):
            out["provenance"] = list(out.get("provenance", [])) + [
                v for v in value if v not in out.get("provenance", [])]
        else:
            out[key] = value
    return out
