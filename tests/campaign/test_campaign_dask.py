"""The real trainer through the campaign (the issue's acceptance): 2 local workers, killed and
resumed, exported table passes ecnas check; ``ecnas run --scheduler`` on a Dask LocalCluster on
loopback gives the same rows; unreachable or malformed scheduler addresses."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from campaign_runfns import campaign_toml
from cli_inproc import run_cli

from ecnas.campaign import ResultsStore, load_campaign, run_campaign
from ecnas.campaign.config import WARMUP_STEPS

SAME = ["arch_hash", "matrix", "ops", "budget_epochs", "repeat", "epoch", "device",
        "train_accuracy", "validation_accuracy", "test_accuracy", "trainable_params", "flops",
        "estimated", "source"]


def _ecnas(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ecnas", *args], capture_output=True,
                          text=True, timeout=timeout)


def _stored(store: Path) -> int:
    if not store.exists():
        return 0
    db = sqlite3.connect(store, timeout=5)
    try:
        return db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    except sqlite3.OperationalError:  # schema not written yet
        return 0
    finally:
        db.close()


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory):
    """The acceptance path: the real trainer with 2 workers, kill -9 of the coordinator once a
    run is stored, then ``--resume`` to the end."""
    d = tmp_path_factory.mktemp("campaign_real")
    # two checkpoints: evaluations dominate a tiny run's time
    toml = campaign_toml(d / "c.toml", count=3, repeats=1, extra_recipe="checkpoints = [0, 1]")
    store = d / "s.sqlite"
    cmd = [sys.executable, "-m", "ecnas", "run", str(toml), "--store", str(store),
           "--workers", "2", "--resume", "--json"]
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and first.poll() is None and _stored(store) < 1:
        time.sleep(0.01)  # test pacing, not a measurement
    if first.poll() is None:
        first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    assert first.returncode == -signal.SIGKILL, "the first session ended before the kill"
    killed_with = _stored(store)
    proc = _ecnas(*cmd[3:])
    assert proc.returncode == 0, proc.stderr
    return d, toml, proc, killed_with


def test_killed_then_resumed_real_campaign_passes_check(local_run) -> None:
    import json

    from ecnas.tables import ROW_KEYS, read_table

    d, toml, proc, killed_with = local_run
    summary = json.loads(proc.stdout)
    runs = load_campaign(toml).runs()
    assert summary["total"] == len(runs) == 3
    assert summary["skipped"] == killed_with >= 1  # the stored runs were not redone
    assert summary["done"] + summary["skipped"] == 3 and summary["failed"] == 0
    assert summary["estimated_energy_j"] + summary["energy_j"] > 0
    assert "[3/3] done" in proc.stderr and "ETA" in proc.stderr
    out = run_cli("table", d / "s.sqlite", "--out", d / "t.parquet", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) | {"table": None} == {
        "table": None, "runs": 3, "campaign_runs": 3, "missing": 0, "failed_attempts": 0}
    check = run_cli("check", d / "t.parquet", "--json")
    assert check.returncode == 0, check.stdout
    assert json.loads(check.stdout)["ok"] is True
    table = read_table(d / "t.parquet")
    assert not table.duplicated(list(ROW_KEYS)).any()  # no run twice
    got = {f"{h}/{b}/{r}" for h, b, r in
           table[["arch_hash", "budget_epochs", "repeat"]].drop_duplicates().itertuples(
               index=False)}
    assert got == {r.key for r in runs}  # no run missing
    with ResultsStore(d / "s.sqlite") as s:
        prov = s.provenance()
    for p in prov.values():
        assert p["software"]["torch"] and p["campaign_hash"] == summary["campaign_hash"]
        assert p["host"] and p["matched_profiles"] and p["meters"]
        assert p["torch_device"] == "cpu"
        assert p["devices"] and all(dev["name"] for dev in p["devices"])
        # each run says what it had: its slot's threads and cores, and its warm-up's cost
        share = p["share"]
        used = p["threads_used"]  # the share's, fewer beside busy processes (fair_threads)
        assert 1 <= used <= share["threads"]
        assert p["threads"]["torch_intra_op"] == used
        assert p["threads"]["OMP_NUM_THREADS"] == str(used)
        if share["cpus"] is not None:
            assert p["affinity"] == share["cpus"]
        w = p["warmup"]
        assert w["steps"] == WARMUP_STEPS and w["time_s"] > 0 and w["energy_j"] > 0


def test_dask_local_cluster_gives_the_same_rows(local_run, tmp_path: Path) -> None:
    """``ecnas run --scheduler`` against a LocalCluster of 2 worker processes on loopback."""
    import json

    import pandas as pd
    from distributed import Client, LocalCluster

    d, toml, _proc, _killed = local_run
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=":0") as cluster:
        with Client(cluster, set_as_default=False) as client:
            worker_pids = set(client.run(os.getpid).values())
        proc = _ecnas("run", str(toml), "--store", str(tmp_path / "dask.sqlite"),
                      "--scheduler", cluster.scheduler_address, "--connect-timeout", "10",
                      "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert (summary["done"], summary["failed"], summary["executor"]) == (3, 0, "dask")
    with ResultsStore(d / "s.sqlite") as a, ResultsStore(tmp_path / "dask.sqlite") as b:
        local, dask = a.table(), b.table()
        # every run executed in a Dask worker process; the client alone committed them
        assert {p["pid"] for p in b.provenance().values()} <= worker_pids
    key = ["arch_hash", "budget_epochs", "repeat", "epoch"]
    local = local.sort_values(key).reset_index(drop=True)
    dask = dask.sort_values(key).reset_index(drop=True)
    assert len(local) == len(dask) == 3 * 2
    pd.testing.assert_frame_equal(local[SAME], dask[SAME])


def test_two_campaigns_on_one_cluster_get_their_own_runs(tmp_path: Path) -> None:
    """Same run keys, different recipes, at the same time on one scheduler: Dask must not hand
    one coordinator the other's results."""
    from concurrent.futures import ThreadPoolExecutor

    from campaign_runfns import marked
    from distributed import LocalCluster

    campaigns = {lr: load_campaign(campaign_toml(tmp_path / f"c{lr}.toml", count=2, repeats=2,
                                                 extra_recipe=f"learning_rate = {lr}"))
                 for lr in (0.1, 0.3)}
    assert {r.key for r in campaigns[0.1].runs()} == {r.key for r in campaigns[0.3].runs()}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, host="127.0.0.1",
                      protocol="tcp", dashboard_address=":0") as cluster, \
            ThreadPoolExecutor(2) as pool:
        futures = {lr: pool.submit(run_campaign, c, tmp_path / f"s{lr}.sqlite",
                                   scheduler=cluster.scheduler_address, run_fn=marked)
                   for lr, c in campaigns.items()}
        assert all(f.result(timeout=120).done == 4 for f in futures.values())
    for lr in campaigns:
        with ResultsStore(tmp_path / f"s{lr}.sqlite") as s:
            assert set(s.table()["train_accuracy"]) == {lr}


@pytest.mark.parametrize(("address", "message"), [
    ("tcp://127.0.0.1:9", "cannot reach Dask scheduler tcp://127.0.0.1:9 within 1 s"),
    ("127.0.0.1", "--scheduler '127.0.0.1': not a Dask scheduler address"),
    ("http://127.0.0.1:8786", "unknown address scheme 'http'"),
])
def test_unreachable_or_malformed_scheduler_is_one_line_exit_2_fast(
        tmp_path: Path, address: str, message: str) -> None:
    toml = campaign_toml(tmp_path / "c.toml", count=1, repeats=1)
    t0 = time.monotonic()
    proc = run_cli("run", toml, "--store", tmp_path / "s.sqlite", "--scheduler", address,
                   "--connect-timeout", "1")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert time.monotonic() - t0 < 30
