"""The measuring primitives of ``ecnas calibrate``: read a meter as timed samples, hold a
phase (waiting or burning) while reading it every poll period, probe the counter back to
back, and on a GPU integrate the power reading of the same board next to the counter.

Devices are read only through meters: the meter chosen for the device, and for the GPU power
comparison a second NVML meter on the same board (by UUID, as the first resolved it from
``CUDA_VISIBLE_DEVICES``). No sleeping in a measuring loop: waits are ``Event.wait``.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ecnas.calibration.loads import Burn
from ecnas.calibration.recording import ProbeResult, Sample
from ecnas.errors import InputError
from ecnas.meters.base import DeviceInfo, Meter
from ecnas.meters.nvml import NvmlMeter


class Reader:
    """Reads the meter's calibrated domains as :class:`Sample` s. Host Unix time is the
    reading's own monotonic timestamp plus the clocks' offset, measured once: a time taken
    after the read returns would be late by any preemption in between."""

    def __init__(self, meter: Meter, domains: Sequence[str]) -> None:
        self.meter = meter
        self.domains = tuple(domains)
        best: tuple[float, float] | None = None
        for _ in range(5):
            m0 = time.monotonic()
            wall = time.time()
            m1 = time.monotonic()
            if best is None or m1 - m0 < best[0]:
                best = (m1 - m0, wall - 0.5 * (m0 + m1))
        self.wall_minus_mono = best[1] if best is not None else time.time() - time.monotonic()

    def read(self, phase: str) -> Sample:
        """One reading of the domains, labelled with ``phase``; its host time is the reading's
        own monotonic timestamp plus the offset measured once."""
        reading = self.meter.read()
        return Sample(reading.timestamp + self.wall_minus_mono, reading.timestamp,
                      {d: float(reading.energy_j[d]) for d in self.domains}, phase)


def sample_phase(reader: Reader, duration_s: float, poll_s: float,
                 work: Burn | None = None, *, phase: str = "",
                 start: Sample | None = None) -> list[Sample]:
    """Read the meter every ``poll_s`` for ``duration_s``; run ``work(poll_s)`` in between
    (a burn), or wait (the idle baseline is, by definition, a wait). Continuing from
    ``start`` (the previous phase's last reading) it is not read again."""
    waiter = threading.Event()
    first = start or reader.read(phase)
    samples = [] if start else [first]
    last = first
    end = first.mono_s + duration_s
    while last.mono_s < end:
        step = min(poll_s, max(end - last.mono_s, 0.0))
        if work is None:
            waiter.wait(step)
        else:
            work(step)
        last = reader.read(phase)
        samples.append(last)
    return samples


def probe_counter(reader: Reader, probe_s: float, poll_s: float
                  ) -> tuple[ProbeResult, list[Sample]]:
    """Read back to back: when does the counter move, and by how little at least. Returns
    the probe's result and its readings thinned to one per ``poll_s`` (for the fit)."""
    start = time.monotonic()
    domains = reader.domains
    last = reader.read("probe")
    kept = [last]
    change_times: list[float] = []
    steps: list[float] = []
    reads = 1
    while last.mono_s - start < probe_s:
        now = reader.read("probe")
        reads += 1
        moved = [now.energy_j[d] - last.energy_j[d] for d in domains]
        if any(m != 0 for m in moved):
            change_times.append(now.mono_s)
            steps.extend(m for m in moved if m > 0)
        if now.mono_s - kept[-1].mono_s >= poll_s:
            kept.append(now)
        last = now
    if kept[-1] is not last:
        kept.append(last)
    gaps = [b - a for a, b in zip(change_times, change_times[1:], strict=False)]
    result = ProbeResult(
        update_period_s=statistics.median(gaps) if len(gaps) >= 2 else None,
        resolution_j=min(steps) if steps else None,
        changes=len(change_times), reads=reads, duration_s=last.mono_s - start,
    )
    return result, kept


def _power_meter(meter: Meter, device: DeviceInfo) -> Meter:
    """A second NVML meter polling the power reading of the board ``meter`` resolved for
    ``device`` (by UUID, else its NVML index: never ``gpu:i`` read as an NVML index)."""
    board = device.uuid or device.extra.get("nvml_index")
    if not board:
        raise InputError(f"{meter.name}: {device.domain} has no UUID or NVML index to poll")
    return NvmlMeter(devices=[board], source="power", poll_interval_s=0.05)


@dataclass(frozen=True)
class Polled:
    """The GPU's NVML power reading integrated over the load test: joules, or None with
    ``problem`` saying why it could not be taken (polling failed, too few samples)."""

    energy_j: float | None
    problem: str


def measure_load(reader: Reader, device: DeviceInfo, load_s: float, poll_s: float,
                  burn: Burn, polled: bool, start: Sample
                  ) -> tuple[list[Sample], Polled | None]:
    """The load test; on a GPU the polled power reading is integrated over it alongside."""
    meter = reader.meter
    if not (polled and device.kind == "gpu" and meter.name == "nvml"):
        return sample_phase(reader, load_s, poll_s, burn, phase="load", start=start), None
    try:
        power = _power_meter(meter, device)
        power.start()
    except Exception as exc:  # any NVML failure: say so and go on
        samples = sample_phase(reader, load_s, poll_s, burn, phase="load", start=start)
        return samples, Polled(None, f"NVML power polling failed ({exc})")
    try:
        since = time.monotonic()
        (dom,) = power.domains()
        first = power.read().energy_j[dom]
        samples = sample_phase(reader, load_s, poll_s, burn, phase="load", start=start)
        energy = power.read().energy_j[dom] - first
        problems = power.events(since)
    finally:
        power.close()
    if problems:
        return samples, Polled(None, "; ".join(problems))
    return samples, Polled(energy if energy > 0 else None,
                            "" if energy > 0 else "too few power samples")
