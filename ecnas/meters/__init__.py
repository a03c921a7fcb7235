"""Meters: the device readers (GPUs through NVML, CPU packages and DRAM through RAPL, the
CPU-time estimate, plug-ins) and their registry. The bottom layer: nothing here imports
:mod:`ecnas.profiles` or :mod:`ecnas.monitor`.

Metering code uses the Monitor layer above (:mod:`ecnas.monitor`)::

    from ecnas import measure
    with measure("train") as m:
        train()
    print(m.report.energy_j, m.report.estimated)

Importing this package is cheap: no torch, numpy, pandas or dask; pynvml and psutil are
imported only when a meter needs them.
"""

from __future__ import annotations

from ecnas.meters.base import (
    UNCALIBRATED,
    Calibration,
    Component,
    DeviceInfo,
    DomainProfile,
    Meter,
    MeterStatus,
    Reading,
    Status,
)
from ecnas.meters.registry import (
    ENTRY_POINT_GROUP,
    available_meters,
    create_meters,
    default_meters,
    discover,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "UNCALIBRATED",
    "Calibration",
    "Component",
    "DeviceInfo",
    "DomainProfile",
    "Meter",
    "MeterStatus",
    "Reading",
    "Status",
    "available_meters",
    "create_meters",
    "default_meters",
    "discover",
]
