"""Check many profile files at once (``ecnas profile validate FILE…``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecnas.errors import InputError
from ecnas.profiles.model import HardwareProfile
from ecnas.profiles.toml_io import validate_file


@dataclass(frozen=True)
class ValidationReport:
    """What checking a set of profile files found: the valid profiles, one error per bad file
    (``FILE: key: reason``) and the files skipped with why."""

    valid: tuple[HardwareProfile, ...]
    errors: tuple[str, ...]  # "FILE: key: reason", one per bad file
    skipped: tuple[tuple[str, str], ...]  # (file, why): not .toml, e.g. __init__.py

    @property
    def ok(self) -> bool:
        """True when no file was bad and at least one profile was valid."""
        return not self.errors and bool(self.valid)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data, for ``ecnas profile validate --json``."""
        return {
            "ok": self.ok,
            "valid": [{"file": str(p.source_path), "id": p.id, "kind": p.kind,
                       "calibration": "calibrated" if p.calibrated else "uncalibrated"}
                      for p in self.valid],
            "errors": list(self.errors),
            "skipped": [{"file": f, "reason": r} for f, r in self.skipped],
        }


def validate_files(paths: Sequence[str | Path]) -> ValidationReport:
    """Validate each ``.toml`` file; skip other files (so ``hardware_profiles/*`` works,
    where the glob also catches ``__init__.py``); flag ids defined twice."""
    valid: list[HardwareProfile] = []
    errors: list[str] = []
    skipped: list[tuple[str, str]] = []
    seen: dict[str, Path] = {}
    for raw in paths:
        path = Path(raw)
        if path.suffix != ".toml" and (path.is_file() or path.is_dir()):
            skipped.append((str(path), "not a .toml file"))
            continue
        try:
            profile = validate_file(path)
        except InputError as exc:
            errors.append(str(exc))
            continue
        if profile.id in seen:
            errors.append(f"{path}: id: {profile.id!r} is also defined in {seen[profile.id]}")
            continue
        seen[profile.id] = path
        valid.append(profile)
    if not valid and not errors:
        errors.append("no .toml profile among the files given: "
                      + ", ".join(str(p) for p in paths))
    return ValidationReport(tuple(valid), tuple(errors), tuple(skipped))
