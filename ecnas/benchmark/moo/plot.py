"""The Pareto front of a benchmark at one budget: points, knee, plot (matplotlib, Agg)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ecnas.benchmark.moo.describe import (
    EnergyOrigin,
    count_origins,
    dataset_of,
    energy_unit,
    front_title,
    origin_keys,
    origin_label,
)
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
    origins: np.ndarray | None = None  # per point: its key in describe.ORIGIN_LABELS
    origin: EnergyOrigin | None = None  # device, data set, architectures per origin

    def front_points(self) -> np.ndarray:
        """The front's points (accuracy points, energy J) in ascending energy, as the plot draws
        the line."""
        p = self.points[self.front]
        return p[np.argsort(p[:, 1])]

    @property
    def title(self) -> str:
        """The figure's title, ``Pareto front: energy vs validation accuracy at N epochs``."""
        return front_title(self.budget)


def pareto_front(bench: Any, *, budget: int | None = None,
                 dataset: str | None = None) -> FrontResult:
    """The front of ``bench`` at ``budget`` (default: its largest), its knee and where its
    energies come from (``dataset`` overrides what the benchmark's metadata records)."""
    b = max(bench.budgets) if budget is None else int(budget)
    dom = domain(bench, b, objectives(("energy", "validation_accuracy")))
    arrays = bench.arrays(b)
    acc = 100.0 * arrays["validation_accuracy"][dom.indices]
    energy = arrays["energy_j"][dom.indices]
    pts = np.column_stack([acc, energy])
    mask = pareto_mask(np.column_stack([energy, -acc]))
    front_idx = np.nonzero(mask)[0]
    knee = _knee(front_idx, energy, acc)
    knee["arch_hash"] = str(arrays["arch_hash"][dom.indices[knee.pop("index")]])
    knee = {k: knee[k] for k in ("arch_hash", "validation_accuracy_points", "energy_j", "note")
            if k in knee}
    origins, origin = _origins(bench, b, dom.indices, dataset)
    return FrontResult(b, pts, tuple(str(h) for h in arrays["arch_hash"][dom.indices]), mask,
                       knee, origins, origin)


def _knee(front_idx: np.ndarray, energy: np.ndarray, acc: np.ndarray) -> dict[str, Any]:
    """The knee, on the scales the plot uses: energy is compared by ratio (log), accuracy by
    points, so the knee is the point a reader sees bend the front; a note says when it
    cannot be informative."""
    e = energy[front_idx]
    e_scaled = np.log(e) if np.all(e > 0) else e
    pts = np.column_stack([e_scaled, -acc[front_idx]])
    order = np.argsort(e_scaled)
    k = front_idx[order[knee_index(pts[order])]]
    out: dict[str, Any] = {"index": int(k), "validation_accuracy_points": float(acc[k]),
                           "energy_j": float(energy[k])}
    if len(front_idx) <= 2:
        out["note"] = (f"the front has {len(front_idx)} point(s), so the knee is one of its ends: "
                       "no trade-off to choose")
    else:
        span = np.ptp(pts, axis=0)
        g = (pts - pts.min(axis=0)) / np.where(span > 0, span, 1.0)
        a, z = g[np.argmin(g[:, 0])], g[np.argmin(g[:, 1])]
        d = z - a
        dist = np.abs(d[0] * (g[:, 1] - a[1]) - d[1] * (g[:, 0] - a[0])) / (math.hypot(*d) or 1.0)
        if float(dist.max()) < 0.05:
            out["note"] = ("the front is close to a straight line (log energy vs accuracy): "
                           "no point bends it, the knee is only the least straight one")
    return out


def _origins(bench: Any, budget: int, indices: np.ndarray,
             dataset: str | None) -> tuple[np.ndarray | None, EnergyOrigin | None]:
    lay = getattr(bench, "layout", None)
    metadata = getattr(bench, "metadata", {}) or {}
    if lay is None or not hasattr(lay, "source"):
        return None, None
    bi = list(lay.budgets).index(budget)
    keys = origin_keys(lay.source[indices, bi], lay.estimated[indices, bi],
                       lay.present[indices, bi])
    devices = getattr(bench, "devices", ()) or (getattr(bench, "device", "unknown"),)
    return keys, EnergyOrigin(", ".join(devices), dataset or dataset_of(metadata),
                              count_origins(keys))


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
               searches: Sequence[Any] = (), dataset: str | None = None) -> FrontResult:
    """Draw all architectures (marked by where their energy comes from), the front, the knee
    and each search's attainment curve, titled with the device and the data set (PNG, PDF or
    SVG by the suffix of ``path``; written atomically, see ecnas.outputs)."""
    fmt = plot_format(path)
    fig, res = draw_front(bench, budget=budget, searches=searches, dataset=dataset)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        # "tight": the legend sits outside the axes, right of the data; keep it in the file
        fig.savefig(tmp, format=fmt, bbox_inches="tight")
    return res


def draw_front(bench: Any, *, budget: int | None = None, searches: Sequence[Any] = (),
               dataset: str | None = None) -> tuple[Any, FrontResult]:
    """The figure :func:`plot_front` writes (a plain ``Figure``, outside pyplot's global
    state: nothing to close), and the front.

    The legend stands outside the axes, so it never covers a point, and lists only what is
    drawn: a search whose attainment has one point is drawn as a marker, one with none is
    left out of both."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator

    res = pareto_front(bench, budget=budget, dataset=dataset)
    unit, scale = energy_unit(float(np.nanmax(res.points[:, 1])))
    pts = res.points / np.array([1.0, scale])
    fp = res.front_points() / np.array([1.0, scale])
    fig = Figure(figsize=(9.5, 5), dpi=120)  # Agg canvas by default, no display needed
    ax = fig.subplots()
    keys = res.origins if res.origins is not None else np.array(["measured"] * len(pts), object)
    for n, key in enumerate(k for k in ORIGIN_STYLE if np.any(keys == k)):
        m = keys == key
        face, marker = ORIGIN_STYLE[key]
        ax.scatter(pts[m, 1], pts[m, 0], s=10, marker=marker, c=face, alpha=0.8, zorder=2 + n,
                   label=f"{origin_label(key)} ({int(m.sum())})")
    ax.step(fp[:, 1], fp[:, 0], where="post", c="C0", lw=2, label="Pareto front", zorder=6)
    if res.knee:
        ax.scatter([res.knee["energy_j"] / scale], [res.knee["validation_accuracy_points"]],
                   marker="*", s=220, c="C3", zorder=7,
                   label="knee" + (" (see note)" if res.knee.get("note") else ""))
    hashes = {h: i for i, h in enumerate(res.hashes)}
    for n, s in enumerate(searches):
        idx = [hashes[h] for h in s.evaluated if h in hashes]
        if not idx:
            continue
        sp = pts[idx]
        m = pareto_mask(np.column_stack([sp[:, 1], -sp[:, 0]]))
        sp = sp[m][np.argsort(sp[m][:, 1])]
        # a one-point "curve" draws no line: mark the point so the legend names something seen;
        # drawn above the front (a search that found the whole front would hide under it) with
        # its own dash pattern (two searches that found the same points would hide each other)
        same = sp.shape == fp.shape and np.allclose(sp, fp)
        ax.step(sp[:, 1], sp[:, 0], where="post", ls=(n * 3, (3, 3 + 2 * (n % 3))), lw=1.5,
                c=f"C{(n % 6) + 4}", marker="o" if len(sp) == 1 else None, ms=5, zorder=8 + n,
                label=f"{s.algorithm} (seed {s.seed}) attainment"
                      + (" = the front" if same else ""))
    ax.set_xscale("log")
    # plain numbers on the log axis (not 2×10⁴): ticks at 1, 2, 3, 5 of each decade, or at
    # every integer multiple where the energies span less than about a decade
    e = pts[:, 1][np.isfinite(pts[:, 1]) & (pts[:, 1] > 0)]
    narrow = len(e) > 0 and float(np.log10(e.max() / e.min())) < 1.2
    subs = tuple(float(k) for k in range(1, 10)) if narrow else (1.0, 2.0, 3.0, 5.0)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel(f"energy ({unit}) per architecture at {res.budget} epochs"
                  + (" — ESTIMATED, not measured" if res.origin and res.origin.estimated else ""))
    ax.set_ylabel("validation accuracy (%)")
    top = ax.secondary_xaxis("top", functions=(lambda x: np.multiply(x, scale / 3600),
                                               lambda wh: np.multiply(wh, 3600 / scale)))
    top.set_xlabel("energy (Wh)", fontsize=8)
    top.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
    top.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    top.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    top.tick_params(labelsize=7)
    subtitle = []
    if res.origin is not None:
        subtitle.append(f"device: {res.origin.device}   data set: {res.origin.dataset}")
    if res.knee.get("note"):
        subtitle.append(f"knee: {res.knee['note']}")
    ax.set_title(res.title + ("\n" + "\n".join(subtitle) if subtitle else ""), fontsize=9)
    ax.grid(alpha=0.3)
    # outside the axes, right of the data: inside ("lower right", "best") it covered points
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0,
              framealpha=0.9)
    fig.tight_layout()
    return fig, res


#: how each origin is drawn: (colour, marker); measured solid and dark, derived light
ORIGIN_STYLE = {
    "measured": ("0.25", "o"),
    "imported": ("0.6", "o"),
    "estimated": ("C1", "o"),
    "imported-estimated": ("C1", "s"),
    "extrapolated": ("C2", "^"),
    "extrapolated-from-estimates": ("C2", "^"),
    "surrogate": ("0.75", "."),
    "surrogate-from-estimates": ("0.75", "."),
}
