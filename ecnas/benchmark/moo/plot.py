"""The Pareto front of a benchmark at one budget: points, knee, plot (matplotlib, Agg)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ecnas.benchmark.moo.knee import knee_index
from ecnas.benchmark.moo.objectives import domain, objectives
from ecnas.benchmark.moo.pareto import pareto_mask
from ecnas.errors import InputError
from ecnas.outputs import atomic_path


@dataclass(frozen=True)
class FrontResult:
    """Energy (J) vs validation accuracy (points, 0–100) of every architecture at the budget."""

    budget: int
    points: np.ndarray  # [n, 2]: accuracy points, energy J (all architectures with both)
    hashes: tuple[str, ...]
    front: np.ndarray  # boolean mask over points
    knee: dict[str, Any] = field(default_factory=dict)

    def front_points(self) -> np.ndarray:
        p = self.points[self.front]
        return p[np.argsort(p[:, 1])]


def pareto_front(bench: Any, *, budget: int | None = None) -> FrontResult:
    b = max(bench.budgets) if budget is None else int(budget)
    dom = domain(bench, b, objectives(("energy", "validation_accuracy")))
    arrays = bench.arrays(b)
    acc = 100.0 * arrays["validation_accuracy"][dom.indices]
    energy = arrays["energy_j"][dom.indices]
    pts = np.column_stack([acc, energy])
    mask = pareto_mask(np.column_stack([energy, -acc]))
    front_idx = np.nonzero(mask)[0]
    k = front_idx[knee_index(np.column_stack([energy[front_idx], -acc[front_idx]]))]
    knee = {"arch_hash": str(arrays["arch_hash"][dom.indices[k]]),
            "validation_accuracy_points": float(acc[k]), "energy_j": float(energy[k])}
    return FrontResult(b, pts, tuple(str(h) for h in arrays["arch_hash"][dom.indices]), mask, knee)


#: what --plot may write, by suffix
PLOT_FORMATS = ("png", "pdf", "svg")


def plot_format(path: str | Path) -> str:
    """The plot format named by ``path``'s suffix; ``InputError`` for any other suffix."""
    fmt = Path(path).suffix.lower().lstrip(".")
    if fmt not in PLOT_FORMATS:
        raise InputError(f"--plot {path}: the plot must end in "
                         f"{', '.join('.' + f for f in PLOT_FORMATS)} (got {fmt or 'no suffix'!r})")
    return fmt


def plot_front(bench: Any, path: str | Path, *, budget: int | None = None,
               searches: Sequence[Any] = ()) -> FrontResult:
    """Draw all architectures, the front, the knee and each search's attainment curve
    (PNG, PDF or SVG by the suffix of ``path``; written atomically, see ecnas.outputs)."""
    fmt = plot_format(path)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = pareto_front(bench, budget=budget)
    fp = res.front_points()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    ax.scatter(res.points[:, 1], res.points[:, 0], s=8, c="0.7", label="architectures")
    ax.step(fp[:, 1], fp[:, 0], where="post", c="C0", lw=2, label="Pareto front")
    ax.scatter([res.knee["energy_j"]], [res.knee["validation_accuracy_points"]], marker="*",
               s=220, c="C3", zorder=5, label="knee")
    hashes = {h: i for i, h in enumerate(res.hashes)}
    for n, s in enumerate(searches):
        idx = [hashes[h] for h in s.evaluated if h in hashes]
        if not idx:
            continue
        sp = res.points[idx]
        m = pareto_mask(np.column_stack([sp[:, 1], -sp[:, 0]]))
        sp = sp[m][np.argsort(sp[m][:, 1])]
        ax.step(sp[:, 1], sp[:, 0], where="post", ls="--", lw=1, c=f"C{(n % 6) + 4}",
                label=f"{s.algorithm} (seed {s.seed}) attainment")
    ax.set_xscale("log")
    ax.set_xlabel(f"energy (J) at {res.budget} epochs")
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt)
    finally:
        plt.close(fig)
    return res
