"""The 5V GPU campaign: EC-NAS's 5V cells measured on the GPU at hand, resumable across loans.

One process measures cell after cell (inline: Python, torch, CUDA, the meters and the data
set start once, not per cell) in a fixed seeded order of the 2,532 cells whose Quadro RTX 6000
energies ship in ``tests/data/ec-nas-5v.tar.gz``: NAS-Bench-101's recipe at full width
(stem 128, 3 stacks × 3 cells, batch 256) on CIFAR-10-shaped batch files written on the spot,
4 epochs, checkpoints at epochs 0, 2 and 4 (EC-NAS's), 10 unmetered warm-up steps, energy by
the NVML meter (RAPL beside it where readable; never the CPU estimate), CUDA-synchronized at
every window edge. It stops starting cells when the next one would overrun ``time_budget_s``.

The store (``DIR/<profile>.sqlite``), its table (``DIR/<profile>.parquet``) and a record of
every session (``DIR/<profile>.sessions.json``: machine, software, fixed costs, per-cell
times) live in the repository, so a later loan resumes where this one stopped. See
docs/campaigns.md, "The 5V GPU campaign".
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

import ecnas
from ecnas._version import __version__
from ecnas.campaign.config import Campaign
from ecnas.campaign.runner import RunLimit, run_campaign
from ecnas.campaign.store import ResultsStore, export_table
from ecnas.errors import InputError
from ecnas.meters.nvml import NvmlMeter, background_setting
from ecnas.meters.rapl import RaplMeter
from ecnas.monitor import Monitor
from ecnas.outputs import check_target, dumps_json, owned_by_caller, write_json
from ecnas.space import ModelSpec
from ecnas.tables import read_table
from ecnas.tables.checks import run_checks
from ecnas.tables.metadata import get_metadata
from ecnas.tracker.tracker import metered_device_id
from ecnas.trainer.data import load_dataset
from ecnas.trainer.data.synthetic import write_synthetic_cifar10
from ecnas.trainer.train import run_training

ARCHIVE = Path("tests/data/ec-nas-5v.tar.gz")
GRAPHS = "ec-nas-5v/graphs/generated_graphs_5V9E.json"
DIR = Path("campaigns/5v-gpu")
ORDER_SEED = 0  # the cells' order: a permutation of the sorted hashes by this seed
SESSIONS_FORMAT = "ecnas-5v-campaign-sessions/1"
NAME = "5v-gpu"
#: what the campaign's name says about its data (the table's metadata carries the name)
DATA_NOTE = "CIFAR-10-shaped random images; accuracies not recorded"
ACCURACIES = ("train_accuracy", "validation_accuracy", "test_accuracy")


@dataclass(frozen=True)
class Plan:
    """What a session measures: the data written, the recipe, the budget."""

    quick: bool
    train_images: int  # written to the batch files
    eval_images: int
    recipe: tuple[tuple[str, Any], ...]
    budget_epochs: int = 4

    @classmethod
    def full(cls) -> Plan:
        """The measuring plan: NAS-Bench-101's network and batch on 40,000 training and 10,000
        evaluation images."""
        # NAS-Bench-101's full network and batch are the cifar10 defaults: only the warm-up
        return cls(quick=False, train_images=40_000, eval_images=10_000,
                   recipe=(("warmup_steps", 10),))

    @classmethod
    def quick_plan(cls) -> Plan:
        """Seconds per cell on a CPU: the same code path on a tiny network and data."""
        return cls(quick=True, train_images=128, eval_images=32,
                   recipe=(("batch_size", 64), ("cells_per_stack", 1), ("max_eval_images", 32),
                           ("max_train_images", 128), ("num_stacks", 1), ("stem_channels", 8),
                           ("warmup_steps", 2)))


def five_v_cells(archive: str | Path = ARCHIVE) -> list[tuple[str, str, str]]:
    """(EC-NAS hash, pruned matrix, ops) of every 5V cell, in the campaign's seeded order."""

    path = Path(archive)
    try:
        with tarfile.open(path) as tar:
            member = tar.extractfile(GRAPHS)
            if member is None:
                raise KeyError(GRAPHS)
            graphs = json.loads(member.read())
    except FileNotFoundError:
        raise InputError(f"{path}: EC-NAS 5V archive not found (it ships in tests/data/; run "
                         "from the repository root or pass --archive)") from None
    except (tarfile.TarError, KeyError, OSError, ValueError) as exc:
        raise InputError(f"{path}: not EC-NAS's 5V archive ({type(exc).__name__}: {exc})"
                         ) from None
    hashes = sorted(graphs)
    order = np.random.default_rng(ORDER_SEED).permutation(len(hashes))
    cells = []
    for i in order:
        h = hashes[i]
        matrix, labels = graphs[h]
        spec = ModelSpec(matrix, labels)
        if spec.hash() != h:  # the store keys runs by ecnas's hash: they must be EC-NAS's
            raise InputError(f"{path}: cell {h} hashes to {spec.hash()} here")
        cells.append((h, spec.matrix_str, spec.ops_str))
    return cells


def build_campaign(plan: Plan, cells: Sequence[tuple[str, str, str]], data_dir: Path,
                   device: str) -> Any:
    """The :class:`~ecnas.campaign.config.Campaign` of ``cells`` (hash, matrix, ops) at the
    plan's budget, one repeat each, training on ``device`` with data from ``data_dir``."""

    return Campaign.from_dict({
        "campaign": {"name": f"{NAME}{'-quick' if plan.quick else ''} ({DATA_NOTE})",
                     "dataset": "cifar10",
                     "data_dir": str(data_dir), "seed": 0, "budgets": [plan.budget_epochs],
                     "repeats": 1, "retries": 1, "devices": [device]},
        "architectures": {"list": [{"matrix": m, "ops": o} for _, m, o in cells]},
        "recipe": dict(plan.recipe),
    })


# -- the meters ------------------------------------------------------------------------------

def campaign_monitor() -> Any:
    """NVML for the GPU (required: the campaign measures, never estimates, the GPU), RAPL for
    the CPU where readable. The CPU estimate is left out: a VM without RAPL has a GPU-only
    table, with ``cpu_energy_j`` NaN and ``estimated`` false."""

    nvml = NvmlMeter(background=background_setting())
    status = nvml.status()
    if not status.usable:
        nvml.close()
        raise InputError(f"the 5V GPU campaign needs the NVML meter: {status.reason}")
    meters: list[Any] = [nvml]
    rapl = RaplMeter()
    if rapl.status().usable:
        meters.append(rapl)
    return Monitor(meters).start()


def make_run_fn(monitor: Any, profile: str,
                timings: list[dict[str, Any]]) -> Callable[[Any], dict[str, Any]]:
    """The campaign's run function: the trainer on ``monitor``; each call's seconds outside
    the metered training (data to the device, network, warm-up, rows) go to ``timings``.
    Rows name the metered GPU's profile (``profile``) as their device, also in ``--quick``
    on a CPU, where the energy is still the (stand-in) GPU's."""

    statuses = monitor.statuses()
    meters = [s.meter for s in statuses]
    reasons = [f"{s.meter}: {s.reason}" for s in statuses if s.status.value == "estimated"]
    hardware = [{"meter": s.meter, "domain": d.domain, "kind": d.kind, "name": d.name}
                for s in statuses if s.usable for d in s.devices]

    def run(config: Any) -> dict[str, Any]:
        t0 = time.perf_counter()
        result = run_training(config, monitor=monitor)
        total = time.perf_counter() - t0
        for row in result.rows:
            row["device"] = profile
            # trained and evaluated on random images: the evaluations cost what CIFAR-10's
            # would (their energy stays in the rows), their accuracies mean nothing
            for name in ACCURACIES:
                row[name] = math.nan
        metered = float(result.rows[-1]["wall_time_s"])
        timings.append({"arch_hash": result.rows[-1]["arch_hash"], "call_s": total,
                        "metered_wall_s": metered,
                        "training_s": float(result.rows[-1]["training_time_s"]),
                        "warmup_s": result.warmup.time_s if result.warmup else 0.0,
                        "fixed_s": total - metered})
        return {"rows": result.rows, "meters": meters, "estimate_reasons": reasons,
                "hardware": hardware,
                "warmup": result.warmup.to_dict() if result.warmup else None}

    return run


# -- fixed costs -----------------------------------------------------------------------------

def process_age_s() -> float | None:
    """Seconds since this process was created (Linux /proc), or None elsewhere."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 of stat(5), counted after "pid (comm)"
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 0.0)
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class FixedCosts:
    """Seconds spent once per process (what one process per cell would pay per cell)."""

    process_start_s: float | None = None  # interpreter start and imports up to main()
    import_torch_s: float = 0.0
    cuda_init_s: float | None = None  # None: not on a GPU
    meters_start_s: float = 0.0
    write_data_s: float = 0.0
    load_data_s: float = 0.0  # first read of the batch files (cached in-process after)
    cells_s: float = 0.0  # the 5V cells from the archive, the campaign built

    @property
    def per_process_s(self) -> float:
        """What a fresh process per cell would pay before its training (data written once)."""
        return ((self.process_start_s or 0.0) + self.import_torch_s + (self.cuda_init_s or 0.0)
                + self.meters_start_s + self.load_data_s)


def _cuda_init(device: str) -> float | None:
    if not device.startswith("cuda"):
        return None
    if not torch.cuda.is_available():
        raise InputError(f"device {device}: torch {torch.__version__} sees no CUDA device")
    t0 = time.perf_counter()
    torch.cuda.init()
    torch.zeros(1, device=device).add_(1)
    torch.cuda.synchronize()
    return time.perf_counter() - t0


# -- the session ------------------------------------------------------------------------------

@dataclass(frozen=True)
class SessionReport:
    """One session of the campaign: what it measured, where it wrote, what it cost."""

    device: str  # hardware profile id of the metered GPU
    gpu_name: str
    torch_device: str
    quick: bool
    campaign_hash: str
    store: str
    table: str | None
    sessions_file: str
    started_utc: str
    wall_s: float
    time_budget_s: float | None
    cells_done: int  # this session
    cells_in_store: int
    cells_total: int
    failed: int
    energy_j: float  # this session's cells, measured
    fixed_costs: dict[str, Any]
    per_cell: dict[str, Any]
    meters: tuple[str, ...]
    check_ok: bool | None
    check_failed: tuple[str, ...]
    software: dict[str, str]
    machine: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data (one entry of the sessions file, and ``--json``)."""
        d = asdict(self)
        d["meters"], d["check_failed"] = list(self.meters), list(self.check_failed)
        return d


def _stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "mean": statistics.fmean(values)}


def _software() -> dict[str, str]:
    out = {"python": platform.python_version(), "ecnas": __version__, "torch": torch.__version__,
           "numpy": np.__version__}
    if torch.version.cuda:
        out["cuda"] = str(torch.version.cuda)
    if torch.backends.cudnn.is_available():
        out["cudnn"] = str(torch.backends.cudnn.version())
    return out


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _source_digest() -> str:
    """SHA-256 over ecnas's own source files: names the code that measured, also on a machine
    that got a copy of the working tree without its git history."""

    root = Path(ecnas.__file__).resolve().parent
    digest = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        digest.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    return digest.hexdigest()


def _check_sessions_file(path: Path) -> list[dict[str, Any]]:
    """The sessions recorded so far; a file there that this campaign did not write is refused
    before any work."""
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a 5V campaign sessions file ({exc}); move it away") from None
    if not isinstance(data, dict) or data.get("format") != SESSIONS_FORMAT \
            or not isinstance(data.get("sessions"), list):
        raise InputError(f"{path}: not a 5V campaign sessions file (format "
                         f"{SESSIONS_FORMAT}); move it away")
    return list(data["sessions"])


def _check_table_target(path: Path) -> None:
    """The exported table is replaced each session, but only if this campaign wrote it."""

    if not path.exists():
        check_target(path)
        return

    try:
        meta = get_metadata(read_table(path))
    except InputError as exc:
        raise InputError(f"{path}: exists and is not this campaign's table ({exc})") from None
    campaign = meta.get("campaign") or {}
    if meta.get("producer") != "ecnas campaign" or not str(campaign.get("name", "")
                                                             ).startswith(NAME):
        raise InputError(f"{path}: exists and was not written by the 5V campaign; move it away")
    check_target(path, force=True, owner=owned_by_caller)  # its metadata said whose it is


def gpu_identity(monitor: Any) -> tuple[str, str]:
    """(profile id, board name) of the GPU the NVML meter reads first."""

    names = [d.name for s in monitor.statuses() for d in s.devices if d.kind == "gpu"]
    return metered_device_id(monitor, "gpu"), names[0] if names else "?"


@dataclass
class _Session:
    """A session's state between measuring and the report."""

    profile: str
    gpu_name: str
    device: str
    quick: bool
    folder: Path
    started: str
    t0: float
    age0: float | None
    time_budget_s: float | None
    costs: FixedCosts
    cells: int
    sessions: list[dict[str, Any]] = field(default_factory=list)

    def path(self, suffix: str) -> Path:
        return self.folder / f"{self.profile}{'-quick' if self.quick else ''}{suffix}"

    def elapsed_s(self) -> float:
        """Seconds since the process started (since the session started where unknown)."""
        return (self.age0 or 0.0) + time.perf_counter() - self.t0


def run_session(*, directory: str | Path = DIR, archive: str | Path = ARCHIVE,
                time_budget_s: float | None = 480.0, max_cells: int | None = None,
                quick: bool = False, device: str | None = None,
                progress: Callable[[str], None] | None = None) -> SessionReport:
    """Measure cells until ``time_budget_s`` (counted from this process's start) or
    ``max_cells`` is reached; export the table, check it, record the session."""
    age0, t0 = process_age_s(), time.perf_counter()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    say = progress or (lambda _line: None)
    folder = Path(directory)
    if not folder.is_dir():
        raise InputError(f"--dir {folder}: no such folder")
    if time_budget_s is not None and time_budget_s <= 0:
        raise InputError(f"--time-budget {time_budget_s:g}: must be positive seconds")
    if max_cells is not None and max_cells < 1:
        raise InputError(f"--max-cells {max_cells}: must be at least 1")
    costs = FixedCosts(process_start_s=age0)
    plan = Plan.quick_plan() if quick else Plan.full()
    t = time.perf_counter()
    cells = five_v_cells(archive)
    costs.cells_s = time.perf_counter() - t
    t = time.perf_counter()

    costs.import_torch_s = time.perf_counter() - t
    device = device or ("cuda:0" if torch.cuda.is_available() else "cpu")
    costs.cuda_init_s = _cuda_init(device)
    t = time.perf_counter()
    monitor = campaign_monitor()
    costs.meters_start_s = time.perf_counter() - t
    try:
        profile, gpu_name = gpu_identity(monitor)
        ses = _Session(profile=profile, gpu_name=gpu_name, device=device, quick=quick,
                       folder=folder, started=started, t0=t0, age0=age0,
                       time_budget_s=time_budget_s, costs=costs, cells=len(cells))
        ses.sessions = _check_sessions_file(ses.path(".sessions.json"))  # before any work
        _check_table_target(ses.path(".parquet"))
        say(f"5V campaign on {gpu_name} ({profile}), torch device {device}; "
            f"store {ses.path('.sqlite')}")
        with tempfile.TemporaryDirectory(prefix="ecnas-5v-cifar-") as tmp:
            t = time.perf_counter()
            write_synthetic_cifar10(Path(tmp), plan.train_images, plan.eval_images)
            costs.write_data_s = time.perf_counter() - t
            t = time.perf_counter()
            load_dataset("cifar10", tmp)  # kept in-process: every cell reuses it
            costs.load_data_s = time.perf_counter() - t
            t = time.perf_counter()
            campaign = build_campaign(plan, cells, Path(tmp), device)
            costs.cells_s += time.perf_counter() - t
            timings: list[dict[str, Any]] = []
            summary = _measure(ses, campaign, monitor, timings, max_cells, say)
    finally:
        monitor.close()
    return _finish(ses, campaign.hash, summary, timings, say)


def _measure(ses: _Session, campaign: Any, monitor: Any, timings: list[dict[str, Any]],
             max_cells: int | None, say: Callable[[str], None]) -> Any:

    limit = None
    if ses.time_budget_s is not None or max_cells is not None:
        left = None if ses.time_budget_s is None else ses.time_budget_s - ses.elapsed_s()
        # before the first cell ends, assume one costs a tenth of what is left, at least 30 s
        first = 0.0 if left is None else min(max(30.0, left / 10), max(left, 0.0))
        limit = RunLimit(seconds=left, runs=max_cells, first_run_s=first)
    return run_campaign(campaign, ses.path(".sqlite"), workers=0, resume=True, progress=say,
                        run_fn=make_run_fn(monitor, ses.profile, timings), limit=limit)


def _per_cell(timings: list[dict[str, Any]], costs: FixedCosts) -> dict[str, Any]:
    fixed = [x["fixed_s"] for x in timings]
    out: dict[str, Any] = {
        "cells": len(timings),
        "call_s": _stats([x["call_s"] for x in timings]),
        "metered_wall_s": _stats([x["metered_wall_s"] for x in timings]),
        "training_s": _stats([x["training_s"] for x in timings]),
        "warmup_s": _stats([x["warmup_s"] for x in timings]),
        # data to the device, network, warm-up, rows: paid per cell even in one process
        "fixed_in_process_s": _stats(fixed),
        # the first cell also settles cuDNN's kernel choices and the allocator
        "first_cell_fixed_s": fixed[0] if fixed else None,
    }
    if timings:
        call = statistics.median(x["call_s"] for x in timings)
        out["one_process_per_cell_extra_pct"] = 100.0 * costs.per_process_s / call
    return out


def _finish(ses: _Session, campaign_hash: str, summary: Any, timings: list[dict[str, Any]],
            say: Callable[[str], None]) -> SessionReport:

    store, table_path = ses.path(".sqlite"), ses.path(".parquet")
    with ResultsStore(store, readonly=True) as st:
        in_store = st.count()
    check_ok: bool | None = None
    failed: tuple[str, ...] = ()
    if in_store:
        export_table(store, table_path)
        report = run_checks(read_table(table_path))
        check_ok = report.ok
        failed = tuple(r.name for r in report.failed if r.severity == "error")
    rep = SessionReport(
        device=ses.profile, gpu_name=ses.gpu_name, torch_device=ses.device, quick=ses.quick,
        campaign_hash=campaign_hash, store=str(store),
        table=str(table_path) if in_store else None,
        sessions_file=str(ses.path(".sessions.json")), started_utc=ses.started,
        wall_s=ses.elapsed_s(), time_budget_s=ses.time_budget_s, cells_done=summary.done,
        cells_in_store=in_store, cells_total=ses.cells, failed=summary.failed,
        energy_j=summary.energy_j,
        fixed_costs={**asdict(ses.costs), "per_process_s": ses.costs.per_process_s},
        per_cell=_per_cell(timings, ses.costs), meters=summary.meters, check_ok=check_ok,
        check_failed=failed, software=_software(),
        machine={"host": platform.node(), "platform": platform.platform(),
                 "cpus": os.cpu_count(), "git_commit": _git_commit(),
                 "ecnas_source_sha256": _source_digest()})
    write_json(ses.path(".sessions.json"),
               {"format": SESSIONS_FORMAT, "sessions": [*ses.sessions, rep.to_dict()]})
    say(f"session: {rep.cells_done} cell(s) measured, {in_store} of {ses.cells} in the store; "
        f"one process per cell would add {ses.costs.per_process_s:.1f} s a cell")
    return rep


# -- command line ------------------------------------------------------------------------------

def _plan_text(quick: bool, archive: str | Path) -> dict[str, Any]:
    plan = Plan.quick_plan() if quick else Plan.full()
    cells = five_v_cells(archive)
    return {"cells": len(cells), "order_seed": ORDER_SEED, "first": [c[0] for c in cells[:5]],
            "budget_epochs": plan.budget_epochs, "recipe": dict(plan.recipe),
            "train_images": plan.train_images, "eval_images": plan.eval_images}


def main(argv: Sequence[str] | None = None) -> int:
    """The ``campaign_5v`` command: measure (or with ``--dry-run`` only plan) one session of the
    5V campaign. Returns the exit status: 0, or 2 on bad input."""
    p = argparse.ArgumentParser(
        prog="campaign_5v", description="Measure EC-NAS's 5V cells on this machine's GPU "
        "(NVML), resuming the campaign's store in --dir. See docs/campaigns.md.")
    p.add_argument("--dir", default=str(DIR), help="campaign folder (store, table, sessions)")
    p.add_argument("--archive", default=str(ARCHIVE), help="EC-NAS 5V archive (the cells)")
    p.add_argument("--time-budget", type=float, default=480.0, metavar="S",
                   help="stop starting cells when the next would end after S seconds of this "
                        "process (default 480; 0: no limit)")
    p.add_argument("--max-cells", type=int, default=None, metavar="N")
    p.add_argument("--device", default=None, help="torch device (default cuda:0 if any, else cpu)")
    p.add_argument("--quick", action="store_true",
                   help="tiny network and data (seconds a cell on a CPU): tests the path only")
    p.add_argument("--dry-run", action="store_true", help="print the plan, measure nothing")
    p.add_argument("--json", action="store_true", help="print the session report as JSON")
    args = p.parse_args(argv)
    try:
        if args.dry_run:
            print(json.dumps(_plan_text(args.quick, args.archive)))
            return 0
        report = run_session(directory=args.dir, archive=args.archive,
                             time_budget_s=args.time_budget or None, max_cells=args.max_cells,
                             quick=args.quick, device=args.device,
                             progress=lambda line: print(line, file=sys.stderr, flush=True))
    except InputError as exc:
        print(f"campaign_5v: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(dumps_json(report.to_dict()))
    else:
        print(f"{report.cells_done} cell(s) measured this session, {report.cells_in_store} of "
              f"{report.cells_total} in {report.store}; table {report.table} "
              f"(ecnas check {'ok' if report.check_ok else 'FAILED'})")
    if report.failed or report.check_ok is False:
        return 1
    return 0
