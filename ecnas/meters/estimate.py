"""Estimate meter: CPU energy where no counter can be read, always flagged *estimated*.

energy = CPU seconds of the metered process tree × power of one fully busy core.

The CPU seconds are user + system time of the process, of its reaped children, and of its
live descendants (found through ``/proc/<pid>/task/<tid>/children`` on Linux, psutil
elsewhere), so DataLoader workers and a metered command count. The per-core power comes from
the matched hardware profile (``per_core_w``) when there is one, else
:data:`DEFAULT_PER_CORE_W`. The profile is handed over through :meth:`EstimateMeter.bind_profile`
(a Monitor, ``ecnas hardware`` and ``ecnas.monitor.profile_cache.bind_profiles`` do it): a reader
never looks profiles up itself, the profiles sit above the readers. The estimate covers the work the process tree did, not the idle
power of the machine, nor other processes.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from ecnas.meters.base import (
    DeviceInfo,
    DomainProfile,
    Meter,
    MeterStatus,
    Reading,
    Status,
    _reading,
)
from ecnas.meters.cpuinfo import cpu_model

#: Watts of one fully busy core when no profile says otherwise: a server core draws about
#: TDP ÷ cores (250 W / 32 ≈ 8 W), a desktop core more (125 W / 8 ≈ 15 W); 10 W sits between.
DEFAULT_PER_CORE_W = 10.0
DOMAIN = "cpu:estimate"
#: how machine load moves the estimate, said with every estimate (issue 37.6)
LOAD_NOTE = ("; under load it grows: threads that wait spin and count as CPU time, and the "
             "same work takes more CPU time beside busy processes (a cell's per-epoch "
             "estimate moved ×1.5–1.66 between a quiet machine and load 8–11)")
_PROC = Path("/proc")


class EstimateMeter(Meter):
    """CPU energy estimated from CPU time × per-core power (never a measurement)."""

    name = "estimate"
    estimated = True

    def __init__(self, pid: int | None = None, per_core_w: float | None = None, *,
                 reason: str = "") -> None:
        self.pid = os.getpid() if pid is None else int(pid)
        self._given_w = per_core_w
        self._why_no_counter = reason or "no CPU energy counter is readable here"
        self._resolved: tuple[float, str, str | None] | None = None
        self._bound: tuple[DomainProfile | None, str] | None = None  # from bind_profile
        self._lock = threading.Lock()
        self._last_cpu_s = 0.0
        self._tick_s = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01
        self._kids: list[int] = []  # the live descendants found by the last scan
        self._scanned_t = -1.0  # when (monotonic s); see cpu_seconds

    # -- power per core --------------------------------------------------------------------
    def per_core(self) -> tuple[float, str, str | None]:
        """(watts per busy core, where that number comes from, profile id or None)."""
        if self._resolved is None:
            self._resolved = self._resolve()
        return self._resolved

    def profile_device(self) -> DeviceInfo:
        """This CPU: its per-core power is needed before status() can say what it estimates
        with."""
        return self.device()

    def bind_profile(self, profile: DomainProfile | None, note: str = "") -> None:
        """Use this profile match (None with the note saying why none); a Monitor matches
        every meter's device at once and hands the result over."""
        self._bound = (profile, note)
        self._resolved = None

    def _resolve(self) -> tuple[float, str, str | None]:
        if self._given_w is not None:
            return float(self._given_w), f"{self._given_w:g} W per core as given", None
        model = cpu_model()
        profile, note = self._bound if self._bound is not None else (
            None, "no hardware profile bound: the meter was used outside a Monitor")
        if profile is not None and profile.per_core_w:
            return (float(profile.per_core_w),
                    f"{profile.per_core_w:g} W per core from profile {profile.profile_id} "
                    f"({profile.reason})", profile.profile_id)
        why = note or f"no profile with per_core_w matched {model!r}"
        return (DEFAULT_PER_CORE_W, f"generic default {DEFAULT_PER_CORE_W:g} W per core "
                f"({why})", profile.profile_id if profile is not None else None)

    def device(self, model: str | None = None) -> DeviceInfo:
        """The CPU behind ``cpu:estimate``, named ``model`` or as ``/proc/cpuinfo`` names it."""
        return DeviceInfo(domain=DOMAIN, kind="cpu", name=model or cpu_model())

    # -- meter -----------------------------------------------------------------------------
    def status(self) -> MeterStatus:
        watts, source, _ = self.per_core()
        return MeterStatus(
            self.name, Status.ESTIMATED, domains=(DOMAIN,),
            reason=f"{self._why_no_counter}; CPU energy estimated as CPU time of process "
                   f"{self.pid} and its children × {source}{LOAD_NOTE}",
            fix="make a CPU counter readable (see the rapl meter's fix) to measure instead",
            devices=(self.device(),))

    def domains(self) -> tuple[str, ...]:
        """Only ``cpu:estimate``."""
        return (DOMAIN,)

    def cpu_seconds(self, now: float | None = None) -> float:
        """User + system seconds of the process tree so far.

        The tree is walked again at most once per clock tick (``now``: monotonic s; None walks
        it now). The walk reads a ``children`` file per thread, and a process with torch
        loaded has a thread per core: on a 16-core GPU machine that is dozens of system calls
        at every window edge. CPU times only advance in ticks, so a descendant found up to a
        tick later is still counted whole (its times are cumulative), in the window that
        finds it: within the meter's resolution."""
        if self.pid == os.getpid():
            t = os.times()
            total = t.user + t.system + t.children_user + t.children_system
        else:
            total = _stat_seconds(self.pid, self._tick_s)
        if now is None or now - self._scanned_t >= self._tick_s:
            self._kids = _descendants(self.pid)
            self._scanned_t = time.monotonic() if now is None else now
        for child in self._kids:
            total += _stat_seconds(child, self._tick_s)
        return total

    def read(self) -> Reading:
        """CPU seconds of the process tree so far × watts per busy core; never decreasing."""
        watts = self.per_core()[0]
        now = time.monotonic()
        with self._lock:
            cpu_s = self.cpu_seconds(now)
            # A descendant that leaves the tree (daemonized) takes its time with it; never
            # let the cumulative count run backwards.
            cpu_s = max(cpu_s, self._last_cpu_s)
            self._last_cpu_s = cpu_s
        return _reading((now, {DOMAIN: cpu_s * watts}))

    def min_window_s(self, domain: str) -> float:
        """One clock tick: CPU times advance in ticks."""
        return self._tick_s  # CPU times advance in clock ticks

    def resolution_j(self, domain: str) -> float:
        """The smallest step of the estimate: one clock tick of CPU time × watts per core
        (10 ms × 3.5 W = 35 mJ on a profile of 3.5 W a core). A window that counts a few
        ticks holds a few of these steps: a Monitor's report warns below ten of them
        (``ecnas.monitor.report.RESOLUTION_STEPS``)."""
        return self._tick_s * self.per_core()[0]

    def start(self) -> None:
        """Resolve the per-core power now, so no window edge pays for it."""
        self.per_core()


def _read(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


def _stat_seconds(pid: int, tick_s: float) -> float:
    """utime + stime + cutime + cstime of one process (0 when it is gone)."""
    try:
        data = _read(f"/proc/{pid}/stat")
    except OSError:
        return _psutil_seconds(pid) if not _PROC.is_dir() else 0.0
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = data[data.rfind(b")") + 2:].split()
    # fields[0] is state (field 3); utime is field 14 → index 11.
    return sum(int(x) for x in fields[11:15]) * tick_s


def _psutil_seconds(pid: int) -> float:
    import psutil

    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return t.user + t.system + getattr(t, "children_user", 0.0) + getattr(
        t, "children_system", 0.0)


def _descendants(pid: int) -> list[int]:
    """Live descendants of ``pid``: procfs children lists on Linux, psutil elsewhere."""
    task = f"/proc/{pid}/task"
    try:
        tids = os.listdir(task)
    except OSError:
        if _PROC.is_dir():
            return []  # the process is gone
        return _psutil_descendants(pid)
    out: list[int] = []
    for tid in tids:
        try:
            data = _read(f"{task}/{tid}/children")
        except FileNotFoundError:
            if tid == str(pid):  # the main thread has no list: no CONFIG_PROC_CHILDREN
                return _psutil_descendants(pid)
            continue  # the thread ended
        except OSError:
            return _psutil_descendants(pid)
        for kid in data.split():
            out.append(int(kid))
            out.extend(_descendants(int(kid)))
    return out


def _psutil_descendants(pid: int) -> list[int]:
    import psutil

    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []
