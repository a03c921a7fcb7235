"""``ecnas contribution verify|merge``: the maintainer's side of a device contribution."""

from __future__ import annotations

import argparse
from typing import Any

from ecnas.cli._output import add_json_flag, emit
from ecnas.errors import CheckFailed


def register(sub: Any) -> None:
    """Add ``ecnas contribution verify`` and ``ecnas contribution merge`` to ``sub``."""
    p = sub.add_parser("contribution", help="verify or merge a device contribution archive",
                       description="The maintainer's side of 'ecnas contribute': verify an "
                                   "archive, or merge it into a benchmark bundle as a new device.")
    s = p.add_subparsers(dest="contribution_command", metavar="ACTION", required=True)
    v = s.add_parser("verify", help="check a contribution archive, naming every failed check",
                     description="Checksums, schema, 'ecnas check', profile valid, hashes in the "
                                 "space, measured vs estimated. Exit 1 when a check fails.")
    v.add_argument("archive", metavar="ARCHIVE.tar.gz", help="archive made by 'ecnas contribute'")
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
    add_json_flag(m)
    m.set_defaults(func=_merge)


def _verify(args: argparse.Namespace) -> int:
    from ecnas.tables.contribution import verify_contribution

    report, _, _ = verify_contribution(args.archive)

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
    from ecnas.benchmark.merge import merge_contribution

    r = merge_contribution(args.archive, args.into, args.out, force=args.force)
    emit(args.json, r.to_dict(),
         lambda o: f"wrote {o['path']}: device {o['device']} added ({o['rows_added']} rows); "
                   f"devices {', '.join(o['devices'])}; {o['rows']} rows in all")
    return 0
