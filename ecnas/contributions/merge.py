"""Merge a verified device contribution into a benchmark bundle: a new multi-device bundle.

The contribution is verified first (``ecnas.contributions.verify``) and refused with every
failed check's reason; the base bundle's checksums are verified as it is read. The merged
bundle holds the base's rows and the contribution's, the base's embedded profiles and the
contributed one, each device's facility factor (``pue_by_device``: a lab's table carries its
own, 1.0 when it records none), and a ``contributions`` entry naming the archive, its
SHA-256, contributor and checks. A device the base already holds is refused.
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
from ecnas.contributions.verify import read_contribution, verify_contribution
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

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data, for ``--json``."""
        return {"path": self.path, "device": self.device, "devices": list(self.devices),
                "rows_added": self.rows_added, "rows": self.rows}


def merge_contribution(contribution: str | Path, bundle: str | Path, out: str | Path, *,
                       force: bool = False) -> MergeReport:
    """Merge the device contribution archive ``contribution`` into ``bundle`` and write the
    result to the bundle folder ``out``. The contribution must pass every check and bring a
    device the base lacks (else :class:`~ecnas.errors.InputError`); ``force`` replaces an
    earlier output at ``out``."""

    check_out(out, force=force, inputs=[contribution, bundle])
    report, table, profile = verify_contribution(contribution)
    if not report.ok:
        raise InputError(f"{contribution}: refused, {len(report.failures)} check(s) failed: "
                         + "; ".join(report.failures))
    base_manifest = read_manifest(bundle)
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
                      "contributor": str(_manifest_field(contribution, "contributor")),
                      "energy": c["energy"], "calibrated": c["calibrated"],
                      "checks": [k["name"] for k in c["checks"] if k["passed"]]}]
    path = write_bundle(merged, out, overwrite=force,
                        license=str(base_manifest.get("license", DEFAULT_LICENSE)),
                        citation=str(base_manifest.get("citation", DEFAULT_CITATION)),
                        embedded=embedded, extra={"contributions": contributions},
                        profiles=with_profile(profile))
    return MergeReport(str(path), report.device, tuple(sorted([*base_devices, report.device])),
                       len(table), len(merged))


def _manifest_field(contribution: str | Path, key: str) -> Any:
    return read_contribution(contribution).manifest.get(key, "")
