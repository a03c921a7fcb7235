"""Held-out evaluation of both surrogates against the baselines users would otherwise use.

Architectures are split at random (seeded): ``train_fraction`` to fit, 10% to calibrate
(model choice and conformal intervals), the rest to test. On the test architectures:

* architecture surrogate vs *parameters only* (log-linear in the parameter count), and, as a
  reference, how well each run's *measured* training time ranks its energy (the noise floor);
* extrapolator (fitted on ``full_budget_fraction`` of all architectures measured to full
  budget, the others' short checkpoints only) vs *linear scaling* ``y(s)·B/s``, the per-run
  start-up + rate model alone, *least squares* of the final value on the checkpoints'
  energies and times (``[1, E(s), E(s) − E(prev), T(s), T(s) − T(prev)]``, fitted on the same
  full-budget runs) and carbontracker's own forecast when the table has it; as a
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
from ecnas.surrogate.architecture import ArchitectureSurrogate, TrainingSet, training_set
from ecnas.surrogate.extrapolation import Extrapolator
from ecnas.surrogate.features import batch_from_strings, cell_features
from ecnas.surrogate.learners import LinearModel
from ecnas.tables.metadata import get_metadata

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
    """What ``ecnas surrogate evaluate`` measured: the split (seed, fractions, architectures on
    each side), every model's score on each target, the learner selection, fitting times (s) and
    notes."""

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
        """The report as plain data for ``--json``, with a note on the energy basis (PUE
        excluded except in ``mae_wh_pue``)."""
        d = asdict(self)
        d["scores"] = [asdict(s) for s in self.scores]
        d["notes"] = list(self.notes)
        d["energy_basis"] = ("energy_j and mae_wh exclude PUE; mae_wh_pue multiplies by the "
                             "table's PUE (EC-NAS's published basis)")
        return d

    def score(self, model: str, target: str = "energy_j") -> Score:
        """The score of ``model`` on ``target``; a KeyError when there is none."""
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


@dataclass(frozen=True)
class _Split:
    """The held-out split by architecture: which runs fit, which test, which full budgets the
    extrapolator sees."""

    budget: int
    runs: pd.DataFrame  # the table's runs at the budget, on the surrogate's device
    in_fit: np.ndarray  # per row of runs: the cell trains or calibrates
    in_test: np.ndarray
    full_keys: set[tuple[str, str]]  # cells whose full-budget runs the extrapolator sees
    n: int
    n_train: int
    n_cal: int
    n_test: int


def _check_fractions(train_fraction: float, full_budget_fraction: float) -> None:
    if not 0.0 < train_fraction < 1.0 - CAL_FRACTION:
        raise InputError(f"train fraction must be in (0, {1 - CAL_FRACTION:g}) (10% calibrates, "
                         f"the rest tests), got {train_fraction!r}")
    if not 0.0 < full_budget_fraction <= 1.0:
        raise InputError(f"full-budget fraction must be in (0, 1], got {full_budget_fraction!r}")


def _split(table: pd.DataFrame, ts: TrainingSet, train_fraction: float, seed: int,
           full_budget_fraction: float) -> _Split:
    """Cells shuffled (seeded): train, calibrate, test; the extrapolator's full-budget cells
    are drawn from the non-test ones."""
    b = ts.budget
    runs = table[(table["budget_epochs"] == b) & (table["device"].astype(str) == ts.device)]
    archs = np.array(sorted(set(zip(ts.matrix, ts.ops, strict=True))), dtype=object)
    n = len(archs)
    perm = np.random.default_rng(seed).permutation(n)
    n_train = int(round(train_fraction * n))
    n_cal = int(round(CAL_FRACTION * n))
    n_test = n - n_train - n_cal
    if n_test < 5 or n_train + n_cal < 10:
        raise InputError(f"{n} architectures measured to budget {b}: too few to hold out a test set")
    test_keys = {tuple(a) for a in archs[perm[n_train + n_cal :]]}
    fit_keys = {tuple(a) for a in archs[perm[: n_train + n_cal]]}
    key = list(zip(runs["matrix"].astype(str), runs["ops"].astype(str), strict=True))
    pool = perm[: n_train + n_cal]
    k_full = min(int(round(full_budget_fraction * n)), pool.size)
    return _Split(b, runs, np.array([k in fit_keys for k in key]),
                  np.array([k in test_keys for k in key]),
                  {tuple(a) for a in archs[pool[:k_full]]}, n, n_train, n_cal, n_test)


def _score_architecture(split: _Split, arch: ArchitectureSurrogate, pue: float | None,
                        level: float, shape: NetworkShape, image_size: int) -> list[Score]:
    """The architecture surrogate vs parameters only on the test cells, and how well the
    measured training time itself ranks the energies (a reference, when the table has times)."""
    b = split.budget
    test_ts = training_set(split.runs[split.in_test], b)
    fit_ts = training_set(split.runs[split.in_fit], b)
    pred = arch.predict(pd.DataFrame({"matrix": test_ts.matrix, "ops": test_ts.ops}), b)
    x_fit = cell_features(batch_from_strings(fit_ts.matrix, fit_ts.ops), shape=shape,
                          image_size=image_size)[:, :1]
    x_test = cell_features(batch_from_strings(test_ts.matrix, test_ts.ops), shape=shape,
                           image_size=image_size)[:, :1]
    scores = []
    for target in ("energy_j", "training_time_s"):
        true = np.exp(test_ts.y[target])
        have = np.isfinite(fit_ts.y[target])
        if target not in arch.models or not np.isfinite(true).any() or have.sum() < 2:
            continue  # the table does not hold this target
        scores.append(_score("architecture", target, pred[target].to_numpy(), true, pue,
                             pred[f"{target}_low"].to_numpy(), pred[f"{target}_high"].to_numpy(), level))
        base = LinearModel(alpha=1e-3).fit(x_fit[have], fit_ts.y[target][have])
        scores.append(_score("params-only", target, np.exp(base.predict(x_test)), true, pue))
    if np.isfinite(test_ts.y["training_time_s"]).sum() >= 2:
        ref = _score("measured-time-rank", "energy_j", np.exp(test_ts.y["training_time_s"]),
                     np.exp(test_ts.y["energy_j"]), pue)
        scores.append(Score(ref.model, ref.target, ref.n, math.nan, math.nan, math.nan, math.nan,
                            math.nan, ref.kendall_tau, math.nan, math.nan))
    return scores


def _score_extrapolation(table: pd.DataFrame, split: _Split, ext: Extrapolator,
                         pue: float | None, level: float,
                         seed: int) -> tuple[list[Score], float, list[str]]:
    """The extrapolator vs the per-run model, least squares, linear scaling, the
    measured-future-time reference and carbontracker's forecast, on the test runs cut before
    their budget. Returns the scores, the median cut epoch and notes."""
    b = split.budget
    test_runs = split.runs[split.in_test]
    short = test_runs[test_runs["epoch"] < b - 1e-9]
    if short.empty or not (short["epoch"] > 0).any():
        return [], math.nan, ["test runs hold no checkpoint between epoch 0 and the budget: "
                              "extrapolation not evaluated"]
    rk = ["arch_hash", "repeat", "device"]
    truth = test_runs[np.isclose(test_runs["epoch"].to_numpy(float), b)].set_index(rk)
    full_table = _full_budget_table(table, split)
    pe = ext.predict(short, b).set_index(rk)
    baselines = {name: Extrapolator(level=level, seed=seed, candidates=(cand,)).fit(full_table)
                 .predict(short, b).set_index(rk).loc[pe.index]
                 for name, cand in (("per-run-linear", "per-run"), ("least-squares", "least-squares"))}
    tr = truth.loc[pe.index]
    last = (short[short["epoch"] > 0].sort_values("epoch").groupby(rk).tail(1).set_index(rk)
            .loc[pe.index])
    scores = []
    for target in ("energy_j", "training_time_s"):
        true = tr[target].to_numpy(float)
        if not np.isfinite(pe[target].to_numpy(float)).any() or not np.isfinite(true).any():
            continue  # the table does not hold this target
        scores.append(_score("extrapolator", target, pe[target].to_numpy(float), true, pue,
                             pe[f"{target}_low"].to_numpy(float),
                             pe[f"{target}_high"].to_numpy(float), level))
        for name, bp in baselines.items():
            scores.append(_score(name, target, bp[target].to_numpy(float), true, pue,
                                 bp[f"{target}_low"].to_numpy(float),
                                 bp[f"{target}_high"].to_numpy(float), level))
        scaled = last[target].to_numpy(float) * b / last["epoch"].to_numpy(float)
        scores.append(_score("linear-scaling", target, scaled, true, pue))
    scores += _references(short, last, tr, pe.index, rk, pue)
    return scores, float(np.median(pe["short_epoch"])), []


def _full_budget_table(table: pd.DataFrame, split: _Split) -> pd.DataFrame:
    key = list(zip(table["matrix"].astype(str), table["ops"].astype(str), strict=True))
    return table[[k in split.full_keys for k in key]]


def _references(short: pd.DataFrame, last: pd.DataFrame, tr: pd.DataFrame, index: pd.Index,
                rk: list[str], pue: float | None) -> list[Score]:
    """Rows that are not models: what knowing each run's future training time gives, and
    carbontracker's own forecast."""
    scores = []
    first = short[short["epoch"] == 0].groupby(rk).head(1).set_index(rk).reindex(index)
    if first["energy_j"].notna().any():
        # The run's own power over its first part times the *measured* rest of its training
        # time (which no extrapolator knows). What is left is the power noise of the later
        # checkpoints, which no model of the short checkpoints can predict.
        with np.errstate(divide="ignore", invalid="ignore"):
            e_s, t_s = last["energy_j"].to_numpy(float), last["training_time_s"].to_numpy(float)
            power = (e_s - first["energy_j"].to_numpy(float)) / (
                t_s - first["training_time_s"].to_numpy(float))
            known = e_s + power * (tr["training_time_s"].to_numpy(float) - t_s)
        ok = np.isfinite(known)
        if ok.any():
            scores.append(_score("measured-future-time", "energy_j", known[ok],
                                 tr["energy_j"].to_numpy(float)[ok], pue))
    if "predicted_energy_j" in tr.columns and tr["predicted_energy_j"].notna().any():
        scores.append(_score("carbontracker-forecast", "energy_j",
                             tr["predicted_energy_j"].to_numpy(float),
                             tr["energy_j"].to_numpy(float), pue))
    return scores


def evaluate(table: pd.DataFrame, train_fraction: float = 0.7, seed: int = 0, *,
             full_budget_fraction: float = 0.2, level: float = 0.9, kind: str = "auto",
             budget: int | None = None, shape: NetworkShape | None = None,
             image_size: int = 32) -> EvaluationReport:
    """Held-out accuracy of both surrogates and of the baselines on ``table``.

    Steps: split the cells (``_split``: ``train_fraction`` to fit, 10% to calibrate, the rest
    to test; the extrapolator sees the full-budget runs of ``full_budget_fraction`` of all
    cells, drawn from the non-test ones); fit the architecture surrogate on the fit cells and
    score it against parameters only (``_score_architecture``); fit the extrapolator on the
    full-budget cells and score it on the test runs cut before their budget against its
    baselines (``_score_extrapolation``). Targets the table does not hold are not scored.
    """
    _check_fractions(train_fraction, full_budget_fraction)
    ts = training_set(table, budget)
    split = _split(table, ts, train_fraction, seed, full_budget_fraction)

    pue = (get_metadata(table).get("pue") or {}).get("factor")
    shape = shape or NetworkShape()
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    arch = ArchitectureSurrogate(kind=kind, level=level, seed=seed, shape=shape, image_size=image_size,
                                 cal_fraction=split.n_cal / (split.n_train + split.n_cal)
                                 ).fit(split.runs[split.in_fit], split.budget)
    seconds["architecture"] = time.perf_counter() - t0
    scores = _score_architecture(split, arch, pue, level, shape, image_size)
    t0 = time.perf_counter()
    ext = Extrapolator(level=level, seed=seed).fit(_full_budget_table(table, split))
    seconds["extrapolator"] = time.perf_counter() - t0
    ext_scores, short_epoch, notes = _score_extrapolation(table, split, ext, pue, level, seed)
    notes = list(ext.notes) + notes
    if pue is None:
        notes.append("table records no PUE: mae_wh_pue is not computed")
    return EvaluationReport(
        budget=split.budget, short_epoch=short_epoch, seed=seed, train_fraction=train_fraction,
        full_budget_fraction=full_budget_fraction, n_architectures=split.n, n_train=split.n_train,
        n_calibration=split.n_cal, n_test=split.n_test, n_full_budget=len(split.full_keys),
        pue=pue, scores=tuple(scores + ext_scores), selection=dict(arch.selection),
        fit_seconds=seconds, notes=tuple(notes + arch.notes))
