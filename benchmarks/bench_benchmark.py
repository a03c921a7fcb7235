"""Benchmark room: load time, memory held and query time of a NAS-Bench-101-sized bundle.

423,000 architectures × 4 budgets × 3 repeats (``ECNAS_BENCH_QUICK=1``: 20,000), one row per
run (the final checkpoint), generated with numpy once per session and written as a bundle
with ``write_bundle``. Run: ``python3 -m pytest -q benchmarks/bench_benchmark.py -s``.
"""

from __future__ import annotations

import gc
import os
import time
import tracemalloc

import numpy as np
import pandas as pd
import pytest

from ecnas.benchmark import Benchmark, write_bundle
from ecnas.space import ModelSpec, enumerate_cells

N_ARCHS = 20_000 if os.environ.get("ECNAS_BENCH_QUICK") == "1" else 423_000
BUDGETS = (4, 12, 36, 108)
REPEATS = 3


def _cells(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first ``n`` of NAS-Bench-101's 423,624 cells (``enumerate_cells``: pruned, valid,
    distinct) with their iso-hashes: a bundle's table must pass ``ecnas check``."""
    specs = enumerate_cells()[:n]
    return (np.array([s.matrix_str for s in specs], dtype=object),
            np.array([s.ops_str for s in specs], dtype=object),
            np.array([s.hash() for s in specs], dtype=object))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> dict:
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    mats, opss, hashes = _cells(N_ARCHS)
    runs = N_ARCHS * len(BUDGETS) * REPEATS
    a = np.repeat(np.arange(N_ARCHS), len(BUDGETS) * REPEATS)
    b = np.tile(np.repeat(np.asarray(BUDGETS), REPEATS), N_ARCHS)
    # one energy per (arch, budget), repeats within a few per cent of it (as measured repeats are)
    energy = np.repeat(rng.gamma(4.0, 5e3, N_ARCHS * len(BUDGETS)), REPEATS) * b \
        * rng.normal(1.0, 0.02, runs)
    gpu = energy * rng.uniform(0.6, 0.8, runs)
    df = pd.DataFrame({
        "arch_hash": hashes[a], "matrix": mats[a], "ops": opss[a], "budget_epochs": b,
        "epoch": b.astype(float), "repeat": np.tile(np.arange(1, REPEATS + 1), N_ARCHS * len(BUDGETS)),
        "device": "nvidia-v100", "training_time_s": energy / 250.0, "wall_time_s": energy / 240.0,
        "energy_j": energy, "gpu_energy_j": gpu, "cpu_energy_j": energy - gpu,
        "estimated": False, "source": "measured",
        "train_accuracy": rng.uniform(0.5, 1.0, runs), "validation_accuracy": rng.uniform(0.5, 0.95, runs),
        "test_accuracy": rng.uniform(0.5, 0.95, runs),
        "trainable_params": rng.integers(200_000, 30_000_000, N_ARCHS)[a],
    })
    t1 = time.perf_counter()
    path = write_bundle(df, tmp_path_factory.mktemp("bench") / "bundle")
    t2 = time.perf_counter()
    print(f"\ngenerated {N_ARCHS} archs × {len(BUDGETS)} × {REPEATS} in {t1 - t0:.1f} s, "
          f"bundle written in {t2 - t1:.1f} s "
          f"({sum(p.stat().st_size for p in path.iterdir()) / 1e6:.0f} MB)")
    return {"path": path, "specs": [ModelSpec(m, o) for m, o in zip(mats[:2000], opss[:2000], strict=True)]}


def test_load(benchmark, bundle) -> None:
    bench = benchmark.pedantic(Benchmark.load, args=(bundle["path"],), rounds=3, iterations=1)
    assert len(bench) == N_ARCHS
    benchmark.extra_info["architectures"] = N_ARCHS
    benchmark.extra_info["runs"] = N_ARCHS * len(BUDGETS) * REPEATS


def test_load_unverified(benchmark, bundle) -> None:
    """``verify=False``: the difference to ``test_load`` is what checking the SHA-256 costs."""
    bench = benchmark.pedantic(Benchmark.load, args=(bundle["path"],), kwargs={"verify": False},
                               rounds=3, iterations=1)
    assert len(bench) == N_ARCHS


def test_memory_held(benchmark, bundle) -> None:
    """Bytes the loaded Benchmark holds (tracemalloc: numpy and Python objects)."""
    held = {}

    def load_and_measure() -> None:
        gc.collect()
        tracemalloc.start()
        bench = Benchmark.load(bundle["path"])
        gc.collect()
        held["now"], held["peak"] = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        del bench

    benchmark.pedantic(load_and_measure, rounds=1, iterations=1)
    benchmark.extra_info["held_MB"] = round(held["now"] / 1e6, 1)
    benchmark.extra_info["peak_during_load_MB"] = round(held["peak"] / 1e6, 1)
    print(f"\nheld {held['now'] / 1e6:.0f} MB, peak during load {held['peak'] / 1e6:.0f} MB")


def test_query(benchmark, bundle) -> None:
    bench = Benchmark.load(bundle["path"])
    specs = bundle["specs"]
    state = {"i": 0}

    def one() -> None:
        i = state["i"] = (state["i"] + 1) % len(specs)
        bench.query(specs[i], 108)

    benchmark.pedantic(one, rounds=20_000, iterations=1, warmup_rounds=100)
    benchmark.extra_info["median_us"] = round(benchmark.stats.stats.median * 1e6, 2)


def test_query_from_strings(benchmark, bundle) -> None:
    """Query with a fresh ModelSpec built from strings (pruning included), as ``ecnas query``."""
    bench = Benchmark.load(bundle["path"])
    pairs = [(s.matrix_str, s.ops_str) for s in bundle["specs"]]
    state = {"i": 0}

    def one() -> None:
        i = state["i"] = (state["i"] + 1) % len(pairs)
        bench.query(ModelSpec(*pairs[i]), 108, "mean")

    benchmark.pedantic(one, rounds=5_000, iterations=1, warmup_rounds=50)
