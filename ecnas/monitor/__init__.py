"""The Monitor layer: windows over the device readers (:mod:`ecnas.meters`) with the hardware
profiles (:mod:`ecnas.profiles`) bound to them. The top of the three: readers at the bottom,
profiles above them, this above both (imports only run downward).

    from ecnas import measure            # or: from ecnas.monitor import measure
    with measure("train") as m:
        train()
    print(m.report.energy_j, m.report.estimated)

``measure()`` windows share one process-wide :class:`Monitor` (:func:`default_monitor`).
Importing this package is cheap: no torch, numpy, pandas or dask, and not ``ecnas.profiles``
(profiles are matched once, then cached on disk).
"""

from __future__ import annotations

from ecnas.monitor.default import default_monitor, measure, refresh
from ecnas.monitor.monitor import Monitor, Snapshot, sync_cuda_devices
from ecnas.monitor.report import DomainEnergy, EnergyReport

__all__ = [
    "DomainEnergy",
    "EnergyReport",
    "Monitor",
    "Snapshot",
    "default_monitor",
    "measure",
    "refresh",
    "sync_cuda_devices",
]
