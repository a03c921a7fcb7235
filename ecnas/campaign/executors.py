"""Where runs execute: local worker processes, a Dask cluster, or (workers=0) inline.

Every executor takes :class:`~ecnas.campaign.tasks.RunTask` s and hands back the
:class:`~ecnas.campaign.tasks.RunResult` s of :func:`ecnas.campaign.worker.execute_run`; the
coordinator does not know which one it drives. A run whose process dies (segfault, OOM kill, ``os._exit``) comes back as a failed
result naming the exit status, like a run that raised.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from ecnas.campaign import cluster as jq
from ecnas.campaign.tasks import RunResult, RunTask
from ecnas.campaign.worker import child_main, execute_run
from ecnas.campaign.worker_slots import (
    WorkerShare,
    machine_cpus,
    oversubscription,
    pin,
    plan_shares,
)
from ecnas.errors import InputError

#: runs handed to a Dask scheduler at once, whatever the number of workers at connect time
MIN_DASK_IN_FLIGHT = 1024


class InlineExecutor:
    """Runs each task in the coordinator's own process, one at a time. For debugging and for
    measuring the coordinator's own cost; a crash here takes the coordinator with it."""

    capacity = 1
    split_socket = False
    label = "inline"
    oversubscribed: str | None = None

    def __init__(self, device: str = "cpu") -> None:
        self._done: deque[RunResult] = deque()
        self.device = device  # the campaign's device: inline runs train there, not on the CPU
        self.label = f"inline on {device}"

    def submit(self, task: RunTask) -> None:
        """Run ``task`` now, in this process, on the campaign's device; its result waits for
        :meth:`next_result`."""
        self._done.append(execute_run(task.placed(self.device)))

    def next_result(self) -> RunResult:
        """The oldest result not yet handed back."""
        return self._done.popleft()

    def close(self) -> None:
        """Drop results not handed back; there is nothing else to release."""
        self._done.clear()


@dataclass
class _Slot:
    share: WorkerShare  # threads, cores and GPU of the runs in this slot
    device: str  # what the run's TrainConfig.device becomes
    proc: Any = None
    conn: Any = None
    task: RunTask | None = None


def _start_without_sigint(proc: Any) -> None:
    """Start a run process with SIGINT ignored. Ctrl-C reaches the whole process group, and a
    run process still importing when it arrives would print its own KeyboardInterrupt
    traceback. An ignored signal stays ignored through spawn's exec and Python's start-up (a
    blocked mask does not: spawn's child starts with SIGINT unblocked and Python's handler);
    ``child_main`` ignores it again for good (the coordinator alone handles Ctrl-C).

    The coordinator ignores SIGINT only while the process starts (a fork and exec, about a
    millisecond): a Ctrl-C in that window is lost, and the next one stops the campaign. Off
    the main thread, where signal handlers cannot be set, the process starts as it is."""
    if threading.current_thread() is not threading.main_thread():
        proc.start()
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        proc.start()
    finally:
        signal.signal(signal.SIGINT, previous)


class LocalExecutor:
    """``workers`` slots; each task runs in a fresh spawned process (one run per process, so a
    run's GPU pinning, memory and crashes stay its own). Slots are assigned the campaign's
    devices round-robin; a ``cuda:N`` slot's process sees only GPU N, as ``cuda:0``. Each slot
    has its share of the CPU (:mod:`ecnas.campaign.worker_slots`): its own cores and as many
    threads; ``oversubscribed`` says why, when there are more workers than cores."""

    def __init__(self, workers: int, devices: tuple[str, ...] = ("cpu",)) -> None:
        if workers < 1:
            raise InputError(f"--workers must be a positive integer, got {workers}")
        self._ctx = mp.get_context("spawn")
        cpus = machine_cpus()
        self._slots = [_Slot(share=share, device="cpu" if share.gpu is None else "cuda:0")
                       for share in plan_shares(workers, devices, cpus)]
        self.capacity = workers
        self.split_socket = workers > 1
        self.oversubscribed = oversubscription(workers, devices, cpus)
        threads = sorted({s.share.threads for s in self._slots})
        pinned = ("cores shared" if self.oversubscribed else "not pinned"
                  if self._slots[0].share.cpus is None else "each on its own core(s)")
        self.label = (f"{workers} local worker process(es), "
                      f"{'/'.join(map(str, threads))} thread(s) each, {pinned}")

    def submit(self, task: RunTask) -> None:
        """Start ``task`` in a fresh spawned process on a free slot, pinned to the slot's cores
        and GPU; submitting with every slot busy is a RuntimeError."""
        slot = next((s for s in self._slots if s.proc is None), None)
        if slot is None:
            raise RuntimeError("submit() with every worker slot busy")
        task = task.placed(slot.device, gpu=slot.share.gpu, share=slot.share.to_dict())
        parent, child = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(target=child_main, args=(task, child, os.getpid()),
                                 daemon=True,
                                 name=f"ecnas-run-{task.run_key}")
        _start_without_sigint(proc)
        assert proc.pid is not None  # started above
        pin(proc.pid, slot.share)
        child.close()
        slot.proc, slot.conn, slot.task = proc, parent, task

    def next_result(self) -> RunResult:
        """Wait for any running task and return its result; a process that died without sending
        one gives a failed result naming its exit status or signal."""
        busy = [s for s in self._slots if s.proc is not None]
        if not busy:
            raise RuntimeError("next_result() with nothing running")
        waitables = {s.conn: s for s in busy} | {s.proc.sentinel: s for s in busy}
        ready = wait(list(waitables))
        slot = waitables[ready[0]]
        result: RunResult | None = None
        try:
            if slot.conn.poll():
                result = slot.conn.recv()
        except (EOFError, OSError):
            result = None  # the process died before or while sending
        slot.proc.join()
        code = slot.proc.exitcode
        task = slot.task
        slot.conn.close()
        slot.proc.close()
        slot.proc = slot.conn = slot.task = None
        if result is None:
            assert task is not None  # a busy slot holds its task
            how = f"killed by signal {-code}" if code is not None and code < 0 else \
                f"exit status {code}"
            result = RunResult.failed(task, f"worker process died ({how}) before returning")
        return result

    def close(self) -> None:
        """Kill the processes still running; their runs stay unfinished in the store."""
        for s in self._slots:
            if s.proc is not None:
                s.proc.kill()
                s.proc.join()
                s.conn.close()
                s.proc = s.conn = s.task = None


def _check_address(address: str) -> None:
    """Refuse a malformed scheduler address before a Client sees it: a Client that fails on
    one leaves a half-built object whose finalizer hangs for 20 s and prints a traceback."""
    from distributed.comm.addressing import parse_address, parse_host_port
    from distributed.comm.registry import get_backend

    try:
        scheme, location = parse_address(address)
        get_backend(scheme)
        if scheme != "inproc":
            parse_host_port(location)
    except ValueError as exc:
        raise InputError(f"--scheduler {address!r}: not a Dask scheduler address "
                         f"(expected e.g. tcp://host:8786): {exc}") from None


class DaskExecutor:
    """Runs tasks on an existing ``dask.distributed`` scheduler. Tasks on GPU campaigns ask for
    the worker resource ``GPU=1`` (start workers with ``--resources GPU=1`` and one
    ``CUDA_VISIBLE_DEVICES`` each). Results come back to this client; workers never write."""

    def __init__(self, address: str, devices: tuple[str, ...] = ("cpu",), *,
                 connect_timeout: float = 10.0) -> None:
        try:
            from distributed import Client, as_completed
        except ImportError as exc:
            raise InputError(f"--scheduler needs dask.distributed: {exc}") from None
        _check_address(address)
        try:
            self._client = Client(address, timeout=connect_timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise InputError(f"cannot reach Dask scheduler {address} within "
                             f"{connect_timeout:g} s: {type(exc).__name__}: {exc}") from None
        self._ac = as_completed(loop=self._client.loop)  # no default client is set
        self._gpu = any(d != "cpu" for d in devices)
        threads = sum(self._client.nthreads().values())
        # Hand Dask far more runs than the workers present now: on SLURM/PBS the workers join
        # as their jobs start, and the scheduler (not this loop) should feed each newcomer.
        self.capacity = max(threads * 2, MIN_DASK_IN_FLIGHT)
        self.split_socket = True
        self.oversubscribed: str | None = None  # Dask workers' threads are set where they start
        self.label = f"Dask scheduler {address} ({len(self._client.nthreads())} workers)"
        self._tasks: dict[str, RunTask] = {}
        # Dask treats equal keys as the same result: two coordinators sharing a cluster (other
        # recipes, other stores) must never get each other's runs
        self._session = uuid.uuid4().hex[:12]

    def submit(self, task: RunTask) -> None:
        """Send ``task`` to the scheduler under a key unique to this session, asking for
        ``GPU=1`` on a GPU campaign; the run trains on the worker's ``cuda:0``."""
        task = task.placed("cuda:0" if self._gpu else "cpu", gpu=None)
        key = f"ecnas-run-{task.run_key}-{task.attempt}-{self._session}"
        fut = self._client.submit(execute_run, task, key=key, pure=False,
                                  resources={"GPU": 1} if self._gpu else None)
        self._tasks[key] = task  # fut.key is key
        self._ac.add(fut)

    def next_result(self) -> RunResult:
        """The result of whichever task finishes next; a task that raised or whose worker was
        lost gives a failed result."""
        fut = next(self._ac)
        task = self._tasks.pop(fut.key)
        try:
            return fut.result()
        except Exception as exc:  # noqa: BLE001 - a lost worker or task becomes a failed run
            return RunResult.failed(task, f"Dask task failed: {type(exc).__name__}: {exc}")
        finally:
            fut.release()

    def close(self) -> None:
        """Close the client; the scheduler and its workers stay up."""
        self._client.close()


class JobQueueExecutor(DaskExecutor):
    """Runs tasks on worker jobs of a batch cluster (SLURM or PBS) that this executor starts
    through dask-jobqueue and keeps at ``jobs`` (a job that ends is replaced); :meth:`close`
    cancels every job it submitted. See :mod:`ecnas.campaign.cluster`."""

    def __init__(self, spec: Any, jobs: int, devices: tuple[str, ...], store_path: Any) -> None:
        if jobs < 1:
            raise InputError(f"--workers {jobs}: a cluster campaign needs at least one worker "
                             "job")
        self.kind = spec.kind
        self.name = jq.job_name(store_path)
        gpu = any(d != "cpu" for d in devices)
        logs = str(jq.job_log_directory(spec, store_path))
        jq.check_here(spec)  # sbatch/qsub missing, an unknown interface: one line, at once
        Path(logs).mkdir(parents=True, exist_ok=True)
        self.notes: list[str] = []
        self._logs = logs
        self._stalled_since: float | None = None
        self._checked = 0.0
        # a coordinator of this store killed before it could cancel its jobs left them queued
        # or running; the store's lock (held now) says that coordinator is gone
        note = jq.cancel_leftovers(spec.kind, self.name)
        if note:
            self.notes.append(note)
        self._signals = jq._Signals()
        self._signals.install()
        self.cluster: Any = None
        try:
            self.cluster = jq.make_cluster(spec, **jq.cluster_kwargs(
                spec, gpu=gpu, name=self.name, log_directory=logs))
            jq.submit_check(self.cluster, spec.kind)  # the scheduler's refusal, at once
            # adaptive with minimum = maximum: the cluster resubmits a job that ended
            # (scancel, node failure, walltime) instead of running on with fewer workers
            self.cluster.adapt(minimum_jobs=jobs, maximum_jobs=jobs)
            super().__init__(self.cluster.scheduler_address, devices)
        except BaseException:
            self._shutdown()
            raise
        gres = jq._gres(spec, gpu)
        self.label = (f"{jobs} {spec.kind.upper()} worker job(s) named {self.name} "
                      f"({spec.cores} core(s), {spec.memory}"
                      + (f", gres {gres}" if gres else "") + f"; job logs in {logs})")

    def next_result(self) -> RunResult:
        """As :meth:`DaskExecutor.next_result`, checking the batch queue every 5 s while
        waiting: jobs that end before their worker joins would otherwise leave the campaign
        waiting forever (a :class:`ClusterError` once they stall)."""
        # wait as the Dask executor does, but look at the queue every few seconds: jobs that
        # end before their worker joins (a broken environment) are never replaced by
        # dask-jobqueue, and the campaign would wait for them forever
        while not self._ac.has_ready():
            with self._ac.thread_condition:
                self._ac.thread_condition.wait(timeout=1.0)
            now = time.monotonic()
            if not self._ac.has_ready() and now - self._checked >= 5.0:
                self._checked = now
                self._check_jobs(now)
        return super().next_result()

    def _check_jobs(self, now: float) -> None:
        said = jq.refused(self.name)
        if said is not None and not self._client.nthreads():
            raise jq.ClusterError(f"{self.kind.upper()} refuses the worker job: {said}")
        if self._client.nthreads() or jq.list_jobs(self.kind, self.name):
            self._stalled_since = None
            return
        if self._stalled_since is None:
            self._stalled_since = now
        elif now - self._stalled_since > jq.STALL_S:
            why = jq.last_log_line(self._logs)
            raise jq.ClusterError(
                f"no Dask worker joined and no {self.kind.upper()} job of this campaign is "
                f"queued for {jq.STALL_S:g} s: the worker jobs end before their worker starts"
                + (f"; last job log line: {why}" if why else f"; see the job logs in "
                   f"{self._logs}"))

    def _shutdown(self) -> None:
        try:
            if self.cluster is not None:
                # nothing of a refused job runs: no need to wait for its worker to leave
                self.cluster.close(timeout=3 if jq.refused(self.name) else 30)
        except Exception:  # noqa: BLE001 - a job the scheduler refused trips distributed's close
            if self.kind is None or jq.refused(self.name) is None:
                raise
        finally:
            # whatever dask-jobqueue did not cancel (a job submitted while it closed, a close
            # cut short): every job of this store's name goes
            jq.cancel_jobs(self.kind, jq.list_jobs(self.kind, self.name))
            # return once the scheduler has let them go (a cancelled job lingers a moment as
            # COMPLETING), so that the queue is empty when the coordinator is done
            jq.wait_gone(self.kind, self.name)
            self._signals.restore()

    def close(self) -> None:
        """Close the client, then shut the cluster down and cancel every job this executor
        submitted."""
        try:
            if hasattr(self, "_client"):
                self._client.close()
        finally:
            self._shutdown()
