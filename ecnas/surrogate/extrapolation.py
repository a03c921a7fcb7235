"""Extrapolation: from a run's short checkpoints to its value at the full budget.

Every target (energy, training time, wall time) is learned from the runs of the table that
were measured to their full budget and hold that target. Several models compete; grouped
cross-validation on the table itself (folds by architecture, so repeats of a cell never sit on
both sides) chooses the best one or an inverse-error-weighted blend, and ``selection`` records
each candidate's CV error:

* ``per-run`` (always available, no fitting): the cumulative cost ``y(e) = a + b·e`` with a
  non-negative start-up ``a`` and per-epoch rate ``b`` fitted to the checkpoints seen so far
  (``runs.prefix_lines``); ``y(B) = y(s) + b·(B − s)`` from the last checkpoint ``s``.
* ``physics``: the per-run rate corrected by a least-absolute-deviation model of
  ``log(b_future / b)`` on features of the run's own prefix (start-up share, power per
  training and per wall second, seconds per epoch, evaluation overhead). It corrects the
  *rate*, so what it learns at one horizon (2 → 4) carries to others (4 → 108).
* ``least-squares``: ordinary least squares of the future per-epoch rate
  ``(y(B) − y(s))/(B − s)`` on the rates of the prefix: ``y(s)/s`` and the last segment's
  ``(y(s) − y(prev))/(s − prev)``, for the target and for training time (energy for the
  training-time target). On a table with one cut point this is exactly the least squares of
  ``y(B)`` on ``[1, E(s), E(s) − E(prev), T(s), T(s) − T(prev)]``, and it shares its
  coefficients across cut points otherwise.
* ``least-squares-relative`` and ``huber-relative``: the same, weighted so that the loss is
  the *relative* error of ``y(B)`` (the one MAPE measures), squared or Huber (robust to a few
  runs disturbed by other jobs).

A candidate that cannot predict a row (a feature it needs is missing) falls back to
``per-run`` there.

Intervals: CV+ (jackknife+ when every cell is its own fold; Barber et al. 2021) on relative
(log) errors: the fold models' predictions for the new run, shifted by the out-of-fold
errors of the cells each fold left out, give the bounds. This accounts for the model varying
with its training cells, which matters with 20 cells measured to full budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ecnas.errors import InputError, NotFittedError
from ecnas.surrogate.features import batch_from_strings, params_and_flops
from ecnas.surrogate.intervals import bounds, conformal_quantile
from ecnas.surrogate.learners import LinearModel, model_arrays, pack_models
from ecnas.surrogate.runs import TARGETS, Prefixes, prefix_lines
from ecnas.tables import empty_table

CANDIDATES = ("per-run", "physics", "least-squares", "least-squares-relative", "huber-relative")
_LEAST_SQUARES = {"least-squares": "l2", "least-squares-relative": "l2", "huber-relative": "huber"}
#: up to this many cells, every cell is its own fold (jackknife+); above, ``folds`` folds (CV+)
LEAVE_ONE_OUT_CELLS = 20
#: below this many cells, a single candidate must beat the blend by one standard error
FEW_CELLS = 100
#: z of the 90% two-sided band used for the coverage promise (see _promise_cells)
_PROMISE_Z = 1.645
#: most calibration residuals kept for CV+ bounds (each fold's quantiles beyond)
_MAX_RESIDUALS = 1000
#: a feature column is used when this share of the examples has it
_FEATURE_SHARE = 0.9


def _features(p: Prefixes, rows: np.ndarray) -> np.ndarray:
    """Physics of each prefix: log start-up (in epochs), log W per training s, log s/epoch,
    log wall/training overhead, log1p wall start-up (s), log W per wall s while training and
    during start-up (meters such as carbontracker integrate power over wall time).
    Undefined values become 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        be, bt, bw = (p.b[t][rows] for t in TARGETS)
        ae, aw = p.a["energy_j"][rows], p.a["wall_time_s"][rows]
        cols = [np.log1p(ae / be), np.log(be / bt), np.log(bt), np.log(bw / bt), np.log1p(aw),
                np.log(be / bw), np.log(np.maximum(ae, 1.0) / np.maximum(aw, 1.0))]
    x = np.stack(cols, axis=1)
    x[~np.isfinite(x)] = 0.0
    return x


def _previous_rows(p: Prefixes) -> np.ndarray:
    """Row of each checkpoint's previous checkpoint in the same run (−1 for a run's first)."""
    prev = np.arange(len(p.epoch)) - 1
    first = np.ones(len(prev), dtype=bool)
    first[1:] = p.run_id[1:] != p.run_id[:-1]
    prev[first] = -1
    return prev


def _rate_features(p: Prefixes, prev: np.ndarray, rows: np.ndarray, name: str) -> np.ndarray:
    """The least-squares candidates' inputs: average rate ``y(s)/s`` and last-segment rate of
    the target and of its companion (training time; energy for training time). NaN where a
    run has no previous checkpoint or no such measurement."""
    companion = "training_time_s" if name != "training_time_s" else "energy_j"
    e = p.epoch[rows]
    pr = prev[rows]
    has = pr >= 0
    pr = np.where(has, pr, 0)
    cols = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for c in (name, companion):
            y = p.y[c]
            cols.append(y[rows] / e)
            seg = (y[rows] - y[pr]) / (e - p.epoch[pr])
            cols.append(np.where(has & (e > p.epoch[pr]), seg, np.nan))
    x = np.stack(cols, axis=1)
    x[~np.isfinite(x)] = np.nan
    return x


@dataclass(frozen=True)
class _Examples:
    rows: np.ndarray  # prefix rows (the cut checkpoint)
    budget: np.ndarray
    truth: dict[str, np.ndarray]  # value at the full budget
    groups: np.ndarray  # architecture id (for out-of-fold splits)


def _full_budget_examples(p: Prefixes) -> _Examples:
    """Every cut 0 < s < B of every run measured up to its budget B."""
    t = p.table
    budget = t["budget_epochs"].to_numpy(dtype=np.float64)
    last = pd.Series(p.epoch).groupby(p.run_id).transform("max").to_numpy()
    full_run = np.isclose(last, budget)
    end_row = pd.Series(np.arange(len(t))).groupby(p.run_id).transform("last").to_numpy()
    ok = full_run & (p.epoch > 0) & (p.epoch < budget - 1e-9) & np.isfinite(p.y["energy_j"])
    rows = np.nonzero(ok)[0]
    truth = {name: p.y[name][end_row[rows]] for name in TARGETS}
    groups = pd.factorize(t["arch_hash"].to_numpy()[rows])[0]
    return _Examples(rows, budget[rows], truth, groups)


@dataclass
class _Target:
    """What was learned for one target: the blend, its models, and the CV+ calibration."""

    weights: dict[str, float] = field(default_factory=dict)  # candidate → blend weight
    columns: dict[str, list[int]] = field(default_factory=dict)  # least-squares inputs used
    models: dict[str, LinearModel] = field(default_factory=dict)  # fitted on all examples
    fold_models: dict[str, list[LinearModel | None]] = field(default_factory=dict)
    residuals: np.ndarray = field(default_factory=lambda: np.zeros(0))  # |log(y/ŷ_oof)|
    residual_fold: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    cv_mape_pct: dict[str, float] = field(default_factory=dict)
    chosen: str = "per-run"
    n_examples: int = 0
    n_cells: int = 0
    n_folds: int = 0


@dataclass(frozen=True)
class Prediction:
    """An extrapolation's rows and what a reader should know about them."""

    table: pd.DataFrame
    notes: tuple[str, ...] = ()


@dataclass
class Extrapolator:
    """Short checkpoints → full-budget energy, training time and wall time (scikit-learn style).

    ``fit(table)`` learns from the runs measured to their full budget; ``predict(table,
    budget)`` returns one row per (architecture, repeat, device) with the value at ``budget``.
    ``candidates`` limits the models that compete (with one, it is used alone; ``per-run``
    stands in where a candidate cannot predict a row).
    """

    min_runs: int = 10
    level: float = 0.9
    folds: int = 10
    seed: int = 0
    candidates: tuple[str, ...] = CANDIDATES
    # Learned by fit() (or read by from_state), never passed to __init__: the constructor takes
    # hyperparameters only, as in scikit-learn. method: "learned" or "per-run"; "" before fit.
    method: str = field(default="", init=False)
    startup_epochs: dict[str, float] = field(default_factory=dict, init=False)
    quantile: dict[str, float] = field(default_factory=dict, init=False)
    trained_horizon: tuple[float, float] = field(default=(math.nan, math.nan), init=False)
    n_full_runs: int = field(default=0, init=False)
    targets: dict[str, _Target] = field(default_factory=dict, init=False)
    notes: list[str] = field(default_factory=list, init=False)

    # -- fitting
    def fit(self, table: pd.DataFrame) -> Extrapolator:
        """Learn each target from the table's runs measured to their full budget: the candidates
        compete in grouped cross-validation (with fewer than ``min_runs`` such runs or 5 cells,
        ``per-run`` alone), and CV+ intervals come from the out-of-fold errors. Returns the
        extrapolator."""
        unknown = [c for c in self.candidates if c not in CANDIDATES]
        if unknown:
            raise InputError(f"unknown extrapolation candidate(s) {', '.join(unknown)}; "
                             f"choose from {', '.join(CANDIDATES)}")
        self.notes = []
        self.startup_epochs = _startup_epochs(prefix_lines(table))
        p = prefix_lines(table, self.startup_epochs)
        ex = _full_budget_examples(p)
        self.n_full_runs = int(np.unique(p.run_id[ex.rows]).size)
        if ex.rows.size:
            ratio = ex.budget / p.epoch[ex.rows]
            self.trained_horizon = (float(ratio.min()), float(ratio.max()))
        n_cells = int(np.unique(ex.groups).size) if ex.rows.size else 0
        learn = self.n_full_runs >= self.min_runs and n_cells >= 5
        cands = list(self.candidates) if learn else ["per-run"]
        if not learn and self.n_full_runs:
            self.notes.append(
                f"{self.n_full_runs} run(s) of {n_cells} cell(s) measured to full budget "
                f"(< {self.min_runs} runs or < 5 cells): using the per-run start-up + rate model "
                "without a learned correction")
        prev = _previous_rows(p)
        self.targets, self.quantile = {}, {}
        for name in TARGETS:
            tgt = self._fit_target(p, prev, ex, name, cands)
            self.targets[name] = tgt
            self.quantile[name] = (conformal_quantile(tgt.residuals, self.level)
                                   if tgt.residuals.size else math.inf)
        used = {c for t in self.targets.values() for c, w in t.weights.items() if w > 0}
        self.method = "learned" if used - {"per-run"} else "per-run"
        self.notes += self._fit_notes()
        return self

    def _fit_target(self, p: Prefixes, prev: np.ndarray, ex: _Examples, name: str,
                    cands: list[str]) -> _Target:
        with np.errstate(invalid="ignore"):
            ok = (np.isfinite(ex.truth[name]) & (ex.truth[name] > 0)
                  & np.isfinite(p.y[name][ex.rows]))
        idx = np.nonzero(ok)[0]
        if idx.size == 0:
            return _Target()
        rows, budget, truth = ex.rows[idx], ex.budget[idx], ex.truth[name][idx]
        groups = pd.factorize(ex.groups[idx])[0]
        n_groups = int(groups.max()) + 1
        k = n_groups if n_groups <= max(LEAVE_ONE_OUT_CELLS, self.folds) else self.folds
        fold = (np.random.default_rng(self.seed).permutation(n_groups) % k)[groups]
        x_rate = _rate_features(p, prev, rows, name)
        x_phys = _features(p, rows)
        columns = {c: self._columns(x_rate) for c in cands if c in _LEAST_SQUARES}
        cands = [c for c in cands if c not in columns or columns[c]] or ["per-run"]
        oof = {c: np.full(idx.size, np.nan) for c in cands}
        fold_models: dict[str, list[LinearModel | None]] = {c: [] for c in cands}
        for f in range(k):
            test, train = fold == f, fold != f
            for c in cands:
                m = self._fit_one(c, p, rows[train], budget[train], truth[train], name,
                                  x_rate[train], x_phys[train], columns.get(c))
                fold_models[c].append(m)
                oof[c][test] = self._predict_one(c, m, p, rows[test], budget[test], name,
                                                 x_rate[test], x_phys[test], columns.get(c))
        cv = {c: float(np.mean(np.abs(oof[c] / truth - 1.0)) * 100) for c in cands}
        weights, chosen = _choose(cv, oof, truth, n_groups)
        blend = sum(w * oof[c] for c, w in weights.items())
        models = {}
        for c in weights:
            m = self._fit_one(c, p, rows, budget, truth, name, x_rate, x_phys, columns.get(c))
            if m is not None:
                models[c] = m
        with np.errstate(divide="ignore", invalid="ignore"):
            resid = np.abs(np.log(truth / blend))
        good = np.isfinite(resid)
        return _Target(weights=weights, columns={c: columns[c] for c in weights if c in columns},
                       models=models, fold_models={c: fold_models[c] for c in weights},
                       residuals=resid[good], residual_fold=fold[good].astype(np.int64),
                       cv_mape_pct=cv, chosen=chosen, n_examples=int(idx.size),
                       n_cells=n_groups, n_folds=k)

    @staticmethod
    def _columns(x: np.ndarray) -> list[int]:
        return [j for j in range(x.shape[1]) if np.isfinite(x[:, j]).mean() >= _FEATURE_SHARE]

    @staticmethod
    def _fit_one(cand: str, p: Prefixes, rows: np.ndarray, budget: np.ndarray, truth: np.ndarray,
                 name: str, x_rate: np.ndarray, x_phys: np.ndarray,
                 columns: list[int] | None) -> LinearModel | None:
        if cand == "per-run":
            return None
        horizon = budget - p.epoch[rows]
        with np.errstate(divide="ignore", invalid="ignore"):
            future = (truth - p.y[name][rows]) / horizon
        if cand == "physics":
            with np.errstate(divide="ignore", invalid="ignore"):
                y = np.log(future / p.b[name][rows])
            ok = np.isfinite(y)
            if ok.sum() < 3:
                return None
            return LinearModel(alpha=1e-3, loss="l1").fit(x_phys[ok], y[ok])
        assert columns is not None  # the rate candidates always name their columns
        x = x_rate[:, columns]
        ok = np.isfinite(x).all(axis=1) & np.isfinite(future)
        if ok.sum() < len(columns) + 2:
            return None
        weight = None
        if cand != "least-squares":  # loss on the relative error of y(B)
            weight = (horizon[ok] / truth[ok]) ** 2
        # a vanishing ridge keeps collinear rates solvable; it is ordinary least squares
        return LinearModel(alpha=1e-9, loss=_LEAST_SQUARES[cand]).fit(x[ok], future[ok], weight)

    @staticmethod
    def _predict_one(cand: str, model: LinearModel | None, p: Prefixes, rows: np.ndarray,
                     budget: np.ndarray, name: str, x_rate: np.ndarray, x_phys: np.ndarray,
                     columns: list[int] | None) -> np.ndarray:
        base = p.y[name][rows]
        horizon = budget - p.epoch[rows]
        per_run = base + p.b[name][rows] * horizon
        if model is None:
            return per_run
        if cand == "physics":
            pred = base + p.b[name][rows] * np.exp(model.predict(x_phys)) * horizon
        else:
            x = x_rate[:, columns]
            have = np.isfinite(x).all(axis=1)
            rate = np.full(rows.size, np.nan)
            if have.any():
                rate[have] = model.predict(x[have])
            pred = base + rate * horizon
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(pred) | (pred < base)  # costs accumulate: never below y(s)
        return np.where(bad, per_run, pred)

    def _fit_notes(self) -> list[str]:
        if all(t.n_examples == 0 for t in self.targets.values()):
            return ["no run holds a checkpoint between epoch 0 and a full budget it reached: "
                    "extrapolation uses the per-run start-up + rate model alone, with unbounded "
                    "intervals"]
        notes = []
        for name, t in self.targets.items():
            if t.n_examples == 0:
                what = "no run of the table holds it to full budget" if name != "energy_j" \
                    else "no run measured to full budget"
                notes.append(f"{name}: {what}: per-run start-up + rate only, intervals unbounded")
                continue
            if len(t.cv_mape_pct) > 1:
                ranked = sorted(t.cv_mape_pct.items(), key=lambda kv: kv[1])
                others = ", ".join(f"{c} {v:.2f}%" for c, v in ranked)
                blend = (" (" + ", ".join(f"{c} {w:.2f}" for c, w in t.weights.items()) + ")"
                         if t.chosen == "blend" else "")
                notes.append(f"{name}: {t.chosen}{blend} chosen by {t.n_folds}-fold grouped CV "
                             f"over {t.n_cells} cells ({t.n_examples} cut points): CV MAPE {others}")
            promise = _promise_cells(self.level)
            if t.n_cells < promise:
                sd = 100 * math.sqrt(self.level * (1 - self.level) / (t.n_cells + 2))
                notes.append(f"{name}: intervals calibrated on {t.n_cells} cells (CV+): coverage "
                             f"holds at {self.level:.0%} on average, but a single table's may be "
                             f"off by ±{sd:.0f} points (1 sd); about {promise} cells measured to "
                             "full budget keep it within 5 points")
        return notes

    # -- prediction
    def predict(self, table: pd.DataFrame, budget: float) -> pd.DataFrame:
        """The value at ``budget`` for every (architecture, repeat, device) of ``table`` that
        has a checkpoint after epoch 0 and before ``budget``; the run with the latest such
        checkpoint is used. Columns: the contract's plus ``energy_j_low``/``energy_j_high``,
        ``training_time_s_low``/``_high``, ``short_epoch`` and ``method``."""
        return self.predict_with_notes(table, budget).table

    def predict_with_notes(self, table: pd.DataFrame, budget: float) -> Prediction:
        """``predict`` plus notes on this prediction; the fitted model is left unchanged."""
        if not self.method:
            raise NotFittedError("Extrapolator is not fitted: call fit(table) first")
        if not budget > 0:
            raise InputError(f"budget must be positive, got {budget!r}")
        p = prefix_lines(table, self.startup_epochs)
        t = p.table
        usable = (p.epoch > 0) & (p.epoch < budget - 1e-9) & np.isfinite(p.y["energy_j"])
        rows = np.nonzero(usable)[0]
        if rows.size == 0:
            return Prediction(_empty_prediction())
        # per (arch, repeat, device): the latest usable checkpoint of any of its runs
        keys = ["arch_hash", "repeat", "device"]
        order = t.loc[rows, keys].astype(str).assign(epoch=p.epoch[rows], row=rows)
        best = order.sort_values([*keys, "epoch"], kind="stable").groupby(keys).tail(1)
        rows = np.sort(best["row"].to_numpy())
        b = np.full(rows.size, float(budget))
        notes: list[str] = []
        if self.method == "learned" and np.isfinite(self.trained_horizon[1]):
            beyond = (budget / p.epoch[rows]) > self.trained_horizon[1] * 1.5
            if beyond.any():
                notes.append(
                    f"{int(beyond.sum())} run(s) extrapolated beyond the learned horizon "
                    f"(budget/checkpoint up to {self.trained_horizon[1]:g}): the learned model "
                    "is carried over as learned")
        prev = _previous_rows(p)
        pred, low, high = {}, {}, {}
        for name in TARGETS:
            pred[name], low[name], high[name] = self._predict_target(p, prev, rows, b, name)
            if name != "wall_time_s" and not np.isfinite(pred[name]).any():
                notes.append(f"{name}: unknown (the short checkpoints do not hold it)")
        src = t.loc[rows].reset_index(drop=True)
        out = pd.DataFrame({
            "arch_hash": src["arch_hash"].astype(str),
            "matrix": src["matrix"].astype(str),
            "ops": src["ops"].astype(str),
            "budget_epochs": np.full(rows.size, int(round(budget)), dtype=np.int64),
            "epoch": b,
            "repeat": src["repeat"].astype(np.int64),
            "device": src["device"].astype(str),
            "training_time_s": pred["training_time_s"],
            "wall_time_s": np.maximum(pred["wall_time_s"], pred["training_time_s"]),
            "energy_j": pred["energy_j"],
            "estimated": True,
            "source": "extrapolated",
        })
        # the runs' own counts; analytic ones of the default network where the table has none
        params, flops = params_and_flops(batch_from_strings(out["matrix"].tolist(), out["ops"].tolist()))
        if "trainable_params" in src.columns:
            own = pd.to_numeric(src["trainable_params"], errors="coerce").to_numpy(float)
            params = np.where(np.isfinite(own) & (own > 0), own, params).astype(np.int64)
        if "flops" in src.columns:
            own = pd.to_numeric(src["flops"], errors="coerce").to_numpy(float)
            flops = np.where(np.isfinite(own) & (own > 0), own, flops)
        out["trainable_params"] = params
        out["flops"] = flops
        for name in ("energy_j", "training_time_s"):
            out[f"{name}_low"] = low[name]
            out[f"{name}_high"] = high[name]
        out["short_epoch"] = p.epoch[rows]
        out["method"] = self.method
        return Prediction(out, tuple(notes))

    def _predict_target(self, p: Prefixes, prev: np.ndarray, rows: np.ndarray, budget: np.ndarray,
                        name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Point prediction (the blend of the models fitted on all examples) and CV+ bounds."""
        t = self.targets.get(name) or _Target()
        weights = t.weights or {"per-run": 1.0}
        x_rate = _rate_features(p, prev, rows, name)
        x_phys = _features(p, rows)

        def blend(models: dict[str, LinearModel | None]) -> np.ndarray:
            # a sum of arrays: weights is never empty, so never sum()'s start value 0
            return sum(w * self._predict_one(c, models.get(c), p, rows, budget, name, x_rate,  # type: ignore[return-value]
                                             x_phys, t.columns.get(c))
                       for c, w in weights.items())

        point = blend(dict(t.models))
        if t.residuals.size == 0:
            lo, hi = bounds(point, math.inf)
            return point, lo, hi
        fold_pred = np.stack([np.log(blend({c: fm[f] for c, fm in t.fold_models.items()}))
                              for f in range(t.n_folds)], axis=1)
        lo, hi = _cv_plus(fold_pred, t.residuals, t.residual_fold, self.level)
        with np.errstate(invalid="ignore"):
            return point, np.fmin(lo, point), np.fmax(hi, point)

    # -- storage (see modelfile)
    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The fitted extrapolator as (JSON-able settings, named arrays) for the model file,
        fold models and residuals included; :meth:`from_state` reads it back."""
        meta: dict[str, Any] = {
            "min_runs": self.min_runs, "level": self.level, "folds": self.folds, "seed": self.seed,
            "candidates": list(self.candidates), "method": self.method,
            "startup_epochs": self.startup_epochs,
            "quantile": {k: (None if not math.isfinite(v) else v) for k, v in self.quantile.items()},
            "trained_horizon": [None if math.isnan(v) else v for v in self.trained_horizon],
            "n_full_runs": self.n_full_runs, "notes": list(self.notes), "targets": {},
        }
        models: dict[str, LinearModel] = {}
        arrays: dict[str, np.ndarray] = {}
        for name, t in self.targets.items():
            meta["targets"][name] = {
                "weights": t.weights, "columns": t.columns, "cv_mape_pct": t.cv_mape_pct,
                "chosen": t.chosen, "n_examples": t.n_examples, "n_cells": t.n_cells,
                "n_folds": t.n_folds,
                "fold_fitted": {c: [m is not None for m in fm] for c, fm in t.fold_models.items()},
            }
            arrays[f"{name}/residuals"] = t.residuals
            arrays[f"{name}/residual_fold"] = t.residual_fold
            for c, m in t.models.items():
                models[f"{name}/{c}"] = m
            for c, fm in t.fold_models.items():
                for f, fold_model in enumerate(fm):
                    if fold_model is not None:
                        models[f"{name}/{c}/{f}"] = fold_model
        meta["models"], packed = pack_models(models)
        arrays.update({f"m/{k}": v for k, v in packed.items()})
        return meta, arrays

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Extrapolator:
        """An extrapolator from :meth:`state`'s output; one written by an older ecnas without
        cross-validated targets is an :class:`~ecnas.errors.InputError` asking to refit."""
        if "targets" not in meta:  # written before the candidates were chosen by CV
            raise InputError("extrapolator written by an older ecnas (no cross-validated "
                             "targets): refit it with 'ecnas surrogate fit'")
        packed = {k[2:]: v for k, v in arrays.items() if k.startswith("m/")}

        def model(key: str) -> LinearModel:
            return LinearModel.from_state(meta["models"][key], model_arrays(packed, key))

        targets = {}
        for name, tm in meta.get("targets", {}).items():
            weights = {str(c): float(w) for c, w in tm["weights"].items()}
            targets[name] = _Target(
                weights=weights, columns={c: [int(j) for j in v] for c, v in tm["columns"].items()},
                models={c: model(f"{name}/{c}") for c in weights if f"{name}/{c}" in meta["models"]},
                fold_models={c: [model(f"{name}/{c}/{f}") if fitted else None
                                 for f, fitted in enumerate(flags)]
                             for c, flags in tm["fold_fitted"].items()},
                residuals=np.asarray(arrays[f"{name}/residuals"], dtype=np.float64),
                residual_fold=np.asarray(arrays[f"{name}/residual_fold"], dtype=np.int64),
                cv_mape_pct={c: float(v) for c, v in tm["cv_mape_pct"].items()},
                chosen=str(tm["chosen"]), n_examples=int(tm["n_examples"]),
                n_cells=int(tm["n_cells"]), n_folds=int(tm["n_folds"]))
        horizon = tuple(math.nan if v is None else float(v) for v in meta["trained_horizon"])
        out = cls(min_runs=int(meta["min_runs"]), level=float(meta["level"]),
                  folds=int(meta["folds"]), seed=int(meta["seed"]),
                  candidates=tuple(str(c) for c in meta.get("candidates", CANDIDATES)))
        # files written before issue 38 say "unfitted" for an extrapolator never fitted
        method = str(meta["method"])
        out.method = "" if method == "unfitted" else method
        out.startup_epochs = {k: float(v) for k, v in meta["startup_epochs"].items()}
        out.quantile = {k: (math.inf if v is None else float(v))
                        for k, v in meta["quantile"].items()}
        out.trained_horizon = (horizon[0], horizon[1])
        out.n_full_runs = int(meta["n_full_runs"])
        out.targets, out.notes = targets, list(meta.get("notes", []))
        return out


def _startup_epochs(p: Prefixes) -> dict[str, float]:
    """Start-up cost in epochs of work (median over prefixes with ≥ 2 checkpoints): it
    identifies the line of a run holding a single checkpoint after epoch 0."""
    out = {}
    for name in TARGETS:
        with np.errstate(divide="ignore", invalid="ignore"):
            k = p.a[name] / p.b[name]
        k = k[np.isfinite(k) & (p.count >= 2)]
        out[name] = float(np.median(k)) if k.size else 0.0
    return out


def _choose(cv: dict[str, float], oof: dict[str, np.ndarray], truth: np.ndarray,
            n_cells: int) -> tuple[dict[str, float], str]:
    """The blend of the candidates weighted by 1/CV-error⁴ (a clearly better model gets nearly
    all the weight, models CV cannot tell apart are averaged), or the best single candidate
    when it beats the blend out of fold. With fewer than ``FEW_CELLS`` cells it must beat it by
    more than one standard error: there, picking one model on CV is noisy, and the blend gave
    lower held-out errors on the 5V runs (docs/surrogate.md)."""
    names = list(cv)
    best = min(names, key=lambda c: (cv[c], c != "per-run"))
    if len(names) == 1:
        return {best: 1.0}, best
    inv = {c: 1.0 / max(cv[c], 1e-9) ** 4 for c in names}
    total = sum(inv.values())
    weights = {c: w / total for c, w in inv.items()}
    blend = sum(w * oof[c] for c, w in weights.items())
    diff = np.abs(blend / truth - 1.0) - np.abs(oof[best] / truth - 1.0)
    margin = diff.std() / math.sqrt(diff.size) if n_cells < FEW_CELLS else 0.0
    if diff.mean() > margin:
        return {best: 1.0}, best
    return weights, "blend"


def _promise_cells(level: float) -> int:
    """Calibration cells for which one table's coverage lands within 5 points of ``level``
    with 90% probability (binomial sd of a conformal coverage: sqrt(level(1−level)/(n+2)))."""
    return int(math.ceil((_PROMISE_Z / 0.05) ** 2 * level * (1 - level))) - 2


def _cv_plus(fold_pred: np.ndarray, resid: np.ndarray, resid_fold: np.ndarray,
             level: float) -> tuple[np.ndarray, np.ndarray]:
    """CV+ bounds on the value scale: ``fold_pred`` (m, K) holds log predictions of each fold's
    model; the lower bound is the ⌊α(n+1)⌋-th smallest of ``pred_fold(i) − R_i``, the upper the
    ⌈(1−α)(n+1)⌉-th smallest of ``pred_fold(i) + R_i`` over calibration residuals i."""
    n = resid.size
    if n > _MAX_RESIDUALS:  # each fold's residuals by evenly spaced quantiles, in proportion
        parts = []
        for f in np.unique(resid_fold):
            r = resid[resid_fold == f]
            size = max(2, round(_MAX_RESIDUALS * r.size / n))
            parts.append((np.quantile(r, (np.arange(size) + 0.5) / size), np.full(size, f)))
        resid, resid_fold = (np.concatenate(x) for x in zip(*parts, strict=True))
        n = resid.size
    alpha = 1.0 - level
    k_hi = math.ceil((1 - alpha) * (n + 1))
    m = fold_pred.shape[0]
    if k_hi > n:
        return np.zeros(m), np.full(m, np.inf)
    k_lo = n + 1 - k_hi  # the ⌊α(n+1)⌋-th smallest, by symmetry of the two ranks
    lo, hi = np.empty(m), np.empty(m)
    chunk = max(1, 4_000_000 // max(resid.size, 1))
    for s in range(0, m, chunk):
        mu = fold_pred[s : s + chunk][:, resid_fold]  # (c, n) each residual's fold prediction
        for sign, k, out in ((-1.0, k_lo, lo), (1.0, k_hi, hi)):
            out[s : s + chunk] = np.partition(mu + sign * resid, k - 1, axis=1)[:, k - 1]
    return np.exp(lo), np.exp(hi)


def _empty_prediction() -> pd.DataFrame:
    out = empty_table()
    for col in ("energy_j_low", "energy_j_high", "training_time_s_low", "training_time_s_high",
                "short_epoch"):
        out[col] = pd.Series([], dtype="float64")
    out["method"] = pd.Series([], dtype=str)
    return out
