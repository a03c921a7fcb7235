"""Apply a profile's calibration to raw meter energy: gross, and net of the idle baseline.

Reports keep all three numbers (raw, calibrated gross, and net when asked for) and name the
profile, so every figure can be traced back to what was measured and what was corrected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ecnas.meters.base import UNCALIBRATED, calibrated_energy
from ecnas.profiles.model import HardwareProfile


@dataclass(frozen=True)
class CalibratedEnergy:
    domain: str
    profile_id: str | None
    raw_j: float  # what the meter read
    gross_j: float  # gain × raw + offset × duration (= raw when uncalibrated)
    net_j: float | None  # gross − idle_w × duration, only with subtract_idle (= gross when
    # the idle power is unknown: nothing subtracted, said in note)
    duration_s: float
    calibrated: bool  # False: gain 1, offset 0 (gross equals raw)
    idle_w: float | None  # the baseline subtracted (None: not asked for or unknown)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def calibrate_energy(profile: HardwareProfile | None, domain: str, raw_j: float,
                     duration_s: float, *, subtract_idle: bool = False) -> CalibratedEnergy:
    """Calibrated energy of one domain over one window (``profile`` None: passed through).

    The arithmetic is :func:`ecnas.meters.base.calibrated_energy`, the Monitor's: with
    ``subtract_idle`` and no idle power known, nothing is subtracted (net = gross) and the
    note says so.
    """
    cal = profile.calibration_for(domain) if profile is not None else UNCALIBRATED
    idle = profile.idle_w_for(domain) if profile is not None and subtract_idle else None
    gross, net, why = calibrated_energy(cal, raw_j, duration_s, idle_w=idle,
                                        subtract_idle=subtract_idle)
    notes = [] if profile is not None else ["no profile: raw energy passed through"]
    if why:
        owner = f"profile {profile.id}" if profile is not None else "no profile"
        notes.append(f"{owner} for {domain}: {why}")
    return CalibratedEnergy(domain, profile.id if profile is not None else None, raw_j, gross,
                            net, duration_s, cal.calibrated, idle, "; ".join(notes))
