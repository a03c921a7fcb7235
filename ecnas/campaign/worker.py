"""What runs one campaign run, wherever it runs: a local worker process or a Dask worker.

:func:`execute_run` takes a :class:`~ecnas.campaign.tasks.RunTask` and returns a
:class:`~ecnas.campaign.tasks.RunResult` (both picklable), so the same function serves every
executor. It never touches the store: results go back to the coordinator, which alone writes.
A run function's exception becomes a result that is not ok, with the error; a crash of the whole process is detected by the executor.
"""

from __future__ import annotations

import os
import platform
import signal
import socket
import sys
import time
import traceback
import warnings
from typing import Any

from ecnas._version import __version__
from ecnas.campaign.socket_split import cpu_share, cpu_times, split_rows
from ecnas.campaign.tasks import RunFn, RunOutput, RunResult, RunTask
from ecnas.campaign.worker_slots import WorkerShare, apply_share, observed, set_torch_threads
from ecnas.monitor.distributed import placement_record

__all__ = ["RunFn", "child_main", "cluster_job", "execute_run", "train_run"]
#: meters whose CPU/DRAM reading covers the whole socket, not one process
SOCKET_METERS = ("rapl", "pyrapl")


def train_run(config: Any) -> dict[str, Any]:
    """The default run function: the real trainer, metered inside this process."""
    from ecnas.monitor import default_monitor
    from ecnas.trainer.train import run_training

    monitor = default_monitor()  # the process's one Monitor: a worker runs many trainings
    statuses = monitor.statuses()
    reasons = [f"{s.meter}: {s.reason}" for s in statuses if s.status.value == "estimated"]
    meters = [s.meter for s in statuses]
    # what the meters read, by name: the provenance of the run's hardware
    hardware = [{"meter": s.meter, "domain": d.domain, "kind": d.kind, "name": d.name}
                for s in statuses if s.usable for d in s.devices]
    run = run_training(config, monitor=monitor)
    return {"rows": run.rows, "meters": meters, "estimate_reasons": reasons,
            "hardware": hardware, "warmup": run.warmup.to_dict() if run.warmup else None,
            # every GPU of a multi-GPU run once, and the rank's place in a distributed job
            "placement": placement_record(monitor)}


def cluster_job(env: Any = None) -> dict[str, Any] | None:
    """The batch job this process runs in, as the scheduler told it (None outside one): job id,
    node, and on SLURM the GPUs (gres) the job was given. Read from the job's environment."""
    env = os.environ if env is None else env
    if env.get("SLURM_JOB_ID"):
        gpus = env.get("SLURM_GPUS_ON_NODE")
        return {"scheduler": "slurm", "job_id": env["SLURM_JOB_ID"],
                "job_name": env.get("SLURM_JOB_NAME"),
                "node": env.get("SLURMD_NODENAME") or socket.gethostname(),
                "gres": f"gpu:{gpus}" if gpus and gpus != "0" else None,
                "job_gpus": env.get("SLURM_JOB_GPUS"),
                "cpus": env.get("SLURM_CPUS_ON_NODE")}
    if env.get("PBS_JOBID"):
        return {"scheduler": "pbs", "job_id": env["PBS_JOBID"],
                "job_name": env.get("PBS_JOBNAME"), "node": socket.gethostname(),
                "gres": f"gpu:{env['PBS_NGPUS']}" if env.get("PBS_NGPUS") else None,
                "job_gpus": None, "cpus": env.get("NCPUS")}
    return None


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "ecnas": __version__}
    for name in ("torch", "numpy"):
        mod = sys.modules.get(name)  # only what the run loaded; importing torch here costs 2 s
        if mod is not None:
            out[name] = str(getattr(mod, "__version__", "?"))
    return out


def execute_run(task: RunTask) -> RunResult:
    """Run one task; see the module doc. The local worker slot's share (``task.share``) is
    applied first, before the run loads torch."""
    slot = WorkerShare.from_dict(task.share)
    threads = apply_share(slot)  # before torch loads: its pools start at the slot's size
    started = time.time()
    host, pid = socket.gethostname(), os.getpid()
    config = task.config
    fn: RunFn = task.run_fn or train_run
    try:
        if threads is not None and fn is train_run:  # the trainer loads torch: size it now
            set_torch_threads(threads)
        t0 = cpu_times() if task.split_socket else None
        out = RunOutput.of(fn(config))
        t1 = cpu_times() if task.split_socket else None
        # only socket-wide CPU meters (RAPL) see the other runs; the estimate meter already
        # counts this process's own CPU time
        socket_wide = any(m in SOCKET_METERS for m in out.meters)
        share = cpu_share(t0, t1) if t0 and t1 and socket_wide else 1.0
        rows = split_rows(list(out.rows), share)
    except BaseException as exc:  # noqa: BLE001 - any failure of the run is reported, not raised
        if isinstance(exc, KeyboardInterrupt):
            raise
        tb = traceback.extract_tb(exc.__traceback__)
        at = f" at {tb[-1].filename}:{tb[-1].lineno}" if tb else ""
        return RunResult.failed(task, f"{type(exc).__name__}: {exc}{at}", host=host, pid=pid)
    provenance = {
        "run_key": task.run_key, "attempt": task.attempt, "host": host, "pid": pid,
        "campaign_hash": task.campaign_hash, "started": started,
        "finished": time.time(), "torch_device": config.device, "devices": list(out.hardware),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        # on a batch cluster: which job on which node ran it, with which GPUs
        "cluster_job": cluster_job(),
        "matched_profiles": sorted({str(r.get("device")) for r in rows}),
        "meters": list(out.meters), "estimate_reasons": list(out.estimate_reasons),
        "cpu_share": share, "software": _versions(), "platform": platform.platform(),
        "run_fn": f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', '?')}",
        # what the run had (threads, affinity: read back, not assumed), what its slot was
        # given (None: inline or on Dask, where the worker's own settings hold), its warm-up
        **observed(), "share": slot.to_dict() if slot is not None else None,
        # the threads the run used: the share's, fewer beside busy processes (fair_threads)
        "threads_used": threads,
        "warmup": out.warmup, "placement": out.placement,
    }
    return RunResult(run_key=task.run_key, attempt=task.attempt, ok=True, rows=tuple(rows),
                     provenance=provenance, host=host, pid=pid)


def child_main(task: RunTask, conn: Any, coordinator_pid: int | None = None) -> None:
    """Entry point of a local worker process: pin the GPU, run, send the result, exit."""
    _die_with_parent()
    # the coordinator may have died while this process was still starting up, before the
    # death signal was armed: then nobody waits for this run
    if coordinator_pid is not None and os.getppid() != coordinator_pid:
        conn.close()
        os._exit(0)
    # Ctrl-C reaches the whole process group: the coordinator alone handles it (and kills the
    # runs), so a run does not print its own KeyboardInterrupt traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # started with it ignored: see executors
    if task.gpu is not None:  # before torch is imported, so the run sees only its GPU
        os.environ["CUDA_VISIBLE_DEVICES"] = str(task.gpu)
    result = execute_run(task)
    try:
        conn.send(result)
    except (BrokenPipeError, EOFError, OSError):
        pass  # the coordinator is gone (killed): the run is redone on resume
    finally:
        conn.close()


def _die_with_parent() -> None:
    """Linux: SIGKILL this run when the coordinator dies (kill -9 included), so an orphaned run
    does not keep burning the machine its replacement measures on. Elsewhere: no-op."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    PR_SET_PDEATHSIG = 1
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        warnings.warn(f"prctl(PR_SET_PDEATHSIG) failed (errno {ctypes.get_errno()}): this run "
                      "outlives a killed coordinator", RuntimeWarning, stacklevel=2)
