"""The coordinator: expand the campaign, skip what the store has, dispatch the rest to an
executor, commit each completed run, retry failures, report progress.

The coordinator is the only writer of the store. Killing it at any moment loses at most the
runs in flight; ``resume`` (the default) picks up from the store.
"""

from __future__ import annotations

import pickle
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecnas.campaign import executors
from ecnas.campaign.cluster import ClusterSpec, cancel_leftovers, job_name
from ecnas.campaign.config import Campaign, RunSpec
from ecnas.campaign.observers import CampaignObserver, notify
from ecnas.campaign.progress import Progress
from ecnas.campaign.store import ResultsStore
from ecnas.errors import InputError
from ecnas.profiles import load_profiles


@dataclass(frozen=True)
class CampaignSummary:
    """What one :func:`run_campaign` call did. Energies are this session's runs, in joules:
    ``energy_j`` measured by meters, ``estimated_energy_j`` from runs with any estimated part."""

    campaign_hash: str
    store: str
    total: int
    done: int  # run and committed now
    skipped: int  # already in the store
    failed: int  # still failing after every retry
    failed_attempts: int
    energy_j: float
    estimated_energy_j: float
    meters: tuple[str, ...]
    wall_time_s: float
    executor: str
    failures: tuple[str, ...]  # "run_key: error" of the runs given up
    warnings: tuple[str, ...] = ()  # said before the runs started (e.g. oversubscribed cores)
    left_for_later: int = 0  # runs not started: the session's RunLimit was reached

    def to_dict(self) -> dict[str, Any]:
        """The summary as plain data (``--json``)."""
        d = dict(self.__dict__)
        d["meters"], d["failures"] = list(self.meters), list(self.failures)
        d["warnings"] = list(self.warnings)
        return d


@dataclass(frozen=True)
class RunLimit:
    """When a session stops starting runs (what is left waits for ``--resume``): after
    ``runs`` runs started, or when the next run would not end within ``seconds`` of the
    session's start. A run's expected length is the longest run of the session so far
    (``first_run_s`` before any has finished), so a lent machine's time is not overrun."""

    seconds: float | None = None
    runs: int | None = None
    first_run_s: float = 0.0

    def allows(self, started: int, elapsed_s: float, longest_s: float | None) -> bool:
        """Whether another run may start, given the runs started and seconds elapsed so far and
        the longest run yet (None before one has finished)."""
        if self.runs is not None and started >= self.runs:
            return False
        if self.seconds is None:
            return True
        expected = self.first_run_s if longest_s is None else longest_s
        return elapsed_s + expected <= self.seconds


def make_executor(campaign: Campaign, workers: int, scheduler: str | None,
                  connect_timeout: float, cluster: ClusterSpec | None = None,
                  store_path: str | Path | None = None) -> Any:
    """The executor the options ask for: a batch cluster (``cluster``), an existing Dask
    scheduler (``scheduler``), local worker processes (``workers`` > 0) or inline (``workers`` =
    0, one device only). Conflicting options are an :class:`~ecnas.errors.InputError`."""
    if cluster is not None:
        if cluster.kind is None:
            raise InputError("the cluster's kind is not set: --cluster slurm|pbs, or kind in "
                             "the [cluster] table")
        if scheduler is not None:
            raise InputError("--cluster and --scheduler exclude each other: --cluster starts "
                             "its own Dask scheduler")
        return executors.JobQueueExecutor(cluster, workers, campaign.devices,
                                          store_path or "campaign.sqlite")
    if scheduler is not None:
        return executors.DaskExecutor(scheduler, campaign.devices,
                                      connect_timeout=connect_timeout)
    if workers < 0:
        raise InputError(f"--workers {workers}: use 0 (inline) or a positive number")
    if workers == 0:
        if len(set(campaign.devices)) > 1:  # inline is one run at a time on one device
            raise InputError(f"--workers 0 runs inline on one device; the campaign names "
                             f"{', '.join(campaign.devices)}: use --workers N")
        return executors.InlineExecutor(campaign.devices[0])
    return executors.LocalExecutor(workers, campaign.devices)


def run_campaign(campaign: Campaign, store_path: str | Path, *, workers: int = 1,
                 scheduler: str | None = None, resume: bool = True,
                 progress: Callable[[str], None] | None = None,
                 run_fn: Callable[[Any], Any] | None = None,
                 allow_other_campaign: bool = False,
                 connect_timeout: float = 10.0,
                 observers: Sequence[CampaignObserver] = (),
                 limit: RunLimit | None = None,
                 cluster: ClusterSpec | None = None) -> CampaignSummary:
    """Run every run of ``campaign`` not yet in the store at ``store_path``.

    ``workers``: local worker processes (one run per process; 0 runs inline in this process);
    ``scheduler``: a ``dask.distributed`` scheduler address instead. ``resume=False`` refuses a
    store that already holds runs. ``run_fn(config: TrainConfig)`` is what one run does
    (default: the metered trainer, :func:`ecnas.campaign.worker.train_run`); it must be
    importable by the workers (a module-level function) and return the run's table rows, or a
    dict ``{"rows": …, "meters": […], "estimate_reasons": […]}``. ``progress`` gets one line per
    event. A failed run is retried up to ``campaign.retries`` times in this call.
    ``observers`` (:class:`ecnas.campaign.observers.CampaignObserver`) hear each event.
    ``limit`` (:class:`RunLimit`) stops starting runs after a number of runs or seconds; the
    runs left are counted in the summary's ``left_for_later``.
    ``cluster``: run on ``workers`` worker jobs of a SLURM or PBS cluster started here
    (:mod:`ecnas.campaign.cluster`), cancelled when this call ends.
    """
    say = progress or (lambda _line: None)
    if run_fn is not None and scheduler is None and cluster is None and workers > 0:
        _check_importable(run_fn)

    # every run meters through the profiles: a broken ECNAS_PROFILE_PATH is refused here, once,
    # not met by every run as a failure after the campaign has started
    load_profiles()
    t_start = time.monotonic()
    with ResultsStore(store_path, create=True) as store:
        store.claim()  # two coordinators on one store would run every run twice
        store.bind(campaign.hash, campaign.to_dict(), allow_other=allow_other_campaign)
        done_keys = store.done_keys()
        runs = campaign.runs()
        have = sum(1 for r in runs if r.key in done_keys)
        if have and not resume:
            raise InputError(f"{store_path}: store already holds {have} run(s) of this "
                             "campaign; resume it (--resume) or use another --store")
        pending = deque(r for r in runs if r.key not in done_keys)
        stored_m, stored_e = store.energy() if have else (0.0, 0.0)
        prog = Progress(total=len(runs), skipped=have, stored_measured_j=stored_m,
                        stored_estimated_j=stored_e)
        meters: set[str] = set()
        given_up: list[str] = []
        warned: list[str] = []
        notify(observers, "on_start", campaign, prog, store)
        if not pending:
            if cluster is not None and cluster.kind:  # no executor: the leftovers go all the same
                note = cancel_leftovers(cluster.kind, job_name(store_path))
                if note:
                    warned.append(note)
                    say(prog.line(note))
            say(prog.line("nothing to run: every run is in the store"))
        else:
            executor = make_executor(campaign, workers, scheduler, connect_timeout, cluster,
                                     store_path)
            try:
                for note in getattr(executor, "notes", ()):
                    warned.append(note)
                    say(prog.line(note))
                if getattr(executor, "oversubscribed", None):
                    warned.append(executor.oversubscribed)
                    say(prog.line(f"WARNING: {executor.oversubscribed}"))
                say(prog.line(f"{len(pending)} run(s) to go on {executor.label}"
                              + (f", {have} already in the store" if have else "")))
                _dispatch(campaign, store, executor, pending, prog, meters, given_up, say,
                          run_fn, observers, limit, t_start)
            finally:
                executor.close()
        notify(observers, "on_end", prog)
    return CampaignSummary(
        campaign_hash=campaign.hash, store=str(store_path), total=len(runs), done=prog.done,
        skipped=have, failed=len(given_up), failed_attempts=prog.failed_attempts,
        energy_j=prog.measured_j, estimated_energy_j=prog.estimated_j,
        meters=tuple(sorted(meters)), wall_time_s=time.monotonic() - t_start,
        executor="none" if not len(runs) - have else
        ((cluster.kind or "cluster") if cluster else "dask" if scheduler else "inline" if workers == 0
         else "local"),
        failures=tuple(given_up), warnings=tuple(warned), left_for_later=len(pending))


def _check_importable(run_fn: Any) -> None:
    """Local workers are spawned processes: they get ``run_fn`` by its module and name."""
    try:
        pickle.dumps(run_fn)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        name = getattr(run_fn, "__qualname__", repr(run_fn))
        raise InputError(f"run_fn {name} cannot be sent to worker processes ({exc}); use a "
                         "module-level function, or workers=0") from None


def _task(campaign: Campaign, run: RunSpec, attempt: int, run_fn: Any,
          split: bool) -> dict[str, Any]:
    return {"run_key": run.key, "attempt": attempt, "config": campaign.train_config(run),
            "campaign_hash": campaign.hash, "gpu": None, "split_socket": split,
            "run_fn": run_fn}


def _dispatch(campaign: Campaign, store: ResultsStore, executor: Any, pending: deque[RunSpec],
              prog: Progress, meters: set[str], given_up: list[str],
              say: Callable[[str], None], run_fn: Any,
              observers: Sequence[CampaignObserver] = (), limit: RunLimit | None = None,
              t_start: float = 0.0) -> None:
    by_key = {r.key: r for r in pending}
    attempts: dict[str, int] = {}
    in_flight = 0
    longest: float | None = None  # the longest run of this session (RunLimit's estimate)

    def may_start() -> bool:
        if limit is None:
            return True
        ok = limit.allows(len(attempts), time.monotonic() - t_start, longest)
        if not ok and not in_flight:
            say(prog.line(f"stopping: the run limit is reached, {len(pending)} run(s) left "
                          "for a later session (--resume)"))
        return ok

    while pending or in_flight:
        while pending and in_flight < executor.capacity and may_start():
            run = pending.popleft()
            attempts[run.key] = attempts.get(run.key, 0) + 1
            executor.submit(_task(campaign, run, attempts[run.key], run_fn,
                                  executor.split_socket))
            in_flight += 1
            notify(observers, "on_submit", run, in_flight)
        if not in_flight:  # the limit stopped the session with runs still pending
            break
        result = executor.next_result()
        in_flight -= 1
        key = result["run_key"]
        run = by_key[key]
        label = f"{run.arch_hash[:8]} budget {run.budget_epochs} repeat {run.repeat}"
        if result["ok"]:
            rows, prov = result["rows"], result["provenance"]
            store.commit_run(key, rows, prov)
            estimated = any(bool(r.get("estimated")) for r in rows)
            prog.add_run(float(rows[-1].get("energy_j", 0.0)), estimated)
            meters.update(prov.get("meters", []))
            notify(observers, "on_run_done", run, rows, in_flight, prog)
            wall = prov["finished"] - prov["started"]
            longest = wall if longest is None else max(longest, wall)
            say(prog.line(f"done {label} in {wall:.1f} s, "
                          f"{float(rows[-1].get('energy_j', 0.0)):.1f} J "
                          f"({'estimated' if estimated else 'measured'})"))
            continue
        error = str(result.get("error", "unknown error"))
        prog.failed_attempts += 1
        store.record_failure(key, attempts[key], error, result.get("host"))
        retry = attempts[key] <= campaign.retries
        if not retry:
            prog.given_up += 1
        notify(observers, "on_run_failed", run, error, retry, in_flight, prog)
        if retry:
            pending.append(run)
            say(prog.line(f"FAILED {label} (attempt {attempts[key]}, will retry): {error}"))
        else:
            given_up.append(f"{key}: {error}")
            say(prog.line(f"FAILED {label} (attempt {attempts[key]}, giving up): {error}"))
