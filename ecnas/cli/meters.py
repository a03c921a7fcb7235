"""``ecnas hardware`` and ``ecnas measure``: thin layers over :mod:`ecnas.meters` and :mod:`ecnas.monitor`."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ecnas.cli._metrics import add_metrics_flags, start_exporter
from ecnas.cli._options import add_profile_path
from ecnas.cli._output import add_force_flag, add_json_flag, emit
from ecnas.errors import InputError
from ecnas.meters.registry import create_meters, default_meters
from ecnas.monitor.command import ReportNotWritten, run_command
from ecnas.monitor.hardware import hardware_summary
from ecnas.outputs import check_target


def register(sub: Any) -> None:
    """Add ``ecnas hardware`` and ``ecnas measure`` to ``sub``."""
    hw = sub.add_parser(
        "hardware", help="detected meters and matched profiles (measured/estimated/unavailable)",
        description="List every meter with its status (measured, estimated or unavailable), "
                    "the reason and the fix, and the hardware profile each device matches.")
    add_json_flag(hw)
    hw.add_argument("--psys", action="store_true", help="also read the RAPL psys domain")
    add_profile_path(hw, dest="profiles")
    hw.set_defaults(func=cmd_hardware)

    ms = sub.add_parser(
        "measure", help="run a command under the meters and report its energy",
        description="Run CMD under the meters and report its energy. The exit status is "
                    "CMD's; signals are forwarded to it; the report is written even when CMD "
                    "fails. Example: ecnas measure --json -- python train.py")
    add_json_flag(ms)
    ms.add_argument("--out", metavar="FILE", help="also write the JSON report to FILE "
                    "(checked before CMD runs)")
    add_force_flag(ms)
    ms.add_argument("--name", help="window name in the report (default: the command's name)")
    ms.add_argument("--meters", metavar="NAMES",
                    help="comma-separated meters instead of the defaults, e.g. rapl,nvml "
                         "(see 'ecnas hardware')")
    ms.add_argument("--psys", action="store_true", help="read the RAPL psys (platform) domain")
    ms.add_argument("--idle-subtract", action="store_true",
                    help="also report energy net of the profiles' idle power")
    add_profile_path(ms, dest="profiles")
    add_metrics_flags(ms, "live power and energy per domain")
    ms.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ...",
                    help="the command to run and its arguments, after --")
    ms.set_defaults(func=cmd_measure)


def cmd_hardware(args: argparse.Namespace) -> int:
    """``ecnas hardware``: every meter's status with its reason and fix, and each device's
    matched profile."""
    summary = hardware_summary(include_psys=args.psys, profile_paths=args.profiles)
    emit(args.json, summary, _hardware_text)
    return 0


def _hardware_text(summary: dict[str, Any]) -> str:
    lines = []
    for m in summary["meters"]:
        lines.append(f"{m['meter']:<9} {m['status']:<11} {', '.join(m['domains']) or '-'}")
        if m["reason"]:
            lines.append(f"          why: {m['reason']}")
        if m["fix"] and m["status"] != "measured":
            lines.append(f"          fix: {m['fix']}")
        for d in m["devices"]:
            prof = d.get("profile") or {}
            lines.append(f"          {d['domain']}: {d['name']} -> profile "
                         f"{prof.get('profile') or 'none'} ({prof.get('reason', '')})")
    lines.append(f"energy will be {'estimated' if summary['estimated'] else 'measured'}"
                 f" by: {', '.join(summary['default_meters']) or 'nothing'}")
    return "\n".join(lines)


def cmd_measure(args: argparse.Namespace) -> int:
    """``ecnas measure``: run a command under the meters and report its energy; returns the
    command's exit status."""
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise InputError("no command given: use 'ecnas measure [--json] [--out F] -- CMD …'")
    if args.out is not None:
        # before CMD runs (perhaps for hours); never over a file CMD names (its script)
        check_target(args.out, force=args.force,
                     inputs=[a for a in cmd if os.path.isfile(a)])
    meters = None
    names: list[str] = []
    if args.meters:
        names = [n.strip() for n in args.meters.split(",") if n.strip()]
        meters = create_meters(names, include_psys=args.psys)
    elif args.psys:
        meters = default_meters(include_psys=True)
    # the exporter reads its own meters: the command's report is never shared across threads
    own = None  # the exporter's own instances of the meters asked for (None: the defaults)
    if args.metrics_port is not None and (args.meters or args.psys):
        own = (create_meters(names, include_psys=args.psys) if args.meters
               else default_meters(include_psys=True))
    exporter = start_exporter(args, args.name or os.path.basename(cmd[0]), campaign=False,
                              meters=own)
    try:
        result = run_command(cmd, meters=meters, name=args.name, out=args.out,
                             idle_subtract=args.idle_subtract, profile_paths=args.profiles)
    except ReportNotWritten as exc:
        # CMD ran: its report goes to stdout and its exit status is kept (2 if it was 0)
        emit(args.json, exc.result.report.to_dict(), _measure_text)
        print(f"ecnas measure: error: {exc} (the report is on stdout)", file=sys.stderr)
        return exc.result.returncode or 2
    finally:
        if exporter is not None:
            exporter.close()
    emit(args.json, result.report.to_dict(), _measure_text)
    return result.returncode


def _measure_text(d: dict[str, Any]) -> str:
    kind = "estimated" if d["estimated"] else "measured"
    lines = [f"{d['name']}: {d['energy_j']:.3f} J in {d['duration_s']:.3f} s "
             f"({d['mean_power_w']:.2f} W mean), {kind}, exit status {d.get('returncode')}"]
    for name, detail in d["domain_details"].items():
        lines.append(f"  {name:<16} {detail['joules']:12.3f} J  {detail['status']:<9} "
                     f"{detail['meter']}" + (f"  profile {detail['profile_id']}"
                                             if detail["profile_id"] else ""))
    for reason in d["reasons"]:
        lines.append(f"  estimated because: {reason}")
    for warning in d["warnings"]:
        lines.append(f"  warning: {warning}")
    return "\n".join(lines)
