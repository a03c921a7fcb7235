"""The whole GPU validation: refuse where there is no GPU, check the output folder before any
work, run the phases in order with progress on stderr, and write ``validation.json`` and
``validation.md``. A phase that crashes is recorded as a failed check with its error, and the
run goes on: minutes on a lent GPU are too scarce to lose the other phases to one bug."""

from __future__ import annotations

import datetime as _dt
import json
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ecnas.errors import InputError
from ecnas.gpucheck.loads import TorchLoad
from ecnas.gpucheck.phases import PHASES, Context
from ecnas.gpucheck.plan import ValidationPlan
from ecnas.gpucheck.results import Check, ValidationReport
from ecnas.meters.nvml import NvmlMeter
from ecnas.outputs import folder_mode, is_writable, write_text

OUTPUTS = ("validation.json", "validation.md", "trainer-rows.parquet")


def _stderr(msg: str) -> None:
    print(f"[ecnas validate] {msg}", file=sys.stderr, flush=True)


def check_out_dir(out: str | Path, *, force: bool = False) -> Path:
    """The output folder, checked before any work (created later, once there is a GPU).
    Refuses a folder whose validation files ecnas did not write, earlier ones without
    ``force``, and a place that cannot be written."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise InputError(f"--out {path}: exists and is not a folder")
    existing = [name for name in OUTPUTS if (path / name).exists()]
    if existing:
        try:
            ours = "ecnas_validation" in json.loads((path / "validation.json").read_text())
        except (OSError, ValueError, TypeError):
            ours = False  # no validation.json, or one ecnas did not write
        if not ours:
            raise InputError(f"--out {path}: holds {existing[0]}, which ecnas did not write "
                             "as part of a validation; choose another folder")
        if not force:
            raise InputError(f"--out {path}: holds an earlier validation; pass --force to "
                             "replace it, or choose another folder")
    nearest = next(p for p in (path, *path.parents) if p.exists())
    if not is_writable(nearest):  # by mode too: access() lets root into a mode-555 folder
        raise InputError(f"--out {path}: {nearest} is not writable")
    return path


def require_gpu(test_mode: bool) -> str:
    """The device the load runs on; raises InputError (exit 2) where there is no GPU."""
    meter = NvmlMeter()
    status = meter.status()
    meter.close()
    if status.status.value != "measured":
        raise InputError(f"no GPU to validate: NVML: {status.reason}"
                         + (f" (fix: {status.fix})" if status.fix else ""))
    if test_mode:
        return "cpu"
    import torch

    if not torch.cuda.is_available():
        raise InputError(f"no CUDA device for torch {torch.__version__} (CUDA build: "
                         f"{torch.version.cuda or 'none, a CPU-only build'}): install a CUDA "
                         "build of torch")
    return "cuda"


def run_gpu_validation(out: str | Path, plan: ValidationPlan | None = None, *,
                       test_mode: bool = False, force: bool = False,
                       phases: Sequence[str] | None = None,
                       progress: Callable[[str], None] = _stderr) -> ValidationReport:
    """Run the phases (all, or the short names in ``phases``; the machine record always);
    write ``out/validation.json`` and ``out/validation.md``."""
    plan = plan or ValidationPlan.full()
    out_dir = check_out_dir(out, force=force)
    device = require_gpu(test_mode)
    out_dir.mkdir(mode=folder_mode(), parents=True, exist_ok=True)
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    t_start = time.perf_counter()
    progress(f"{plan.name} plan, load on {device}; writing to {out_dir}")
    load = TorchLoad(device, n=plan.matrix_n)
    ctx = Context(plan=plan, out=out_dir, test_mode=test_mode, load=load,
                  smi=shutil.which("nvidia-smi"))
    checks: list[Check] = []
    details: dict[str, Any] = {}
    machine: dict[str, Any] = {}
    chosen = [p for p in PHASES if phases is None or p[0] == "machine" or p[0] in phases]
    if phases is not None and "counter" not in phases and any(
            p[0] == "short" for p in chosen):
        chosen.insert(1, PHASES[1])  # short windows compare with the steady power it finds
    for i, (_, name, phase) in enumerate(chosen, 1):
        progress(f"phase {i}/{len(chosen)}: {name} …")
        t0 = time.perf_counter()
        try:
            got, figures = phase(ctx)
        except Exception as exc:  # noqa: BLE001 - recorded as a failure, the run goes on
            got = [Check(name, "phase ran", f"{type(exc).__name__}: {exc}", "",
                         "runs to the end", "fail",
                         traceback.format_exc(limit=3).strip().splitlines()[-1])]
            figures = {"error": traceback.format_exc()}
        figures["seconds"] = time.perf_counter() - t0
        if name == "machine":
            machine = figures
        else:
            details[name] = figures
        checks += got
        bad = [c.name for c in got if c.failed]
        progress(f"phase {i}/{len(chosen)}: {name}: {len(got) - len(bad)} ok"
                 + (f", FAILED: {'; '.join(bad)}" if bad else "")
                 + f" ({figures['seconds']:.1f} s)")
    report = ValidationReport(plan=plan.name, started=started,
                              duration_s=time.perf_counter() - t_start, machine=machine,
                              checks=tuple(checks), details=details, test_mode=test_mode)
    write_text(out_dir / "validation.json", report.to_json())
    write_text(out_dir / "validation.md", report.to_markdown())
    progress(f"{'PASSED' if report.passed else 'FAILED'} in {report.duration_s:.0f} s: "
             f"{out_dir / 'validation.md'}")
    return report
