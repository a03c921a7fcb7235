"""CLI start-up: ``ecnas --help`` as a user runs it, a fresh process each round (what every
command pays before its own work). Target < 0.3 s on a quiet machine: registering the
commands imports argparse and light rooms only, no numpy, pandas or torch
(tests/cli/test_cli_startup.py checks the imports; this times them).

Run: ``ECNAS_BENCH_QUICK=1 python3 -m pytest -q benchmarks/bench_cli.py -s`` (quick: 3 rounds,
else 10). The figure is wall-clock time of the whole process, measured, on whatever machine
runs it: quote it with the load average (``cat /proc/loadavg``).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys

import pytest

ROUNDS = 3 if os.environ.get("ECNAS_BENCH_QUICK") == "1" else 10


def _help() -> None:
    proc = subprocess.run([sys.executable, "-m", "ecnas", "--help"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and "usage: ecnas" in proc.stdout, proc.stderr


@pytest.mark.benchmark(group="cli")
def test_ecnas_help_startup(benchmark) -> None:
    """``python -m ecnas --help`` in a fresh interpreter, start to exit."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    benchmark.pedantic(_help, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU time of the child processes: what a busy machine changes least (wall time waits)
    cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / (ROUNDS + 1)
    with open("/proc/loadavg", encoding="ascii") as fh:
        load = fh.read().split()[0]
    print(f"\necnas --help: median {benchmark.stats['median'] * 1e3:.0f} ms wall, "
          f"{cpu * 1e3:.0f} ms CPU a run (measured, {ROUNDS} rounds, load average {load})")
