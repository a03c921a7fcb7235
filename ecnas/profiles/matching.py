"""Pick the profile of a meter's device, and say why.

Order: PCI device id, then the normalized board name, then CPU model patterns, then the
``generic-cpu`` fallback for CPUs. A PCI id can be shared by sibling boards (0x1e30 is both
Quadro RTX 6000 and 8000), so when several profiles claim the id, or the device's name names a
different profile, the name decides. Among equal candidates the later-loaded profile (a lab's
own folder) wins; among CPU patterns the longest matched text (the most specific) wins.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ecnas.meters.base import DeviceInfo
from ecnas.profiles.loading import load_profiles
from ecnas.profiles.model import GENERIC_CPU_ID, HardwareProfile
from ecnas.profiles.toml_io import normalize_pci_id

# Vendor words and marks that drivers add or drop between versions.
_MARKS = re.compile(r"\((?:r|tm|c)\)|[®™©]", re.IGNORECASE)
_VENDOR_PREFIX = re.compile(r"^(?:nvidia(?: corporation)?)\s+")
_SPACE = re.compile(r"\s+")


def normalize_device_name(name: str) -> str:
    """Lower-case, trademark marks and the leading vendor word removed, spaces collapsed.

    "NVIDIA Quadro RTX 6000" and "Quadro RTX 6000" both give "quadro rtx 6000".
    """
    text = _MARKS.sub(" ", name).lower()
    text = _SPACE.sub(" ", text).strip()
    return _VENDOR_PREFIX.sub("", text).strip()


def slugify(name: str) -> str:
    """A profile id made of a device name (``NVIDIA A100-SXM4-40GB`` → ``a100-sxm4-40gb``)."""
    text = re.sub(r"[^a-z0-9]+", "-", normalize_device_name(name)).strip("-")
    return text or "my-device"


@dataclass(frozen=True)
class ProfileMatch:
    """The matched profile (None for an unknown GPU) and the rule that picked it."""

    profile: HardwareProfile | None
    reason: str
    rule: str  # "pci_device_id" | "name" | "cpu_model_pattern" | "fallback" | "none"

    @property
    def profile_id(self) -> str | None:
        """The matched profile's id, or None when nothing matched."""
        return self.profile.id if self.profile else None

    def to_dict(self) -> dict:
        """The match as plain data (``ecnas profile match --json``, ``ecnas hardware``): profile
        id, rule, reason, whether calibrated, and the profile's file."""
        p = self.profile
        return {
            "profile": p.id if p else None,
            "rule": self.rule,
            "reason": self.reason,
            "calibrated": p.calibrated if p else False,
            "source_path": str(p.source_path) if p and p.source_path else None,
        }


def _by_name(candidates: list[HardwareProfile], norm: str) -> list[HardwareProfile]:
    return [p for p in candidates
            if any(normalize_device_name(n) == norm for n in (*p.match.names, p.name))]


def match_profile(device: DeviceInfo, profiles: Sequence[HardwareProfile]) -> ProfileMatch:
    """Match against an already loaded list (precedence order, as from ``load_profiles``)."""
    kind = device.kind
    pool = [p for p in profiles if p.kind == kind]
    norm = normalize_device_name(device.name or "")
    named = _by_name(pool, norm) if norm else []

    pci = normalize_pci_id(device.pci_device_id) if device.pci_device_id else None
    if pci:
        by_pci = [p for p in pool if pci in p.match.pci_device_ids]
        if by_pci:
            both = [p for p in by_pci if p in named]
            if both:
                return ProfileMatch(both[-1], f"PCI device id {pci} and name {norm!r}",
                                    "pci_device_id")
            if named:  # the id is shared with a sibling board; the name is more specific
                return ProfileMatch(named[-1], f"normalized name {norm!r} (PCI device id "
                                    f"{pci} is also claimed by {by_pci[-1].id})", "name")
            note = f" (name {norm!r} is not among its names: a sibling board?)" if norm else ""
            return ProfileMatch(by_pci[-1], f"PCI device id {pci}{note}", "pci_device_id")
    if named:
        return ProfileMatch(named[-1], f"normalized name {norm!r}", "name")

    if kind == "cpu":
        best: tuple[int, int, HardwareProfile, str] | None = None
        for rank, p in enumerate(pool):
            for pattern in p.match.cpu_model_patterns:
                hit = re.search(pattern, device.name or "", re.IGNORECASE)
                if hit:
                    key = (len(hit.group(0)), rank)
                    if best is None or key >= best[:2]:
                        best = (*key, p, pattern)
        if best is not None:
            return ProfileMatch(best[2], f"CPU model {device.name!r} matches "
                                f"pattern {best[3]!r}", "cpu_model_pattern")
        fallback = [p for p in pool if p.match.fallback] or [
            p for p in pool if p.id == GENERIC_CPU_ID]
        if fallback:
            return ProfileMatch(fallback[-1], f"no CPU pattern matched {device.name!r}: "
                                f"generic fallback {fallback[-1].id}", "fallback")
        return ProfileMatch(None, f"no CPU pattern matched {device.name!r} and no fallback "
                            "profile is loaded", "none")

    what = f"name {norm!r}" + (f", PCI device id {pci}" if pci else "")
    return ProfileMatch(None, f"no {kind} profile matches {what}: write one with "
                        "'ecnas calibrate --out PROFILE.toml'", "none")


def match_device(device: DeviceInfo, extra_paths: Sequence[str | Path] = ()) -> ProfileMatch:
    """Load the profiles (packaged, ``ECNAS_PROFILE_PATH``, ``extra_paths``) and match."""
    return match_profile(device, load_profiles(extra_paths))
