"""What ``ecnas hardware`` reports: every meter's status and the profile each device matches."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ecnas.meters.base import Status
from ecnas.meters.registry import discover
from ecnas.monitor.profile_cache import bind_profiles
from ecnas.profiles import load_profiles, match_profile


def hardware_summary(include_psys: bool = False,
                     profile_paths: Sequence[str | Path] = ()) -> dict[str, Any]:
    """Meters (measured / estimated / unavailable, with reason and fix), matched profiles,
    and which meters ``measure()`` would use by default."""
    statuses = discover(include_psys=include_psys,
                        bind=lambda meters: bind_profiles(meters, profile_paths))
    matcher = _matcher(profile_paths)
    meters = []
    for status in statuses:
        entry = status.to_dict()
        for dev_dict, dev in zip(entry["devices"], status.devices, strict=True):
            dev_dict["profile"] = matcher(dev)
        meters.append(entry)
    by_name = {s.meter: s for s in statuses}
    defaults = [s.meter for s in statuses if s.usable and s.meter != "pyrapl"]
    cpu_measured = by_name.get("rapl") is not None and by_name["rapl"].usable
    if cpu_measured:
        defaults = [m for m in defaults if m != "estimate"]
    return {
        "meters": meters,
        "default_meters": defaults,
        "estimated": any(by_name[m].status is Status.ESTIMATED for m in defaults),
    }


def _matcher(profile_paths: Sequence[str | Path]) -> Any:
    loaded = load_profiles(profile_paths)
    return lambda dev: match_profile(dev, loaded).to_dict()
