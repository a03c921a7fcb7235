"""The fixed cost of a 5V campaign cell, and what one process for many cells saves.

A cell measured in a fresh process (``--workers 1``) pays, before its first training step:
the interpreter, ``import torch``, the meters, and reading + unpickling the CIFAR-10 batch files
(CUDA's initialisation on a GPU, which this CPU machine cannot time). The 5V campaign runs
every cell inline in one process, where the data set is read once and later cells find it in
memory. ECNAS_BENCH_QUICK=1 writes 4,000 training images instead of NAS-Bench-101's 40,000.

    python3 -m pytest -q benchmarks/bench_campaign_5v.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ecnas.trainer.data import load_dataset
from ecnas.trainer.data.synthetic import write_synthetic_cifar10

ROOT = Path(__file__).resolve().parents[1]
QUICK = os.environ.get("ECNAS_BENCH_QUICK") == "1"
TRAIN, EVAL = (4_000, 1_000) if QUICK else (40_000, 10_000)

# what a fresh process per cell does before it trains (the campaign's meters: NVML is absent
# here, so the CPU estimate stands in for starting a meter)
_FRESH = """
import sys
from ecnas.monitor import Monitor
import torch
from ecnas.trainer.data import load_dataset
load_dataset("cifar10", sys.argv[1])
Monitor().start().close()
"""


@pytest.fixture(scope="module")
def cifar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cifar")
    write_synthetic_cifar10(d, TRAIN, EVAL)
    return d


def test_fresh_process_per_cell(benchmark, cifar: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def fresh() -> None:
        subprocess.run([sys.executable, "-c", _FRESH, str(cifar)], env=env, check=True,
                       timeout=300)

    benchmark.pedantic(fresh, rounds=3, iterations=1)


def test_in_process_later_cell(benchmark, cifar: Path) -> None:
    load_dataset("cifar10", cifar)  # the first cell of the session read it
    data = benchmark(load_dataset, "cifar10", cifar)
    assert len(data.train) == TRAIN
