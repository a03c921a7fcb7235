"""``ecnas hardware`` and ``ecnas measure``: thin layers over :mod:`ecnas.meters` and :mod:`ecnas.monitor`."""

from __future__ import annotations

import argparse
import os
import sys
from importlib import import_module
from typing import TYPE_CHECKING, Any

from ecnas.cli._metrics import add_metrics_flags, start_exporter
from ecnas.cli._options import add_profile_path
from ecnas.cli._output import add_force_flag, add_json_flag, emit
from ecnas.errors import InputError
from ecnas.outputs import check_target

if TYPE_CHECKING:
    from ecnas.monitor.distributed import Topology


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
    ms.add_argument("--gather", action="store_true",
                    help="one 'ecnas measure' per node of a multi-node job: bring every "
                         "node's energy together into one job report (docs/distributed.md)")
    ms.add_argument("--nodes", type=int, metavar="N",
                    help="with --gather: how many nodes (default: srun's task count)")
    ms.add_argument("--node-rank", type=int, metavar="K",
                    help="with --gather and --nodes: this node's rank, 0 to N-1")
    ms.add_argument("--rendezvous", metavar="DIR|tcp://HOST:PORT",
                    help="with --gather: where the nodes meet, a folder all of them reach or "
                         "tcp://HOST:PORT served by node 0 (default: $ECNAS_RENDEZVOUS)")
    ms.add_argument("--gather-timeout", type=float, metavar="S",
                    help="with --gather: seconds to wait for the other nodes after CMD ends "
                         "(default: $ECNAS_GATHER_TIMEOUT or 60)")
    ms.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ...",
                    help="the command to run and its arguments, after --")
    ms.set_defaults(func=cmd_measure)


def cmd_hardware(args: argparse.Namespace) -> int:
    """``ecnas hardware``: every meter's status with its reason and fix, and each device's
    matched profile."""
    summary = import_module("ecnas.monitor.hardware").hardware_summary(
        include_psys=args.psys, profile_paths=args.profiles)
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
    # the meters and the monitor load here, not at registering (ecnas --help stays light)
    registry = import_module("ecnas.meters.registry")
    command = import_module("ecnas.monitor.command")
    create_meters, default_meters = registry.create_meters, registry.default_meters
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
    topo = _gather_topology(args)
    try:
        result = command.run_command(cmd, meters=meters, name=args.name, out=args.out,
                             idle_subtract=args.idle_subtract, profile_paths=args.profiles,
                             gather=args.gather, topo=topo, rendezvous=args.rendezvous,
                             timeout=args.gather_timeout)
    except command.ReportNotWritten as exc:
        # CMD ran: its report goes to stdout and its exit status is kept (2 if it was 0)
        emit(args.json, exc.result.report.to_dict(), _measure_text)
        print(f"ecnas measure: error: {exc} (the report is on stdout)", file=sys.stderr)
        return exc.result.returncode or 2
    finally:
        if exporter is not None:
            exporter.close()
    emit(args.json, result.report.to_dict(), _measure_text)
    return result.returncode


def _gather_topology(args: argparse.Namespace) -> Topology | None:
    """The node's place from ``--nodes``/``--node-rank`` (None: srun's, or no --gather)."""
    if not args.gather:
        if args.nodes is not None or args.node_rank is not None or args.rendezvous:
            raise InputError("--nodes, --node-rank and --rendezvous go with --gather")
        return None
    if args.nodes is None and args.node_rank is None:
        return None
    if args.nodes is None or args.node_rank is None:
        raise InputError("--gather: give both --nodes and --node-rank (or neither, under srun)")
    if args.gather_timeout is not None and not args.gather_timeout > 0:
        raise InputError(f"--gather-timeout {args.gather_timeout}: a positive number of seconds")
    if not 0 <= args.node_rank < args.nodes:
        raise InputError(f"--node-rank {args.node_rank}: must be 0 to {args.nodes - 1}")
    distributed = import_module("ecnas.monitor.distributed")
    return distributed.Topology(args.node_rank, args.nodes, 0, 1, distributed.node_identity(),
                                "ecnas measure")


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
    job = d.get("job")
    if job:
        lines.append(_job_text(job))
    return "\n".join(lines)


def _job_text(job: dict[str, Any]) -> str:
    """The job report (``--gather``) as the table the text output shows."""
    lines = [f"job {job['name']}: {job['world_size']} node(s)"]
    for dom in job["domains"]:
        lines.append(f"  {dom['node']:<24} {dom['domain']:<16} {dom['joules']:12.3f} J  "
                     f"{dom['status']} by {dom['meter']}")
    for node, joules in job["nodes"].items():
        lines.append(f"  {node:<24} {'node total':<16} {joules:12.3f} J")
    if job["missing_ranks"]:
        lines.append(f"  job total: unknown, nodes {job['missing_ranks']} did not report "
                     f"(the others: {job['partial_energy_j']:.3f} J)")
    else:
        lines.append(f"  job total: {job['energy_j']:.3f} J")
    return "\n".join(lines)
