"""Physical ranges of a calibration: what a gain, an offset and a date can be.

A gain is the ratio of a reference meter's watts to the device's own reading. Meters that
work disagree by percent, not by factors: a gain of 1000 or 0.001 is a log in milliwatts or
kilowatts, and 1170 is that plus a 17 % error. An offset is power the counter does not see:
against a wall meter the rest of the machine (board, disks, fans; up to kilowatts on a large
node), against a device-level reference a few watts either way. A large negative offset is
power the counter saw and nothing drew: −500 W is a fit that went wrong. A calibration's date
is in the past.
"""

from __future__ import annotations

import datetime as _dt

#: a working meter's gain against a reference (× or ÷ 2 at the very worst)
GAIN_RANGE = (0.5, 2.0)
#: offset_w (watts): from a small negative (fit noise, a counter reading a little high) to the
#: unmetered rest of a large node behind a wall meter
OFFSET_RANGE_W = (-100.0, 5000.0)
#: the oldest calibration date accepted (older dates are typos: 1924 for 2024)
OLDEST_DATE = _dt.date(2000, 1, 1)


def gain_problem(gain: float) -> str | None:
    """Why ``gain`` is outside the physical range (None when inside)."""
    lo, hi = GAIN_RANGE
    if lo <= gain <= hi:
        return None
    hint = ""
    if 300 <= gain <= 3000:
        hint = " (a reference in milliwatts?)"
    elif 3e-4 <= gain <= 3e-3:
        hint = " (a reference in kilowatts?)"
    return f"gain {gain:.6g} is outside {lo:g}..{hi:g}, no working meter is that far off{hint}"


def offset_problem(offset_w: float) -> str | None:
    """Why ``offset_w`` (watts) is outside the physical range: below it, power the counter saw
    and nothing drew; above it, more than a whole node draws unmetered. None when inside."""
    lo, hi = OFFSET_RANGE_W
    if lo <= offset_w <= hi:
        return None
    what = ("power the counter saw and nothing drew" if offset_w < lo
            else "more than a whole node draws unmetered")
    return f"offset_w {offset_w:.6g} W is outside {lo:g}..{hi:g} W, {what}"


def date_problem(text: str, today: _dt.date | None = None) -> str | None:
    """Why a calibration date is not a past date (None when it is)."""
    try:
        day = _dt.date.fromisoformat(text[:10])
    except ValueError:
        return f"{text!r} is not an ISO date (YYYY-MM-DD)"
    today = today or _dt.date.today()
    if day > today + _dt.timedelta(days=1):  # a day of slack for time zones
        return f"{text} is in the future"
    if day < OLDEST_DATE:
        return f"{text} is before {OLDEST_DATE.isoformat()}"
    return None
