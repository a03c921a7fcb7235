"""``ecnas calibrate``: measure a device and write its hardware profile.

Phases, each over real meter readings:

1. **idle baseline** — the device left alone for ``idle_s``; mean power per domain.
2. **counter probe** — the meter read back to back for ``probe_s``: how often the counter
   moves (update period) and its smallest step (resolution).
3. **load test** — a burn for ``load_s`` (GPU: torch matrix multiplies; CPU: numpy matrix
   multiplies); on GPUs the energy counter is compared with NVML power polled and integrated.
4. **reference fit** (optional) — readings from phases 1 and 3 against a wall/PDU meter's
   ``timestamp,watts`` CSV: gain and offset with their uncertainty.

Where no meter can measure (a VM, a container without RAPL, no driver), it runs in
*estimate mode*: it writes an uncalibrated profile derived from the best matching packaged
one and lists plainly what it could not calibrate.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ecnas._version import __version__
from ecnas.errors import InputError
from ecnas.meters.base import UNCALIBRATED, DeviceInfo, Meter, Status
from ecnas.profiles.calibration import FitResult, fit_reference, read_reference_csv
from ecnas.profiles.matching import match_profile, normalize_device_name
from ecnas.profiles.model import (
    RAPL_DOMAINS,
    CalibrationInfo,
    HardwareProfile,
    MatchRules,
    MeterFacts,
    domain_key,
)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Sample:
    """One reading during calibration: Unix time and cumulative joules per domain."""

    wall_s: float
    mono_s: float
    energy_j: dict[str, float]


@dataclass(frozen=True)
class PhaseResult:
    name: str
    duration_s: float
    power_w: dict[str, float]  # mean power per domain over the phase (measured)
    energy_j: dict[str, float]


@dataclass(frozen=True)
class ProbeResult:
    update_period_s: float | None
    resolution_j: float | None
    changes: int
    reads: int
    duration_s: float


@dataclass(frozen=True)
class CalibrationRun:
    """Everything ``ecnas calibrate`` measured, and the profile it wrote."""

    mode: str  # "measured" | "estimate"
    meter: str
    kind: str
    device: str  # the device name as the meter reports it
    domains: tuple[str, ...]
    base_profile: str | None  # the packaged profile the power envelope was taken from
    base_reason: str
    idle: PhaseResult | None
    probe: ProbeResult | None
    load: PhaseResult | None
    polled_energy_j: float | None  # GPU: NVML power polled and integrated over the load test
    counter_vs_polled: float | None  # counter energy / polled energy over the load test
    fit: FitResult | None
    not_calibrated: tuple[str, ...]  # plain statements of what could not be calibrated
    notes: tuple[str, ...]
    profile: HardwareProfile
    out_path: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        def phase(p: PhaseResult | None) -> dict | None:
            return None if p is None else {"duration_s": p.duration_s, "power_w": p.power_w,
                                           "energy_j": p.energy_j, "status": "measured"}
        return {
            "mode": self.mode, "meter": self.meter, "kind": self.kind, "device": self.device,
            "domains": list(self.domains), "base_profile": self.base_profile,
            "base_reason": self.base_reason, "idle": phase(self.idle),
            "probe": None if self.probe is None else dict(self.probe.__dict__),
            "load": phase(self.load), "polled_energy_j": self.polled_energy_j,
            "counter_vs_polled": self.counter_vs_polled,
            "fit": None if self.fit is None else self.fit.to_dict(),
            "not_calibrated": list(self.not_calibrated), "notes": list(self.notes),
            "profile_id": self.profile.id,
            "out": str(self.out_path) if self.out_path else None,
        }


# --------------------------------------------------------------------------- measuring

def _read(meter: Meter, domains: Sequence[str]) -> Sample:
    reading = meter.read()
    return Sample(time.time(), reading.timestamp,
                  {d: float(reading.energy_j[d]) for d in domains})


def sample_phase(meter: Meter, domains: Sequence[str], duration_s: float, poll_s: float,
                 work: Callable[[float], None] | None = None) -> list[Sample]:
    """Read the meter every ``poll_s`` for ``duration_s``; run ``work(poll_s)`` in between
    (a burn), or wait (the idle baseline is, by definition, a wait)."""
    waiter = threading.Event()
    samples = [_read(meter, domains)]
    end = samples[0].mono_s + duration_s
    while samples[-1].mono_s < end:
        step = min(poll_s, max(end - samples[-1].mono_s, 0.0))
        if work is None:
            waiter.wait(step)
        else:
            work(step)
        samples.append(_read(meter, domains))
    return samples


def phase_result(name: str, samples: Sequence[Sample]) -> PhaseResult:
    dt = samples[-1].mono_s - samples[0].mono_s
    energy = {d: samples[-1].energy_j[d] - samples[0].energy_j[d] for d in samples[0].energy_j}
    power = {d: (e / dt if dt > 0 else float("nan")) for d, e in energy.items()}
    return PhaseResult(name, dt, power, energy)


def probe_counter(meter: Meter, domains: Sequence[str], probe_s: float) -> ProbeResult:
    """Read back to back: when does the counter move, and by how little at least."""
    start = time.monotonic()
    last = _read(meter, domains)
    change_times: list[float] = []
    steps: list[float] = []
    reads = 1
    while last.mono_s - start < probe_s:
        now = _read(meter, domains)
        reads += 1
        moved = [now.energy_j[d] - last.energy_j[d] for d in domains]
        if any(m != 0 for m in moved):
            change_times.append(now.mono_s)
            steps.extend(m for m in moved if m > 0)
        last = now
    gaps = [b - a for a, b in zip(change_times, change_times[1:], strict=False)]
    return ProbeResult(
        update_period_s=statistics.median(gaps) if len(gaps) >= 2 else None,
        resolution_j=min(steps) if steps else None,
        changes=len(change_times), reads=reads, duration_s=last.mono_s - start,
    )


def numpy_burn(size: int = 384) -> Callable[[float], None]:
    """CPU load: numpy matrix multiplies (multi-threaded BLAS) for the given seconds."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size))
    b = rng.standard_normal((size, size))

    def work(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            a @ b  # noqa: B018 - the product is the load

    return work


def torch_burn(device_index: int, size: int = 4096) -> Callable[[float], None]:
    """GPU load: torch matrix multiplies on ``cuda:device_index``, synchronized per call."""
    import torch

    if not torch.cuda.is_available():
        raise InputError("calibrate: torch sees no CUDA device for the GPU load test")
    dev = torch.device("cuda", device_index)
    a = torch.randn(size, size, device=dev)
    b = torch.randn(size, size, device=dev)

    def work(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            torch.matmul(a, b)
            torch.cuda.synchronize(dev)  # energy must land in this window

    return work


class NvmlPowerPoller:
    """Poll ``nvmlDeviceGetPowerUsage`` in a thread and integrate it (trapezoid rule)."""

    def __init__(self, device: DeviceInfo, period_s: float = 0.05) -> None:
        import pynvml

        self._nvml = pynvml
        pynvml.nvmlInit()
        if device.uuid:
            self._handle = pynvml.nvmlDeviceGetHandleByUUID(device.uuid)
        else:
            index = int(device.domain.split(":", 1)[1]) if ":" in device.domain else 0
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        self._period = period_s
        self._stop = threading.Event()
        self._points: list[tuple[float, float]] = []
        self._error: str | None = None
        self._thread = threading.Thread(target=self._run, name="ecnas-power-poll", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                watts = self._nvml.nvmlDeviceGetPowerUsage(self._handle) / 1000.0
            except self._nvml.NVMLError as exc:
                self._error = f"nvmlDeviceGetPowerUsage failed: {exc}"
                return
            self._points.append((time.monotonic(), watts))
            self._stop.wait(self._period)

    def __enter__(self) -> NvmlPowerPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._nvml.nvmlShutdown()

    def energy_j(self) -> float | None:
        if self._error or len(self._points) < 2:
            return None
        pts = self._points
        return sum(0.5 * (w0 + w1) * (t1 - t0) for (t0, w0), (t1, w1) in zip(pts, pts[1:], strict=False))

    @property
    def error(self) -> str | None:
        return self._error


# --------------------------------------------------------------------------- profiles

def slugify(name: str) -> str:
    text = re.sub(r"[^a-z0-9]+", "-", normalize_device_name(name)).strip("-")
    return text or "my-device"


def _base_profile(device: DeviceInfo, profiles: Sequence[HardwareProfile]
                  ) -> tuple[HardwareProfile | None, str]:
    m = match_profile(device, profiles)
    return m.profile, m.reason


def _new_match(device: DeviceInfo) -> MatchRules:
    if device.kind == "gpu":
        pci = (device.pci_device_id,) if device.pci_device_id else ()
        from ecnas.profiles.toml_io import normalize_pci_id

        pci = tuple(p for p in (normalize_pci_id(x) for x in pci) if p)
        return MatchRules(names=(device.name,), pci_device_ids=pci)
    return MatchRules(names=(device.name,), cpu_model_patterns=("^" + re.escape(device.name).replace("\\ ", " ") + "$",))


def build_profile(*, device: DeviceInfo, base: HardwareProfile | None, profile_id: str,
                  idle_w: float | None, load_w: float | None, probe: ProbeResult | None,
                  energy_counter: bool | None, rapl_domains: Sequence[str], fit: FitResult | None,
                  reference: str, who: str, provenance: str) -> HardwareProfile:
    """The profile ``ecnas calibrate`` writes: measured facts over the base's envelope."""
    tdp = base.tdp_w if base else max(load_w or 0.0, 100.0)
    base_idle = base.idle_w if base else 0.1 * tdp
    idle = idle_w if idle_w is not None else base_idle
    tdp = max(tdp, load_w or 0.0, idle * 1.25 + 1.0)  # the measured values must fit under TDP
    max_w = max(base.max_w if base else tdp, tdp)
    meter = MeterFacts(
        energy_counter=energy_counter,
        power_averaging_s=base.meter.power_averaging_s if base else None,
        counter_update_s=(probe.update_period_s if probe and probe.update_period_s
                          else (base.meter.counter_update_s if base else None)),
        counter_resolution_j=probe.resolution_j if probe else None,
        rapl_domains=tuple(rapl_domains),
    )
    today = _dt.date.today().isoformat()
    info = CalibrationInfo(date=today, by=who,
                           method=f"ecnas calibrate {__version__}")
    calibration = UNCALIBRATED
    if fit is not None:
        calibration = fit.calibration
        info = replace(info, reference=reference or "unnamed reference meter",
                       gain_sd=fit.gain_sd, offset_sd=fit.offset_sd,
                       residual_w=fit.residual_w, n=fit.n,
                       method=f"ecnas calibrate {__version__}: least squares on "
                              f"{fit.interval_s:g} s intervals")
    return HardwareProfile(
        id=profile_id, kind=device.kind, name=device.name, match=_new_match(device),
        tdp_w=tdp, idle_w=idle, max_w=max_w,
        per_core_w=base.per_core_w if base else None, meter=meter, calibration=calibration,
        calibration_info=info, provenance=provenance,
    )


# --------------------------------------------------------------------------- the procedure

def _say(progress: Progress | None, text: str) -> None:
    if progress:
        progress(text)


def calibrate_meter(meter: Meter, device: DeviceInfo, domains: Sequence[str], *,
                    profiles: Sequence[HardwareProfile], profile_id: str | None = None,
                    idle_s: float = 30.0, load_s: float = 30.0, probe_s: float = 2.0,
                    poll_s: float = 0.1, reference: str | Path | None = None,
                    interval_s: float = 1.0, time_shift_s: float = 0.0, instrument: str = "",
                    who: str = "", burn: Callable[[float], None] | None = None,
                    poll_power: bool = True, progress: Progress | None = None) -> CalibrationRun:
    """Calibrate the device behind ``domains`` of a measuring meter (see module doc)."""
    ref = read_reference_csv(reference) if reference else None  # fail before measuring
    base, base_reason = _base_profile(device, profiles)
    notes: list[str] = []
    not_cal: list[str] = []
    if burn is None:  # set up the load before measuring, so a missing CUDA fails at once
        burn = torch_burn(_gpu_index(device)) if device.kind == "gpu" else numpy_burn()
    meter.start()
    try:
        _say(progress, f"idle baseline: leave the {device.kind} alone for {idle_s:g} s")
        idle_samples = sample_phase(meter, domains, idle_s, poll_s)
        idle = phase_result("idle", idle_samples)
        _say(progress, f"idle: {_fmt_power(idle.power_w)} (measured by {meter.name})")
        _say(progress, f"counter probe: reading back to back for {probe_s:g} s")
        probe = probe_counter(meter, domains, probe_s)
        if probe.update_period_s is None:
            not_cal.append(f"counter update period: the counter moved {probe.changes} times in "
                           f"{probe.duration_s:.2f} s, too few to time")
        _say(progress, f"load test: {'torch' if device.kind == 'gpu' else 'numpy'} "
             f"matrix-multiply burn for {load_s:g} s")
        poller = None
        if device.kind == "gpu" and poll_power:
            try:
                poller = NvmlPowerPoller(device)
            except Exception as exc:  # any NVML failure: say so and go on
                not_cal.append(f"counter vs polled power: NVML power polling failed ({exc})")
        if poller is not None:
            with poller:
                load_samples = sample_phase(meter, domains, load_s, poll_s, burn)
        else:
            load_samples = sample_phase(meter, domains, load_s, poll_s, burn)
    finally:
        meter.close()
    load = phase_result("load", load_samples)
    _say(progress, f"load: {_fmt_power(load.power_w)} (measured by {meter.name})")

    polled = ratio = None
    if poller is not None:
        polled = poller.energy_j()
        counter_j = sum(load.energy_j.values())
        if polled:
            ratio = counter_j / polled
            notes.append(f"load test: energy counter {counter_j:.1f} J vs polled power "
                         f"integrated {polled:.1f} J (ratio {ratio:.3f})")
        else:
            not_cal.append("counter vs polled power: " + (poller.error or "too few power samples"))
    elif device.kind == "cpu":
        notes.append("RAPL has no separate power reading: the load test reports counter power only")

    fit = None
    if ref is not None:
        series = idle_samples + load_samples
        t = [s.wall_s for s in series]
        e = [sum(s.energy_j.values()) for s in series]
        fit = fit_reference((t, e), ref, measured_is="joules", interval_s=interval_s,
                            time_shift_s=time_shift_s)
        _say(progress, f"reference fit: gain {fit.gain:.4f} ± {fit.gain_sd:.4f}, "
             f"offset {fit.offset_w:.2f} ± {fit.offset_sd:.2f} W over {fit.n} intervals")
    else:
        not_cal.append("gain and offset: no --reference FILE.csv from a wall or PDU meter "
                       "(profile stays 'uncalibrated': gain 1, offset 0)")

    n_units = max(len(domains), 1)
    idle_total = sum(idle.power_w.values())
    load_total = sum(load.power_w.values())
    rapl = sorted({domain_key(d) for d in domains if domain_key(d) in RAPL_DOMAINS},
                  key=RAPL_DOMAINS.index)
    pid = profile_id or slugify(device.name)
    provenance = (
        f"Written by ecnas calibrate {__version__} on {_dt.date.today().isoformat()} "
        f"(host {platform.node() or 'unknown'}). Measured by the {meter.name} meter over "
        f"{', '.join(domains)}: idle {idle_total:.2f} W over {idle.duration_s:.1f} s, load "
        f"{load_total:.2f} W over {load.duration_s:.1f} s"
        + (f" (per-unit idle_w = idle / {n_units})" if n_units > 1 else "")
        + ". TDP and per-core power copied from "
        + (f"{base.id} ({base_reason}); they are spec-sheet values or estimates, not measured."
           if base else "no packaged profile (none matched): rough values.")
        + ("" if fit else " Not calibrated against a reference meter.")
    )
    profile = build_profile(
        device=device, base=base, profile_id=pid, idle_w=idle_total / n_units,
        load_w=load_total / n_units, probe=probe,
        energy_counter=True if probe.changes else None, rapl_domains=rapl, fit=fit,
        reference=instrument or (str(reference) if reference else ""), who=who,
        provenance=provenance)
    return CalibrationRun(
        mode="measured", meter=meter.name, kind=device.kind, device=device.name,
        domains=tuple(domains), base_profile=base.id if base else None,
        base_reason=base_reason, idle=idle, probe=probe, load=load, polled_energy_j=polled,
        counter_vs_polled=ratio, fit=fit, not_calibrated=tuple(not_cal), notes=tuple(notes),
        profile=profile)


def estimate_mode(kind: str, *, profiles: Sequence[HardwareProfile], reasons: Sequence[str],
                  profile_id: str | None = None, who: str = "",
                  reference: str | Path | None = None,
                  device: DeviceInfo | None = None) -> CalibrationRun:
    """No meter can measure here: write an uncalibrated profile and say what is missing."""
    if device is None:
        if kind != "cpu":
            raise InputError("calibrate: no GPU meter can read here "
                             f"({'; '.join(reasons) or 'no NVML'}) and a GPU cannot be "
                             "estimated without one; use --kind cpu")
        from ecnas.meters.cpuinfo import cpu_model  # honours ECNAS_SYSFS_ROOT

        device = DeviceInfo(domain="cpu:estimate", kind="cpu",
                            name=cpu_model())
    base, base_reason = _base_profile(device, profiles)
    why = "; ".join(reasons) or "no measuring meter found"
    not_cal = [
        f"idle baseline, counter update period and resolution, load test: no energy counter "
        f"can be read here ({why})",
        "gain and offset: nothing measured to compare"
        + (f" with {reference}" if reference else "") + " (profile stays 'uncalibrated')",
    ]
    pid = profile_id or slugify(device.name)
    provenance = (
        f"Written by ecnas calibrate {__version__} in estimate mode on "
        f"{_dt.date.today().isoformat()} (host {platform.node() or 'unknown'}, "
        f"{os.cpu_count() or '?'} logical CPUs): nothing could be measured ({why}). "
        "Power envelope copied from "
        + (f"{base.id} ({base_reason}); all numbers are estimates." if base
           else "no packaged profile; rough values, all estimates.")
    )
    profile = build_profile(device=device, base=base, profile_id=pid, idle_w=None,
                            load_w=None, probe=None, energy_counter=None,
                            rapl_domains=base.meter.rapl_domains if base else (), fit=None,
                            reference="", who=who, provenance=provenance)
    return CalibrationRun(
        mode="estimate", meter="estimate", kind=kind, device=device.name, domains=(),
        base_profile=base.id if base else None, base_reason=base_reason, idle=None,
        probe=None, load=None, polled_energy_j=None, counter_vs_polled=None, fit=None,
        not_calibrated=tuple(not_cal), notes=(), profile=profile)


def _gpu_index(device: DeviceInfo) -> int:
    try:
        return int(device.domain.split(":", 1)[1])
    except (IndexError, ValueError):
        return 0


def _fmt_power(power: dict[str, float]) -> str:
    return ", ".join(f"{d} {w:.2f} W" for d, w in power.items())


@dataclass(frozen=True)
class MeterChoice:
    """A measuring meter, the device and the domains to calibrate, or why there is none."""

    meter: Meter | None
    device: DeviceInfo | None
    domains: tuple[str, ...] = ()
    reasons: tuple[str, ...] = field(default=())


def choose_meter(meters: Sequence[Meter], kind: str, domain: str | None = None) -> MeterChoice:
    """The first measuring meter with a device of ``kind`` (or the given domain).

    For CPUs all package domains are calibrated together (one profile per CPU model);
    ``--domain cpu:0/dram`` picks a single one.
    """
    reasons = []
    for meter in meters:
        if meter.estimated:
            continue
        status = meter.status()
        if status.status is not Status.MEASURED:
            reasons.append(f"{meter.name}: {status.reason or status.status.value}"
                           + (f" (fix: {status.fix})" if status.fix else ""))
            continue
        devices = [d for d in status.devices if d.kind == kind]
        if not devices:
            continue
        doms = meter.domains()
        if domain:
            if domain not in doms:
                reasons.append(f"{meter.name}: no domain {domain!r} (has {', '.join(doms)})")
                continue
            dev = next((d for d in devices if d.domain == domain), devices[0])
            return MeterChoice(meter, dev, (domain,))
        if kind == "gpu":
            dev = devices[0]
            return MeterChoice(meter, dev, (dev.domain,) if dev.domain in doms else (doms[0],))
        packages = tuple(d for d in doms if d.endswith("/package"))
        return MeterChoice(meter, devices[0], packages or tuple(doms))
    return MeterChoice(None, None, (), tuple(reasons))


def find_meters(kind: str) -> tuple[list[Meter], list[str]]:
    """The built-in measuring meters for ``kind`` ("gpu", "cpu" or "auto"), GPU first."""
    meters: list[Meter] = []
    reasons: list[str] = []
    if kind in ("gpu", "auto"):
        try:
            from ecnas.meters.nvml import NvmlMeter

            meters.append(NvmlMeter())
        except (ImportError, OSError, RuntimeError, TypeError) as exc:
            reasons.append(f"nvml: {exc}")
    if kind in ("cpu", "auto"):
        try:
            from ecnas.meters.rapl import RaplMeter

            meters.append(RaplMeter())
        except (ImportError, OSError, RuntimeError, TypeError) as exc:
            reasons.append(f"rapl: {exc}")
    return meters, reasons


def calibrate(kind: str = "auto", *, domain: str | None = None,
              meters: Sequence[Meter] | None = None, estimate: bool = False,
              profiles: Sequence[HardwareProfile] = (), **options: Any) -> CalibrationRun:
    """Pick a measuring meter and calibrate, or fall back to estimate mode.

    ``kind``: "gpu", "cpu" or "auto" (a GPU when one can be metered, else the CPU).
    ``options`` go to :func:`calibrate_meter` (idle_s, load_s, reference, …).
    """
    if kind not in ("gpu", "cpu", "auto"):
        raise InputError(f"--kind: {kind!r} is not gpu, cpu or auto")
    if domain and kind == "auto":
        kind = "gpu" if domain.startswith("gpu") else "cpu"
    reasons: list[str] = []
    if meters is None:
        meters, reasons = find_meters(kind)
    if not estimate:
        for k in (("gpu", "cpu") if kind == "auto" else (kind,)):
            choice = choose_meter(meters, k, domain)
            reasons += [r for r in choice.reasons if r not in reasons]
            if choice.meter is not None and choice.device is not None:
                return calibrate_meter(choice.meter, choice.device, choice.domains,
                                       profiles=profiles, **options)
    else:
        reasons.append("estimate mode asked for (--estimate)")
    allowed = ("profile_id", "who", "reference")
    return estimate_mode("cpu" if kind == "auto" else kind, profiles=profiles, reasons=reasons,
                         **{k: v for k, v in options.items() if k in allowed})
