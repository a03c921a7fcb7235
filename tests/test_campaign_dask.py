"""The real trainer through the campaign: local worker processes (CLI, exported table passes
ecnas check) and a Dask LocalCluster on loopback giving the same rows; unreachable scheduler."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from campaign_runfns import campaign_toml

from ecnas.trainer.campaign import ResultsStore, load_campaign, run_campaign

SAME = ["arch_hash", "matrix", "ops", "budget_epochs", "repeat", "epoch", "device",
        "train_accuracy", "validation_accuracy", "test_accuracy", "trainable_params", "flops",
        "estimated", "source"]


def _ecnas(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ecnas", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("campaign_real")
    toml = campaign_toml(d / "c.toml", count=2, repeats=1)
    proc = _ecnas("run", str(toml), "--store", str(d / "s.sqlite"), "--workers", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    return d, toml, proc


def test_local_workers_real_trainer_table_passes_check(local_run) -> None:
    import json

    d, _toml, proc = local_run
    summary = json.loads(proc.stdout)
    assert (summary["done"], summary["failed"], summary["total"]) == (2, 0, 2)
    assert summary["estimated_energy_j"] + summary["energy_j"] > 0
    assert "[2/2] done" in proc.stderr and "ETA" in proc.stderr
    out = _ecnas("table", str(d / "s.sqlite"), "--out", str(d / "t.parquet"))
    assert out.returncode == 0, out.stderr
    check = _ecnas("check", str(d / "t.parquet"), "--json")
    assert check.returncode == 0, check.stdout
    assert json.loads(check.stdout)["ok"] is True
    with ResultsStore(d / "s.sqlite") as s:
        prov = s.provenance()
    for p in prov.values():
        assert p["software"]["torch"] and p["campaign_hash"] == summary["campaign_hash"]
        assert p["host"] and p["matched_profiles"] and p["meters"]


def test_dask_local_cluster_gives_the_same_rows(local_run, tmp_path: Path) -> None:
    from distributed import LocalCluster

    d, toml, _proc = local_run
    campaign = load_campaign(toml)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=":0") as cluster:
        summary = run_campaign(campaign, tmp_path / "dask.sqlite",
                               scheduler=cluster.scheduler_address, connect_timeout=10)
    assert (summary.done, summary.failed, summary.executor) == (2, 0, "dask")
    with ResultsStore(d / "s.sqlite") as a, ResultsStore(tmp_path / "dask.sqlite") as b:
        local, dask = a.table(), b.table()
    key = ["arch_hash", "budget_epochs", "repeat", "epoch"]
    local = local.sort_values(key).reset_index(drop=True)
    dask = dask.sort_values(key).reset_index(drop=True)
    assert len(local) == len(dask) == 2 * 3
    import pandas as pd

    pd.testing.assert_frame_equal(local[SAME], dask[SAME])


def test_unreachable_scheduler_is_one_line_exit_2_fast(tmp_path: Path) -> None:
    toml = campaign_toml(tmp_path / "c.toml", count=1, repeats=1)
    t0 = time.monotonic()
    proc = _ecnas("run", str(toml), "--store", str(tmp_path / "s.sqlite"), "--scheduler",
                  "tcp://127.0.0.1:9", "--connect-timeout", "1", timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach Dask scheduler tcp://127.0.0.1:9" in lines[0], \
        proc.stderr
    assert time.monotonic() - t0 < 30
