"""Hardware profiles: one TOML file per device (match rules, power envelope, meter facts,
calibration, provenance), how meters find theirs, and the calibration fit.

``import ecnas.profiles`` stays light (tomllib only); the fit in
:mod:`ecnas.calibration.fit` imports numpy/scipy when it runs.
"""

from __future__ import annotations

from ecnas.profiles.loading import ENV_VAR, get_profile, load_profiles, packaged_profiles
from ecnas.profiles.matching import (
    ProfileMatch,
    match_device,
    match_profile,
    normalize_device_name,
)
from ecnas.profiles.model import (
    GENERIC_CPU_ID,
    CalibrationInfo,
    DomainCalibration,
    HardwareProfile,
    MatchRules,
    MeterFacts,
    domain_key,
)
from ecnas.profiles.toml_io import (
    dumps_profile,
    loads_profile,
    normalize_pci_id,
    validate_file,
    write_profile,
)

__all__ = [
    "ENV_VAR",
    "GENERIC_CPU_ID",
    "CalibrationInfo",
    "DomainCalibration",
    "HardwareProfile",
    "MatchRules",
    "MeterFacts",
    "ProfileMatch",
    "domain_key",
    "dumps_profile",
    "get_profile",
    "load_profiles",
    "loads_profile",
    "match_device",
    "match_profile",
    "normalize_device_name",
    "normalize_pci_id",
    "packaged_profiles",
    "validate_file",
    "write_profile",
]
