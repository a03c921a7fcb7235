"""In-code metering: :class:`Monitor`, named windows that nest and overlap over a set of
readers, with the matched hardware profiles bound to them.

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
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from ecnas.errors import InputError, MeterUnavailable
from ecnas.meters.base import (
    UNCALIBRATED,
    Calibration,
    DeviceInfo,
    DomainProfile,
    Meter,
    MeterStatus,
    Reading,
    Status,
    calibrated_energy,
)
from ecnas.monitor.report import (
    ComponentName,
    DomainEnergy,
    DomainMap,
    DomainStatus,
    EnergyReport,
    total_joules,
)


class Snapshot(NamedTuple):
    """Every meter's reading at one window edge."""

    timestamp: float
    readings: tuple[Reading, ...]


_snapshot = functools.partial(tuple.__new__, Snapshot)  # Snapshot from a pair, at C speed


def sync_cuda_devices() -> bool:
    """Synchronize every CUDA device if torch is loaded and CUDA initialized; True if it did."""
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None) if torch is not None else None
    if cuda is None or not cuda.is_initialized():
        return False
    for index in range(cuda.device_count()):
        cuda.synchronize(index)
    return True


class DomainFacts:
    """What a Monitor knows about one domain before any window: meter, profile, calibration."""

    __slots__ = ("domain", "component", "meter", "estimated", "status", "reason", "profile_id",
                 "calibration", "floor_s", "idle_w", "plain", "short_note")

    def __init__(self, *, domain: str, component: ComponentName, meter: str, estimated: bool,
                 reason: str, profile_id: str | None, calibration: Calibration,
                 floor_s: float, idle_w: float | None) -> None:
        self.domain = domain
        self.component = component
        self.meter = meter
        self.estimated = estimated
        self.status: DomainStatus = "estimated" if estimated else "measured"
        self.reason = reason
        self.profile_id = profile_id
        self.calibration = calibration
        self.floor_s = floor_s
        self.idle_w = idle_w
        # No calibration to apply: joules are the raw joules (the report's fast path).
        self.plain = (not calibration.calibrated and calibration.gain == 1.0
                      and calibration.offset_w == 0.0)
        # What a window shorter than floor_s says, after its duration (built once here: a
        # float formatted per domain per window costs more than the rest of the domain).
        self.short_note = (f" s is shorter than {meter}'s update period {floor_s:g} s: "
                           "the value is noise, not a measurement")


class Attached:
    """One meter a started Monitor reads: its status, the domains it reports in windows (a
    domain two meters read is counted once, from the first), and their facts."""

    __slots__ = ("meter", "status", "facts", "has_events", "floor_s", "short_head")

    def __init__(self, meter: Meter, status: MeterStatus, facts: tuple[DomainFacts, ...]) -> None:
        self.meter = meter
        self.status = status
        self.facts = facts
        self.has_events = type(meter).events is not Meter.events  # the base reports none
        # One update period for all its domains (the usual case): a window shorter than it
        # gets one warning naming them all (the plain report's path), not one per domain.
        floors = {f.floor_s for f in facts}
        self.floor_s = floors.pop() if len(floors) == 1 else None
        self.short_head = ", ".join(f.domain for f in facts) + ": "


class Session:
    """Everything a Monitor holds between :meth:`Monitor.start` and :meth:`Monitor.close`
    (dropped as a whole at close)."""

    __slots__ = ("attached", "names", "conflicts", "notes", "profiles", "reads", "plain",
                 "estimated", "reasons", "counted")

    def __init__(self, attached: list[Attached], conflicts: list[str], notes: list[str],
                 profiles: dict[str, DomainProfile]) -> None:
        self.attached = attached
        self.reads = tuple(a.meter.read for a in attached)  # bound once: every edge calls them
        self.names = tuple(a.meter.name for a in attached)  # as every report lists them
        self.conflicts = tuple(conflicts)
        self.notes = tuple(notes)  # about the profiles (none used, not loaded, cache)
        self.profiles = profiles
        # What every window of this session shares, worked out once for the plain path
        # (Monitor._plain_report): no domain calibrated, so joules are the raw joules.
        facts = [f for a in attached for f in a.facts]
        self.plain = all(f.plain for f in facts)
        self.estimated = any(f.estimated for f in facts)
        self.reasons = tuple(dict.fromkeys(f"{f.meter}: {f.reason}" for f in facts
                                           if f.estimated))
        # A platform (psys) domain contains package and DRAM: then only it is counted.
        skip = (("cpu", "dram") if any(f.component == "platform" for f in facts)
                else ("platform",))
        self.counted = frozenset(f.domain for f in facts if f.component not in skip)


class Monitor:
    """Meters running in the background and any number of named windows over them.

    Thread-safe: windows may be opened and closed from any thread. Most code does not build
    one: :func:`ecnas.monitor.measure` and :func:`ecnas.monitor.default_monitor` share one per
    process.
    """

    def __init__(self, meters: Sequence[Meter] | None = None, *,
                 profile_paths: Sequence[str | Path] = (), sync_cuda: bool = True,
                 idle_subtract: bool = False, use_profiles: bool = True) -> None:
        self.use_profiles = use_profiles
        self._given = list(meters) if meters is not None else None
        self._profile_paths = tuple(profile_paths)
        self.sync_cuda = sync_cuda
        self.idle_subtract = idle_subtract
        self._session: Session | None = None
        self._windows: dict[str, Snapshot] = {}
        self._lock = threading.Lock()
        # Shared-Monitor bookkeeping (ecnas.monitor.default): windows in flight that are not
        # in _windows, and whether a newer Monitor replaced this one (close when idle).
        self._users: list[None] = []  # one entry per window in flight (append/pop: atomic)
        self._retired = False

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self._session is not None

    @property
    def meters(self) -> list[Meter]:
        if self._session is not None:
            return [a.meter for a in self._session.attached]
        return list(self._given or [])

    def start(self) -> Monitor:
        if self._session is not None:
            return self
        if self._given is None:
            from ecnas.meters.registry import default_meters

            candidates = default_meters()
        else:
            candidates = self._given
        notes: list[str] = []
        statuses, profiles = self._probe(candidates, notes)
        started: list[Meter] = []
        try:
            for meter in candidates:
                meter.start()
                started.append(meter)
        except BaseException:
            for meter in started:
                meter.close()
            raise
        conflicts: list[str] = []
        seen: dict[str, str] = {}
        attached = []
        for meter, status in zip(started, statuses, strict=True):
            owned = []
            for domain in meter.domains():
                if domain in seen:
                    conflicts.append(f"{domain} is read by both {seen[domain]} and "
                                     f"{meter.name}: counted once, from {seen[domain]}")
                    continue
                seen[domain] = meter.name
                owned.append(domain)
            attached.append(Attached(meter, status, self._facts(meter, status, owned,
                                                                profiles)))
        self._session = Session(attached, conflicts, notes, profiles)
        return self

    def _probe(self, candidates: Sequence[Meter],
               notes: list[str]) -> tuple[list[MeterStatus], dict[str, DomainProfile]]:
        """Every candidate's status (raising for one that cannot read) and the profiles
        matched in between: meters that need their profile to know their own status (the
        estimate's per-core power) get it bound first."""
        early = [m.profile_device() for m in candidates]
        statuses: list[MeterStatus | None] = [None] * len(candidates)
        devices: dict[str, DeviceInfo] = {}
        for k, meter in enumerate(candidates):
            dev = early[k]
            if dev is not None:
                devices[dev.domain] = dev
                continue
            status = statuses[k] = _usable(meter, meter.status())
            devices.update((d.domain, d) for d in status.devices)
        domains = [d for m in candidates for d in m.domains()]
        profiles, note = self._match_profiles(devices, domains, notes)
        for k, meter in enumerate(candidates):
            dev = early[k]
            if dev is not None:
                meter.bind_profile(profiles.get(dev.domain), note)
                statuses[k] = _usable(meter, meter.status())
        return [s for s in statuses if s is not None], profiles

    def _match_profiles(self, devices: dict[str, DeviceInfo], domains: list[str],
                        notes: list[str]) -> tuple[dict[str, DomainProfile], str]:
        """The profile facts per domain, and why there are none, if so."""
        if not self.use_profiles:
            notes.append("hardware profiles not used (use_profiles=False): readings are "
                         "uncalibrated")
            return {}, "hardware profiles not used"
        from ecnas.monitor.profile_cache import resolve

        try:
            profiles, cache_note = resolve(devices, domains, self._profile_paths)
        except InputError:
            raise  # a broken or missing profile file: refuse, never change the numbers
        except OSError as exc:  # an unreadable profile file: the same (docs/profiles.md)
            raise InputError(f"hardware profiles: {exc.filename or ''}: "
                             f"{exc.strerror or exc}") from None
        except (ImportError, ValueError) as exc:
            notes.append(f"hardware profiles not loaded ({exc}): readings are uncalibrated")
            return {}, f"profiles could not be loaded: {exc}"
        if cache_note:
            notes.append(cache_note)
        return profiles, ""

    @staticmethod
    def _facts(meter: Meter, status: MeterStatus, owned: list[str],
               profiles: dict[str, DomainProfile]) -> tuple[DomainFacts, ...]:
        """Per owned domain: what does not change between windows."""
        estimated = meter.estimated or status.status is Status.ESTIMATED
        facts = []
        for domain in owned:
            profile = profiles.get(domain)
            facts.append(DomainFacts(
                domain=domain, component=meter.component(domain).value, meter=meter.name,
                estimated=estimated, reason=status.reason if estimated else "",
                profile_id=profile.profile_id if profile is not None else None,
                calibration=profile.calibration if profile is not None else UNCALIBRATED,
                floor_s=meter.min_window_s(domain),
                idle_w=profile.idle_w if profile is not None and not estimated else None))
        return tuple(facts)

    def close(self) -> None:
        session, self._session = self._session, None
        self._windows.clear()
        for a in session.attached if session is not None else ():
            a.meter.close()

    def __enter__(self) -> Monitor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def statuses(self) -> list[MeterStatus]:
        if self._session is None:
            from ecnas.meters.registry import discover

            return discover() if self._given is None else [m.status() for m in self._given]
        return [a.status for a in self._session.attached]

    # -- windows ---------------------------------------------------------------------------
    def snapshot(self, sync_cuda: bool | None = None) -> Snapshot:
        session = self._session if self._session is not None else self.start()._session
        assert session is not None
        if (self.sync_cuda if sync_cuda is None else sync_cuda) and "torch" in sys.modules:
            sync_cuda_devices()
        reads = session.reads
        if len(reads) == 1:  # most machines: one meter (RAPL, or the estimate)
            reading = reads[0]()
            return _snapshot((reading.timestamp, (reading,)))
        readings = tuple([read() for read in reads])
        # The meters' own read times (their mean): a window's duration then matches the
        # interval the meters integrated over.
        if readings:
            t = math.fsum([r.timestamp for r in readings]) / len(readings)
        else:
            t = time.monotonic()
        return Snapshot(t, readings)

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
        report = self.report(name, start, stop)
        if self._retired:
            self._close_if_idle()
        return report

    def open_windows(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._windows)

    # -- shared use (ecnas.monitor.default) ------------------------------------------------
    def _enter_use(self) -> None:
        self._users.append(None)

    def _leave_use(self) -> None:
        self._users.pop()
        if self._retired:
            self._close_if_idle()

    def _retire(self) -> None:
        """A newer Monitor replaces this one: close now, or when its last window ends."""
        self._retired = True
        self._close_if_idle()

    def _close_if_idle(self) -> None:
        with self._lock:
            idle = not self._windows and not self._users and self._session is not None
        if idle:
            self.close()

    # -- reports ---------------------------------------------------------------------------
    def report(self, name: str, start: Snapshot, stop: Snapshot, *,
               idle_subtract: bool | None = None) -> EnergyReport:
        """The report of the window between two snapshots of this Monitor (``idle_subtract``
        None: the Monitor's own setting)."""
        session = self._session
        if session is None:
            raise InputError(f"window {name!r}: the Monitor was closed while it was open")
        subtract = self.idle_subtract if idle_subtract is None else idle_subtract
        if session.plain and not subtract:
            report = _plain_report(session, name, start, stop)
            if report is not None:
                return report
        duration = stop.timestamp - start.timestamp
        domains: dict[str, DomainEnergy] = {}
        reasons: list[str] = []
        warnings: list[str] = list(session.conflicts)
        estimated = False
        shown = ""  # the duration as short-window notes show it, formatted once
        for a, r0, r1 in zip(session.attached, start.readings, stop.readings, strict=True):
            if a.has_events:
                events = a.meter.events(start.timestamp)
                if events:
                    warnings += events
            get0, get1 = r0.energy_j.get, r1.energy_j.get
            note = ""  # what a window shorter than this meter's update period says
            if a.floor_s is not None and duration < a.floor_s:
                shown = shown or f"{duration:.4f}"
                note = f"window {shown}{a.facts[0].short_note}"
                warnings.append(a.short_head + note)
            for f in a.facts:
                d = f.domain
                j0, j1 = get0(d), get1(d)
                if j0 is None or j1 is None:
                    warnings.append(f"{d}: no reading from {f.meter} at both edges")
                    continue
                if f.estimated:
                    estimated = True
                    reasons.append(f"{f.meter}: {f.reason}")
                domains[d] = _domain(f, j1 - j0, duration, subtract, warnings, note)
        if session.notes:
            warnings += session.notes
        net = total_joules(domains, "net_joules") if subtract else None
        return EnergyReport.of(
            name, duration, total_joules(domains), domains, estimated,
            tuple(dict.fromkeys(reasons)) if reasons else (), session.names,
            tuple(dict.fromkeys(warnings)) if warnings else (), net,
            start.timestamp, stop.timestamp)


def _plain_report(session: Session, name: str, start: Snapshot,
                  stop: Snapshot) -> EnergyReport | None:
    """The report of a window of a session with no calibrated domain and nothing to subtract
    (every window of most machines): what :meth:`Monitor.report` computes, with what does
    not change between windows taken from the session, and the per-domain entries built
    when first read (:class:`DomainMap`). None when a domain has no reading at an edge (the
    general path says which)."""
    duration = stop.timestamp - start.timestamp
    warnings: list[str] = list(session.conflicts) if session.conflicts else []
    raws: list[float] = []
    notes: list[str] = []
    total: list[float] = []
    counted = session.counted
    shown = ""  # the duration as short-window notes show it, formatted once
    for a, r0, r1 in zip(session.attached, start.readings, stop.readings, strict=True):
        if a.has_events:
            events = a.meter.events(start.timestamp)
            if events:
                warnings += events
        e0, e1 = r0.energy_j, r1.energy_j
        note = ""  # what a window shorter than this meter's update period says
        if a.floor_s is not None and duration < a.floor_s:
            shown = shown or f"{duration:.4f}"
            note = f"window {shown}{a.facts[0].short_note}"
            warnings.append(a.short_head + note)
        notes.append(note)
        for f in a.facts:
            d = f.domain
            try:
                raw = e1[d] - e0[d]
            except KeyError:
                return None
            raws.append(raw)
            if raw - raw != 0.0:  # inf or NaN (math.isfinite, without the call)
                warnings.append(f"{d}: non-finite energy from {f.meter}")
            if a.floor_s is None and duration < f.floor_s:  # domains of unequal periods
                shown = shown or f"{duration:.4f}"
                warnings.append(f"{d}: window {shown}{f.short_note}")
            if d in counted:
                total.append(raw)
    if session.notes:
        warnings += session.notes
    return EnergyReport.of(
        name, duration, math.fsum(total),
        DomainMap(_plain_domains, session.attached, raws, notes, duration), session.estimated,
        session.reasons, session.names, tuple(dict.fromkeys(warnings)) if warnings else (),
        None, start.timestamp, stop.timestamp)


def _plain_domains(attached: list[Attached], raws: list[float], notes: list[str],
                   duration: float) -> dict[str, DomainEnergy]:
    """The per-domain entries of a plain report (see :func:`_plain_report`)."""
    out: dict[str, DomainEnergy] = {}
    k = 0
    for a, note in zip(attached, notes, strict=True):
        for f in a.facts:
            raw = raws[k]
            k += 1
            if note:
                out[f.domain] = DomainEnergy(f.domain, f.component, raw, raw, f.meter,
                                             f.status, f"{f.reason}; {note}" if f.reason
                                             else note, f.profile_id, False, None, True)
            elif duration >= f.floor_s:
                out[f.domain] = DomainEnergy(f.domain, f.component, raw, raw, f.meter,
                                             f.status, f.reason, f.profile_id)
            else:  # domains of one meter with unequal update periods
                msg = f"window {duration:.4f}{f.short_note}"
                out[f.domain] = DomainEnergy(f.domain, f.component, raw, raw, f.meter,
                                             f.status, f"{f.reason}; {msg}" if f.reason
                                             else msg, f.profile_id, False, None, True)
    return out


def _domain(f: DomainFacts, raw: float, duration: float, subtract: bool,
            warnings: list[str], short_note: str = "") -> DomainEnergy:
    """One domain's energy on the general path: calibration, short windows, idle power
    (``short_note``: what the meter's short window says, already in ``warnings``)."""
    joules, net, note = calibrated_energy(f.calibration, raw, duration, idle_w=f.idle_w,
                                          subtract_idle=subtract, estimated=f.estimated)
    reason = f.reason
    short = duration < f.floor_s
    if short:
        msg = short_note
        if not msg:  # domains of one meter with unequal update periods: said per domain
            msg = f"window {duration:.4f}{f.short_note}"
            warnings.append(f"{f.domain}: {msg}")
        reason = f"{reason}; {msg}" if reason else msg
    if note:
        warnings.append(f"{f.domain}: {note}")
    if not math.isfinite(joules):
        warnings.append(f"{f.domain}: non-finite energy from {f.meter}")
    return DomainEnergy(f.domain, f.component, joules, raw, f.meter, f.status, reason,
                        f.profile_id, f.calibration.calibrated, net, short)


def _usable(meter: Meter, status: MeterStatus) -> MeterStatus:
    if not status.usable:
        raise MeterUnavailable(f"{meter.name}: {status.reason}"
                               + (f" (fix: {status.fix})" if status.fix else ""))
    return status
