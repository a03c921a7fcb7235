"""``ecnas calibrate``: measure a device, keep the run, and write its hardware profile.

Recording, each phase over real meter readings (:func:`record_run`):

1. **idle baseline** — the device left alone for ``idle_s``; mean power per domain.
2. **counter probe** — the meter read back to back for ``probe_s``: how often the counter
   moves (update period) and its smallest step (resolution).
3. **load test** — a burn for ``load_s`` (GPU: torch matrix multiplies; CPU: numpy matrix
   multiplies); on GPUs the energy counter is compared with the NVML meter's power reading
   polled and integrated on the same board.
4. **load steps** — ``steps_s`` of load levels held for irregular times
   (:data:`ecnas.calibration.loads.STEP_PROGRAM`): sharp, unevenly spaced edges that let a
   reference meter's clock shift be found and spread the power the fit sees.

Fitting (:func:`fit_record`), with a wall/PDU meter's ``timestamp,watts`` log read only
*after* measuring (a log still being written works, and so does an export that arrives
later: ``ecnas calibrate fit RUN.json``): the log's clock shift is estimated from the data
(:mod:`ecnas.calibration.timeshift`) unless given, then gain and offset are fitted with their
uncertainty (:mod:`ecnas.calibration.fit`).

Devices are read only through meters: the meter chosen for the device, and for the GPU
power comparison a second NVML meter on the same board (by UUID, as the first resolved it
from ``CUDA_VISIBLE_DEVICES``).

Where no meter can measure (a VM, a container without RAPL, no driver), it runs in
*estimate mode*: it writes an uncalibrated profile derived from the best matching packaged
one and lists plainly what it could not calibrate.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecnas._version import __version__
from ecnas.calibration.fit import FitResult, fit_reference
from ecnas.calibration.loads import Burn, at_level, numpy_burn, step_segments, torch_burn
from ecnas.calibration.measured_profile import SCOPES, build_profile, with_fit
from ecnas.calibration.measuring import Polled, Reader, measure_load, probe_counter, sample_phase
from ecnas.calibration.recording import (
    CalibrationRecord,
    PhaseResult,
    ProbeResult,
    Sample,
    phase_result,
    phase_samples,
    write_record,
)
from ecnas.calibration.reference import (
    ROWS,
    ReferenceSeries,
    check_reference_path,
    read_reference_csv,
)
from ecnas.calibration.timeshift import MAX_SHIFT_S, ShiftEstimate, estimate_time_shift
from ecnas.errors import InputError
from ecnas.meters.base import DeviceInfo, Meter, Status
from ecnas.meters.cpuinfo import cpu_model
from ecnas.meters.nvml import NvmlMeter
from ecnas.meters.rapl import RaplMeter
from ecnas.profiles.matching import match_profile, slugify
from ecnas.profiles.model import RAPL_DOMAINS, HardwareProfile, domain_key

__all__ = [
    "CalibrationOptions", "CalibrationRun", "FitOptions", "MeterChoice", "calibrate",
    "calibrate_meter", "choose_meter", "estimate_mode", "find_meters", "fit_record",
    "numpy_burn", "record_run", "slugify", "torch_burn",
]

Progress = Callable[[str], None]


#: the longest phase of a calibration, seconds
MAX_PHASE_S = 6 * 3600.0


@dataclass(frozen=True)
class CalibrationOptions:
    """How long each recording phase lasts, how often the meter is read, and the profile's
    id and author."""

    idle_s: float = 30.0
    probe_s: float = 2.0
    load_s: float = 30.0
    steps_s: float = 20.0
    poll_s: float = 0.1
    poll_power: bool = True  # GPU: compare the counter with the polled power reading
    profile_id: str | None = None
    who: str = ""

    def check(self) -> CalibrationOptions:
        """The options themselves when every duration is positive and finite (``steps_s`` may be
        0) and no phase runs longer than 6 hours; else :class:`~ecnas.errors.InputError` naming
        the flag."""
        for name in ("idle_s", "probe_s", "load_s", "poll_s"):
            if not 0 < getattr(self, name) < math.inf:  # NaN and inf too
                raise InputError(f"--{name.replace('_', '-')}: must be > 0, got "
                                 f"{getattr(self, name)}")
        if not 0 <= self.steps_s < math.inf:
            raise InputError(f"--steps-s: must be >= 0, got {self.steps_s}")
        for name, value in self.durations().items():
            if value > MAX_PHASE_S:  # a typo (1e9 s is 31 years) never starts a calibration
                raise InputError(f"--{name.replace('_', '-')}: {value:g} s is longer than a "
                                 f"phase may run ({MAX_PHASE_S:g} s, 6 hours)")
        return self

    def durations(self) -> dict[str, float]:
        """The phase lengths and poll period in seconds, by option name (as the record stores
        them)."""
        return {"idle_s": self.idle_s, "probe_s": self.probe_s, "load_s": self.load_s,
                "steps_s": self.steps_s, "poll_s": self.poll_s}


@dataclass(frozen=True)
class FitOptions:
    """How a recorded run is fitted against a reference meter's log."""

    interval_s: float = 1.0
    time_shift_s: float | None = None  # None: estimate it from the data
    max_shift_s: float = MAX_SHIFT_S
    reference_rows: str = "mean"  # what a log row's watts are (see ecnas.calibration.reference)
    reference_scope: str = "wall"  # what the reference measures (see measured_profile)
    instrument: str = ""

    def check(self) -> FitOptions:
        """The options themselves when the interval and maximum shift are positive, a given
        shift is finite and the reference's rows and scope are known; else
        :class:`~ecnas.errors.InputError` naming the flag."""
        if not 0 < self.interval_s < math.inf:
            raise InputError(f"--interval-s: must be > 0, got {self.interval_s}")
        if self.time_shift_s is not None and not math.isfinite(self.time_shift_s):
            raise InputError(f"--time-shift-s: must be a finite number, got {self.time_shift_s}")
        if not 0 < self.max_shift_s < math.inf:
            raise InputError(f"--max-shift-s: must be > 0, got {self.max_shift_s}")
        if self.reference_rows not in ROWS:
            raise InputError(f"--reference-rows: {self.reference_rows!r} is not one of: "
                             + ", ".join(ROWS))
        if self.reference_scope not in SCOPES:
            raise InputError(f"--reference-scope: {self.reference_scope!r} is not one of: "
                             + ", ".join(SCOPES))
        return self


@dataclass(frozen=True)
class CalibrationRun:
    """Everything ``ecnas calibrate`` measured and fitted, and the profile it made."""

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
    shift: ShiftEstimate | None = None
    steps: PhaseResult | None = None
    reference: dict[str, Any] | None = None  # the log as read: source, rows, span, period
    record: CalibrationRecord | None = field(default=None, repr=False)
    out_path: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """The run as plain data for ``--json``: phases, probe, fit, time shift, reference, what
        could not be calibrated, and the profile's id and path."""
        def phase(p: PhaseResult | None) -> dict | None:
            return None if p is None else p.to_dict()
        return {
            "mode": self.mode, "meter": self.meter, "kind": self.kind, "device": self.device,
            "domains": list(self.domains), "base_profile": self.base_profile,
            "base_reason": self.base_reason, "idle": phase(self.idle),
            "probe": None if self.probe is None else self.probe.to_dict(),
            "load": phase(self.load), "steps": phase(self.steps),
            "polled_energy_j": self.polled_energy_j,
            "counter_vs_polled": self.counter_vs_polled,
            "fit": None if self.fit is None else self.fit.to_dict(),
            "shift": None if self.shift is None else self.shift.to_dict(),
            "reference": self.reference,
            "not_calibrated": list(self.not_calibrated), "notes": list(self.notes),
            "profile_id": self.profile.id,
            "out": str(self.out_path) if self.out_path else None,
        }


# --------------------------------------------------------------------------- measuring

def _say(progress: Progress | None, text: str) -> None:
    if progress:
        progress(text)


def record_run(meter: Meter, device: DeviceInfo, domains: Sequence[str], *,
               profiles: Sequence[HardwareProfile],
               options: CalibrationOptions = CalibrationOptions(),
               burn: Burn | None = None, progress: Progress | None = None
               ) -> CalibrationRecord:
    """Measure the four phases (see the module doc) and keep every reading."""
    options.check()
    base = match_profile(device, profiles)
    if burn is None:  # set up the load before measuring, so a missing CUDA fails at once
        burn = torch_burn(_gpu_index(device)) if device.kind == "gpu" else numpy_burn()
    load_name = "torch" if device.kind == "gpu" else "numpy"
    o = options
    meter.start()
    try:
        reader = Reader(meter, domains)
        _say(progress, f"idle baseline: leave the {device.kind} alone for {o.idle_s:g} s")
        idle = sample_phase(reader, o.idle_s, o.poll_s, phase="idle")
        _say(progress, f"idle: {_fmt_power(phase_result('idle', idle).power_w)} "
                       f"(measured by {meter.name})")
        _say(progress, f"counter probe: reading back to back for {o.probe_s:g} s")
        probe, probe_samples = probe_counter(reader, o.probe_s, o.poll_s)
        _say(progress, f"load test: {load_name} matrix-multiply burn for {o.load_s:g} s")
        load, polled = measure_load(reader, device, o.load_s, o.poll_s, burn, o.poll_power,
                                     probe_samples[-1])
        loaded = phase_result("load", [probe_samples[-1], *load])
        _say(progress, f"load: {_fmt_power(loaded.power_w)} (measured by {meter.name})")
        steps: list[Sample] = []
        if o.steps_s > 0:
            _say(progress, f"load steps: {len(step_segments(o.steps_s))} load levels over "
                           f"{o.steps_s:g} s")
            for level, seconds in step_segments(o.steps_s):
                steps += sample_phase(reader, seconds, o.poll_s, at_level(burn, level),
                                      phase="steps", start=steps[-1] if steps else load[-1])
        other = tuple(d for d in meter.domains() if d not in domains)
    finally:
        meter.close()
    samples = (*idle, *probe_samples, *load, *steps)
    return _make_record(meter.name, device, domains, other, o, samples, probe, polled,
                        base.profile, base.reason)


def _make_record(meter_name: str, device: DeviceInfo, domains: Sequence[str],
                 other: tuple[str, ...], o: CalibrationOptions, samples: tuple[Sample, ...],
                 probe: ProbeResult, polled: Polled | None, base: HardwareProfile | None,
                 base_reason: str) -> CalibrationRecord:
    """The record of a finished measurement and the (uncalibrated) profile it supports."""
    notes: list[str] = []
    not_cal: list[str] = []
    if probe.update_period_s is None:
        not_cal.append(f"counter update period: the counter moved {probe.changes} times in "
                       f"{probe.duration_s:.2f} s, too few to time")
    idle = phase_result("idle", phase_samples(samples, "idle"))
    load = phase_result("load", phase_samples(samples, "load"))
    ratio = energy = None
    if polled is not None:
        energy = polled.energy_j
        counter_j = sum(load.energy_j.values())
        if energy:
            ratio = counter_j / energy
            notes.append(f"load test: energy counter {counter_j:.1f} J vs polled power "
                         f"integrated {energy:.1f} J (ratio {ratio:.3f})")
        else:
            not_cal.append(f"counter vs polled power: {polled.problem}")
    elif device.kind == "cpu":
        notes.append("RAPL has no separate power reading: the load test reports counter power only")
    units = max(len(domains), 1)
    idle_total = sum(idle.power_w.values())
    load_total = sum(load.power_w.values())
    rapl = sorted({domain_key(d) for d in domains if domain_key(d) in RAPL_DOMAINS},
                  key=RAPL_DOMAINS.index)
    today = _dt.date.today().isoformat()
    host = platform.node() or "unknown"
    provenance = (
        f"Written by ecnas calibrate {__version__} on {today} (host {host}). Measured by "
        f"the {meter_name} meter over {', '.join(domains)}: idle {idle_total:.2f} W over "
        f"{idle.duration_s:.1f} s, load {load_total:.2f} W over {load.duration_s:.1f} s"
        + (f" (per-unit idle_w = idle / {units})" if units > 1 else "")
        + ". TDP and per-core power copied from "
        + (f"{base.id} ({base_reason}); they are spec-sheet values or estimates, not measured."
           if base else "no packaged profile (none matched): rough values.")
    )
    profile = build_profile(
        device=device, base=base, profile_id=o.profile_id or slugify(device.name),
        idle_w=idle_total / units, load_w=load_total / units, probe=probe,
        energy_counter=True if probe.changes else None, rapl_domains=rapl, who=o.who,
        provenance=provenance, date=today)
    return CalibrationRecord(
        meter=meter_name, device=device, domains=tuple(domains), other_domains=other,
        options=o.durations(), samples=samples, probe=probe, polled_energy_j=energy,
        counter_vs_polled=ratio, notes=tuple(notes), not_calibrated=tuple(not_cal),
        base_profile=base.id if base else None, base_reason=base_reason, profile=profile,
        date=today, host=host, ecnas_version=__version__)


# --------------------------------------------------------------------------- fitting

def _summary(record: CalibrationRecord, *, fit: FitResult | None = None,
             shift: ShiftEstimate | None = None, profile: HardwareProfile | None = None,
             not_calibrated: Sequence[str] = (), notes: Sequence[str] = (),
             reference: dict[str, Any] | None = None) -> CalibrationRun:
    return CalibrationRun(
        mode="measured", meter=record.meter, kind=record.kind, device=record.device.name,
        domains=record.domains, base_profile=record.base_profile,
        base_reason=record.base_reason, idle=record.result("idle"), probe=record.probe,
        load=record.result("load"), polled_energy_j=record.polled_energy_j,
        counter_vs_polled=record.counter_vs_polled, fit=fit,
        not_calibrated=(*record.not_calibrated, *not_calibrated),
        notes=(*record.notes, *notes), profile=profile or record.profile, shift=shift,
        steps=record.result("steps"), reference=reference, record=record)


def summarize(record: CalibrationRecord) -> CalibrationRun:
    """A recorded run without a reference: the profile stays uncalibrated."""
    return _summary(record, not_calibrated=[
        "gain and offset: no --reference FILE.csv from a wall or PDU meter (profile stays "
        "'uncalibrated': gain 1, offset 0)"])


def fit_record(record: CalibrationRecord, reference: str | Path | ReferenceSeries,
               options: FitOptions = FitOptions(), progress: Progress | None = None
               ) -> CalibrationRun:
    """Fit a recorded run against a reference log: its clock shift (estimated unless given),
    then gain and offset; the profile calibrated accordingly."""
    options.check()
    ref = (reference if isinstance(reference, ReferenceSeries)
           else read_reference_csv(reference, rows=options.reference_rows))
    measured = record.series()
    notes = []
    if options.time_shift_s is None:
        shift = estimate_time_shift(measured, ref, max_shift_s=options.max_shift_s)
    else:
        shift = ShiftEstimate.given(options.time_shift_s)
        notes += _second_opinion(measured, ref, shift, options.max_shift_s)
    _say(progress, shift.describe())
    for note in notes:
        _say(progress, note)
    fit = fit_reference(measured, ref, interval_s=options.interval_s,
                        time_shift_s=shift.shift_s)
    _say(progress, f"reference fit: gain {fit.gain:.4f} ± {fit.gain_sd:.4f}, "
                   f"offset {fit.offset_w:.2f} ± {fit.offset_sd:.2f} W over {fit.n} intervals")
    label = options.instrument or ref.source
    profile = with_fit(record.profile, fit, shift, reference=label,
                       scope=options.reference_scope, units=max(len(record.domains), 1),
                       other_domains=record.other_domains)
    scope = ("the machine's wall-plug energy while the device works (gain: supply losses "
             "and load-dependent parts; offset: the rest of the machine)"
             if options.reference_scope == "wall" else "the device's own energy")
    read = {"source": ref.source, "rows": len(ref.t), "first_s": ref.t[0],
            "last_s": ref.t[-1], "period_s": ref.period_s, "rows_are": ref.rows}
    notes.append(f"calibrated energy with this profile is {scope}; the profile's provenance "
                 "says so")
    return _summary(record, fit=fit, shift=shift, profile=profile, reference=read,
                    notes=notes)


def _second_opinion(measured: tuple[list[float], list[float]], ref: ReferenceSeries,
                    given: ShiftEstimate, max_shift_s: float) -> list[str]:
    """A given shift is used as given; say so when the data clearly point elsewhere."""
    try:
        est = estimate_time_shift(measured, ref, max_shift_s=max_shift_s)
    except InputError:
        return []  # nothing identifiable to compare with
    if abs(est.shift_s - given.shift_s) <= max(3 * (est.sd_s or 0.0), 0.02):
        return []
    return [f"the data suggest a time shift of {est.shift_s:+.3f} ± {est.sd_s:.3f} s, not the "
            f"{given.shift_s:+.3f} s given (r = {est.correlation:.4f}); the given one was used"]


def calibrate_meter(meter: Meter, device: DeviceInfo, domains: Sequence[str], *,
                    profiles: Sequence[HardwareProfile],
                    options: CalibrationOptions = CalibrationOptions(),
                    reference: str | Path | None = None, fit: FitOptions = FitOptions(),
                    burn: Burn | None = None, record_path: str | Path | None = None,
                    progress: Progress | None = None) -> CalibrationRun:
    """Record a run on ``meter`` (kept at ``record_path`` when given, before the reference is
    read), then fit it against ``reference`` when there is one."""
    if reference is not None:
        _say(progress, "reference " + check_reference_path(reference))
    record = record_run(meter, device, domains, profiles=profiles, options=options, burn=burn,
                        progress=progress)
    if record_path is not None:
        write_record(record, record_path)
        _say(progress, f"run kept in {record_path}")
    if reference is None:
        return summarize(record)
    try:
        return fit_record(record, reference, fit, progress)
    except InputError as exc:
        if record_path is None:
            raise
        raise InputError(f"{exc} (the run is kept in {record_path}: fit it with 'ecnas "
                         f"calibrate fit {record_path} --reference FILE.csv --out "
                         "PROFILE.toml')") from None


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

        device = DeviceInfo(domain="cpu:estimate", kind="cpu",
                            name=cpu_model())
    match = match_profile(device, profiles)
    base, base_reason = match.profile, match.reason
    why = "; ".join(reasons) or "no measuring meter found"
    not_cal = [
        f"idle baseline, counter update period and resolution, load test: no energy counter "
        f"can be read here ({why})",
        "gain and offset: nothing measured to compare"
        + (f" with {reference}" if reference else "") + " (profile stays 'uncalibrated')",
    ]
    pid = profile_id or slugify(device.name)
    today = _dt.date.today().isoformat()
    provenance = (
        f"Written by ecnas calibrate {__version__} in estimate mode on "
        f"{today} (host {platform.node() or 'unknown'}, "
        f"{os.cpu_count() or '?'} logical CPUs): nothing could be measured ({why}). "
        "Power envelope copied from "
        + (f"{base.id} ({base_reason}); all numbers are estimates." if base
           else "no packaged profile; rough values, all estimates.")
    )
    profile = build_profile(device=device, base=base, profile_id=pid, idle_w=None,
                            load_w=None, probe=None, energy_counter=None,
                            rapl_domains=base.meter.rapl_domains if base else (), who=who,
                            provenance=provenance, date=today)
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
            meters.append(NvmlMeter())
        except (ImportError, OSError, RuntimeError, TypeError) as exc:
            reasons.append(f"nvml: {exc}")
    if kind in ("cpu", "auto"):
        try:
            meters.append(RaplMeter())
        except (ImportError, OSError, RuntimeError, TypeError) as exc:
            reasons.append(f"rapl: {exc}")
    return meters, reasons


def calibrate(kind: str = "auto", *, domain: str | None = None,
              meters: Sequence[Meter] | None = None, estimate: bool = False,
              profiles: Sequence[HardwareProfile] = (),
              options: CalibrationOptions = CalibrationOptions(),
              reference: str | Path | None = None, fit: FitOptions = FitOptions(),
              burn: Burn | None = None, record_path: str | Path | None = None,
              progress: Progress | None = None) -> CalibrationRun:
    """Pick a measuring meter and calibrate (:func:`calibrate_meter`), or fall back to
    estimate mode. ``kind``: "gpu", "cpu" or "auto" (a GPU when one can be metered, else
    the CPU)."""
    if kind not in ("gpu", "cpu", "auto"):
        raise InputError(f"--kind: {kind!r} is not gpu, cpu or auto")
    if domain and kind == "auto":
        kind = "gpu" if domain.startswith("gpu") else "cpu"
    options.check()
    fit.check()
    reasons: list[str] = []
    if meters is None:
        meters, reasons = find_meters(kind)
    if not estimate:
        for k in (("gpu", "cpu") if kind == "auto" else (kind,)):
            choice = choose_meter(meters, k, domain)
            reasons += [r for r in choice.reasons if r not in reasons]
            if choice.meter is not None and choice.device is not None:
                return calibrate_meter(choice.meter, choice.device, choice.domains,
                                       profiles=profiles, options=options,
                                       reference=reference, fit=fit, burn=burn,
                                       record_path=record_path, progress=progress)
        if domain:
            # a domain named and not found is a typo or the wrong machine, never an estimate
            raise InputError(f"--domain {domain}: no measuring meter here has it ("
                             + ("; ".join(reasons) or "no measuring meter found")
                             + "); name one of its domains, or use --estimate")
    else:
        reasons.append("estimate mode asked for (--estimate)")
    return estimate_mode("cpu" if kind == "auto" else kind, profiles=profiles, reasons=reasons,
                         profile_id=options.profile_id, who=options.who, reference=reference)
