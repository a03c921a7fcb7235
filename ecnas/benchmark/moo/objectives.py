"""Objectives a search can use, how each is read from a query, and the shared normalization.

Every objective is minimized internally (accuracy as 1 − accuracy) and scaled to [0, 1] by
the range it spans over the whole benchmark at the search's budget, so hypervolumes of
different algorithms on one benchmark and budget are comparable; the reference point is
1.1 in every normalized objective.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ecnas.errors import InputError


@dataclass(frozen=True)
class Objective:
    """One objective: its name, its key in a query's result and in ``Benchmark.arrays``, and
    whether it is maximized (accuracy) rather than minimized."""

    name: str
    query_key: str  # key in Benchmark.query's result
    array_key: str  # key in Benchmark.arrays
    maximize: bool = False

    def minimized(self, values: np.ndarray) -> np.ndarray:
        """``values`` as a quantity to minimize: ``1 - value`` for a maximized objective
        (fractions), unchanged otherwise."""
        v = np.asarray(values, dtype=float)
        return 1.0 - v if self.maximize else v


OBJECTIVES = {
    "energy": Objective("energy", "energy_j", "energy_j"),
    "validation_accuracy": Objective("validation_accuracy", "validation_accuracy",
                                     "validation_accuracy", maximize=True),
    "training_time": Objective("training_time", "training_time", "training_time_s"),
    "parameters": Objective("parameters", "trainable_parameters", "trainable_params"),
}
REFERENCE = 1.1


def objectives(names: tuple[str, ...] | list[str]) -> tuple[Objective, ...]:
    """The :class:`Objective` of each name; two or three known names are required, else
    :class:`~ecnas.errors.InputError`."""
    if not 2 <= len(names) <= 3:
        raise InputError(f"objectives: give 2 or 3 of {', '.join(OBJECTIVES)}, got {list(names)}")
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown:
        raise InputError(f"unknown objective(s) {', '.join(unknown)}; "
                         f"choose from {', '.join(OBJECTIVES)}")
    return tuple(OBJECTIVES[n] for n in names)


@dataclass(frozen=True)
class Domain:
    """The architectures a search may visit at one budget: those with every objective known."""

    indices: np.ndarray  # benchmark architecture indices
    values: np.ndarray  # [len(indices), n_objectives], minimized, unnormalized
    low: np.ndarray
    high: np.ndarray

    def normalize(self, minimized: np.ndarray) -> np.ndarray:
        """Minimized objective values scaled to [0, 1] by the domain's range (an objective with
        no range is only shifted)."""
        span = np.where(self.high > self.low, self.high - self.low, 1.0)
        return (np.asarray(minimized, dtype=float) - self.low) / span

    @property
    def reference(self) -> np.ndarray:
        """The hypervolume reference point: 1.1 in every normalized objective."""
        return np.full(self.values.shape[1], REFERENCE)


def domain(bench: object, budget: int, objs: tuple[Objective, ...]) -> Domain:
    """The architectures of ``bench`` with every objective of ``objs`` finite at ``budget``
    (epochs), with their minimized values and range; fewer than two is an
    :class:`~ecnas.errors.InputError`."""
    arrays = bench.arrays(budget)  # type: ignore[attr-defined]
    cols = np.column_stack([o.minimized(arrays[o.array_key]) for o in objs])
    ok = np.all(np.isfinite(cols), axis=1)
    if ok.sum() < 2:
        raise InputError(f"budget {budget}: fewer than 2 architectures have every objective "
                         f"({', '.join(o.name for o in objs)})")
    vals = cols[ok]
    return Domain(np.nonzero(ok)[0], vals, vals.min(axis=0), vals.max(axis=0))
