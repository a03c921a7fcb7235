"""The meter interface: what every meter (built-in or third-party) provides.

A meter reads *cumulative* energy per domain with a monotonic timestamp. Windows are the
single measuring primitive: a window's energy is the difference of two readings, so a meter
must return readings that are already corrected for counter wraps and resets. Meters that
need background work (RAPL multi-wrap reads, NVML power polling) own their thread.

Domain names: ``gpu:<index>`` for a GPU, ``cpu:<socket>/package``, ``cpu:<socket>/dram``,
``cpu:<socket>/psys``; the estimate meter uses ``cpu:estimate``. The component of a domain
(``gpu``, ``cpu``, ``dram``) maps it onto the energy table's component columns.

Nothing in this module imports anything heavy.
"""

from __future__ import annotations

import enum
import functools
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, NamedTuple


class Status(str, enum.Enum):
    """How a meter's numbers come about: measured, estimated, or not at all."""
    MEASURED = "measured"
    ESTIMATED = "estimated"
    UNAVAILABLE = "unavailable"


class Component(str, enum.Enum):
    """The energy table column a domain's joules go to."""
    GPU = "gpu"
    CPU = "cpu"
    DRAM = "dram"
    PLATFORM = "platform"  # psys: contains package and DRAM, never summed with them


#: what kind of device a profile is matched for
DeviceKind = Literal["gpu", "cpu"]


@dataclass(frozen=True)
class DeviceInfo:
    """What a meter knows about the hardware behind one domain (used to match a profile)."""

    domain: str
    kind: DeviceKind
    name: str  # board or CPU model name as the driver reports it
    pci_device_id: str | None = None  # e.g. "0x1e30" for a Quadro RTX 6000
    uuid: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Calibration:
    """calibrated joules = gain × raw joules + offset_w × duration_s."""

    gain: float = 1.0
    offset_w: float = 0.0
    uncertainty_w: float | None = None
    calibrated: bool = False  # False: gain 1, offset 0, nobody compared it with a reference


UNCALIBRATED = Calibration()

#: Why a net energy equals the gross one: nothing known to subtract.
NO_IDLE_NOTE = "no idle baseline known (no profile value): nothing subtracted"


def calibrated_energy(cal: Calibration, raw_j: float, duration_s: float, *,
                      idle_w: float | None, subtract_idle: bool,
                      estimated: bool = False) -> tuple[float, float | None, str]:
    """One domain over one window: ``(gross J, net J or None, note)``.

    gross = gain × raw + offset_w × duration. The net (only with ``subtract_idle``) is gross
    minus idle_w × duration; an estimate counts busy CPU time only (nothing idle in it), and
    an unknown idle power subtracts nothing: net = gross, with ``note`` saying so. The one
    definition of a calibrated energy: the Monitor's report uses it.
    """
    gross = cal.gain * raw_j + cal.offset_w * duration_s
    if not subtract_idle:
        return gross, None, ""
    if estimated:
        return gross, gross, ""
    if idle_w is None:
        return gross, gross, NO_IDLE_NOTE
    return gross, gross - idle_w * duration_s, ""


class DomainProfile:
    """What a report needs from the hardware profile of one domain, handed to readers and the
    Monitor by the layer above (which matches :mod:`ecnas.profiles`); immutable by convention.
    A plain slotted class: it is built for every domain at every Monitor start."""

    __slots__ = ("profile_id", "calibration", "idle_w", "per_core_w", "reason")

    def __init__(self, profile_id: str | None, calibration: Calibration, idle_w: float | None,
                 per_core_w: float | None, reason: str) -> None:
        self.profile_id = profile_id
        self.calibration = calibration
        self.idle_w = idle_w
        self.per_core_w = per_core_w
        self.reason = reason

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the inverse of :meth:`from_json`)."""
        c = self.calibration
        return {"profile_id": self.profile_id, "gain": c.gain, "offset_w": c.offset_w,
                "uncertainty_w": c.uncertainty_w, "calibrated": c.calibrated,
                "idle_w": self.idle_w, "per_core_w": self.per_core_w, "reason": self.reason}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> DomainProfile:
        """The profile :meth:`to_json` wrote."""
        cal = Calibration(gain=float(d["gain"]), offset_w=float(d["offset_w"]),
                          uncertainty_w=d["uncertainty_w"], calibrated=bool(d["calibrated"]))
        return cls(d["profile_id"], cal, d["idle_w"], d["per_core_w"], d["reason"])


@dataclass(frozen=True)
class MeterStatus:
    """Whether a meter can read, and if not (or only by estimate) why and how to fix it."""

    meter: str
    status: Status
    domains: tuple[str, ...] = ()
    reason: str = ""
    fix: str = ""
    devices: tuple[DeviceInfo, ...] = ()

    @property
    def usable(self) -> bool:
        """False only when the meter cannot read at all (estimates are usable)."""
        return self.status is not Status.UNAVAILABLE

    def to_dict(self) -> dict:
        """A JSON-ready dict (each meter's entry in ``ecnas hardware``)."""
        return {
            "meter": self.meter,
            "status": self.status.value,
            "domains": list(self.domains),
            "reason": self.reason,
            "fix": self.fix,
            "devices": [
                {"domain": d.domain, "kind": d.kind, "name": d.name,
                 "pci_device_id": d.pci_device_id, "uuid": d.uuid}
                for d in self.devices
            ],
        }


class Reading(NamedTuple):
    """Cumulative energy per domain (joules, wrap-corrected) at a monotonic timestamp.

    A named tuple (immutable, built at C speed): every window edge builds one per meter."""

    timestamp: float  # time.monotonic() seconds
    energy_j: Mapping[str, float]


#: ``Reading`` from a ``(timestamp, energy_j)`` pair at C speed, for the meters read at every
#: window edge (a named tuple's ``__new__`` is Python code)
_reading = functools.partial(tuple.__new__, Reading)


class Meter(ABC):
    """One source of energy readings. Subclasses: one module per vendor/mechanism."""

    #: short registry name, e.g. "rapl", "nvml", "estimate"
    name: ClassVar[str]
    #: True for meters whose numbers are estimates, never measurements
    estimated: ClassVar[bool] = False

    @abstractmethod
    def status(self) -> MeterStatus:
        """Probe (cheaply, without raising) whether this meter can read here."""

    @abstractmethod
    def domains(self) -> tuple[str, ...]:
        """The domains :meth:`read` reports."""

    @abstractmethod
    def read(self) -> Reading:
        """Cumulative joules per domain now. Must be cheap: it is called at window edges."""

    def component(self, domain: str) -> Component:
        """Which energy-table component a domain belongs to."""
        if domain.startswith("gpu"):
            return Component.GPU
        if domain.endswith("/dram"):
            return Component.DRAM
        if domain.endswith("/psys"):
            return Component.PLATFORM
        return Component.CPU

    def min_window_s(self, domain: str) -> float:
        """Windows shorter than this (e.g. the counter's update period) are flagged."""
        return 0.0

    def events(self, since: float) -> tuple[str, ...]:
        """Things that went wrong since ``since`` (monotonic s): counter resets, a counter that
        stopped reading, an error mid-window. Reports list them as warnings."""
        return ()

    def profile_device(self) -> DeviceInfo | None:
        """The device whose profile this meter needs before :meth:`status` can answer (the
        estimate's per-core power); None for meters whose status lists their devices."""
        return None

    def bind_profile(self, profile: DomainProfile | None, note: str = "") -> None:  # noqa: B027
        """Take the profile matched for :meth:`profile_device` (None, with ``note`` saying
        why none). A no-op for meters that need none; the Monitor calls it on every meter."""

    def start(self) -> None:  # noqa: B027 - optional hook, most meters need none
        """Start background work (wrap guards, power polling). Idempotent."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Stop background work and release the device."""

    def __enter__(self) -> Meter:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
