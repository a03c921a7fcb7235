"""``ecnas validate gpu``: prove the meters on a real GPU in one unattended run (see
docs/validation.md). Registering is cheap; torch and the meters load when it runs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ecnas.cli._output import add_json_flag, emit
from ecnas.errors import InputError

# kept here (argparse only): the phases' short names, as --phases takes them
_PHASE_NAMES = ("counter", "windows", "short", "overhead", "trainer", "selection")


def register(sub: Any) -> None:
    """Add ``ecnas validate gpu`` to ``sub``."""
    p = sub.add_parser("validate", help="validate the meters on real hardware",
                       description="Validate the meters on real hardware and write a report.")
    kinds = p.add_subparsers(dest="what", metavar="WHAT", parser_class=type(p))
    g = kinds.add_parser(
        "gpu", help="NVML counter vs power, window semantics, short windows, overhead, the "
                    "trainer at full width, device selection (under 8 min on one H100)",
        description=(
            "Run every GPU check in one go and write DIR/validation.json and "
            "DIR/validation.md (each figure with its expectation and pass/fail). Exit 0 when "
            "every expectation holds, 1 when one fails, 2 without a GPU or on bad input."))
    g.add_argument("--out", required=True, help="output folder (created if missing)")
    g.add_argument("--quick", action="store_true", help="shorter phases: under 4 minutes")
    g.add_argument("--phases", help="comma-separated phases to run (default: all; the machine "
                   "record always runs): " + ", ".join(_PHASE_NAMES))
    g.add_argument("--force", action="store_true",
                   help="replace an earlier validation report in --out")
    # For the test suite only: the stand-in NVML library and a CPU load.
    g.add_argument("--test-mode", action="store_true", help=argparse.SUPPRESS)
    add_json_flag(g)
    g.set_defaults(func=_run_gpu)
    p.set_defaults(func=lambda args: p.error("say what to validate: gpu"))


def _text(result: dict[str, Any]) -> str:
    lines = [f"{'PASSED' if result['passed'] else 'FAILED'}: {result['counts']['pass']} passed, "
             f"{result['counts']['fail']} failed, {result['counts']['skipped']} skipped "
             f"({result['duration_s']:.0f} s); report: {result['report']}"]
    lines += [f"  FAILED {c['phase']}: {c['name']}: {c['value']} (expected {c['expectation']})"
              for c in result["checks"] if c["verdict"] == "fail"]
    return "\n".join(lines)


def _run_gpu(args: argparse.Namespace) -> int:
    from ecnas.gpucheck import ValidationPlan, run_gpu_validation

    if args.test_mode:
        plan = ValidationPlan.test()
    else:
        plan = ValidationPlan.quick() if args.quick else ValidationPlan.full()

    phases = None
    if args.phases:
        phases = tuple(p.strip() for p in args.phases.split(",") if p.strip())
        unknown = [p for p in phases if p not in _PHASE_NAMES]
        if unknown or not phases:
            raise InputError(f"--phases: unknown phase(s) {', '.join(unknown) or '(none)'}; "
                             f"choose from {', '.join(_PHASE_NAMES)}")
    report = run_gpu_validation(args.out, plan, test_mode=args.test_mode, force=args.force,
                                phases=phases)
    result = report.to_dict()
    result["report"] = str(Path(args.out) / "validation.md")
    emit(args.json, result, _text)
    return 0 if report.passed else 1
