"""Apply a profile's calibration to raw meter energy: gross, and net of the idle baseline.

Reports keep all three numbers (raw, calibrated gross, and net when asked for) and name the
profile, so every figure can be traced back to what was measured and what was corrected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ecnas.profiles.model import HardwareProfile


@dataclass(frozen=True)
class CalibratedEnergy:
    domain: str
    profile_id: str | None
    raw_j: float  # what the meter read
    gross_j: float  # gain × raw + offset × duration (= raw when uncalibrated)
    net_j: float | None  # gross − idle_w × duration, only with subtract_idle
    duration_s: float
    calibrated: bool  # False: gain 1, offset 0 (gross equals raw)
    idle_w: float | None  # the baseline subtracted (None: not asked for or unknown)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def calibrate_energy(profile: HardwareProfile | None, domain: str, raw_j: float,
                     duration_s: float, *, subtract_idle: bool = False) -> CalibratedEnergy:
    """Calibrated energy of one domain over one window (``profile`` None: passed through)."""
    if profile is None:
        note = "no profile: raw energy passed through"
        if subtract_idle:
            note += "; no idle baseline known, net not computed"
        return CalibratedEnergy(domain, None, raw_j, raw_j, None, duration_s, False, None, note)
    cal = profile.calibration_for(domain)
    gross = cal.apply(raw_j, duration_s)
    net = idle = None
    note = ""
    if subtract_idle:
        idle = profile.idle_w_for(domain)
        if idle is None:
            note = f"profile {profile.id} has no idle baseline for {domain}: net not computed"
        else:
            net = gross - idle * duration_s
    return CalibratedEnergy(domain, profile.id, raw_j, gross, net, duration_s,
                            cal.calibrated, idle, note)
