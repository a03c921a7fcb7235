"""Distributed training, each joule counted once: who meters what in a multi-process job, and
the job's total brought together at a window's end.

**Who meters what.** A process is a rank of a distributed job when the launcher says so
(torchrun/``torch.distributed``: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``; ``srun``:
``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID``) or a ``torch.distributed`` process
group is initialized. Then the default meters (:func:`rank_meters`) are:

* the rank's own GPU only (``torch.cuda.current_device()`` when CUDA is initialized, else
  ``LOCAL_RANK`` among the visible GPUs; a rank that sees one GPU meters that one), named
  ``gpu:<its index>`` as torch names it;
* the node's shared domains (RAPL packages and DRAM, AMD boards, plug-ins) on the node's local
  rank 0 only;
* the CPU-time estimate, where no RAPL is readable, on every rank: it counts the rank's own
  process tree, which no other rank counts;
* everything (the default meters), for a rank alone on its node (``LOCAL_WORLD_SIZE=1``, one
  ``srun`` task per node).

The node is real: the host name and ``/proc/sys/kernel/random/boot_id`` (``ECNAS_NODE_ID``
overrides it, to simulate several nodes on one machine in tests).

**Totals.** :func:`gather` (``measure(..., gather=True)`` calls it) is collective: every rank
calls it for the same window, in the same order. Each rank leaves its window's report in a
rendezvous (:mod:`ecnas.monitor.rendezvous`) and reads everyone's, with a deadline; the
:class:`JobReport` gives per-rank, per-node and whole-job energy with each GPU (by node and
UUID) and each node's shared domain counted once, lists the ranks that never reported (the
total is then NaN, never a silently smaller number) and refuses mismatched windows.

Importing this module is cheap (no torch): ``ecnas.monitor`` stays light.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

from ecnas.errors import InputError
from ecnas.monitor.rendezvous import RENDEZVOUS_ENV, Rendezvous, open_rendezvous
from ecnas.monitor.report import EnergyReport

#: overrides the node identity (hostname + boot id): for tests and simulations only
NODE_ID_ENV = "ECNAS_NODE_ID"
#: seconds a rank waits for the others at a window's end or a barrier
TIMEOUT_ENV = "ECNAS_GATHER_TIMEOUT"
DEFAULT_TIMEOUT_S = 60.0
BOOT_ID = "/proc/sys/kernel/random/boot_id"
#: exchange format version: a rank running another ecnas is told so, not misread
FORMAT = 1


class DistributedError(InputError):
    """Ranks that do not agree: a window one rank ended and another did not, or a rank that
    runs a different exchange format."""


@dataclass(frozen=True)
class Topology:
    """Where this process sits in a distributed job."""

    rank: int
    world_size: int
    local_rank: int | None  # None: the launcher did not say (the node's leader found at gather)
    local_world_size: int | None
    node: str  # hostname/boot id, or ECNAS_NODE_ID
    launcher: str  # "torchrun", "slurm" or "process group"

    @property
    def node_leader(self) -> bool:
        """Whether this rank reads the node's shared domains (local rank 0, or unknown)."""
        return self.local_rank in (0, None)

    def to_dict(self) -> dict[str, Any]:
        """The topology as plain data."""
        return {"rank": self.rank, "world_size": self.world_size,
                "local_rank": self.local_rank, "local_world_size": self.local_world_size,
                "node": self.node, "launcher": self.launcher}


def node_identity(environ: Mapping[str, str] | None = None) -> str:
    """This machine's identity: ``ECNAS_NODE_ID`` when set (tests, simulations), else the host
    name and the kernel's boot id (two containers on one host share the boot id and the
    energy counters; two hosts never share both)."""
    env = os.environ if environ is None else environ
    given = env.get(NODE_ID_ENV)
    if given:
        return given
    try:
        with open(BOOT_ID, encoding="ascii") as fh:
            boot = fh.read().strip()[:8]
    except OSError:
        boot = "noboot"
    return f"{socket.gethostname()}/{boot}"


def _int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise InputError(f"{name}={raw!r}: not an integer") from None


def topology(environ: Mapping[str, str] | None = None) -> Topology | None:
    """This process's place in a distributed job of two or more ranks; None for a single
    process (the usual case, decided from the environment alone)."""
    env = os.environ if environ is None else environ
    rank, world = _int(env, "RANK"), _int(env, "WORLD_SIZE")
    if rank is not None and world is not None:
        if world <= 1:
            return None
        local = _int(env, "LOCAL_RANK")
        launcher = "torchrun" if "TORCHELASTIC_RUN_ID" in env else "torch.distributed"
        return _checked(Topology(rank, world, local, _int(env, "LOCAL_WORLD_SIZE"),
                                 node_identity(env), launcher))
    # srun tasks; a batch script has SLURM_PROCID too, but no step: it is not a task
    if "SLURM_STEP_ID" in env and (_int(env, "SLURM_NTASKS") or 1) > 1:
        rank, world = _int(env, "SLURM_PROCID"), _int(env, "SLURM_NTASKS")
        if rank is not None and world is not None:
            per_node = env.get("SLURM_TASKS_PER_NODE", "")
            local_world = int(per_node.split("(")[0]) if per_node.split("(")[0].isdigit() else None
            return _checked(Topology(rank, world, _int(env, "SLURM_LOCALID"), local_world,
                                     node_identity(env), "slurm"))
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        world = dist.get_world_size()
        if world > 1:
            return _checked(Topology(dist.get_rank(), world, _int(env, "LOCAL_RANK"), None,
                                     node_identity(env), "process group"))
    return None


def _checked(topo: Topology) -> Topology:
    if not 0 <= topo.rank < topo.world_size:
        raise InputError(f"rank {topo.rank} is outside the world of {topo.world_size} ranks")
    if topo.local_rank is not None and topo.local_rank < 0:
        raise InputError(f"local rank {topo.local_rank} is negative")
    return topo


# -- who meters what -------------------------------------------------------------------------

def device_ordinal(topo: Topology, visible: Sequence[str] | None) -> int | None:
    """The index (as torch numbers ``cuda:<i>``) of the GPU this rank uses: torch's current
    device when CUDA is initialized, else ``LOCAL_RANK`` among the visible GPUs (the one GPU
    when a rank sees only one); None when the rank cannot tell (no local rank)."""
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None) if torch is not None else None
    if cuda is not None and cuda.is_initialized():
        return int(cuda.current_device())
    local = topo.local_rank
    if local is None:
        return None
    if visible is None or local < len(visible):
        return local
    if len(visible) == 1:
        return 0
    return local % len(visible) if visible else None


def rank_meters(topo: Topology, environ: Mapping[str, str] | None = None,
                ) -> tuple[list[Any], list[str]]:
    """The meters this rank reads (see the module doc), and notes on what it leaves to
    others. The readers are imported here, not at the top: ``ecnas.monitor`` stays light."""
    env = os.environ if environ is None else environ
    if topo.local_world_size == 1:  # alone on its node: everything there is its own
        return import_module("ecnas.meters.registry").default_meters(), []
    nvml = import_module("ecnas.meters.nvml")
    rapl_mod = import_module("ecnas.meters.rapl")
    estimate_mod = import_module("ecnas.meters.estimate")
    notes: list[str] = []
    meters: list[Any] = []
    visible = nvml.visible_devices(env)
    ordinal = device_ordinal(topo, visible)
    if ordinal is not None:
        entry = visible[ordinal] if visible else str(ordinal)
        gpu = nvml.NvmlMeter(devices=[entry], ordinals=[ordinal], environ=env,
                             background=nvml.background_setting(env))
        if gpu.status().usable:
            meters.append(gpu)
        else:
            gpu.close()
    rapl = rapl_mod.RaplMeter()
    rapl_status = rapl.status()
    if topo.node_leader:
        if rapl_status.usable:
            meters.append(rapl)
        amd = import_module("ecnas.meters.amd").AmdSmiMeter(
            domain_prefix="gpu-amd" if meters and meters[0].name == "nvml" else "gpu")
        if amd.status().usable:
            meters.append(amd)
        else:
            amd.close()
    else:
        notes.append(f"rank {topo.rank}: the node's CPU packages and DRAM are read by its "
                     "local rank 0")
    if not rapl_status.usable:
        # the estimate counts this process tree's CPU time: no other rank counts it
        meters.append(estimate_mod.EstimateMeter(reason=f"RAPL unavailable: "
                                                        f"{rapl_status.reason}"))
    return meters, notes


# -- the job's report ------------------------------------------------------------------------

@dataclass(frozen=True)
class JobDomain:
    """One domain of the job, counted once: where it was read and how much."""

    node: str
    rank: int
    domain: str
    component: str
    joules: float
    status: str  # measured or estimated
    meter: str
    scope: str  # "gpu" (one board), "node" (the node's shared domain), "process" (a rank's)

    def to_dict(self) -> dict[str, Any]:
        """The domain as plain data."""
        return {"node": self.node, "rank": self.rank, "domain": self.domain,
                "component": self.component, "joules": self.joules, "status": self.status,
                "meter": self.meter, "scope": self.scope}


@dataclass(frozen=True)
class RankEnergy:
    """What one rank reported (its counted share: a domain another rank read first is not in
    it)."""

    rank: int
    node: str
    local_rank: int | None
    energy_j: float
    duration_s: float
    estimated: bool
    domains: tuple[str, ...]


@dataclass(frozen=True)
class JobReport:
    """One window over the whole job: per rank, per node and in total, each domain once.

    ``energy_j`` is NaN while ranks are missing (``missing_ranks``): ``partial_energy_j``
    then holds what the ranks that reported add up to, never passed off as the total.
    """

    name: str
    world_size: int
    energy_j: float
    partial_energy_j: float
    ranks: tuple[RankEnergy, ...]
    nodes: Mapping[str, float]
    domains: tuple[JobDomain, ...]
    missing_ranks: tuple[int, ...] = ()
    estimated: bool = False
    duration_s: float = 0.0  # the longest rank's window
    skew_s: float = 0.0  # spread of the ranks' window ends (wall clocks; across nodes, NTP)
    warnings: tuple[str, ...] = ()
    local: EnergyReport | None = field(default=None, compare=False)

    @property
    def complete(self) -> bool:
        """Whether every rank reported."""
        return not self.missing_ranks

    def component_j(self, component: str) -> float:
        """The job's joules of one component (``gpu``/``cpu``/``dram``); NaN if none or while
        ranks are missing."""
        values = [d.joules for d in self.domains if d.component == component]
        if not values or self.missing_ranks:
            return math.nan
        return math.fsum(values)

    def to_dict(self) -> dict[str, Any]:
        """The job report as plain data (JSON: NaN written as null by ``to_json``)."""
        return {
            "name": self.name, "world_size": self.world_size, "energy_j": self.energy_j,
            "partial_energy_j": self.partial_energy_j, "complete": self.complete,
            "missing_ranks": list(self.missing_ranks), "estimated": self.estimated,
            "duration_s": self.duration_s, "skew_s": self.skew_s,
            "components": {c: self.component_j(c) for c in ("gpu", "cpu", "dram")},
            "nodes": dict(self.nodes),
            "ranks": [{"rank": r.rank, "node": r.node, "local_rank": r.local_rank,
                       "energy_j": r.energy_j, "duration_s": r.duration_s,
                       "estimated": r.estimated, "domains": list(r.domains)}
                      for r in self.ranks],
            "domains": [d.to_dict() for d in self.domains],
            "warnings": list(self.warnings),
        }

    def to_json(self, indent: int | None = 2) -> str:
        """:meth:`to_dict` as JSON, NaN and infinities written as null so any reader can
        parse it."""
        return json.dumps(_finite(self.to_dict()), indent=indent, allow_nan=False)

    def table(self) -> str:
        """One energy table for the window: a line per device and node domain (where it was
        read), the per-node sums and the job total, each labelled measured or estimated."""
        lines = [f"{self.name}: {self.world_size} ranks on {len(self.nodes)} node(s)"]
        lines.append(f"{'node':<24} {'rank':>4} {'domain':<20} {'joules':>12}  source")
        for d in self.domains:
            lines.append(f"{d.node:<24} {d.rank:>4} {d.domain:<20} {d.joules:>12.3f}  "
                         f"{d.status} by {d.meter}")
        for node, joules in self.nodes.items():
            lines.append(f"{node:<24} {'':>4} {'node total':<20} {joules:>12.3f}")
        statuses = {d.status for d in self.domains}
        kind = ("measured" if statuses <= {"measured"} else
                "estimated" if statuses == {"estimated"} else "estimated in part")
        if self.missing_ranks:
            lines.append(f"job total: unknown, ranks {_ranks(self.missing_ranks)} did not "
                         f"report (the others: {self.partial_energy_j:.3f} J, {kind})")
        else:
            lines.append(f"job total: {self.energy_j:.3f} J ({kind}), window "
                         f"{self.duration_s:.3f} s, ends {self.skew_s * 1000:.1f} ms apart")
        return "\n".join(lines + [f"warning: {w}" for w in self.warnings])


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _ranks(ranks: Sequence[int]) -> str:
    return ", ".join(map(str, ranks))


def rank_record(report: EnergyReport, topo: Topology, seq: int,
                uuids: Mapping[str, str]) -> dict[str, Any]:
    """What one rank leaves in the rendezvous for its window: the report's counted domains
    with what makes each one unique in the job (board UUID, node, rank)."""
    domains = []
    platform = any(d.component == "platform" for d in report.domains.values())
    skip = ("cpu", "dram") if platform else ("platform",)
    for name, d in report.domains.items():
        if d.component in skip:
            continue
        if d.component == "gpu":
            scope, key = "gpu", f"{topo.node}|gpu|{uuids.get(name, name)}"
        elif d.meter == "estimate":
            scope, key = "process", f"{topo.node}|rank{topo.rank}|{name}"
        else:
            scope, key = "node", f"{topo.node}|{name}"
        domains.append({"domain": name, "component": d.component, "joules": d.joules,
                        "status": d.status, "meter": d.meter, "scope": scope, "key": key})
    now = time.time()
    return {"format": FORMAT, "window": report.name, "seq": seq, **topo.to_dict(),
            "duration_s": report.duration_s, "end_wall": now, "estimated": report.estimated,
            "domains": domains}


def assemble(name: str, world_size: int, records: Mapping[int, Mapping[str, Any]],
             local: EnergyReport | None = None) -> JobReport:
    """The job's report from the ranks' records (rank → record; missing ranks absent): each
    domain key counted once, from the lowest rank that read it."""
    warnings: list[str] = []
    seen: dict[str, int] = {}
    domains: list[JobDomain] = []
    per_rank: dict[int, list[JobDomain]] = {}
    for rank in sorted(records):
        rec = records[rank]
        per_rank[rank] = []
        for d in rec["domains"]:
            first = seen.get(d["key"])
            if first is not None:
                warnings.append(f"{d['domain']} on {rec['node']} was read by ranks {first} and "
                                f"{rank}: counted once, from rank {first}")
                continue
            seen[d["key"]] = rank
            jd = JobDomain(rec["node"], rank, d["domain"], d["component"], float(d["joules"]),
                           d["status"], d["meter"], d["scope"])
            domains.append(jd)
            per_rank[rank].append(jd)
    missing = tuple(r for r in range(world_size) if r not in records)
    ranks = tuple(RankEnergy(r, records[r]["node"], records[r]["local_rank"],
                             math.fsum([d.joules for d in per_rank[r]]),
                             float(records[r]["duration_s"]), bool(records[r]["estimated"]),
                             tuple(d.domain for d in per_rank[r])) for r in sorted(records))
    nodes: dict[str, float] = {}
    for r in ranks:
        nodes[r.node] = nodes.get(r.node, 0.0) + r.energy_j
    leaders = {records[r]["node"] for r in records
               if any(d["scope"] == "node" for d in records[r]["domains"])}
    partial = math.fsum([d.joules for d in domains])
    if missing:
        warnings.insert(0, f"ranks {_ranks(missing)} of {world_size} did not report within the "
                           "timeout: the job total is unknown (partial_energy_j holds the "
                           "others')")
    ends = [float(rec["end_wall"]) for rec in records.values()]
    return JobReport(
        name=name, world_size=world_size, energy_j=math.nan if missing else partial,
        partial_energy_j=partial, ranks=ranks, nodes=nodes, domains=tuple(domains),
        missing_ranks=missing, estimated=any(d.status == "estimated" for d in domains),
        duration_s=max((r.duration_s for r in ranks), default=0.0),
        skew_s=(max(ends) - min(ends)) if ends else 0.0,
        warnings=tuple(warnings + [f"node {n}: no rank read its shared domains (CPU, DRAM)"
                                   for n in nodes if n not in leaders
                                   and any(d.scope == "node" for d in domains)]),
        local=local)


# -- bringing the ranks together -------------------------------------------------------------

def timeout_s(environ: Mapping[str, str] | None = None) -> float:
    """``ECNAS_GATHER_TIMEOUT`` in seconds (default 60)."""
    raw = (os.environ if environ is None else environ).get(TIMEOUT_ENV, "")
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.0 < value < math.inf:
        raise InputError(f"{TIMEOUT_ENV}={raw!r}: seconds, a positive number")
    return value


class Gatherer:
    """This process's side of the exchange: its rendezvous and how many windows and barriers
    it has ended (the sequence numbers every rank must agree on)."""

    def __init__(self, topo: Topology, rendezvous: Rendezvous) -> None:
        self.topo = topo
        self.rendezvous = rendezvous
        self.windows = 0
        self.barriers = 0
        self.spec: str | None = None  # the rendezvous asked for (None: found as documented)
        self._lock = threading.Lock()

    def gather(self, report: EnergyReport, uuids: Mapping[str, str],
               timeout: float) -> JobReport:
        """Publish this rank's record of ``report`` and assemble everyone's."""
        topo = self.topo
        with self._lock:
            seq = self.windows
            self.windows += 1
        record = rank_record(report, topo, seq, uuids)
        self.rendezvous.publish(f"w{seq}/{topo.rank}", json.dumps(record))
        got = self.rendezvous.collect([f"w{seq}/{r}" for r in range(topo.world_size)],
                                      timeout)
        records: dict[int, dict[str, Any]] = {}
        for key, text in got.items():
            rec = json.loads(text)
            if rec.get("format") != FORMAT:
                raise DistributedError(f"rank {key.rpartition('/')[2]} runs another ecnas "
                                       f"(exchange format {rec.get('format')!r}, here "
                                       f"{FORMAT}): use one version in every rank")
            if rec["window"] != report.name:
                raise DistributedError(
                    f"mismatched windows: rank {topo.rank} ended {report.name!r} as its "
                    f"distributed window #{seq + 1}, rank {rec['rank']} ended "
                    f"{rec['window']!r}: every rank must gather the same windows in the same "
                    "order")
            records[int(rec["rank"])] = rec
        return assemble(report.name, topo.world_size, records, local=report)

    def barrier(self, timeout: float) -> tuple[int, ...]:
        """Wait until every rank reached this barrier (or the deadline); the ranks that did
        not."""
        topo = self.topo
        with self._lock:
            seq = self.barriers
            self.barriers += 1
        self.rendezvous.publish(f"b{seq}/{topo.rank}", "1")
        keys = [f"b{seq}/{r}" for r in range(topo.world_size)]
        got = self.rendezvous.collect(keys, timeout)
        return tuple(r for r, k in enumerate(keys) if k not in got)


_GATHERER: Gatherer | None = None
_GATHERER_LOCK = threading.Lock()


def _gatherer(topo: Topology, rendezvous: str | None, timeout: float) -> Gatherer:
    global _GATHERER
    with _GATHERER_LOCK:
        g = _GATHERER
        spec = rendezvous if rendezvous is not None else os.environ.get(RENDEZVOUS_ENV)
        if g is None or g.topo != topo or g.spec != spec:
            g = _GATHERER = Gatherer(topo, open_rendezvous(topo.rank, topo.world_size,
                                                           spec=rendezvous,
                                                           timeout_s=timeout))
            g.spec = spec
        return g


def _forget_after_fork() -> None:
    global _GATHERER, _GATHERER_LOCK
    _GATHERER, _GATHERER_LOCK = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def gpu_uuids(monitor: Any) -> dict[str, str]:
    """domain → board UUID of the GPUs ``monitor`` reads (what tells boards apart in a job)."""
    out: dict[str, str] = {}
    if monitor is None:
        return out
    for status in monitor.statuses():
        for dev in status.devices:
            if dev.kind == "gpu" and dev.uuid:
                out[dev.domain] = dev.uuid
    return out


def placement_record(monitor: Any) -> dict[str, Any]:
    """What a run was metered on, for a campaign run's provenance: every GPU the Monitor reads
    (domain, UUID: a run with several GPUs lists each once), and the rank's place and what it
    left to other ranks when the run is one rank of a distributed job (else None)."""
    topo = getattr(monitor, "topology", None)
    return {"gpus": [{"domain": d, "uuid": u} for d, u in sorted(gpu_uuids(monitor).items())],
            "topology": topo.to_dict() if topo is not None else None,
            "left_to_other_ranks": list(getattr(monitor, "placement", []))}


def gather(report: EnergyReport, *, monitor: Any = None, timeout: float | None = None,
           rendezvous: str | None = None, topo: Topology | None = None) -> JobReport:
    """The job's report of the window ``report`` ended on this rank. Collective: every rank
    calls it for the same windows in the same order; each waits at most ``timeout`` seconds
    (``ECNAS_GATHER_TIMEOUT``, default 60) for the others. In a single process it is the
    window itself, as a job of one rank. ``monitor``: the Monitor that made the report (its
    GPUs' UUIDs tell boards apart). ``rendezvous``: a folder or ``tcp://HOST:PORT`` (default:
    ``ECNAS_RENDEZVOUS``, the process group's store, torchrun's store)."""
    topo = topo if topo is not None else topology()
    uuids = gpu_uuids(monitor)
    if topo is None:
        single = Topology(0, 1, 0, 1, node_identity(), "single process")
        return assemble(report.name, 1, {0: rank_record(report, single, 0, uuids)},
                        local=report)
    wait = timeout if timeout is not None else timeout_s()
    return _gatherer(topo, rendezvous, wait).gather(report, uuids, wait)


def barrier(*, timeout: float | None = None, rendezvous: str | None = None,
            topo: Topology | None = None) -> None:
    """Wait until every rank reached this point (opt-in, at window edges: the ranks' windows
    then start and end together); a no-op in a single process. Ranks still missing at the
    deadline: :class:`DistributedError`."""
    topo = topo if topo is not None else topology()
    if topo is None:
        return
    wait = timeout if timeout is not None else timeout_s()
    missing = _gatherer(topo, rendezvous, wait).barrier(wait)
    if missing:
        raise DistributedError(f"barrier: ranks {_ranks(missing)} of {topo.world_size} did "
                               f"not arrive within {wait:g} s")
