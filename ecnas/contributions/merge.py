"""Merge a verified device contribution into a benchmark bundle: a new multi-device bundle.

The contribution is verified first (``ecnas.contributions.verify``) and refused with every
failed check's reason; the base bundle's checksums are verified as it is read. The merged
bundle holds the base's rows and the contribution's, the base's embedded profiles and the
contributed one, each device's facility factor (``pue_by_device``: a lab's table carries its
own, 1.0 when it records none), and a ``contributions`` entry naming the archive, its
SHA-256, contributor and checks. A device the base already holds is refused, as is an
``--out`` inside the base bundle (or the base inside ``--out``) and a base manifest whose
``devices``, ``calibration`` or ``contributions`` are not what ecnas writes.

A contribution that passes but cannot stand beside the base's devices as they are is merged
and said so, on stdout and in the report's ``notes``: a device measured at none of the base's
budgets (a 2-epoch-only device beside 4-epoch ones answers no query at 4 epochs), or energy
that is all estimated (contributed with ``--allow-estimated``). The maintainer asked for the
merge and the data are what the archive says; refusing would leave them to re-run it with a
flag, so the merge goes ahead and the notes make the gap visible.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ecnas.benchmark.bundle import (
    DEFAULT_CITATION,
    DEFAULT_LICENSE,
    check_out,
    load_bundle,
    profile_entries,
    read_manifest,
    sha256_file,
    write_bundle,
)
from ecnas.contributions.make import with_profile
from ecnas.contributions.verify import MAX_TOTAL_BYTES, verify_contribution
from ecnas.errors import InputError
from ecnas.tables.kwh import pue_for, pue_of
from ecnas.tables.metadata import get_metadata, provenance_entry, set_metadata


@dataclass(frozen=True)
class MergeReport:
    """What a merge wrote: the bundle's path, the contributed device, every device the bundle
    now holds, and its row counts (added, in all)."""

    path: str
    device: str
    devices: tuple[str, ...]
    rows_added: int
    rows: int
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data, for ``--json``."""
        return {"path": self.path, "device": self.device, "devices": list(self.devices),
                "rows_added": self.rows_added, "rows": self.rows, "notes": list(self.notes)}


def merge_contribution(contribution: str | Path, bundle: str | Path, out: str | Path, *,
                       force: bool = False, max_bytes: int = MAX_TOTAL_BYTES) -> MergeReport:
    """Merge the device contribution archive ``contribution`` into ``bundle`` and write the
    result to the bundle folder ``out``. The contribution must pass every check and bring a
    device the base lacks (else :class:`~ecnas.errors.InputError`); ``force`` replaces an
    earlier output at ``out``; ``max_bytes`` caps what the archive may unpack to."""

    _refuse_nested(Path(out), Path(bundle))
    check_out(out, force=force, inputs=[contribution, bundle])
    base_manifest = read_manifest(bundle)
    _check_base_manifest(base_manifest, Path(bundle))
    report, table, profile = verify_contribution(contribution, max_bytes=max_bytes)
    if not report.ok:
        raise InputError(f"{contribution}: refused, {len(report.failures)} check(s) failed: "
                         + "; ".join(report.failures))
    base = load_bundle(bundle)  # every file's checksum verified
    base_devices = sorted(base["device"].astype(str).unique())
    if report.device in base_devices:
        raise InputError(f"{bundle}: already holds device {report.device!r}; a contribution "
                         "adds a new device")
    base_meta = get_metadata(base)
    contrib_meta = get_metadata(table)
    pue_by_device = {d: pue_for(base_meta, d) for d in base_devices}
    pue_by_device[report.device] = pue_of(contrib_meta)
    meta = dict(base_meta)
    meta["pue_by_device"] = pue_by_device
    sha = sha256_file(Path(contribution))
    produced = {k: contrib_meta[k] for k in ("producer", "meters", "estimated_because")
                if k in contrib_meta}
    meta["provenance"] = [*base_meta.get("provenance", []),
                          *[p for p in contrib_meta.get("provenance", []) if isinstance(p, dict)],
                          provenance_entry("ecnas contribution merge", Path(contribution).name,
                                           device=report.device, sha256=sha, **produced)]
    merged = pd.concat([base, table], ignore_index=True, sort=False)
    set_metadata(merged, meta)  # the checks write_bundle runs read the facility factors here
    embedded = {d["id"]: (d, base_manifest.get("calibration", {}).get(d["id"]))
                for d in base_manifest.get("devices", []) if d["id"] in base_devices}
    embedded[report.device] = profile_entries(report.device, profile)
    c = report.to_dict()
    contributions = [*base_manifest.get("contributions", []),
                     {"device": report.device, "archive": Path(contribution).name,
                      "sha256": sha, "rows": len(table),
                      "contributor": report.contributor,
                      "energy": c["energy"], "calibrated": c["calibrated"],
                      "checks": [k["name"] for k in c["checks"] if k["passed"]]}]
    path = write_bundle(merged, out, overwrite=force,
                        license=str(base_manifest.get("license", DEFAULT_LICENSE)),
                        citation=str(base_manifest.get("citation", DEFAULT_CITATION)),
                        embedded=embedded, extra={"contributions": contributions},
                        profiles=with_profile(profile))
    return MergeReport(str(path), report.device, tuple(sorted([*base_devices, report.device])),
                       len(table), len(merged), _notes(report, table, base))


def _refuse_nested(out: Path, bundle: Path) -> None:
    """``InputError`` when ``out`` is the base bundle, inside it, or holds it: writing there
    would change (or replace) the input being merged."""
    o, b = out.resolve(), bundle.resolve()
    if o == b or b in o.parents:
        raise InputError(f"--out {out}: is inside the --into bundle {bundle}; write the merged "
                         "bundle to a folder of its own")
    if o in b.parents:
        raise InputError(f"--out {out}: holds the --into bundle {bundle}; write the merged "
                         "bundle to a folder of its own")


def _check_base_manifest(manifest: dict[str, Any], bundle: Path) -> None:
    """``InputError`` naming the field when the base manifest's fields a merge carries over are
    not the types ecnas writes (a list of contributions, a table of calibrations …)."""
    where = f"{bundle}/manifest.json"
    devices = manifest.get("devices", [])
    if not isinstance(devices, list) or not all(
            isinstance(d, dict) and isinstance(d.get("id"), str) for d in devices):
        raise InputError(f"{where}: devices is not a list of objects with an id")
    if not isinstance(manifest.get("calibration", {}), dict):
        raise InputError(f"{where}: calibration is {type(manifest['calibration']).__name__}, "
                         "not an object of device id -> calibration")
    contributions = manifest.get("contributions", [])
    if not isinstance(contributions, list) or not all(isinstance(c, dict) for c in contributions):
        raise InputError(f"{where}: contributions is not a list of objects")
    for key in ("license", "citation"):
        if not isinstance(manifest.get(key, ""), str):
            raise InputError(f"{where}: {key} is not a string")


def _notes(report: Any, table: pd.DataFrame, base: pd.DataFrame) -> tuple[str, ...]:
    """What the maintainer should know about a merged device that does not stand beside the
    base's devices as they are: budgets in common, estimated energy."""
    notes = []
    added = sorted({int(b) for b in table["budget_epochs"].unique()})
    held = sorted({int(b) for b in base["budget_epochs"].unique()})
    common = sorted(set(added) & set(held))
    if not common:
        notes.append(f"device {report.device} is measured at {_epochs(added)} only, the bundle's "
                     f"other devices at {_epochs(held)}: no budget in common, so no query or "
                     "search compares it with them")
    elif set(held) - set(added):
        notes.append(f"device {report.device} lacks budget(s) {_epochs(sorted(set(held) - set(added)))} "
                     f"that the bundle's other devices hold; compared at {_epochs(common)} only")
    n, est = int(len(table)), int(table["estimated"].astype(bool).sum())
    if est:
        what = "all" if est == n else f"{est} of {n}"
        notes.append(f"device {report.device}: {what} rows hold estimated energy (contributed "
                     "with --allow-estimated), not measured by the lab's meters")
    return tuple(notes)


def _epochs(budgets: list[int]) -> str:
    return ", ".join(str(b) for b in budgets) + " epoch(s)"
