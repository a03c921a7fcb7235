"""AMD meter: AMD GPU energy through the ``amdsmi`` bindings (extra ``amd``) over ROCm's
``libamd_smi.so``.

Per board the best available source is used:

1. ``counter``: ``amdsmi_get_energy_count`` (accumulator × resolution, µJ), read at window
   edges and by a wrap guard every few seconds. A decrease is a 32-bit wrap when that implies
   a plausible power, else a reset (counted on from 0, with a warning).
2. ``current`` / ``average``: ``amdsmi_get_power_info``'s current socket power (instantaneous,
   MI300) or, where that reads N/A, its average socket power (MI200, MI100), polled in a
   background thread and integrated with the trapezoid rule. Used where the counter is missing
   or known broken (MI100 under ROCm 6.0 and 6.2, see ``_broken_counter``).

The GPUs metered are those a HIP program sees: ``ROCR_VISIBLE_DEVICES``, then
``HIP_VISIBLE_DEVICES`` (``CUDA_VISIBLE_DEVICES`` where that is unset, as HIP reads it), as
indices or ``GPU-`` UUIDs; all GPUs otherwise. Domain ``gpu:<i>`` is the i-th visible GPU,
torch's ``cuda:<i>`` on ROCm.

amdsmi reports power per *board*: the two dies (GCDs) of an MI250/MI250X package are two GPUs
of which the second reads 0 W, and a partitioned MI300 (compute partition other than SPX,
memory other than NPS1) shows every partition as a GPU while only the first reads power. A
board whose GPUs are all visible is counted once, on its first visible GPU's domain. A board
only partly visible is refused, as NVML refuses MIG slices (its reading would charge this job
GPUs it cannot see), unless ``whole_board=True`` (``ECNAS_AMD_WHOLE_BOARD=1``) charges the
whole board on purpose. amdsmi
reads no power in a VM guest (SR-IOV virtual function): refused with that reason.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

from ecnas.errors import MeterUnavailable
from ecnas.meters.accumulator import CounterTotal, PowerIntegral
from ecnas.meters.base import DeviceInfo, Meter, MeterStatus, Reading, Status
from ecnas.meters.nvml import loader_may_find
from ecnas.meters.poller import EventLog, Poller

LIBRARY = "libamd_smi.so"
WHOLE_BOARD_ENV = "ECNAS_AMD_WHOLE_BOARD"  # "1": meter partly visible boards whole
DEFAULT_POLL_INTERVAL_S = 0.05
# A 32-bit accumulator of 15.3 µJ counts holds 65.7 kJ: 88 s at MI300X's 750 W. Reading it
# every 5 s keeps every wrap visible, and a wrap then implies at most MAX_PLAUSIBLE_W.
GUARD_INTERVAL_S = 5.0
MAX_PLAUSIBLE_W = 3000.0
AVERAGED_POWER_S = 1.0  # the average socket power is a running average over about 1 s
NOT_AVAILABLE = "N/A"  # what amdsmi returns for a field the board does not report
GUEST = 3  # AMDSMI_VIRTUALIZATION_MODE_GUEST
MI250_DEVICE_IDS = {0x7408, 0x740C}  # pci.ids: Aldebaran [Instinct MI250X], [MI250X/MI250]
MI100_DEVICE_IDS = {0x738C, 0x738E}  # pci.ids: Arcturus GL-XL [Instinct MI100]
# ROCm releases whose MI100 energy counter stands still or jumps (ROCm/amdsmi#22, fixed in 6.1;
# ROCm/amdsmi#38, open for 6.2): poll power there instead.
BROKEN_MI100_ROCM = ("6.0", "6.2")


class Board:
    """One metered domain: the GPUs that share one power reading, and its running total
    (mutable, guarded by the meter's lock)."""

    __slots__ = ("domain", "handle", "index", "name", "uuid", "pci_device_id", "mode",
                 "ordinals", "hidden", "scope", "note", "acc", "failed")

    def __init__(self, domain: str, handle: Any, index: int, name: str, uuid: str,
                 pci_device_id: str | None, mode: str, ordinals: tuple[int, ...],
                 hidden: int, scope: str, note: str) -> None:
        self.domain = domain
        self.handle = handle  # the amdsmi handle that reads the board's power
        self.index = index  # its amdsmi index
        self.name = name
        self.uuid = uuid
        self.pci_device_id = pci_device_id
        self.mode = mode  # "counter" | "current" | "average"
        self.ordinals = ordinals  # visible GPUs (HIP ordinals) this domain covers
        self.hidden = hidden  # GPUs of the board this job cannot see (whole_board=True only)
        self.scope = scope  # "device" | "package" (MI250 dies) | "board" (partitions)
        self.note = note  # why the counter is not used, when it is not
        # joules so far: the 32-bit accumulator's counts, wrap-corrected (its resolution is
        # set at the first read), or polled power integrated
        self.acc: CounterTotal | PowerIntegral = (
            CounterTotal(float("inf"), wrap_bits=32, max_plausible_w=MAX_PLAUSIBLE_W)
            if mode == "counter" else PowerIntegral())
        self.failed = ""

    @property
    def energy_j(self) -> float:
        """Joules so far (wrap-corrected counter or integrated power)."""
        return self.acc.energy_j


class _Gpu:
    """What amdsmi says about one processor handle (probe time only)."""

    __slots__ = ("index", "handle", "name", "uuid", "serial", "hip_uuid", "hip_id", "devid",
                 "bdf", "oam", "compute", "memory", "partition_id", "virt", "driver")

    def __init__(self, index: int, handle: Any) -> None:
        self.index = index
        self.handle = handle
        self.name = self.uuid = self.serial = self.hip_uuid = self.driver = ""
        self.compute = self.memory = ""
        self.hip_id: int | None = None
        self.devid: int | None = None
        self.bdf = ""
        self.oam: int | None = None
        self.partition_id = 0
        self.virt: int | None = None

    @property
    def partitioned(self) -> bool:
        return self.compute not in ("", "SPX") or self.memory not in ("", "NPS1")

    def ids(self) -> tuple[str, ...]:
        """The forms a visible-devices entry may name this GPU by."""
        forms = [self.uuid, self.hip_uuid]
        if self.serial:
            forms.append("GPU-" + self.serial.lower())
        return tuple(f.lower() for f in forms if f)


def visible_devices(environ: Mapping[str, str] | None = None
                    ) -> tuple[list[str] | None, list[str] | None]:
    """(ROCR_VISIBLE_DEVICES entries, HIP_VISIBLE_DEVICES entries — CUDA_VISIBLE_DEVICES
    where HIP's is unset), each None when unset and cut at the first invalid entry."""
    env = os.environ if environ is None else environ
    hip = env.get("HIP_VISIBLE_DEVICES")
    if hip is None:
        hip = env.get("CUDA_VISIBLE_DEVICES")
    return _entries(env.get("ROCR_VISIBLE_DEVICES")), _entries(hip)


def _entries(raw: str | None) -> list[str] | None:
    if raw is None:
        return None
    out = []
    for entry in (e.strip() for e in raw.split(",")):
        if entry.lstrip("-").isdigit():
            if int(entry) < 0:
                break
            out.append(str(int(entry)))
        elif entry.startswith("GPU-") or (len(entry) > 8 and all(
                c in "0123456789abcdefABCDEF-" for c in entry)):
            out.append(entry)
        else:
            break
    return out


def driver_loaded(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the amdgpu kernel driver is loaded (``<ECNAS_SYSFS_ROOT>/sys/module/amdgpu``,
    present for a module and a built-in driver alike): one stat that spares machines without
    AMD GPUs the library search and the import."""
    env = os.environ if environ is None else environ
    root = env.get("ECNAS_SYSFS_ROOT") or "/"
    return os.path.isdir(os.path.join(root, "sys", "module", "amdgpu"))


def library_may_load(environ: Mapping[str, str] | None = None) -> bool:
    """False only where the amdsmi bindings surely cannot find ``libamd_smi.so`` (the places
    its wrapper tries: ``$ROCM_HOME/lib``, ``$ROCM_PATH/lib``, the loader, ``/opt/rocm/lib``),
    so machines without ROCm skip importing amdsmi (which prints to stdout and raises when
    the library is missing)."""
    env = os.environ if environ is None else environ
    roots = [env.get("ROCM_HOME"), env.get("ROCM_PATH"), "/opt/rocm"]
    if any(r and os.path.exists(os.path.join(r, "lib", LIBRARY)) for r in roots):
        return True
    return loader_may_find(LIBRARY)


class AmdSmiMeter(Meter):
    """GPU energy from AMD SMI (measured)."""

    name = "amdsmi"
    estimated = False

    def __init__(self, devices: Sequence[int | str] | None = None, *,
                 whole_board: bool | None = None, counter: bool | None = None,
                 poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
                 guard_interval_s: float = GUARD_INTERVAL_S, domain_prefix: str = "gpu",
                 environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ
        if devices is not None:
            self._rocr: list[str] | None = None
            self._hip: list[str] | None = [str(d) for d in devices]
        else:
            self._rocr, self._hip = visible_devices(self._environ)
        if whole_board is None:  # the CLI's way to ask for it
            whole_board = self._environ.get(WHOLE_BOARD_ENV, "") not in ("", "0")
        self.whole_board = whole_board
        self.counter = counter  # None: the counter unless missing or known broken
        self.poll_interval_s = float(poll_interval_s)
        self.guard_interval_s = float(guard_interval_s)
        self.domain_prefix = domain_prefix
        self._boards: list[Board] | None = None
        self._problem: tuple[str, str] | None = None  # (reason, fix) when unusable
        self._notes: list[str] = []
        self._smi: Any = None  # the amdsmi module once initialized (Any: attributes untyped)
        self._lock = threading.Lock()
        self._log = EventLog()
        self._poller: Poller | None = None

    # -- discovery -------------------------------------------------------------------------
    def _probe(self) -> list[Board]:
        if self._boards is not None:
            return self._boards
        self._boards = []
        if self._hip == [] or self._rocr == []:
            var = "ROCR_VISIBLE_DEVICES" if self._rocr == [] else "HIP_VISIBLE_DEVICES"
            self._problem = (f"{var} is empty: no GPU is visible to this job",
                             f"unset {var} or name the GPUs to meter")
            return self._boards
        if sys.platform.startswith("linux") and not driver_loaded(self._environ):
            self._problem = ("the amdgpu driver is not loaded (no /sys/module/amdgpu): no AMD "
                             "GPU here", "install ROCm's amdgpu driver (amdgpu-dkms) and load "
                             "it (modprobe amdgpu)")
            return self._boards
        if sys.platform.startswith("linux") and not library_may_load(self._environ):
            self._problem = (f"{LIBRARY} not found: no ROCm here",
                             "install ROCm (amd-smi must work) or set ROCM_PATH to it; in a "
                             "container pass /dev/kfd and /dev/dri")
            return self._boards
        smi = _import_amdsmi()
        if isinstance(smi, str):
            self._problem = (f"the amdsmi bindings do not load: {smi}",
                             "pip install 'ecnas[amd]' (amdsmi's version should match ROCm's)")
            return self._boards
        try:
            smi.amdsmi_init(smi.AmdSmiInitFlags.INIT_AMD_GPUS)
        except smi.AmdSmiException as exc:
            self._problem = (f"amdsmi_init failed: {_text(exc)}",
                             "check the amdgpu driver ('amd-smi list' must work; in a "
                             "container pass /dev/kfd and /dev/dri)")
            return self._boards
        self._smi = smi
        try:
            self._boards = self._build(smi)
        except (smi.AmdSmiException, MeterUnavailable) as exc:
            self._problem = self._problem or (f"cannot open the GPUs: {_text(exc)}",
                                              "check HIP_VISIBLE_DEVICES / "
                                              "ROCR_VISIBLE_DEVICES against 'amd-smi list'")
            self._boards = []
        if not self._boards:
            self._problem = self._problem or ("amdsmi sees no GPU", "check 'amd-smi list'")
            with contextlib.suppress(smi.AmdSmiException):
                smi.amdsmi_shut_down()  # nothing to meter: release the library now
            self._smi = None
        return self._boards

    def _build(self, smi: ModuleType) -> list[Board]:
        gpus = [_describe(smi, i, h) for i, h in enumerate(smi.amdsmi_get_processor_handles())]
        if not gpus:
            return []
        guests = [g for g in gpus if g.virt == GUEST]
        if guests:
            self._problem = (
                f"{guests[0].name or 'the GPU'} is a virtual function in a VM guest: amdsmi "
                "reads no energy or power there",
                "measure on the host (bare metal or GPU passthrough), or use the estimate meter")
            return []
        order = _hip_order(gpus)
        if order is gpus and len(gpus) > 1:
            self._notes.append("amdsmi gives no HIP ids here: gpu:i follows amdsmi (PCI) order")
        visible = _select(_select(order, self._rocr, "ROCR_VISIBLE_DEVICES"), self._hip,
                          "HIP_VISIBLE_DEVICES")
        ordinal = {id(g): k for k, g in enumerate(visible)}
        boards: list[Board] = []
        for members in _boards(gpus):
            seen = [g for g in members if id(g) in ordinal]
            if not seen:
                continue
            hidden = len(members) - len(seen)
            scope = "device" if len(members) == 1 else (
                "board" if any(g.partitioned or g.partition_id for g in members)
                else "package")
            if hidden and not self.whole_board:
                self._problem = _partial(members, seen, scope, self.domain_prefix, ordinal)
                return []
            reader = _reader(smi, members, scope)
            ords = tuple(sorted(ordinal[id(g)] for g in seen))
            mode, note = self._mode(smi, reader)
            if mode is None:
                self._problem = (f"{reader.name}: no energy counter and no power reading "
                                 f"({note})", "check 'amd-smi metric --power --energy'")
                return []
            boards.append(Board(
                domain=f"{self.domain_prefix}:{ords[0]}", handle=reader.handle,
                index=reader.index, name=reader.name, uuid=reader.uuid,
                pci_device_id=f"0x{reader.devid:04x}" if reader.devid is not None else None,
                mode=mode, ordinals=ords, hidden=hidden, scope=scope, note=note))
        boards.sort(key=lambda b: b.ordinals[0])
        return boards

    def _mode(self, smi: ModuleType, g: _Gpu) -> tuple[str | None, str]:
        note = ""
        try:
            smi.amdsmi_get_energy_count(g.handle)
            broken = _broken_counter(g, smi)
            if self.counter is False:
                note = "counter disabled (counter=False)"
            elif broken and self.counter is None:
                note = broken
            else:
                return "counter", ""
        except smi.AmdSmiException as exc:
            note = f"no energy counter ({_text(exc)})"
        try:
            info = smi.amdsmi_get_power_info(g.handle)
        except smi.AmdSmiException as exc:
            return None, f"{note}; amdsmi_get_power_info: {_text(exc)}"
        for key, mode in (("current_socket_power", "current"),
                          ("average_socket_power", "average")):
            if info.get(key, NOT_AVAILABLE) != NOT_AVAILABLE:
                return mode, note
        return None, f"{note}; power reads N/A"

    def domains(self) -> tuple[str, ...]:
        """``gpu:<i>`` per metered board (its first visible GPU's ordinal)."""
        return tuple(b.domain for b in self._probe())

    def status(self) -> MeterStatus:
        """Measured with how each board is read (counter or polled power, boards counted once),
        else why not and the fix."""
        boards = self._probe()
        if not boards:
            reason, fix = self._problem or ("no GPU", "")
            return MeterStatus(self.name, Status.UNAVAILABLE, reason=reason, fix=fix)
        how = {"counter": "energy counter",
               "current": f"current socket power polled every {self.poll_interval_s:g} s",
               "average": f"average socket power polled every {self.poll_interval_s:g} s "
                          f"(averaged over ~{AVERAGED_POWER_S:g} s)"}
        parts = []
        for b in boards:
            text = f"{b.domain} {b.name}: {how[b.mode]}"
            if b.note:
                text += f" ({b.note})"
            if b.scope != "device":
                names = ", ".join(f"{self.domain_prefix}:{k}" for k in b.ordinals)
                what = ("both dies of the package (the second die reads 0 W)"
                        if b.scope == "package" else "all partitions of the board")
                text += f"; counts {what} once: {names}"
                if b.hidden:
                    text += (f" and {b.hidden} GPU(s) this job cannot see (whole_board=True: "
                             "charged on purpose)")
            parts.append(text)
        reason = "; ".join(parts + self._notes)
        return MeterStatus(self.name, Status.MEASURED, domains=self.domains(), reason=reason,
                           devices=tuple(self.device(b) for b in boards))

    @staticmethod
    def device(b: Board) -> DeviceInfo:
        """What a profile is matched on for board ``b``: name, PCI device id, UUID, amdsmi index
        and how it is read."""
        return DeviceInfo(domain=b.domain, kind="gpu", name=b.name,
                          pci_device_id=b.pci_device_id, uuid=b.uuid,
                          extra={"amdsmi_index": str(b.index), "mode": b.mode,
                                 "scope": b.scope, "hip_ordinals": ",".join(map(str, b.ordinals))})

    def boards(self) -> list[Board]:
        """The metered boards (probing amdsmi on first use); a copy of the list."""
        return list(self._probe())

    # -- reading ---------------------------------------------------------------------------
    def _fail(self, b: Board, now: float, exc: BaseException) -> None:
        b.failed = _text(exc)
        self._log.add(f"{b.domain}: amdsmi error ({b.failed}); energy after this point is "
                      "missing", now)

    def _sample(self, b: Board, now: float) -> None:
        if b.failed:
            return
        smi = self._smi
        acc = b.acc
        try:
            if isinstance(acc, CounterTotal):
                info = smi.amdsmi_get_energy_count(b.handle)
                value: float = int(info.get("energy_accumulator", info.get("power", 0)))
                if not acc.started:  # the first read: the board tells its resolution (µJ)
                    res_uj = float(info["counter_resolution"])
                    acc.units_per_j = 1e6 / res_uj if res_uj > 0 else float("inf")
            else:
                raw = smi.amdsmi_get_power_info(b.handle)[f"{b.mode}_socket_power"]
                if raw == NOT_AVAILABLE:
                    raise MeterUnavailable(f"{b.mode} socket power reads N/A")
                value = float(raw)
            note = acc.update(value, now)
            if note:  # went back and no plausible 32-bit wrap explains it: a reset
                self._log.add(f"{b.domain}: {note}", now)
        except (smi.AmdSmiException, MeterUnavailable, KeyError) as exc:
            self._fail(b, now, exc)

    def read(self) -> Reading:
        """Every board read now (counters wrap-corrected, polled power integrated up to now)."""
        boards = self._probe()
        if not boards:
            raise MeterUnavailable(self.status().reason)
        with self._lock:
            now = time.monotonic()
            for b in boards:
                self._sample(b, now)
            return Reading(now, {b.domain: b.acc.energy_j for b in boards})

    def min_window_s(self, domain: str) -> float:
        """1 s for averaged power, two poll periods for polled current power, else 0 (the
        counter)."""
        for b in self._probe():
            if b.domain == domain:
                if b.mode == "average":
                    return AVERAGED_POWER_S
                return 2 * self.poll_interval_s if b.mode == "current" else 0.0
        return 0.0

    def events(self, since: float) -> tuple[str, ...]:
        return self._log.since(since)

    # -- polling and the wrap guard --------------------------------------------------------
    def start(self) -> None:
        """Take the counters' bases and start the poller: power every poll interval, or only the
        counters' wrap guard."""
        boards = self._probe()
        if not boards:
            reason, fix = self._problem or ("no GPU", "")
            raise MeterUnavailable(f"amdsmi: {reason} (fix: {fix})")
        if self._poller is not None:
            return
        self.read()
        polled = any(b.mode != "counter" for b in boards)
        self._poller = Poller(
            "ecnas-amdsmi-poll", functools.partial(self._poll, boards),
            self.poll_interval_s if polled else self.guard_interval_s, self._log,
            what="amdsmi: the poller", after="boards are read only at window edges from now on")
        self._poller.start()

    def _poll(self, boards: list[Board]) -> None:
        """Sample polled boards, and counters not read for a guard interval (wraps)."""
        with self._lock:
            now = time.monotonic()
            for b in boards:
                if b.mode != "counter" or now - b.acc.last_t >= self.guard_interval_s:
                    self._sample(b, now)

    def close(self) -> None:
        """Stop the poller and shut amdsmi down (a later use probes again)."""
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.stop()
        if self._smi is not None:
            try:
                self._smi.amdsmi_shut_down()
            except self._smi.AmdSmiException as exc:
                self._log.add(f"amdsmi_shut_down failed: {_text(exc)}")
            self._smi = None
            self._boards = None


# -- probe helpers (plain functions) -----------------------------------------------------------
def _import_amdsmi() -> ModuleType | str:
    """The amdsmi module, or why it does not import. Its wrapper prints to stdout and raises
    KeyError when the library is missing, AttributeError when the library is older than the
    bindings: any exception means "does not load"."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            import amdsmi
    except ImportError:
        return "not installed"
    except Exception as exc:  # noqa: BLE001 - see the docstring
        return f"{type(exc).__name__}: {exc}"
    return amdsmi


def _optional(smi: ModuleType, name: str, handle: Any) -> Any:
    """amdsmi's ``name(handle)``, or None where this amdsmi or this board lacks it."""
    fn = getattr(smi, name, None)
    if fn is None:
        return None
    try:
        return fn(handle)
    except smi.AmdSmiException:
        return None


def _describe(smi: ModuleType, index: int, handle: Any) -> _Gpu:
    g = _Gpu(index, handle)
    g.uuid = smi.amdsmi_get_gpu_device_uuid(handle)
    asic = smi.amdsmi_get_gpu_asic_info(handle)
    g.name = asic.get("market_name") or "AMD GPU"
    devid = asic.get("device_id")
    g.devid = int(devid, 16) if isinstance(devid, str) and devid.startswith("0x") else None
    serial = asic.get("asic_serial", NOT_AVAILABLE)
    g.serial = serial[2:] if serial.startswith("0x") else ""
    oam = asic.get("oam_id", NOT_AVAILABLE)
    g.oam = oam if isinstance(oam, int) else None
    g.bdf = _optional(smi, "amdsmi_get_gpu_device_bdf", handle) or ""
    enum = _optional(smi, "amdsmi_get_gpu_enumeration_info", handle) or {}
    hip_id = enum.get("hip_id")
    g.hip_id = hip_id if isinstance(hip_id, int) else None
    g.hip_uuid = enum.get("hip_uuid") or ""
    mode = _optional(smi, "amdsmi_get_gpu_virtualization_mode", handle)
    g.virt = int(mode["mode"]) if mode else None
    g.compute = _optional(smi, "amdsmi_get_gpu_compute_partition", handle) or ""
    g.memory = _optional(smi, "amdsmi_get_gpu_memory_partition", handle) or ""
    kfd = _optional(smi, "amdsmi_get_gpu_kfd_info", handle) or {}
    part = kfd.get("current_partition_id")
    g.partition_id = part if isinstance(part, int) else 0
    driver = _optional(smi, "amdsmi_get_gpu_driver_info", handle) or {}
    g.driver = driver.get("driver_version", "")
    return g


def _hip_order(gpus: list[_Gpu]) -> list[_Gpu]:
    """The GPUs in HIP's order (amdsmi's HIP ids, where it has them for every GPU)."""
    ids = [g.hip_id for g in gpus]
    if None in ids or len(set(ids)) != len(ids):
        return gpus
    return sorted(gpus, key=lambda g: g.hip_id)  # type: ignore[arg-type,return-value]


def _select(gpus: list[_Gpu], entries: list[str] | None, var: str) -> list[_Gpu]:
    """The GPUs a visible-devices variable keeps, in its order (indices into ``gpus``)."""
    if entries is None:
        return gpus
    out = []
    for entry in entries:
        if entry.isdigit():
            if int(entry) >= len(gpus):
                raise MeterUnavailable(f"{var} names GPU {entry}, but only {len(gpus)} "
                                       "are there")
            out.append(gpus[int(entry)])
            continue
        key = entry.lower()
        hits = [g for g in gpus if key in g.ids()] or [
            g for g in gpus if any(i.startswith(key) for i in g.ids())]
        if len(hits) != 1:
            raise MeterUnavailable(f"{var}: {entry} matches {len(hits)} GPUs by UUID")
        out.append(hits[0])
    return out


def _boards(gpus: list[_Gpu]) -> list[list[_Gpu]]:
    """Group the GPUs that share one power reading: the partitions of one PCI device (a
    device is split when any of its GPUs reports a partition mode or a partition id above 0:
    sub-partitions may answer the mode queries with NOT_SUPPORTED), the two dies of an
    MI250/MI250X package (same OAM id; consecutive amdsmi indices where the OAM id is
    unknown); every other GPU alone."""
    split = {_pci(g) for g in gpus if _pci(g) and (g.partitioned or g.partition_id > 0)}
    groups: dict[tuple[Any, ...], list[_Gpu]] = {}
    for g in gpus:
        if _pci(g) in split:
            key: tuple[Any, ...] = ("pci", _pci(g))
        elif g.devid in MI250_DEVICE_IDS or "MI250" in g.name:
            key = ("oam", g.oam) if g.oam is not None else ("pair", g.index // 2)
        else:
            key = ("gpu", g.index)
        groups.setdefault(key, []).append(g)
    return list(groups.values())


def _pci(g: _Gpu) -> str:
    """domain:bus:device of a GPU's PCI address (partitions may differ in the function)."""
    return g.bdf.rsplit(".", 1)[0] if g.bdf else ""


def _reader(smi: ModuleType, members: list[_Gpu], scope: str) -> _Gpu:
    """The GPU of a board that reads its power: the first partition; the die that reports
    power (the second die of an MI250 package reads 0 W); else the first."""
    if scope == "board":
        return min(members, key=lambda g: (g.partition_id, g.index))
    for g in members:
        try:
            info = smi.amdsmi_get_power_info(g.handle)
        except smi.AmdSmiException:
            continue
        if any(info.get(k) not in (0, NOT_AVAILABLE, None)
               for k in ("current_socket_power", "average_socket_power")):
            return g
    return members[0]


def _partial(members: list[_Gpu], seen: list[_Gpu], scope: str, prefix: str,
             ordinal: Mapping[int, int]) -> tuple[str, str]:
    names = ", ".join(f"{prefix}:{ordinal[id(g)]}" for g in seen)
    if scope == "package":
        what = (f"{names} is one die of a two-die package ({members[0].name}) whose other die "
                "this job cannot see; amdsmi reports the package's power on one die only (the "
                "second reads 0 W)")
    else:
        modes = next((g for g in members if g.compute or g.memory), members[0])
        what = (f"{names} is {len(seen)} of {len(members)} partitions "
                f"({modes.compute or '?'}/{modes.memory or '?'}) of one {members[0].name} "
                "board; amdsmi reports energy per board, not per partition")
    return (f"{what}, so it is not metered",
            "make the whole board visible to measure it, or set ECNAS_AMD_WHOLE_BOARD=1 (or "
            "pass AmdSmiMeter(whole_board=True)) to charge the whole board on purpose")


def _rocm_version(smi: ModuleType) -> str:
    fn = getattr(smi, "amdsmi_get_rocm_version", None)
    if fn is None:
        return ""
    ok, version = fn()
    return version if ok else ""


def _broken_counter(g: _Gpu, smi: ModuleType) -> str:
    """Why the energy counter of this board cannot be trusted here ("" when it can)."""
    if g.devid not in MI100_DEVICE_IDS and "MI100" not in g.name:
        return ""
    rocm = _rocm_version(smi)
    driver = f", amdgpu driver {g.driver}" if g.driver else ""
    if not rocm:
        return ("ROCm version unknown on an MI100, whose counter is broken under ROCm 6.0 "
                f"and 6.2{driver}: power polled instead; pass counter=True to trust it")
    if rocm.startswith(tuple(v + "." for v in BROKEN_MI100_ROCM)):
        return (f"the MI100 energy counter is unreliable under ROCm {rocm}{driver} "
                "(ROCm/amdsmi#22, #38): power polled instead")
    return ""


def _text(exc: BaseException) -> str:
    info = getattr(exc, "get_error_info", None)
    if callable(info):
        try:
            return str(info(detailed=False))
        except TypeError:
            return str(info())
    return str(exc) or type(exc).__name__
