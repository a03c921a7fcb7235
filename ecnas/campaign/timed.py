"""A time-limited, resumable session over a campaign's runs, with its fixed costs accounted.

Built for a lent machine (a GPU for ten minutes, then gone): one process measures run after run
inline, stops starting runs when the next would overrun the time budget (counted from the
process's start), folds the store's write-ahead log into the store after every run (so a
process killed at its limit leaves a store file that holds every committed run on its own),
records what was paid once per process (:class:`FixedCosts`) and per run (:func:`time_runs`),
and appends one record per session to a sessions file (:class:`SessionsFile`). A later session
on another machine resumes the same store.

Nothing here names a campaign, a folder or a device: experiments (``experiments/campaign_5v/``)
supply the campaign, the run function and where the files live.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ecnas
from ecnas._version import __version__
from ecnas.campaign.config import Campaign
from ecnas.campaign.observers import CampaignObserver
from ecnas.campaign.runner import CampaignSummary, RunLimit, run_campaign
from ecnas.campaign.tasks import RunOutput
from ecnas.errors import InputError
from ecnas.outputs import write_json

#: modules whose versions a session records, where the process loaded them
_VERSIONED = ("torch", "numpy", "pandas")


def process_age_s() -> float | None:
    """Seconds since this process was created (Linux /proc), or None elsewhere."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 of stat(5), counted after "pid (comm)"
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 0.0)
    except (OSError, ValueError, IndexError):
        return None


def import_seconds(module: str, timeout: float = 300.0) -> float | None:
    """Seconds ``import module`` takes in a fresh interpreter (measured by that interpreter's
    ``time.perf_counter`` around the import alone; the files are in the page cache when this
    process already imported it). None when the import fails or the child does not answer."""
    code = ("import time, importlib; t = time.perf_counter(); importlib.import_module("
            f"{module!r}); print(time.perf_counter() - t)")
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=timeout, check=False)
        return float(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


@dataclass
class FixedCosts:
    """Seconds a session pays once, by name (measured by ``time.perf_counter`` unless said
    otherwise; None: not paid here, e.g. CUDA's start on a CPU). ``per_process`` names the costs
    a fresh process per run would pay again for every run."""

    seconds: dict[str, float | None] = field(default_factory=dict)
    per_process: tuple[str, ...] = ()

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        """Add the seconds the ``with`` block takes to ``name``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = (self.seconds.get(name) or 0.0) + time.perf_counter() - t0

    @property
    def per_process_s(self) -> float:
        """What a fresh process per run would pay before its training."""
        return sum(self.seconds.get(n) or 0.0 for n in self.per_process)

    def to_dict(self) -> dict[str, Any]:
        """The costs as plain data, with their per-process sum (``per_process_s``)."""
        return {**self.seconds, "per_process_s": self.per_process_s}


@dataclass(frozen=True)
class RunTiming:
    """Seconds of one run in the session's process: the whole call of the run function, the
    metered part (the last row's wall time), its training and warm-up, and the rest (data to the
    device, network, rows: what even one process pays per run)."""

    arch_hash: str
    call_s: float
    metered_wall_s: float
    training_s: float
    warmup_s: float

    @property
    def fixed_s(self) -> float:
        """The call's seconds outside the metered run."""
        return self.call_s - self.metered_wall_s


def time_runs(run_fn: Callable[[Any], Any], timings: list[RunTiming]) -> Callable[[Any], Any]:
    """``run_fn`` with each call's :class:`RunTiming` appended to ``timings``. ``run_fn``
    returns rows or ``{"rows": …, "warmup": {"time_s": …}, …}`` (as a campaign run function)."""

    def run(config: Any) -> Any:
        t0 = time.perf_counter()
        out = run_fn(config)
        total = time.perf_counter() - t0
        read = RunOutput.of(out)
        warmup, last = read.warmup or {}, read.rows[-1]
        timings.append(RunTiming(arch_hash=str(last["arch_hash"]), call_s=total,
                                 metered_wall_s=float(last["wall_time_s"]),
                                 training_s=float(last["training_time_s"]),
                                 warmup_s=float(warmup.get("time_s", 0.0))))
        return out

    return run


def _stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "mean": statistics.fmean(values)}


def per_run_summary(timings: list[RunTiming], costs: FixedCosts) -> dict[str, Any]:
    """Median, min, max and mean of each :class:`RunTiming` field over the session, and what a
    fresh process per run would add to a run, in percent of the median call."""
    fixed = [t.fixed_s for t in timings]
    out: dict[str, Any] = {
        "cells": len(timings),
        "call_s": _stats([t.call_s for t in timings]),
        "metered_wall_s": _stats([t.metered_wall_s for t in timings]),
        "training_s": _stats([t.training_s for t in timings]),
        "warmup_s": _stats([t.warmup_s for t in timings]),
        # data to the device, network, warm-up, rows: paid per run even in one process
        "fixed_in_process_s": _stats(fixed),
        # the first run also settles cuDNN's kernel choices and the allocator
        "first_cell_fixed_s": fixed[0] if fixed else None,
    }
    if timings:
        call = statistics.median(t.call_s for t in timings)
        out["one_process_per_cell_extra_pct"] = 100.0 * costs.per_process_s / call
    return out


class CheckpointEachRun(CampaignObserver):
    """Folds the store's write-ahead log into the store file after every committed run, so the
    file alone holds each run even when the process is killed (the ``-wal`` file beside it may
    be lost: a lent machine returns, or a repository keeps, the store file only)."""

    def __init__(self) -> None:
        self._store: Any = None

    def on_start(self, campaign: Any, progress: Any, store: Any) -> None:
        """Keep the store the coordinator opened."""
        self._store = store

    def on_run_done(self, run: Any, rows: list[dict[str, Any]], in_flight: int,
                    progress: Any) -> None:
        """Checkpoint the store (``PRAGMA wal_checkpoint(TRUNCATE)``)."""
        if self._store is not None:
            self._store.checkpoint()


def writable_copies(source: Path, target: Path, names: tuple[str, ...]) -> list[Path]:
    """Copy each of ``names`` that exists in ``source`` into ``target`` as a fresh, writable
    file (the bytes, not the mode: a read-only file, as a lent machine returns them, resumes as
    well as any). A store's ``-wal`` file beside it travels with it. The copies made."""
    if not source.is_dir():
        raise InputError(f"{source}: no such folder to resume from")
    made = []
    for name in names:
        for suffix in ("", "-wal"):
            src, dst = source / (name + suffix), target / (name + suffix)
            if not src.is_file() or (src.exists() and dst.exists() and src.samefile(dst)):
                continue
            if dst.exists():
                raise InputError(f"{dst}: exists; resume from {source} into an empty folder")
            shutil.copyfile(src, dst)
            made.append(dst)
    return made


class SessionsFile:
    """A JSON file of session records, ``{"format": FORMAT, "sessions": [...]}``; a file there
    of another format is refused (before any work, by :meth:`load`) and never replaced."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path, self.format = path, fmt
        self.sessions: list[dict[str, Any]] = []

    def load(self) -> SessionsFile:
        """Read the sessions recorded so far (none where the file does not exist)."""
        if not self.path.exists():
            return self
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"{self.path}: not a sessions file of {self.format} ({exc}); "
                             "move it away") from None
        if not isinstance(data, dict) or data.get("format") != self.format \
                or not isinstance(data.get("sessions"), list):
            raise InputError(f"{self.path}: not a sessions file of {self.format}; move it away")
        self.sessions = list(data["sessions"])
        return self

    def append(self, record: dict[str, Any]) -> None:
        """Add ``record`` and write the file (atomically)."""
        self.sessions.append(record)
        write_json(self.path, {"format": self.format, "sessions": self.sessions})


def software_versions() -> dict[str, str]:
    """Python's and ecnas's versions, and those of torch, numpy and pandas where this process
    loaded them (loading torch to name it would cost seconds); CUDA's and cuDNN's with torch's."""
    out = {"python": platform.python_version(), "ecnas": __version__}
    for name in _VERSIONED:
        mod = sys.modules.get(name)
        if mod is not None:
            out[name] = str(getattr(mod, "__version__", "?"))
    torch = sys.modules.get("torch")
    if torch is not None:
        if getattr(torch.version, "cuda", None):
            out["cuda"] = str(torch.version.cuda)
        if torch.backends.cudnn.is_available():
            out["cudnn"] = str(torch.backends.cudnn.version())
    return out


def git_commit(folder: str | Path | None = None) -> str | None:
    """The commit checked out in ``folder`` (default: the working folder), or None where there is
    no git history (a copy of the working tree)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=False, cwd=folder)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def source_digest() -> str:
    """SHA-256 over ecnas's own source files: names the code that measured, also on a machine
    that got a copy of the working tree without its git history."""
    root = Path(ecnas.__file__).resolve().parent
    digest = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        digest.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    return digest.hexdigest()


def machine_info(folder: str | Path | None = None) -> dict[str, Any]:
    """Host, platform, CPU count, the git commit of ``folder`` and the digest of ecnas's source."""
    return {"host": platform.node(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "git_commit": git_commit(folder), "ecnas_source_sha256": source_digest()}


class TimedSession:
    """One session: started now, limited to ``time_budget_s`` seconds counted from the process's
    start (None: no limit) and ``max_runs`` runs (None: no limit)."""

    def __init__(self, time_budget_s: float | None = None, max_runs: int | None = None) -> None:
        if time_budget_s is not None and time_budget_s <= 0:
            raise InputError(f"--time-budget {time_budget_s:g}: must be positive seconds")
        if max_runs is not None and max_runs < 1:
            raise InputError(f"--max-cells {max_runs}: must be at least 1")
        self.age0, self.t0 = process_age_s(), time.perf_counter()
        self.time_budget_s, self.max_runs = time_budget_s, max_runs
        self.costs = FixedCosts({"process_start_s": self.age0})

    def elapsed_s(self) -> float:
        """Seconds since the process started (since the session started where unknown)."""
        return (self.age0 or 0.0) + time.perf_counter() - self.t0

    def limit(self) -> RunLimit | None:
        """The coordinator's :class:`RunLimit` for what is left of the budget now: before the
        first run ends, a run is assumed to cost a tenth of what is left, at least 30 s."""
        if self.time_budget_s is None and self.max_runs is None:
            return None
        left = None if self.time_budget_s is None else self.time_budget_s - self.elapsed_s()
        first = 0.0 if left is None else min(max(30.0, left / 10), max(left, 0.0))
        return RunLimit(seconds=left, runs=self.max_runs, first_run_s=first)

    def run(self, campaign: Campaign, store_path: str | Path, run_fn: Callable[[Any], Any],
            progress: Callable[[str], None] | None = None) -> CampaignSummary:
        """Run what the store lacks, inline, within the limit, checkpointing after each run."""
        return run_campaign(campaign, store_path, workers=0, resume=True, progress=progress,
                            run_fn=run_fn, limit=self.limit(),
                            observers=[CheckpointEachRun()])
