"""Where the ranks of a distributed job leave their window reports for each other: a
key-value exchange with a deadline, and the one way to pick it (:func:`open_rendezvous`).

Two kinds, one interface (``publish(key, text)``, ``collect(keys, timeout_s)``):

* :class:`StoreRendezvous` over a ``torch.distributed`` store: the initialized process group's
  own store, torchrun's agent store (``TORCHELASTIC_USE_AGENT_STORE=True``: reachable at
  ``MASTER_ADDR:MASTER_PORT`` without any process group), or ``tcp://HOST:PORT`` (rank 0
  serves it);
* :class:`DirectoryRendezvous`: JSON files in a folder every rank can reach (a shared
  filesystem across nodes), for jobs without torch (``srun`` tasks, ``ecnas measure``).

A store, not a collective, carries the reports: a collective on a rank that died either hangs
(NCCL) or fails without naming who is missing (gloo), while a store lets every rank wait with
its own deadline and then see exactly which keys never came (docs/distributed.md). Reports
travel as JSON text, never pickles. torch is used only where it is already imported or a
``tcp://`` rendezvous is asked for.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import sys
import time
from collections.abc import Mapping, Sequence
from importlib import import_module
from pathlib import Path
from typing import Any, Protocol

from ecnas.errors import InputError

#: the rendezvous a job without a process group opts into: a shared folder or tcp://HOST:PORT
RENDEZVOUS_ENV = "ECNAS_RENDEZVOUS"
#: names a job's exchange inside a shared rendezvous folder (default: the launcher's job id)
JOB_ID_ENV = "ECNAS_JOB_ID"
#: how often a waiting rank looks again for the keys it lacks
POLL_S = 0.005


class Rendezvous(Protocol):
    """A key-value exchange between the ranks of one job."""

    where: str

    def publish(self, key: str, text: str) -> None:
        """Leave ``text`` under ``key`` for the other ranks."""

    def collect(self, keys: Sequence[str], timeout_s: float) -> dict[str, str]:
        """The texts under ``keys`` that arrived before the deadline (absent: missing)."""


class StoreRendezvous:
    """The exchange over a ``torch.distributed`` Store (TCPStore, FileStore, a process group's
    store), under a prefix of its own."""

    def __init__(self, store: Any, prefix: str, where: str) -> None:
        self.store = store
        self.prefix = prefix
        self.where = where

    def publish(self, key: str, text: str) -> None:
        """``store.set`` under the prefix."""
        self.store.set(self.prefix + key, text)

    def collect(self, keys: Sequence[str], timeout_s: float) -> dict[str, str]:
        """Wait for every key until the deadline (``store.wait``), then take what is there."""
        full = [self.prefix + k for k in keys]
        # torch raises its own timeout types (DistStoreError …): someone is missing, and
        # the check below says who
        with contextlib.suppress(Exception):
            self.store.wait(full, datetime.timedelta(seconds=max(timeout_s, 0.001)))
        out = {}
        for key, name in zip(keys, full, strict=True):
            if self.store.check([name]):
                out[key] = _text(self.store.get(name))
        return out


class DirectoryRendezvous:
    """The exchange as files in a folder all ranks reach (``<folder>/<job id>/<key>.json``).

    Exchange files are transient messages between the ranks, not outputs of the user's: they
    are written atomically (a reader never sees half a file) but not recorded in the written
    ledger (docs/outputs.md)."""

    def __init__(self, folder: str | os.PathLike[str], job: str) -> None:
        self.root = Path(folder) / job
        self.where = f"folder {self.root}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"{RENDEZVOUS_ENV}={os.fsdecode(folder)}: cannot use it as the "
                             f"ranks' meeting folder: {exc.strerror or exc}") from None

    def _path(self, key: str) -> Path:
        return self.root / (key.replace("/", "_") + ".json")

    def publish(self, key: str, text: str) -> None:
        """Write ``<key>.json`` atomically (temporary file, then rename)."""
        target = self._path(key)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)

    def collect(self, keys: Sequence[str], timeout_s: float) -> dict[str, str]:
        """Poll for the keys' files until all are there or the deadline passed."""
        deadline = time.monotonic() + timeout_s
        out: dict[str, str] = {}
        while True:
            for key in keys:
                if key not in out:
                    try:
                        out[key] = self._path(key).read_text(encoding="utf-8")
                    except FileNotFoundError:
                        continue
            if len(out) == len(keys) or time.monotonic() >= deadline:
                return out
            time.sleep(POLL_S)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, (bytes, bytearray)) else str(value)


def job_id(environ: Mapping[str, str]) -> str:
    """The job's name inside a shared rendezvous folder: ``ECNAS_JOB_ID``, else SLURM's job and
    step, else torchrun's run id, else ``job`` (then use a fresh folder per job)."""
    if environ.get(JOB_ID_ENV):
        return environ[JOB_ID_ENV]
    if environ.get("SLURM_JOB_ID"):
        return f"slurm-{environ['SLURM_JOB_ID']}.{environ.get('SLURM_STEP_ID', 'batch')}"
    run = environ.get("TORCHELASTIC_RUN_ID", "")
    if run and run != "none":
        return f"torchrun-{run}.{environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    return "job"


def _torch_distributed(required: bool) -> Any:
    """``torch.distributed`` if torch is imported already (or ``required``), else None."""
    mod = sys.modules.get("torch.distributed")
    if mod is None and required:
        try:
            mod = import_module("torch.distributed")
        except ImportError:
            raise InputError(f"{RENDEZVOUS_ENV}=tcp://…: needs PyTorch (pip install torch); "
                             "a shared folder works without it") from None
    return mod


def open_rendezvous(rank: int, world_size: int, *, spec: str | None = None,
                    environ: Mapping[str, str] | None = None,
                    timeout_s: float = 60.0) -> Rendezvous:
    """The exchange this rank uses, in this order: ``spec`` or ``ECNAS_RENDEZVOUS`` (a folder,
    or ``tcp://HOST:PORT`` served by rank 0), the initialized process group's store,
    torchrun's agent store; else an :class:`~ecnas.errors.InputError` saying how to opt in."""
    env = os.environ if environ is None else environ
    spec = spec if spec is not None else env.get(RENDEZVOUS_ENV) or None
    prefix = "ecnas/energy/"
    if spec is not None:
        if spec.startswith("tcp://"):
            host, _, port_text = spec[len("tcp://"):].rpartition(":")
            if not host or not port_text.isdigit():
                raise InputError(f"{RENDEZVOUS_ENV}={spec!r}: use tcp://HOST:PORT")
            dist = _torch_distributed(required=True)
            store = dist.TCPStore(host, int(port_text), world_size, rank == 0,
                                  datetime.timedelta(seconds=timeout_s),
                                  wait_for_workers=False)
            return StoreRendezvous(store, prefix + job_id(env) + "/", f"tcp://{host}:{port_text}")
        return DirectoryRendezvous(spec.removeprefix("file://"), job_id(env))
    dist = _torch_distributed(required=False)
    if dist is not None and dist.is_available() and dist.is_initialized():
        # the process group's own store (what init_process_group rendezvoused through)
        store = dist.distributed_c10d._get_default_store()
        return StoreRendezvous(store, prefix, "the process group's store")
    if env.get("TORCHELASTIC_USE_AGENT_STORE") == "True" and env.get("MASTER_PORT"):
        dist = _torch_distributed(required=True)
        host, port = env.get("MASTER_ADDR", "localhost"), int(env["MASTER_PORT"])
        store = dist.TCPStore(host, port, None, False, datetime.timedelta(seconds=timeout_s))
        restart = env.get("TORCHELASTIC_RESTART_COUNT", "0")
        return StoreRendezvous(store, f"{prefix}{restart}/", f"torchrun's store {host}:{port}")
    raise InputError("distributed energy totals need the ranks to meet: initialize a "
                     "torch.distributed process group, launch with torchrun, or set "
                     f"{RENDEZVOUS_ENV} to a folder every rank can reach (or tcp://HOST:PORT)")
