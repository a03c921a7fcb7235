"""NVML meter: NVIDIA GPU energy through the ``pynvml`` bindings (package nvidia-ml-py).

Per GPU the best available source is used:

1. ``counter``: ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since driver load, Volta and
   newer), read at window edges. It updates about every 100 ms, so shorter windows are flagged.
2. ``instant``: the ``NVML_FI_DEV_POWER_INSTANT`` field, polled in a background thread and
   integrated with the trapezoid rule (window edges take a sample too).
3. ``power``: ``nvmlDeviceGetPowerUsage`` polled the same way. On Ampere and newer this is a
   1 s average, so windows under a second are flagged.

``source=`` forces one of these for every GPU (``ecnas calibrate`` polls ``"power"`` next to
the counter to compare the two on the same board).

The GPUs metered are those of ``CUDA_VISIBLE_DEVICES`` (indices or ``GPU-`` UUIDs, prefixes
allowed as CUDA allows them), else all. Domain ``gpu:<i>`` is the i-th visible GPU, i.e. what
torch calls ``cuda:<i>``. ``MIG-`` entries are refused: NVML reports energy per board, and a
slice must never be charged the whole board's energy.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from ecnas.errors import MeterUnavailable
from ecnas.meters.base import DeviceInfo, Meter, MeterStatus, Reading, Status

NVML_FI_DEV_POWER_INSTANT = 186  # pynvml.NVML_FI_DEV_POWER_INSTANT
DEFAULT_POLL_INTERVAL_S = 0.05
COUNTER_UPDATE_S = 0.1
AVERAGED_POWER_S = 1.0
LIBRARY = "libnvidia-ml.so.1"
#: how a GPU is read: its energy counter, or polled instantaneous / averaged power
NvmlMode = Literal["counter", "instant", "power"]
SOURCES = ("counter", "instant", "power")


class Gpu:
    """One metered GPU and its running total (mutable, guarded by the meter's lock)."""

    __slots__ = ("domain", "handle", "nvml_index", "name", "uuid", "pci_device_id", "mode",
                 "base_mj", "last_mj", "energy_j", "last_w", "last_t", "failed")

    def __init__(self, domain: str, handle: Any, nvml_index: int, name: str, uuid: str,
                 pci_device_id: str | None, mode: NvmlMode) -> None:
        self.domain = domain
        self.handle = handle
        self.nvml_index = nvml_index
        self.name = name
        self.uuid = uuid
        self.pci_device_id = pci_device_id
        self.mode = mode
        self.base_mj = 0
        self.last_mj = 0
        self.energy_j = 0.0  # joules so far (counter difference or integrated power)
        self.last_w: float | None = None
        self.last_t = 0.0
        self.failed = ""


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
                 environ: Mapping[str, str] | None = None, source: NvmlMode | None = None) -> None:
        if source is not None and source not in SOURCES:
            raise ValueError(f"source: {source!r} is not one of: " + ", ".join(SOURCES))
        self._source = source
        self._environ = os.environ if environ is None else environ
        self._order_note = ""
        if devices is not None:
            self._selection: list[str] | None = [str(d) for d in devices]
        else:
            self._selection = visible_devices(environ)
        self.poll_interval_s = float(poll_interval_s)
        self._gpus: list[Gpu] | None = None
        self._problem: tuple[str, str] | None = None  # (reason, fix) when unusable
        self._nvml: Any = None
        self._lock = threading.Lock()
        self._events: deque[tuple[float, str]] = deque(maxlen=256)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

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

    def _handles(self, nv: Any) -> list[Gpu]:
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
            gpus.append(Gpu(domain=f"gpu:{ordinal}", handle=handle, nvml_index=index,
                            name=_str(nv.nvmlDeviceGetName(handle)), uuid=uuids[index],
                            pci_device_id=pci_id, mode=self._mode(nv, handle)))
        return gpus

    def _mode(self, nv: Any, handle: Any) -> NvmlMode:
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
        return tuple(g.domain for g in self._probe())

    def status(self) -> MeterStatus:
        gpus = self._probe()
        if not gpus:
            reason, fix = self._problem or ("no GPU", "")
            return MeterStatus(self.name, Status.UNAVAILABLE, reason=reason, fix=fix)
        how = {"counter": "energy counter", "instant": "instantaneous power polled every "
               f"{self.poll_interval_s:g} s", "power": "power reading polled every "
               f"{self.poll_interval_s:g} s (averaged over ~1 s on Ampere and newer)"}
        reason = "; ".join([f"{g.domain} {g.name}: {how[g.mode]}" for g in gpus]
                           + ([self._order_note] if self._order_note else []))
        return MeterStatus(self.name, Status.MEASURED, domains=self.domains(), reason=reason,
                           devices=tuple(self.device(g) for g in gpus))

    @staticmethod
    def device(g: Gpu) -> DeviceInfo:
        return DeviceInfo(domain=g.domain, kind="gpu", name=g.name,
                          pci_device_id=g.pci_device_id, uuid=g.uuid,
                          extra={"nvml_index": str(g.nvml_index), "mode": g.mode})

    def gpus(self) -> list[Gpu]:
        return list(self._probe())

    # -- reading ---------------------------------------------------------------------------
    def _fail(self, g: Gpu, now: float, exc: BaseException) -> None:
        g.failed = _text(exc)
        self._events.append((now, f"{g.domain}: NVML error ({g.failed}); energy after this "
                                  "point is missing"))

    def _power_w(self, g: Gpu) -> float:
        nv = self._nvml
        if g.mode == "instant":
            value = nv.nvmlDeviceGetFieldValues(g.handle, [NVML_FI_DEV_POWER_INSTANT])[0]
            if value.nvmlReturn != 0:
                raise nv.NVMLError(value.nvmlReturn)
            return value.value.uiVal / 1000.0
        return nv.nvmlDeviceGetPowerUsage(g.handle) / 1000.0

    def _sample(self, g: Gpu, now: float) -> None:
        if g.failed:
            return
        nv = self._nvml
        try:
            if g.mode == "counter":
                mj = nv.nvmlDeviceGetTotalEnergyConsumption(g.handle)
                if g.last_t == 0.0:
                    g.base_mj = mj
                elif mj < g.last_mj:  # driver reloaded: the counter restarted
                    self._events.append((now, f"{g.domain}: energy counter went back "
                                              f"({g.last_mj} -> {mj} mJ); counting on from 0"))
                    g.base_mj -= g.last_mj
                g.last_mj = mj
                g.energy_j = (mj - g.base_mj) / 1000.0
            else:
                watts = self._power_w(g)
                if g.last_w is not None:
                    g.energy_j += 0.5 * (g.last_w + watts) * (now - g.last_t)
                g.last_w = watts
            g.last_t = now
        except nv.NVMLError as exc:
            self._fail(g, now, exc)

    def read(self) -> Reading:
        gpus = self._probe()
        if not gpus:
            raise MeterUnavailable(self.status().reason)
        with self._lock:
            now = time.monotonic()
            for g in gpus:
                self._sample(g, now)
            return Reading(now, {g.domain: g.energy_j for g in gpus})

    def min_window_s(self, domain: str) -> float:
        for g in self._probe():
            if g.domain == domain:
                if g.mode == "counter":
                    return COUNTER_UPDATE_S
                if g.mode == "power":
                    return AVERAGED_POWER_S
                return 2 * self.poll_interval_s
        return 0.0

    def events(self, since: float) -> tuple[str, ...]:
        with self._lock:
            return tuple(msg for t, msg in self._events if t >= since)

    # -- polling ---------------------------------------------------------------------------
    def start(self) -> None:
        gpus = self._probe()
        if not gpus:
            reason, fix = self._problem or ("no GPU", "")
            raise MeterUnavailable(f"nvml: {reason} (fix: {fix})")
        if self._thread is not None:
            return
        self.read()
        if any(g.mode != "counter" for g in gpus):
            self._stop.clear()
            self._thread = threading.Thread(target=self._poll, name="ecnas-nvml-poll",
                                            daemon=True)
            self._thread.start()

    def _poll(self) -> None:
        polled = [g for g in self._probe() if g.mode != "counter"]
        while not self._stop.wait(self.poll_interval_s):
            with self._lock:
                now = time.monotonic()
                for g in polled:
                    self._sample(g, now)

    def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join()
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except self._nvml.NVMLError as exc:
                self._events.append((time.monotonic(), f"nvmlShutdown failed: {_text(exc)}"))
            self._nvml = None
            self._gpus = None


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
