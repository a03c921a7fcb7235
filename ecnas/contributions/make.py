"""Bundle a device contribution: its profile, a device table measured on it, a manifest.

The bundle is a ``.tar.gz`` holding ``profile/<id>.toml``, ``table/<file>`` and
``manifest.json`` (versions, contributor, SHA-256 of each file, table summary and the
consistency-check results, the table's provenance and how its energy was obtained). Nothing
is bundled unless the profile validates, the table's ``device`` column names the profile, the
table passes ``ecnas.tables`` checks, and its energy was measured: a table with estimated
rows is refused (``InputError``, exit 2, with the fix) unless ``allow_estimated``, which the
manifest records. The maintainer's side is ``ecnas.contributions.verify`` and ``.merge``.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecnas._version import __version__
from ecnas.errors import InputError
from ecnas.outputs import atomic_path, check_target, sha256_file
from ecnas.profiles import load_profiles
from ecnas.profiles.toml_io import validate_file
from ecnas.tables import read_table
from ecnas.tables.checks import run_checks
from ecnas.tables.metadata import get_metadata
from ecnas.tables.schema import SOURCES

FORMAT = "ecnas-device-contribution/1"
#: the manifest's name, first in the archive: verify refuses members it does not name on
#: their header, before reading them
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ContributionResult:
    """What ``ecnas contribute`` checked and wrote: the profile and table, their size, every
    check with the failed ones named, and the bundle with its SHA-256 and manifest (None when a
    check failed: nothing written)."""

    profile_id: str
    profile_file: str
    table_file: str
    rows: int
    architectures: int
    failed_checks: tuple[str, ...]
    checks: tuple[dict, ...]
    bundle: str | None  # None when checks failed (nothing written)
    bundle_sha256: str | None
    manifest: dict

    @property
    def ok(self) -> bool:
        """True when every table check passed (and so the bundle was written)."""
        return not self.failed_checks

    def to_dict(self) -> dict[str, Any]:
        """The result as plain data for ``ecnas contribute --json``."""
        return {"ok": self.ok, "profile_id": self.profile_id, "profile_file": self.profile_file,
                "table_file": self.table_file, "rows": self.rows,
                "architectures": self.architectures,
                "failed_checks": list(self.failed_checks), "checks": list(self.checks),
                "bundle": self.bundle, "bundle_sha256": self.bundle_sha256,
                "manifest": self.manifest}


def _check_rows(report: Any) -> list[dict]:
    """One name/passed/detail row per check of an ``ecnas.tables`` CheckReport.

    Only error-level failures block a contribution; warnings are listed but pass.
    """
    return [
        {"name": r.name, "passed": bool(r.passed or r.severity != "error"),
         "detail": r.explanation if r.passed else f"{r.severity}: {r.explanation}"}
        for r in report.results
    ]


def energy_summary(df: Any) -> dict[str, Any]:
    """How the table's energy was obtained: rows by source, estimated rows, and the meter
    columns' names where the table records them."""

    by_source = df["source"].astype(str).value_counts()
    return {"rows": len(df), "rows_estimated": int(df["estimated"].astype(bool).sum()),
            "rows_by_source": {s: int(by_source.get(s, 0)) for s in SOURCES}}


def with_profile(profile: Any) -> dict[str, Any]:
    """ecnas's loaded profiles with ``profile`` in place of any of the same id: the checks
    judge a contributed device by the profile it came with."""

    return {**{p.id: p for p in load_profiles()}, **({profile.id: profile} if profile else {})}


def _device_fix(devices: list[str], profile_id: str) -> str:
    """How to make a table's device column and the contributed profile agree."""
    if len(devices) == 1:
        return (f"Fix: the rows were measured as {devices[0]!r} because that profile matched "
                f"the machine then; either contribute with that profile (--profile "
                f"hardware_profiles/{devices[0]}.toml or your copy of it), or put the TOML of {profile_id!r} "
                "TOML where ecnas finds it (ECNAS_PROFILE_PATH=its folder; `ecnas hardware` "
                f"then shows it matched) and measure the table again")
    return (f"Fix: a contribution holds one device: keep only the rows of {profile_id!r} in the "
            "table (one table per device) and contribute that")


def check_table(table: Path, profile_id: str, profile: Any = None
                ) -> tuple[int, int, list[dict], Any]:
    """Read the table through ecnas.tables and run its checks plus the device-id check:
    (rows, architectures, check rows, the table)."""

    df = read_table(table)
    rows = _check_rows(run_checks(df, profiles=with_profile(profile)))
    devices = sorted({str(d) for d in df["device"].dropna().unique()}) if "device" in df else []
    rows.append({
        "name": "device-matches-profile", "passed": devices == [profile_id],
        "detail": (f"device column holds {devices}, expected only {profile_id!r}. {_device_fix(devices, profile_id)}"
                   if devices != [profile_id] else f"all rows measured on {profile_id}")})
    n_arch = int(df["arch_hash"].nunique()) if "arch_hash" in df else 0
    return len(df), n_arch, rows, df


def refuse_estimated(energy: dict[str, Any], calibrated: bool, table: Path) -> None:
    """``InputError`` when the table holds estimated energy (CONTRIBUTING: a contributed
    device is measured), with the reason and the fix."""
    n, est = energy["rows"], energy["rows_estimated"]
    if est == 0:
        return
    what = "all" if est == n else f"{est} of {n}"
    cal = "" if calibrated else " and the profile is uncalibrated"
    raise InputError(
        f"--table {table}: {what} rows hold estimated energy{cal}; a contributed device must "
        "be measured. Fix: re-measure with a meter that reads the device (`ecnas hardware` "
        "shows which are measured; see CONTRIBUTING.md 'Add your device'), or pass "
        "--allow-estimated to contribute it as estimated (recorded in the manifest)")


def make_bundle(profile_path: Path, table_path: Path, out: Path, *, who: str = "",
                notes: str = "", force: bool = False,
                allow_estimated: bool = False) -> ContributionResult:
    """Bundle the profile at ``profile_path`` and the device table at ``table_path`` into the
    ``.tar.gz`` ``out``, with a manifest. Refused with an :class:`~ecnas.errors.InputError` for
    an invalid profile, a table of another device or with estimated energy (unless
    ``allow_estimated``); with a failed table check nothing is written and the result says
    why."""
    if not isinstance(allow_estimated, bool):  # "no" would be truthy
        raise InputError(f"allow_estimated must be True or False, got {allow_estimated!r}")
    profile_path, table_path, out = Path(profile_path), Path(table_path), Path(out)
    if not out.name.endswith((".tar.gz", ".tgz")):
        raise InputError(f"--out: {out}: the bundle must end in .tar.gz")

    check_target(out, force=force, inputs=[profile_path, table_path])
    if not table_path.is_file():
        raise InputError(f"--table: {table_path}: no such file")
    profile = validate_file(profile_path)
    rows, n_arch, checks, df = check_table(table_path, profile.id, profile)
    energy = energy_summary(df)
    if not allow_estimated:
        refuse_estimated(energy, bool(profile.calibrated), table_path)

    table_meta = get_metadata(df)
    provenance = table_meta.get("provenance", [])
    failed = tuple(f"{c['name']}: {c['detail']}" if c["detail"] else c["name"]
                   for c in checks if not c["passed"])
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "ecnas_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "contributor": who, "notes": notes,
        "profile": {"id": profile.id, "kind": profile.kind, "name": profile.name,
                    "calibrated": profile.calibrated,
                    "file": f"profile/{profile.id}.toml",
                    "sha256": sha256_file(profile_path)},
        "table": {"file": f"table/{table_path.name}", "sha256": sha256_file(table_path),
                  "rows": rows, "architectures": n_arch},
        "checks": checks,
        "energy": {**energy, "allow_estimated": bool(allow_estimated),
                   "profile_calibrated": bool(profile.calibrated)},
        "provenance": provenance if isinstance(provenance, list) else [],
        # what produced the table and with which meters (ecnas train/run record it here)
        "table_metadata": table_meta,
    }
    bundle = digest = None
    if not failed:
        # atomic (a failed write leaves the previous bundle whole); dereference: a symlinked
        # profile or table goes in as its data, the data the manifest's SHA-256 is of
        with atomic_path(out) as tmp, tarfile.open(tmp, "w:gz", dereference=True) as tar:
            data = json.dumps(manifest, indent=2).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            tar.add(profile_path, arcname=manifest["profile"]["file"], recursive=False)
            tar.add(table_path, arcname=manifest["table"]["file"], recursive=False)
        bundle, digest = str(out), sha256_file(out)
    return ContributionResult(profile.id, str(profile_path), str(table_path), rows, n_arch,
                              failed, tuple(checks), bundle, digest, manifest)
