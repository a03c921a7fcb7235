"""In-code metering: :class:`Monitor`, named windows that nest and overlap over a set of
readers, with the matched hardware profiles bound to them.

A window is two snapshots of every meter; its report is their difference, per domain,
calibrated with the matched hardware profile. At each window edge the Monitor synchronizes the
CUDA devices when torch is already imported *and* CUDA is initialized, so queued GPU work
lands in the window that launched it; torch is never imported here.
"""

from __future__ import annotations

import math
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

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
from ecnas.monitor.distributed import Topology, rank_meters, topology
from ecnas.monitor.report import (
    RESOLUTION_STEPS,
    ComponentName,
    DomainEnergy,
    DomainMap,
    DomainStatus,
    EnergyReport,
    coarse_warning,
)


class Snapshot(NamedTuple):
    """Every meter's reading at one window edge."""

    timestamp: float
    readings: tuple[Reading, ...]


def sync_cuda_devices(current_only: bool = False) -> bool:
    """Synchronize every CUDA device (``current_only``: the current one, as a rank of a
    distributed job does: its window edges wait for its own device, and it never opens a
    context on the other ranks' GPUs) if torch is loaded and CUDA initialized; True if it
    did."""
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None) if torch is not None else None
    if cuda is None or not cuda.is_initialized():
        return False
    if current_only:
        cuda.synchronize(cuda.current_device())
        return True
    for index in range(cuda.device_count()):
        cuda.synchronize(index)
    return True


class DomainFacts:
    """What a Monitor knows about one domain before any window: meter, profile, calibration."""

    __slots__ = ("domain", "component", "meter", "estimated", "status", "reason", "profile_id",
                 "calibration", "floor_s", "idle_w", "plain", "short_note", "coarse_j",
                 "resolution_j")

    def __init__(self, *, domain: str, component: ComponentName, meter: str, estimated: bool,
                 reason: str, profile_id: str | None, calibration: Calibration,
                 floor_s: float, idle_w: float | None,
                 resolution_j: float | None = None) -> None:
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
        # No calibration to apply: joules are the raw joules (Monitor.report's fast branch).
        self.plain = (not calibration.calibrated and calibration.gain == 1.0
                      and calibration.offset_w == 0.0)
        # What a window shorter than floor_s says, after its duration (built once here: a
        # float formatted per domain per window costs more than the rest of the domain).
        self.short_note = (f" s is shorter than {meter}'s update period {floor_s:g} s: "
                           "the value is noise, not a measurement")
        # a meter that counts in steps (the CPU-time estimate: a clock tick × W per core):
        # below this many joules a window holds too few steps to be read as a number
        self.resolution_j = resolution_j
        self.coarse_j = resolution_j * RESOLUTION_STEPS if resolution_j else 0.0


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
        # gets one warning naming them all, not one per domain.
        floors = {f.floor_s for f in facts}
        self.floor_s = floors.pop() if len(floors) == 1 else None
        self.short_head = ", ".join(f.domain for f in facts) + ": "


class Session:
    """Everything a Monitor holds between :meth:`Monitor.start` and :meth:`Monitor.close`
    (dropped as a whole at close)."""

    __slots__ = ("attached", "names", "conflicts", "notes", "profiles", "reads", "plain",
                 "estimated", "reasons", "counted", "size")

    def __init__(self, attached: list[Attached], conflicts: list[str], notes: list[str],
                 profiles: dict[str, DomainProfile]) -> None:
        self.attached = attached
        self.reads = tuple(a.meter.read for a in attached)  # bound once: every edge calls them
        self.names = tuple(a.meter.name for a in attached)  # as every report lists them
        self.conflicts = tuple(conflicts)
        self.notes = tuple(notes)  # about the profiles (none used, not loaded, cache)
        self.profiles = profiles
        # What every window with a reading of every domain shares, worked out once.
        facts = [f for a in attached for f in a.facts]
        self.size = len(facts)
        self.plain = all(f.plain for f in facts)  # no domain calibrated: joules are raw
        self.estimated, self.reasons = estimated_reasons(facts)
        self.counted = counted_domains(facts)


def estimated_reasons(facts: Sequence[DomainFacts]) -> tuple[bool, tuple[str, ...]]:
    """Whether any of ``facts`` is estimated, and why (each reason once)."""
    reasons = tuple(dict.fromkeys(f"{f.meter}: {f.reason}" for f in facts if f.estimated))
    return any(f.estimated for f in facts), reasons


def counted_domains(facts: Sequence[DomainFacts]) -> frozenset[str]:
    """The domains a report's total adds up: a platform (psys) domain contains the CPU
    packages and DRAM, so where one is read it replaces them."""
    skip = ("cpu", "dram") if any(f.component == "platform" for f in facts) else ("platform",)
    return frozenset(f.domain for f in facts if f.component not in skip)


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    """A RuntimeWarning, once per message and process (the shared Monitor is rebuilt when the
    environment changes; the same broken path is not announced at every rebuild)."""
    if message not in _WARNED:
        _WARNED.add(message)
        # pointed at the user's line (the first frame outside ecnas), not at ecnas's own
        package = str(Path(__file__).resolve().parents[1])
        level = 2  # stacklevel 2 is the frame above this one
        frame: Any = sys._getframe(1)
        while frame is not None and frame.f_code.co_filename.startswith(package):
            level, frame = level + 1, frame.f_back
        warnings.warn(f"ecnas: {message}", RuntimeWarning, stacklevel=level)


class Monitor:
    """Meters running in the background and any number of named windows over them.

    Thread-safe: windows may be opened and closed from any thread. Most code does not build
    one: :func:`ecnas.monitor.measure` and :func:`ecnas.monitor.default_monitor` share one per
    process.
    """

    def __init__(self, meters: Sequence[Meter] | None = None, *,
                 profile_paths: Sequence[str | Path] = (), sync_cuda: bool = True,
                 idle_subtract: bool = False, use_profiles: bool = True,
                 strict_profile_path: bool = False, placed: bool = True) -> None:
        """``placed``: in a distributed job, read only what this rank owns (its GPU; the
        node's shared domains on local rank 0) when no meters are given; False reads the
        whole machine (``ecnas measure`` wrapping a launcher)."""
        self.use_profiles = use_profiles
        #: False (in-code metering): an ECNAS_PROFILE_PATH that cannot load is warned about
        #: once and left out, never raised into the user's program; True (the CLI's
        #: ``ecnas measure``): refused before anything runs
        self.strict_profile_path = strict_profile_path
        self._placed = placed
        self._given = list(meters) if meters is not None else None
        self._profile_paths = tuple(profile_paths)
        self.sync_cuda = sync_cuda
        self.idle_subtract = idle_subtract
        self._session: Session | None = None
        #: this process's place in a distributed job, when it is a rank and the meters were
        #: chosen for it (None: a single process, or meters given)
        self.topology: Topology | None = None
        #: what this rank leaves to other ranks (the node's shared domains, on local rank 0)
        self.placement: list[str] = []
        self._windows: dict[str, Snapshot] = {}
        self._lock = threading.Lock()
        #: called after ``end`` closed the last open named window (the shared Monitor's
        #: holder closes a replaced Monitor then: ecnas.monitor.default)
        self.on_idle: Callable[[], None] | None = None

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        """Whether the Monitor is started (its meters open) and not closed since."""
        return self._session is not None

    @property
    def meters(self) -> list[Meter]:
        """The meters read: the attached ones once started, else the ones given (or none)."""
        if self._session is not None:
            return [a.meter for a in self._session.attached]
        return list(self._given or [])

    def start(self) -> Monitor:
        """Probe the meters, match their profiles, open them; a started Monitor is returned as
        is."""
        if self._session is not None:
            return self
        if self._given is None:
            from ecnas.meters.registry import default_meters

            # a rank of a distributed job reads its own GPU, and the node's shared domains
            # only on local rank 0 (ecnas.monitor.distributed): each joule counted once
            self.topology = topology() if self._placed else None
            if self.topology is not None:
                candidates, self.placement = rank_meters(self.topology)
            else:
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
        except InputError as exc:
            if self.strict_profile_path:
                raise  # a broken or missing profile file: refuse, never change the numbers
            # the environment's layer is the user's shell, not the program: without it, the
            # packaged profiles and the program's own profile_paths (those still raise)
            profiles, cache_note = resolve(devices, domains, self._profile_paths,
                                           use_env=False)
            note = (f"ECNAS_PROFILE_PATH not used: {exc}; readings use the packaged "
                    "hardware profiles" + (" and profile_paths" if self._profile_paths else ""))
            _warn_once(note)
            notes.append(note)
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
        resolution = getattr(meter, "resolution_j", None)  # meters that count in steps
        facts = []
        for domain in owned:
            profile = profiles.get(domain)
            facts.append(DomainFacts(
                domain=domain, component=meter.component(domain).value, meter=meter.name,
                estimated=estimated, reason=status.reason if estimated else "",
                profile_id=profile.profile_id if profile is not None else None,
                calibration=profile.calibration if profile is not None else UNCALIBRATED,
                floor_s=meter.min_window_s(domain),
                idle_w=profile.idle_w if profile is not None and not estimated else None,
                resolution_j=resolution(domain) if resolution is not None else None))
        return tuple(facts)

    def close(self) -> None:
        """Close every meter and forget the open windows; start() opens them again."""
        session, self._session = self._session, None
        self._windows.clear()
        for a in session.attached if session is not None else ():
            a.meter.close()

    def __enter__(self) -> Monitor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def statuses(self) -> list[MeterStatus]:
        """Each meter's status: as attached once started, else probed now (discovered if none
        were given)."""
        if self._session is None:
            from ecnas.meters.registry import discover

            return discover() if self._given is None else [m.status() for m in self._given]
        return [a.status for a in self._session.attached]

    # -- windows ---------------------------------------------------------------------------
    def snapshot(self, sync_cuda: bool | None = None) -> Snapshot:
        """Every meter's reading now (CUDA synchronized first unless ``sync_cuda`` is False),
        starting the Monitor if needed."""
        session = self._session if self._session is not None else self.start()._session
        assert session is not None
        if (self.sync_cuda if sync_cuda is None else sync_cuda) and "torch" in sys.modules:
            sync_cuda_devices(self.topology is not None)
        readings = tuple([read() for read in session.reads])
        # The meters' own read times (their mean): a window's duration then matches the
        # interval the meters integrated over.
        if not readings:
            return Snapshot(time.monotonic(), readings)
        if len(readings) == 1:
            return Snapshot(readings[0].timestamp, readings)
        return Snapshot(math.fsum([r.timestamp for r in readings]) / len(readings), readings)

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
        start = self._start_of(name)
        stop = self.snapshot()
        with self._lock:
            self._windows.pop(name, None)
            idle = not self._windows
        report = self.report(name, start, stop)
        if idle and self.on_idle is not None:
            self.on_idle()
        return report

    def open_windows(self) -> tuple[str, ...]:
        """The names of the windows open now."""
        with self._lock:
            return tuple(self._windows)

    # -- reports ---------------------------------------------------------------------------
    def report(self, name: str, start: Snapshot, stop: Snapshot, *,
               idle_subtract: bool | None = None) -> EnergyReport:
        """The report of the window between two snapshots of this Monitor (``idle_subtract``
        None: the Monitor's own setting).

        Per domain: the raw joules between the edges, calibrated with the domain's profile
        (skipped where no domain is calibrated and nothing is subtracted: joules are raw),
        and what is wrong with the number (window shorter than the meter's update period,
        non-finite, no reading at an edge) in the warnings. The per-domain entries are built
        when first read: most windows are asked for their total alone."""
        session = self._session
        if session is None:
            raise InputError(f"window {name!r}: the Monitor was closed while it was open")
        subtract = self.idle_subtract if idle_subtract is None else idle_subtract
        plain = session.plain and not subtract
        duration = stop.timestamp - start.timestamp
        warnings = list(session.conflicts)
        entries: list[Entry] = []
        shown = ""  # the duration as short-window notes show it, formatted once
        for a, r0, r1 in zip(session.attached, start.readings, stop.readings, strict=True):
            if a.has_events:
                warnings += a.meter.events(start.timestamp)
            note = ""  # what a window shorter than this meter's update period says
            if a.floor_s is not None and duration < a.floor_s:
                shown = shown or f"{duration:.4f}"
                note = f"window {shown}{a.facts[0].short_note}"
                warnings.append(a.short_head + note)  # once for all its domains
            e0, e1 = r0.energy_j, r1.energy_j
            for f in a.facts:
                d = f.domain
                j0, j1 = e0.get(d), e1.get(d)
                if j0 is None or j1 is None:
                    warnings.append(f"{d}: no reading from {f.meter} at both edges")
                    continue
                raw = j1 - j0
                if raw < f.coarse_j:  # 0.0 for meters without steps: never true
                    warnings.append(coarse_warning(f, raw))
                short = note
                if not short and duration < f.floor_s:  # one meter's domains, unequal periods
                    shown = shown or f"{duration:.4f}"
                    short = f"window {shown}{f.short_note}"
                    warnings.append(f"{d}: {short}")
                if plain:
                    joules, net = raw, None
                else:
                    joules, net, why = calibrated_energy(
                        f.calibration, raw, duration, idle_w=f.idle_w, subtract_idle=subtract,
                        estimated=f.estimated)
                    if why:
                        warnings.append(f"{d}: {why}")
                if not math.isfinite(joules):
                    warnings.append(f"{d}: non-finite energy from {f.meter}")
                entries.append((f, raw, joules, net, short))
        if session.notes:
            warnings += session.notes
        if len(entries) == session.size:
            counted, estimated, reasons = session.counted, session.estimated, session.reasons
        else:  # a domain without a reading: the rest decide
            facts = [e[0] for e in entries]
            counted = counted_domains(facts)
            estimated, reasons = estimated_reasons(facts)
        total = math.fsum([e[2] for e in entries if e[0].domain in counted])
        net_total = (math.fsum([e[3] for e in entries if e[0].domain in counted
                                and e[3] is not None]) if subtract else None)
        return EnergyReport(
            name, duration, total, DomainMap(domain_entries, entries), estimated, reasons,
            session.names, tuple(dict.fromkeys(warnings)) if warnings else (), net_total,
            start.timestamp, stop.timestamp)


#: one domain of one window: (facts, raw J, calibrated J, net J or None, short-window note)
Entry = tuple[DomainFacts, float, float, "float | None", str]


def domain_entries(entries: list[Entry]) -> dict[str, DomainEnergy]:
    """The per-domain entries of a report (built when first read: :class:`DomainMap`)."""
    out: dict[str, DomainEnergy] = {}
    for f, raw, joules, net, short in entries:
        reason = (f"{f.reason}; {short}" if f.reason else short) if short else f.reason
        out[f.domain] = DomainEnergy(f.domain, f.component, joules, raw, f.meter, f.status,
                                     reason, f.profile_id, f.calibration.calibrated, net,
                                     bool(short))
    return out


def _usable(meter: Meter, status: MeterStatus) -> MeterStatus:
    if not status.usable:
        raise MeterUnavailable(f"{meter.name}: {status.reason}"
                               + (f" (fix: {status.fix})" if status.fix else ""))
    return status
