"""Model-based multi-objective search: Optuna's multi-objective TPE (optional extra
``ecnas[search]``), with the benchmark as its objective; and Optuna's NSGA-II sampler on the
same encoding (``optuna_nsga2``), a cross-check of ecnas's own ``nsga2`` against a
well-kept implementation.

Encoding: TPE models a few continuous descriptors of a cell, each scaled to [0, 1] over the
benchmark: log trainable parameters, the number of conv3x3, conv1x1 and max-pool vertices, the
number of edges and of vertices. A proposal is snapped to the nearest (Euclidean) architecture
of the domain not yet evaluated in this run, and the trial is told the descriptors of the
architecture actually evaluated, so the model learns from what was measured. The first two
trials are the corners of the descriptor box (the smallest and the largest cells: the
extremes of an energy–accuracy front), then min(10, μ + 2) random start-up trials. A categorical
encoding of the cell (adjacency bits and ops) proposes mostly invalid or absent cells: the
snap would then be the only thing that works, and TPE's categorical kernels cannot see that
two cells with similar size cost similar energy.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import optuna

#: random proposals before TPE's model takes over
STARTUP_TRIALS = 10


def descriptors(bench: Any) -> np.ndarray:
    """``[architectures, 6]`` descriptors of every architecture of ``bench``, each scaled to
    [0, 1] over the benchmark (see the module's docs)."""
    lay = bench.layout
    ops = [str(o).split(",") for o in lay.ops.tolist()]
    cols = np.column_stack([
        np.log(np.maximum(lay.trainable_params.astype(float), 1.0)),
        [o.count("conv3x3-bn-relu") for o in ops],
        [o.count("conv1x1-bn-relu") for o in ops],
        [o.count("maxpool3x3") for o in ops],
        [str(m).count("1") for m in lay.matrix.tolist()],
        [len(o) for o in ops],
    ]).astype(float)
    low, high = cols.min(axis=0), cols.max(axis=0)
    return (cols - low) / np.where(high > low, high - low, 1.0)


def tpe_search(s: Any, mu: int) -> None:
    """Run TPE on the search state ``s`` (``search._Search``; not imported, so the two
    modules stay acyclic) until its budget stops it (``s.evaluate`` raises)."""
    sampler = optuna.samplers.TPESampler(seed=int(s.rng.integers(2**31)),
                                         n_startup_trials=min(STARTUP_TRIALS, mu + 2),
                                         multivariate=True)
    # the initial design starts at the two corners of the descriptor box (the smallest and the
    # largest cells), where the extremes of an energy-accuracy front lie, then random trials
    _optuna_search(s, sampler, corners=True)


def nsga2_search(s: Any, mu: int) -> None:
    """Run Optuna's NSGA-II sampler (population μ, its default crossover and mutation on the
    descriptors) on the search state ``s``, with the same snapping as :func:`tpe_search`."""
    sampler = optuna.samplers.NSGAIISampler(population_size=max(2, mu),
                                            seed=int(s.rng.integers(2**31)))
    _optuna_search(s, sampler, corners=False)


def _optuna_search(s: Any, sampler: Any, *, corners: bool) -> None:
    optuna.logging.set_verbosity(logging.WARNING)
    x = descriptors(s.bench)
    names = [f"d{k}" for k in range(x.shape[1])]
    dists: dict[str, optuna.distributions.BaseDistribution] = {
        n: optuna.distributions.FloatDistribution(0.0, 1.0) for n in names}
    study = optuna.create_study(directions=["minimize"] * len(s.objs), sampler=sampler)
    if corners:
        for corner in (0.0, 1.0):
            study.enqueue_trial(dict.fromkeys(names, corner))
    s.values(s.budget)
    seen = s.seen[s.budget]
    while True:
        trial = study.ask(dists)
        want = np.array([trial.params[n] for n in names])
        free = np.nonzero(s.allowed & ~seen)[0]
        if len(free) == 0:
            s.fresh()  # raises the stop that says the domain is exhausted
        a = int(free[int(np.argmin(((x[free] - want) ** 2).sum(axis=1)))])
        p = s.evaluate(a)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        if p is not None:
            study.add_trial(optuna.trial.create_trial(
                params={n: float(v) for n, v in zip(names, x[a], strict=True)},
                distributions=dists, values=[float(v) for v in p]))
