"""``ecnas contribute`` (a lab bundles its device) and ``ecnas contribution verify|merge`` (the
maintainer's side): the contributions room's commands. Registering is argparse only; each
handler imports ``ecnas.contributions`` when it runs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ecnas.cli._output import add_json_flag, emit
from ecnas.errors import CheckFailed


def register(sub: Any) -> None:
    """Add ``ecnas contribute`` and ``ecnas contribution verify|merge`` to ``sub``."""
    k = sub.add_parser("contribute",
                       help="bundle a profile, a device table and a manifest for a pull request",
                       description="Validate PROFILE, check TABLE (measured on that device) "
                                   "with 'ecnas check', and write both with a manifest of "
                                   "checksums into BUNDLE.tar.gz. Estimated energy is refused "
                                   "without --allow-estimated; exit 1 when a table check fails "
                                   "(nothing written).")
    k.add_argument("--profile", required=True, type=Path, metavar="PROFILE.toml",
                   help="the device's hardware profile (one file, e.g. from 'ecnas calibrate')")
    k.add_argument("--table", required=True, type=Path, metavar="TABLE",
                   help="energy table (Parquet or CSV) measured on that device")
    k.add_argument("--out", required=True, type=Path, metavar="BUNDLE.tar.gz",
                   help="archive to write")
    k.add_argument("--who", default="", help="contributor (name, lab)")
    k.add_argument("--notes", default="", help="free text for the maintainers")
    k.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    k.add_argument("--allow-estimated", action="store_true",
                   help="bundle a table with estimated energy anyway (refused without it; "
                        "recorded in the manifest)")
    add_json_flag(k)
    k.set_defaults(func=cmd_contribute)
    p = sub.add_parser("contribution", help="verify or merge a device contribution archive",
                       description="The maintainer's side of 'ecnas contribute': verify an "
                                   "archive, or merge it into a benchmark bundle as a new device.")
    s = p.add_subparsers(dest="contribution_command", metavar="ACTION", required=True)
    v = s.add_parser("verify", help="check a contribution archive, naming every failed check",
                     description="Checksums, schema, 'ecnas check', profile valid, hashes in the "
                                 "space, measured vs estimated. Exit 1 when a check fails.")
    v.add_argument("archive", metavar="ARCHIVE.tar.gz", help="archive made by 'ecnas contribute'")
    _add_max_bytes(v)
    add_json_flag(v)
    v.set_defaults(func=_verify)
    m = s.add_parser("merge", help="add a verified contribution's device to a bundle",
                     description="Verify ARCHIVE, then write a new bundle holding BUNDLE's "
                                 "devices and the contributed one (refused with the reasons "
                                 "when a check fails).")
    m.add_argument("archive", metavar="ARCHIVE.tar.gz", help="archive made by 'ecnas contribute'")
    m.add_argument("--into", required=True, metavar="BUNDLE", help="the benchmark bundle folder")
    m.add_argument("--out", required=True, metavar="FOLDER", help="the merged bundle to write")
    m.add_argument("--force", action="store_true",
                   help="replace --out when it is a bundle ecnas wrote (files unchanged)")
    _add_max_bytes(m)
    add_json_flag(m)
    m.set_defaults(func=_merge)


def _add_max_bytes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-bytes", type=int, default=None, metavar="N",
                        help="refuse an archive that unpacks to more than N bytes, on its "
                             "headers, before reading (default 1 GiB: ten times a table of "
                             "NAS-Bench-101's whole space)")


def _caps(args: argparse.Namespace) -> dict[str, int]:
    """``--max-bytes`` when given (the default lives with the room: MAX_TOTAL_BYTES)."""
    return {} if args.max_bytes is None else {"max_bytes": args.max_bytes}


def _verify(args: argparse.Namespace) -> int:
    from ecnas.contributions.verify import verify_contribution

    report, _, _ = verify_contribution(args.archive, **_caps(args))

    def text(o: dict[str, Any]) -> str:
        lines = [f"{o['path']}: device {o['device']} "
                 f"({'calibrated' if o['calibrated'] else 'uncalibrated'} profile)"]
        lines += [f"  {'ok  ' if c['passed'] else 'FAIL'} {c['name']}: {c['detail']}"
                  for c in o["checks"]]
        e = o["energy"]
        if e:
            lines.append(f"  energy: {e['rows']} rows, {e['rows_estimated']} estimated, by source "
                         + ", ".join(f"{v} {k}" for k, v in e["rows_by_source"].items() if v))
        return "\n".join(lines)

    emit(args.json, report.to_dict(), text)
    if not report.ok:
        raise CheckFailed(f"{args.archive}: refused: " + "; ".join(report.failures))
    return 0


def _merge(args: argparse.Namespace) -> int:
    from ecnas.contributions.merge import merge_contribution

    r = merge_contribution(args.archive, args.into, args.out, force=args.force,
                           **_caps(args))
    emit(args.json, r.to_dict(),
         lambda o: "\n".join([f"wrote {o['path']}: device {o['device']} added ({o['rows_added']} "
                              f"rows); devices {', '.join(o['devices'])}; {o['rows']} rows in all",
                              *(f"note: {n}" for n in o["notes"])]))
    return 0


# --------------------------------------------------------------------------- contribute

def cmd_contribute(args: argparse.Namespace) -> int:
    """``ecnas contribute``: bundle a profile, a device table and a manifest for a pull request;
    refused (exit status 1) when a table check fails."""
    from ecnas.contributions.make import make_bundle

    result = make_bundle(args.profile, args.table, args.out, who=args.who, notes=args.notes,
                         force=args.force, allow_estimated=args.allow_estimated)
    emit(args.json, result.to_dict(), _contribute_text)
    if not result.ok:
        raise CheckFailed(f"{args.table}: {len(result.failed_checks)} table check(s) failed: "
                          + "; ".join(result.failed_checks) + " (no bundle written)")
    return 0


def _contribute_text(d: dict) -> str:
    lines = [f"profile {d['profile_id']}: valid ({d['profile_file']})",
             f"table {d['table_file']}: {d['rows']} rows, {d['architectures']} architectures, "
             f"checks {'passed' if d['ok'] else 'FAILED'}"]
    lines += [f"  failed: {c}" for c in d["failed_checks"]]
    if d["bundle"]:
        lines.append(f"wrote {d['bundle']} (sha256 {d['bundle_sha256'][:16]}…); "
                     "attach it to a pull request as CONTRIBUTING.md describes")
    return "\n".join(lines)
