"""Each local worker's share of the machine: its CPU threads, the cores it runs on, its GPU.

Runs that execute side by side must not fight over cores: two PyTorch processes that each start
one thread per core on a 2-core machine oversubscribe it, their spinning OpenMP threads count as
CPU time (which the estimate meter and RAPL's socket share charge to the runs), and the same
epoch takes 0.1 s or 6 s depending on what the other run does. So every local worker slot gets
``cores // workers`` threads (intra-op and inter-op, with OMP/MKL/OpenBLAS told the same before
torch starts its pools) and, where the OS allows, CPU affinity to its own disjoint cores. A GPU
worker gets its GPU and at most :data:`GPU_WORKER_THREADS` CPU threads of its cores.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: CPU threads of a GPU worker at most: it feeds a GPU, the CPU mostly waits
GPU_WORKER_THREADS = 4
#: thread-count variables of the native libraries torch and numpy may load
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
              "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


@dataclass(frozen=True)
class WorkerShare:
    """What one local worker slot may use."""

    slot: int
    threads: int
    cpus: tuple[int, ...] | None  # CPU affinity; None where the OS cannot pin
    gpu: str | None  # CUDA_VISIBLE_DEVICES of the slot's runs; None on a CPU slot

    def to_dict(self) -> dict[str, Any]:
        """The share as plain data, as it travels in a task to the worker process."""
        return {"slot": self.slot, "threads": self.threads,
                "cpus": list(self.cpus) if self.cpus is not None else None, "gpu": self.gpu}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> WorkerShare | None:
        """The share a task carries (None stays None: no local share)."""
        if data is None:
            return None
        cpus = data.get("cpus")
        return cls(slot=int(data["slot"]), threads=int(data["threads"]),
                   cpus=tuple(cpus) if cpus is not None else None, gpu=data.get("gpu"))


def gpu_index(device: str) -> str | None:
    """``cuda:N`` → ``"N"`` (``cuda`` → ``"0"``); ``cpu`` → None."""
    if device == "cpu":
        return None
    return device.split(":", 1)[1] if ":" in device else "0"


def can_pin() -> bool:
    """Whether this OS lets a process set and read its CPU affinity (Linux does; macOS and
    Windows do not)."""
    return hasattr(os, "sched_setaffinity") and hasattr(os, "sched_getaffinity")


def machine_cpus() -> tuple[int, ...]:
    """The cores this process may run on (its affinity where the OS has one)."""
    if can_pin():
        return tuple(sorted(os.sched_getaffinity(0)))
    return tuple(range(os.cpu_count() or 1))


def plan_shares(workers: int, devices: Sequence[str], cpus: Sequence[int], *,
                pin: bool | None = None) -> tuple[WorkerShare, ...]:
    """Slot *i* runs on ``devices[i % len(devices)]`` with ``len(cpus) // workers`` disjoint
    cores (the remainder stays free for the coordinator). More workers than cores: one thread
    each, cores shared round-robin (:func:`oversubscription` says so)."""
    pin = can_pin() if pin is None else pin
    n = len(cpus)
    per = n // workers
    shares = []
    for i in range(workers):
        gpu = gpu_index(devices[i % len(devices)])
        mine = tuple(cpus[i * per:(i + 1) * per]) if per >= 1 else (cpus[i % n],)
        threads = len(mine) if gpu is None else min(len(mine), GPU_WORKER_THREADS)
        shares.append(WorkerShare(slot=i, threads=threads, cpus=mine if pin else None, gpu=gpu))
    return tuple(shares)


def oversubscription(workers: int, devices: Sequence[str], cpus: Sequence[int]) -> str | None:
    """Why ``workers`` local workers would oversubscribe the CPU, or None when they fit."""
    n = len(cpus)
    if workers <= n:
        return None
    on_cpu = sum(1 for i in range(workers) if devices[i % len(devices)] == "cpu")
    what = f"{on_cpu} of them training on the CPU" if on_cpu else "GPU workers feeding from it"
    return (f"{workers} local workers on {n} CPU core(s) ({what}): runs will share cores, so "
            "their times and energies depend on each other; use --workers "
            f"{n} or fewer for measurements that agree")


def pin(pid: int, share: WorkerShare) -> None:
    """From the coordinator, right after the worker process starts: its interpreter start-up
    and imports then already run on its own cores, not on the cores of a run being measured."""
    if share.cpus is not None and can_pin():
        with contextlib.suppress(OSError):  # gone already, or a core taken away: the worker
            os.sched_setaffinity(pid, share.cpus)  # pins itself again (apply_share)


def fair_threads(threads: int, cores: int, load1: float | None) -> int:
    """The threads a run should use given the machine's 1-minute load average ``load1`` (taken
    before the run starts, so it is the other processes' load): never more than the cores
    left idle, at least one, at most ``threads`` (the slot's share).

    Why: OpenMP's threads meet at a barrier every operation, so a step runs at the pace of its
    most descheduled thread. Beside other busy processes, asking for every core makes each
    step wait for a time slice on every core. Measured (issue 37.7, 2 cores, load 10–21, 20
    steps of a small conv net; benchmarks/threads_under_load.py): 2 threads 17.5 s alone,
    43 s beside 2 CPU-bound loops, 79 s beside 2 multi-threaded torch loops (spinning OpenMP);
    1 thread with a passive wait 1.5 s and 3.9 s."""
    if load1 is None or threads <= 1:
        return max(1, threads)
    idle = int(cores - load1 + 0.5)
    return max(1, min(threads, idle))


def _load1() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:  # not available (some containers, Windows)
        return None


def apply_share(share: WorkerShare | None) -> int | None:
    """In a fresh worker process, before torch starts its thread pools: the native libraries'
    thread counts and the process's CPU affinity. torch's own pools are sized by
    :func:`set_torch_threads` once torch is imported (now, if it already is). Returns the
    threads the run uses: the share's, fewer where other processes keep cores busy
    (:func:`fair_threads`); None without a share."""
    if share is None:
        return None
    cores = len(share.cpus) if share.cpus else len(machine_cpus())
    threads = fair_threads(share.threads, cores, _load1())
    for name in THREAD_ENV:
        os.environ[name] = str(threads)
    # OpenMP threads spin at every barrier by default: when anything else wants the same
    # cores, a thread spins out its time slice waiting for a descheduled sibling, and the
    # spinning counts as the run's CPU time. Measured on this 2-core machine under load 10,
    # 2 threads: 1.3-4 s a training step spinning, 0.2-0.5 s passive; 1 thread beside busy
    # processes 5.0 s spinning, 1.5 s passive (issue 37.7). The user's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if share.cpus is not None and can_pin():
        # a core taken away since the plan (cgroup change): run unpinned; observed() tells
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, share.cpus)
    if "torch" in sys.modules:
        set_torch_threads(threads)
    return threads


def set_torch_threads(threads: int) -> None:
    """torch's intra-op and inter-op pools to ``threads`` (inter-op only before its first use:
    a pool already running keeps its size, which :func:`observed` then reports)."""
    import torch

    torch.set_num_threads(threads)
    if torch.get_num_interop_threads() != threads:
        # a pool already started keeps its size; the provenance records the real one
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(threads)


def observed() -> dict[str, Any]:
    """What this process has now, for a run's provenance: torch's pool sizes (when torch is
    loaded), the native libraries' thread variables and the CPU affinity."""
    torch = sys.modules.get("torch")
    threads: dict[str, Any] = {name: os.environ.get(name)
                               for name in (*THREAD_ENV[:2], "OMP_WAIT_POLICY")}
    if torch is not None:
        threads["torch_intra_op"] = int(torch.get_num_threads())
        threads["torch_inter_op"] = int(torch.get_num_interop_threads())
    affinity = sorted(os.sched_getaffinity(0)) if can_pin() else None
    return {"threads": threads, "affinity": affinity}
