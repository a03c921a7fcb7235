"""A search's trajectory: one row per evaluation, and summaries over seeds at checkpoints.

Each row: evaluation index (1-based), architecture hash, training budget (epochs), the
objectives as read (energy in J, accuracy as a fraction …), where the value comes from
(``measured``, ``scaled`` or ``predicted``), the charged training time and energy so far, and
the hypervolume so far at the search's budget, absolute and as a fraction of the table's.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: evaluations at which `ecnas search` reports the fraction of the true front reached
CHECKPOINTS = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


@dataclass(frozen=True)
class Trajectory:
    """The evaluations of one run, as columns (row k is evaluation k + 1)."""

    objectives: tuple[str, ...]
    arch_hash: tuple[str, ...]
    budget: np.ndarray  # int, epochs
    values: np.ndarray  # [n, len(objectives)], as read from the benchmark
    origin: tuple[str, ...]  # measured / scaled / predicted
    charged_time_s: np.ndarray  # cumulative
    charged_energy_j: np.ndarray  # cumulative
    hypervolume: np.ndarray  # so far, at the search's budget
    fraction: np.ndarray  # hypervolume / the table's

    def __len__(self) -> int:
        return len(self.arch_hash)

    @staticmethod
    def builder(objectives: tuple[str, ...]) -> _Builder:
        """An empty, appendable trajectory (``add`` per evaluation, then ``build``)."""
        return _Builder(objectives)

    def rows(self) -> list[dict[str, Any]]:
        """One dict per evaluation (the columns ``--out`` writes)."""
        out = []
        for k in range(len(self)):
            row = {"evaluation": k + 1, "arch_hash": self.arch_hash[k],
                   "budget_epochs": int(self.budget[k])}
            row.update({name: float(self.values[k, j]) for j, name in enumerate(self.objectives)})
            row.update({"origin": self.origin[k],
                        "charged_training_time_s": float(self.charged_time_s[k]),
                        "charged_energy_j": float(self.charged_energy_j[k]),
                        "hypervolume": float(self.hypervolume[k]),
                        "fraction": float(self.fraction[k])})
            out.append(row)
        return out

    def fraction_at(self, n: int) -> float:
        """The fraction reached after ``n`` evaluations (the last one if the run was shorter)."""
        if len(self) == 0:
            return 0.0
        return float(self.fraction[min(n, len(self)) - 1])

    def fraction_at_time(self, seconds: float) -> float:
        """The fraction reached once ``seconds`` of training time were charged."""
        k = int(np.searchsorted(self.charged_time_s, seconds, side="right"))
        return float(self.fraction[k - 1]) if k else 0.0


class _Builder:
    def __init__(self, objectives: tuple[str, ...]) -> None:
        self.objectives = objectives
        self.cols: list[tuple[Any, ...]] = []

    def __len__(self) -> int:
        return len(self.cols)

    def add(self, arch_hash: str, budget: int, values: np.ndarray, time_s: float,
            energy_j: float, hv: float, fraction: float, origin: str) -> None:
        self.cols.append((arch_hash, budget, values, time_s, energy_j, hv, fraction, origin))

    def build(self) -> Trajectory:
        k = len(self.objectives)
        c = self.cols
        return Trajectory(
            self.objectives, tuple(r[0] for r in c), np.array([r[1] for r in c], dtype=int),
            np.array([r[2] for r in c], dtype=float).reshape(len(c), k), tuple(r[7] for r in c),
            np.array([r[3] for r in c], dtype=float), np.array([r[4] for r in c], dtype=float),
            np.array([r[5] for r in c], dtype=float), np.array([r[6] for r in c], dtype=float))


@dataclass(frozen=True)
class Checkpoint:
    """The fraction of the true front reached after ``evaluations``, over seeds."""

    evaluations: int
    mean: float
    sd: float
    seeds: int

    def to_dict(self) -> dict[str, Any]:
        """As plain data."""
        return {"evaluations": self.evaluations, "mean_fraction": self.mean, "sd": self.sd,
                "seeds": self.seeds}


def checkpoints(trajectories: Sequence[Trajectory], requested: int,
                at: Sequence[int] = CHECKPOINTS) -> list[Checkpoint]:
    """Mean ± sd over runs of the fraction at each checkpoint ≤ ``requested`` (and at
    ``requested`` itself); a run that stopped early holds its last value."""
    marks = sorted({n for n in at if n < requested} | {requested})
    out = []
    for n in marks:
        f = [t.fraction_at(n) for t in trajectories]
        sd = statistics.stdev(f) if len(f) > 1 else 0.0
        out.append(Checkpoint(n, statistics.fmean(f), sd if math.isfinite(sd) else 0.0, len(f)))
    return out
