"""What a metered window produced: :class:`EnergyReport`, its per-domain :class:`DomainEnergy`
entries, and :class:`DomainMap`, the read-only mapping that builds those entries.

``EnergyReport`` is a frozen dataclass, ``DomainEnergy`` a named tuple; both have
``to_dict()``, the report also ``to_json()`` (what ``ecnas measure --json`` prints). A report
a Monitor made has its total, flags and warnings from the moment the window ends; its
``domains`` is a :class:`DomainMap` that builds the per-domain entries when first read (and
pickles and copies as a plain dict); a report built by hand may hold a dict. Every number
says whether it was measured or estimated and by which meter; calibration and idle
subtraction are recorded beside the raw joules, never folded in silently. The arithmetic
(calibration, the platform-domain rule, the warnings) is
:meth:`ecnas.monitor.Monitor.report`'s; this module holds the results and the two figures
read off them, :meth:`EnergyReport.component_j` and :attr:`EnergyReport.mean_power_w`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from ecnas.meters.base import Component

#: what a domain's ``component`` may be (the values of :class:`~ecnas.meters.base.Component`)
ComponentName = Literal["gpu", "cpu", "dram", "platform"]
#: what a domain's ``status`` may be (a window never reports an unavailable domain)
DomainStatus = Literal["measured", "estimated"]


class DomainEnergy(NamedTuple):
    """Energy of one domain (``gpu:0``, ``cpu:0/package`` …) over one window.

    A named tuple (immutable, picklable, built at C speed): a Monitor builds one per domain
    when a report's domains are first read (:class:`DomainMap`), and on the window benchmark
    this beat a frozen dataclass and the ``__dict__``-filling bypass the project used before
    (see docs/meters.md).
    """

    domain: str
    component: ComponentName
    joules: float  # calibrated (equal to raw_joules when the profile is uncalibrated)
    raw_joules: float  # what the meter read
    meter: str
    status: DomainStatus
    reason: str = ""  # why estimated, or what is wrong with the number (short window, error)
    profile_id: str | None = None
    calibrated: bool = False
    net_joules: float | None = None  # joules − idle power × duration, only when asked
    short_window: bool = False  # window shorter than the meter's update period: noise

    @property
    def estimated(self) -> bool:
        """Whether this domain's joules are an estimate rather than a meter's reading."""
        return self.status == "estimated"

    def to_dict(self) -> dict[str, Any]:
        """The domain's figures as plain data (one entry of ``domain_details``)."""
        return {
            "domain": self.domain,
            "component": self.component,
            "joules": self.joules,
            "raw_joules": self.raw_joules,
            "meter": self.meter,
            "status": self.status,
            "reason": self.reason,
            "profile_id": self.profile_id,
            "calibrated": self.calibrated,
            "net_joules": self.net_joules,
            "short_window": self.short_window,
        }


class DomainMap(Mapping[str, DomainEnergy]):
    """A report's domains, built on first use from what the window read.

    A window's total, warnings and flags are computed when it ends; its per-domain entries
    (one :class:`DomainEnergy` each) only when something reads them: most windows of a
    training loop are asked for their total alone. Read-only, like the dict it stands for;
    it pickles and copies as that dict.
    """

    __slots__ = ("_build", "_args", "_dict")

    def __init__(self, build: Callable[..., dict[str, DomainEnergy]], *args: Any) -> None:
        self._build: Callable[..., dict[str, DomainEnergy]] | None = build
        self._args: tuple[Any, ...] | None = args
        self._dict: dict[str, DomainEnergy] | None = None

    def _built(self) -> dict[str, DomainEnergy]:
        d = self._dict
        if d is None:
            build, args = self._build, self._args
            if build is None or args is None:  # another thread built it meanwhile
                return self._dict  # type: ignore[return-value]
            d = self._dict = build(*args)
            self._build = self._args = None
        return d

    def __getitem__(self, key: str) -> DomainEnergy:
        return self._built()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._built())

    def __len__(self) -> int:
        return len(self._built())

    def __contains__(self, key: object) -> bool:
        return key in self._built()

    def __eq__(self, other: object) -> bool:
        return self._built() == (other._built() if isinstance(other, DomainMap) else other)

    __hash__ = None  # type: ignore[assignment]  # like dict

    def __repr__(self) -> str:
        return repr(self._built())

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (self._built(),))


@dataclass(frozen=True)
class EnergyReport:
    """Energy of one named window: per domain, in total, and how much of it is estimated.

    ``energy_j`` sums GPU, CPU package and DRAM domains (calibrated). A platform (psys)
    domain contains package and DRAM, so when one is present it replaces them in the total.
    """

    name: str
    duration_s: float
    energy_j: float
    # a dict, or a DomainMap built when first read (it pickles and copies as a dict)
    domains: Mapping[str, DomainEnergy] = field(default_factory=dict)
    estimated: bool = False
    reasons: tuple[str, ...] = ()  # why any part is estimated
    meters: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()  # short windows, counter resets, meter errors mid-window
    net_energy_j: float | None = None  # idle-subtracted total, only when asked
    start_monotonic: float = 0.0
    end_monotonic: float = 0.0
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def mean_power_w(self) -> float:
        """Mean power over the window in watts, ``energy_j / duration_s`` (NaN for a window of
        no length)."""
        return self.energy_j / self.duration_s if self.duration_s > 0 else math.nan

    def component_j(self, component: str | Component) -> float:
        """Sum of the calibrated joules of one component (``gpu``/``cpu``/``dram``); NaN if none."""
        key = component.value if isinstance(component, Component) else str(component)
        values = [d.joules for d in self.domains.values() if d.component == key]
        return math.fsum(values) if values else math.nan

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data, as ``ecnas measure --json`` prints it: ``domains`` maps
        each domain to its joules, ``domain_details`` holds each domain's figures,
        ``components`` the GPU/CPU/DRAM sums, and ``extra`` is merged in."""
        return {
            "name": self.name,
            "energy_j": self.energy_j,
            "duration_s": self.duration_s,
            "mean_power_w": self.mean_power_w,
            # name -> joules, as the CLI contract asks; the detail is in domain_details
            "domains": {k: d.joules for k, d in self.domains.items()},
            "domain_details": {k: d.to_dict() for k, d in self.domains.items()},
            "components": {c.value: self.component_j(c)
                           for c in (Component.GPU, Component.CPU, Component.DRAM)},
            "estimated": self.estimated,
            "reasons": list(self.reasons),
            "meters": list(self.meters),
            "warnings": list(self.warnings),
            "net_energy_j": self.net_energy_j,
            **dict(self.extra),
        }

    def to_json(self, indent: int | None = 2) -> str:
        """:meth:`to_dict` as JSON, NaN and infinities written as null so any reader can parse
        it."""
        from ecnas.outputs import dumps_json  # JSON has no NaN: null, so anyone can parse it

        return dumps_json(self.to_dict(), indent=indent)


#: a window whose energy is fewer steps of its meter's resolution than this (the CPU-time
#: estimate: one clock tick × watts per core) is warned about: uncertain by more than 10 %
RESOLUTION_STEPS = 10


def coarse_warning(facts: Any, raw_j: float) -> str:
    """The warning of a window below ``RESOLUTION_STEPS`` steps of its meter's resolution
    (``facts``: the domain's ``DomainFacts``): what it read, the step, and what to do."""
    step = facts.resolution_j
    return (f"{facts.domain}: {raw_j:.3g} J is {raw_j / step:.0f} step(s) of {facts.meter}'s "
            f"resolution ({step * 1e3:.0f} mJ: one clock tick of CPU time × watts per core), "
            "below ten: the value is uncertain by more than 10 % (0 J may be up to one step); "
            "meter a longer window or more work")
