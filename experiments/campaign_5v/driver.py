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
docs/campaigns.md, "The 5V GPU campaign". What is not particular to this campaign (the time
budget, the store checkpointed after every cell, fixed costs, the sessions file) is
:mod:`ecnas.campaign.timed`.
"""

from __future__ import annotations

import argparse
import json
import math
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

from ecnas.campaign.config import Campaign
from ecnas.campaign.store import ResultsStore, export_table
from ecnas.campaign.timed import (
    FixedCosts,
    RunTiming,
    SessionsFile,
    TimedSession,
    import_seconds,
    machine_info,
    per_run_summary,
    software_versions,
    time_runs,
    writable_copies,
)
from ecnas.errors import InputError
from ecnas.meters.nvml import NvmlMeter, background_setting
from ecnas.meters.rapl import RaplMeter
from ecnas.monitor import Monitor
from ecnas.outputs import check_target, dumps_json, owned_by_caller
from ecnas.space import ModelSpec
from ecnas.tables import read_table
from ecnas.tables.checks import run_checks
from ecnas.tables.metadata import get_metadata
from ecnas.tracker.tracker import metered_device_id
from ecnas.trainer.data import load_dataset
from ecnas.trainer.data.synthetic import write_synthetic_cifar10
from ecnas.trainer.train import run_training

#: the repository this experiment lives in: its data and its results folder are found from here,
#: not from the working folder
ROOT = Path(__file__).resolve().parents[2]
ARCHIVE = ROOT / "tests" / "data" / "ec-nas-5v.tar.gz"
GRAPHS = "ec-nas-5v/graphs/generated_graphs_5V9E.json"
DIR = ROOT / "campaigns" / "5v-gpu"
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
        raise InputError(f"{path}: EC-NAS 5V archive not found (it ships in tests/data/; "
                         "pass --archive)") from None
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


def make_run_fn(monitor: Any, profile: str) -> Callable[[Any], dict[str, Any]]:
    """The campaign's run function: the trainer on ``monitor``. Rows name the metered GPU's
    profile (``profile``) as their device, also in ``--quick`` on a CPU, where the energy is
    still the (stand-in) GPU's."""

    statuses = monitor.statuses()
    meters = [s.meter for s in statuses]
    reasons = [f"{s.meter}: {s.reason}" for s in statuses if s.status.value == "estimated"]
    hardware = [{"meter": s.meter, "domain": d.domain, "kind": d.kind, "name": d.name}
                for s in statuses if s.usable for d in s.devices]

    def run(config: Any) -> dict[str, Any]:
        result = run_training(config, monitor=monitor)
        for row in result.rows:
            row["device"] = profile
            # trained and evaluated on random images: the evaluations cost what CIFAR-10's
            # would (their energy stays in the rows), their accuracies mean nothing
            for name in ACCURACIES:
                row[name] = math.nan
        return {"rows": result.rows, "meters": meters, "estimate_reasons": reasons,
                "hardware": hardware,
                "warmup": result.warmup.to_dict() if result.warmup else None}

    return run


# -- fixed costs -----------------------------------------------------------------------------

#: what a fresh process per cell would pay again before its training (the data is written once)
PER_PROCESS = ("process_start_s", "import_torch_s", "cuda_init_s", "meters_start_s",
               "load_data_s")


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
    resumed_from: str | None = None  # the folder the store was copied from (None: in place)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data (one entry of the sessions file, and ``--json``)."""
        d = asdict(self)
        d["meters"], d["check_failed"] = list(self.meters), list(self.check_failed)
        return d


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
class _Files:
    """Where one GPU kind's files of the campaign lie: ``<profile>[-quick].<suffix>``."""

    folder: Path
    stem: str

    def path(self, suffix: str) -> Path:
        return self.folder / f"{self.stem}{suffix}"


def run_session(*, directory: str | Path = DIR, archive: str | Path = ARCHIVE,
                time_budget_s: float | None = 480.0, max_cells: int | None = None,
                quick: bool = False, device: str | None = None,
                resume_from: str | Path | None = None,
                progress: Callable[[str], None] | None = None) -> SessionReport:
    """Measure cells until ``time_budget_s`` (counted from this process's start) or
    ``max_cells`` is reached; export the table, check it, record the session.

    ``resume_from``: a folder of earlier sessions (read-only files welcome) whose store and
    sessions record *of this GPU kind* are copied, as writable files, into ``directory`` (which
    must not hold them yet) before the session resumes them there; other kinds' files are left
    where they are."""
    session = TimedSession(time_budget_s, max_cells)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    say = progress or (lambda _line: None)
    folder = Path(directory)
    if not folder.is_dir():
        raise InputError(f"--dir {folder}: no such folder")
    source = Path(resume_from) if resume_from is not None else None
    if source is not None and not source.is_dir():
        raise InputError(f"--resume-from {source}: no such folder")
    costs: FixedCosts = session.costs
    costs.per_process = PER_PROCESS
    plan = Plan.quick_plan() if quick else Plan.full()
    with costs.timed("cells_s"):
        cells = five_v_cells(archive)
    device = device or ("cuda:0" if torch.cuda.is_available() else "cpu")
    costs.seconds["cuda_init_s"] = _cuda_init(device)
    with costs.timed("meters_start_s"):
        monitor = campaign_monitor()
    try:
        profile, gpu_name = gpu_identity(monitor)
        files = _Files(folder, f"{profile}{'-quick' if quick else ''}")
        if source is not None:
            writable_copies(source, folder, (files.stem + ".sqlite",
                                             files.stem + ".sessions.json"))
        sessions = SessionsFile(files.path(".sessions.json"), SESSIONS_FORMAT).load()
        _check_table_target(files.path(".parquet"))  # before any work
        say(f"5V campaign on {gpu_name} ({profile}), torch device {device}; "
            f"store {files.path('.sqlite')}")
        with tempfile.TemporaryDirectory(prefix="ecnas-5v-cifar-") as tmp:
            with costs.timed("write_data_s"):
                write_synthetic_cifar10(Path(tmp), plan.train_images, plan.eval_images)
            with costs.timed("load_data_s"):
                load_dataset("cifar10", tmp)  # kept in-process: every cell reuses it
            with costs.timed("cells_s"):
                campaign = build_campaign(plan, cells, Path(tmp), device)
            timings: list[RunTiming] = []
            summary = session.run(campaign, files.path(".sqlite"),
                                  time_runs(make_run_fn(monitor, profile), timings), say)
    finally:
        monitor.close()
    # what a fresh process per cell would pay to import torch, measured in one (this process
    # imported it at its start, among everything else process_start_s holds)
    costs.seconds["import_torch_s"] = import_seconds("torch")
    return _finish(session, files, sessions, campaign, summary, timings, say,
                   device=device, gpu_name=gpu_name, profile=profile, quick=quick,
                   started=started, source=source)


def _finish(session: TimedSession, files: _Files, sessions: SessionsFile, campaign: Campaign,
            summary: Any,
            timings: list[RunTiming], say: Callable[[str], None], *, device: str,
            gpu_name: str, profile: str, quick: bool, started: str,
            source: Path | None) -> SessionReport:
    store, table_path = files.path(".sqlite"), files.path(".parquet")
    with ResultsStore(store, readonly=True) as st:
        in_store = st.count()
    check_ok: bool | None = None
    failed: tuple[str, ...] = ()
    if in_store:
        export_table(store, table_path)
        report = run_checks(read_table(table_path), validated=True)  # read_table validated it
        check_ok = report.ok
        failed = tuple(r.name for r in report.failed if r.severity == "error")
    costs = session.costs
    rep = SessionReport(
        device=profile, gpu_name=gpu_name, torch_device=device, quick=quick,
        campaign_hash=campaign.hash, store=str(store),
        table=str(table_path) if in_store else None,
        sessions_file=str(files.path(".sessions.json")), started_utc=started,
        wall_s=session.elapsed_s(), time_budget_s=session.time_budget_s,
        cells_done=summary.done, cells_in_store=in_store, cells_total=len(campaign.run_specs),
        failed=summary.failed, energy_j=summary.energy_j, fixed_costs=costs.to_dict(),
        per_cell=per_run_summary(timings, costs), meters=summary.meters, check_ok=check_ok,
        check_failed=failed, software=software_versions(), machine=machine_info(ROOT),
        resumed_from=str(source) if source is not None else None)
    sessions.append(rep.to_dict())
    say(f"session: {rep.cells_done} cell(s) measured, {in_store} of {rep.cells_total} in the "
        f"store; one process per cell would add {costs.per_process_s:.1f} s a cell")
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
    p.add_argument("--resume-from", default=None, metavar="FOLDER",
                   help="copy this GPU kind's store and sessions record from FOLDER (read-only "
                        "files welcome) into --dir first, and resume them there")
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
                             resume_from=args.resume_from,
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
