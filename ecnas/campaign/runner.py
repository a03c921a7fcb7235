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
from ecnas.campaign.tasks import RunResult, RunTask
from ecnas.errors import InputError
from ecnas.profiles import load_profiles
from ecnas.trainer.config import TrainConfig


@dataclass(frozen=True)
class CampaignSummary:
    """What one :func:`run_campaign` call (one :class:`CampaignSession`) did. Energies are this session's runs, in joules:
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
    """Run every run of ``campaign`` not yet in the store at ``store_path``: one
    :class:`CampaignSession` (see it for every argument), run once."""
    return CampaignSession(campaign, store_path, workers=workers, scheduler=scheduler,
                           resume=resume, progress=progress, run_fn=run_fn,
                           allow_other_campaign=allow_other_campaign,
                           connect_timeout=connect_timeout, observers=observers, limit=limit,
                           cluster=cluster).run()


def _check_importable(run_fn: Any) -> None:
    """Local workers are spawned processes: they get ``run_fn`` by its module and name."""
    try:
        pickle.dumps(run_fn)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        name = getattr(run_fn, "__qualname__", repr(run_fn))
        raise InputError(f"run_fn {name} cannot be sent to worker processes ({exc}); use a "
                         "module-level function, or workers=0") from None


class CampaignSession:
    """One coordinator session over a campaign's store: it owns the store, the executor, the
    queue of runs to do, the progress, the failures, the limit and the observers, from
    :meth:`run`'s start to its summary.

    ``workers``: local worker processes (one run per process; 0 runs inline in this process);
    ``scheduler``: a ``dask.distributed`` scheduler address instead. ``resume=False`` refuses a
    store that already holds runs. ``run_fn(config: TrainConfig)`` is what one run does
    (default: the metered trainer, :func:`ecnas.campaign.worker.train_run`); it must be
    importable by the workers (a module-level function) and return the run's table rows, or a
    dict ``{"rows": …, "meters": […], "estimate_reasons": […]}``. ``progress`` gets one line per
    event. A failed run is retried up to ``campaign.retries`` times in this session.
    ``observers`` (:class:`ecnas.campaign.observers.CampaignObserver`) hear each event.
    ``limit`` (:class:`RunLimit`) stops starting runs after a number of runs or seconds; the
    runs left are counted in the summary's ``left_for_later``.
    ``cluster``: run on ``workers`` worker jobs of a SLURM or PBS cluster started here
    (:mod:`ecnas.campaign.cluster`), cancelled when the session ends.
    """

    def __init__(self, campaign: Campaign, store_path: str | Path, *, workers: int = 1,
                 scheduler: str | None = None, resume: bool = True,
                 progress: Callable[[str], None] | None = None,
                 run_fn: Callable[[Any], Any] | None = None,
                 allow_other_campaign: bool = False, connect_timeout: float = 10.0,
                 observers: Sequence[CampaignObserver] = (), limit: RunLimit | None = None,
                 cluster: ClusterSpec | None = None) -> None:
        self.campaign, self.store_path = campaign, store_path
        self.workers, self.scheduler, self.cluster = workers, scheduler, cluster
        self.resume, self.allow_other_campaign = resume, allow_other_campaign
        self.connect_timeout = connect_timeout
        self.say: Callable[[str], None] = progress or (lambda _line: None)
        self.run_fn, self.observers, self.limit = run_fn, tuple(observers), limit
        # what one run() fills in
        self.store: ResultsStore | None = None
        self.executor: Any = None
        self.pending: deque[RunSpec] = deque()
        self.progress = Progress(total=0, skipped=0)
        self.meters: set[str] = set()
        self.given_up: list[str] = []
        self.warnings: list[str] = []
        self._attempts: dict[str, int] = {}
        self._by_key: dict[str, RunSpec] = {}
        self._in_flight = 0
        self._longest: float | None = None  # the longest run of this session (the limit's guess)
        self._t_start = 0.0

    def run(self) -> CampaignSummary:
        """Run every run not yet in the store (within the limit); the session's summary."""
        if self.run_fn is not None and self.scheduler is None and self.cluster is None \
                and self.workers > 0:
            _check_importable(self.run_fn)
        # every run meters through the profiles: a broken ECNAS_PROFILE_PATH is refused here,
        # once, not met by every run as a failure after the campaign has started
        load_profiles()
        self._t_start = time.monotonic()
        runs = self.campaign.runs()
        with ResultsStore(self.store_path, create=True) as store:
            self.store = store
            have = self._open(store, runs)
            notify(self.observers, "on_start", self.campaign, self.progress, store)
            if not self.pending:
                self._nothing_to_run()
            else:
                self.executor = make_executor(self.campaign, self.workers, self.scheduler,
                                              self.connect_timeout, self.cluster,
                                              self.store_path)
                try:
                    self._announce(have)
                    self._dispatch()
                finally:
                    self.executor.close()
            notify(self.observers, "on_end", self.progress)
        return self._summary(len(runs), have)

    def _open(self, store: ResultsStore, runs: list[RunSpec]) -> int:
        """Claim and bind the store, queue what it lacks; the runs it already has."""
        store.claim()  # two coordinators on one store would run every run twice
        store.bind(self.campaign.hash, self.campaign.to_dict(),
                   allow_other=self.allow_other_campaign)
        done_keys = store.done_keys()
        have = sum(1 for r in runs if r.key in done_keys)
        if have and not self.resume:
            raise InputError(f"{self.store_path}: store already holds {have} run(s) of this "
                             "campaign; resume it (--resume) or use another --store")
        self.pending = deque(r for r in runs if r.key not in done_keys)
        self._by_key = {r.key: r for r in self.pending}
        stored_m, stored_e = store.energy() if have else (0.0, 0.0)
        self.progress = Progress(total=len(runs), skipped=have, stored_measured_j=stored_m,
                                 stored_estimated_j=stored_e)
        return have

    def _warn(self, note: str, prefix: str = "") -> None:
        self.warnings.append(note)
        self.say(self.progress.line(prefix + note))

    def _nothing_to_run(self) -> None:
        if self.cluster is not None and self.cluster.kind:  # no executor: leftovers go anyway
            note = cancel_leftovers(self.cluster.kind, job_name(self.store_path))
            if note:
                self._warn(note)
        self.say(self.progress.line("nothing to run: every run is in the store"))

    def _announce(self, have: int) -> None:
        for note in getattr(self.executor, "notes", ()):
            self._warn(note)
        if getattr(self.executor, "oversubscribed", None):
            self._warn(self.executor.oversubscribed, "WARNING: ")
        self.say(self.progress.line(f"{len(self.pending)} run(s) to go on {self.executor.label}"
                                    + (f", {have} already in the store" if have else "")))

    def _task(self, run: RunSpec) -> RunTask:
        config = TrainConfig.from_dict(self.campaign.train_config(run))
        return RunTask(run_key=run.key, attempt=self._attempts[run.key], config=config,
                       campaign_hash=self.campaign.hash,
                       split_socket=self.executor.split_socket, run_fn=self.run_fn)

    def _may_start(self) -> bool:
        if self.limit is None:
            return True
        ok = self.limit.allows(len(self._attempts), time.monotonic() - self._t_start,
                               self._longest)
        if not ok and not self._in_flight:
            self.say(self.progress.line(f"stopping: the run limit is reached, "
                                        f"{len(self.pending)} run(s) left for a later session "
                                        "(--resume)"))
        return ok

    def _dispatch(self) -> None:
        """Keep the executor full, commit each result as it comes back, retry failures."""
        while self.pending or self._in_flight:
            while self.pending and self._in_flight < self.executor.capacity \
                    and self._may_start():
                run = self.pending.popleft()
                self._attempts[run.key] = self._attempts.get(run.key, 0) + 1
                self.executor.submit(self._task(run))
                self._in_flight += 1
                notify(self.observers, "on_submit", run, self._in_flight)
            if not self._in_flight:  # the limit stopped the session with runs still pending
                break
            result = self.executor.next_result()
            self._in_flight -= 1
            if result.ok:
                self._done(result)
            else:
                self._failed(result)

    def _label(self, run: RunSpec) -> str:
        return f"{run.arch_hash[:8]} budget {run.budget_epochs} repeat {run.repeat}"

    def _done(self, result: RunResult) -> None:
        assert self.store is not None
        run = self._by_key[result.run_key]
        rows, prov = list(result.rows), dict(result.provenance)
        self.store.commit_result(result)
        self.progress.add_run(result.energy_j, result.estimated)
        self.meters.update(prov.get("meters", []))
        notify(self.observers, "on_run_done", run, rows, self._in_flight, self.progress)
        wall = prov["finished"] - prov["started"]
        self._longest = wall if self._longest is None else max(self._longest, wall)
        self.say(self.progress.line(f"done {self._label(run)} in {wall:.1f} s, "
                                    f"{result.energy_j:.1f} J "
                                    f"({'estimated' if result.estimated else 'measured'})"))

    def _failed(self, result: RunResult) -> None:
        assert self.store is not None
        key, error = result.run_key, str(result.error)
        run = self._by_key[key]
        self.progress.failed_attempts += 1
        self.store.commit_result(result)  # the attempt's failure, kept
        retry = self._attempts[key] <= self.campaign.retries
        if not retry:
            self.progress.given_up += 1
        notify(self.observers, "on_run_failed", run, error, retry, self._in_flight,
               self.progress)
        if retry:
            self.pending.append(run)
            self.say(self.progress.line(f"FAILED {self._label(run)} (attempt "
                                        f"{self._attempts[key]}, will retry): {error}"))
        else:
            self.given_up.append(f"{key}: {error}")
            self.say(self.progress.line(f"FAILED {self._label(run)} (attempt "
                                        f"{self._attempts[key]}, giving up): {error}"))

    def _summary(self, total: int, have: int) -> CampaignSummary:
        prog, cluster = self.progress, self.cluster
        return CampaignSummary(
            campaign_hash=self.campaign.hash, store=str(self.store_path), total=total,
            done=prog.done, skipped=have, failed=len(self.given_up),
            failed_attempts=prog.failed_attempts, energy_j=prog.measured_j,
            estimated_energy_j=prog.estimated_j, meters=tuple(sorted(self.meters)),
            wall_time_s=time.monotonic() - self._t_start,
            executor="none" if not total - have else
            ((cluster.kind or "cluster") if cluster else "dask" if self.scheduler else "inline"
             if self.workers == 0 else "local"),
            failures=tuple(self.given_up), warnings=tuple(self.warnings),
            left_for_later=len(self.pending))
