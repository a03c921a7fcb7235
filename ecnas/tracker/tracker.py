"""``EnergyTracker``: energy and time of any epoch loop, at checkpoints, in table rows.

Framework-agnostic (no torch import)::

    from ecnas.tracker.tracker import EnergyTracker

    with EnergyTracker() as tracker:
        tracker.checkpoint(0, validation_accuracy=evaluate())   # before training
        for epoch in tracker.epochs(10):
            train_one_epoch()
            with tracker.evaluating():                          # kept out of training time
                acc = evaluate()
            tracker.checkpoint(epoch + 1, validation_accuracy=acc)
    rows = tracker.rows(arch_hash="…", budget_epochs=10, repeat=1)

One Monitor window spans the whole run; every checkpoint peeks it, so energies are cumulative
from :meth:`EnergyTracker.start`, over wall time (evaluation included, as EC-NAS records them).
``training_time_s`` excludes the time spent inside :meth:`EnergyTracker.evaluating`.

``tracker.warm_up(step, steps=3)`` before ``start()`` runs a few of the loop's own steps in a
window of their own, so that one-off start-up costs (thread pools, allocator growth, kernel
selection) are paid there and not inside the first metered epoch; what they cost is
``tracker.warmup`` (a :class:`WarmUp`), never part of the rows.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ecnas.errors import InputError
from ecnas.monitor.monitor import sync_cuda_devices
from ecnas.tracker.carbon import check_carbon_intensity

COMPONENTS = ("gpu", "cpu", "dram")
_counter = itertools.count()  # unique window names when trackers share a Monitor


@dataclass(frozen=True)
class Checkpoint:
    """Cumulative time and energy at one point of a run, with the metrics given there."""

    epoch: float
    training_time_s: float
    wall_time_s: float
    evaluation_time_s: float
    energy_j: float  # sum of the components present (the table contract)
    gpu_energy_j: float  # NaN where no meter covers the component
    cpu_energy_j: float
    dram_energy_j: float
    estimated: bool
    reasons: tuple[str, ...] = ()  # why (part of) the energy is estimated
    meters: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    metrics: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def to_dict(self) -> dict[str, Any]:
        """The checkpoint as plain data."""
        return {
            "epoch": self.epoch, "training_time_s": self.training_time_s,
            "wall_time_s": self.wall_time_s, "evaluation_time_s": self.evaluation_time_s,
            "energy_j": self.energy_j, "gpu_energy_j": self.gpu_energy_j,
            "cpu_energy_j": self.cpu_energy_j, "dram_energy_j": self.dram_energy_j,
            "estimated": self.estimated, "reasons": list(self.reasons),
            "meters": list(self.meters), "warnings": list(self.warnings),
            "metrics": dict(self.metrics),
        }


@dataclass(frozen=True)
class EpochMark:
    """The end of one epoch of :meth:`EnergyTracker.epochs`: what it cost, and the totals."""

    epoch: int  # epochs completed (1 after the first)
    duration_s: float  # wall seconds of this epoch (its evaluations included)
    energy_j: float  # this epoch's energy
    cumulative_energy_j: float
    training_time_s: float  # cumulative
    wall_time_s: float  # cumulative
    estimated: bool
    meters: tuple[str, ...] = ()


@dataclass(frozen=True)
class WarmUp:
    """Steps run before the metered part of a run: what they cost, kept out of its rows."""

    steps: int
    time_s: float  # wall seconds of the warm-up steps
    energy_j: float  # sum of the components present, as in the rows
    estimated: bool
    meters: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The warm-up as plain data (it goes into the run's provenance, not its rows)."""
        return {"steps": self.steps, "time_s": self.time_s, "energy_j": self.energy_j,
                "estimated": self.estimated, "meters": list(self.meters)}


def _components(report: Any) -> dict[str, float]:
    values = {f"{c}_energy_j": float(report.component_j(c)) for c in COMPONENTS}
    present = [v for v in values.values() if not math.isnan(v)]
    values["energy_j"] = math.fsum(present) if present else math.nan
    return values


class EnergyTracker:
    """Meters a training run: cumulative energy per component at checkpoints, training time
    kept apart from evaluation time, rows in the energy-table contract.

    ``monitor`` — an :class:`ecnas.monitor.Monitor` to open this run's window on (left open for
    its owner). ``meters`` — the tracker builds ``Monitor(meters)`` and closes it at
    :meth:`stop`. With neither, the run's window is on
    the process's shared default Monitor (:func:`ecnas.monitor.default_monitor`).
    ``carbon_intensity_g_per_kwh`` — the grid's carbon intensity, for the rows' CO2 columns
    (left missing without it: ecnas never assumes one).
    """

    def __init__(self, monitor: Any | None = None, *, meters: Sequence[Any] | None = None,
                 carbon_intensity_g_per_kwh: float | None = None) -> None:
        if monitor is not None and meters is not None:
            raise InputError("EnergyTracker: pass a monitor or meters, not both")
        self._monitor = monitor
        self._owns_monitor = monitor is None and meters is not None
        self._meters = meters
        self._window = f"ecnas-tracker-{next(_counter)}"
        self._t0: float | None = None
        self._t_stop: float | None = None
        self._eval_s = 0.0
        self._eval_depth = 0
        self._eval_t0 = 0.0
        self._checkpoints: list[Checkpoint] = []
        self._marks: list[EpochMark] = []
        self._overhead_s = 0.0  # time spent reading meters at epoch ends and checkpoints
        self._final: Checkpoint | None = None
        # for the rows' EC-NAS record columns (ecnas.tracker.rows.record_columns)
        self._intensity = check_carbon_intensity(carbon_intensity_g_per_kwh)
        self._started_unix = 0.0
        self._final_domains: Mapping[str, Any] = {}
        self._devices: tuple[Any, ...] = ()
        self._warmup: WarmUp | None = None

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def monitor(self) -> Any:
        """The Monitor this run's window is on: the one given, one over the given meters (made
        on first use), or the process's shared default Monitor."""
        if self._monitor is None:
            from ecnas.monitor import Monitor, default_monitor

            self._monitor = default_monitor() if self._meters is None else Monitor(self._meters)
        return self._monitor

    @property
    def started(self) -> bool:
        """Whether the run is being metered: started and not yet stopped."""
        return self._t0 is not None and self._t_stop is None

    def start(self) -> EnergyTracker:
        """Start the meters (if this tracker owns them) and the run's clock and window."""
        if self.started:
            return self
        if self._t0 is not None:
            raise InputError("EnergyTracker: a stopped tracker cannot be restarted; make a new one")
        monitor = self.monitor
        monitor.start()
        monitor.begin(self._window)
        self._t0 = time.monotonic()
        self._started_unix = time.time()
        return self

    def warm_up(self, step: Callable[[], object], steps: int = 3) -> WarmUp:
        """Before :meth:`start`: call ``step()`` ``steps`` times, metered in a window of its own
        (queued GPU work included), and keep what it cost in :attr:`warmup`. Use steps of the
        run's own shapes (model, batch, device) that leave the run's state as it was."""
        if self._t0 is not None:
            raise InputError("EnergyTracker.warm_up(): call it before start(), outside the "
                             "metered part")
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise InputError(f"warm_up(steps={steps!r}): need a positive integer")
        monitor = self.monitor
        monitor.start()
        window = f"{self._window}-warmup"
        monitor.begin(window)
        t0 = time.monotonic()
        try:
            for _ in range(steps):
                step()
            sync_cuda_devices()  # queued warm-up work belongs to the warm-up
        except BaseException:
            monitor.end(window)
            if self._owns_monitor:
                monitor.close()
            raise
        report = monitor.end(window)
        self._warmup = WarmUp(steps=steps, time_s=time.monotonic() - t0,
                              energy_j=_components(report)["energy_j"],
                              estimated=bool(report.estimated), meters=tuple(report.meters))
        return self._warmup

    @property
    def warmup(self) -> WarmUp | None:
        """What :meth:`warm_up` cost, or None when the run had no warm-up."""
        return self._warmup

    def stop(self) -> Checkpoint:
        """Close the window (and the Monitor this tracker owns); return the run's totals."""
        if not self.started:
            if self._final is not None:
                return self._final
            raise InputError("EnergyTracker.stop(): the tracker was never started")
        if self._eval_depth:
            self._close_eval(time.monotonic())
            self._eval_depth = 0
        report = self.monitor.end(self._window)
        self._t_stop = time.monotonic()
        self._final = self._make_checkpoint(math.nan, report, self._t_stop, {})
        self._final_domains = dict(report.domains)
        self._devices = tuple(d for s in self.monitor.statuses() for d in s.devices)
        if self._owns_monitor:
            self.monitor.close()
        return self._final

    def __enter__(self) -> EnergyTracker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.started:
            self.stop()

    # -- timing ----------------------------------------------------------------------------
    def _require_started(self, what: str) -> float:
        if not self.started:
            raise InputError(f"EnergyTracker.{what}: call start() (or use 'with tracker:') first")
        assert self._t0 is not None
        return self._t0

    def _close_eval(self, now: float) -> None:
        self._eval_s += now - self._eval_t0

    @contextmanager
    def evaluating(self) -> Iterator[None]:
        """Time inside this block counts as evaluation, not training (nesting is fine)."""
        self._require_started("evaluating()")
        if self._eval_depth == 0:
            sync_cuda_devices()  # queued training work belongs to training time
            self._eval_t0 = time.monotonic()
        self._eval_depth += 1
        try:
            yield
        finally:
            self._eval_depth -= 1
            if self._eval_depth == 0 and self.started:
                sync_cuda_devices()
                self._close_eval(time.monotonic())

    def _times(self, now: float) -> tuple[float, float, float]:
        assert self._t0 is not None
        wall = now - self._t0
        evaluation = self._eval_s + (now - self._eval_t0 if self._eval_depth else 0.0)
        return max(wall - evaluation, 0.0), wall, evaluation

    # -- epochs and checkpoints ------------------------------------------------------------
    def epochs(self, n: int, *, start: int = 0,
               on_epoch: Callable[[EpochMark], None] | None = None) -> Iterator[int]:
        """Yield epoch indices ``start … n-1``; after each, record an :class:`EpochMark`
        (passed to ``on_epoch`` when given). Starts the tracker if needed."""
        if not isinstance(n, int) or n < 0 or not isinstance(start, int) or start < 0:
            raise InputError(f"epochs(n={n!r}, start={start!r}): need non-negative integers")
        if not self.started:
            self.start()
        for epoch in range(start, n):
            t_begin = time.monotonic()
            before = self._marks[-1].cumulative_energy_j if self._marks else 0.0
            yield epoch
            mark = self._mark(epoch + 1, t_begin, before)
            if on_epoch is not None:
                on_epoch(mark)

    def _mark(self, epoch: int, t_begin: float, before: float) -> EpochMark:
        t_read = time.monotonic()
        report = self.monitor.peek(self._window)
        now = time.monotonic()
        self._overhead_s += now - t_read
        energy = _components(report)["energy_j"]
        training, wall, _ = self._times(now)
        mark = EpochMark(epoch=epoch, duration_s=now - t_begin, energy_j=energy - before,
                         cumulative_energy_j=energy, training_time_s=training,
                         wall_time_s=wall, estimated=report.estimated, meters=report.meters)
        self._marks.append(mark)
        return mark

    def checkpoint(self, epoch: float, **metrics: Any) -> Checkpoint:
        """Record cumulative time and energy now, at ``epoch`` (0 = before training), with
        metrics such as ``train_accuracy``, ``validation_accuracy``, ``test_accuracy``."""
        self._require_started("checkpoint()")
        try:
            epoch_f = float(epoch)
        except (TypeError, ValueError) as exc:
            raise InputError(f"checkpoint epoch must be a number, got {epoch!r}") from exc
        if not math.isfinite(epoch_f) or epoch_f < 0:
            raise InputError(f"checkpoint epoch must be finite and ≥ 0, got {epoch!r}")
        t_read = time.monotonic()
        report = self.monitor.peek(self._window)
        now = time.monotonic()
        self._overhead_s += now - t_read
        cp = self._make_checkpoint(epoch_f, report, now, metrics)
        self._checkpoints.append(cp)
        return cp

    def reading(self) -> Checkpoint:
        """Cumulative time and energy now, as a :class:`Checkpoint` at epoch NaN, without
        recording it (for loggers that report energy between checkpoints)."""
        self._require_started("reading()")
        t_read = time.monotonic()
        report = self.monitor.peek(self._window)
        now = time.monotonic()
        self._overhead_s += now - t_read
        return self._make_checkpoint(math.nan, report, now, {})

    def _make_checkpoint(self, epoch: float, report: Any, now: float,
                         metrics: Mapping[str, Any]) -> Checkpoint:
        training, wall, evaluation = self._times(now)
        return Checkpoint(epoch=epoch, training_time_s=training, wall_time_s=wall,
                          evaluation_time_s=evaluation, **_components(report),
                          estimated=bool(report.estimated), reasons=tuple(report.reasons),
                          meters=tuple(report.meters), warnings=tuple(report.warnings),
                          metrics=MappingProxyType(dict(metrics)))

    @property
    def checkpoints(self) -> list[Checkpoint]:
        """The checkpoints recorded so far, in order (a copy)."""
        return list(self._checkpoints)

    @property
    def epoch_marks(self) -> list[EpochMark]:
        """What each epoch of :meth:`epochs` cost, in order (a copy)."""
        return list(self._marks)

    @property
    def overhead_s(self) -> float:
        """Seconds spent reading the meters at epoch ends and checkpoints (the metering cost)."""
        return self._overhead_s

    # -- output ----------------------------------------------------------------------------
    def device_id(self, kind: str = "cpu") -> str:
        """Hardware profile id of the metered ``kind`` (``gpu``/``cpu``) device."""
        return metered_device_id(self.monitor, kind)

    def rows(self, **static: Any) -> list[dict[str, Any]]:
        """One dict per checkpoint: ``static`` columns (arch_hash, budget_epochs, repeat, …),
        then the checkpoint's times, energies and metrics (accuracies NaN when not given).
        ``device`` defaults to the metered device's profile id, ``source`` to ``measured``.
        EC-NAS's record columns follow (timestamps, per-device joules and power, CO2 with a
        carbon intensity; see :func:`ecnas.tracker.rows.record_columns`)."""
        out = []
        if "device" not in static and self._checkpoints:
            kinds = {d.kind for s in self.monitor.statuses() for d in s.devices}
            static["device"] = self.device_id("gpu" if "gpu" in kinds else "cpu")
        for cp in self._checkpoints:
            row: dict[str, Any] = dict(static)
            row.update({
                "epoch": cp.epoch, "training_time_s": cp.training_time_s,
                "wall_time_s": cp.wall_time_s, "energy_j": cp.energy_j,
                "gpu_energy_j": cp.gpu_energy_j, "cpu_energy_j": cp.cpu_energy_j,
                "dram_energy_j": cp.dram_energy_j, "estimated": cp.estimated,
            })
            row.setdefault("source", "measured")
            for name in ("train_accuracy", "validation_accuracy", "test_accuracy"):
                row[name] = float(cp.metrics.get(name, math.nan))
            for name, value in cp.metrics.items():
                row.setdefault(name, value)
            out.append(row)
        from ecnas.tracker.rows import record_columns

        records = record_columns(self._checkpoints, started_unix=self._started_unix,
                                 final=self._final, domains=self._final_domains,
                                 devices=self._devices,
                                 carbon_intensity_g_per_kwh=self._intensity)
        for row, record in zip(out, records, strict=True):
            for name, value in record.items():
                row.setdefault(name, value)
        return out


def metered_device_id(monitor: Any, kind: str = "cpu") -> str:
    """Profile id of the first ``kind`` device the Monitor's meters report; for a CPU with no
    CPU meter, the machine's CPU; an unknown GPU gets its slugged board name."""
    from ecnas.meters.base import DeviceInfo
    from ecnas.profiles import match_device

    devices = [d for s in monitor.statuses() for d in s.devices if d.kind == kind]
    if not devices:
        if kind != "cpu":
            raise InputError(f"no {kind} device is metered (meters: "
                             f"{', '.join(s.meter for s in monitor.statuses()) or 'none'})")
        from ecnas.meters.cpuinfo import cpu_model

        devices = [DeviceInfo(domain="cpu", kind="cpu", name=cpu_model())]
    match = match_device(devices[0])
    if match.profile is not None:
        return match.profile.id
    from ecnas.profiles.matching import slugify

    return slugify(devices[0].name)
