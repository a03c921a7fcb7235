"""NVML window cost where NVML is slow: one begin+end window on a Monitor over the stand-in
libnvidia-ml.so.1 (tests/fakes/nvml_stub.c, loaded by the real pynvml) whose reads take 3 ms
(FAKE_NVML_DELAY_US; an H200 in a Firecracker VM took 4.4 ms a counter read under load), with
the meter's background sampler on and off; and, for reference, a fast stand-in read at the
edges.

Run: python3 -m pytest -q benchmarks/bench_nvml.py  (CI: ECNAS_BENCH_QUICK=1, quick mode)
The stand-in is found through LD_LIBRARY_PATH, read at process start, so each measurement runs
in a fresh interpreter and is timed inside it (extra_info: window_us_median, window_us_min).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

QUICK = os.environ.get("ECNAS_BENCH_QUICK") == "1"
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from fakes.nvml import FakeGpu, build_stub, compiler, write_state  # noqa: E402

DELAY_US = 3000

CHILD = """
import json, statistics, sys, time
from ecnas.meters.nvml import NvmlMeter
from ecnas.monitor import Monitor

background, n = {"on": True, "off": False, "auto": None}[sys.argv[1]], int(sys.argv[2])
meter = NvmlMeter(background=background)
times = []
with Monitor([meter], use_profiles=False) as mon:
    mon.begin("w")
    mon.end("w")
    for _ in range(n):
        t0 = time.perf_counter()
        mon.begin("w")
        mon.end("w")
        times.append(time.perf_counter() - t0)
        time.sleep(0.001)  # a step between windows, so samples come and go as in training
    sampling = meter.sampling
print(json.dumps({"median_us": statistics.median(times) * 1e6, "min_us": min(times) * 1e6,
                  "sampling": sampling, "reason": meter.status().reason}))
"""


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    if compiler() is None:
        pytest.skip("no C compiler to build the stand-in NVML library")
    d = tmp_path_factory.mktemp("nvml-bench")
    build_stub(d)
    write_state(d / "state", [FakeGpu("GPU-aaa", energy_mj=5000, power_mw=250_000)])
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES",
                                                            "ECNAS_NVML_BACKGROUND")}
    env.update(LD_LIBRARY_PATH=str(d), FAKE_NVML_STATE=str(d / "state"))
    yield env


@pytest.mark.parametrize("background, delay_us", [("on", DELAY_US), ("off", DELAY_US),
                                                  ("auto", 0)],
                         ids=["slow-background-on", "slow-background-off", "fast-auto"])
def test_window_nvml(benchmark, stand_in: dict[str, str], background: str,
                     delay_us: int) -> None:
    """Slow reads with the sampler on and off, and a fast stand-in (~10 µs a read) for
    reference: auto keeps its synchronous edges."""
    n = (20 if background == "off" else 100) if QUICK else 200
    env = dict(stand_in, FAKE_NVML_DELAY_US=str(delay_us))
    results: list[dict] = []

    def child() -> None:
        out = subprocess.run([sys.executable, "-c", CHILD, background, str(n)], env=env,
                             capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))

    benchmark.pedantic(child, rounds=1 if QUICK else 3, iterations=1)
    assert all(r["sampling"] is (background == "on") for r in results)
    benchmark.extra_info["window_us_median"] = min(r["median_us"] for r in results)
    benchmark.extra_info["window_us_min"] = min(r["min_us"] for r in results)
    benchmark.extra_info["reason"] = results[-1]["reason"]
