"""Issue 37.7: a short CPU training run by torch thread count and OpenMP wait policy, beside
two CPU-bound processes of our own (bounded, ended by pid). The full table (three kinds of
background, docs/campaigns.md) comes from ``python3 benchmarks/threads_under_load.py``.

Run: ``python3 -m pytest -q benchmarks/bench_threads_under_load.py`` (CI: ``ECNAS_BENCH_QUICK=1``:
5 steps instead of 20). Figures land in ``extra_info`` with the load average.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from threads_under_load import PLAIN, _train  # noqa: E402

QUICK = os.environ.get("ECNAS_BENCH_QUICK") == "1"
STEPS = 5 if QUICK else 20


@pytest.fixture(scope="module")
def busy():
    """Two plain CPU-bound loops beside the measured runs (ours, bounded, ended by pid)."""
    procs = [subprocess.Popen([sys.executable, "-c", PLAIN.format(s=300)]) for _ in range(2)]
    yield
    for p in procs:
        p.terminate()
        p.wait(timeout=30)


@pytest.mark.parametrize("threads,policy", [(0, "default"), (0, "PASSIVE"), (1, "PASSIVE")])
def test_training_steps_beside_two_busy_processes(benchmark, busy, threads, policy) -> None:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if policy == "PASSIVE":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    result = benchmark.pedantic(_train, args=(threads, STEPS, env), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    benchmark.extra_info["omp_wait_policy"] = policy
    benchmark.extra_info["loadavg"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    assert result["wall_s"] > 0
