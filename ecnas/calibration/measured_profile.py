"""The profile ``ecnas calibrate`` writes: measured facts over the matched profile's power
envelope (:func:`build_profile`), then a reference fit applied to it (:func:`with_fit`).

What gain and offset mean depends on what the reference measures (``scope``):

* ``"wall"`` — a wall-socket meter or PDU sees the whole machine through its power supply.
  ``reference W ≈ gain × counter W + offset_w``: the gain folds in the supply's conversion
  losses and whatever rises with this device's load (voltage regulators, fans, unmetered
  DRAM); the offset is what the counter never sees — the rest of the machine (board, disks,
  fans, other devices as they were during the run) and the supply's own losses. Calibrated
  energy is then the machine's wall-plug energy while the device works, not the device's own.
* ``"device"`` — a meter on the device alone (PCIe power riser, DC clamp): gain and offset
  correct the built-in counter's scale and zero.

Applied per domain: ``calibrated J = gain × raw J + offset_w × duration``. When several
domains were fitted together (a two-socket CPU: the sum of both packages), each carries the
gain and an equal share of the offset, so a report over all of them adds the offset once.
The meter's other domains (e.g. DRAM next to the packages) are pinned uncalibrated: the
machine's offset must not be added to them again.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from types import MappingProxyType

from ecnas._version import __version__
from ecnas.calibration.fit import FitResult
from ecnas.calibration.recording import ProbeResult
from ecnas.calibration.timeshift import ShiftEstimate
from ecnas.meters.base import UNCALIBRATED, Calibration, DeviceInfo
from ecnas.profiles.model import (
    RAPL_DOMAINS,
    CalibrationInfo,
    DomainCalibration,
    HardwareProfile,
    MatchRules,
    MeterFacts,
    domain_key,
)
from ecnas.profiles.toml_io import normalize_pci_id

SCOPES = ("wall", "device")
NOT_CALIBRATED = " Not calibrated against a reference meter."


def new_match(device: DeviceInfo) -> MatchRules:
    """Match rules for a profile of a device no packaged profile matched: its exact name, plus
    its PCI device id for a GPU or an anchored CPU-model pattern for a CPU."""
    if device.kind == "gpu":
        pci: tuple[str, ...] = (device.pci_device_id,) if device.pci_device_id else ()
        pci = tuple(p for p in (normalize_pci_id(x) for x in pci) if p)
        return MatchRules(names=(device.name,), pci_device_ids=pci)
    pattern = "^" + re.escape(device.name).replace("\\ ", " ") + "$"
    return MatchRules(names=(device.name,), cpu_model_patterns=(pattern,))


def build_profile(*, device: DeviceInfo, base: HardwareProfile | None, profile_id: str,
                  idle_w: float | None, load_w: float | None, probe: ProbeResult | None,
                  energy_counter: bool | None, rapl_domains: Sequence[str], who: str,
                  provenance: str, date: str) -> HardwareProfile:
    """The uncalibrated profile of what was measured, over the base's envelope."""
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
    info = CalibrationInfo(date=date, by=who, method=f"ecnas calibrate {__version__}")
    return HardwareProfile(
        id=profile_id, kind=device.kind, name=device.name, match=new_match(device),
        tdp_w=tdp, idle_w=idle, max_w=max_w,
        per_core_w=base.per_core_w if base else None, meter=meter, calibration=UNCALIBRATED,
        calibration_info=info, provenance=provenance + NOT_CALIBRATED)


def meaning(scope: str, fit: FitResult, reference: str, units: int, kind: str) -> str:
    """The provenance sentence that says what this profile's gain and offset are."""
    share = (f" ({fit.offset_w:.2f} W fitted over the sum of {units} {kind} domains, "
             f"{fit.offset_w / units:.2f} W each)" if units > 1 else "")
    if scope == "device":
        return (f" Calibrated against {reference}, which measures this device alone: gain "
                f"{fit.gain:.4f} and offset_w {fit.offset_w:.2f} W{share} correct the built-in "
                "counter's scale and zero (calibrated J = gain × raw J + offset_w × s).")
    return (f" Calibrated against {reference}, a wall-socket meter that sees the whole "
            "machine: calibrated J = gain × raw J + offset_w × s is the machine's wall-plug "
            f"energy while this device works, not the device's own. The gain {fit.gain:.4f} "
            "folds in the power supply's conversion losses and whatever rises with this "
            "device's load (regulators, fans, unmetered DRAM); offset_w "
            f"{fit.offset_w:.2f} W{share} is what the counter never sees: the rest of the "
            "machine (board, disks, fans, other devices as they were during the run) and the "
            "supply's own losses. Use it for one metered device per machine, or the rest of "
            "the machine is counted once per device.")


def with_fit(profile: HardwareProfile, fit: FitResult, shift: ShiftEstimate, *,
             reference: str, scope: str, units: int, other_domains: Sequence[str]
             ) -> HardwareProfile:
    """``profile`` calibrated by ``fit`` (see the module doc for what that means)."""
    per_unit = Calibration(gain=fit.gain, offset_w=fit.offset_w / units,
                           uncertainty_w=fit.residual_w / units, calibrated=True)
    shift_text = (f"reference clock shift {shift.shift_s:+.3f} ± {shift.sd_s:.3f} s estimated "
                  "from the data" if shift.source == "estimated"
                  else f"reference clock shift {shift.shift_s:+.3f} s given")
    info = replace(profile.calibration_info, reference=reference or "unnamed reference meter",
                   gain_sd=fit.gain_sd, offset_sd=fit.offset_sd / units,
                   residual_w=fit.residual_w, n=fit.n,
                   method=f"ecnas calibrate {__version__}: least squares on "
                          f"{fit.interval_s:g} s intervals against a {scope} meter; "
                          f"{shift_text}")
    keys = {domain_key(d) for d in other_domains} - {"gpu", "package", "estimate"}
    pinned = {k: DomainCalibration(UNCALIBRATED) for k in sorted(keys)
              if k in ("gpu", "estimate", *RAPL_DOMAINS)}
    provenance = profile.provenance.removesuffix(NOT_CALIBRATED) + meaning(
        scope, fit, reference or "an unnamed reference meter", units, profile.kind)
    if pinned:
        provenance += (" Not in the fit, so left uncalibrated: " + ", ".join(sorted(pinned))
                       + ".")
    return replace(profile, calibration=per_unit, calibration_info=info,
                   domain_calibrations=MappingProxyType(
                       {**profile.domain_calibrations, **pinned}),
                   provenance=provenance)
