"""Campaigns on a batch cluster (SLURM, PBS) through dask-jobqueue.

The coordinator starts a ``dask_jobqueue.SLURMCluster`` (or ``PBSCluster``) whose scheduler
lives in the coordinator's own process, keeps ``--workers`` worker jobs alive (a job cancelled,
killed or out of walltime is replaced), sends runs through the Dask executor and cancels every
job it submitted when it ends: normally, on Ctrl-C, SIGTERM/SIGHUP or an error. Jobs carry a
name derived from the store, so a coordinator that was killed (SIGKILL: no chance to cancel)
leaves jobs the next coordinator on the same store finds and cancels before it submits its own.

:class:`ClusterSpec` is the ``[cluster]`` table of the campaign file; it does not change what a
campaign measures and stays out of the campaign's hash.
"""

from __future__ import annotations

import functools
import getpass
import hashlib
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecnas.errors import EcnasError, InputError

KINDS = ("slurm", "pbs")
CLUSTER_KEYS = ("kind", "cores", "memory", "gres", "partition", "account", "walltime",
                "extra_directives", "prologue", "interface", "python", "log_directory")
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


@dataclass(frozen=True)
class ClusterSpec:
    """What each worker job asks the batch scheduler for. ``gres`` defaults to ``gpu:1`` on
    GPU campaigns (one run, one board per worker) and to nothing on CPU campaigns."""

    kind: str | None = None  # slurm or pbs; None: the table does not say (--cluster does)
    cores: int = 1
    memory: str = "2GB"
    gres: str | None = None
    partition: str | None = None
    account: str | None = None
    walltime: str | None = None
    extra_directives: tuple[str, ...] = ()
    prologue: tuple[str, ...] = ()
    interface: str | None = None
    python: str | None = None
    log_directory: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data (part of :meth:`Campaign.to_dict`)."""
        d = dict(self.__dict__)
        d["extra_directives"], d["prologue"] = list(self.extra_directives), list(self.prologue)
        return d

    def with_kind(self, kind: str) -> ClusterSpec:
        """A copy with ``kind`` set (``--cluster`` over the ``[cluster]`` table); an unknown
        kind is an :class:`~ecnas.errors.InputError`."""
        if kind not in KINDS:
            raise InputError(f"--cluster {kind!r}: must be one of {', '.join(KINDS)}")
        return ClusterSpec(**{**self.__dict__, "kind": kind})


def parse_cluster(data: Any, error: Callable[[str, str], InputError],
                  base_dir: Path) -> ClusterSpec:
    """The ``[cluster]`` table, checked key by key (``error(key, reason)`` builds the error)."""
    if not isinstance(data, dict):
        return _raise(error("cluster", f"must be a table, got {type(data).__name__}"))
    unknown = sorted(set(data) - set(CLUSTER_KEYS))
    if unknown:
        raise error(f"cluster.{unknown[0]}", f"unknown key (allowed: {', '.join(CLUSTER_KEYS)})")
    out: dict[str, Any] = {}
    for key, value in data.items():
        where = f"cluster.{key}"
        if key == "kind":
            if value not in KINDS:
                raise error(where, f"must be one of {', '.join(KINDS)}, got {value!r}")
        elif key == "cores":
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise error(where, f"must be an integer ≥ 1, got {value!r}")
        elif key in ("extra_directives", "prologue"):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise error(where, f"must be a list of strings, got {value!r}")
            if any("\n" in v for v in value):
                raise error(where, "one line per entry (no newlines inside an entry)")
            value = tuple(value)
        else:
            if not isinstance(value, str) or not value.strip() or "\n" in value:
                raise error(where, f"must be a one-line non-empty string, got {value!r}")
            if key == "memory":
                _check_memory(value, functools.partial(error, where))
            if key == "log_directory" and not Path(value).is_absolute():
                value = str(base_dir / value)
        out[key] = value
    return ClusterSpec(**out)


def _raise(exc: Exception) -> Any:
    raise exc


def _check_memory(value: str, error: Callable[[str], InputError]) -> None:
    from dask.utils import parse_bytes

    try:
        if parse_bytes(value) <= 0:
            raise ValueError("not positive")
    except (ValueError, TypeError):
        raise error(f"must be an amount of memory such as \"4GB\", got {value!r}") from None


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
                   log_directory: str | None) -> dict[str, Any]:
    """The dask-jobqueue arguments for ``spec``: one Dask worker process per job with one
    thread (one run at a time), the job's ``cores`` CPUs for that run's threads."""
    gres = _gres(spec, gpu)
    threads = [f"export {v}={spec.cores}" for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                    "OPENBLAS_NUM_THREADS")]
    # Dask's worker polls NVML twice a second for its dashboard: reads on the very board the
    # run meters, and a failure there (an old driver) stops the worker before it joins
    threads.append("export DASK_DISTRIBUTED__DIAGNOSTICS__NVML=False")
    kw: dict[str, Any] = {
        "cores": 1, "processes": 1, "memory": spec.memory, "name": "ecnas",
        "job_name": name, "walltime": spec.walltime, "death_timeout": DEATH_TIMEOUT_S,
        "job_script_prologue": [*threads, *spec.prologue],
        "worker_extra_args": ["--resources", "GPU=1"] if gpu else [],
        "scheduler_options": {"dashboard_address": ":0"},
        "log_directory": log_directory, "interface": spec.interface,
        "python": spec.python,
    }
    directives = list(spec.extra_directives)
    if spec.kind == "slurm":
        kw.update(queue=spec.partition, account=spec.account, job_cpu=spec.cores)
        if gres:
            directives.append(f"--gres={gres}")
    else:
        from dask.utils import parse_bytes

        mem_gb = math.ceil(parse_bytes(spec.memory) / 1e9)  # PBS takes whole units: round up
        select = f"select=1:ncpus={spec.cores}:mem={mem_gb}GB"
        if gres:  # PBS names GPUs ngpus; gres "gpu:N" becomes ngpus=N
            select += f":ngpus={gres.rsplit(':', 1)[-1]}"
        kw.update(queue=spec.partition, account=spec.account, resource_spec=select)
    kw["job_extra_directives"] = directives
    return {k: v for k, v in kw.items() if v is not None}


def make_cluster(spec: ClusterSpec, **kw: Any) -> Any:
    """A dask-jobqueue ``SLURMCluster`` or ``PBSCluster`` for ``spec.kind`` built with ``kw``
    (see :func:`cluster_kwargs`). Without dask-jobqueue, an :class:`~ecnas.errors.InputError`;
    Ctrl-C stays a KeyboardInterrupt although importing dask-jobqueue replaces the handler."""
    main = threading.current_thread() is threading.main_thread()
    sigint = signal.getsignal(signal.SIGINT) if main else None
    try:
        from dask_jobqueue import PBSCluster, SLURMCluster
    except ImportError as exc:
        raise InputError(f"--cluster {spec.kind} needs dask-jobqueue (pip install "
                         f"'ecnas[jobqueue]'): {exc}") from None
    finally:
        # importing dask_jobqueue makes Ctrl-C a silent sys.exit() (status 0, as if the
        # campaign had finished): Ctrl-C stays KeyboardInterrupt, "interrupted", status 130
        if main and sigint is not None:
            signal.signal(signal.SIGINT, sigint)
    cls = SLURMCluster if spec.kind == "slurm" else PBSCluster
    return cls(**kw)


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


def job_script(spec: ClusterSpec, *, gpu: bool, store_path: str | Path) -> str:
    """The batch script one worker job runs (for ``--dry-run``-style inspection and tests)."""
    cluster = make_cluster(spec, **cluster_kwargs(spec, gpu=gpu, name=job_name(store_path),
                                                  log_directory=spec.log_directory))
    try:
        return str(cluster.job_script())
    finally:
        cluster.close()
