"""Meter overheads: one window (RAPL on a fake tree, estimate), cold start, per-step metering.

Run: python3 -m pytest -q benchmarks/bench_meters.py  (CI: ECNAS_BENCH_QUICK=1, quick mode)
Targets (docs/meters.md): < 100 µs per begin+end window, < 50 ms cold `import ecnas` plus one
`measure()` enter/exit, < 0.5 % overhead when every step of a loop is metered.
"""

from __future__ import annotations

import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ecnas.meters.estimate import EstimateMeter
from ecnas.meters.rapl import RaplMeter
from ecnas.monitor import Monitor

QUICK = os.environ.get("ECNAS_BENCH_QUICK") == "1"
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from fakes.sysfs import FakePowercap  # noqa: E402  (test helper, found through tests/)


@pytest.fixture(scope="module")
def rapl_counting() -> Iterator[tuple[Path, Callable[[], None]]]:
    """A two-socket fake tree (2 packages + 2 DRAM counters) and ``advance()``, which moves
    every counter on by 1 J, monotonically across all the tests that share the tree."""
    with tempfile.TemporaryDirectory(prefix="ecnas-bench-rapl-") as d:
        tree = FakePowercap(Path(d))
        sockets = [tree.package(0, dram=True), tree.package(1, dram=True)]
        counters = [s[z] for s in sockets for z in ("package", "dram")]
        tick = itertools.count(1)

        def advance() -> None:
            k = next(tick) * 1_000_000
            for c in counters:
                c.set(k)

        yield tree.root, advance


@pytest.fixture(scope="module")
def rapl_tree(rapl_counting: tuple[Path, Callable[[], None]]) -> Path:
    return rapl_counting[0]


def _window_bench(benchmark, monitor: Monitor) -> None:
    def window() -> None:
        monitor.begin("w")
        monitor.end("w")

    window()  # profiles matched once per Monitor, outside the timing
    benchmark(window)
    benchmark.extra_info["per_window_us_median"] = benchmark.stats.stats.median * 1e6


def test_window_rapl_two_sockets(benchmark, rapl_tree: Path) -> None:
    with Monitor([RaplMeter(rapl_tree)]) as mon:
        _window_bench(benchmark, mon)


def test_window_estimate(benchmark) -> None:
    with Monitor([EstimateMeter()]) as mon:
        _window_bench(benchmark, mon)


COLD = """
import sys, time
t0 = time.perf_counter()
import ecnas
with ecnas.measure(use_profiles=sys.argv[1] == "1") as m:
    pass
t1 = time.perf_counter()
print((t1 - t0) * 1000.0, m.report.meters)
"""


@pytest.mark.parametrize("mode", ["cached-profiles", "first-run", "no-profiles"])
def test_cold_import_and_one_measure(benchmark, mode: str, tmp_path: Path) -> None:
    """A fresh interpreter: ``import ecnas`` + one ``measure()`` enter/exit with the default
    meters, timed inside the subprocess (interpreter start-up excluded).

    cached-profiles: the profile matches are in ECNAS_CACHE_DIR from an earlier run (every
    run after the first on a machine); first-run: an empty cache each time (profiles imported
    and parsed); no-profiles: ``measure(use_profiles=False)``.
    """
    internal: list[float] = []
    runs = iter(range(1_000_000))

    # Bytecode as an installed package has it (pip compiles .pyc files at install): written
    # by the warm-up run below into a private prefix, even where PYTHONDONTWRITEBYTECODE is
    # set (as on the development machine), so the timing is of importing, not compiling.
    base_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    base_env["PYTHONPYCACHEPREFIX"] = str(tmp_path / "pycache")

    def cold() -> None:
        cache = tmp_path / (f"fresh{next(runs)}" if mode == "first-run" else "cache")
        env = dict(base_env, ECNAS_CACHE_DIR=str(cache))
        out = subprocess.run([sys.executable, "-c", COLD, "0" if mode == "no-profiles" else "1"],
                             capture_output=True, text=True, check=True, env=env)
        internal.append(float(out.stdout.split()[0]))

    cold()  # warm the OS file cache and .pyc files (and, for cached-profiles, the cache)
    internal.clear()
    benchmark.pedantic(cold, rounds=3 if QUICK else 15, iterations=1)
    benchmark.extra_info["internal_ms_median"] = statistics.median(internal)
    benchmark.extra_info["internal_ms_min"] = min(internal)


def _step(n: int) -> float:
    # Pure-Python work standing in for one training step (calibrated to a duration below).
    acc = 0.0
    for i in range(n):
        acc += (i % 7) * 0.5
    return acc


@pytest.mark.parametrize("step_ms", [20, 50])
def test_loop_overhead_every_step_metered(benchmark,
                                          rapl_counting: tuple[Path, Callable[[], None]],
                                          step_ms: int) -> None:
    """Every step of a loop in its own window (begin + end around each step, RAPL on a
    two-socket fake tree). Overhead = time inside begin/end ÷ time of the steps.

    The fake counters advance during each step, as real ones do (every ~1 ms): a counter
    that has not moved costs the meter an extra check (is the file still there?), which a
    real window of milliseconds never pays.
    """
    rapl_tree, advance = rapl_counting
    steps = 10 if QUICK else 40
    calib = []
    for _ in range(3):  # the fastest of three: one run slowed by other work would shorten steps
        t = time.perf_counter()
        _step(200_000)
        calib.append(time.perf_counter() - t)
    n = max(10_000, int(200_000 * step_ms / 1000 / min(calib)))
    meter_s: list[float] = []
    total_s: list[float] = []

    with Monitor([RaplMeter(rapl_tree)]) as mon:
        mon.begin("warm")
        mon.end("warm")

        def loop() -> None:
            spent = 0.0
            start = time.perf_counter()
            for _ in range(steps):
                a = time.perf_counter()
                mon.begin("step")
                b = time.perf_counter()
                _step(n)
                advance()  # part of the step: the hardware counting
                c = time.perf_counter()
                mon.end("step")
                spent += (b - a) + (time.perf_counter() - c)
            total_s.append(time.perf_counter() - start)
            meter_s.append(spent)

        benchmark.pedantic(loop, rounds=2 if QUICK else 4, iterations=1)
    pairs = list(zip(meter_s, total_s, strict=True))
    benchmark.extra_info["step_ms"] = statistics.median((t - m) / steps * 1e3 for m, t in pairs)
    benchmark.extra_info["metering_us_per_step"] = statistics.median(
        m / steps * 1e6 for m, _ in pairs)
    benchmark.extra_info["overhead_percent_median"] = statistics.median(
        m / (t - m) * 100.0 for m, t in pairs)
