"""Surrogate room benchmarks: fit on 3,000 cells and predict the 7-vertex space, featurize,
fit the extrapolator on and extrapolate the real 5V runs, evaluate.

Full scale: ``python3 -m pytest -q benchmarks/bench_surrogate.py``. With ``ECNAS_BENCH_QUICK=1``
the 423,000 predicted cells shrink to 42,300.

The 3,000 training cells are drawn uniformly from the 7-vertex space (``sample_cells``, seed
0, distinct); their 4-epoch energy and time are *labels from a teacher*: a ridge surrogate
fitted on the real EC-NAS 5V runs, times 2% seeded log-normal noise (no 7-vertex energies are
in the repository). The 423,000 predicted cells are the first 423,000 of the deduplicated
7-vertex enumeration (``enumerate_cells``; 423,624 in all).
"""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd
import pytest

from ecnas.interop.ecnas_tree import import_results_tree
from ecnas.space import enumerate_cells, sample_cells
from ecnas.surrogate import ArchitectureSurrogate, Extrapolator, SurrogateModel, evaluate
from ecnas.surrogate.features import batch_from_specs, cell_features

QUICK = os.environ.get("ECNAS_BENCH_QUICK") == "1"
N_PREDICT = 42_300 if QUICK else 423_000
N_TRAIN = 3_000


@pytest.fixture(scope="module")
def table_5v(ecnas_5v_dir):
    return import_results_tree(ecnas_5v_dir)


@pytest.fixture(scope="module")
def train_7v(table_5v):
    teacher = ArchitectureSurrogate(kind="linear").fit(table_5v)
    cells = sample_cells(N_TRAIN, seed=0)
    pred = teacher.predict(cells, 4)
    noise = np.exp(np.random.default_rng(0).normal(0.0, 0.02, (2, len(cells))))
    return pd.DataFrame({
        "matrix": pred["matrix"], "ops": pred["ops"], "budget_epochs": 4, "epoch": 4.0,
        "repeat": 1, "device": "nvidia-quadro-rtx-6000", "arch_hash": [f"c{i}" for i in range(len(cells))],
        "energy_j": pred["energy_j"] * noise[0], "training_time_s": pred["training_time_s"] * noise[1],
        "wall_time_s": pred["wall_time_s"] * noise[1],
    })


@pytest.fixture(scope="module")
def space_7v():
    return enumerate_cells(7, 9)[:N_PREDICT]


def test_fit_3000_and_predict_the_7v_space(benchmark, train_7v, space_7v):
    """What the issue asks under 60 s: fit on 3,000 cells, predict 423,000 at 108 epochs."""
    times = {}

    def run():
        t0 = time.perf_counter()
        model = SurrogateModel().fit(train_7v)
        t1 = time.perf_counter()
        pred = model.architecture.predict(space_7v, 108)
        times.update(fit_s=t1 - t0, predict_s=time.perf_counter() - t1)
        return model, pred

    model, pred = benchmark.pedantic(run, rounds=1, iterations=1)
    assert len(pred) == len(space_7v)
    benchmark.extra_info.update(cells_fit=len(train_7v), cells_predicted=len(pred),
                                learner=type(model.architecture.models["energy_j"]).__name__,
                                **{k: round(v, 2) for k, v in times.items()})


def test_predict_only_7v_space_mlp(benchmark, train_7v, space_7v):
    """Prediction alone with the heavier learner (the MLP ensemble) forced."""
    arch = ArchitectureSurrogate(kind="mlp").fit(train_7v)
    pred = benchmark.pedantic(arch.predict, args=(space_7v, 108), rounds=3, iterations=1)
    benchmark.extra_info["cells"] = len(pred)


def test_features_7v_space(benchmark, space_7v):
    def run():
        return cell_features(batch_from_specs(space_7v))

    x = benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.extra_info["cells"] = x.shape[0]


def test_fit_extrapolator_5v(benchmark, table_5v):
    """Fit on all 2,532 5V runs: five candidates cross-validated over 10 grouped folds, for
    energy, training time and wall time, plus the CV+ calibration."""
    ext = benchmark.pedantic(Extrapolator().fit, args=(table_5v,), rounds=3, iterations=1)
    benchmark.extra_info["chosen_energy"] = ext.targets["energy_j"].chosen


def test_extrapolate_5v_runs(benchmark, table_5v):
    ext = Extrapolator().fit(table_5v)
    short = table_5v[table_5v["epoch"] <= 2]
    pred = benchmark(ext.predict, short, 108)
    benchmark.extra_info["runs"] = len(pred)


def test_evaluate_5v(benchmark, table_5v):
    report = benchmark.pedantic(evaluate, args=(table_5v, 0.7, 0), rounds=1, iterations=1)
    arch = report.score("architecture")
    benchmark.extra_info.update(tau=round(arch.kendall_tau, 4), mae_wh_pue=round(arch.mae_wh_pue, 3),
                                extrapolation_mape=round(report.score("extrapolator").mape_pct, 3))
