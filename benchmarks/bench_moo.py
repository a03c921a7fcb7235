"""Multi-objective search: exact hypervolume cost and one search over the real 5V benchmark.

Full scale: python3 -m pytest -q benchmarks/bench_moo.py
"""

from __future__ import annotations

import numpy as np
import pytest

from ecnas.benchmark.moo import hypervolume, run_search


@pytest.fixture(scope="module")
def bench(ecnas_5v_dir):
    from ecnas.benchmark import Benchmark
    from ecnas.interop import import_ecnas

    return Benchmark.from_table(import_ecnas(ecnas_5v_dir), seed=0)


def test_hypervolume_2d_1000_points(benchmark):
    pts = np.random.default_rng(0).random((1000, 2))
    benchmark(hypervolume, pts, (1.1, 1.1))


def test_hypervolume_3d_200_points(benchmark):
    pts = np.random.default_rng(0).random((200, 3))
    benchmark(hypervolume, pts, (1.1, 1.1, 1.1))


@pytest.mark.parametrize("algorithm", ["random", "semoa", "nsga2"])
def test_search_100_evaluations_on_5v(benchmark, bench, algorithm):
    r = benchmark(run_search, bench, algorithm, 100, 0, budget=4)
    benchmark.extra_info["hypervolume"] = r.hypervolume
