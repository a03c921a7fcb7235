"""``ecnas profile validate|list|show|match`` and ``ecnas calibrate``.

Registering is argparse only: the profiles room, the calibration record and procedure are
imported when their command runs (``ecnas --help`` imports none of them).
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module
from pathlib import Path
from typing import Any

from ecnas.cli._options import add_profile_path
from ecnas.cli._output import add_json_flag, emit
from ecnas.errors import InputError
from ecnas.outputs import check_target


def _profiles() -> Any:
    return import_module("ecnas.profiles")


def _recording() -> Any:
    return import_module("ecnas.calibration.recording")


def _add_profile_path(parser: argparse.ArgumentParser) -> None:
    add_profile_path(parser)


def register(sub: Any) -> None:
    """Add ``ecnas profile`` (validate, list, show, match) and ``ecnas calibrate`` (and
    ``calibrate fit``) to ``sub``."""
    prof = sub.add_parser("profile", help="check, list and match hardware profiles",
                          description="Hardware profiles (idle and peak power, per-core power, "
                                      "identifiers) as ecnas loads them: check files, list and "
                                      "show what is loaded, and see which profile a device gets.")
    psub = prof.add_subparsers(dest="profile_command", metavar="SUBCOMMAND",
                               parser_class=type(prof))
    prof.set_defaults(func=lambda args: _usage(prof))

    v = psub.add_parser("validate", help="check profile files; exit 2 naming file, key and reason",
                        description="Check profile files against the schema and physical "
                                    "ranges; each invalid file is named with its key and the "
                                    "reason, and the exit status is 2 if any is invalid.")
    v.add_argument("files", nargs="+", metavar="FILE",
                   help="profile .toml files (other files, e.g. __init__.py, are skipped)")
    add_json_flag(v)
    v.set_defaults(func=cmd_validate)

    ls = psub.add_parser("list", help="the profiles ecnas loads, in precedence order",
                         description="List the profiles ecnas loads (packaged, "
                                     "ECNAS_PROFILE_PATH, --profile-path), in precedence order.")
    _add_profile_path(ls)
    add_json_flag(ls)
    ls.set_defaults(func=cmd_list)

    show = psub.add_parser("show", help="one profile, as loaded",
                           description="Print one profile as ecnas loaded it (TOML, or JSON "
                                       "with --json), with the file it came from.")
    show.add_argument("id", help="profile id, e.g. nvidia-quadro-rtx-6000")
    _add_profile_path(show)
    add_json_flag(show)
    show.set_defaults(func=cmd_show)

    m = psub.add_parser("match", help="which profile a device would get, and why",
                        description="Which profile a device with this name and PCI id would "
                                    "get, and why (the identifiers that matched).")
    m.add_argument("--kind", choices=("gpu", "cpu"), required=True, help="the device's kind")
    m.add_argument("--name", default="", help="board or CPU model name as the driver reports it")
    m.add_argument("--pci-device-id", default=None, help="e.g. 0x1e30")
    _add_profile_path(m)
    add_json_flag(m)
    m.set_defaults(func=cmd_match)

    c = sub.add_parser("calibrate", help="measure this machine's device and write its profile",
                       description="Measure a device (idle, counter probe, load, load steps), "
                                   "keep the run beside the profile as PROFILE.run.json, and "
                                   "fit it against a reference meter's log when one is given. "
                                   "'ecnas calibrate fit RUN' fits a kept run later.")
    c.add_argument("--out", default=None, metavar="PROFILE.toml",
                   help="profile to write (required); the run is kept beside it as "
                        "PROFILE.run.json")
    c.add_argument("--kind", choices=("auto", "gpu", "cpu"), default="auto",
                   help="device to calibrate (auto: a GPU when one can be metered, else the CPU)")
    c.add_argument("--domain", default=None,
                   help="one meter domain, e.g. gpu:1 or cpu:0/dram (default: gpu:0 or all CPU packages)")
    c.add_argument("--id", dest="profile_id", default=None,
                   help="profile id (default: from the device name, e.g. amd-epyc-7763)")
    c.add_argument("--idle-s", type=float, default=30.0, help="idle baseline seconds (30)")
    c.add_argument("--load-s", type=float, default=30.0, help="load test seconds (30)")
    c.add_argument("--steps-s", type=float, default=20.0,
                   help="seconds of load steps (irregular load levels) after the load test; "
                        "they make a reference's clock shift identifiable (20; 0: none)")
    c.add_argument("--probe-s", type=float, default=2.0,
                   help="seconds of back-to-back reads for the counter's update period (2)")
    c.add_argument("--poll-s", type=float, default=0.1, help="meter read period (0.1 s)")
    c.add_argument("--reference", type=Path, default=None, metavar="FILE.csv",
                   help="wall/PDU meter log 'timestamp,watts' (Unix s or ISO 8601) to fit gain "
                        "and offset; read after measuring, so a log still being written works")
    _add_fit_options(c)
    c.add_argument("--who", default="", help="who calibrated (name or lab)")
    c.add_argument("--estimate", action="store_true",
                   help="skip measuring: write an uncalibrated profile from the matched one")
    c.add_argument("--force", action="store_true",
                   help="overwrite --out (and the run beside it) if they exist")
    _add_profile_path(c)
    add_json_flag(c)
    c.set_defaults(func=cmd_calibrate)
    csub = c.add_subparsers(dest="calibrate_command", metavar="[fit]",
                            parser_class=type(c))
    # --out cannot be required=True (``calibrate fit`` takes its own), so the usage line says
    # it instead of argparse's "[--out …]"; set after add_subparsers, which reads the usage
    # to name ``calibrate fit``
    c.usage = ("ecnas calibrate --out PROFILE.toml [options]\n"
               "       ecnas calibrate fit RUN.run.json --reference FILE.csv --out PROFILE.toml "
               "[options]")
    f = csub.add_parser("fit", help="fit a kept run against a reference log exported later",
                        description="Fit a run that 'ecnas calibrate --out X.toml' kept in "
                                    "X.run.json against a reference meter's log; the same "
                                    "fit as the one-step path.")
    f.add_argument("run", type=Path, metavar="RUN.run.json", help="the kept run")
    f.add_argument("--reference", type=Path, required=True, metavar="FILE.csv",
                   help="the reference meter's log 'timestamp,watts'")
    f.add_argument("--out", required=True, metavar="PROFILE.toml", help="profile to write")
    _add_fit_options(f)
    f.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    add_json_flag(f)
    f.set_defaults(func=cmd_calibrate_fit)


def _add_fit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--interval-s", type=float, default=1.0,
                        help="fit interval; make it several reference sample periods (1 s)")
    parser.add_argument("--time-shift-s", type=float, default=None,
                        help="added to the reference's timestamps to put them on this host's "
                             "clock (default: estimated from the data; -3 for a meter 3 s ahead)")
    parser.add_argument("--max-shift-s", type=float, default=60.0,
                        help="search the reference's clock shift within ± this (60 s)")
    parser.add_argument("--reference-rows", choices=("mean", "instant"), default="mean",
                        help="a log row's watts: the mean over the period ending at its "
                             "timestamp (wall meters, PDUs; default) or an instant sample")
    parser.add_argument("--reference-scope", choices=("wall", "device"), default="wall",
                        help="what the reference measures: the whole machine at the wall "
                             "socket (default) or this device alone (riser, clamp)")
    parser.add_argument("--instrument", default="",
                        help="reference instrument, e.g. 'Yokogawa WT310E'")


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


# --------------------------------------------------------------------------- profile …

def cmd_validate(args: argparse.Namespace) -> int:
    """``ecnas profile validate``: check profile files; exit status 2 naming file, key and
    reason when one is invalid."""
    report = import_module("ecnas.profiles.check_files").validate_files(args.files)
    emit(args.json, report.to_dict(), _validate_text)
    if not args.json:
        for line in report.errors:
            print(f"ecnas profile validate: error: {line}", file=sys.stderr)
    return 0 if report.ok else 2


def _validate_text(d: dict) -> str:
    lines = [f"ok       {r['file']}  ({r['id']}, {r['kind']}, {r['calibration']})"
             for r in d["valid"]]
    lines += [f"skipped  {s['file']}  ({s['reason']})" for s in d["skipped"]]
    lines.append(f"{len(d['valid'])} valid, {len(d['errors'])} invalid, "
                 f"{len(d['skipped'])} skipped")
    return "\n".join(lines)


def cmd_list(args: argparse.Namespace) -> int:
    """``ecnas profile list``: the profiles ecnas loads, in precedence order."""
    profiles = _profiles().load_profiles(args.profile_path)
    rows = [{"id": p.id, "kind": p.kind, "name": p.name, "tdp_w": p.tdp_w,
             "calibrated": p.calibrated,
             "source_path": str(p.source_path) if p.source_path else None} for p in profiles]
    emit(args.json, {"profiles": rows}, lambda d: "\n".join(
        f"{r['id']:<24} {r['kind']:<3} {r['tdp_w']:>6g} W  "
        f"{'calibrated' if r['calibrated'] else 'uncalibrated':<12} {r['source_path']}"
        for r in d["profiles"]))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """``ecnas profile show``: one profile as loaded, in TOML (or JSON)."""
    profiles = _profiles()
    profile = profiles.get_profile(args.id, args.profile_path)
    if profile is None:
        raise InputError(f"no profile with id {args.id!r} (see 'ecnas profile list')")
    emit(args.json, profile.to_dict(),
         lambda d: f"# from {d['source_path']}\n" + profiles.dumps_profile(profile))
    return 0


def cmd_match(args: argparse.Namespace) -> int:
    """``ecnas profile match``: which profile a GPU or CPU of the given name and PCI id would
    get, and why."""
    domain = "gpu:0" if args.kind == "gpu" else "cpu:0/package"
    device = import_module("ecnas.meters.base").DeviceInfo(domain=domain, kind=args.kind, name=args.name,
                        pci_device_id=args.pci_device_id)
    match = _profiles().match_device(device, args.profile_path)
    emit(args.json, match.to_dict(),
         lambda d: f"{d['profile'] or 'no profile'}: {d['reason']}")
    return 0


# --------------------------------------------------------------------------- calibrate

def _profile_target(out: str | None, force: bool, inputs: tuple[Path, ...] = ()) -> Path:
    if out is None:
        raise InputError("--out PROFILE.toml is required")
    path = Path(out)
    if path.suffix != ".toml":
        raise InputError(f"--out: {path}: a profile file must end in .toml")
    return check_target(path, force=force, inputs=inputs)


def _fit_options(args: argparse.Namespace) -> Any:
    from ecnas.calibration.procedure import FitOptions

    return FitOptions(interval_s=args.interval_s, time_shift_s=args.time_shift_s,
                      max_shift_s=args.max_shift_s, reference_rows=args.reference_rows,
                      reference_scope=args.reference_scope,
                      instrument=args.instrument).check()


def _progress(text: str) -> None:
    print(f"ecnas calibrate: {text}", file=sys.stderr, flush=True)


def cmd_calibrate(args: argparse.Namespace) -> int:
    """``ecnas calibrate``: measure this machine's device (fitted against a reference log when
    given), write its profile and keep the run beside it as ``X.run.json``."""
    from ecnas.calibration.procedure import CalibrationOptions, calibrate
    from ecnas.calibration.reference import check_reference_path

    recording, profiles = _recording(), _profiles()
    is_record_file = recording.is_record_file
    inputs = (args.reference,) if args.reference is not None else ()
    out = _profile_target(args.out, args.force, inputs)
    run_path = None if args.estimate else recording.run_path_for(out)
    if run_path is not None and run_path.exists():
        if not args.force:
            raise InputError(f"--out: {run_path} (the run kept beside the profile) exists "
                             "(use --force to overwrite)")
        if not is_record_file(run_path):
            raise InputError(f"--out: {run_path} exists and is not a calibration run ecnas "
                             "wrote; move it away")
    if run_path is not None:
        check_target(run_path, force=True, inputs=inputs, owner=is_record_file)
    options = CalibrationOptions(idle_s=args.idle_s, probe_s=args.probe_s, load_s=args.load_s,
                                 steps_s=args.steps_s, poll_s=args.poll_s,
                                 profile_id=args.profile_id, who=args.who).check()
    fit = _fit_options(args)
    if args.reference is not None and not args.estimate:
        check_reference_path(args.reference)
    run = calibrate(args.kind, domain=args.domain, estimate=args.estimate,
                    profiles=profiles.load_profiles(args.profile_path), options=options, reference=args.reference, fit=fit, record_path=run_path,
                    progress=_progress)
    profiles.write_profile(run.profile, out)
    result = run.to_dict()
    result["out"] = str(out)
    result["run"] = str(run_path) if run.record is not None else None
    emit(args.json, result, _calibrate_text)
    return 0


def cmd_calibrate_fit(args: argparse.Namespace) -> int:
    """``ecnas calibrate fit``: fit a kept calibration run against a reference log exported
    later and write the profile."""
    from ecnas.calibration.procedure import fit_record

    out = _profile_target(args.out, args.force, (args.run, args.reference))
    fit = _fit_options(args)
    record = _recording().read_record(args.run)
    run = fit_record(record, args.reference, fit, progress=_progress)
    _profiles().write_profile(run.profile, out)
    result = run.to_dict()
    result["out"] = str(out)
    result["run"] = str(args.run)
    emit(args.json, result, _calibrate_text)
    return 0


def _calibrate_text(d: dict) -> str:
    lines = [f"wrote {d['out']} (profile {d['profile_id']}, {d['mode']} mode, meter {d['meter']})"
             + (f"; run kept in {d['run']}" if d.get("run") else ""),
             f"device: {d['device']}; envelope from {d['base_profile'] or 'no profile'}"]
    if d["idle"]:
        lines.append("idle (measured): " + ", ".join(
            f"{k} {v:.2f} W" for k, v in d["idle"]["power_w"].items()))
    if d["probe"]:
        p = d["probe"]
        lines.append(f"counter: update period {_maybe(p['update_period_s'], 's')}, "
                     f"resolution {_maybe(p['resolution_j'], 'J')} "
                     f"({p['changes']} changes in {p['reads']} reads)")
    if d["load"]:
        lines.append("load (measured): " + ", ".join(
            f"{k} {v:.2f} W" for k, v in d["load"]["power_w"].items()))
    if d.get("shift"):
        sh = d["shift"]
        ahead = "ahead of" if sh["shift_s"] < 0 else "behind"
        how = ("given" if sh["source"] == "given" else
               f"± {sh['sd_s']:.3f} s, estimated from the data, r = {sh['correlation']:.4f}")
        lines.append(f"reference clock: {abs(sh['shift_s']):.3f} s {ahead} this host's "
                     f"(time shift {sh['shift_s']:+.3f} s, {how})")
    if d["fit"]:
        f = d["fit"]
        lines.append(f"fit: gain {f['gain']:.4f} ± {f['gain_sd']:.4f}, offset "
                     f"{f['offset_w']:.2f} ± {f['offset_sd']:.2f} W, residual "
                     f"{f['residual_w']:.2f} W over {f['n']} intervals")
    lines += [f"note: {n}" for n in d["notes"]]
    lines += [f"NOT calibrated: {n}" for n in d["not_calibrated"]]
    return "\n".join(lines)


def _maybe(value: float | None, unit: str) -> str:
    return "unknown" if value is None else f"{value:.6g} {unit}"
