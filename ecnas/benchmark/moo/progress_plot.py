"""How close searches came, over seeds: fraction of the true front vs evaluations (mean and a
band of ± one sd per algorithm), and empirical attainment surfaces (25 %, 50 %, 75 %) in
energy–accuracy space, as EC-NAS's paper draws them. Imports matplotlib (Agg) on import: the
CLI imports this module only when ``--plot`` is given."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import numpy as np  # noqa: E402

from ecnas.benchmark.moo.pareto import pareto_mask  # noqa: E402
from ecnas.benchmark.moo.plot import plot_format  # noqa: E402
from ecnas.outputs import atomic_path  # noqa: E402

LEVELS = (0.25, 0.5, 0.75)


def attainment(fronts: Sequence[np.ndarray], level: float, grid: np.ndarray) -> np.ndarray:
    """The empirical attainment surface of 2-D minimization fronts at ``level`` (a fraction of
    runs): for each x of ``grid``, the smallest y that at least ``level`` of the runs attain
    (some point with x' ≤ x and y' ≤ y); inf where too few attain anything."""
    best = np.full((len(fronts), len(grid)), np.inf)
    for k, f in enumerate(fronts):
        for x, y in np.asarray(f, dtype=float).reshape(-1, 2):
            m = grid >= x
            best[k, m] = np.minimum(best[k, m], y)
    need = max(1, int(np.ceil(level * len(fronts))))
    return np.sort(best, axis=0)[need - 1]


def plot_progress(runs: Mapping[str, Sequence[Any]], path: str | Path, *,
                  title: str = "") -> Path:
    """Fraction of the table's hypervolume vs evaluations, per algorithm (``runs``: algorithm
    → SearchResults over seeds): mean line, ± one sd band."""
    fmt = plot_format(path)
    fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=110)
    for n, (alg, rs) in enumerate(runs.items()):
        longest = max(r.evaluations for r in rs)
        x = np.arange(1, longest + 1)
        f = np.array([[r.trajectory.fraction_at(int(k)) for k in x] for r in rs])
        mean, sd = f.mean(axis=0), f.std(axis=0)
        ax.plot(x, mean, c=f"C{n}", lw=1.6, label=f"{alg} ({len(rs)} seeds)")
        ax.fill_between(x, np.clip(mean - sd, 0, 1), np.clip(mean + sd, 0, 1), color=f"C{n}",
                        alpha=0.2, lw=0)
    ax.set_xscale("log")
    ax.set_xlabel("evaluations (distinct architectures queried)")
    ax.set_ylabel("hypervolume / true front's")
    ax.set_title(title or "Fraction of the true front's hypervolume (mean ± sd over seeds)",
                 fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right", framealpha=0.9)
    return _save(fig, path, fmt)


def plot_attainment(bench: Any, runs: Mapping[str, Sequence[Any]], path: str | Path, *,
                    title: str = "") -> Path:
    """Empirical attainment surfaces (25 %, 50 % solid, 75 %) of each algorithm's runs in
    energy (J, log) vs validation accuracy (%), over the table's true front (grey)."""
    fmt = plot_format(path)
    fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=110)
    first = next(iter(runs.values()))[0]
    arr = bench.arrays(first.budget)
    energy, acc = arr["energy_j"], 100 * arr["validation_accuracy"]
    ok = np.isfinite(energy) & np.isfinite(acc)
    pts = np.column_stack([energy[ok], -acc[ok]])
    front = pts[pareto_mask(pts)]
    front = front[np.argsort(front[:, 0])]
    ax.step(front[:, 0], -front[:, 1], where="post", c="0.5", lw=3, alpha=0.5,
            label="true front")
    grid = np.unique(front[:, 0])
    grid = np.unique(np.concatenate([grid, np.geomspace(pts[:, 0].min(), pts[:, 0].max(), 200)]))
    index = {h: i for i, h in enumerate(arr["arch_hash"].tolist())}
    for n, (alg, rs) in enumerate(runs.items()):
        fronts = []
        for r in rs:
            idx = [index[h] for h in r.evaluated]
            fronts.append(np.column_stack([energy[idx], -acc[idx]]))
        for level, ls in zip(LEVELS, (":", "-", "--"), strict=True):
            y = attainment(fronts, level, grid)
            m = np.isfinite(y)
            ax.step(grid[m], -y[m], where="post", c=f"C{n}", ls=ls, lw=1.3,
                    label=f"{alg}: {int(level * 100)} % attainment" if level != 0.5
                    else f"{alg}: median attainment")
    ax.set_xscale("log")
    ax.set_xlabel(f"energy (J) per architecture at {first.budget} epochs")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(title or f"Empirical attainment surfaces after {first.requested} evaluations",
                 fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right", framealpha=0.9)
    return _save(fig, path, fmt)


def _save(fig: Any, path: str | Path, fmt: str) -> Path:
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt)
    finally:
        plt.close(fig)
    return Path(path)
