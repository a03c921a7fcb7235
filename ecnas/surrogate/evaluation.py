"""Held-out evaluation of both surrogates against the baselines users would otherwise use.

Architectures are split at random (seeded): ``train_fraction`` to fit, 10% to calibrate
(model choice and conformal intervals), the rest to test. On the test architectures:

* architecture surrogate vs *parameters only* (log-linear in the parameter count), and, as a
  reference, how well each run's *measured* training time ranks its energy (the noise floor);
* extrapolator (fitted on ``full_budget_fraction`` of all architectures measured to full
  budget, the others' short checkpoints only) vs *linear scaling* ``y(s)·B/s``, the per-run
  start-up + rate model alone, and carbontracker's own forecast when the table has it; as a
  reference, *measured-future-time*: each run's power over its short checkpoints times its
  measured remaining training time (what knowing the future training time gives; the rest is
  the power noise of the later checkpoints).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from ecnas.errors import InputError
from ecnas.space.cost import NetworkShape
from ecnas.surrogate import metrics
from ecnas.surrogate.architecture import ArchitectureSurrogate, training_set
from ecnas.surrogate.extrapolation import Extrapolator
from ecnas.surrogate.features import batch_from_strings, cell_features
from ecnas.surrogate.learners import LinearModel

CAL_FRACTION = 0.1
J_PER_WH = 3600.0


@dataclass(frozen=True)
class Score:
    """One model's accuracy on one target over the held-out architectures."""

    model: str
    target: str  # energy_j | training_time_s
    n: int
    mape_pct: float
    mae: float  # in the target's unit (J or s)
    mae_wh: float  # energy only: J / 3600, PUE excluded (NaN for time)
    mae_wh_pue: float  # energy only: × the table's PUE, EC-NAS's basis (NaN if unknown)
    r2: float
    kendall_tau: float
    coverage_pct: float  # NaN for models without intervals
    level_pct: float


@dataclass(frozen=True)
class EvaluationReport:
    budget: int
    short_epoch: float
    seed: int
    train_fraction: float
    full_budget_fraction: float
    n_architectures: int
    n_train: int
    n_calibration: int
    n_test: int
    n_full_budget: int
    pue: float | None
    scores: tuple[Score, ...]
    selection: dict[str, dict[str, float]]
    fit_seconds: dict[str, float]
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["scores"] = [asdict(s) for s in self.scores]
        d["notes"] = list(self.notes)
        d["energy_basis"] = ("energy_j and mae_wh exclude PUE; mae_wh_pue multiplies by the "
                             "table's PUE (EC-NAS's published basis)")
        return d

    def score(self, model: str, target: str = "energy_j") -> Score:
        for s in self.scores:
            if s.model == model and s.target == target:
                return s
        raise KeyError(f"no score for model {model!r}, target {target!r}")


def _score(model: str, target: str, pred: np.ndarray, true: np.ndarray, pue: float | None,
           low: np.ndarray | None = None, high: np.ndarray | None = None,
           level: float = math.nan) -> Score:
    ok = np.isfinite(pred) & np.isfinite(true)
    p, t = pred[ok], true[ok]
    if p.size == 0:
        raise InputError(f"evaluation of {model}: no finite prediction to score")
    err = metrics.mae(p, t)
    energy = target == "energy_j"
    cov = (metrics.coverage(low[ok], high[ok], t) if low is not None and high is not None
           else math.nan)
    return Score(model, target, int(p.size), metrics.mape(p, t), err,
                 err / J_PER_WH if energy else math.nan,
                 err / J_PER_WH * pue if energy and pue else math.nan,
                 metrics.r2(p, t), metrics.kendall_tau(p, t), cov,
                 level * 100 if math.isfinite(level) else math.nan)


def evaluate(table: pd.DataFrame, train_fraction: float = 0.7, seed: int = 0, *,
             full_budget_fraction: float = 0.2, level: float = 0.9, kind: str = "auto",
             budget: int | None = None, shape: NetworkShape | None = None,
             image_size: int = 32) -> EvaluationReport:
    if not 0.0 < train_fraction < 1.0 - CAL_FRACTION:
        raise InputError(f"train fraction must be in (0, {1 - CAL_FRACTION:g}) (10% calibrates, "
                         f"the rest tests), got {train_fraction!r}")
    if not 0.0 < full_budget_fraction <= 1.0:
        raise InputError(f"full-budget fraction must be in (0, 1], got {full_budget_fraction!r}")
    ts = training_set(table, budget)
    b = ts.budget
    from ecnas.tables.metadata import get_metadata

    pue = (get_metadata(table).get("pue") or {}).get("factor")
    runs = table[(table["budget_epochs"] == b) & (table["device"].astype(str) == ts.device)]
    archs = np.array(sorted(set(zip(ts.matrix, ts.ops, strict=True))), dtype=object)
    n = len(archs)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    n_train = int(round(train_fraction * n))
    n_cal = int(round(CAL_FRACTION * n))
    n_test = n - n_train - n_cal
    if n_test < 5 or n_train + n_cal < 10:
        raise InputError(f"{n} architectures measured to budget {b}: too few to hold out a test set")
    test_keys = {tuple(a) for a in archs[perm[n_train + n_cal :]]}
    fit_keys = {tuple(a) for a in archs[perm[: n_train + n_cal]]}
    key = list(zip(runs["matrix"].astype(str), runs["ops"].astype(str), strict=True))
    in_test = np.array([k in test_keys for k in key])
    in_fit = np.array([k in fit_keys for k in key])
    notes: list[str] = []
    scores: list[Score] = []
    seconds: dict[str, float] = {}

    # -- architecture surrogate vs parameters only, on the test architectures
    fit_table = runs[in_fit]
    t0 = time.perf_counter()
    shape = shape or NetworkShape()
    arch = ArchitectureSurrogate(kind=kind, level=level, seed=seed, shape=shape, image_size=image_size,
                                 cal_fraction=n_cal / (n_train + n_cal)).fit(fit_table, b)
    seconds["architecture"] = time.perf_counter() - t0
    test_ts = training_set(runs[in_test], b)
    pred = arch.predict(pd.DataFrame({"matrix": test_ts.matrix, "ops": test_ts.ops}), b)
    fit_ts = training_set(fit_table, b)
    x_fit = cell_features(batch_from_strings(fit_ts.matrix, fit_ts.ops), shape=shape,
                          image_size=image_size)[:, :1]
    x_test = cell_features(batch_from_strings(test_ts.matrix, test_ts.ops), shape=shape,
                           image_size=image_size)[:, :1]
    for target in ("energy_j", "training_time_s"):
        true = np.exp(test_ts.y[target])
        scores.append(_score("architecture", target, pred[target].to_numpy(), true, pue,
                             pred[f"{target}_low"].to_numpy(), pred[f"{target}_high"].to_numpy(), level))
        base = LinearModel(alpha=1e-3).fit(x_fit, fit_ts.y[target])
        scores.append(_score("params-only", target, np.exp(base.predict(x_test)), true, pue))
    ref = _score("measured-time-rank", "energy_j", np.exp(test_ts.y["training_time_s"]),
                 np.exp(test_ts.y["energy_j"]), pue)
    scores.append(Score(ref.model, ref.target, ref.n, math.nan, math.nan, math.nan, math.nan,
                        math.nan, ref.kendall_tau, math.nan, math.nan))

    # -- extrapolator: full-budget runs from a fraction of the non-test architectures
    pool = perm[: n_train + n_cal]
    k_full = min(int(round(full_budget_fraction * n)), pool.size)
    full_keys = {tuple(a) for a in archs[pool[:k_full]]}
    all_key = list(zip(table["matrix"].astype(str), table["ops"].astype(str), strict=True))
    full_table = table[[k in full_keys for k in all_key]]
    t0 = time.perf_counter()
    ext = Extrapolator(level=level, seed=seed).fit(full_table)
    seconds["extrapolator"] = time.perf_counter() - t0
    notes += ext.notes
    test_runs = runs[in_test]
    short = test_runs[test_runs["epoch"] < b - 1e-9]
    truth = test_runs[np.isclose(test_runs["epoch"].to_numpy(float), b)]
    rk = ["arch_hash", "repeat", "device"]
    truth = truth.set_index(rk)
    short_epoch = math.nan
    if short.empty or not (short["epoch"] > 0).any():
        notes.append("test runs hold no checkpoint between epoch 0 and the budget: "
                      "extrapolation not evaluated")
    else:
        pe = ext.predict(short, b).set_index(rk)
        phys = Extrapolator(min_runs=10**9, level=level, seed=seed).fit(full_table).predict(short, b)
        phys = phys.set_index(rk).loc[pe.index]
        tr = truth.loc[pe.index]
        short_epoch = float(np.median(pe["short_epoch"]))
        last = short[short["epoch"] > 0].sort_values("epoch").groupby(rk).tail(1).set_index(rk).loc[pe.index]
        for target in ("energy_j", "training_time_s"):
            true = tr[target].to_numpy(float)
            scores.append(_score("extrapolator", target, pe[target].to_numpy(float), true, pue,
                                 pe[f"{target}_low"].to_numpy(float),
                                 pe[f"{target}_high"].to_numpy(float), level))
            scores.append(_score("per-run-linear", target, phys[target].to_numpy(float), true, pue,
                                 phys[f"{target}_low"].to_numpy(float),
                                 phys[f"{target}_high"].to_numpy(float), level))
            scaled = last[target].to_numpy(float) * b / last["epoch"].to_numpy(float)
            scores.append(_score("linear-scaling", target, scaled, true, pue))
        first = short[short["epoch"] == 0].groupby(rk).head(1).set_index(rk).reindex(pe.index)
        if first["energy_j"].notna().any():
            # Reference, not a model: the run's own power over its first part times the
            # *measured* rest of its training time (which no extrapolator knows). What is left
            # is the power noise of the later checkpoints, which no model of the short
            # checkpoints can predict.
            with np.errstate(divide="ignore", invalid="ignore"):
                e_s, t_s = last["energy_j"].to_numpy(float), last["training_time_s"].to_numpy(float)
                power = (e_s - first["energy_j"].to_numpy(float)) / (
                    t_s - first["training_time_s"].to_numpy(float))
                known = e_s + power * (tr["training_time_s"].to_numpy(float) - t_s)
            ok = np.isfinite(known)
            if ok.any():
                ref = _score("measured-future-time", "energy_j", known[ok],
                             tr["energy_j"].to_numpy(float)[ok], pue)
                scores.append(ref)
        if "predicted_energy_j" in tr.columns and tr["predicted_energy_j"].notna().any():
            scores.append(_score("carbontracker-forecast", "energy_j",
                                 tr["predicted_energy_j"].to_numpy(float),
                                 tr["energy_j"].to_numpy(float), pue))
    if pue is None:
        notes.append("table records no PUE: mae_wh_pue is not computed")
    return EvaluationReport(
        budget=b, short_epoch=short_epoch, seed=seed, train_fraction=train_fraction,
        full_budget_fraction=full_budget_fraction, n_architectures=n, n_train=n_train,
        n_calibration=n_cal, n_test=n_test, n_full_budget=k_full, pue=pue,
        scores=tuple(scores), selection=dict(arch.selection), fit_seconds=seconds,
        notes=tuple(notes + arch.notes))
