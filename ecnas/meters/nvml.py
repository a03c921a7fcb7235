"""NVML meter: NVIDIA GPU energy through the ``pynvml`` bindings (package nvidia-ml-py).

Per GPU the best available source is used:

1. ``counter``: ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since driver load, Volta and
   newer), read at window edges. It updates about every 100 ms, so shorter windows are flagged.
2. ``instant``: the ``NVML_FI_DEV_POWER_INSTANT`` field, polled in a background thread and
   integrated with the trapezoid rule (window edges take a sample too).
3. ``power``: ``nvmlDeviceGetPowerUsage`` polled the same way. On Ampere and newer this is a
   1 s average, so windows under a second are flagged.

Where NVML is slow (an H200 in a Firecracker VM took 4.4 ms a counter read under load), the
edges must not wait on it: when a read takes ``SLOW_READ_S`` or more (timed when the meter
starts, and again at every edge while it reads synchronously), or with ``background=True``, a
sampler thread reads every GPU every ``SAMPLER_PERIOD_S`` (or 5 x one pass, if longer) and
publishes the newest reading; window edges return it (its own timestamp: the pass's midpoint)
without calling NVML. A sample older than ``STALE_PERIODS`` periods (the sampler starved or
stopped) makes the edge read NVML itself, with a warning. The sample's age (tens of ms) is well
under the counter's own 100 ms update, and both edges of a window are shifted alike.

``source=`` forces one of these for every GPU (``ecnas calibrate`` polls ``"power"`` next to
the counter to compare the two on the same board).

The GPUs metered are those of ``CUDA_VISIBLE_DEVICES`` (indices or ``GPU-`` UUIDs, prefixes
allowed as CUDA allows them), else all. Domain ``gpu:<i>`` is the i-th visible GPU, i.e. what
torch calls ``cuda:<i>``. ``MIG-`` entries are refused: NVML reports energy per board, and a
slice must never be charged the whole board's energy.
"""

from __future__ import annotations

import contextlib
import functools
import os
import statistics
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any, Literal

from ecnas.errors import InputError, MeterUnavailable
from ecnas.meters.accumulator import CounterTotal, PowerIntegral
from ecnas.meters.base import DeviceInfo, Meter, MeterStatus, Reading, Status
from ecnas.meters.poller import EventLog, Poller

NVML_FI_DEV_POWER_INSTANT = 186  # pynvml.NVML_FI_DEV_POWER_INSTANT
DEFAULT_POLL_INTERVAL_S = 0.05
COUNTER_UPDATE_S = 0.1
AVERAGED_POWER_S = 1.0
LIBRARY = "libnvidia-ml.so.1"
#: how a GPU is read: its energy counter, or polled instantaneous / averaged power
NvmlMode = Literal["counter", "instant", "power"]
SOURCES = ("counter", "instant", "power")

#: A read at least this slow (per GPU, median of LATENCY_PROBES passes) moves the window edges'
#: reads to the background sampler (``background=None``). A healthy driver answers in tens of
#: µs (the tests' stand-in in ~10 µs), and synchronous edges keep exact edge times; at 0.2 ms
#: a window's two edges already cost 0.4 ms, 2 % of a 20 ms training step (an H200 in a
#: Firecracker VM: 4.4 ms a read under load).
SLOW_READ_S = 0.0002
#: passes over the GPUs timed when the meter decides how to read (their median counts)
LATENCY_PROBES = 3
#: this many slow edge reads in a row switch an undecided meter to background sampling: NVML
#: can slow down under load after the meter started
SLOW_STREAK = 5
#: the sampler's shortest period: five samples per 100 ms counter update, so a sample's age
#: stays well under the counter's own resolution
SAMPLER_PERIOD_S = 0.02
#: the sampler's period is at least this many times one pass over the GPUs: even where NVML
#: spins on a CPU while it answers, the sampler keeps at most 1/5 of one thread busy
SAMPLER_DUTY_FACTOR = 5.0
#: a sample older than this many periods (plus one pass) means the sampler starved or died:
#: the edge then reads NVML itself and says so
STALE_PERIODS = 3.0
#: where the default meters take their ``background`` setting: auto (or unset), on, off
BACKGROUND_ENV = "ECNAS_NVML_BACKGROUND"
_SETTINGS = {"": None, "auto": None, "on": True, "1": True, "true": True, "yes": True,
             "off": False, "0": False, "false": False, "no": False}


def background_setting(environ: Mapping[str, str] | None = None) -> bool | None:
    """``ECNAS_NVML_BACKGROUND`` as the meter's ``background`` option: auto/unset → None
    (decide by the measured read latency), on → True, off → False."""
    raw = (os.environ if environ is None else environ).get(BACKGROUND_ENV, "")
    try:
        return _SETTINGS[raw.strip().lower()]
    except KeyError:
        raise InputError(f"{BACKGROUND_ENV}={raw!r}: use auto, on or off") from None


class Gpu:
    """One metered GPU and its running total (mutable, guarded by the meter's lock)."""

    __slots__ = ("domain", "handle", "nvml_index", "name", "uuid", "pci_device_id", "mode",
                 "acc", "failed")

    def __init__(self, domain: str, handle: Any, nvml_index: int, name: str, uuid: str,
                 pci_device_id: str | None, mode: NvmlMode) -> None:
        self.domain = domain
        self.handle = handle
        self.nvml_index = nvml_index
        self.name = name
        self.uuid = uuid
        self.pci_device_id = pci_device_id
        self.mode = mode
        # joules so far: the mJ counter's differences (64 bits: no wrap; a decrease is a
        # driver reload), or polled power integrated
        self.acc: CounterTotal | PowerIntegral = (
            CounterTotal(1000.0, unit="mJ") if mode == "counter" else PowerIntegral())
        self.failed = ""

    @property
    def energy_j(self) -> float:
        """Joules so far (counter difference or integrated power)."""
        return self.acc.energy_j


def visible_devices(environ: Mapping[str, str] | None = None) -> list[str] | None:
    """The CUDA_VISIBLE_DEVICES entries (None when unset), cut at the first invalid one as
    CUDA does."""
    env = os.environ if environ is None else environ
    raw = env.get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        return None
    out = []
    for entry in (e.strip() for e in raw.split(",")):
        if not entry:
            break
        if entry.lstrip("-").isdigit():
            if int(entry) < 0:
                break
            out.append(str(int(entry)))
        elif entry.startswith(("GPU-", "MIG-")):
            out.append(entry)
        else:
            break
    return out


_LOADER_DIRS = ("/lib", "/usr/lib", "/lib64", "/usr/lib64")


def loader_may_find(name: str) -> bool:
    """False only where the dynamic loader surely cannot find the library ``name``: not in
    ``LD_LIBRARY_PATH``, not in ``/etc/ld.so.cache``, not in the default folders or the
    interpreter's own ``lib``. Machines without NVIDIA then skip importing ctypes and a failing
    ``dlopen`` (about 4 ms of every ``measure()`` start); anything else still goes to dlopen."""
    extra = (os.path.join(sys.prefix, "lib"), os.path.join(sys.base_prefix, "lib"))
    dirs = [*os.environ.get("LD_LIBRARY_PATH", "").split(":"), *_LOADER_DIRS, *extra]
    if any(d and os.path.exists(os.path.join(d, name)) for d in dirs):
        return True
    try:
        with open("/etc/ld.so.cache", "rb") as fh:
            return name.encode() in fh.read()
    except OSError:
        return True  # no cache to consult: let dlopen decide


def _loads(name: str) -> bool:
    """Whether the dynamic loader loads ``name``: ruled out without ctypes where it surely
    cannot find it, else asked (``dlopen``)."""
    if not loader_may_find(name):
        return False
    import ctypes

    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


class NvmlMeter(Meter):
    """GPU energy from NVML (measured)."""

    name = "nvml"
    estimated = False

    def __init__(self, devices: Sequence[int | str] | None = None, *,
                 poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
                 environ: Mapping[str, str] | None = None, source: NvmlMode | None = None,
                 background: bool | None = None,
                 ordinals: Sequence[int] | None = None) -> None:
        """``background``: None reads at the window edges unless NVML turns out slow (see
        ``SLOW_READ_S``), True always samples in the background, False never does.
        ``ordinals``: the ``gpu:<i>`` name of each of ``devices`` (default 0, 1, …): a rank
        of a distributed job that meters its own ``cuda:3`` alone names it ``gpu:3``."""
        if source is not None and source not in SOURCES:
            raise ValueError(f"source: {source!r} is not one of: " + ", ".join(SOURCES))
        self._source = source
        self._environ = os.environ if environ is None else environ
        self._order_note = ""
        if devices is not None:
            self._selection: list[str] | None = [str(d) for d in devices]
        else:
            self._selection = visible_devices(environ)
        self._ordinals = None if ordinals is None else [int(i) for i in ordinals]
        self.poll_interval_s = float(poll_interval_s)
        self._gpus: list[Gpu] | None = None
        self._problem: tuple[str, str] | None = None  # (reason, fix) when unusable
        self._nvml: Any = None  # the pynvml module once initialized (Any: attributes untyped)
        self._lock = threading.Lock()
        self._log = EventLog()  # its own lock: events() never waits while NVML answers
        self._poller: Poller | None = None
        self._background = background
        self._pass_s: float | None = None  # median seconds of one read of every GPU
        self._started = False
        self._sampling = False  # background mode: edges take the sampler's newest reading
        self._latest: Reading | None = None  # published by one assignment, read without lock
        self._period_s = 0.0
        self._stale_s = 0.0
        self._late = False  # an edge found the newest sample stale (warned once per episode)
        self._late_reads = 0  # edges that read NVML themselves in background mode
        self._slow: list[float] = []  # the current streak of slow synchronous edge reads

    # -- discovery -------------------------------------------------------------------------
    def _probe(self) -> list[Gpu]:
        if self._gpus is not None:
            return self._gpus
        self._gpus = []
        mig = [e for e in self._selection or () if e.startswith("MIG-")]
        if mig:
            self._problem = (
                f"CUDA_VISIBLE_DEVICES names the MIG slice {mig[0]}: NVML reports energy and "
                "power for the whole board, not per slice, so it is not metered",
                "run on a full GPU (MIG disabled) to measure; to charge the whole board on "
                "purpose, pass NvmlMeter(devices=[<board index>])")
            return self._gpus
        if self._selection == []:
            self._problem = ("CUDA_VISIBLE_DEVICES is empty: no GPU is visible to this job",
                             "unset CUDA_VISIBLE_DEVICES or name the GPUs to meter")
            return self._gpus
        if sys.platform.startswith("linux"):
            if not _loads(LIBRARY):  # cheap check before importing pynvml (~15 ms)
                self._problem = (f"{LIBRARY} not found: no NVIDIA driver here",
                                 "install the NVIDIA driver; in a container run with the "
                                 "NVIDIA container toolkit (docker run --gpus all)")
                return self._gpus
        try:
            import pynvml
        except ImportError:
            self._problem = ("the NVML bindings are not installed",
                             "pip install nvidia-ml-py")
            return self._gpus
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            self._problem = (f"nvmlInit failed: {_text(exc)}",
                             "check the NVIDIA driver (nvidia-smi must work)")
            return self._gpus
        self._nvml = pynvml
        try:
            self._gpus = self._handles(pynvml)
        except (pynvml.NVMLError, MeterUnavailable) as exc:
            self._problem = (f"cannot open the GPUs: {_text(exc)}",
                             "check CUDA_VISIBLE_DEVICES against 'nvidia-smi -L'")
            self._gpus = []
        if not self._gpus and self._problem is None:
            self._problem = ("NVML sees no GPU", "check 'nvidia-smi -L'")
        return self._gpus

    def _handles(self, nv: ModuleType) -> list[Gpu]:
        count = nv.nvmlDeviceGetCount()
        uuids = {}
        for i in range(count):
            uuids[i] = _str(nv.nvmlDeviceGetUUID(nv.nvmlDeviceGetHandleByIndex(i)))
        wanted: list[int] = []
        for entry in self._selection if self._selection is not None else map(str, range(count)):
            if entry.isdigit():
                if int(entry) >= count:
                    raise MeterUnavailable(f"GPU index {entry} does not exist ({count} GPUs)")
                wanted.append(int(entry))
            else:
                hits = [i for i, u in uuids.items() if u == entry] or [
                    i for i, u in uuids.items() if u.startswith(entry)]
                if len(hits) != 1:
                    raise MeterUnavailable(f"{entry} matches {len(hits)} GPUs by UUID")
                wanted.append(hits[0])
        names = {_str(nv.nvmlDeviceGetName(nv.nvmlDeviceGetHandleByIndex(i)))
                 for i in range(count)}
        if len(names) > 1 and self._environ.get("CUDA_DEVICE_ORDER") != "PCI_BUS_ID":
            self._order_note = ("mixed GPU models: gpu:i follows NVML (PCI bus) order, CUDA "
                                "numbers the fastest first unless CUDA_DEVICE_ORDER=PCI_BUS_ID")
        gpus = []
        for ordinal, index in enumerate(wanted):
            handle = nv.nvmlDeviceGetHandleByIndex(index)
            try:
                pci = nv.nvmlDeviceGetPciInfo(handle).pciDeviceId
                pci_id: str | None = f"0x{(pci >> 16) & 0xFFFF:04x}"
            except nv.NVMLError:
                pci_id = None
            if self._ordinals is not None and ordinal < len(self._ordinals):
                ordinal = self._ordinals[ordinal]
            gpus.append(Gpu(domain=f"gpu:{ordinal}", handle=handle, nvml_index=index,
                            name=_str(nv.nvmlDeviceGetName(handle)), uuid=uuids[index],
                            pci_device_id=pci_id, mode=self._mode(nv, handle)))
        return gpus

    def _mode(self, nv: ModuleType, handle: Any) -> NvmlMode:
        if self._source is not None:
            return self._source
        try:
            nv.nvmlDeviceGetTotalEnergyConsumption(handle)
            return "counter"
        except nv.NVMLError:
            pass  # not supported on this GPU: fall back to polling power
        try:
            value = nv.nvmlDeviceGetFieldValues(handle, [NVML_FI_DEV_POWER_INSTANT])[0]
            if value.nvmlReturn == 0:
                return "instant"
        except nv.NVMLError:
            pass  # no instantaneous field: the averaged power reading remains
        return "power"

    def domains(self) -> tuple[str, ...]:
        """``gpu:<i>`` per visible GPU, i as torch numbers ``cuda:<i>``."""
        return tuple(g.domain for g in self._probe())

    def status(self) -> MeterStatus:
        """Measured with how each GPU is read (counter or polled power, at the edges or sampled in
        the background), else why not and the fix."""
        gpus = self._probe()
        if not gpus:
            reason, fix = self._problem or ("no GPU", "")
            return MeterStatus(self.name, Status.UNAVAILABLE, reason=reason, fix=fix)
        background = self._sampling or self._wants_background(gpus)
        pass_s = self.pass_latency_s()
        period = (self._period_s if self._sampling else self._period(gpus, pass_s))
        poll = period if background else self.poll_interval_s
        how = {"counter": "energy counter", "instant": "instantaneous power polled every "
               f"{poll:g} s", "power": "power reading polled every "
               f"{poll:g} s (averaged over ~1 s on Ampere and newer)"}
        reading = "; ".join([f"{g.domain} {g.name}: {how[g.mode]}" for g in gpus])
        took = f"a read takes {_ms(pass_s / len(gpus))} here"
        if background:
            reading += (f" ({took}: sampled every {_ms(period)} in the background"
                        f"{' as asked' if self._background else ''}; window edges use the "
                        f"latest sample, ≤ {_ms(period + pass_s)} old)")
        elif pass_s / len(gpus) >= SLOW_READ_S:
            reading += f" ({took}; background sampling off: each window edge reads NVML)"
        reason = "; ".join([reading] + ([self._order_note] if self._order_note else []))
        return MeterStatus(self.name, Status.MEASURED, domains=self.domains(), reason=reason,
                           devices=tuple(self.device(g) for g in gpus))

    @staticmethod
    def device(g: Gpu) -> DeviceInfo:
        """What a profile is matched on for GPU ``g``: name, PCI device id, UUID, NVML index and
        mode."""
        return DeviceInfo(domain=g.domain, kind="gpu", name=g.name,
                          pci_device_id=g.pci_device_id, uuid=g.uuid,
                          extra={"nvml_index": str(g.nvml_index), "mode": g.mode})

    def gpus(self) -> list[Gpu]:
        """The metered GPUs (probing NVML on first use); a copy of the list."""
        return list(self._probe())

    @property
    def sampling(self) -> bool:
        """True while window edges take the background sampler's newest reading."""
        return self._sampling

    def pass_latency_s(self) -> float:
        """Median seconds one read of every GPU takes here (timed on first use, without
        touching the running totals)."""
        if self._pass_s is None:
            gpus = [g for g in self._probe() if not g.failed]
            times = []
            for _ in range(LATENCY_PROBES):
                t0 = time.perf_counter()
                for g in gpus:
                    # a failing board is the reading's business, not the timing's
                    with contextlib.suppress(self._nvml.NVMLError):
                        self._raw(g)
                times.append(time.perf_counter() - t0)
            self._pass_s = statistics.median(times)
        return self._pass_s

    def _wants_background(self, gpus: Sequence[Gpu]) -> bool:
        if self._background is not None:
            return self._background
        return self.pass_latency_s() / max(1, len(gpus)) >= SLOW_READ_S

    def _period(self, gpus: Sequence[Gpu], pass_s: float) -> float:
        base = SAMPLER_PERIOD_S
        if any(g.mode != "counter" for g in gpus):
            base = min(base, self.poll_interval_s)  # polled power: no coarser than asked
        return max(base, SAMPLER_DUTY_FACTOR * pass_s)

    # -- reading ---------------------------------------------------------------------------
    def _power_w(self, g: Gpu) -> float:
        nv = self._nvml
        if g.mode == "instant":
            value = nv.nvmlDeviceGetFieldValues(g.handle, [NVML_FI_DEV_POWER_INSTANT])[0]
            if value.nvmlReturn != 0:
                raise nv.NVMLError(value.nvmlReturn)
            return value.value.uiVal / 1000.0
        return nv.nvmlDeviceGetPowerUsage(g.handle) / 1000.0

    def _raw(self, g: Gpu) -> float:
        """One NVML read: mJ from the counter, else watts."""
        if g.mode == "counter":
            return self._nvml.nvmlDeviceGetTotalEnergyConsumption(g.handle)
        return self._power_w(g)

    def _pass(self, gpus: Sequence[Gpu]) -> tuple[float, float]:
        """Read ``gpus`` once and update their totals (the caller holds the lock): (time,
        seconds taken). The time is the pass's midpoint, the best estimate of when reads
        that take milliseconds read."""
        values: list[Any] = []
        t0 = time.monotonic()
        for g in gpus:
            if g.failed:
                values.append(None)
                continue
            try:
                values.append(self._raw(g))
            except self._nvml.NVMLError as exc:
                values.append(exc)
        t1 = time.monotonic()
        now = 0.5 * (t0 + t1)
        for g, value in zip(gpus, values, strict=True):
            if isinstance(value, BaseException):
                g.failed = _text(value)
                self._log.add(f"{g.domain}: NVML error ({g.failed}); energy after this point "
                              "is missing", now)
            elif value is not None:
                note = g.acc.update(value, now)  # the accumulator turns reads into joules
                if note:  # the counter went back: the driver reloaded
                    self._log.add(f"{g.domain}: {note}", now)
        return now, t1 - t0

    def read(self) -> Reading:
        """Joules per GPU now: the sampler's newest reading in background mode while it is fresh,
        else read from NVML here."""
        latest = self._latest
        if latest is not None and time.monotonic() - latest.timestamp <= self._stale_s:
            return latest  # background mode: the sampler's newest reading, no NVML call
        gpus = self._probe()
        if not gpus:
            raise MeterUnavailable(self.status().reason)
        with self._lock:
            if self._sampling:
                return self._read_late(gpus)
            now, took = self._pass(gpus)
            reading = Reading(now, {g.domain: g.acc.energy_j for g in gpus})
            switch = self._count_slow(gpus, took)
            if switch:
                self._log.add(f"nvml: reads slowed to {_ms(took / len(gpus))} each: "
                              "sampling in the background from now on", now)
        if switch:
            self._start_background(gpus)
        return reading

    def _count_slow(self, gpus: Sequence[Gpu], took: float) -> bool:
        """Whether this synchronous edge read ends a streak of slow ones that switches an
        undecided meter to background sampling (the caller holds the lock)."""
        if took < SLOW_READ_S * len(gpus):
            if self._slow:
                self._slow.clear()
            return False
        if self._background is not None or not self._started:
            return False
        self._slow.append(took)
        if len(self._slow) < SLOW_STREAK:
            return False
        self._pass_s = statistics.median(self._slow)
        self._slow.clear()
        self._started = False  # this caller switches; others read synchronously till then
        return True

    def _read_late(self, gpus: Sequence[Gpu]) -> Reading:
        """An edge in background mode whose newest sample is stale (the caller holds the
        lock): read NVML here, publish that reading, say why once per episode."""
        latest = self._latest
        now = time.monotonic()
        if latest is not None and now - latest.timestamp <= self._stale_s:
            return latest  # the sampler published while this edge waited for the lock
        if not self._late:
            self._late = True
            poller = self._poller
            why = "late" if poller is not None and poller.alive else "stopped"
            age = ("no sample yet" if latest is None else
                   f"newest sample {_ms(now - latest.timestamp)} old")
            self._log.add(f"nvml: the background sampler {why} ({age}, more than "
                          f"{_ms(self._stale_s)}): window edges read NVML themselves until "
                          "it publishes again", now)
        self._late_reads += 1
        t, _ = self._pass(gpus)
        reading = Reading(t, {g.domain: g.acc.energy_j for g in gpus})
        self._latest = reading  # under the lock, after the read: readings never go back
        return reading

    def min_window_s(self, domain: str) -> float:
        """The counter's 100 ms update, the averaged power's 1 s, or two poll periods for
        instantaneous power."""
        for g in self._probe():
            if g.domain == domain:
                if g.mode == "counter":
                    return COUNTER_UPDATE_S
                if g.mode == "power":
                    return AVERAGED_POWER_S
                return 2 * self.poll_interval_s
        return 0.0

    def events(self, since: float) -> tuple[str, ...]:
        return self._log.since(since)

    # -- polling and sampling --------------------------------------------------------------
    def start(self) -> None:
        """Take the counters' bases and start the thread the GPUs need: the background sampler, the
        power poller, or none."""
        gpus = self._probe()
        if not gpus:
            reason, fix = self._problem or ("no GPU", "")
            raise MeterUnavailable(f"nvml: {reason} (fix: {fix})")
        if self._poller is not None:
            return
        if self._wants_background(gpus):
            self._start_background(gpus)  # its first pass takes the counters' bases
            return
        with self._lock:
            self._pass(gpus)  # the counters' bases
        self._started = True
        if any(g.mode != "counter" for g in gpus):
            self._start_thread([g for g in gpus if g.mode != "counter"], self.poll_interval_s,
                               publish=False)

    def _start_background(self, gpus: list[Gpu]) -> None:
        """Move every GPU's reads to the sampler thread (stopping the power poller first)."""
        self._stop_thread()
        pass_s = self.pass_latency_s()
        with self._lock:
            self._period_s = self._period(gpus, pass_s)
            self._stale_s = STALE_PERIODS * self._period_s + pass_s
            now, _ = self._pass(gpus)
            self._latest = Reading(now, {g.domain: g.acc.energy_j for g in gpus})
            self._sampling = True
        self._started = True
        self._start_thread(gpus, self._period_s, publish=True)

    def _start_thread(self, gpus: list[Gpu], period_s: float, *, publish: bool) -> None:
        name, what, after = (
            ("ecnas-nvml-sampler", "nvml: the background sampler",
             "window edges read NVML themselves") if publish else
            ("ecnas-nvml-poll", "nvml: the power poller",
             "power is read only at window edges from now on"))
        self._poller = Poller(name, functools.partial(self._poll, gpus, period_s, publish),
                              period_s, self._log, what=what, after=after)
        self._poller.start()

    def _poll(self, gpus: list[Gpu], period_s: float, publish: bool) -> float:
        """Read ``gpus`` once; with ``publish``, hand the edges the newest reading. Returns
        the wait until the next pass, so passes start every ``period_s``."""
        with self._lock:
            now, took = self._pass(gpus)
            if publish:
                self._latest = Reading(now, {g.domain: g.acc.energy_j for g in gpus})
                self._late = False
        return max(0.0, period_s - took)

    def _stop_thread(self) -> None:
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.stop()

    def close(self) -> None:
        """Stop the thread, forget the timing decisions and shut NVML down (a later use probes
        again)."""
        self._stop_thread()
        self._sampling = self._started = self._late = False
        self._latest = None
        self._slow.clear()
        self._pass_s = None
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except self._nvml.NVMLError as exc:
                self._log.add(f"nvmlShutdown failed: {_text(exc)}")
            self._nvml = None
            self._gpus = None


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _ms(seconds: float) -> str:
    ms = seconds * 1000.0
    return f"{ms:.0f} ms" if ms >= 10 else f"{ms:.2g} ms"
