"""pyRAPL adapter (optional extra ``ecnas[pyrapl]``), registered only when pyRAPL is installed.

It exists for labs that already standardised on pyRAPL. The sysfs :class:`RaplMeter` stays the
default because pyRAPL does not handle counter wraparound (a window across a wrap comes out
wrong, by up to the counter's range), reads ``/sys/class/powercap`` without a root prefix
(no containers with the host's sysfs elsewhere), and has had no release since 2019.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ecnas.errors import MeterUnavailable
from ecnas.meters.base import Meter, MeterStatus, Reading, Status
from ecnas.meters.poller import EventLog


def installed() -> bool:
    """Whether pyRAPL can be imported (checked without importing it)."""
    from importlib.util import find_spec

    return find_spec("pyRAPL") is not None


class PyRaplMeter(Meter):
    """CPU package and DRAM energy through pyRAPL's ``Sensor`` (measured, no wrap handling)."""

    name = "pyrapl"
    estimated = False

    def __init__(self) -> None:
        self._sensor: Any = None
        self._problem = ""
        self._base: list[float] | None = None
        self._last: list[float] | None = None
        self._lock = threading.Lock()
        self._log = EventLog(maxlen=64)

    def _open(self) -> Any:
        if self._sensor is None and not self._problem:
            try:
                import pyRAPL
            except ImportError:
                self._problem = "pyRAPL is not installed (pip install 'ecnas[pyrapl]')"
                return None
            try:
                self._sensor = pyRAPL.Sensor()
            except pyRAPL.PyRAPLException as exc:
                self._problem = f"pyRAPL cannot read RAPL here: {type(exc).__name__} {exc}"
            except OSError as exc:  # pyRAPL opens sysfs files itself
                self._problem = f"pyRAPL cannot read RAPL here: {exc}"
        return self._sensor

    def _names(self, values: list[float]) -> list[str | None]:
        # pyRAPL's layout: [pkg socket 0, dram socket 0, pkg socket 1, ...]; -1 = absent.
        return [None if v < 0 else f"cpu:{i // 2}/{'package' if i % 2 == 0 else 'dram'}"
                for i, v in enumerate(values)]

    def domains(self) -> tuple[str, ...]:
        """``cpu:<socket>/package`` and ``/dram`` for every counter pyRAPL reads."""
        sensor = self._open()
        if sensor is None:
            return ()
        return tuple(n for n in self._names(list(sensor.energy())) if n)

    def status(self) -> MeterStatus:
        if self._open() is None:
            return MeterStatus(self.name, Status.UNAVAILABLE, reason=self._problem,
                               fix="use the default 'rapl' meter; see its status for access")
        return MeterStatus(self.name, Status.MEASURED, domains=self.domains(),
                           reason="pyRAPL Sensor (no wraparound handling: prefer 'rapl')")

    def read(self) -> Reading:
        """Joules per domain since the first read; a counter that went back is an event, not
        corrected."""
        sensor = self._open()
        if sensor is None:
            raise MeterUnavailable(self._problem)
        with self._lock:
            now = time.monotonic()
            values = [float(v) for v in sensor.energy()]
            if self._base is None:
                self._base = values
            if self._last is not None and any(
                    v < last for v, last in zip(values, self._last, strict=False) if v >= 0):
                self._log.add("pyrapl: a counter went backwards (a wrap pyRAPL does not "
                              "correct): this window is wrong", now)
            self._last = values
            out = {}
            for name, v, b in zip(self._names(values), values, self._base, strict=False):
                if name:
                    out[name] = (v - b) * 1e-6
        return Reading(now, out)

    def min_window_s(self, domain: str) -> float:
        """RAPL counters update about every millisecond."""
        return 0.001

    def events(self, since: float) -> tuple[str, ...]:
        return self._log.since(since)
