"""Checkpoint prefixes of training runs, with a per-run start-up + rate line fitted to each.

For every row of a table (one checkpoint of one run), the *prefix* is that checkpoint and all
earlier ones of the same run. ``prefix_lines`` fits ``y(e) = a + b·e`` with ``a, b ≥ 0`` to
each prefix, for energy, training time and wall time at once, with grouped cumulative sums
(vectorized: a table of a million checkpoints takes well under a second). ``a`` is the
start-up cost (before the first epoch: data loading, first evaluation), ``b`` the cost per epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ecnas.errors import InputError

TARGETS = ("energy_j", "training_time_s", "wall_time_s")
RUN_COLUMNS = ("arch_hash", "budget_epochs", "repeat", "device")


@dataclass(frozen=True)
class Prefixes:
    """Rows of a table sorted by run and epoch, with per-prefix line fits per target."""

    table: pd.DataFrame  # sorted, index reset; one row per checkpoint
    run_id: np.ndarray  # int, one id per run
    count: np.ndarray  # checkpoints in the prefix
    epoch: np.ndarray
    y: dict[str, np.ndarray]  # measured cumulative value at the checkpoint
    a: dict[str, np.ndarray]  # start-up cost of the prefix line
    b: dict[str, np.ndarray]  # per-epoch rate of the prefix line (NaN if not identifiable)


def _line(n: np.ndarray, sx: np.ndarray, sxx: np.ndarray, sy: np.ndarray,
          sxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least squares ``a + b·x`` with a, b ≥ 0 from sums (the 2-parameter NNLS, closed form)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        det = n * sxx - sx * sx
        b = (n * sxy - sx * sy) / det
        a = (sy - b * sx) / n
        # boundary solutions of the non-negative problem
        b_through_origin = sxy / sxx
        mean_y = sy / n
    neg_a = a < 0
    a = np.where(neg_a, 0.0, a)
    b = np.where(neg_a, b_through_origin, b)
    neg_b = b < 0
    a = np.where(neg_b, mean_y, a)
    b = np.where(neg_b, 0.0, b)
    b = np.where(det > 1e-12, b, np.nan)  # one distinct epoch: rate not identifiable
    a = np.where(det > 1e-12, a, np.nan)
    return a, b


def prefix_lines(table: pd.DataFrame, startup_epochs: dict[str, float] | None = None) -> Prefixes:
    """Fit each prefix's line. ``startup_epochs[target]`` (start-up cost in units of one epoch's
    cost) identifies the line of a prefix holding a single checkpoint after epoch 0."""
    missing = [c for c in (*RUN_COLUMNS, "epoch") if c not in table.columns]
    if missing:
        raise InputError(f"table lacks column(s) {', '.join(missing)} needed to extrapolate runs")
    t = table.sort_values([*RUN_COLUMNS, "epoch"], kind="stable").reset_index(drop=True)
    run_id = t.groupby(list(RUN_COLUMNS), sort=False, observed=True).ngroup().to_numpy()
    e = t["epoch"].to_numpy(dtype=np.float64)
    grp = pd.Series(run_id)
    n = grp.groupby(run_id).cumcount().to_numpy() + 1.0
    sx = pd.Series(e).groupby(run_id).cumsum().to_numpy()
    sxx = pd.Series(e * e).groupby(run_id).cumsum().to_numpy()
    ys, as_, bs = {}, {}, {}
    for name in TARGETS:
        y = (t[name].to_numpy(dtype=np.float64) if name in t.columns
             else np.full(len(t), np.nan))
        sy = pd.Series(y).groupby(run_id).cumsum().to_numpy()
        sxy = pd.Series(e * y).groupby(run_id).cumsum().to_numpy()
        a, b = _line(n, sx, sxx, sy, sxy)
        k = (startup_epochs or {}).get(name)
        single = np.isnan(b) & (e > 0)
        if k is not None and single.any():
            b = np.where(single, y / (k + e), b)
            a = np.where(single, k * b, a)
        ys[name], as_[name], bs[name] = y, a, b
    return Prefixes(t, run_id, n, e, ys, as_, bs)
