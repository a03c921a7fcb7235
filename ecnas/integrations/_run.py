"""What the Lightning and Hugging Face callbacks share: one :class:`EnergyTracker` per
training run, the metric mapping, and the run's static table columns.

No framework is imported here; the callbacks translate their framework's hooks into
``start`` / ``begin_eval`` / ``end_eval`` / ``checkpoint`` / ``stop``.

In a distributed job (:mod:`ecnas.monitor.distributed`) every rank meters what it owns (its
GPU; the node's CPU and DRAM on local rank 0) and each checkpoint is gathered across the
ranks (every rank reaches every checkpoint: epoch ends are collective in DDP): the rows hold
the job's totals, with per-node and per-GPU columns (``node<k>_energy_j``,
``node<k>_gpu<i>_energy_j``; the nodes' identities in the table's metadata).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any

from ecnas.errors import InputError
from ecnas.monitor import distributed
from ecnas.tracker.tracker import COMPONENTS, Checkpoint, EnergyTracker

#: framework metric name → contract column, used when ``metric_map`` is not given
DEFAULT_METRIC_MAP: Mapping[str, str] = {
    # PyTorch Lightning habits (whatever the module logs with self.log)
    "train_acc": "train_accuracy", "val_acc": "validation_accuracy",
    "valid_acc": "validation_accuracy", "val_accuracy": "validation_accuracy",
    "test_acc": "test_accuracy",
    # Hugging Face Trainer prefixes compute_metrics' keys with "eval_"
    "eval_accuracy": "validation_accuracy", "eval_acc": "validation_accuracy",
    # the contract's own names map onto themselves
    "train_accuracy": "train_accuracy", "validation_accuracy": "validation_accuracy",
    "test_accuracy": "test_accuracy",
}
ACCURACY_COLUMNS = ("train_accuracy", "validation_accuracy", "test_accuracy")
#: metric names never copied into rows: they would shadow the contract's own columns
_SKIPPED = {"epoch", "step", "global_step"}


def _scalar(value: Any) -> float | None:
    """A float for Python numbers and one-element tensors/arrays; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    numel = getattr(value, "numel", None) or getattr(value, "size", None)
    count = numel() if callable(numel) else numel
    if count == 1 and hasattr(value, "item"):
        item = value.item()
        return float(item) if isinstance(item, (int, float)) and not isinstance(item, bool) else None
    return None


def map_metrics(raw: Mapping[str, Any], metric_map: Mapping[str, str],
                keep_other: bool) -> dict[str, float]:
    """Framework metrics → checkpoint metrics: mapped names become contract columns (an
    accuracy must be a fraction in [0, 1]); other numeric scalars keep their names."""
    out: dict[str, float] = {}
    for name, value in raw.items():
        target = metric_map.get(name)
        number = _scalar(value)
        if target is not None:
            if number is None:
                raise InputError(f"metric {name!r} (mapped to {target}) is not a number: "
                                 f"{value!r}")
            if target in ACCURACY_COLUMNS and not (0.0 <= number <= 1.0 or math.isnan(number)):
                raise InputError(f"metric {name!r}={number} (mapped to {target}) is not a "
                                 "fraction in [0, 1]: log accuracy as a fraction, or leave "
                                 "it out of metric_map")
            out[target] = number
        elif keep_other and number is not None and name not in _SKIPPED:
            out.setdefault(name, number)
    return out


#: prefix of the energy scalars the callbacks log through their framework
LOG_PREFIX = "energy/"


def check_prefix(prefix: Any) -> str:
    """The logged names' prefix: non-empty, since it is also how rows tell them apart."""
    if not isinstance(prefix, str) or not prefix:
        raise InputError(f"log_prefix {prefix!r}: use a non-empty string such as 'energy/'")
    return prefix


def energy_scalars(cp: Checkpoint, since: Checkpoint | None, prefix: str = LOG_PREFIX,
                   suffix: str = "") -> dict[str, float]:
    """A checkpoint (or reading) as loggable scalars: cumulative energy in joules (total and
    each metered component), mean power in watts since ``since`` (the run's start when None),
    and ``estimated`` (1.0 when any part of the energy is estimated, 0.0 when all measured)."""
    out = {"energy_j": cp.energy_j}
    for c in COMPONENTS:
        out[f"{c}_energy_j"] = getattr(cp, f"{c}_energy_j")
    e0, t0 = (since.energy_j, since.wall_time_s) if since is not None else (0.0, 0.0)
    if cp.wall_time_s > t0:
        out["power_w"] = (cp.energy_j - e0) / (cp.wall_time_s - t0)
    out["estimated"] = 1.0 if cp.estimated else 0.0
    # NaN marks a component no meter covers: left out, as loggers would plot it as a gap
    return {f"{prefix}{k}{suffix}": v for k, v in out.items() if math.isfinite(v)}


def spec_columns(spec: Any = None, matrix: str | None = None,
                 ops: str | None = None) -> dict[str, str]:
    """``arch_hash``/``matrix``/``ops`` for a NAS-Bench-101 cell, or empty strings for a model
    that is not one (the columns stay present so the table keeps the contract's shape)."""
    if spec is None and matrix is None and ops is None:
        return {"arch_hash": "", "matrix": "", "ops": ""}
    if spec is None:
        if matrix is None or ops is None:
            raise InputError("give both matrix= and ops= (or spec=) for a NAS-Bench-101 cell")
        from ecnas.space import ModelSpec

        spec = ModelSpec(matrix, ops)
    return {"arch_hash": spec.hash(), "matrix": spec.matrix_str, "ops": spec.ops_str}


def count_trainable(model: Any) -> int | None:
    """Trainable parameters of a torch module; None when ``model`` is not one."""
    params = getattr(model, "parameters", None)
    if not callable(params):
        return None
    return int(sum(p.numel() for p in params() if getattr(p, "requires_grad", False)))


class TrackedRun:
    """One training run metered by an :class:`EnergyTracker`, driven by framework hooks."""

    def __init__(self, *, metric_map: Mapping[str, str] | None, keep_other_metrics: bool,
                 monitor: Any | None, meters: Sequence[Any] | None,
                 static: Mapping[str, Any], producer: str) -> None:
        self.producer = producer
        self.metric_map = dict(DEFAULT_METRIC_MAP if metric_map is None else metric_map)
        bad = {k: v for k, v in self.metric_map.items() if not isinstance(v, str) or not v}
        if bad:
            raise InputError(f"metric_map: targets must be column names, got {bad!r}")
        self.keep_other_metrics = keep_other_metrics
        self._monitor = monitor
        self._meters = meters
        self.static = dict(static)
        self.tracker: EnergyTracker | None = None
        self._eval: AbstractContextManager[None] | None = None
        self._device: str | None = None
        self._reasons: tuple[str, ...] = ()
        self._meter_names: tuple[str, ...] = ()
        self.epochs_done = 0
        self._logged: dict[str, Checkpoint] = {}  # last logged reading per kind (epoch, step)
        self.topology: distributed.Topology | None = None  # set at start in a distributed job
        self.jobs: list[distributed.JobReport] = []  # one per checkpoint, when distributed

    # -- hooks -----------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        """Whether metering has started (on this rank: the meters run on rank 0 only)."""
        return self.tracker is not None and self.tracker.started

    def start(self, **defaults: Any) -> None:
        """Start metering; ``defaults`` fill static columns the user did not give."""
        for key, value in defaults.items():
            if value is not None:
                self.static.setdefault(key, value)
        if self.tracker is not None:
            raise InputError("this energy callback already metered a run; make a new one per "
                             "run (rows are per run)")
        self.topology = distributed.topology()
        self.tracker = EnergyTracker(self._monitor, meters=self._meters).start()

    def _capture(self) -> None:
        """Device, meters and reasons, read while the meters run (a closed Monitor no longer
        knows what it metered); done at stop, outside every checkpoint's time."""
        if self._device is not None or not self.started:
            return
        assert self.tracker is not None
        statuses = self.tracker.monitor.statuses()
        kinds = {d.kind for s in statuses for d in s.devices}
        self._device = self.tracker.device_id("gpu" if "gpu" in kinds else "cpu")
        self._meter_names = tuple(s.meter for s in statuses)
        self._reasons = tuple(f"{s.meter}: {s.reason}" for s in statuses
                              if s.status.value == "estimated")

    @property
    def evaluating(self) -> bool:
        """Whether an evaluation interval is open."""
        return self._eval is not None

    def begin_eval(self) -> None:
        """Open an evaluation interval: time from here to :meth:`end_eval` counts as evaluation,
        not training. Does nothing when not metering or already open."""
        if self.started and self._eval is None:
            assert self.tracker is not None
            self._eval = self.tracker.evaluating()
            self._eval.__enter__()

    def end_eval(self) -> None:
        """Close the evaluation interval :meth:`begin_eval` opened (nothing when none is
        open)."""
        if self._eval is not None:
            cm, self._eval = self._eval, None
            cm.__exit__(None, None, None)

    def checkpoint(self, epoch: float, raw_metrics: Mapping[str, Any]) -> Checkpoint | None:
        """Record a checkpoint at ``epoch`` with the framework's metrics mapped onto table
        columns; None when this rank does not meter."""
        if not self.started:
            return None
        assert self.tracker is not None
        metrics = map_metrics(raw_metrics, self.metric_map, self.keep_other_metrics)
        cp = self.tracker.checkpoint(epoch, **metrics)
        self.epochs_done = max(self.epochs_done, math.ceil(epoch))
        if self.topology is not None:
            cp = self._job_checkpoint(cp)
        return cp

    def _job_checkpoint(self, cp: Checkpoint) -> Checkpoint:
        """``cp`` with the job's totals: this rank's cumulative report gathered with every
        other rank's (collective; each rank's own joules stay in ``self.jobs``)."""
        job = self._gather_now("checkpoint")
        self.jobs.append(job)
        return self._replace_checkpoint(cp, self._job_totals(cp, job))

    def _gather_now(self, what: str) -> distributed.JobReport:
        """The run's cumulative window so far, gathered across the ranks (collective)."""
        assert self.tracker is not None
        monitor = self.tracker.monitor
        report = monitor.peek(self.tracker._window)  # the run's cumulative window
        return distributed.gather(replace(report, name=f"{self.producer} {what}"),
                                  monitor=monitor, topo=self.topology)

    @staticmethod
    def _job_totals(cp: Checkpoint, job: distributed.JobReport) -> Checkpoint:
        """``cp`` with the job's energy in place of this rank's."""
        return replace(
            cp, energy_j=job.energy_j, gpu_energy_j=job.component_j("gpu"),
            cpu_energy_j=job.component_j("cpu"), dram_energy_j=job.component_j("dram"),
            estimated=job.estimated or cp.estimated,
            warnings=tuple(dict.fromkeys(cp.warnings + job.warnings)))

    def _replace_checkpoint(self, old: Checkpoint, new: Checkpoint) -> Checkpoint:
        """Put the job's checkpoint where the tracker keeps this rank's."""
        assert self.tracker is not None
        kept = self.tracker._checkpoints
        for k in range(len(kept) - 1, -1, -1):
            if kept[k] is old:
                kept[k] = new
                break
        return new

    def stop(self) -> None:
        """Close any open evaluation, note the device, meters and reasons, and stop the meters;
        the checkpoints stay readable."""
        if self.started:
            assert self.tracker is not None
            self.end_eval()
            self._capture()
            self.tracker.stop()

    # -- logging through the framework -----------------------------------------------------
    def log_scalars(self, kind: str, cp: Checkpoint | None = None, prefix: str = LOG_PREFIX,
                    suffix: str = "") -> dict[str, float]:
        """Energy scalars at ``cp`` (default: a reading now), power over the interval since the
        last ``kind`` log; empty when the run is not metered (not started, or another rank)."""
        if not self.started:
            return {}
        assert self.tracker is not None
        if cp is None:
            cp = self.tracker.reading()
            if self.topology is not None:  # every rank logs at the same points: gather
                cp = self._job_totals(cp, self._gather_now("reading"))
        out = energy_scalars(cp, self._logged.get(kind), prefix, suffix)
        self._logged[kind] = cp
        return out

    # -- results ---------------------------------------------------------------------------
    @property
    def checkpoints(self) -> list[Checkpoint]:
        """The checkpoints so far (empty before the run started)."""
        return self.tracker.checkpoints if self.tracker is not None else []

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why the energy is estimated (meters that could not measure), empty when measured."""
        self._capture()
        return self._reasons

    def rows(self, **static: Any) -> list[dict[str, Any]]:
        """One energy-table row per checkpoint: the run's static columns, then ``static`` over
        them (``matrix`` + ``ops`` fill the hash). Before a run started, an
        :class:`~ecnas.errors.InputError`."""
        if self.tracker is None:
            raise InputError("no rows yet: the energy callback has not seen a training run "
                             "start (pass it in the trainer's callbacks and call fit/train)")
        self._capture()
        columns: dict[str, Any] = {"arch_hash": "", "matrix": "", "ops": "",
                                   "budget_epochs": self.epochs_done, "repeat": 1,
                                   "device": self._device, "flops": math.nan}
        columns.update(self.static)
        columns.update(static)
        if {"matrix", "ops"} & set(static) and "arch_hash" not in static:
            columns.update(spec_columns(matrix=columns["matrix"], ops=columns["ops"]))
        if columns.get("device") is None:
            columns.pop("device")  # the tracker finds it
        rows = self.tracker.rows(**columns)
        if self.jobs and len(self.jobs) == len(rows):
            nodes = self.nodes()
            for row, job in zip(rows, self.jobs, strict=True):
                row.update(job_columns(job, nodes))
        return rows

    def nodes(self) -> list[str]:
        """The job's nodes in the order of their first rank (``node<k>`` in the columns)."""
        order: dict[str, None] = {}
        for job in self.jobs:
            for r in job.ranks:
                order.setdefault(r.node, None)
        return list(order)

    def table(self, **static: Any) -> Any:
        """The rows as a validated pandas DataFrame (``ecnas.tables.check_schema``), with the
        meters and the reasons for estimating in its metadata."""
        from ecnas.tables import check_schema, set_metadata
        from ecnas.tracker.rows import to_frame

        df = check_schema(to_frame(self.rows(**static)), compute_hash=False)
        job: dict[str, Any] = {}
        if self.jobs:
            last = self.jobs[-1]
            job = {"distributed": {"world_size": last.world_size, "nodes": self.nodes(),
                                   "missing_ranks": list(last.missing_ranks)}}
        return set_metadata(df, {**job, "producer": self.producer,
                                 "meters": list(self._meter_names),
                                 "estimated_because": list(self._reasons),
                                 "energy_note": "energy_j is cumulative over wall time, "
                                                "evaluations included"})


def job_columns(job: distributed.JobReport, nodes: Sequence[str]) -> dict[str, float]:
    """Per-node and per-GPU columns of one checkpoint: ``node<k>_energy_j`` and
    ``node<k>_gpu<i>_energy_j`` (k: the node's place in ``nodes``), NaN for a node whose ranks
    did not report."""
    out: dict[str, float] = {}
    for k, node in enumerate(nodes):
        out[f"node{k}_energy_j"] = float(job.nodes.get(node, math.nan))
    for d in job.domains:
        if d.component == "gpu" and d.node in nodes:
            out[f"node{nodes.index(d.node)}_{d.domain.replace(':', '')}_energy_j"] = d.joules
    return out


class RunResults:
    """What both framework callbacks expose after training (they hold a :class:`TrackedRun`
    as ``self._run``)."""

    _run: TrackedRun

    def rows(self, **static: Any) -> list[dict[str, Any]]:
        """One dict per checkpoint in the energy-table contract; ``static`` overrides columns."""
        return self._run.rows(**static)

    def table(self, **static: Any) -> Any:
        """The rows as a pandas DataFrame checked by ``ecnas.tables.check_schema``."""
        return self._run.table(**static)

    @property
    def checkpoints(self) -> list[Checkpoint]:
        """The checkpoints so far, in order (empty before training started)."""
        return self._run.checkpoints

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why the energy is estimated (empty when every meter measured)."""
        return self._run.reasons

    @property
    def tracker(self) -> EnergyTracker | None:
        """The run's :class:`~ecnas.tracker.tracker.EnergyTracker` (None before training
        started, and on ranks other than 0)."""
        return self._run.tracker

    @property
    def energy_j(self) -> float:
        """Cumulative energy at the last checkpoint (NaN before the first)."""
        cps = self._run.checkpoints
        return cps[-1].energy_j if cps else math.nan
