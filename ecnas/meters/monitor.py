"""In-code metering: :class:`Monitor` (named windows that nest and overlap) and
:func:`measure` (context manager and decorator).

A window is two snapshots of every meter; its report is their difference, per domain,
calibrated with the matched hardware profile. At each window edge the Monitor synchronizes the
CUDA devices when torch is already imported *and* CUDA is initialized, so queued GPU work
lands in the window that launched it; torch is never imported here.
"""

from __future__ import annotations

import functools
import math
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from ecnas.errors import InputError, MeterUnavailable
from ecnas.meters.base import (
    UNCALIBRATED,
    Calibration,
    DeviceInfo,
    Meter,
    MeterStatus,
    Reading,
    Status,
)
from ecnas.meters.report import DomainEnergy, EnergyReport, total_joules

if TYPE_CHECKING:
    from ecnas.meters.profile_cache import DomainProfile

F = TypeVar("F", bound=Callable[..., Any])


class Snapshot(NamedTuple):
    """Every meter's reading at one window edge. A named tuple: built without a Python-level
    ``__init__`` (``tuple.__new__``), because windows are opened per training step."""

    timestamp: float
    readings: tuple[Reading, ...]


_new_tuple = tuple.__new__


def sync_cuda_devices() -> bool:
    """Synchronize every CUDA device if torch is loaded and CUDA initialized; True if it did."""
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None) if torch is not None else None
    if cuda is None or not cuda.is_initialized():
        return False
    for index in range(cuda.device_count()):
        cuda.synchronize(index)
    return True


class Monitor:
    """Meters running in the background and any number of named windows over them."""

    def __init__(self, meters: Sequence[Meter] | None = None, *,
                 profile_paths: Sequence[str | Path] = (), sync_cuda: bool = True,
                 idle_subtract: bool = False, use_profiles: bool = True) -> None:
        self.use_profiles = use_profiles
        self._given = list(meters) if meters is not None else None
        self._meters: list[Meter] = []
        self._names: tuple[str, ...] = ()  # the meters' names, as every report lists them
        self._statuses: list[MeterStatus] = []
        self._owned: list[tuple[str, ...]] = []  # domains each meter reports in windows
        self._conflicts: list[str] = []
        self._profile_paths = tuple(profile_paths)
        self._profiles: dict[str, DomainProfile] = {}  # domain -> its profile facts
        self._profile_notes: list[str] = []
        self._facts: list[list[DomainFacts]] | None = None
        self.sync_cuda = sync_cuda
        self.idle_subtract = idle_subtract
        self._windows: dict[str, Snapshot] = {}
        self._lock = threading.Lock()
        self._started = False

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def meters(self) -> list[Meter]:
        return list(self._meters if self._started else self._given or [])

    def start(self) -> Monitor:
        if self._started:
            return self
        if self._given is None:
            from ecnas.meters.registry import default_meters

            candidates = default_meters()
        else:
            candidates = self._given
        statuses = self._probe(candidates)
        started: list[Meter] = []
        try:
            for meter, status in zip(candidates, statuses, strict=True):
                meter.start()
                started.append(meter)
                self._statuses.append(status)
        except BaseException:
            for meter in started:
                meter.close()
            self._statuses.clear()
            raise
        seen: dict[str, str] = {}
        for meter in started:
            owned = []
            for domain in meter.domains():
                if domain in seen:
                    self._conflicts.append(f"{domain} is read by both {seen[domain]} and "
                                           f"{meter.name}: counted once, from {seen[domain]}")
                    continue
                seen[domain] = meter.name
                owned.append(domain)
            self._owned.append(tuple(owned))
        self._meters = started
        self._names = tuple(m.name for m in started)
        self._started = True
        return self

    def _probe(self, candidates: Sequence[Meter]) -> list[MeterStatus]:
        """Every candidate's status (raising for one that cannot read), with the profiles
        matched in between: meters that need their profile to know their own status (the
        estimate's per-core power) get it bound first."""
        early = [hasattr(m, "bind_profile") for m in candidates]
        statuses: list[MeterStatus | None] = [None] * len(candidates)
        devices: dict[str, DeviceInfo] = {}
        for k, meter in enumerate(candidates):
            if early[k]:
                dev = meter.device()  # type: ignore[attr-defined]
                devices[dev.domain] = dev
                continue
            statuses[k] = _usable(meter, meter.status())
            devices.update((d.domain, d) for d in statuses[k].devices)  # type: ignore[union-attr]
        domains = [d for m in candidates for d in m.domains()]
        note = self._match_profiles(devices, domains)
        for k, meter in enumerate(candidates):
            if early[k]:
                domain = meter.device().domain  # type: ignore[attr-defined]
                meter.bind_profile(self._profiles.get(domain), note)  # type: ignore[attr-defined]
                statuses[k] = _usable(meter, meter.status())
        return [s for s in statuses if s is not None]

    def _match_profiles(self, devices: dict[str, DeviceInfo], domains: list[str]) -> str:
        """Fill ``self._profiles``; return why there are none, if so."""
        if not self.use_profiles:
            self._profile_notes.append("hardware profiles not used (use_profiles=False): "
                                       "readings are uncalibrated")
            return "hardware profiles not used"
        from ecnas.meters.profile_cache import resolve

        try:
            self._profiles, cache_note = resolve(devices, domains, self._profile_paths)
        except InputError:
            raise  # a broken or missing profile file: refuse, never change the numbers
        except OSError as exc:  # an unreadable profile file: the same (docs/profiles.md)
            raise InputError(f"hardware profiles: {exc.filename or ''}: "
                             f"{exc.strerror or exc}") from None
        except (ImportError, ValueError) as exc:
            self._profile_notes.append(f"hardware profiles not loaded ({exc}): readings are "
                                       "uncalibrated")
            return f"profiles could not be loaded: {exc}"
        if cache_note:
            self._profile_notes.append(cache_note)
        return ""

    def close(self) -> None:
        for meter in self._meters:
            meter.close()
        self._meters = []
        self._names = ()
        self._owned = []
        self._facts = None
        self._statuses = []
        self._conflicts = []
        self._profile_notes = []
        self._profiles = {}
        self._windows.clear()
        self._started = False

    def __enter__(self) -> Monitor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def statuses(self) -> list[MeterStatus]:
        if not self._started:
            from ecnas.meters.registry import discover

            return discover() if self._given is None else [m.status() for m in self._given]
        return list(self._statuses)

    # -- windows ---------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        if not self._started:
            self.start()
        if self.sync_cuda and "torch" in sys.modules:
            sync_cuda_devices()
        readings = tuple([m.read() for m in self._meters])
        # The meters' own read times (their mean): a window's duration then matches the
        # interval the meters integrated over.
        if len(readings) == 1:
            t = readings[0].timestamp
        elif readings:
            t = math.fsum([r.timestamp for r in readings]) / len(readings)
        else:
            t = time.monotonic()
        return _new_tuple(Snapshot, (t, readings))

    def begin(self, name: str) -> None:
        """Open the window ``name`` (windows nest and overlap freely)."""
        snap = self.snapshot()
        with self._lock:
            if name in self._windows:
                raise InputError(f"window {name!r} is already open")
            self._windows[name] = snap

    def _start_of(self, name: str) -> Snapshot:
        with self._lock:
            start = self._windows.get(name)
        if start is None:
            raise InputError(f"window {name!r} is not open (open ones: "
                             f"{', '.join(sorted(self._windows)) or 'none'})")
        return start

    def peek(self, name: str) -> EnergyReport:
        """The report from ``begin(name)`` until now; the window stays open."""
        start = self._start_of(name)
        return self.report(name, start, self.snapshot())

    def end(self, name: str) -> EnergyReport:
        """Close the window ``name`` and return its report."""
        # _start_of, inlined: after a training step every distinct function called costs
        # microseconds of cold caches
        with self._lock:
            start = self._windows.get(name)
        if start is None:
            start = self._start_of(name)  # raises, naming the open windows
        stop = self.snapshot()
        with self._lock:
            self._windows.pop(name, None)
        return self.report(name, start, stop)

    def open_windows(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._windows)

    # -- reports ---------------------------------------------------------------------------
    def _domain_facts(self) -> list[list[DomainFacts]]:
        """Per meter, per owned domain: what does not change between windows (built once)."""
        if self._facts is None:
            self._facts = []
            for meter, status, owned in zip(self._meters, self._statuses, self._owned,
                                            strict=True):
                estimated = meter.estimated or status.status is Status.ESTIMATED
                facts = []
                for domain in owned:
                    profile = self._profiles.get(domain)
                    cal = profile.calibration if profile is not None else UNCALIBRATED
                    idle = profile.idle_w if profile is not None and not estimated else None
                    facts.append(DomainFacts(
                        domain=domain, component=meter.component(domain).value,
                        meter=meter.name, estimated=estimated,
                        status=(Status.ESTIMATED if estimated else Status.MEASURED).value,
                        reason=status.reason if estimated else "",
                        profile_id=profile.profile_id if profile is not None else None,
                        calibration=cal, floor_s=meter.min_window_s(domain), idle_w=idle))
                self._facts.append(facts)
        return self._facts

    def report(self, name: str, start: Snapshot, stop: Snapshot) -> EnergyReport:
        """The report of the window between two snapshots of this Monitor."""
        duration = stop.timestamp - start.timestamp
        domains: dict[str, DomainEnergy] = {}
        reasons: list[str] = []
        warnings: list[str] = list(self._conflicts)
        estimated = False
        fast = not self.idle_subtract
        facts_per_meter = self._facts if self._facts is not None else self._domain_facts()
        for meter, facts, r0, r1 in zip(self._meters, facts_per_meter, start.readings,
                                        stop.readings, strict=True):
            if type(meter).events is not Meter.events:  # the base reports none
                events = meter.events(start.timestamp)
                if events:
                    warnings += events
            e0, e1 = r0.energy_j, r1.energy_j
            for f in facts:
                d = f.domain
                if d not in e0 or d not in e1:
                    warnings.append(f"{d}: no reading from {f.meter} at both edges")
                    continue
                if f.estimated:
                    estimated = True
                    reasons.append(f"{f.meter}: {f.reason}")
                raw = e1[d] - e0[d]
                if fast and f.plain and duration >= f.floor_s:
                    # The usual window (every training step): uncalibrated, long enough,
                    # nothing to subtract. The general path is _domain.
                    if raw - raw != 0.0:  # NaN or infinite, without a math call per domain
                        warnings.append(f"{d}: non-finite energy from {f.meter}")
                    domains[d] = DomainEnergy.filled(f.template, raw, raw)
                else:
                    domains[d] = self._domain(f, raw, duration, warnings)
        if self._profile_notes:
            warnings += self._profile_notes
        net = total_joules(domains, "net_joules") if self.idle_subtract else None
        return EnergyReport.of(
            name, duration, total_joules(domains), domains, estimated,
            tuple(dict.fromkeys(reasons)) if reasons else (), self._names,
            tuple(dict.fromkeys(warnings)) if warnings else (), net,
            start.timestamp, stop.timestamp)

    def _domain(self, f: DomainFacts, raw: float, duration: float,
                warnings: list[str]) -> DomainEnergy:
        cal = f.calibration
        joules = cal.gain * raw + cal.offset_w * duration
        reason = f.reason
        short = duration < f.floor_s
        if short:
            msg = (f"{f.domain}: window {duration:.4f} s is shorter than {f.meter}'s update "
                   f"period {f.floor_s:g} s: the value is noise, not a measurement")
            reason = f"{reason}; {msg}" if reason else msg
            warnings.append(msg)
        net: float | None = None
        if self.idle_subtract:
            if f.estimated:
                net = joules  # the estimate counts busy CPU time only: nothing idle to remove
            elif f.idle_w is None:
                net = joules
                warnings.append(f"{f.domain}: no idle power known (no profile value): "
                                "nothing subtracted")
            else:
                net = joules - f.idle_w * duration
        if not math.isfinite(joules):
            warnings.append(f"{f.domain}: non-finite energy from {f.meter}")
        return DomainEnergy.of(f.domain, f.component, joules, raw, f.meter, f.status, reason,
                               f.profile_id, cal.calibrated, net, short)


class DomainFacts:
    """What a Monitor knows about one domain before any window: meter, profile, calibration."""

    __slots__ = ("domain", "component", "meter", "estimated", "status", "reason", "profile_id",
                 "calibration", "floor_s", "idle_w", "plain", "template")

    def __init__(self, *, domain: str, component: str, meter: str, estimated: bool,
                 status: str, reason: str, profile_id: str | None, calibration: Calibration,
                 floor_s: float, idle_w: float | None) -> None:
        self.domain = domain
        self.component = component
        self.meter = meter
        self.estimated = estimated
        self.status = status
        self.reason = reason
        self.profile_id = profile_id
        self.calibration = calibration
        self.floor_s = floor_s
        self.idle_w = idle_w
        # No calibration to apply: joules are the raw joules (the report's fast path, which
        # fills this domain's constant fields from ``template``).
        self.plain = (not calibration.calibrated and calibration.gain == 1.0
                      and calibration.offset_w == 0.0)
        self.template = {"domain": domain, "component": component, "meter": meter,
                         "status": status, "reason": reason, "profile_id": profile_id,
                         "calibrated": False, "net_joules": None, "short_window": False}


def _usable(meter: Meter, status: MeterStatus) -> MeterStatus:
    if not status.usable:
        raise MeterUnavailable(f"{meter.name}: {status.reason}"
                               + (f" (fix: {status.fix})" if status.fix else ""))
    return status


class measure:  # lower-case: used like a function, ``with measure():`` / ``@measure()``
    """Meter a block or a function: ``with measure("train") as m: ...`` then ``m.report``.

    As a decorator (``@measure("step")``) every call is one window; the latest report is on
    the decorator object (``.report``) and on the wrapped function (``.energy_report``).
    """

    def __init__(self, name: str = "measure", meters: Sequence[Meter] | None = None, *,
                 idle_subtract: bool = False, profile_paths: Sequence[str | Path] = (),
                 sync_cuda: bool = True, use_profiles: bool = True) -> None:
        self.name = name
        self._meters = meters
        self._kwargs = {"idle_subtract": idle_subtract, "profile_paths": profile_paths,
                        "sync_cuda": sync_cuda, "use_profiles": use_profiles}
        self.report: EnergyReport | None = None
        self.monitor: Monitor | None = None
        self._stack: list[Monitor] = []

    def __enter__(self) -> measure:
        monitor = Monitor(self._meters, **self._kwargs)  # type: ignore[arg-type]
        monitor.start()
        try:
            monitor.begin(self.name)
        except BaseException:
            monitor.close()
            raise
        self._stack.append(monitor)
        self.monitor = monitor
        return self

    def __exit__(self, *exc: object) -> None:
        monitor = self._stack.pop()
        try:
            self.report = monitor.end(self.name)
        finally:
            monitor.close()
            self.monitor = self._stack[-1] if self._stack else None

    def __call__(self, fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                with self:
                    return fn(*args, **kwargs)
            finally:
                wrapper.energy_report = self.report  # type: ignore[attr-defined]

        wrapper.energy_report = None  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]
