"""Extrapolation: from a run's short checkpoints to its value at the full budget.

Physical model (always available, per run): cumulative cost ``y(e) = a + b·e`` with a
non-negative start-up cost ``a`` and per-epoch rate ``b`` fitted to the checkpoints seen so
far (``runs.prefix_lines``); the prediction at budget B continues from the last measured
checkpoint ``s``: ``y(B) = y(s) + b·(B − s)``.

Learned model (when at least ``min_runs`` runs of the table were measured to their full
budget): a robust (least-absolute-deviation) linear correction of the per-epoch rate,
``log(b_future / b) = w·f``, with features of the run's own prefix that describe its physics
(start-up share, power per training second, seconds per epoch, evaluation overhead). It
corrects the rate, not the total, so what it learns at one horizon (epoch 2 → 4) carries to
others (4 → 108) without a horizon term tuned to one data set.

Intervals are split-conformal on out-of-fold relative errors (``intervals``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ecnas.errors import InputError
from ecnas.surrogate.features import batch_from_strings, params_and_flops
from ecnas.surrogate.intervals import bounds, conformal_quantile
from ecnas.surrogate.learners import LinearModel, model_arrays, pack_models
from ecnas.surrogate.runs import TARGETS, Prefixes, prefix_lines

N_FEATURES = 7


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
    ok = full_run & (p.epoch > 0) & (p.epoch < budget - 1e-9) & np.isfinite(p.b["energy_j"])
    rows = np.nonzero(ok)[0]
    truth = {name: p.y[name][end_row[rows]] for name in TARGETS}
    groups = pd.factorize(t["arch_hash"].to_numpy()[rows])[0]
    return _Examples(rows, budget[rows], truth, groups)


def _rate_target(p: Prefixes, ex: _Examples, name: str) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        future = (ex.truth[name] - p.y[name][ex.rows]) / (ex.budget - p.epoch[ex.rows])
        return np.log(future / p.b[name][ex.rows])


@dataclass
class Extrapolator:
    """Short checkpoints → full-budget energy, training time and wall time (scikit-learn style).

    ``fit(table)`` learns from the runs measured to their full budget; ``predict(table,
    budget)`` returns one row per (architecture, repeat, device) with the value at ``budget``.
    """

    min_runs: int = 20
    level: float = 0.9
    folds: int = 5
    seed: int = 0
    method: str = "unfitted"
    models: dict[str, LinearModel] = field(default_factory=dict)
    startup_epochs: dict[str, float] = field(default_factory=dict)
    quantile: dict[str, float] = field(default_factory=dict)
    trained_horizon: tuple[float, float] = (math.nan, math.nan)
    n_full_runs: int = 0
    notes: list[str] = field(default_factory=list)

    def fit(self, table: pd.DataFrame) -> Extrapolator:
        p = prefix_lines(table)
        self.notes = []
        # start-up cost in epochs of work, for runs that hold one checkpoint after epoch 0
        self.startup_epochs = {}
        for name in TARGETS:
            with np.errstate(divide="ignore", invalid="ignore"):
                k = p.a[name] / p.b[name]
            k = k[np.isfinite(k) & (p.count >= 2)]
            self.startup_epochs[name] = float(np.median(k)) if k.size else 0.0
        ex = _full_budget_examples(p)
        self.n_full_runs = int(np.unique(p.run_id[ex.rows]).size)
        if ex.rows.size:
            ratio = ex.budget / p.epoch[ex.rows]
            self.trained_horizon = (float(ratio.min()), float(ratio.max()))
        x = _features(p, ex.rows)
        self.models = {}
        if self.n_full_runs >= self.min_runs:
            self.method = "learned"
            for name in TARGETS:
                y = _rate_target(p, ex, name)
                ok = np.isfinite(y)
                if ok.sum() >= self.min_runs:
                    self.models[name] = LinearModel(alpha=1e-3, loss="l1").fit(x[ok], y[ok])
        else:
            self.method = "per-run"
            self.notes.append(
                f"{self.n_full_runs} run(s) measured to full budget (< {self.min_runs}): "
                "using the per-run start-up + rate model without a learned correction")
        self.quantile = self._calibrate(p, ex, x)
        return self

    def _predict_rows(self, p: Prefixes, rows: np.ndarray, budget: np.ndarray,
                      name: str, models: dict[str, LinearModel], x: np.ndarray) -> np.ndarray:
        rate = p.b[name][rows]
        model = models.get(name)
        if model is not None:
            rate = rate * np.exp(model.predict(x))
        return p.y[name][rows] + rate * (budget - p.epoch[rows])

    def _calibrate(self, p: Prefixes, ex: _Examples, x: np.ndarray) -> dict[str, float]:
        """Out-of-fold absolute log errors at the full budget → conformal quantile."""
        out: dict[str, float] = {}
        if ex.rows.size == 0:
            self.notes.append("no run measured to full budget: intervals are unbounded")
            return {name: math.inf for name in TARGETS}
        n_groups = int(ex.groups.max()) + 1
        fold_of_group = np.random.default_rng(self.seed).permutation(n_groups) % self.folds
        fold = fold_of_group[ex.groups]
        for name in TARGETS:
            pred = np.full(ex.rows.size, np.nan)
            for k in range(self.folds):
                test = fold == k
                if not test.any():
                    continue
                models: dict[str, LinearModel] = {}
                if name in self.models:
                    y = _rate_target(p, ex, name)
                    train = ~test & np.isfinite(y)
                    if train.sum() < max(self.min_runs // 2, 3):
                        continue
                    models[name] = LinearModel(alpha=1e-3, loss="l1").fit(x[train], y[train])
                pred[test] = self._predict_rows(p, ex.rows[test], ex.budget[test], name, models,
                                                x[test])
            with np.errstate(divide="ignore", invalid="ignore"):
                resid = np.abs(np.log(pred / ex.truth[name]))
            out[name] = conformal_quantile(resid[np.isfinite(resid)], self.level)
        return out

    def predict(self, table: pd.DataFrame, budget: float) -> pd.DataFrame:
        """The value at ``budget`` for every (architecture, repeat, device) of ``table`` that
        has a checkpoint after epoch 0 and before ``budget``; the run with the latest such
        checkpoint is used. Columns: the contract's plus ``energy_j_low``/``energy_j_high``,
        ``training_time_s_low``/``_high``, ``short_epoch`` and ``method``."""
        if self.method == "unfitted":
            raise InputError("Extrapolator is not fitted: call fit(table) first")
        if not budget > 0:
            raise InputError(f"budget must be positive, got {budget!r}")
        p = prefix_lines(table, self.startup_epochs)
        t = p.table
        usable = (p.epoch > 0) & (p.epoch < budget - 1e-9) & np.isfinite(p.b["energy_j"])
        rows = np.nonzero(usable)[0]
        if rows.size == 0:
            return _empty_prediction()
        # per (arch, repeat, device): the latest usable checkpoint of any of its runs
        key = t.loc[rows, ["arch_hash", "repeat", "device"]].astype(str).agg("\x1f".join, axis=1)
        order = pd.DataFrame({"key": key.to_numpy(), "epoch": p.epoch[rows], "row": rows})
        best = order.sort_values(["key", "epoch"], kind="stable").groupby("key").tail(1)
        rows = np.sort(best["row"].to_numpy())
        b = np.full(rows.size, float(budget))
        x = _features(p, rows)
        if self.method == "learned" and np.isfinite(self.trained_horizon[1]):
            beyond = (budget / p.epoch[rows]) > self.trained_horizon[1] * 1.5
            if beyond.any():
                self.notes.append(
                    f"{int(beyond.sum())} run(s) extrapolated beyond the learned horizon "
                    f"(budget/checkpoint up to {self.trained_horizon[1]:g}): the rate correction "
                    "is carried over as learned")
        pred = {name: self._predict_rows(p, rows, b, name, self.models, x) for name in TARGETS}
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
        for name, col in (("energy_j", "energy_j"), ("training_time_s", "training_time_s")):
            low, high = bounds(pred[name], self.quantile.get(name, math.inf))
            out[f"{col}_low"] = low
            out[f"{col}_high"] = high
        out["short_epoch"] = p.epoch[rows]
        out["method"] = self.method
        return out

    # -- storage (see modelfile)
    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta: dict[str, Any] = {
            "min_runs": self.min_runs, "level": self.level, "folds": self.folds, "seed": self.seed,
            "method": self.method, "startup_epochs": self.startup_epochs,
            "quantile": {k: (None if not math.isfinite(v) else v) for k, v in self.quantile.items()},
            "trained_horizon": [None if math.isnan(v) else v for v in self.trained_horizon],
            "n_full_runs": self.n_full_runs, "notes": list(self.notes), "models": {},
        }
        meta["models"], arrays = pack_models(self.models)
        return meta, arrays

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Extrapolator:
        models = {}
        for name, m_meta in meta.get("models", {}).items():
            models[name] = LinearModel.from_state(m_meta, model_arrays(arrays, name))
        horizon = tuple(math.nan if v is None else float(v) for v in meta["trained_horizon"])
        return cls(min_runs=int(meta["min_runs"]), level=float(meta["level"]),
                   folds=int(meta["folds"]), seed=int(meta["seed"]), method=str(meta["method"]),
                   models=models, startup_epochs={k: float(v) for k, v in meta["startup_epochs"].items()},
                   quantile={k: (math.inf if v is None else float(v)) for k, v in meta["quantile"].items()},
                   trained_horizon=(horizon[0], horizon[1]), n_full_runs=int(meta["n_full_runs"]),
                   notes=list(meta.get("notes", [])))


def _empty_prediction() -> pd.DataFrame:
    from ecnas.tables import empty_table

    out = empty_table()
    for col in ("energy_j_low", "energy_j_high", "training_time_s_low", "training_time_s_high",
                "short_epoch"):
        out[col] = pd.Series([], dtype="float64")
    out["method"] = pd.Series([], dtype=str)
    return out
