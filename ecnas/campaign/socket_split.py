"""Shared CPU sockets: split a socket's RAPL energy between the runs that shared it.

When several runs of a campaign execute at once on one machine, each run's CPU meter reads the
whole socket (package and DRAM counters are per socket), so summing the runs would count the
socket's energy several times. Each run therefore keeps the fraction of the socket's busy CPU
time that its own process tree used during the run (``cpu_share``); its CPU and DRAM energy are
multiplied by that fraction and ``energy_j`` is recomputed from the components.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CpuTimes:
    """Busy CPU time in seconds (user + system) of this process tree and of the whole machine,
    at one instant; two readings give a run's share of the socket."""

    own_s: float  # this process and its children, user + system
    socket_busy_s: float  # every CPU of the machine, user + system (all sockets summed)


def cpu_times() -> CpuTimes:
    """A reading of this process's and the machine's busy CPU time."""
    import psutil

    t = psutil.Process().cpu_times()
    own = t.user + t.system + t.children_user + t.children_system
    m = psutil.cpu_times()
    return CpuTimes(own_s=own, socket_busy_s=m.user + m.system + getattr(m, "nice", 0.0))


def cpu_share(start: CpuTimes, end: CpuTimes) -> float:
    """This process tree's share of the busy CPU time between two readings, in (0, 1]."""
    own = max(end.own_s - start.own_s, 0.0)
    busy = max(end.socket_busy_s - start.socket_busy_s, 0.0)
    if busy <= 0.0 or own <= 0.0:
        return 1.0  # nothing measurable: keep the whole reading rather than invent a split
    return min(own / busy, 1.0)


def split_rows(rows: list[dict[str, Any]], share: float) -> list[dict[str, Any]]:
    """Rows with CPU and DRAM energy scaled by ``share`` and ``cpu_share`` set."""
    out = []
    for row in rows:
        r = dict(row)
        for name in ("cpu_energy_j", "dram_energy_j"):
            v = r.get(name)
            if v is not None and not (isinstance(v, float) and math.isnan(v)):
                r[name] = float(v) * share
        parts = [r.get(n) for n in ("gpu_energy_j", "cpu_energy_j", "dram_energy_j")]
        present = [float(v) for v in parts if v is not None and not math.isnan(float(v))]
        if present:
            r["energy_j"] = sum(present)
        elif "energy_j" in r:
            r["energy_j"] = float(r["energy_j"]) * share
        r["cpu_share"] = share
        out.append(r)
    return out
