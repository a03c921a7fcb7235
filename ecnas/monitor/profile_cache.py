"""The hardware-profile facts each metered domain needs, cached on disk between runs.

Matching profiles means importing :mod:`ecnas.profiles` and parsing every TOML profile, about
25 ms here: more than half the cold start of ``measure()``. The result depends only on the
devices and on the profile files, so it is cached in ``$ECNAS_CACHE_DIR`` (default
``$XDG_CACHE_HOME/ecnas`` or ``~/.cache/ecnas``) under a key made of the ecnas version, the
devices, the domains, and the path, size and modification time of every profile file and of
the profile code. Any change to any of them is a miss, and a miss goes through
:func:`ecnas.profiles.load_profiles` / :func:`ecnas.profiles.match_profile` as before.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Mapping, Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from ecnas._version import __version__
from ecnas.errors import InputError
from ecnas.meters.base import Calibration, DeviceInfo, DomainProfile, Meter

CACHE_ENV = "ECNAS_CACHE_DIR"
PROFILE_PATH_ENV = "ECNAS_PROFILE_PATH"  # as ecnas.profiles reads it (not imported: cost)


def cache_dir() -> Path:
    """The folder of the profile cache: ``$ECNAS_CACHE_DIR``, else ``$XDG_CACHE_HOME/ecnas``,
    else ``~/.cache/ecnas``."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ecnas"


def _stat_entries(path: str, suffixes: tuple[str, ...]) -> list[list[Any]]:
    try:
        if os.path.isdir(path):
            out = []
            for entry in os.scandir(path):
                if entry.name.endswith(suffixes):
                    st = entry.stat()
                    out.append([entry.path, st.st_mtime_ns, st.st_size])
            return sorted(out)
        st = os.stat(path)
        return [[path, st.st_mtime_ns, st.st_size]]
    except OSError as exc:
        return [[path, "unreadable", exc.errno]]


def sources_signature(profile_paths: Sequence[str | Path],
                      use_env: bool = True) -> list[list[Any]]:
    """Every file whose change could change a match: packaged profiles, ECNAS_PROFILE_PATH
    (unless ``use_env`` is False), the extra paths, and the profile-matching code itself."""
    out: list[list[Any]] = []
    for package, suffixes in (("ecnas.hardware_profiles", (".toml",)),
                              ("ecnas.profiles", (".py",))):
        spec = find_spec(package)
        for location in (spec.submodule_search_locations or []) if spec else []:
            out += _stat_entries(str(location), suffixes)
    env = os.environ.get(PROFILE_PATH_ENV, "") if use_env else ""
    for p in [*(q for q in env.split(os.pathsep) if q.strip()), *map(str, profile_paths)]:
        out += _stat_entries(os.path.expanduser(p), (".toml",))
    return out


def _key(devices: Mapping[str, DeviceInfo], domains: Sequence[str],
         profile_paths: Sequence[str | Path], use_env: bool = True) -> str:
    devs = sorted([d.domain, d.kind, d.name, d.pci_device_id or ""] for d in devices.values())
    return json.dumps([__version__, devs, sorted(domains),
                       sources_signature(profile_paths, use_env), use_env],
                      separators=(",", ":"))


def _device_for(domain: str, devices: Mapping[str, DeviceInfo]) -> DeviceInfo | None:
    if domain in devices:
        return devices[domain]
    if domain.startswith("cpu:") and "/" in domain:  # DRAM/psys: the socket's CPU profile
        return devices.get(domain.split("/", 1)[0] + "/package")
    return None


def match_domains(devices: Mapping[str, DeviceInfo], domains: Sequence[str],
                  profile_paths: Sequence[str | Path] = (),
                  use_env: bool = True) -> dict[str, DomainProfile]:
    """Load and match the profiles (no cache; ``use_env=False`` leaves ECNAS_PROFILE_PATH
    out). Raises what ``load_profiles`` raises."""
    from ecnas.profiles import load_profiles, match_profile

    loaded = load_profiles(profile_paths, use_env=use_env)
    out: dict[str, DomainProfile] = {}
    for domain in domains:
        device = _device_for(domain, devices)
        if device is None:
            continue
        match = match_profile(device, loaded)
        p = match.profile
        if p is None:
            out[domain] = DomainProfile(None, Calibration(), None, None, match.reason)
        else:
            out[domain] = DomainProfile(p.id, p.calibration_for(domain), p.idle_w_for(domain),
                                        p.per_core_w, match.reason)
    return out


def _read_cache(path: Path, key: str) -> dict[str, DomainProfile] | None:
    """The cached facts for this key, or None for a miss (absent, stale, or unreadable: the
    caller then matches afresh and rewrites the entry)."""
    try:
        with open(path, "rb") as fh:
            data = json.loads(fh.read())
        if data.get("key") != key:
            return None
        return {d: DomainProfile.from_json(v) for d, v in data["domains"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def resolve(devices: Mapping[str, DeviceInfo], domains: Sequence[str],
            profile_paths: Sequence[str | Path] = (),
            use_env: bool = True) -> tuple[dict[str, DomainProfile], str]:
    """Profile facts per domain, from the cache when valid; the second value is a note when
    the cache could not be written (empty otherwise). ``use_env=False``: without the
    ECNAS_PROFILE_PATH layer."""
    key = _key(devices, domains, profile_paths, use_env)
    path = cache_dir() / f"profiles-{zlib.crc32(key.encode()):08x}.json"
    cached = _read_cache(path, key)
    if cached is not None:
        return cached, ""
    facts = match_domains(devices, domains, profile_paths, use_env)
    payload = json.dumps({"key": key, "domains": {d: f.to_json() for d, f in facts.items()}})
    from ecnas.outputs import write_text  # on a cache miss only: keeps the cold start short

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, payload)
    except (OSError, InputError) as exc:
        why = getattr(exc, "strerror", None) or exc
        return facts, (f"profile cache not written ({path}: {why}); set "
                       f"{CACHE_ENV} to a writable folder to start faster")
    return facts, ""


def bind_profiles(meters: Sequence[Meter],
                  profile_paths: Sequence[str | Path] = ()) -> list[Meter]:
    """Hand every meter that needs its profile before it can say its status (the estimate's
    per-core power) the matched one, as a Monitor does at start; returns ``meters``.

    For readers used outside a Monitor (``ecnas hardware``, a bare ``EstimateMeter``): the
    readers never look profiles up themselves, which would be an import running back up.
    """
    devices = {d.domain: d for m in meters if (d := m.profile_device()) is not None}
    if not devices:
        return list(meters)
    try:
        facts, note = resolve(devices, list(devices), profile_paths)[0], ""
    except InputError:
        raise  # a broken or missing profile file: refuse, never fall back to other numbers
    except OSError as exc:
        raise InputError(f"hardware profiles: {exc.filename or ''}: "
                         f"{exc.strerror or exc}") from None
    except (ImportError, ValueError) as exc:
        facts, note = {}, f"profiles could not be loaded: {exc}"
    for meter in meters:
        device = meter.profile_device()
        if device is not None:
            meter.bind_profile(facts.get(device.domain), note)
    return list(meters)
