"""How well device A's table predicts device B from a few cells measured on B.

``evaluate_transfer(table_a, table_b, sizes=(10, 20))``: for each size k and each of ``draws``
seeded draws, k of B's cells are "measured" (fitted on) and the rest of B's cells are scored
(Kendall τ, MAPE, interval coverage) for three predictors of B's value at the budget:

* ``transfer`` — :class:`ecnas.surrogate.transfer.DeviceTransfer` on A's architecture surrogate,
  with A's measured values wherever A's table holds the cell;
* ``scale`` — one factor, ``y_B = k · y_A`` with ``k`` the geometric mean of the k cells'
  ratios (A's measured value, or A's surrogate where A lacks the cell); interval:
  split-conformal on the leave-one-out log errors;
* ``target-only`` — an architecture surrogate fitted on B's k cells alone
  (:class:`ecnas.surrogate.architecture.ArchitectureSurrogate`, which with fewer than 30
  cells is ridge on three features with leave-one-out intervals).

Truth is B's measured value (geometric mean over repeats) of each held-out cell.

Both tables are screened first with the bounds ``ecnas check`` uses
(:func:`ecnas.tables.checks.runs.implausible_rows`): a table with a row no machine could have
drawn (energies ×1e30) is refused, naming the rows; a run of B at the budget whose energy is not
a finite positive number is left out, and each such cell is named with why in the notes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ecnas.errors import InputError
from ecnas.surrogate.architecture import TARGETS, ArchitectureSurrogate, training_set
from ecnas.surrogate.intervals import bounds, conformal_quantile
from ecnas.surrogate.metrics import coverage, kendall_tau, mape
from ecnas.surrogate.transfer import MIN_CELLS, DeviceTransfer
from ecnas.tables.checks.runs import implausible_rows

METHODS = ("transfer", "scale", "target-only")
MIN_TEST_CELLS = 3
#: windows shorter than this are judged as if they lasted this long (as ``ecnas check`` does)
_MIN_WINDOW_S = 10.0


@dataclass(frozen=True)
class TransferScore:
    """One method, one fitting size, one draw, scored on the held-out cells of B."""

    method: str
    cells: int  # B's cells fitted on
    draw: int
    test_cells: int
    kendall_tau: float
    mape_pct: float
    coverage_pct: float  # of the ``level`` interval


@dataclass(frozen=True)
class TransferEvaluation:
    """Every score, and what was compared."""

    source_device: str
    target_device: str
    target: str  # energy_j or training_time_s
    budget: int
    target_cells: int  # cells of B measured to the budget
    level: float
    seed: int
    synthetic: bool  # B derived from A (ecnas.surrogate.synthetic), not measured
    scores: tuple[TransferScore, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)

    def summary(self) -> list[dict[str, Any]]:
        """Per method and size: mean, min and max over the draws of each figure."""
        out = []
        for k in sorted({s.cells for s in self.scores}):
            for m in METHODS:
                group = [s for s in self.scores if s.cells == k and s.method == m]
                if not group:
                    continue
                row: dict[str, Any] = {"method": m, "cells": k, "draws": len(group),
                                       "test_cells": group[0].test_cells}
                for name in ("kendall_tau", "mape_pct", "coverage_pct"):
                    v = np.array([getattr(s, name) for s in group], dtype=float)
                    row[name] = {"mean": float(np.mean(v)), "min": float(np.min(v)),
                                 "max": float(np.max(v))}
                out.append(row)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The evaluation as plain data for ``--json``, with :meth:`summary` added."""
        d = asdict(self)
        d["scores"] = [asdict(s) for s in self.scores]
        d["notes"] = list(self.notes)
        d["summary"] = self.summary()
        return d


def _scale_baseline(ya_fit: np.ndarray, yb_fit: np.ndarray, ya_test: np.ndarray,
                    level: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``k · y_A`` in log space (``ya``, ``yb`` are logs); bounds from leave-one-out errors."""
    d = yb_fit - ya_fit
    n = d.size
    loo = (d.sum() - d) / (n - 1)  # log k without cell i
    q = conformal_quantile(np.abs(d - loo), level)
    pred = np.exp(ya_test + d.mean())
    low, high = bounds(pred, q)
    return pred, low, high


def evaluate_transfer(table_a: pd.DataFrame, table_b: pd.DataFrame, *,
                      sizes: tuple[int, ...] = (10, 20), draws: int = 5, seed: int = 0,
                      budget: int | None = None, level: float = 0.9, target: str = "energy_j",
                      source: ArchitectureSurrogate | None = None,
                      synthetic: bool = False) -> TransferEvaluation:
    """Score transfer A → B and the two baselines (see the module doc). ``source``: A's
    architecture surrogate if already fitted (else fitted here on ``table_a``)."""
    if target not in TARGETS:
        raise InputError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    if draws < 1:
        raise InputError(f"draws must be at least 1, got {draws}")
    screen(table_a, "device A's table")
    screen(table_b, "device B's table")
    tb = training_set(table_b, budget)
    budget = tb.budget
    dropped = dropped_cells(table_b, budget, tb.device)
    keys = list(zip(tb.matrix, tb.ops, strict=True))
    truth = tb.y[target]
    have = np.flatnonzero(np.isfinite(truth))
    n = have.size
    for k in sizes:
        if k < MIN_CELLS:
            raise InputError(f"fitting size {k}: transfer needs at least {MIN_CELLS} cells of B")
        if k > n - MIN_TEST_CELLS:
            raise InputError(f"fitting size {k}: device {tb.device} has {n} cell(s) with "
                             f"{target} at budget {budget}; at least {MIN_TEST_CELLS} must be "
                             "left to score on")
    model_a = source if source is not None else ArchitectureSurrogate(level=level).fit(
        table_a, budget)
    if model_a.budget != budget:
        raise InputError(f"device A's surrogate learned budget {model_a.budget}, B's cells "
                         f"are measured to {budget}")
    try:
        ta = training_set(table_a, budget)
        measured_a = dict(zip(zip(ta.matrix, ta.ops, strict=True), ta.y[target], strict=True))
    except InputError:
        measured_a = {}
    cells = pd.DataFrame({"matrix": tb.matrix, "ops": tb.ops})
    a_pred = np.log(model_a.predict(cells, budget)[target].to_numpy(float))
    ya = np.array([measured_a.get(kk, a_pred[i]) for i, kk in enumerate(keys)])
    from_surrogate = sum(1 for kk in keys if not np.isfinite(measured_a.get(kk, np.nan)))
    ya = np.where(np.isfinite(ya), ya, a_pred)
    notes = list(dropped)
    if from_surrogate:
        notes.append(f"{from_surrogate} of B's cells are not measured on A: A's surrogate "
                     "stands in for them (scale baseline and transfer)")
    rows_b = _full_rows(table_b, budget, tb.device)
    scores = []
    for k in sizes:
        for draw in range(draws):
            rng = np.random.default_rng([seed, k, draw])
            fit = rng.choice(have, size=k, replace=False)
            test = np.setdiff1d(have, fit)
            t_true = np.exp(truth[test])
            test_cells = cells.iloc[test].reset_index(drop=True)
            fit_keys = {keys[i] for i in fit}
            sub_b = rows_b[[kk in fit_keys
                            for kk in zip(rows_b["matrix"], rows_b["ops"], strict=True)]]
            preds = {
                "transfer": _predicted(DeviceTransfer(model_a, level=level).fit(
                    sub_b, source_table=table_a, budget=budget).predict(test_cells, budget),
                    target),
                "scale": _scale_baseline(ya[fit], truth[fit], ya[test], level),
                "target-only": _predicted(ArchitectureSurrogate(kind="linear", level=level)
                                          .fit(sub_b, budget).predict(test_cells, budget),
                                          target),
            }
            for method in METHODS:
                p, lo, hi = preds[method]
                scores.append(TransferScore(
                    method=method, cells=k, draw=draw, test_cells=int(test.size),
                    kendall_tau=kendall_tau(p, t_true), mape_pct=mape(p, t_true),
                    coverage_pct=coverage(lo, hi, t_true)))
    return TransferEvaluation(
        source_device=model_a.device, target_device=tb.device, target=target, budget=budget,
        target_cells=n, level=level, seed=seed, synthetic=synthetic, scores=tuple(scores),
        notes=tuple(notes))


def screen(table: pd.DataFrame, label: str) -> None:
    """``InputError`` naming the rows when ``table`` holds energy no machine could have drawn
    (the bounds of ``ecnas check``'s power-bounds; rows with no finite energy are left to
    :func:`dropped_cells`)."""
    if "energy_j" not in table.columns:
        return
    energy = pd.to_numeric(table["energy_j"], errors="coerce").to_numpy(float)
    wall = (pd.to_numeric(table["wall_time_s"], errors="coerce").to_numpy(float)
            if "wall_time_s" in table.columns else np.full(len(table), np.nan))
    mask, reasons = implausible_rows(np.where(np.isfinite(energy), energy, 0.0), wall,
                                     _MIN_WINDOW_S)
    if mask.any():
        first = int(np.flatnonzero(mask)[0])
        cell = str(table["arch_hash"].iloc[first]) if "arch_hash" in table.columns else "?"
        raise InputError(f"{label}: {int(mask.sum())} of {len(table)} rows implausible, refused "
                         f"(first: cell {cell}, {reasons[first]}); 'ecnas check' names them all")


def dropped_cells(table: pd.DataFrame, budget: int, device: str) -> list[str]:
    """One note per cell of B whose runs at ``budget`` are left out, with why: an energy that is
    not a finite positive number (the surrogates learn from finite, positive energies)."""
    rows = _full_rows(table, budget, device)
    rows = rows[np.isclose(rows["epoch"].to_numpy(float), float(budget))]
    energy = pd.to_numeric(rows["energy_j"], errors="coerce").to_numpy(float)
    bad = ~(np.isfinite(energy) & (energy > 0))
    notes = []
    key = "arch_hash" if "arch_hash" in rows.columns else "matrix"
    for cell, values in pd.Series(energy[bad], index=rows[key].to_numpy()[bad]).groupby(level=0):
        why = ", ".join(sorted({"infinite" if np.isinf(v) else "missing (NaN)" if np.isnan(v)
                                else "zero" if v == 0 else "negative" for v in values}))
        notes.append(f"cell {cell} of B: {len(values)} run(s) at {budget} epochs dropped, "
                     f"energy_j {why}")
    return notes


def _full_rows(table: pd.DataFrame, budget: int, device: str) -> pd.DataFrame:
    """B's rows of runs at ``budget`` on its device (what a lab would have measured)."""
    t = table[table["budget_epochs"] == budget]
    if "device" in t.columns:
        t = t[t["device"].astype(str) == device]
    return t


def _predicted(pred: pd.DataFrame, target: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (pred[target].to_numpy(float), pred[f"{target}_low"].to_numpy(float),
            pred[f"{target}_high"].to_numpy(float))


def summary_text(ev: TransferEvaluation) -> str:
    """The summary as a plain-text table (what ``ecnas surrogate transfer`` prints)."""
    head = (f"{ev.source_device} → {ev.target_device}"
            f"{' (SYNTHETIC device B)' if ev.synthetic else ''}: {ev.target} at {ev.budget} "
            f"epochs, {ev.target_cells} cells of B, {ev.level:.0%} intervals, seed {ev.seed}")
    lines = [head, f"{'cells':>5} {'method':12} {'draws':>5} {'test':>5} {'τ mean (min–max)':>20} "
                   f"{'MAPE % mean (min–max)':>24} {'coverage % mean (min–max)':>27}"]

    def f(d: dict[str, float], spec: str) -> str:
        if not all(math.isfinite(v) for v in d.values()):
            return "—"
        return f"{d['mean']:{spec}} ({d['min']:{spec}}–{d['max']:{spec}})"

    for r in ev.summary():
        lines.append(f"{r['cells']:>5} {r['method']:12} {r['draws']:>5} {r['test_cells']:>5} "
                     f"{f(r['kendall_tau'], '.3f'):>20} {f(r['mape_pct'], '.2f'):>24} "
                     f"{f(r['coverage_pct'], '.1f'):>27}")
    lines += [f"note: {n}" for n in ev.notes]
    return "\n".join(lines)
