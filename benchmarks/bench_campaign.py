"""Campaign coordinator costs: one run's commit to the store, and dispatching 10,000 trivial
runs end to end (inline executor: the coordinator's own cost per completed run, commit
included); then what each executor adds per run: local worker processes (a fresh spawned
process per run) and a Dask LocalCluster on loopback. ECNAS_BENCH_QUICK=1 shrinks the counts.

    python3 -m pytest -q benchmarks/bench_campaign.py
"""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from campaign_runfns import _rows, trivial  # noqa: E402

from ecnas.campaign import Campaign, ResultsStore, run_campaign  # noqa: E402
from ecnas.trainer.train import TrainConfig  # noqa: E402

QUICK = os.environ.get("ECNAS_BENCH_QUICK") == "1"
RUNS = 1_000 if QUICK else 10_000
LOCAL_RUNS = 6 if QUICK else 40
DASK_RUNS = 200 if QUICK else 2_000


def _campaign(runs: int) -> Campaign:
    cells = min(100, runs)
    repeats = runs // cells
    return Campaign.from_dict({
        "campaign": {"budgets": [4], "repeats": repeats},
        "architectures": {"sample": {"count": cells, "seed": 0}},
        "recipe": {"stem_channels": 4, "num_stacks": 1, "cells_per_stack": 1}})


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    c = _campaign(100)
    s = ResultsStore(tmp_path_factory.mktemp("bench") / "s.sqlite", create=True)
    s.bind(c.hash, c.to_dict())
    rows = _rows(TrainConfig.from_dict(c.train_config(c.runs()[0])), checkpoints=3)
    yield s, rows
    s.close()


def test_commit_one_run(benchmark, store) -> None:
    s, rows = store
    counter = itertools.count()
    arch = rows[0]["arch_hash"]

    def commit() -> None:
        s.commit_run(f"{arch}/4/{next(counter) + 1}", rows, {"host": "bench"})

    benchmark(commit)


def test_dispatch_trivial_runs(benchmark, tmp_path: Path) -> None:
    campaign = _campaign(RUNS)
    paths = (tmp_path / f"s{i}.sqlite" for i in itertools.count())

    def dispatch() -> None:
        summary = run_campaign(campaign, next(paths), workers=0, run_fn=trivial)
        assert summary.done == RUNS

    benchmark.pedantic(dispatch, rounds=1, iterations=1)
    benchmark.extra_info["runs"] = RUNS
    benchmark.extra_info["ms_per_run"] = benchmark.stats.stats.mean / RUNS * 1e3


def test_local_workers_trivial_runs(benchmark, tmp_path: Path) -> None:
    """2 local worker slots, one spawned process per run: the process start is the cost."""
    campaign = _campaign(LOCAL_RUNS)
    paths = (tmp_path / f"l{i}.sqlite" for i in itertools.count())

    def dispatch() -> None:
        summary = run_campaign(campaign, next(paths), workers=2, run_fn=trivial)
        assert summary.done == LOCAL_RUNS

    benchmark.pedantic(dispatch, rounds=1, iterations=1)
    benchmark.extra_info["runs"] = LOCAL_RUNS
    benchmark.extra_info["ms_per_run"] = benchmark.stats.stats.mean / LOCAL_RUNS * 1e3


@pytest.fixture(scope="module")
def dask_cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=":0") as cluster:
        yield cluster


def test_dask_trivial_runs(benchmark, tmp_path: Path, dask_cluster) -> None:
    """The same coordinator through a Dask LocalCluster (2 worker processes, loopback TCP)."""
    campaign = _campaign(DASK_RUNS)
    paths = (tmp_path / f"d{i}.sqlite" for i in itertools.count())

    def dispatch() -> None:
        summary = run_campaign(campaign, next(paths), scheduler=dask_cluster.scheduler_address,
                               run_fn=trivial)
        assert summary.done == DASK_RUNS

    benchmark.pedantic(dispatch, rounds=1, iterations=1)
    benchmark.extra_info["runs"] = DASK_RUNS
    benchmark.extra_info["ms_per_run"] = benchmark.stats.stats.mean / DASK_RUNS * 1e3
