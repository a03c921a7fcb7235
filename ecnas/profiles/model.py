"""The hardware-profile data model: one frozen dataclass per TOML table.

A profile describes one device (a GPU board or a CPU package): how to recognise it, its
power envelope, what its meters can and cannot do, and how its readings are calibrated.
CPU powers (``tdp_w``, ``idle_w``, ``max_w``) are per socket (one RAPL package).
Nothing here imports anything heavy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ecnas.meters.base import UNCALIBRATED, Calibration

SCHEMA_VERSION = 1
KINDS = ("gpu", "cpu")
RAPL_DOMAINS = ("package", "dram", "core", "uncore", "psys")
GENERIC_CPU_ID = "generic-cpu"

@dataclass(frozen=True)
class MatchRules:
    """How a meter's device is recognised (see :func:`ecnas.profiles.match_device`).

    ``names`` are compared after :func:`ecnas.profiles.normalize_device_name`;
    ``pci_device_ids`` are lower-case ``0x`` hex (e.g. ``"0x1e30"``); ``cpu_model_patterns``
    are case-insensitive regular expressions searched in the CPU model name. ``fallback``
    marks the last-resort profile of its kind (``generic-cpu``).
    """

    names: tuple[str, ...] = ()
    pci_device_ids: tuple[str, ...] = ()
    cpu_model_patterns: tuple[str, ...] = ()
    fallback: bool = False


@dataclass(frozen=True)
class MeterFacts:
    """What the device's built-in meters do (``None``: not known)."""

    energy_counter: bool | None = None  # NVML total-energy counter (Volta+) / RAPL energy_uj
    power_averaging_s: float | None = None  # window of the power reading; 0 = instantaneous
    counter_update_s: float | None = None  # how often the energy counter moves
    counter_resolution_j: float | None = None  # smallest step the counter makes
    rapl_domains: tuple[str, ...] = ()  # CPU only: domains the package exposes


@dataclass(frozen=True)
class CalibrationInfo:
    """Who calibrated the device, against what, and how good the fit was."""

    reference: str = ""  # the reference instrument, e.g. "Yokogawa WT310E wall meter"
    date: str = ""  # ISO date of the calibration
    by: str = ""  # who calibrated (person or lab)
    method: str = ""  # e.g. "ecnas calibrate 0.1.0, least squares on 1 s intervals"
    gain_sd: float | None = None
    offset_sd: float | None = None
    residual_w: float | None = None  # RMS residual of the fit in watts
    n: int | None = None  # intervals the fit used


@dataclass(frozen=True)
class DomainCalibration:
    """Calibration of one meter domain (``package``, ``dram``, ``gpu`` …) when it differs."""

    calibration: Calibration
    idle_w: float | None = None


@dataclass(frozen=True)
class HardwareProfile:
    """One device. Build it from TOML with :func:`ecnas.profiles.validate_file`."""

    id: str
    kind: str  # "gpu" | "cpu"
    name: str
    match: MatchRules
    tdp_w: float
    idle_w: float
    max_w: float
    per_core_w: float | None = None  # CPU: watts of one fully busy core (estimate meter)
    meter: MeterFacts = field(default_factory=MeterFacts)
    calibration: Calibration = UNCALIBRATED
    calibration_info: CalibrationInfo = field(default_factory=CalibrationInfo)
    # hash=False: a mapping is unhashable, and profiles should work as dict keys.
    domain_calibrations: Mapping[str, DomainCalibration] = field(
        default_factory=lambda: MappingProxyType({}), hash=False)
    provenance: str = ""
    source_path: Path | None = None
    schema_version: int = SCHEMA_VERSION

    # Flat accessors for the meter facts, so callers need not know the nesting.
    @property
    def energy_counter(self) -> bool | None:
        """Whether the device has a cumulative energy counter (NVML's total energy, RAPL's
        ``energy_uj``); None when not known."""
        return self.meter.energy_counter

    @property
    def power_averaging_s(self) -> float | None:
        """The window, in seconds, over which the device's power reading is averaged (0:
        instantaneous; None: not known)."""
        return self.meter.power_averaging_s

    @property
    def counter_update_s(self) -> float | None:
        """How often the energy counter moves, in seconds (None: not known)."""
        return self.meter.counter_update_s

    @property
    def rapl_domains(self) -> tuple[str, ...]:
        """The RAPL domains the CPU package exposes (empty for a GPU)."""
        return self.meter.rapl_domains

    @property
    def calibrated(self) -> bool:
        """Whether the device, or any of its domains, was calibrated against a reference
        meter."""
        return self.calibration.calibrated or any(
            d.calibration.calibrated for d in self.domain_calibrations.values()
        )

    def calibration_for(self, domain: str) -> Calibration:
        """The calibration of a meter domain (``gpu:0``, ``cpu:1/dram`` or a bare key)."""
        entry = self.domain_calibrations.get(domain_key(domain))
        return entry.calibration if entry else self.calibration

    def idle_w_for(self, domain: str) -> float | None:
        """Idle power of a domain: its own entry, else the device's idle power for the
        domain that carries it (``gpu``/``package``/``estimate``), else unknown."""
        key = domain_key(domain)
        entry = self.domain_calibrations.get(key)
        if entry and entry.idle_w is not None:
            return entry.idle_w
        if key in ("gpu", "package", "estimate"):
            return self.idle_w
        return None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (the same tables and keys as the TOML file)."""
        out = profile_to_dict(self)
        out["source_path"] = str(self.source_path) if self.source_path else None
        return out


def domain_key(domain: str) -> str:
    """``gpu:0`` → ``gpu``; ``cpu:1/dram`` → ``dram``; ``cpu:estimate`` → ``estimate``."""
    if "/" in domain:
        return domain.rsplit("/", 1)[1]
    if domain.startswith("gpu"):
        return "gpu"
    if ":" in domain:
        return domain.split(":", 1)[1]
    return domain


def _cal_dict(cal: Calibration) -> dict[str, Any]:
    out: dict[str, Any] = {"status": "calibrated" if cal.calibrated else "uncalibrated",
                           "gain": cal.gain, "offset_w": cal.offset_w}
    if cal.uncertainty_w is not None:
        out["uncertainty_w"] = cal.uncertainty_w
    return out


def profile_to_dict(p: HardwareProfile) -> dict[str, Any]:
    """The profile as the nested dict its TOML file holds (``None`` values left out)."""
    match: dict[str, Any] = {"names": list(p.match.names),
                             "pci_device_ids": list(p.match.pci_device_ids),
                             "cpu_model_patterns": list(p.match.cpu_model_patterns)}
    if p.match.fallback:
        match["fallback"] = True
    power = {"tdp_w": p.tdp_w, "idle_w": p.idle_w, "max_w": p.max_w,
             "per_core_w": p.per_core_w}
    m = p.meter
    meter = {"energy_counter": m.energy_counter, "power_averaging_s": m.power_averaging_s,
             "counter_update_s": m.counter_update_s,
             "counter_resolution_j": m.counter_resolution_j,
             "rapl_domains": list(m.rapl_domains)}
    i = p.calibration_info
    cal = _cal_dict(p.calibration)
    cal.update({"gain_sd": i.gain_sd, "offset_sd": i.offset_sd, "residual_w": i.residual_w,
                "n": i.n, "reference": i.reference, "date": i.date, "by": i.by,
                "method": i.method})
    if p.domain_calibrations:
        cal["domains"] = {
            key: {**_cal_dict(d.calibration), "idle_w": d.idle_w}
            for key, d in p.domain_calibrations.items()
        }
    doc = {"schema_version": p.schema_version, "id": p.id, "kind": p.kind, "name": p.name,
           "provenance": p.provenance, "match": match, "power": power, "meter": meter,
           "calibration": cal}
    return _drop_none(doc)


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        # Empty strings and lists are the schema's defaults: leave them out of the file.
        return {k: _drop_none(v) for k, v in value.items() if v not in (None, "", [])}
    return value
