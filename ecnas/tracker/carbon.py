"""The grid carbon intensity a run's EC-NAS record columns are computed with (gCO2/kWh)."""

from __future__ import annotations

import math
from typing import Any

from ecnas.errors import InputError


def check_carbon_intensity(value: Any) -> float | None:
    """A grid carbon intensity (gCO2/kWh) as a float, None for none; InputError otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value < 0:
        raise InputError(f"carbon intensity must be a number ≥ 0 (gCO2/kWh), got {value!r}")
    return float(value)
