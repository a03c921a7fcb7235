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
from typing import Any

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


#: the worker jobs import the run function from tests/ (this file puts it on sys.path, which
#: a batch job does not inherit; its environment does)
_JOB_PATH = (f"export PYTHONPATH={Path(__file__).resolve().parents[1] / 'tests'}"
             f"{os.pathsep}{Path(__file__).resolve().parents[1]}{os.pathsep}$PYTHONPATH")


def _slurm_reason() -> str | None:
    """Why the SLURM benchmarks cannot run here, or None (scripts/slurm/start.sh starts one)."""
    import shutil
    import subprocess

    try:
        import dask_jobqueue  # noqa: F401
    except ImportError:
        return "dask-jobqueue is not installed"
    if shutil.which("sinfo") is None:
        return "SLURM is not installed (apt-get install slurmctld slurmd munge)"
    out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    if out.returncode != 0 or not out.stdout.strip():
        return "no SLURM controller answers (bash scripts/slurm/start.sh)"
    return None


@pytest.fixture
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory):
    """2 SLURM worker jobs, started as ``ecnas run --cluster slurm`` starts them, and waited
    for: what follows is the dispatch cost with the workers up, as for the LocalCluster.
    Function-scoped: its jobs hold the node's CPUs, so the end-to-end benchmark's own jobs
    would wait in the queue behind them for as long as the module ran."""
    import time

    reason = _slurm_reason()
    if reason:
        pytest.skip(reason)
    from ecnas.campaign import cluster as jq

    spec = jq.ClusterSpec(kind="slurm", prologue=(_JOB_PATH,), interface="lo")
    store = tmp_path_factory.mktemp("slurm") / "s.sqlite"
    cluster = jq.make_cluster(spec, **jq.cluster_kwargs(
        spec, gpu=False, name=jq.job_name(store), log_directory=str(store.parent)))
    from distributed import Client

    t0 = time.perf_counter()
    cluster.scale(jobs=2)
    with Client(cluster.scheduler_address, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=120)
    startup = time.perf_counter() - t0
    try:
        yield cluster, startup
    finally:
        cluster.close()
        jq.cancel_jobs("slurm", jq.list_jobs("slurm", jq.job_name(store)))


def _coordinator_cpu(benchmark: Any, runs: int, fn: Any) -> None:
    """Time ``fn`` once; record wall and coordinator-process CPU per run (the scheduler runs
    in this process for both LocalCluster and SLURMCluster, so both count it)."""
    import time

    cpu: list[float] = []

    def timed() -> None:
        c0 = time.process_time()
        fn()
        cpu.append(time.process_time() - c0)

    benchmark.pedantic(timed, rounds=1, iterations=1)
    benchmark.extra_info["runs"] = runs
    benchmark.extra_info["ms_per_run"] = benchmark.stats.stats.mean / runs * 1e3
    benchmark.extra_info["coordinator_cpu_ms_per_run"] = cpu[0] / runs * 1e3


def test_dask_trivial_runs_cpu(benchmark, tmp_path: Path, dask_cluster) -> None:
    """Local Dask, the reference for the SLURM figure below: wall and coordinator CPU."""
    campaign = _campaign(DASK_RUNS)

    def dispatch() -> None:
        summary = run_campaign(campaign, tmp_path / "d.sqlite",
                               scheduler=dask_cluster.scheduler_address, run_fn=trivial)
        assert summary.done == DASK_RUNS

    _coordinator_cpu(benchmark, DASK_RUNS, dispatch)


def test_slurm_trivial_runs(benchmark, tmp_path: Path, slurm_cluster) -> None:
    """The same runs on 2 SLURM worker jobs (dask-jobqueue, the workers up): the coordinator's
    cost per completed run, to compare with test_dask_trivial_runs_cpu."""
    cluster, startup = slurm_cluster
    campaign = _campaign(DASK_RUNS)

    def dispatch() -> None:
        summary = run_campaign(campaign, tmp_path / "s.sqlite",
                               scheduler=cluster.scheduler_address, run_fn=trivial)
        assert summary.done == DASK_RUNS

    _coordinator_cpu(benchmark, DASK_RUNS, dispatch)
    benchmark.extra_info["startup_s_two_jobs"] = startup


def test_slurm_campaign_end_to_end(benchmark, tmp_path: Path) -> None:
    """``run_campaign(cluster=…)`` as ``ecnas run --cluster slurm --workers 2`` does it:
    submitting the jobs, waiting for them, the runs, cancelling the jobs."""
    reason = _slurm_reason()
    if reason:
        pytest.skip(reason)
    from ecnas.campaign.cluster import ClusterSpec

    runs = 20 if QUICK else 200
    campaign = _campaign(runs)

    def dispatch() -> None:
        summary = run_campaign(campaign, tmp_path / "e.sqlite", workers=2,
                               cluster=ClusterSpec(kind="slurm", prologue=(_JOB_PATH,), interface="lo"),
                               run_fn=trivial)
        assert summary.done == runs

    _coordinator_cpu(benchmark, runs, dispatch)
