"""Raw readings the meters are compared with: NVML versions and boards, NVML power polled on a
thread and integrated with the trapezoid rule, the energy counter's update period, and
``nvidia-smi``'s power samples. The board is chosen through the NVML meter (so
``CUDA_VISIBLE_DEVICES`` selects it exactly as it does for the meters); the raw calls go to the
same ``pynvml`` library the meter loaded."""

from __future__ import annotations

import datetime as _dt
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def nvml_versions(nv: Any) -> dict[str, Any]:
    """The driver, NVML and CUDA-driver versions as strings (``cuda_driver`` as major.minor); a
    field NVML cannot give reads ``unavailable (why)`` instead of failing the validation."""
    out: dict[str, Any] = {}
    for key, fn in (("driver", "nvmlSystemGetDriverVersion"),
                    ("nvml", "nvmlSystemGetNVMLVersion"),
                    ("cuda_driver", "nvmlSystemGetCudaDriverVersion")):
        try:
            value = getattr(nv, fn)()
        except Exception as exc:  # noqa: BLE001 - a missing field is reported, not fatal
            out[key] = f"unavailable ({exc})"
            continue
        if key == "cuda_driver" and isinstance(value, int):
            value = f"{value // 1000}.{value % 1000 // 10}"
        out[key] = _str(value)
    return out


def boards(nv: Any) -> list[dict[str, Any]]:
    """Every board NVML sees (ignoring CUDA_VISIBLE_DEVICES): index, name, UUID, PCI bus."""
    out = []
    for i in range(nv.nvmlDeviceGetCount()):
        h = nv.nvmlDeviceGetHandleByIndex(i)
        entry: dict[str, Any] = {"index": i, "name": _str(nv.nvmlDeviceGetName(h)),
                                 "uuid": _str(nv.nvmlDeviceGetUUID(h))}
        try:
            entry["pci_bus_id"] = _str(nv.nvmlDeviceGetPciInfo(h).busId)
        except Exception as exc:  # noqa: BLE001
            entry["pci_bus_id"] = f"unavailable ({exc})"
        try:
            entry["power_limit_w"] = nv.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0
        except Exception:  # noqa: BLE001 - the stand-in and old boards lack it
            entry["power_limit_w"] = None
        out.append(entry)
    return out


@dataclass(frozen=True)
class PowerTrace:
    """Samples (monotonic time, watts) and their trapezoid integral over [t0, t1]."""

    times: tuple[float, ...]
    watts: tuple[float, ...]

    def energy_j(self, t0: float, t1: float) -> float:
        """Joules between monotonic times ``t0`` and ``t1``: the trapezoid integral of the samples
        inside, stretched to the whole interval at their mean power; NaN with fewer than two samples
        inside."""
        pts = [(t, w) for t, w in zip(self.times, self.watts, strict=True) if t0 <= t <= t1]
        if len(pts) < 2:
            return float("nan")
        e = sum(0.5 * (w0 + w1) * (u1 - u0) for (u0, w0), (u1, w1) in pairwise(pts))
        # stretch the covered span to [t0, t1] at the mean power: the edges fall between samples
        covered = pts[-1][0] - pts[0][0]
        return e * (t1 - t0) / covered if covered > 0 else float("nan")

    def mean_w(self) -> float:
        """The plain mean of the samples in watts (NaN without samples)."""
        return sum(self.watts) / len(self.watts) if self.watts else float("nan")

    def cv(self) -> float:
        """Coefficient of variation of the samples (how steady the load was)."""
        if len(self.watts) < 2:
            return float("nan")
        m = self.mean_w()
        var = sum((w - m) ** 2 for w in self.watts) / (len(self.watts) - 1)
        return var**0.5 / m if m else float("nan")


class PowerPoller:
    """Polls ``nvmlDeviceGetPowerUsage`` every ``interval_s`` on a thread."""

    def __init__(self, nv: Any, handle: Any, interval_s: float) -> None:
        self.nv, self.handle, self.interval_s = nv, handle, interval_s
        self._times: list[float] = []
        self._watts: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ecnas-validate-poll",
                                        daemon=True)

    def _run(self) -> None:
        while True:
            t = time.monotonic()
            self._watts.append(self.nv.nvmlDeviceGetPowerUsage(self.handle) / 1000.0)
            self._times.append(t)
            if self._stop.wait(self.interval_s):
                return

    def __enter__(self) -> PowerPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def trace(self) -> PowerTrace:
        """The samples taken so far (call after the ``with`` block for the whole run)."""
        return PowerTrace(tuple(self._times), tuple(self._watts))


def counter_update_period(nv: Any, handle: Any, seconds: float) -> dict[str, Any]:
    """Poll the energy counter as fast as NVML answers for ``seconds``; the median time
    between changes of its value is its update period."""
    changes: list[float] = []
    last = nv.nvmlDeviceGetTotalEnergyConsumption(handle)
    polls = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        value = nv.nvmlDeviceGetTotalEnergyConsumption(handle)
        polls += 1
        if value != last:
            changes.append(time.monotonic())
            last = value
    gaps = sorted(b - a for a, b in pairwise(changes))
    median = gaps[len(gaps) // 2] if gaps else float("nan")
    return {"update_period_s": median, "changes": len(changes), "polls": polls,
            "poll_period_s": seconds / max(polls, 1)}


class SmiSampler:
    """``nvidia-smi --query-gpu=power.draw -lms <ms>`` in the background, one board."""

    def __init__(self, index: int, interval_ms: int = 10,
                 executable: str | None = None) -> None:
        self.exe = executable or shutil.which("nvidia-smi")
        self.index = index
        self.interval_ms = interval_ms
        self._proc: subprocess.Popen[str] | None = None
        self._lines: list[tuple[float, str]] = []
        self._reader: threading.Thread | None = None

    @property
    def available(self) -> bool:
        """Whether an ``nvidia-smi`` executable was found; without one the sampler records
        nothing."""
        return self.exe is not None

    def __enter__(self) -> SmiSampler:
        if self.exe is None:
            return self
        self._proc = subprocess.Popen(
            [self.exe, "--query-gpu=timestamp,power.draw", "--format=csv,noheader,nounits",
             f"-lms={self.interval_ms}", f"--id={self.index}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.append((time.monotonic(), line.strip()))

    def __exit__(self, *exc: object) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)

    def trace(self) -> PowerTrace:
        """The samples on this process's monotonic clock. nvidia-smi stamps each line with
        the host's wall clock; a pipe may deliver lines in bursts, so its own stamp is used
        (converted), and the arrival time only where the stamp does not parse."""
        offset = time.time() - time.monotonic()
        times, watts = [], []
        for arrived, text in self._lines:
            stamp, _, value = text.rpartition(",")
            try:
                w = float(value)
            except ValueError:
                continue  # "[N/A]" or a header: not a reading
            try:
                t = _dt.datetime.strptime(stamp.strip(), "%Y/%m/%d %H:%M:%S.%f").timestamp()
                t -= offset
            except ValueError:
                t = arrived
            times.append(t)
            watts.append(w)
        return PowerTrace(tuple(times), tuple(watts))

    def sample_period_s(self) -> float:
        """The median time between nvidia-smi's samples in seconds (NaN with fewer than two): how
        often it really reports, whatever ``interval_ms`` asked for."""
        tr = self.trace()
        gaps = sorted(b - a for a, b in pairwise(tr.times))
        return gaps[len(gaps) // 2] if gaps else float("nan")


def first_gpu(meter: Any) -> Any:
    """The NVML meter's gpu:0 (the first board CUDA_VISIBLE_DEVICES leaves visible)."""
    gpus: Sequence[Any] = meter.gpus()
    return gpus[0] if gpus else None
