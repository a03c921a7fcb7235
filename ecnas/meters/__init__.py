"""Meters: read the energy of GPUs (NVML), CPU packages and DRAM (RAPL), or estimate it.

Three lines to meter code::

    from ecnas.meters import measure
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
    Meter,
    MeterStatus,
    Reading,
    Status,
)
from ecnas.meters.monitor import Monitor, Snapshot, measure, sync_cuda_devices
from ecnas.meters.registry import (
    ENTRY_POINT_GROUP,
    available_meters,
    create_meters,
    default_meters,
    discover,
)
from ecnas.meters.report import DomainEnergy, EnergyReport

__all__ = [
    "ENTRY_POINT_GROUP",
    "UNCALIBRATED",
    "Calibration",
    "Component",
    "DeviceInfo",
    "DomainEnergy",
    "EnergyReport",
    "Meter",
    "MeterStatus",
    "Monitor",
    "Reading",
    "Snapshot",
    "Status",
    "available_meters",
    "create_meters",
    "default_meters",
    "discover",
    "measure",
    "sync_cuda_devices",
]
