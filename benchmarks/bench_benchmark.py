"""Benchmark room: load time, memory held and query time of a NAS-Bench-101-sized bundle.

423,000 architectures × 4 budgets × 3 repeats (``ECNAS_BENCH_QUICK=1``: 20,000), one row per
run (the final checkpoint), generated with numpy once per session and written as a bundle
with ``write_bundle``. Run: ``python3 -m pytest -q benchmarks/bench_benchmark.py -s``.
"""

from __future__ import annotations

import gc
import hashlib
import os
import time
import tracemalloc

import numpy as np
import pandas as pd
import pytest

from ecnas.benchmark import Benchmark, write_bundle
from ecnas.space import ModelSpec

N_ARCHS = 20_000 if os.environ.get("ECNAS_BENCH_QUICK") == "1" else 423_000
BUDGETS = (4, 12, 36, 108)
REPEATS = 3
_OPS = np.array(["conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3"])


def _cells(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` distinct 7-vertex cells that need no pruning (every vertex on an input→output
    path, ≤ 9 edges): matrix strings and ops strings, drawn and filtered with numpy."""
    iu = np.triu_indices(7, 1)
    mats, opss, seen = [], [], set()
    while len(mats) < n:
        m = np.zeros((4 * n, 7, 7), dtype=np.uint8)
        m[:, iu[0], iu[1]] = rng.random((4 * n, 21)) < 0.33
        ok = m.sum(axis=(1, 2)) <= 9
        reach_in = m[:, 0, :].astype(bool)
        reach_out = m[:, :, 6].astype(bool)
        for _ in range(6):  # transitive closure along the DAG
            reach_in |= np.einsum("bi,bij->bj", reach_in.astype(np.uint8), m) > 0
            reach_out |= np.einsum("bij,bj->bi", m, reach_out.astype(np.uint8)) > 0
        inner = reach_in[:, 1:6] & reach_out[:, 1:6]
        ok &= inner.all(axis=1) & reach_in[:, 6]
        m = m[ok]
        ops = _OPS[rng.integers(0, 3, (len(m), 5))]
        for mat, op in zip((m.reshape(len(m), 49) + 48).view("S49").ravel(), ops, strict=True):
            key = (mat.decode(), "input," + ",".join(op) + ",output")
            if key not in seen:
                seen.add(key)
                mats.append(key[0])
                opss.append(key[1])
    return np.array(mats[:n], dtype=object), np.array(opss[:n], dtype=object)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> dict:
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    mats, opss = _cells(N_ARCHS, rng)
    # stand-ins for iso-hashes (32 hex digits, distinct); queries resolve specs by (matrix, ops)
    hashes = np.array([hashlib.md5(b"%d" % i).hexdigest() for i in range(N_ARCHS)], dtype=object)
    runs = N_ARCHS * len(BUDGETS) * REPEATS
    a = np.repeat(np.arange(N_ARCHS), len(BUDGETS) * REPEATS)
    b = np.tile(np.repeat(np.asarray(BUDGETS), REPEATS), N_ARCHS)
    energy = rng.gamma(4.0, 5e3, runs) * b
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
