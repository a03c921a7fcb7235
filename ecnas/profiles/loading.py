"""Find and load profiles: packaged ones, then ``ECNAS_PROFILE_PATH``, then extra paths.

Later layers override earlier ones that share an id, so a lab's own calibrated profile for
``nvidia-a100-40gb`` replaces the packaged uncalibrated one. Nothing is cached: loading the
packaged set takes about a millisecond per file (see docs/profiles.md).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from ecnas.errors import InputError
from ecnas.profiles.model import HardwareProfile
from ecnas.profiles.toml_io import loads_profile, validate_file

ENV_VAR = "ECNAS_PROFILE_PATH"
PACKAGE = "ecnas.hardware_profiles"


#: Where the packaged profiles sit in a source checkout (setup.py maps this folder to PACKAGE)
SOURCE_FOLDER = Path(__file__).resolve().parents[2] / "hardware_profiles"


def packaged_profiles() -> list[HardwareProfile]:
    """The profiles shipped inside the wheel (``hardware_profiles/*.toml``); in a source
    checkout run without installing (``PYTHONPATH=.``), the same files from its folder."""
    try:
        root: Any = resources.files(PACKAGE)
    except ModuleNotFoundError:
        if not SOURCE_FOLDER.is_dir():
            raise InputError(f"the packaged hardware profiles ({PACKAGE}) are missing: "
                             "install ecnas (pip install ecnas, or pip install -e . in a "
                             "checkout)") from None
        root = SOURCE_FOLDER
    out = []
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml") and entry.is_file():
            path = Path(str(entry))
            where = str(path) if path.exists() else f"{PACKAGE}/{entry.name}"
            out.append(loads_profile(entry.read_text(encoding="utf-8"), where,
                                     path if path.exists() else None))
    return out


def env_profile_paths(environ: dict[str, str] | None = None) -> tuple[Path, ...]:
    """Folders (or files) named in ``ECNAS_PROFILE_PATH`` (``os.pathsep``-separated)."""
    value = (os.environ if environ is None else environ).get(ENV_VAR, "")
    return tuple(Path(p).expanduser() for p in value.split(os.pathsep) if p.strip())


def profiles_in(path: Path, origin: str) -> list[HardwareProfile]:
    """The profiles in one folder (its ``*.toml`` files) or one file."""
    if path.is_dir():
        return [validate_file(f) for f in sorted(path.glob("*.toml"))]
    if path.is_file():
        return [validate_file(path)]
    raise InputError(f"{origin}: {path}: no such profile folder or file")


def _merge(layers: Iterable[list[HardwareProfile]]) -> list[HardwareProfile]:
    merged: dict[str, HardwareProfile] = {}
    for layer in layers:
        seen: dict[str, HardwareProfile] = {}
        for profile in layer:
            if profile.id in seen:
                raise InputError(f"{profile.source_path}: id: {profile.id!r} is also defined "
                                 f"in {seen[profile.id].source_path}")
            seen[profile.id] = profile
            # Re-insert so the list ends with the highest-precedence profiles.
            merged.pop(profile.id, None)
            merged[profile.id] = profile
    return list(merged.values())


def load_profiles(extra_paths: Sequence[str | Path] = (), *,
                  use_env: bool = True) -> list[HardwareProfile]:
    """All profiles in precedence order (later ones override earlier ones with the same id).

    Raises ``InputError`` naming the file, key and reason when any profile is malformed,
    and naming the path when a folder in ``ECNAS_PROFILE_PATH`` or ``extra_paths`` is missing.
    ``use_env=False`` leaves ``ECNAS_PROFILE_PATH`` out (in-code metering's fallback when that
    layer cannot load).
    """
    layers = [packaged_profiles()]
    layers += [profiles_in(p, ENV_VAR) for p in (env_profile_paths() if use_env else ())]
    layers += [profiles_in(Path(p), "profile path") for p in extra_paths]
    return _merge(layers)


def get_profile(profile_id: str, extra_paths: Sequence[str | Path] = ()
                ) -> HardwareProfile | None:
    """The profile with this id (after overrides), or None."""
    for profile in reversed(load_profiles(extra_paths)):
        if profile.id == profile_id:
            return profile
    return None
