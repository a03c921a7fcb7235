"""Campaigns on a batch cluster (SLURM, PBS) through dask-jobqueue.

The coordinator starts a ``dask_jobqueue.SLURMCluster`` (or ``PBSCluster``) whose scheduler
lives in the coordinator's own process, keeps ``--workers`` worker jobs alive (a job cancelled,
killed or out of walltime is replaced), sends runs through the Dask executor and cancels every
job it submitted when it ends: normally, on Ctrl-C, SIGTERM/SIGHUP or an error. Jobs carry a
name derived from the store, so a coordinator that was killed (SIGKILL: no chance to cancel)
leaves jobs the next coordinator on the same store finds and cancels before it submits its own.

:class:`ClusterSpec` is the ``[cluster]`` table of the campaign file
(:mod:`ecnas.campaign.cluster_config` checks it); it does not change what a campaign measures
and stays out of the campaign's hash. Every value of the table that reaches the worker
command is shell-quoted; ``prologue`` is the one explicit shell hook.
"""

from __future__ import annotations

import getpass
import hashlib
import logging
import math
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecnas.campaign.cluster_config import (
    CLUSTER_KEYS,
    KINDS,
    ClusterSpec,
    gres_gpus,
    job_log_directory,
    memory_bytes,
    parse_cluster,
    pbs_walltime,
)
from ecnas.errors import EcnasError, InputError

__all__ = ["CLUSTER_KEYS", "KINDS", "ClusterError", "ClusterSpec", "check_here", "cluster_kwargs",
           "cluster_class", "job_log_directory", "job_name", "job_script", "make_cluster",
           "parse_cluster", "submit_check"]

#: seconds a worker waits for a vanished coordinator before it exits (its job then ends)
DEATH_TIMEOUT_S = 30
#: seconds without a Dask worker and without a job of ours in the queue before the campaign
#: gives up (more than distributed's lost-worker-timeout, after which a lost job is replaced)
STALL_S = 60.0
#: what lists a user's jobs of one name (job ids, one a line) and what cancels them
_LIST = {"slurm": ("squeue", "-h", "-o", "%i", "-u", "{user}", "-n", "{name}"),
         "pbs": ("qselect", "-u", "{user}", "-N", "{name}")}
_CANCEL = {"slurm": ("scancel",), "pbs": ("qdel",)}


class ClusterError(EcnasError):
    """The cluster cannot run the campaign: worker jobs end before their worker joins."""

    exit_status = 1


def last_log_line(log_directory: str | Path) -> str | None:
    """The last line of the newest job error log: usually why a worker could not start."""
    logs = sorted(Path(log_directory).glob("*.err"), key=lambda p: p.stat().st_mtime)
    for path in reversed(logs):
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines()
                 if ln.strip()]
        if lines:
            return f"{path.name}: {lines[-1][:300]}"
    return None


def job_name(store_path: str | Path) -> str:
    """The name every worker job of the coordinator of this store carries."""
    digest = hashlib.sha256(str(Path(store_path).resolve()).encode()).hexdigest()[:10]
    return f"ecnas-{digest}"


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # pragma: no cover - a uid without a passwd entry
        return str(os.getuid())


def list_jobs(kind: str, name: str) -> list[str]:
    """Ids of this user's queued or running jobs called ``name`` (empty when none or when the
    scheduler's command is not there)."""
    cmd = [a.format(user=_user(), name=name) for a in _LIST[kind]]
    if shutil.which(cmd[0]) is None:
        return []
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        return []
    return [line.strip() for line in proc.stdout.splitlines() if line.strip()]


def cancel_jobs(kind: str, ids: list[str]) -> None:
    """Cancel the batch jobs ``ids`` (``scancel`` or ``qdel``), best effort: a failure is not
    reported."""
    if ids:
        subprocess.run([*_CANCEL[kind], *ids], capture_output=True, text=True, timeout=60)


def wait_gone(kind: str, name: str, timeout_s: float = 15.0) -> bool:
    """Wait until no job called ``name`` is listed any more (False: still listed at the end)."""

    deadline = time.monotonic() + timeout_s
    while list_jobs(kind, name):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def cancel_leftovers(kind: str, name: str) -> str | None:
    """Cancel the jobs a killed coordinator of this store left queued or running; the store's
    lock, held by the caller, says that coordinator is gone. Returns what was done, or None."""
    left = list_jobs(kind, name)
    if not left:
        return None
    cancel_jobs(kind, left)
    return (f"cancelled {len(left)} {kind.upper()} job(s) left by a previous coordinator of "
            f"this store: {', '.join(left)}")


def _gres(spec: ClusterSpec, gpu: bool) -> str | None:
    return spec.gres if spec.gres is not None else ("gpu:1" if gpu else None)


def cluster_kwargs(spec: ClusterSpec, *, gpu: bool, name: str,
                   log_directory: str | Path | None) -> dict[str, Any]:
    """The dask-jobqueue arguments for ``spec``: one Dask worker process per job with one
    thread (one run at a time), the job's ``cores`` CPUs for that run's threads. Values that
    reach the worker command are shell-quoted (the table's checks already keep them free of
    spaces and shell metacharacters: quoting is the second guard)."""
    gres = _gres(spec, gpu)
    threads = [f"export {v}={int(spec.cores)}" for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                         "OPENBLAS_NUM_THREADS")]
    # Dask's worker polls NVML twice a second for its dashboard: reads on the very board the
    # run meters, and a failure there (an old driver) stops the worker before it joins
    threads.append("export DASK_DISTRIBUTED__DIAGNOSTICS__NVML=False")
    kw: dict[str, Any] = {
        "cores": 1, "processes": 1, "memory": spec.memory, "name": "ecnas",
        "job_name": shlex.quote(name), "death_timeout": DEATH_TIMEOUT_S,
        "job_script_prologue": [*threads, *spec.prologue],
        "worker_extra_args": ["--resources", "GPU=1"] if gpu else [],
        "scheduler_options": {"dashboard_address": ":0"},
        "log_directory": None if log_directory is None else shlex.quote(str(log_directory)),
        "interface": spec.interface,
        "python": None if spec.python is None else shlex.quote(spec.python),
    }
    directives = list(spec.extra_directives)
    if spec.kind == "slurm":
        kw.update(queue=spec.partition, account=spec.account, job_cpu=int(spec.cores),
                  walltime=spec.walltime)
        if gres:
            directives.append(f"--gres={gres}")
    else:
        mem_b = memory_bytes(spec.memory)
        if mem_b is None:
            raise InputError(f"cluster.memory: must be an amount of memory such as \"16GB\", "
                             f"got {spec.memory!r}")
        mem_gb = max(1, math.ceil(mem_b / 1e9))  # PBS takes whole units: round up
        select = f"select=1:ncpus={int(spec.cores)}:mem={mem_gb}GB"
        if gres:  # PBS names GPUs ngpus; gres "gpu:N" becomes ngpus=N
            select += f":ngpus={gres_gpus(gres)}"
        kw.update(queue=spec.partition, account=spec.account, resource_spec=select,
                  walltime=pbs_walltime(spec.walltime) if spec.walltime else None)
    kw["job_extra_directives"] = directives
    return {k: v for k, v in kw.items() if v is not None}


def _submit_command(kind: str) -> str:
    return "sbatch" if kind == "slurm" else "qsub"


def check_here(spec: ClusterSpec) -> None:
    """Refuse, with one line, what cannot work on this machine before a scheduler starts:
    the submit command missing (``sbatch not found``), an ``interface`` this machine does not
    have (the coordinator's Dask scheduler listens on it too)."""
    submit = _submit_command(spec.kind or "slurm")
    if shutil.which(submit) is None:
        raise InputError(f"--cluster {spec.kind}: {submit} not found on PATH (is this a "
                         f"{(spec.kind or 'slurm').upper()} login node?)")
    if spec.interface is not None:
        names = sorted(name for _, name in socket.if_nameindex())
        if spec.interface not in names:
            raise InputError(f"cluster.interface {spec.interface!r}: no such network "
                             f"interface on this machine (it has {', '.join(names)})")


def submit_check(cluster: Any, kind: str) -> None:
    """Ask SLURM whether it would take the worker job (``sbatch --test-only``): a refusal is a
    :class:`ClusterError` carrying the scheduler's own message, at once instead of a campaign
    waiting for workers that never come. PBS has no such dry run: nothing is checked."""
    if kind != "slurm":
        return
    with tempfile.NamedTemporaryFile("w", suffix=".sh", prefix="ecnas-job-") as f:
        f.write(str(cluster.job_script()))
        f.flush()
        try:
            proc = subprocess.run(["sbatch", "--test-only", f.name], capture_output=True,
                                  text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ClusterError(f"sbatch --test-only could not run: {exc}") from None
    if proc.returncode != 0:
        said = " ".join(ln.strip() for ln in (proc.stderr or proc.stdout).splitlines()
                        if ln.strip()) or f"exit status {proc.returncode}"
        raise ClusterError(f"SLURM refuses the worker job: {said[:500]}")


def cluster_class(kind: str | None) -> Any:
    """dask-jobqueue's ``SLURMCluster`` or ``PBSCluster``. Without dask-jobqueue, an
    :class:`~ecnas.errors.InputError`; Ctrl-C stays a KeyboardInterrupt although importing
    dask-jobqueue replaces the handler."""
    main = threading.current_thread() is threading.main_thread()
    sigint = signal.getsignal(signal.SIGINT) if main else None
    try:
        from dask_jobqueue import PBSCluster, SLURMCluster
    except ImportError as exc:
        raise InputError(f"--cluster {kind} needs dask-jobqueue (pip install "
                         f"'ecnas[jobqueue]'): {exc}") from None
    finally:
        # importing dask_jobqueue makes Ctrl-C a silent sys.exit() (status 0, as if the
        # campaign had finished): Ctrl-C stays KeyboardInterrupt, "interrupted", status 130
        if main and sigint is not None:
            signal.signal(signal.SIGINT, sigint)
    return SLURMCluster if kind == "slurm" else PBSCluster


#: job name -> what the scheduler said when it refused a submission (sbatch/qsub's stderr)
_REFUSED: dict[str, str] = {}


def refused(name: str) -> str | None:
    """What the scheduler said when it refused a worker job called ``name``, or None."""
    return _REFUSED.get(name)


def _said(exc: BaseException) -> str:
    text = str(exc)
    # dask-jobqueue's message: "... stdout:\n...\nstderr:\n<the scheduler's words>"
    tail = text.split("stderr:", 1)[-1] if "stderr:" in text else text
    return " ".join(ln.strip() for ln in tail.splitlines() if ln.strip())[:500] or "no message"


def _recording(job_cls: Any) -> Any:
    """``job_cls`` whose refused submissions are recorded (see :func:`refused`): the
    coordinator reports the scheduler's own words at once, instead of waiting for workers
    that never come."""

    class Recording(job_cls):
        async def _submit_job(self, script_filename: str) -> Any:
            try:
                return await super()._submit_job(script_filename)
            except RuntimeError as exc:
                _REFUSED.setdefault(str(self.job_name), _said(exc))
                raise

    Recording.__name__ = job_cls.__name__
    return Recording


class _RefusalLogFilter(logging.Filter):
    """Drops tornado's traceback of a refused submission: the coordinator reports the
    scheduler's words itself, in one line (:func:`refused`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for the log record of a submission the scheduler refused."""
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, RuntimeError)
                    and str(exc).startswith("Command exited with non-zero exit code")
                    and any(_said(exc) == said for said in _REFUSED.values()))


_FILTER = _RefusalLogFilter()


def make_cluster(spec: ClusterSpec, **kw: Any) -> Any:
    """A dask-jobqueue ``SLURMCluster`` or ``PBSCluster`` for ``spec.kind`` built with ``kw``
    (see :func:`cluster_kwargs`); what dask-jobqueue refuses is an InputError. A submission
    the scheduler refuses is recorded: :func:`refused`."""
    cls = cluster_class(spec.kind)
    _REFUSED.pop(str(kw.get("job_name")), None)
    logging.getLogger("tornado.application").addFilter(_FILTER)  # once: a set of filters
    try:
        return cls(job_cls=_recording(cls.job_cls), **kw)
    except ValueError as exc:  # what dask-jobqueue refuses of the arguments
        raise InputError(f"[cluster]: {str(exc).splitlines()[0][:300]}") from None


@dataclass
class _Signals:
    """SIGTERM and SIGHUP (a batch system or a closed login session ending the coordinator)
    become SystemExit, so the executor's close runs and cancels the jobs, as on Ctrl-C."""

    old: dict[int, Any] = field(default_factory=dict)

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread

        def stop(signum: int, _frame: Any) -> None:
            print(f"ecnas: {signal.Signals(signum).name} received: cancelling the worker "
                  "jobs", file=sys.stderr, flush=True)
            raise SystemExit(128 + signum)

        for sig in (signal.SIGTERM, signal.SIGHUP):
            self.old[sig] = signal.signal(sig, stop)

    def restore(self) -> None:
        for sig, handler in self.old.items():
            signal.signal(sig, handler)
        self.old.clear()


def job_script(spec: ClusterSpec, *, gpu: bool, store_path: str | Path,
               scheduler: str = "tcp://127.0.0.1:8786") -> str:
    """The batch script one worker job runs, built as the coordinator builds it but without
    starting a scheduler (``scheduler`` stands in for its address): for inspection and tests.
    Creates the job log folder, as the coordinator would."""
    kw = cluster_kwargs(spec, gpu=gpu, name=job_name(store_path),
                        log_directory=job_log_directory(spec, store_path))
    kw.pop("scheduler_options", None)  # the scheduler's, not the job's
    try:
        return str(cluster_class(spec.kind).job_cls(scheduler=scheduler, **kw).job_script())
    except ValueError as exc:
        raise InputError(f"[cluster]: {str(exc).splitlines()[0][:300]}") from None
