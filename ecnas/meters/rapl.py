"""RAPL meter: CPU package, DRAM (and psys on request) energy from Linux powercap sysfs.

Reads ``<ECNAS_SYSFS_ROOT>/sys/class/powercap/*rapl*:N[:M]`` zones (and the
``intel-rapl-mmio`` duplicates under ``sys/devices/virtual/powercap``, used only for domains
the MSR zones do not cover). Packages and DRAM are summed; ``core``/``uncore`` are inside the
package and never added; ``psys`` contains package and DRAM and is read only when asked.
Multi-die parts (``package-N-die-D``) sum their dies into ``cpu:N/package``.

Each ``energy_uj`` is held open and re-read with ``pread`` (a few µs). A counter read lower
than the previous read has wrapped (add ``max_energy_range_uj``) unless the wrap would imply
more energy than the highest plausible power could deliver since the last read: then the
counter was reset and counts from zero again. A background thread re-reads every counter
four times per wrap period (range ÷ highest plausible power), so a long window that spans
several wraps still adds every one of them.
"""

from __future__ import annotations

import errno
import math
import os
import re
import stat
import threading
import time
from pathlib import Path

from ecnas.errors import InputError
from ecnas.meters.base import DeviceInfo, Meter, MeterStatus, Reading, Status, _reading
from ecnas.meters.cpuinfo import cpu_models, sysfs_root
from ecnas.meters.poller import EventLog, Poller, stopped

#: Highest plausible power of one RAPL zone (W). It paces the wrap guard and tells a wrap
#: from a reset; too high only makes the guard read more often.
DEFAULT_MAX_POWER_W = 1000.0
_ZONE_DIR = re.compile(r"^(?P<ctl>[a-z0-9_-]*rapl[a-z0-9_-]*):(?P<ids>\d+(?::\d+)*)$")
_PACKAGE = re.compile(r"^package-(?P<socket>\d+)(?:-die-(?P<die>\d+))?$")
_READ_SIZE = 32
#: RAPL counters are at most 64-bit; a value beyond is not a counter reading
_MAX_UJ = (1 << 64) - 1
#: How often a counter that has not moved is checked for a vanished file (s). sysfs answers a
#: removed zone with ENODEV at once; a removed *regular* file (a test tree, a copied tree)
#: keeps its last value, and only its link count tells. A live RAPL counter moves about every
#: millisecond, so one that stands still for this long is the suspicious case; checking it at
#: every read would double the syscalls of a window edge.
LINK_CHECK_S = 0.01


class Zone:
    """One powercap zone's counter and its wrap bookkeeping (guarded by the meter's lock).

    A plain slotted class rather than a dataclass: it is mutable state, and building
    dataclasses costs milliseconds at import, which in-code metering pays on every start.
    """

    __slots__ = ("domain", "path", "name", "mmio", "range_uj", "fd", "last_uj", "shift_uj",
                 "wraps", "resets", "dead", "started", "checked_t", "ceiling_uj")

    def __init__(self, domain: str, path: Path, name: str, mmio: bool, range_uj: int) -> None:
        self.domain = domain
        self.path = path  # the energy_uj file
        self.name = name
        self.mmio = mmio
        self.range_uj = range_uj
        self.fd = -1
        self.last_uj = 0
        self.wraps = 0
        self.resets = 0
        self.dead = ""  # why the zone stopped reading (file vanished, read error)
        self.started = False
        # µJ counted since the first read = counter + shift_uj (the first reading taken off,
        # every wrap's range and every reset's last value added)
        self.shift_uj = 0
        self.checked_t = 0.0  # when the file was last found still linked (see LINK_CHECK_S)
        # range_uj once started and while alive, else -1: the read's fast path checks this
        # one number instead of started, dead and the range
        self.ceiling_uj = -1


def powercap_dirs(root: Path) -> list[Path]:
    """Every rapl zone directory under the root, each real directory once."""
    seen: set[str] = set()
    out: list[Path] = []
    bases = [root / "sys" / "class" / "powercap"]
    virtual = root / "sys" / "devices" / "virtual" / "powercap"
    if virtual.is_dir():
        bases += sorted(p for p in virtual.iterdir() if p.is_dir())
    for base in bases:
        try:
            entries = sorted(base.iterdir(), key=lambda p: p.name)
        except OSError:
            continue
        for entry in entries:
            if not _ZONE_DIR.match(entry.name):
                continue
            try:
                real = os.path.realpath(entry)
            except OSError:
                continue
            if real in seen or not entry.is_dir():
                continue
            seen.add(real)
            out.append(entry)
    return out


#: opens never wait: a FIFO (or a device) put where a sysfs file belongs would block open()
#: and read() forever; O_NONBLOCK changes nothing for the regular files sysfs has
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)


def _read_text(path: Path) -> str:
    fd = os.open(path, _OPEN_FLAGS)  # bytes: no codec lookup (works after dropping privileges)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        return os.read(fd, 4096).decode("utf-8", "replace").strip()
    finally:
        os.close(fd)


def scan_zones(root: Path, include_psys: bool = False) -> tuple[list[Zone], list[str]]:
    """The zones to read (one set per domain, no double counting) and notes on what was
    skipped and why."""
    names: dict[str, str] = {}
    dirs = powercap_dirs(root)
    for d in dirs:
        try:
            names[d.name] = _read_text(d / "name")
        except OSError:
            continue
    notes: list[str] = []
    candidates: list[Zone] = []
    for d in dirs:
        name = names.get(d.name)
        if name is None:
            continue
        m = _ZONE_DIR.match(d.name)
        assert m is not None
        ctl, ids = m.group("ctl"), m.group("ids").split(":")
        mmio = "mmio" in ctl
        domain = _domain_of(name, ids, names.get(f"{ctl}:{ids[0]}", ""))
        if domain is None:
            if name in ("core", "uncore"):
                notes.append(f"{d.name} ({name}) is inside the package: not added")
            continue
        if domain.endswith("/psys") and not include_psys:
            notes.append(f"{d.name} (psys) contains package and DRAM: read only with "
                         "include_psys")
            continue
        try:
            rng = int(_read_text(d / "max_energy_range_uj"))
            if not 0 < rng <= _MAX_UJ:  # a hostile or broken value would break the arithmetic
                raise ValueError(rng)
        except (OSError, ValueError):
            notes.append(f"{d.name}: max_energy_range_uj unreadable: wraps cannot be "
                         "corrected, zone skipped")
            continue
        try:
            regular = stat.S_ISREG(os.stat(d / "energy_uj").st_mode)
        except OSError:
            regular = True  # missing or unreadable: status() says why
        if not regular:
            notes.append(f"{d.name}: energy_uj is not a regular file (a FIFO or device where "
                         "sysfs has a file): zone skipped")
            continue
        candidates.append(Zone(domain=domain, path=d / "energy_uj", name=name, mmio=mmio,
                               range_uj=rng))
    # mmio zones duplicate MSR zones of the same domain: read each domain once.
    msr_domains = {z.domain for z in candidates if not z.mmio}
    zones = []
    for z in candidates:
        if z.mmio and z.domain in msr_domains:
            notes.append(f"{z.path.parent.name} duplicates {z.domain}: read once")
            continue
        zones.append(z)
    return zones, notes


def _domain_of(name: str, ids: list[str], parent_name: str) -> str | None:
    if len(ids) == 1:
        pm = _PACKAGE.match(name)
        if pm:
            return f"cpu:{int(pm.group('socket'))}/package"
        if name == "psys":
            return "cpu:0/psys"
        if name == "dram":  # some servers expose DRAM as a top-level zone
            return f"cpu:{int(ids[0])}/dram"
        return None
    if name == "dram":
        pm = _PACKAGE.match(parent_name)
        socket = int(pm.group("socket")) if pm else int(ids[0])
        return f"cpu:{socket}/dram"
    return None


def grant_command(paths: list[Path]) -> str:
    """The exact command that makes these counters readable (until the next reboot)."""
    return "sudo chmod a+r " + " ".join(str(p) for p in paths)


class RaplMeter(Meter):
    """CPU energy from RAPL powercap counters (measured)."""

    name = "rapl"
    estimated = False

    def __init__(self, sysfs_root: str | os.PathLike[str] | None = None,
                 include_psys: bool = False, *,
                 max_power_w: float = DEFAULT_MAX_POWER_W) -> None:
        self.root = _root(sysfs_root)
        self.include_psys = include_psys
        self.max_power_w = float(max_power_w)
        if not 0.0 < self.max_power_w < math.inf:  # the wrap guard's period divides by it
            raise InputError(f"RaplMeter(max_power_w={max_power_w!r}): the most a zone can "
                             "draw, in W, must be a positive finite number")
        self._zones: list[Zone] | None = None
        self._summed = False
        self._read_t = 0.0  # when read() last read every live zone (monotonic s)
        self._opened = False  # every zone's counter file is open (or marked dead)
        self._notes: list[str] = []
        self._lock = threading.Lock()
        self._log = EventLog()
        self._guard: Poller | None = None
        self.guard_reads = 0  # how many times the wrap guard has read (for tests/diagnostics)

    # -- discovery -------------------------------------------------------------------------
    def _scan(self) -> list[Zone]:
        if self._zones is None:
            self._zones, self._notes = scan_zones(self.root, self.include_psys)
            # a domain read from several zones (a multi-die package) sums them
            self._summed = len({z.domain for z in self._zones}) < len(self._zones)
        return self._zones

    def domains(self) -> tuple[str, ...]:
        """``cpu:<socket>/package`` and ``/dram`` (``/psys`` on request), each once however many
        zones sum into it."""
        return tuple(dict.fromkeys(z.domain for z in self._scan()))

    def status(self) -> MeterStatus:
        """Measured when every counter reads; else why not, with the exact ``chmod`` when access is
        denied."""
        zones = self._scan()
        where = self.root / "sys" / "class" / "powercap"
        if not zones:
            return MeterStatus(
                self.name, Status.UNAVAILABLE,
                reason=(f"no usable RAPL zones under {where}: " + "; ".join(self._notes))
                if self._notes else
                f"no RAPL zones under {where} (no intel_rapl driver, a VM, or not Linux)",
                fix="on Intel load the driver ('sudo modprobe intel_rapl_msr'); AMD Zen needs "
                    "Linux >= 5.8; in a container mount the host's /sys/class/powercap and set "
                    "ECNAS_SYSFS_ROOT")
        denied: list[Path] = []
        broken: list[str] = []
        for z in zones:
            try:
                value = int(_read_text(z.path)[:_READ_SIZE])
            except PermissionError:
                denied.append(z.path)
            except (OSError, ValueError) as exc:
                broken.append(f"{z.path}: {exc}")
            else:
                # a counter never reads below 0 or beyond its range: one that does is not
                # read from the hardware (a written file, a broken driver) and is not trusted
                if not 0 <= value <= z.range_uj:
                    broken.append(f"{z.path}: reads {value}, outside the counter's range "
                                  f"0..{z.range_uj}: not trusted")
        if denied:
            return MeterStatus(
                self.name, Status.UNAVAILABLE, domains=self.domains(),
                reason=f"permission denied reading {len(denied)} RAPL counter(s) "
                       f"({denied[0]}): readable by root only since CVE-2020-8694; the fix "
                       "below lasts until reboot (a udev rule or a sysfsutils entry makes it "
                       "permanent)",
                fix=grant_command(denied),
                devices=self._devices())
        if broken:
            return MeterStatus(self.name, Status.UNAVAILABLE, domains=self.domains(),
                               reason="unreadable or untrusted RAPL counter: "
                               + "; ".join(broken),
                               fix="check the powercap driver (dmesg)")
        note = "; ".join(self._notes)
        return MeterStatus(self.name, Status.MEASURED, domains=self.domains(),
                           reason=f"powercap counters under {where}" + (f" ({note})" if note else ""),
                           devices=self._devices())

    def _devices(self) -> tuple[DeviceInfo, ...]:
        models = cpu_models(self.root)
        out = []
        for domain in self.domains():
            if not domain.endswith("/package"):
                continue
            socket = int(domain.split(":")[1].split("/")[0])
            name = models.get(socket) or next(iter(models.values()))
            out.append(DeviceInfo(domain=domain, kind="cpu", name=name,
                                  extra={"socket": str(socket)}))
        return tuple(out)

    # -- reading ---------------------------------------------------------------------------
    def _open(self) -> None:
        for z in self._scan():
            if z.fd < 0 and not z.dead:
                z.fd = os.open(z.path, _OPEN_FLAGS)

    def _raw(self, z: Zone) -> int | None:
        """The counter now, or None (and the zone marked dead) when it can no longer be read."""
        try:
            return self._checked(z, int(os.pread(z.fd, _READ_SIZE, 0)))
        except (OSError, ValueError) as exc:
            return self._died(z, exc)

    @staticmethod
    def _checked(z: Zone, value: int, now: float | None = None) -> int:
        # sysfs answers ENODEV once the zone is gone; a removed regular file (a test tree, a
        # copied tree) keeps its last value, so check its link count then (LINK_CHECK_S).
        if value == z.last_uj and z.started and (now is None
                                                 or now - z.checked_t >= LINK_CHECK_S):
            if os.fstat(z.fd).st_nlink == 0:
                raise FileNotFoundError(errno.ENOENT, "file vanished", str(z.path))
            if now is not None:
                z.checked_t = now
        if not 0 <= value <= z.range_uj:
            raise ValueError(f"counter value {value} outside its range 0..{z.range_uj}")
        return value

    @staticmethod
    def _died(z: Zone, exc: Exception) -> None:
        why = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        z.dead = f"{z.path}: {why}"
        z.ceiling_uj = -1
        return None

    def _sample(self, z: Zone, now: float, raw: int | None = None) -> None:
        """Fold one counter value (read here unless given) into the zone's bookkeeping."""
        if z.dead:
            return
        if raw is None:
            raw = self._raw(z)
        else:
            try:
                raw = self._checked(z, raw, now)
            except (OSError, ValueError) as exc:
                raw = self._died(z, exc)
        if raw is None:
            self._log.add(f"{z.domain}: counter stopped reading ({z.dead}); energy after "
                          "this point is missing", now)
            return
        if not z.started:
            z.last_uj = raw
            z.shift_uj = -raw
            z.started = True
            z.ceiling_uj = z.range_uj
            return
        if raw < z.last_uj:
            wrapped_uj = z.range_uj - z.last_uj + raw
            # 1.5× and 10 ms of slack: timestamps are taken next to, not at, the counter read.
            # every live zone is read at every read: the previous read is this zone's too
            budget_uj = self._budget_uj(now)
            if wrapped_uj <= budget_uj:
                z.shift_uj += z.range_uj
                z.wraps += 1
            else:
                z.shift_uj += z.last_uj  # keep what was counted; the counter restarted at 0
                z.resets += 1
                self._log.add(f"{z.domain}: counter reset detected ({z.last_uj} -> {raw} "
                              "µJ); counting on from 0", now)
        elif raw - z.last_uj > self._budget_uj(now):
            # more than the highest plausible power could deliver since the last read: a
            # counter written by something else, or a broken driver; counted, but flagged
            dt = now - self._read_t
            self._log.add(f"{z.domain}: counter jumped {(raw - z.last_uj) * 1e-6:.6g} J in "
                          f"{dt:.3g} s, above {self.max_power_w:g} W, the most a zone can "
                          "draw; this energy is suspect", now)
        z.last_uj = raw

    def _budget_uj(self, now: float) -> float:
        """The most µJ one zone can count since the previous read (1.5× and 10 ms of slack:
        timestamps are taken next to, not at, the counter reads)."""
        return self.max_power_w * 1e6 * (1.5 * (now - self._read_t) + 0.01)

    def read(self) -> Reading:
        """Joules per domain now, wrap-corrected; zones of one domain summed."""
        zones = self._zones if self._zones is not None else self._scan()
        pread = os.pread
        with self._lock:
            if not self._opened:
                self._open()
                self._opened = True
            now = time.monotonic()
            out: dict[str, float] = {}
            summed = self._summed
            budget = self.max_power_w * 1e6 * (1.5 * (now - self._read_t) + 0.01)  # _budget_uj
            for z in zones:
                # Inlined fast path (this runs at every window edge): a live counter that
                # moved forward within its range, or that has not moved and whose file was
                # found linked less than LINK_CHECK_S ago. Anything else (first read, wrap,
                # reset, a file to check, read error, a dead zone) goes through _sample.
                try:
                    raw = int(pread(z.fd, _READ_SIZE, 0))
                except (OSError, ValueError):
                    raw = -1  # _sample reads again and records why
                last = z.last_uj
                if raw <= z.ceiling_uj and (last < raw <= last + budget or (
                        raw == last and now - z.checked_t < LINK_CHECK_S)):
                    z.last_uj = raw
                else:
                    self._sample(z, now, raw if raw >= 0 else None)
                    raw = z.last_uj
                joules = (z.shift_uj + raw) * 1e-6
                out[z.domain] = out.get(z.domain, 0.0) + joules if summed else joules
            self._read_t = now
        return _reading((now, out))

    def min_window_s(self, domain: str) -> float:
        """One millisecond: RAPL counters update about that often."""
        return 0.001  # RAPL counters update about every millisecond

    def events(self, since: float) -> tuple[str, ...]:
        return self._log.since(since)

    def counters(self) -> list[dict[str, object]]:
        """Per-zone bookkeeping (wraps, resets, why dead), for diagnostics and tests."""
        with self._lock:
            return [{"domain": z.domain, "path": str(z.path), "wraps": z.wraps,
                     "resets": z.resets, "dead": z.dead, "range_uj": z.range_uj}
                    for z in self._scan()]

    # -- wrap guard ------------------------------------------------------------------------
    def guard_interval_s(self) -> float:
        """A quarter of the shortest wrap period (range ÷ highest plausible power)."""
        zones = self._scan()
        if not zones:
            return 60.0
        period = min(z.range_uj * 1e-6 / self.max_power_w for z in zones)
        return min(60.0, max(0.0005, period / 4.0))

    def start(self) -> None:
        """Baseline every counter and start the wrap guard thread (idempotent)."""
        if self._guard is not None:
            return
        self.read()  # baseline every counter now
        self._guard = Poller("ecnas-rapl-guard", self._guard_read, self.guard_interval_s(),
                             self._log, what="rapl: wrap guard",
                             after="energy after this point is missing",
                             on_error=self._guard_failed)
        self._guard.start()

    def _guard_read(self) -> None:
        self.read()
        self.guard_reads += 1

    def _guard_failed(self, exc: Exception) -> None:
        # every zone stops counting: wraps after this would be missed, so no number is right
        why = stopped("wrap guard", exc)
        with self._lock:
            for z in self._zones or ():
                z.dead = z.dead or f"{z.path}: {why}"
                z.ceiling_uj = -1

    def close(self) -> None:
        """Stop the wrap guard and close the counter files (a later read reopens them)."""
        guard, self._guard = self._guard, None
        if guard is not None:
            guard.stop()
        with self._lock:
            self._opened = False
            for z in self._zones or ():
                if z.fd >= 0:
                    os.close(z.fd)
                    z.fd = -1


def _root(root: str | os.PathLike[str] | None) -> Path:
    return sysfs_root(root)
