"""The maintainer's side of a device contribution: open a ``.tar.gz`` that ``ecnas contribute``
wrote and verify it, every check named with its reason.

Checks, in order: the archive holds exactly a manifest, one profile and one table as plain
files (no links, no paths outside, bounded size); the manifest's SHA-256 of the profile and the
table match their bytes; the profile validates; the table reads under the schema; the
``ecnas check`` consistency checks pass (errors only); every row names the profile's device;
every (matrix, ops) is a valid cell of the NAS-Bench-101 space whose iso-hash is the row's
``arch_hash``; every row is ``measured`` and none estimated unless the manifest records
``allow_estimated``. The archive is read into memory, never extracted by its own names.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecnas.contributions.make import check_table, energy_summary
from ecnas.errors import InputError
from ecnas.profiles.toml_io import validate_file
from ecnas.space import ModelSpec
from ecnas.tables import read_table

FORMAT = "ecnas-device-contribution/1"
#: the largest archive member read (a device table of NAS-Bench-101's size is ~100 MB)
MAX_MEMBER_BYTES = 2 << 30


@dataclass(frozen=True)
class Check:
    """One verification check of a contribution archive: its name, whether it passed, and why
    not."""

    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Contribution:
    """What a contribution archive holds, read into memory."""

    path: str
    manifest: dict[str, Any]
    profile_name: str
    profile_bytes: bytes
    table_name: str
    table_bytes: bytes


@dataclass(frozen=True)
class VerifyReport:
    """The verification of one contribution archive: its device, every check in order, an energy
    summary, and whether the profile is calibrated."""

    path: str
    device: str
    checks: tuple[Check, ...]
    energy: dict[str, Any] = field(default_factory=dict)
    calibrated: bool = False

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> tuple[str, ...]:
        """``name: reason`` of every failed check."""
        return tuple(f"{c.name}: {c.detail}" for c in self.checks if not c.passed)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data for ``ecnas contribution verify --json``."""
        return {"path": self.path, "ok": self.ok, "device": self.device,
                "calibrated": self.calibrated, "energy": self.energy,
                "checks": [{"name": c.name, "passed": c.passed, "detail": c.detail}
                           for c in self.checks]}


def read_contribution(path: str | Path) -> Contribution:
    """The archive's manifest, profile and table (``InputError`` when it is not a
    contribution archive as ``ecnas contribute`` writes them)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    try:
        tar = tarfile.open(p, "r:gz")  # noqa: SIM115 - closed by the with below
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InputError(f"{p}: not a .tar.gz contribution archive ({exc})") from None
    members: dict[str, bytes] = {}
    with tar:
        try:
            for m in tar:
                if not m.isfile():
                    raise InputError(f"{p}: member {m.name!r} is not a plain file (links and "
                                     "folders are refused)")
                parts = m.name.split("/")
                if m.name.startswith("/") or ".." in parts or len(parts) > 2:
                    raise InputError(f"{p}: member {m.name!r} is not a name inside the archive")
                if m.size > MAX_MEMBER_BYTES:
                    raise InputError(f"{p}: member {m.name!r} is {m.size} bytes (over "
                                     f"{MAX_MEMBER_BYTES})")
                if m.name in members:
                    raise InputError(f"{p}: member {m.name!r} appears twice")
                fh = tar.extractfile(m)
                members[m.name] = fh.read() if fh is not None else b""
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise InputError(f"{p}: corrupt archive ({exc})") from None
    if "manifest.json" not in members:
        raise InputError(f"{p}: no manifest.json (not written by ecnas contribute)")
    try:
        manifest = json.loads(members["manifest.json"])
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: manifest.json is not JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"{p}: manifest.json is not a {FORMAT} manifest")
    names = {}
    for key in ("profile", "table"):
        entry = manifest.get(key)
        if not (isinstance(entry, dict) and isinstance(entry.get("file"), str)
                and isinstance(entry.get("sha256"), str)):
            raise InputError(f"{p}: manifest.json has no {key}.file and {key}.sha256")
        if entry["file"] not in members:
            raise InputError(f"{p}: {entry['file']} (the manifest's {key}) is not in the archive")
        names[key] = entry["file"]
    extra = sorted(set(members) - {"manifest.json", *names.values()})
    if extra:
        raise InputError(f"{p}: {extra[0]} is in the archive but not in its manifest")
    return Contribution(str(p), manifest, names["profile"], members[names["profile"]],
                        names["table"], members[names["table"]])


def _hash_checks(df: Any) -> Check:
    cells = df[["arch_hash", "matrix", "ops"]].drop_duplicates()
    for h, m, o in cells.itertuples(index=False):
        spec = ModelSpec(str(m), str(o))
        if not spec.valid:
            return Check("hashes-in-space", False, f"{h}: not a valid cell ({spec.invalid_reason})")
        if spec.hash() != h:
            return Check("hashes-in-space", False,
                         f"{h}: the cell {m}|{o} hashes to {spec.hash()}")
    return Check("hashes-in-space", True, f"{len(cells)} cells valid, hashes match")


def verify_contribution(path: str | Path) -> tuple[VerifyReport, Any, Any]:
    """(report, table or None, profile or None) of the archive at ``path``."""

    c = read_contribution(path)
    m = c.manifest
    checks: list[Check] = []
    for key, data in (("profile", c.profile_bytes), ("table", c.table_bytes)):
        actual = hashlib.sha256(data).hexdigest()
        ok = actual == m[key]["sha256"]
        checks.append(Check(f"{key}-sha256", ok, "matches the manifest" if ok else
                            f"{m[key]['file']}: SHA-256 {actual[:16]}... is not the manifest's "
                            f"{m[key]['sha256'][:16]}...: changed after ecnas contribute wrote it"))
    device = str(m["profile"].get("id", ""))
    report_energy: dict[str, Any] = {}
    profile = table = None
    calibrated = False
    with tempfile.TemporaryDirectory(prefix="ecnas-contribution-") as tmp:
        # written under fixed names (the archive's names only pick the table's format)
        prof = Path(tmp) / "profile.toml"
        prof.write_bytes(c.profile_bytes)
        try:
            profile = validate_file(prof)
            device = profile.id
            calibrated = bool(profile.calibrated)
            checks.append(Check("profile-valid", True,
                                f"{profile.id} ({'calibrated' if calibrated else 'uncalibrated'})"))
        except InputError as exc:
            checks.append(Check("profile-valid", False, str(exc).replace(str(prof), c.profile_name)))
        suffix = ".csv" if c.table_name.endswith(".csv") else ".parquet"
        tab = Path(tmp) / f"table{suffix}"
        tab.write_bytes(c.table_bytes)
        try:
            table = read_table(tab)
            checks.append(Check("schema", True, f"{len(table)} rows in the contract"))
        except InputError as exc:
            checks.append(Check("schema", False, str(exc).replace(str(tab), c.table_name)))
        if table is not None:
            _, _, rows, _ = check_table(tab, device, profile)
            for r in rows:
                checks.append(Check("check " + r["name"] if r["name"] != "device-matches-profile"
                                    else r["name"], bool(r["passed"]), r["detail"]))
            checks.append(_hash_checks(table))
            report_energy = energy_summary(table)
            not_measured = {k: v for k, v in report_energy["rows_by_source"].items()
                            if v and k != "measured"}
            checks.append(Check("source-measured", not not_measured,
                                "every row measured" if not not_measured else
                                f"rows not measured by the lab: {not_measured}"))
            allowed = bool(m.get("energy", {}).get("allow_estimated", False))
            est = report_energy["rows_estimated"]
            checks.append(Check("energy-measured", est == 0 or allowed,
                                "no estimated energy" if est == 0 else
                                f"{est} of {len(table)} rows estimated"
                                + (" (contributed with --allow-estimated)" if allowed else
                                   " and the manifest does not allow it")))
    report = VerifyReport(c.path, device, tuple(checks), report_energy, calibrated)
    return report, table, profile


__all__ = ["Check", "Contribution", "VerifyReport", "read_contribution", "verify_contribution"]
