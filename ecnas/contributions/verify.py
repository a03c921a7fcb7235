"""The maintainer's side of a device contribution: open a ``.tar.gz`` that ``ecnas contribute``
wrote and verify it, every check named with its reason.

Checks, in order: the archive holds exactly a manifest, one profile and one table as plain
files (no links, no paths outside, bounded size and count); the manifest's SHA-256 of the
profile and the table match their bytes; the profile validates; the table reads under the
schema; the ``ecnas check`` consistency checks pass (errors only); every row names the
profile's device; every (matrix, ops) is a valid cell of the NAS-Bench-101 space whose iso-hash
is the row's ``arch_hash``; every row is ``measured`` and none estimated unless the manifest
records ``allow_estimated``.

An archive comes from a stranger, so reading it is bounded before anything is decompressed
past a header: at most :data:`MAX_MEMBERS` members, each member's declared size within its
cap, and the declared sizes together within ``max_bytes`` (:data:`MAX_TOTAL_BYTES` unless the
maintainer gives another). A member the manifest does not name is refused on its header
(ecnas writes the manifest first). Members are streamed in 1 MiB chunks into a private folder
under fixed names, hashed on the way; the archive's own names are never used as paths.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ecnas.contributions.make import FORMAT, MANIFEST, check_table, energy_summary
from ecnas.errors import InputError
from ecnas.profiles.toml_io import validate_file
from ecnas.space import ModelSpec
from ecnas.tables import read_table

#: a manifest, a profile and a table: nothing else belongs in a contribution
MAX_MEMBERS = 3
#: the unpacked archive at most (members' declared sizes summed): a device table of
#: NAS-Bench-101's whole space at three budgets is ~100 MB as Parquet, so 1 GiB is ten times
#: the largest real contribution and still far from exhausting a maintainer's disk or memory
MAX_TOTAL_BYTES = 1 << 30
#: the manifest is read into memory (checks, provenance, metadata: kilobytes in practice)
MAX_MANIFEST_BYTES = 16 << 20
#: a profile is a page of TOML
MAX_PROFILE_BYTES = 1 << 20
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Check:
    """One verification check of a contribution archive: its name, whether it passed, and why
    not."""

    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Contribution:
    """What a contribution archive holds: its manifest, and its profile and table unpacked
    under fixed names in a folder the caller owns, with the SHA-256 of each as read."""

    path: str
    manifest: dict[str, Any]
    profile_name: str
    profile_file: Path
    profile_sha256: str
    table_name: str
    table_file: Path
    table_sha256: str


@dataclass(frozen=True)
class VerifyReport:
    """The verification of one contribution archive: its device, every check in order, an energy
    summary, whether the profile is calibrated, and who contributed it."""

    path: str
    device: str
    checks: tuple[Check, ...]
    energy: dict[str, Any] = field(default_factory=dict)
    calibrated: bool = False
    contributor: str = ""

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
                "calibrated": self.calibrated, "contributor": self.contributor,
                "energy": self.energy,
                "checks": [{"name": c.name, "passed": c.passed, "detail": c.detail}
                           for c in self.checks]}


def manifest_problem(manifest: Any) -> str | None:
    """Why a parsed ``manifest.json`` is not one ``ecnas contribute`` writes (None when its
    fields have the types verify and merge rely on)."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return f"manifest.json is not a {FORMAT} manifest"
    for key in ("profile", "table"):
        entry = manifest.get(key)
        if not (isinstance(entry, dict) and isinstance(entry.get("file"), str)
                and isinstance(entry.get("sha256"), str)):
            return f"manifest.json has no {key}.file and {key}.sha256"
        if entry["file"] in (MANIFEST, "") or len(entry["file"].split("/")) != 2:
            return f"manifest.json: {key}.file {entry['file']!r} is not a folder/name"
    if manifest["profile"]["file"] == manifest["table"]["file"]:
        return "manifest.json names one file as both profile and table"
    if not isinstance(manifest["profile"].get("id", ""), str):
        return "manifest.json: profile.id is not a string"
    for key in ("contributor", "notes"):
        if not isinstance(manifest.get(key, ""), str):
            return f"manifest.json: {key} is not a string"
    energy = manifest.get("energy", {})
    if not isinstance(energy, dict):
        return f"manifest.json: energy is {type(energy).__name__}, not an object"
    allowed = energy.get("allow_estimated", False)
    if not isinstance(allowed, bool):  # "no" is truthy: only JSON true allows estimates
        return f"manifest.json: energy.allow_estimated is {allowed!r}, not true or false"
    return None


def _stream(fh: IO[bytes], dest: IO[bytes] | None, limit: int) -> tuple[str, bytes]:
    """Copy ``fh`` to ``dest`` in chunks (or keep it, when ``dest`` is None), at most ``limit``
    bytes: (SHA-256, the bytes kept)."""
    digest, kept, n = hashlib.sha256(), bytearray(), 0
    while chunk := fh.read(_CHUNK):
        n += len(chunk)
        if n > limit:  # the header lied about its size: stop at the cap
            raise InputError(f"holds more than its header's {limit} bytes")
        digest.update(chunk)
        if dest is None:
            kept += chunk
        else:
            dest.write(chunk)
    return digest.hexdigest(), bytes(kept)


def read_contribution(path: str | Path, into: str | Path, *,
                      max_bytes: int = MAX_TOTAL_BYTES) -> Contribution:
    """The archive's manifest, and its profile and table unpacked into the folder ``into`` as
    ``profile.toml`` and ``table.parquet`` (or ``.csv``). ``InputError`` when it is not a
    contribution archive as ``ecnas contribute`` writes them, or when it would unpack to more
    than ``max_bytes`` or :data:`MAX_MEMBERS` members (refused on the headers, before the
    data is read)."""
    p, into = Path(path), Path(into)
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    if max_bytes < 1:
        raise InputError(f"--max-bytes {max_bytes}: must be at least 1")
    try:
        tar = tarfile.open(p, "r:gz")  # noqa: SIM115 - closed by the with below
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InputError(f"{p}: not a .tar.gz contribution archive ({exc})") from None
    manifest: dict[str, Any] | None = None
    got: dict[str, tuple[Path, str]] = {}  # member name -> (unpacked file, SHA-256)
    total = count = 0
    with tar:
        try:
            # next() reads one header at a time: a bomb is refused on its header, not after
            # tarfile has walked (and decompressed) the whole archive
            while (m := tar.next()) is not None:
                count += 1
                if count > MAX_MEMBERS:
                    raise InputError(f"{p}: more than {MAX_MEMBERS} members (a contribution "
                                     "holds a manifest, a profile and a table)")
                if not m.isfile():
                    raise InputError(f"{p}: member {m.name!r} is not a plain file (links and "
                                     "folders are refused)")
                parts = m.name.split("/")
                if m.name.startswith("/") or ".." in parts or len(parts) > 2:
                    raise InputError(f"{p}: member {m.name!r} is not a name inside the archive")
                if m.name in got or (m.name == MANIFEST and manifest is not None):
                    raise InputError(f"{p}: member {m.name!r} appears twice")
                expected = _expected(manifest)
                if expected is not None and m.name not in expected:
                    raise InputError(f"{p}: {m.name} is in the archive but not in its manifest")
                total += m.size
                if total > max_bytes:
                    raise InputError(f"{p}: unpacks to more than {max_bytes} bytes (member "
                                     f"{m.name!r} declares {m.size}); a larger contribution "
                                     "needs --max-bytes")
                if m.name == MANIFEST:
                    manifest = _read_manifest(p, tar, m)
                    continue
                if manifest is not None and m.name == manifest["profile"]["file"] \
                        and m.size > MAX_PROFILE_BYTES:
                    raise InputError(f"{p}: member {m.name!r} is {m.size} bytes (a profile "
                                     f"is at most {MAX_PROFILE_BYTES})")
                fh = tar.extractfile(m)
                dest = into / f"member{count}"
                try:
                    with dest.open("xb") as out:
                        sha, _ = _stream(fh, out, m.size) if fh is not None else ("", b"")
                except InputError as exc:
                    raise InputError(f"{p}: member {m.name!r} {exc}") from None
                got[m.name] = (dest, sha)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise InputError(f"{p}: corrupt archive ({exc})") from None
    if manifest is None:
        raise InputError(f"{p}: no {MANIFEST} (not written by ecnas contribute)")
    expected = _expected(manifest) or set()
    extra = sorted(set(got) - expected)
    if extra:  # an archive that put its manifest last
        raise InputError(f"{p}: {extra[0]} is in the archive but not in its manifest")
    files = {}
    for key, fixed in (("profile", "profile.toml"), ("table", None)):
        name = manifest[key]["file"]
        if name not in got:
            raise InputError(f"{p}: {name} (the manifest's {key}) is not in the archive")
        # fixed names: the archive's names only pick the table's format
        fixed = fixed or ("table.csv" if name.endswith(".csv") else "table.parquet")
        files[key] = (got[name][0].rename(into / fixed), got[name][1])
    return Contribution(str(p), manifest, manifest["profile"]["file"], files["profile"][0],
                        files["profile"][1], manifest["table"]["file"], files["table"][0],
                        files["table"][1])


def _read_manifest(p: Path, tar: tarfile.TarFile, m: tarfile.TarInfo) -> dict[str, Any]:
    if m.size > MAX_MANIFEST_BYTES:
        raise InputError(f"{p}: {MANIFEST} is {m.size} bytes (at most {MAX_MANIFEST_BYTES})")
    fh = tar.extractfile(m)
    try:
        _, data = _stream(fh, None, m.size) if fh is not None else ("", b"")
    except InputError as exc:
        raise InputError(f"{p}: {MANIFEST} {exc}") from None
    try:
        manifest = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InputError(f"{p}: {MANIFEST} is not JSON ({exc})") from None
    problem = manifest_problem(manifest)
    if problem:
        raise InputError(f"{p}: {problem}")
    return manifest


def _expected(manifest: dict[str, Any] | None) -> set[str] | None:
    if manifest is None:
        return None
    return {manifest["profile"]["file"], manifest["table"]["file"]}


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


def verify_contribution(path: str | Path, *, max_bytes: int = MAX_TOTAL_BYTES
                        ) -> tuple[VerifyReport, Any, Any]:
    """(report, table or None, profile or None) of the archive at ``path``; ``max_bytes`` caps
    what it may unpack to (see :func:`read_contribution`)."""

    with tempfile.TemporaryDirectory(prefix="ecnas-contribution-") as tmp:
        c = read_contribution(path, tmp, max_bytes=max_bytes)
        return _verify(c)


def _verify(c: Contribution) -> tuple[VerifyReport, Any, Any]:
    m = c.manifest
    checks: list[Check] = []
    for key, actual in (("profile", c.profile_sha256), ("table", c.table_sha256)):
        ok = actual == m[key]["sha256"]
        checks.append(Check(f"{key}-sha256", ok, "matches the manifest" if ok else
                            f"{m[key]['file']}: SHA-256 {actual[:16]}... is not the manifest's "
                            f"{m[key]['sha256'][:16]}...: changed after ecnas contribute wrote it"))
    device = str(m["profile"].get("id", ""))
    report_energy: dict[str, Any] = {}
    profile = table = None
    calibrated = False
    prof, tab = c.profile_file, c.table_file
    try:
        profile = validate_file(prof)
        device = profile.id
        calibrated = bool(profile.calibrated)
        checks.append(Check("profile-valid", True,
                            f"{profile.id} ({'calibrated' if calibrated else 'uncalibrated'})"))
    except InputError as exc:
        checks.append(Check("profile-valid", False, str(exc).replace(str(prof), c.profile_name)))
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
        allowed = m.get("energy", {}).get("allow_estimated", False) is True
        est = report_energy["rows_estimated"]
        checks.append(Check("energy-measured", est == 0 or allowed,
                            "no estimated energy" if est == 0 else
                            f"{est} of {len(table)} rows estimated"
                            + (" (contributed with --allow-estimated)" if allowed else
                               " and the manifest does not allow it")))
    report = VerifyReport(c.path, device, tuple(checks), report_energy, calibrated,
                          str(m.get("contributor", "")))
    return report, table, profile


__all__ = ["MAX_MEMBERS", "MAX_TOTAL_BYTES", "Check", "Contribution", "VerifyReport",
           "manifest_problem", "read_contribution", "verify_contribution"]
