"""Physical ranges: what a calibration (gain, offset, date), a profile's watts, a table row's
mean power and a CPU-model pattern can be.

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
import re

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


# ---------------------------------------------------------------- power and energy
# One set of plausibility bounds, shared by ``ecnas profile validate`` (a profile's watts),
# ``ecnas check`` (a table's mean power per row) and ``ecnas contribution verify`` (both, on a
# stranger's profile and table) and ``ecnas surrogate transfer`` (its input tables).

#: the most one device (a profile's tdp_w, idle_w, max_w, per_core_w) may draw: the largest
#: accelerator modules draw ~1.2 kW (B200/GB200 per GPU, MI355X 1.4 kW), a 2-socket board's
#: CPU package well under 1 kW; 5 kW leaves room for what comes next and refuses typos
#: (1e300, watts in milliwatts)
MAX_DEVICE_W = 5000.0
#: the most any table row may average over its run, whatever its device (a profile or none):
#: a rack of such devices. Energies ×1e15 (1e16 J in 2 s) are far above it
MAX_ROW_POWER_W = 100_000.0
#: a table row's energy when its run has no times (imported): a year of MAX_ROW_POWER_W
MAX_ROW_ENERGY_J = MAX_ROW_POWER_W * 365 * 86400


def watts_problem(watts: float) -> str | None:
    """Why a device power (watts) from a profile is not plausible (None when it is)."""
    if watts > MAX_DEVICE_W:
        return (f"{watts:.6g} W is above {MAX_DEVICE_W:g} W, more than any single device "
                "draws (a typo, or milliwatts?)")
    return None


# ---------------------------------------------------------------- match patterns
#: a quantifier: *, +, ?, {n}, {n,}, {n,m} (optionally lazy or possessive)
_QUANT = re.compile(r"(?:[*+?]|\{\d*,?\d*\})[?+]?")


def pattern_problem(pattern: str) -> str | None:
    """Why a profile's CPU-model regular expression could backtrack catastrophically (None when
    it cannot): a quantified group that itself holds a quantifier, as in ``(a+)+$`` or
    ``(\\w*x?)*``. A static check on the pattern's text, deterministic and instant: matching
    runs on every device a profile is tried against, where a pattern that takes minutes on a
    crafted model name would hang ``ecnas hardware`` and ``measure()``."""
    if len(pattern) > 500:
        return f"pattern is {len(pattern)} characters (at most 500)"
    stack: list[bool] = []  # per open group: does it hold a quantifier?
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":  # an escape is one atom, which a quantifier may follow
            i += 2
            quant = _QUANT.match(pattern, i)
            if quant:
                if stack:
                    stack[-1] = True
                i = quant.end()
            continue
        if ch == "[":  # a character class: quantifier characters inside are literals
            j = i + 1
            if j < n and pattern[j] == "^":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 2 if pattern[j] == "\\" else 1
            i = j + 1
            quant = _QUANT.match(pattern, i)
            if quant and stack:
                stack[-1] = True
            if quant:
                i = quant.end()
            continue
        if ch == "(":
            stack.append(False)
            i += 1
            if i < n and pattern[i] == "?":  # (?:, (?i), (?P<name> …: not a quantifier
                i += 1
            continue
        if ch == ")":
            inner = stack.pop() if stack else False
            i += 1
            quant = _QUANT.match(pattern, i)
            if quant:
                if inner and quant.group() not in ("?", "??", "?+"):
                    return (f"{pattern!r} repeats a group that itself repeats (nested "
                            "quantifiers): matching can take exponential time; write it "
                            "without the nesting")
                i = quant.end()
            if stack and (inner or quant):
                stack[-1] = True
            continue
        i += 1
        quant = _QUANT.match(pattern, i)
        if quant:
            if stack:
                stack[-1] = True
            i = quant.end()
    return None
