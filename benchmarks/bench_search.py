"""Issue 34's acceptance table on the shipped EC-NAS 5V table: the fraction of the true front's
hypervolume (energy and 1 − validation accuracy at 4 epochs, min–max scaled over the table,
reference (1.1, 1.1)) reached after N evaluations, mean of 10 seeds, per algorithm; Optuna's
TPE at small N with its time per proposal; Optuna's NSGA-II beside ours; SH-EMOA over 4/12/36/108 epochs against SEMOA at
equal charged training time; the evolutionary baselines' overhead per evaluation.

Full: python3 -m pytest -q -s benchmarks/bench_search.py (prints the tables; the numbers are
also in each benchmark's extra_info). ECNAS_BENCH_QUICK=1: 3 seeds, N up to 250.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from ecnas.benchmark.moo import run_search, with_fidelities

QUICK = os.environ.get("ECNAS_BENCH_QUICK") == "1"
SEEDS = range(3 if QUICK else 10)
NS = (25, 50, 100, 250) if QUICK else (25, 50, 100, 250, 1000, 2532)
TPE_NS = (10, 25, 50) if QUICK else (10, 25, 50, 100)


@pytest.fixture(scope="module")
def table(ecnas_5v_dir):
    from ecnas.interop import import_ecnas

    return import_ecnas(ecnas_5v_dir)


@pytest.fixture(scope="module")
def bench(table):
    from ecnas.benchmark import Benchmark

    return Benchmark.from_table(table, seed=0)


def _fractions(bench, algorithm, ns):
    runs = [run_search(bench, algorithm, max(ns), s, budget=4) for s in SEEDS]
    assert all(len(set(r.evaluated)) == r.evaluations == max(ns) for r in runs)
    return {n: float(np.mean([r.trajectory.fraction_at(n) for r in runs])) for n in ns}


@pytest.mark.parametrize("algorithm", ["random", "semoa", "nsga2"])
def test_fraction_of_true_front_by_evaluations(benchmark, bench, algorithm):
    t0 = time.perf_counter()
    frac = benchmark.pedantic(_fractions, args=(bench, algorithm, NS), rounds=1, iterations=1)
    per_eval_ms = (time.perf_counter() - t0) / (len(SEEDS) * max(NS)) * 1e3
    benchmark.extra_info.update({"fraction": frac, "ms_per_evaluation": per_eval_ms,
                                 "seeds": len(SEEDS), "loadavg": os.getloadavg()[0]})
    print(f"\n{algorithm:8s} " + " ".join(f"N={n}: {f:.4f}" for n, f in frac.items())
          + f"  ({per_eval_ms:.3f} ms/evaluation incl. the benchmark lookups, load "
            f"{os.getloadavg()[0]:.1f})")


@pytest.mark.parametrize("algorithm", ["semoa", "nsga2"])
def test_first_search_on_a_fresh_benchmark(benchmark, table, algorithm):
    """One 100-evaluation search on a benchmark just loaded: the mutation graph's one-off build
    (once per benchmark) included, what a user's first `ecnas search` pays per evaluation."""
    from ecnas.benchmark import Benchmark

    def run():
        fresh = Benchmark.from_table(table, seed=0)  # no graph cached yet
        t0 = time.perf_counter()
        run_search(fresh, algorithm, 100, 0, budget=4)
        return time.perf_counter() - t0

    seconds = benchmark.pedantic(run, rounds=3 if QUICK else 5, iterations=1)
    benchmark.extra_info["ms_per_evaluation_first_search"] = seconds * 10
    print(f"\n{algorithm}: first 100-evaluation search on a fresh benchmark "
          f"{seconds * 1e3:.0f} ms ({seconds * 10:.2f} ms/evaluation, graph build included, "
          f"load {os.getloadavg()[0]:.1f})")


def test_tpe_at_small_budgets(benchmark, bench):
    pytest.importorskip("optuna", reason="the model-based search needs ecnas[search]")
    t0 = time.perf_counter()
    frac = benchmark.pedantic(_fractions, args=(bench, "tpe", TPE_NS), rounds=1, iterations=1)
    per = (time.perf_counter() - t0) / (len(SEEDS) * max(TPE_NS)) * 1e3
    benchmark.extra_info.update({"fraction": frac, "ms_per_proposal": per})
    print("\ntpe      " + " ".join(f"N={n}: {f:.4f}" for n, f in frac.items())
          + f"  ({per:.1f} ms per proposal, load {os.getloadavg()[0]:.1f})")


def test_optuna_nsga2_cross_check(benchmark, bench):
    """Optuna's NSGA-II sampler (descriptors, snapped to the nearest unevaluated cell) beside
    ecnas's nsga2 (the mutation graph): the cross-check of our NSGA-II."""
    pytest.importorskip("optuna", reason="the cross-check needs ecnas[search]")
    ns = (25, 50, 100) if QUICK else (25, 50, 100, 250)
    t0 = time.perf_counter()
    frac = benchmark.pedantic(_fractions, args=(bench, "optuna_nsga2", ns), rounds=1,
                              iterations=1)
    per = (time.perf_counter() - t0) / (len(SEEDS) * max(ns)) * 1e3
    ours = _fractions(bench, "nsga2", ns)
    benchmark.extra_info.update({"fraction": frac, "ours": ours, "ms_per_proposal": per})
    print("\noptuna_nsga2 " + " ".join(f"N={n}: {f:.4f}" for n, f in frac.items())
          + f"  ({per:.1f} ms per proposal)\nnsga2 (ours) "
          + " ".join(f"N={n}: {f:.3f}" for n, f in ours.items()))


def test_sh_emoa_vs_semoa_at_equal_charged_training_time(benchmark, bench):
    fb = with_fidelities(bench)
    total = float(np.nansum(fb.arrays(108)["training_time_s"]))

    def run():
        out = {}
        for share in (0.01, 0.02, 0.05, 0.1):
            out[share] = {alg: float(np.mean([
                run_search(fb, alg, 10**6, s, max_training_time_s=share * total).fraction
                for s in SEEDS])) for alg in ("sh_emoa", "semoa")}
        return out

    res = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info["fraction_at_time_share"] = {str(k): v for k, v in res.items()}
    print("\nfraction of the 108-epoch front (scaled) at a training-time budget "
          "(share of training every cell at 108 epochs):")
    for share, v in res.items():
        print(f"  {share:>5.0%}: sh_emoa {v['sh_emoa']:.4f}  semoa {v['semoa']:.4f}")


def _found_at(bench, loss_points, runs):
    """The cheapest cell within ``loss_points`` of the most accurate one, and per run the first
    evaluation at which a cell as good (as accurate, no costlier) was evaluated (None: not)."""
    arr = bench.arrays(4)
    acc, energy = np.asarray(arr["validation_accuracy"]), np.asarray(arr["energy_j"])
    ok = np.isfinite(acc) & np.isfinite(energy)
    best = np.nanmax(acc[ok])
    within = ok & (acc >= best - loss_points / 100)
    target = int(np.flatnonzero(within)[np.argmin(energy[within])])
    t_acc, t_e = acc[target], energy[target]
    found = []
    for r in runs:
        v = r.trajectory.values
        hit = np.flatnonzero((v[:, 1] >= t_acc) & (v[:, 0] <= t_e))
        found.append(int(hit[0]) + 1 if len(hit) else None)
    return str(arr["arch_hash"][target]), float(t_acc), float(t_e), found


def test_finding_energy_saved_and_when_each_search_found_it(benchmark, bench):
    """docs/search.md's "finding" table: energy saved at <= 0.5, 1 and 2 accuracy points below
    the most accurate cell, and after how many evaluations each search first held it."""
    algos = {"random": 1000, "semoa": 1000, "nsga2": 1000}
    try:
        import optuna  # noqa: F401

        algos["tpe"] = 100
    except ImportError:
        pass

    def run():
        return {a: [run_search(bench, a, n, s, budget=4) for s in SEEDS]
                for a, n in algos.items()}

    runs = benchmark.pedantic(run, rounds=1, iterations=1)
    arr = bench.arrays(4)
    e_best = float(np.asarray(arr["energy_j"])[np.nanargmax(arr["validation_accuracy"])])
    out = {}
    for loss in (0.5, 1.0, 2.0):
        rows = {a: _found_at(bench, loss, rs) for a, rs in runs.items()}
        h, acc, e, _ = next(iter(rows.values()))
        out[loss] = {"cell": h, "accuracy": acc, "energy_j": e, "saved": 1 - e / e_best,
                     "found": {a: r[3] for a, r in rows.items()}}
        cells = []
        for a, r in rows.items():
            hit = [x for x in r[3] if x is not None]
            med = f", median {np.median(hit):g} ({min(hit)}-{max(hit)})" if hit else ""
            cells.append(f"{a} ({algos[a]}): {len(hit)}/{len(SEEDS)}{med}")
        print(f"\n<= {loss:g} points: {h[:8]} {100 * acc:.2f} % {e / 1e3:.1f} kJ, saved "
              f"{100 * (1 - e / e_best):.1f} %; " + "; ".join(cells))
    benchmark.extra_info["finding"] = {str(k): v for k, v in out.items()}
