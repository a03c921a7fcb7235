"""The grid carbon intensity a run's EC-NAS record columns are computed with (gCO2/kWh)."""

from __future__ import annotations

from typing import Any

from ecnas.errors import InputError

# the dirtiest grids are about 1000 g/kWh (coal); twice that is a unit slip, not a grid
MAX_CARBON_INTENSITY = 2000.0


def check_carbon_intensity(value: Any) -> float | None:
    """A grid carbon intensity (gCO2/kWh) as a float, None for none; InputError otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not 0 <= value <= MAX_CARBON_INTENSITY:  # NaN fails this too
        raise InputError(f"carbon intensity must be a number from 0 to "
                         f"{MAX_CARBON_INTENSITY:g} gCO2/kWh (coal is about 1000), got {value!r}")
    return float(value)
