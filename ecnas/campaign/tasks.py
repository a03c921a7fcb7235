"""The typed hand-offs of a campaign run: the coordinator sends a :class:`RunTask`, the run
function returns a :class:`RunOutput`, the worker hands back a :class:`RunResult`, which the
store keeps (rows and provenance as JSON) and the table is made from.

Frozen dataclasses, no torch: a task travels to a spawned process or a Dask worker by pickle,
a result comes back the same way; :meth:`RunResult.to_dict`/:meth:`RunResult.from_dict` are
its plain-data form (JSON-able).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ecnas.errors import InputError
from ecnas.trainer.config import TrainConfig

#: run_fn(config: TrainConfig) -> rows, or {"rows": rows, "meters": [...],
#: "estimate_reasons": [...], "hardware": [{"meter", "domain", "kind", "name"}, ...],
#: "warmup": {...}}: read by :meth:`RunOutput.of`
RunFn = Callable[[Any], Any]


@dataclass(frozen=True)
class RunTask:
    """One attempt of one run, as the coordinator hands it to an executor.

    ``gpu``: the ``CUDA_VISIBLE_DEVICES`` value a local worker process sets before torch loads
    (None: leave it); ``split_socket``: runs share a CPU socket, so a socket-wide CPU meter's
    joules are split by process CPU time; ``run_fn``: what the run does (None: the metered
    trainer); ``share``: the local worker slot's :class:`~ecnas.campaign.worker_slots.WorkerShare`
    as a dict (None: inline or on Dask, where the worker's own settings hold)."""

    run_key: str
    attempt: int
    config: TrainConfig
    campaign_hash: str
    gpu: str | int | None = None
    split_socket: bool = False
    run_fn: RunFn | None = None
    share: Mapping[str, Any] | None = None

    def placed(self, device: str, **changes: Any) -> RunTask:
        """This task trained on ``device`` (the config's ``device``), with other fields
        changed as given (``gpu``, ``share`` …): what an executor sends where it runs it."""
        return dataclasses.replace(self, config=dataclasses.replace(self.config, device=device),
                                   **changes)


@dataclass(frozen=True)
class RunOutput:
    """What a run function returned, read once: its rows (one per checkpoint), the meters that
    read it, why any part was estimated, the hardware the meters read, the warm-up's cost and the GPUs the run was placed on."""

    rows: tuple[dict[str, Any], ...]
    meters: tuple[str, ...] = ()
    estimate_reasons: tuple[str, ...] = ()
    hardware: tuple[dict[str, Any], ...] = ()
    warmup: dict[str, Any] | None = None
    #: every GPU the run used, once, with its UUID (:func:`ecnas.monitor.distributed.placement_record`)
    placement: dict[str, Any] | None = None

    @classmethod
    def of(cls, value: Any) -> RunOutput:
        """Read a run function's return value (see :data:`RunFn`); no rows is a RuntimeError
        (the run failed), as is a dict without ``rows``."""
        if isinstance(value, Mapping):
            if "rows" not in value:
                raise RuntimeError("the run function returned a dict without 'rows'")
            out = cls(rows=tuple(value["rows"]), meters=tuple(value.get("meters", ())),
                      estimate_reasons=tuple(value.get("estimate_reasons", ())),
                      hardware=tuple(value.get("hardware", ())), warmup=value.get("warmup"),
                      placement=value.get("placement"))
        else:
            out = cls(rows=tuple(value))
        if not out.rows:
            raise RuntimeError("the run function returned no rows")
        return out


@dataclass(frozen=True)
class RunResult:
    """What came back of one attempt: ``ok`` with the run's ``rows`` and ``provenance`` (what
    the store commits), or not ok with the ``error`` (what the store records as a failure).
    ``host``/``pid``: where it ran, where known."""

    run_key: str
    attempt: int
    ok: bool
    host: str | None = None
    pid: int | None = None
    rows: tuple[dict[str, Any], ...] = ()
    provenance: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None

    def __post_init__(self) -> None:
        if self.ok and not self.rows:
            raise ValueError(f"run {self.run_key}: an ok result needs rows")
        if not self.ok and not self.error:
            object.__setattr__(self, "error", "unknown error")

    @classmethod
    def failed(cls, task: RunTask, error: str, **where: Any) -> RunResult:
        """A failed attempt of ``task`` (``where``: ``host`` and ``pid`` where known)."""
        return cls(run_key=task.run_key, attempt=task.attempt, ok=False, error=error, **where)

    @property
    def energy_j(self) -> float:
        """The run's joules (its last checkpoint's ``energy_j``; 0 for a failed attempt)."""
        return float(self.rows[-1].get("energy_j", 0.0)) if self.rows else 0.0

    @property
    def estimated(self) -> bool:
        """Whether any checkpoint of the run was estimated rather than measured."""
        return any(bool(r.get("estimated")) for r in self.rows)

    def to_dict(self) -> dict[str, Any]:
        """The result as plain data (rows as a list)."""
        d = dataclasses.asdict(self)
        d["rows"], d["provenance"] = list(self.rows), dict(self.provenance)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunResult:
        """A result from :meth:`to_dict`'s plain data; a missing or unknown key is an
        :class:`~ecnas.errors.InputError`."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(f"RunResult: unknown key(s) {', '.join(unknown)}")
        try:
            return cls(**{**data, "rows": tuple(data.get("rows", ()))})
        except (TypeError, ValueError) as exc:
            raise InputError(f"RunResult: {exc}") from None
