"""Read, validate and write hardware-profile TOML files.

Every problem is reported as ``InputError("FILE: key: reason")`` — one line naming the file,
the dotted key and what is wrong — so ``ecnas profile validate`` can point at it. Python has no
TOML writer in the standard library; profiles use a small subset (tables, strings, numbers,
booleans, string lists), which :func:`dumps_profile` writes itself.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ecnas.errors import InputError
from ecnas.meters.base import Calibration
from ecnas.outputs import write_text
from ecnas.profiles.bounds import (
    date_problem,
    gain_problem,
    offset_problem,
    pattern_problem,
    watts_problem,
)
from ecnas.profiles.model import (
    KINDS,
    RAPL_DOMAINS,
    SCHEMA_VERSION,
    CalibrationInfo,
    DomainCalibration,
    HardwareProfile,
    MatchRules,
    MeterFacts,
    profile_to_dict,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ID_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
PCI_RE = re.compile(r"^0x[0-9a-f]{4}$")
CAL_STATUSES = ("calibrated", "uncalibrated")

# The schema: table -> allowed keys. Anything else is a typo and is rejected by name.
TOP_KEYS = ("schema_version", "id", "kind", "name", "provenance",
            "match", "power", "meter", "calibration")
MATCH_KEYS = ("names", "pci_device_ids", "cpu_model_patterns", "fallback")
POWER_KEYS = ("tdp_w", "idle_w", "max_w", "per_core_w")
METER_KEYS = ("energy_counter", "power_averaging_s", "counter_update_s",
              "counter_resolution_j", "rapl_domains")
CAL_KEYS = ("status", "gain", "offset_w", "uncertainty_w", "gain_sd", "offset_sd",
            "residual_w", "n", "reference", "date", "by", "method", "domains")
DOMAIN_CAL_KEYS = ("status", "gain", "offset_w", "uncertainty_w", "idle_w")


class _Checker:
    """Typed getters that raise ``InputError`` naming the file and the dotted key."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, key: str, reason: str) -> InputError:
        return InputError(f"{self.where}: {key}: {reason}")

    def table(self, data: Mapping[str, Any], key: str, allowed: tuple[str, ...],
              *, required: bool = False) -> Mapping[str, Any]:
        leaf = key.rsplit(".", 1)[-1]
        value = data.get(leaf) if key else data
        if value is None:
            if required:
                raise self.fail(key, "missing required table")
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(key, f"expected a table, got {_show(value)}")
        for name in value:
            if name not in allowed:
                dotted = f"{key}.{name}" if key else name
                raise self.fail(dotted, "unknown key (allowed: " + ", ".join(allowed) + ")")
        return value

    def string(self, data: Mapping[str, Any], prefix: str, key: str, *,
               required: bool = False, default: str = "") -> str:
        dotted = f"{prefix}.{key}" if prefix else key
        value = data.get(key)
        if value is None:
            if required:
                raise self.fail(dotted, "missing required key")
            return default
        if isinstance(value, (_dt.date, _dt.datetime)):
            return value.isoformat()
        if not isinstance(value, str):
            raise self.fail(dotted, f"expected a string, got {_show(value)}")
        if required and not value.strip():
            raise self.fail(dotted, "must not be empty")
        return value

    def number(self, data: Mapping[str, Any], prefix: str, key: str, *,
               required: bool = False, minimum: float | None = None,
               positive: bool = False) -> float | None:
        dotted = f"{prefix}.{key}" if prefix else key
        value = data.get(key)
        if value is None:
            if required:
                raise self.fail(dotted, "missing required key")
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(dotted, f"expected a number, got {_show(value)}")
        value = float(value)
        if not math.isfinite(value):
            raise self.fail(dotted, f"must be finite, got {value}")
        if positive and value <= 0:
            raise self.fail(dotted, f"must be > 0, got {_num(value)}")
        if minimum is not None and value < minimum:
            raise self.fail(dotted, f"must be >= {_num(minimum)}, got {_num(value)}")
        return value

    def boolean(self, data: Mapping[str, Any], prefix: str, key: str) -> bool | None:
        value = data.get(key)
        if value is None:
            return None
        if not isinstance(value, bool):
            raise self.fail(f"{prefix}.{key}", f"expected true or false, got {_show(value)}")
        return value

    def strings(self, data: Mapping[str, Any], prefix: str, key: str) -> tuple[str, ...]:
        dotted = f"{prefix}.{key}"
        value = data.get(key)
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.fail(dotted, f"expected a list of strings, got {_show(value)}")
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise self.fail(f"{dotted}[{i}]", f"expected a non-empty string, got {_show(item)}")
        return tuple(value)


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _num(value: float) -> str:
    return f"{value:g}"


def parse_profile(data: Mapping[str, Any], where: str, source_path: Path | None = None
                  ) -> HardwareProfile:
    """Validate a parsed TOML document and build the profile (``where`` prefixes errors)."""
    c = _Checker(where)
    c.table(data, "", TOP_KEYS)
    version = data.get("schema_version", SCHEMA_VERSION)
    if isinstance(version, bool) or version != SCHEMA_VERSION:
        raise c.fail("schema_version", f"unsupported version {_show(version)} "
                     f"(this ecnas reads {SCHEMA_VERSION})")
    pid = c.string(data, "", "id", required=True)
    if not ID_RE.match(pid):
        raise c.fail("id", f"{pid!r} is not kebab-case (lower-case letters, digits and '-')")
    kind = c.string(data, "", "kind", required=True)
    if kind not in KINDS:
        raise c.fail("kind", f"{kind!r} is not one of: " + ", ".join(KINDS))
    name = c.string(data, "", "name", required=True)
    provenance = c.string(data, "", "provenance", required=True)

    match = _parse_match(c, data, kind)
    power = c.table(data, "power", POWER_KEYS, required=True)
    tdp = c.number(power, "power", "tdp_w", required=True, positive=True)
    idle = c.number(power, "power", "idle_w", required=True, minimum=0.0)
    max_w = c.number(power, "power", "max_w", positive=True)
    per_core = c.number(power, "power", "per_core_w", positive=True)
    assert tdp is not None and idle is not None  # required above
    for key, watts in (("tdp_w", tdp), ("idle_w", idle), ("max_w", max_w), ("per_core_w", per_core)):
        problem = watts_problem(watts) if watts is not None else None
        if problem:  # the bounds ecnas check and contribution verify judge tables by
            raise c.fail(f"power.{key}", problem)
    if idle >= tdp:
        raise c.fail("power.idle_w", f"idle power {_num(idle)} W must be below tdp_w {_num(tdp)} W")
    if max_w is None:
        max_w = tdp
    elif max_w < tdp:
        raise c.fail("power.max_w", f"{_num(max_w)} W is below tdp_w {_num(tdp)} W")
    if per_core is not None and per_core > tdp:
        raise c.fail("power.per_core_w", f"{_num(per_core)} W exceeds tdp_w {_num(tdp)} W")

    meter = _parse_meter(c, data, kind)
    calibration, info, domains = _parse_calibration(c, data)
    return HardwareProfile(
        id=pid, kind=kind, name=name, match=match, tdp_w=tdp, idle_w=idle, max_w=max_w,
        per_core_w=per_core, meter=meter, calibration=calibration, calibration_info=info,
        domain_calibrations=MappingProxyType(domains), provenance=provenance,
        source_path=source_path, schema_version=SCHEMA_VERSION,
    )


def _parse_match(c: _Checker, data: Mapping[str, Any], kind: str) -> MatchRules:
    match = c.table(data, "match", MATCH_KEYS, required=True)
    names = c.strings(match, "match", "names")
    pci = c.strings(match, "match", "pci_device_ids")
    pci_norm = []
    for i, raw in enumerate(pci):
        norm = normalize_pci_id(raw)
        if norm is None:
            raise c.fail(f"match.pci_device_ids[{i}]",
                         f"{raw!r} is not a 4-digit hex PCI device id like '0x1e30'")
        pci_norm.append(norm)
    patterns = c.strings(match, "match", "cpu_model_patterns")
    for i, pattern in enumerate(patterns):
        try:
            re.compile(pattern, re.IGNORECASE)
        except re.error as exc:
            raise c.fail(f"match.cpu_model_patterns[{i}]",
                         f"invalid regular expression {pattern!r}: {exc}") from None
        problem = pattern_problem(pattern)
        if problem:  # matched against every CPU's name: must not hang on a crafted one
            raise c.fail(f"match.cpu_model_patterns[{i}]", problem)
    fallback = bool(c.boolean(match, "match", "fallback"))
    if kind == "gpu" and patterns:
        raise c.fail("match.cpu_model_patterns", "a gpu profile cannot match CPU model names")
    if kind == "gpu" and fallback:
        raise c.fail("match.fallback", "only a cpu profile can be the fallback")
    if kind == "cpu" and pci_norm:
        raise c.fail("match.pci_device_ids", "a cpu profile cannot match PCI device ids")
    if not (names or pci_norm or patterns or fallback):
        raise c.fail("match", "no rule: give names, pci_device_ids or cpu_model_patterns")
    return MatchRules(names=names, pci_device_ids=tuple(pci_norm),
                      cpu_model_patterns=patterns, fallback=fallback)


def _parse_meter(c: _Checker, data: Mapping[str, Any], kind: str) -> MeterFacts:
    meter = c.table(data, "meter", METER_KEYS)
    rapl = c.strings(meter, "meter", "rapl_domains")
    for i, dom in enumerate(rapl):
        if dom not in RAPL_DOMAINS:
            raise c.fail(f"meter.rapl_domains[{i}]",
                         f"{dom!r} is not one of: " + ", ".join(RAPL_DOMAINS))
    if rapl and kind != "cpu":
        raise c.fail("meter.rapl_domains", "only a cpu profile has RAPL domains")
    return MeterFacts(
        energy_counter=c.boolean(meter, "meter", "energy_counter"),
        power_averaging_s=c.number(meter, "meter", "power_averaging_s", minimum=0.0),
        counter_update_s=c.number(meter, "meter", "counter_update_s", positive=True),
        counter_resolution_j=c.number(meter, "meter", "counter_resolution_j", positive=True),
        rapl_domains=rapl,
    )


def _parse_one_calibration(c: _Checker, table: Mapping[str, Any], prefix: str) -> Calibration:
    status = c.string(table, prefix, "status", default="uncalibrated")
    if status not in CAL_STATUSES:
        raise c.fail(f"{prefix}.status", f"{status!r} is not one of: " + ", ".join(CAL_STATUSES))
    gain = c.number(table, prefix, "gain", positive=True)
    offset = c.number(table, prefix, "offset_w")
    unc = c.number(table, prefix, "uncertainty_w", minimum=0.0)
    gain = 1.0 if gain is None else gain
    offset = 0.0 if offset is None else offset
    if status == "uncalibrated" and (gain != 1.0 or offset != 0.0):
        raise c.fail(f"{prefix}.status", "'uncalibrated' requires gain = 1 and offset_w = 0 "
                     f"(got gain {_num(gain)}, offset_w {_num(offset)})")
    problem = gain_problem(gain)
    if problem:
        raise c.fail(f"{prefix}.gain", problem)
    problem = offset_problem(offset)
    if problem:
        raise c.fail(f"{prefix}.offset_w", problem)
    return Calibration(gain=gain, offset_w=offset, uncertainty_w=unc,
                       calibrated=status == "calibrated")


def _parse_calibration(c: _Checker, data: Mapping[str, Any]
                       ) -> tuple[Calibration, CalibrationInfo, dict[str, DomainCalibration]]:
    cal = c.table(data, "calibration", CAL_KEYS, required=True)
    if "status" not in cal:
        raise c.fail("calibration.status", "missing required key ('calibrated' or 'uncalibrated')")
    calibration = _parse_one_calibration(c, cal, "calibration")
    n = cal.get("n")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
        raise c.fail("calibration.n", f"expected a count >= 0, got {_show(n)}")
    info = CalibrationInfo(
        reference=c.string(cal, "calibration", "reference"),
        date=c.string(cal, "calibration", "date"),
        by=c.string(cal, "calibration", "by"),
        method=c.string(cal, "calibration", "method"),
        gain_sd=c.number(cal, "calibration", "gain_sd", minimum=0.0),
        offset_sd=c.number(cal, "calibration", "offset_sd", minimum=0.0),
        residual_w=c.number(cal, "calibration", "residual_w", minimum=0.0),
        n=n,
    )
    domains: dict[str, DomainCalibration] = {}
    raw_domains = cal.get("domains") or {}
    if not isinstance(raw_domains, Mapping):
        raise c.fail("calibration.domains", f"expected a table, got {_show(raw_domains)}")
    allowed_domains = ("gpu", "estimate", *RAPL_DOMAINS)
    for key in raw_domains:
        prefix = f"calibration.domains.{key}"
        if key not in allowed_domains:
            raise c.fail(prefix, "unknown domain (allowed: " + ", ".join(allowed_domains) + ")")
        table = c.table(raw_domains, prefix, DOMAIN_CAL_KEYS)
        domains[key] = DomainCalibration(
            calibration=_parse_one_calibration(c, table, prefix),
            idle_w=c.number(table, prefix, "idle_w", minimum=0.0),
        )
    is_calibrated = calibration.calibrated or any(
        d.calibration.calibrated for d in domains.values())
    if info.date:
        problem = date_problem(info.date)
        if problem:
            raise c.fail("calibration.date", problem)
    if is_calibrated:
        for key in ("reference", "date"):
            if not getattr(info, key):
                raise c.fail(f"calibration.{key}",
                             "a calibrated profile must name its reference instrument and date")
    return calibration, info, domains


def normalize_pci_id(raw: str) -> str | None:
    """``"0x1E30"``, ``"1e30"``, ``"10de:1e30"`` → ``"0x1e30"``; None if not a device id.

    NVML's ``pciDeviceId`` packs device and vendor (``0x1E3010DE``): the device id is the
    high 16 bits, which is what this returns for an 8-digit value.
    """
    text = raw.strip().lower()
    if ":" in text:  # vendor:device as lspci prints it
        text = text.split(":", 1)[1]
    text = text.removeprefix("0x")
    if len(text) == 8:  # NVML pciDeviceId: device << 16 | vendor
        text = text[:4]
    if not re.fullmatch(r"[0-9a-f]{1,4}", text):
        return None
    candidate = "0x" + text.rjust(4, "0")
    return candidate if PCI_RE.match(candidate) else None


#: the deepest nesting of tables and arrays a profile or campaign file may have; far beyond
#: any real one (3-4), and a fixed rule: whether tomllib's recursion runs out depends on the
#: interpreter's recursion limit, which other libraries raise
MAX_TOML_DEPTH = 32


def toml_depth(value: object) -> int:
    """How deeply tables and arrays nest in parsed TOML (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            deepest = max(deepest, depth)
            continue
        deepest = max(deepest, depth + 1)
        stack.extend((c, depth + 1) for c in children)
    return deepest


def check_toml_depth(data: dict[str, Any], where: str) -> dict[str, Any]:
    """``data`` (parsed TOML) when it nests at most :data:`MAX_TOML_DEPTH` levels, else an
    :class:`~ecnas.errors.InputError`: the same rule whatever the recursion limit."""
    if toml_depth(data) > MAX_TOML_DEPTH:
        raise InputError(f"{where}: TOML nested too deeply to read (more than "
                         f"{MAX_TOML_DEPTH} levels of tables and arrays)")
    return data


def loads_toml(text: str, where: str) -> dict[str, Any]:
    """``tomllib.loads`` with nesting bounded by :data:`MAX_TOML_DEPTH`: deeper input (a
    hostile or broken file, e.g. hundreds of '[') is an :class:`~ecnas.errors.InputError`
    whatever the recursion limit; broken TOML is one too."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{where}: TOML syntax: {exc}") from None
    except RecursionError:
        raise InputError(f"{where}: TOML nested too deeply to read") from None
    return check_toml_depth(data, where)


def loads_profile(text: str, where: str = "<string>", source_path: Path | None = None
                  ) -> HardwareProfile:
    """Parse and validate a profile from TOML text; broken TOML or an invalid profile is an
    :class:`~ecnas.errors.InputError` prefixed with ``where``."""
    return parse_profile(loads_toml(text, where), where, source_path)


def validate_file(path: str | Path) -> HardwareProfile:
    """Read and check one profile file; raise ``InputError("FILE: key: reason")``."""
    path = Path(path)
    if path.suffix != ".toml":
        raise InputError(f"{path}: not a .toml file (hardware profiles are TOML)")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a profile file") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return loads_profile(text, str(path), path)


# --------------------------------------------------------------------------- writing

def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"TOML profiles hold finite numbers only, got {value}")
        return repr(value)
    if isinstance(value, str):
        # JSON string escapes are a subset of TOML basic-string escapes.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to a profile")


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _write_table(lines: list[str], name: str, table: Mapping[str, Any]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, Mapping)}
    if name:
        lines.append("")
        lines.append(f"[{name}]")
    for key, value in scalars.items():
        lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for key, value in table.items():
        if isinstance(value, Mapping):
            sub = f"{name}.{_toml_key(key)}" if name else _toml_key(key)
            _write_table(lines, sub, value)


def dumps_profile(profile: HardwareProfile) -> str:
    """The profile as TOML text, with a comment line naming its id and schema;
    :func:`loads_profile` reads it back."""
    lines = [f"# Hardware profile {profile.id} (schema {profile.schema_version}); "
             "see docs/profiles.md"]
    _write_table(lines, "", profile_to_dict(profile))
    return "\n".join(lines) + "\n"


def write_profile(profile: HardwareProfile, path: str | Path) -> Path:
    """Write ``profile`` as TOML; the file reads back as an equal profile."""
    path = Path(path)
    text = dumps_profile(profile)
    loads_profile(text, str(path))  # never write a file that validate would reject
    path.parent.mkdir(parents=True, exist_ok=True)

    return write_text(path, text)
