"""Running energy totals of one GPU, apart from the calls that read the device.

A GPU meter reads either an energy counter or a power value; what turns those reads into joules
since the meter started is the same for every vendor and lives here, as Zeus keeps device calls
(``zeus/device/``) apart from integration (``zeus/monitor/``) — without Zeus's GPU-only total:
each domain keeps its own total and the monitor adds CPU and GPU domains.

- :class:`CounterTotal`: a monotone counter in device units (NVML: mJ; amdsmi: accumulator
  counts of a resolution given by the board). The first read is the base; later reads add their
  difference. A decrease is a wrap of a ``wrap_bits`` counter when that implies at most
  ``max_plausible_w``, else a reset (the driver reloaded, the counter restarted from 0):
  counting goes on from 0 and the update says so.
- :class:`PowerIntegral`: power in watts, integrated with the trapezoid rule between reads.

Both are mutable, unlocked and cheap (one call per GPU per window edge); the meter that owns
them holds its lock while it updates them.
"""

from __future__ import annotations

from typing import Protocol


class Accumulator(Protocol):
    """What a GPU meter keeps per domain: the joules so far, and an update per read."""

    energy_j: float
    last_t: float

    def update(self, value: float, now: float) -> str:
        """Take a read made at ``now`` (monotonic seconds); a note for the meter's warnings
        when the read could not simply be added (a reset), else ""."""
        ...  # pragma: no cover


class CounterTotal:
    """Joules from an energy counter: differences of reads, scaled, wraps and resets handled.

    ``units_per_j``: counter units per joule (NVML 1000: mJ; amdsmi 1e6 / its resolution in µJ,
    set once the first read tells it); ``unit``: named in the reset note ("mJ" or "").
    ``wrap_bits``: the counter's width when it wraps (amdsmi's 32-bit accumulator), None when it
    never does in practice (NVML's 64-bit mJ). A decrease counts as a wrap only when the energy
    it implies over the time since the last read stays at or under ``max_plausible_w``.
    """

    __slots__ = ("units_per_j", "unit", "wrap_bits", "max_plausible_w", "counts", "last",
                 "energy_j", "last_t", "started")

    def __init__(self, units_per_j: float, *, unit: str = "", wrap_bits: int | None = None,
                 max_plausible_w: float = float("inf")) -> None:
        self.units_per_j = units_per_j
        self.unit = unit
        self.wrap_bits = wrap_bits
        self.max_plausible_w = max_plausible_w
        self.counts: float = 0  # counter units since the first read, wrap- and reset-corrected
        self.last: float = 0  # the previous read
        self.energy_j = 0.0
        self.last_t = 0.0
        self.started = False  # False: no read yet (the next one is the base)

    def update(self, value: float, now: float) -> str:
        """Add the counter read ``value`` at ``now``; the reset note when it went back and no
        plausible wrap explains it, else ""."""
        note = ""
        if not self.started:
            self.started = True  # the base: nothing counted yet
        elif value >= self.last:
            self.counts += value - self.last  # stays an int for int reads: exact
        else:
            counted, note = self._decrease(value, now)
            self.counts += counted
        self.last = value
        self.last_t = now
        self.energy_j = self.counts / self.units_per_j
        return note

    def _decrease(self, value: float, now: float) -> tuple[float, str]:
        """Counter units since the last read when the counter went back, and the note when that
        was a reset rather than a wrap."""
        if self.wrap_bits is not None and self.last < 2 ** self.wrap_bits:
            wrapped = value + 2 ** self.wrap_bits - self.last
            elapsed = max(now - self.last_t, 1e-9)
            if wrapped / self.units_per_j / elapsed <= self.max_plausible_w:
                return wrapped, ""
        unit = f" {self.unit}" if self.unit else ""
        return value, (f"energy counter went back ({self.last} -> {value}{unit}); "
                       "counting on from 0")


class PowerIntegral:
    """Joules from power reads (watts), by the trapezoid rule between consecutive reads."""

    __slots__ = ("energy_j", "last_w", "last_t")

    def __init__(self) -> None:
        self.energy_j = 0.0
        self.last_w: float | None = None  # None: no read yet
        self.last_t = 0.0

    def update(self, value: float, now: float) -> str:
        """Add the power read ``value`` (W) at ``now``: the trapezoid since the last read.
        Always "" (power has no reset to report)."""
        if self.last_w is not None:
            self.energy_j += 0.5 * (self.last_w + value) * (now - self.last_t)
        self.last_w = value
        self.last_t = now
        return ""
