"""Budget consistency: one cell costs the same per epoch whatever its budget and repeat.

A run's per-epoch cost is its training time (and energy) between its first and last
checkpoints, divided by the epochs between them. Energy is cumulative over wall time, so the
span's energy is taken at its mean power over its training time only: evaluations at the
checkpoints are a larger share of a short budget's span (two per 4 epochs, two per 8), and
would otherwise make short runs look dearer per epoch. Training the same cell on the same device for
4 or 8 epochs does the same work per epoch, so the per-epoch costs of a cell's runs should agree
about as well as its repeats do. A run that paid one-off start-up costs inside its metered
epochs (thread pools, allocator growth, kernel selection) or shared its cores with another run
costs several times more per epoch than the rest of its cell: this check names it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ecnas.tables.checks.base import CheckResult, Context, combined_codes, offending
from ecnas.tables.checks.provenance import DERIVED

#: per-epoch quantities compared
QUANTITIES = ("time", "energy")
MAD_SIGMA = 1.4826  # MAD → standard deviation of a normal


def _run_ends(ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    """Row positions of every run's first and last checkpoint, indexed by run id."""
    run_sorted = ctx.run_id[ctx.order]
    first_of_run = ~ctx.same_run_prev
    first = np.empty(ctx.n_runs, dtype=np.int64)
    last = np.empty(ctx.n_runs, dtype=np.int64)
    first[run_sorted[first_of_run]] = ctx.order[first_of_run]
    last[run_sorted[ctx.last_of_run]] = ctx.order[ctx.last_of_run]
    return first, last


def _log_per_epoch(ctx: Context, quantity: str, first: np.ndarray,
                   last: np.ndarray) -> np.ndarray:
    """log of each run's per-epoch training time or training energy between its first and last
    checkpoints; NaN where the run spans no epochs or costs nothing finite over them."""

    def delta(column: str) -> np.ndarray:
        v = ctx.col(column).astype("float64")
        return v[last] - v[first]

    span = delta("epoch")
    train = delta("training_time_s")
    if quantity == "time":
        cost = train
    else:  # the span's energy at its mean power, over its training time
        wall = delta("wall_time_s")
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where((wall > 0) & (train >= 0), np.minimum(train / wall, 1.0), 1.0)
        cost = delta("energy_j") * share
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(np.where((span > 0) & (cost > 0), cost / span, np.nan))


def _deviation_from_others(log_rate: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Each run's log cost minus that of the other runs of its group: the other run where there
    are two, the group's median where there are more (one outlier barely moves a median of
    three or more); NaN for a run alone in its group."""
    s = pd.Series(log_rate)
    g = s.groupby(group)
    n = g.transform("count").to_numpy()
    total = g.transform("sum").to_numpy()
    median = g.transform("median").to_numpy()
    other = np.where(n == 2, total - log_rate, median)
    return np.where((n >= 2) & np.isfinite(log_rate), log_rate - other, np.nan)


def _repeat_deviation(log_rate: np.ndarray, group: np.ndarray) -> np.ndarray:
    """|log cost − its group's median| of every run that has repeats (the spread's sample)."""
    s = pd.Series(log_rate)
    g = s.groupby(group)
    n = g.transform("count").to_numpy()
    dev = np.abs(log_rate - g.transform("median").to_numpy())
    return dev[(n >= 2) & np.isfinite(dev)]


def budget_consistency(ctx: Context) -> CheckResult:
    """Per device and cell, each run's per-epoch training time and energy against the cell's
    other runs (other budgets and repeats). Tolerance: ``budget_cost_z`` robust σ of the
    table's own repeat spread (1.4826 × the median absolute deviation of log per-epoch cost
    from its repeats' median, over every cell and budget with repeats), never tighter than
    ``budget_cost_min_rel``; a table with no repeats gets that floor alone. Derived rows
    (extrapolated, surrogate) are left out."""
    o = ctx.options
    df = ctx.df
    first, last = _run_ends(ctx)
    keys = df.iloc[first][["arch_hash", "budget_epochs", "device", "source"]].reset_index(drop=True)
    metered = ~keys["source"].isin(DERIVED).to_numpy()
    cell = combined_codes(keys, ["arch_hash", "device"])
    repeat_group = combined_codes(keys, ["arch_hash", "budget_epochs", "device"])
    floor = float(np.log1p(o.budget_cost_min_rel))
    worst_ratio = np.ones(ctx.n_runs)
    off = np.zeros(ctx.n_runs, dtype=bool)
    ratios: dict[str, np.ndarray] = {}
    notes, compared = [], 0
    for name in QUANTITIES:
        log_rate = np.where(metered, _log_per_epoch(ctx, name, first, last), np.nan)
        dev = _deviation_from_others(log_rate, cell)  # NaN for a run alone in its cell
        rep_dev = _repeat_deviation(log_rate, repeat_group)
        if rep_dev.size:
            sigma = MAD_SIGMA * float(np.median(rep_dev))
            tol = max(o.budget_cost_z * sigma, floor)
            how = (f"×{np.exp(tol):.2f} = max({o.budget_cost_z:g} robust σ of repeats "
                   f"({sigma:.1%}), floor {o.budget_cost_min_rel:.0%})")
        else:
            tol = floor
            how = f"×{np.exp(tol):.2f} (no repeats to learn the spread from: the floor)"
        checked = np.isfinite(dev)
        compared = max(compared, int(checked.sum()))
        bad = checked & (np.abs(dev) > tol)
        ratio = np.exp(np.abs(np.where(checked, dev, 0.0)))
        worst_ratio = np.maximum(worst_ratio, ratio)
        off |= bad
        spread = float(np.exp(np.max(np.abs(dev[checked])))) if checked.any() else 1.0
        notes.append(f"per-epoch {name}: tolerance {how}, widest ×{spread:.2f}")
        ratios[name] = ratio
    if not compared:
        return CheckResult("budget-consistency", "info", True, 0,
                           "no cell has several measured runs on one device: per-epoch costs "
                           "not compared")
    summary = "; ".join(notes)
    bad_pos = np.sort(last[off])
    rank = np.zeros(len(df))
    rank[last] = np.where(off, worst_ratio, 0.0)
    values = {}
    for name in QUANTITIES:
        v = np.full(len(df), np.nan)
        v[last] = ratios[name]
        values[f"per_epoch_{name}_vs_cell"] = v
    named = []
    for p in bad_pos[np.argsort(-rank[bad_pos], kind="stable")][:3]:
        r = df.iloc[int(p)]
        named.append(f"{r['arch_hash']}/{r['budget_epochs']}/{r['repeat']} on {r['device']} "
                     f"(×{rank[p]:.2f})")
    return offending(
        ctx, bad_pos, name="budget-consistency", severity="warning",
        explanation_fail=(f"runs whose per-epoch cost differs from their cell's other runs "
                          f"beyond tolerance: {', '.join(named)}; {summary}"),
        explanation_pass=(f"{compared} runs: each cell's per-epoch cost agrees across budgets "
                          f"and repeats ({summary})"),
        values=values, rank=rank)
