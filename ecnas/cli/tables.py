"""``ecnas import-ecnas SRC --out TABLE`` and ``ecnas check TABLE`` (tables room)."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from ecnas.cli._output import add_force_flag, add_json_flag, emit
from ecnas.errors import InputError


def register(sub: Any) -> None:
    """Add ``ecnas import-ecnas`` and ``ecnas check`` to ``sub``."""
    p = sub.add_parser("import-ecnas", help="import EC-NAS data (results tree or TFRecord) as a table",
                       description="Read an EC-NAS results tree (graphs JSON + train_model_results/"
                                   "…/results.json) or EC-NAS TFRecord file(s) and write an energy "
                                   "table (.parquet or .csv). kWh become joules; carbontracker's "
                                   "PUE is measured from the data, divided out and kept as metadata.")
    p.add_argument("src", help="results tree folder, .tfrecord file, or folder of .tfrecord files")
    p.add_argument("--out", required=True, help="table to write (.parquet or .csv)")
    p.add_argument("--pue", type=float, default=None,
                   help="facility factor to divide out (default: measured from the data)")
    p.add_argument("--device", default=None, help="hardware profile id to record (default: "
                   "matched from the GPU name in the data)")
    p.add_argument("--keep-bad-hashes", action="store_true",
                   help="import runs whose hash differs from the recomputed iso-hash (for 'ecnas check')")
    p.add_argument("--check", action="store_true", help="run the checks on the imported table")
    add_force_flag(p)
    add_json_flag(p)
    p.set_defaults(func=_import)

    c = sub.add_parser("check", help="consistency report of an energy table (exit 1 on errors)",
                       description="Run the consistency checks on a table; exit 1 when an "
                                   "error-level check fails, 0 otherwise.")
    c.add_argument("table", help="energy table (.parquet or .csv)")
    c.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                   help="override a check threshold (e.g. repeat_cv_warning=0.05); repeatable")
    c.add_argument("--show", type=int, default=3, help="offenders shown per failed check (text)")
    add_json_flag(c)
    c.set_defaults(func=_check)


def _progress(done: int, total: int) -> None:
    print(f"  {done}/{total} runs", file=sys.stderr, flush=True)


def _import(args: argparse.Namespace) -> int:
    from ecnas.interop import check_device_id, import_ecnas
    from ecnas.tables import write_table
    from ecnas.tables.io import check_table_target

    if args.device is not None:
        check_device_id(args.device)  # it names bundle files later: an id, never a path
    check_table_target(args.out, force=args.force, inputs=[args.src])  # before any reading
    if args.pue is not None and not (math.isfinite(args.pue) and args.pue >= 1.0):
        raise InputError(f"--pue {args.pue}: a facility factor is a finite number >= 1")
    df = import_ecnas(args.src, pue=args.pue, device=args.device,
                      keep_bad_hashes=args.keep_bad_hashes,
                      progress=None if args.json else _progress)
    path = write_table(df, args.out)
    meta = df.attrs.get("ecnas", {})
    out: dict[str, Any] = {
        "out": str(path), "rows": len(df), "runs": int(df.groupby(
            ["arch_hash", "budget_epochs", "repeat", "device"]).ngroups),
        "architectures": int(df["arch_hash"].nunique()),
        "budgets": sorted(int(b) for b in df["budget_epochs"].unique()),
        "devices": sorted(df["device"].unique().tolist()),
        "pue": meta.get("pue", {}), "energy_includes_pue": False,
        "hash_mismatches": meta.get("hash_mismatches", 0),
        "measurement": meta.get("measurement", {}),
        "estimated_unknown": meta.get("estimated_unknown"),
        "rows_estimated": int(df["estimated"].astype(bool).sum()),
        "total_energy_j": float(df.groupby(["arch_hash", "budget_epochs", "repeat", "device"])
                                ["energy_j"].max().sum()),
    }
    status = 0
    if args.check:
        from ecnas.tables.checks import run_checks

        report = run_checks(df)
        out["check"] = report.to_dict()
        status = 0 if report.ok else 1

    def text(o: dict[str, Any]) -> str:
        pue = o["pue"]
        lines = [f"wrote {o['out']}: {o['rows']} rows, {o['runs']} runs, {o['architectures']} "
                 f"architectures, budgets {o['budgets']}, devices {', '.join(o['devices'])}",
                 f"PUE {pue.get('factor')} ({pue.get('source')}) divided out; energy_j excludes it",
                 f"energy at the last checkpoints: {o['total_energy_j'] / 3.6e6:.3f} kWh "
                 f"({_measured_text(o)})"]
        if "check" in o:
            lines.append(_report_text(o["check"], 3))
        return "\n".join(lines)

    emit(args.json, out, text)
    return status


def _measured_text(o: dict[str, Any]) -> str:
    """How the imported energy was obtained, as far as the source says (never "measured"
    where it does not say)."""
    m = o.get("measurement") or {}
    est, meter = m.get("estimated"), m.get("meter", "")
    if o.get("estimated_unknown") or est is None:
        why = (o.get("estimated_unknown") or {}).get("because", "the source does not say")
        return f"measured or estimated: unknown ({why}), imported"
    if est is True:
        return f"estimated (meters: {meter}), imported"
    if est == "mixed":
        return f"{o.get('rows_estimated', 0)} rows estimated, the rest measured, by {meter}, imported"
    return f"measured by {meter.split(' (')[0]}, imported"


def _parse_options(items: list[str]) -> dict[str, float]:
    from ecnas.tables.checks import CheckOptions

    fields = CheckOptions.__dataclass_fields__
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in fields:
            raise InputError(f"--option {item!r}: expected NAME=VALUE with NAME one of "
                             f"{', '.join(fields)}")
        try:
            out[name] = int(value) if fields[name].type == "int" else float(value)
        except ValueError:
            raise InputError(f"--option {item!r}: {value!r} is not a number") from None
    return out


def _report_text(d: dict[str, Any], show: int) -> str:
    mark = {"error": "FAIL", "warning": "WARN", "info": "note"}
    lines = [f"{d['rows']} rows, {d['runs']} runs, {d['architectures']} architectures, "
             f"devices: {', '.join(d['devices']) or '-'}"]
    for c in d["checks"]:
        tag = "ok  " if c["passed"] else mark[c["severity"]]
        count = f" [{c['count']}]" if c["count"] else ""
        lines.append(f"  {tag} {c['name']}{count}: {c['explanation']}")
        if not c["passed"]:
            listed = c["worst"][:show]
            for w in listed:
                desc = ", ".join(f"{k}={_fmt(v)}" for k, v in w.items())
                lines.append(f"         {desc}")
            if c["count"] > len(listed):  # the count in brackets is rows: say how many are left
                more = c["count"] - len(listed)
                hint = (f"--show {len(c['worst'])} lists them" if len(c["worst"]) > len(listed)
                        else f"--json names up to {len(c['offending_rows'])} rows")
                lines.append(f"         … and {more} more offending row{'s' if more > 1 else ''}"
                             f" ({hint})")
    verdict = "PASSED" if d["ok"] else "FAILED"
    lines.append(f"{verdict}: {d['errors']} error(s), {d['warnings']} warning(s)")
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _check(args: argparse.Namespace) -> int:
    from ecnas.tables import read_table
    from ecnas.tables.checks import run_checks

    options = _parse_options(args.option)
    df = read_table(args.table)  # a table that breaks the schema is bad input: exit 2
    report = run_checks(df, options=options)
    d = report.to_dict()
    d["table"] = args.table
    emit(args.json, d, lambda o: f"{o['table']}: " + _report_text(o, args.show))
    return 0 if report.ok else 1
