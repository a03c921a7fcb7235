"""Joules ↔ EC-NAS's published kWh, and the facility factor (PUE) a table records.

The one definition of these conversions: the importer (``tables.convert``), the checks, the
benchmark's queries and the TFRecord export all use them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ecnas.errors import InputError

#: joules in one kWh
KWH_J = 3.6e6


def pue_of(meta: Mapping[str, Any]) -> float:
    """The facility factor a table's metadata records (1.0 when none)."""
    pue = meta.get("pue") if isinstance(meta, Mapping) else None
    f = pue.get("factor") if isinstance(pue, Mapping) else pue
    try:
        f = float(f) if f is not None else 1.0
    except (TypeError, ValueError):
        raise InputError(f"table metadata 'pue': {f!r} is not a number") from None
    if not (f > 0 and math.isfinite(f)):
        raise InputError(f"table metadata 'pue': factor {f} must be a finite number > 0")
    return f


def pue_for(meta: Mapping[str, Any], device: str) -> float:
    """The facility factor of ``device``: a merged multi-device bundle records one per device
    (``pue_by_device``), as each lab's machine room has its own; else the table's."""
    by_device = meta.get("pue_by_device") if isinstance(meta, Mapping) else None
    if isinstance(by_device, Mapping) and device in by_device:
        return pue_of({"pue": by_device[device]})
    return pue_of(meta)


def to_kwh(energy_j: float, pue: float) -> float:
    """Joules (PUE excluded) → kWh with the facility factor re-applied, as EC-NAS publishes.

    The importer computed ``energy_j = kwh * 3.6e6 / pue`` in floats; this returns a float
    that maps back to ``energy_j`` exactly under that formula (of the nearest few floats,
    the one with the shortest decimal form), so an export re-imports losslessly. The round
    trip is not injective (two published kWh can fall on one joule float), which is why the
    importer also keeps the published kWh (``energy_kwh``) and :func:`kwh_of` prefers them.
    """
    k = energy_j * pue / KWH_J
    if not math.isfinite(k):
        return k
    found = []
    for direction in (math.inf, -math.inf):
        x = k
        for _ in range(4):
            if x * KWH_J / pue == energy_j and x not in found:
                found.append(x)
            x = math.nextafter(x, direction)
    if len(found) > 1:
        return min(found, key=lambda x: len(repr(x)))
    return found[0] if found else k


def kwh_of(published: float, energy_j: float, pue: float) -> float:
    """The published kWh of an imported EC-NAS run when the table kept it, else from joules.

    The published value is used only while it still agrees with ``energy_j`` (a table whose
    energies were edited after import must not answer with stale kWh).
    """
    if not math.isnan(published) and abs(published * KWH_J / pue - energy_j) <= 1e-9 * abs(energy_j):
        return published
    return to_kwh(energy_j, pue)
