"""Durability: kill -9 of the coordinator (once mid-commit) then resume; crashing workers are
recorded and retried; runs that keep failing are given up after the retry limit."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from campaign_runfns import always_fails, campaign_toml, crash_once, socket_meter

from ecnas.campaign import ResultsStore, load_campaign, run_campaign
from ecnas.errors import InputError
from ecnas.tables import ROW_KEYS

TESTS = Path(__file__).resolve().parents[1]
DONE = re.compile(r"done ([0-9a-f]{8}) budget (\d+) repeat (\d+)")


def _coordinator(toml: Path, store: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get(
        "PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, "-m", "ecnas", "run", str(toml), "--store", str(store), "--workers",
         "2", "--resume", "--run-fn", "campaign_runfns:big", "--json"],
        stdout=subprocess.DEVNULL, stderr=log.open("w"), env=env)


def _lock_held(store: Path) -> bool:
    """True while another connection holds the store's write lock (a transaction is open)."""
    db = sqlite3.connect(store, timeout=0, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            return True
        raise
    finally:
        db.close()


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


def _keys_in_log(log: Path) -> set[tuple[str, int, int]]:
    return {(m[1], int(m[2]), int(m[3])) for m in DONE.finditer(log.read_text())}


def test_kill_9_at_random_moments_then_resume_keeps_every_run_once(tmp_path: Path) -> None:
    toml = campaign_toml(tmp_path / "c.toml", count=4, repeats=6)
    campaign = load_campaign(toml)
    store = tmp_path / "s.sqlite"
    rng = random.Random(7)
    kills = mid_commit = 0
    for i in range(6):
        log = tmp_path / f"log{i}.txt"
        proc = _coordinator(toml, store, log)
        before = _stored(store)
        if i == 2:  # kill while a run's transaction is open
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                if _stored(store) > before and _lock_held(store):
                    os.kill(proc.pid, signal.SIGKILL)
                    mid_commit += 1
                    break
        else:  # a random moment after 1-2 more runs were stored: progress between kills
            target, extra = before + rng.randint(1, 2), rng.uniform(0.0, 0.4)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None \
                    and _stored(store) < target:
                time.sleep(0.01)  # test pacing, not a measurement
            time.sleep(extra)
            if proc.poll() is None:
                try:
                    runs = psutil.Process(proc.pid).children()
                except psutil.NoSuchProcess:
                    runs = []
                os.kill(proc.pid, signal.SIGKILL)
                # the coordinator's run processes die with it (no orphan keeps training)
                _gone, alive = psutil.wait_procs(runs, timeout=10)
                assert not alive
        proc.wait(timeout=30)
        if proc.returncode == -signal.SIGKILL:
            kills += 1
        with ResultsStore(store) as s:
            keys = {tuple(k.split("/")) for k in s.done_keys()}
            have = {(h[:8], int(b), int(r)) for h, b, r in keys}
        # every run the coordinator reported done before dying is in the store
        assert _keys_in_log(log) <= have
        if _stored(store) == len(campaign.runs()):
            break
    assert kills >= 5 and mid_commit == 1
    # finish, with the Python API this time
    summary = run_campaign(campaign, store, workers=2, run_fn=__import__(
        "campaign_runfns").big)
    assert summary.done + summary.skipped == summary.total == len(campaign.runs())
    with ResultsStore(store) as s:
        assert s.count() == len(campaign.runs())
        df = s.table()
    assert len(df) == 3000 * len(campaign.runs())  # no half-stored run
    assert not df.duplicated(list(ROW_KEYS)).any()
    assert set(df.groupby(["arch_hash", "budget_epochs", "repeat"]).size()) == {3000}


def test_crashing_worker_is_recorded_and_retried(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECNAS_TEST_CRASH_DIR", str(tmp_path))
    campaign = load_campaign(campaign_toml(tmp_path / "c.toml", count=2, repeats=1))
    lines: list[str] = []
    summary = run_campaign(campaign, tmp_path / "s.sqlite", workers=2, run_fn=crash_once,
                           progress=lines.append)
    assert summary.done == summary.total == 2
    assert summary.failed == 0 and summary.failed_attempts == 2
    with ResultsStore(tmp_path / "s.sqlite") as s:
        failures = s.failures()
        assert s.count() == 2
    assert sorted(f.run_key for f in failures) == sorted(r.key for r in campaign.runs())
    assert all("worker process died (exit status 3)" in f.error for f in failures)
    assert any("will retry" in line for line in lines)


def test_run_that_keeps_failing_is_given_up(tmp_path: Path) -> None:
    campaign = load_campaign(campaign_toml(tmp_path / "c.toml", count=1, repeats=2, retries=1))
    summary = run_campaign(campaign, tmp_path / "s.sqlite", workers=0, run_fn=always_fails)
    assert summary.done == 0 and summary.failed == 2 and summary.failed_attempts == 4
    assert all("RuntimeError: this run always fails" in f for f in summary.failures)
    with ResultsStore(tmp_path / "s.sqlite") as s:
        assert len(s.failures()) == 4 and s.count() == 0
    # the export says which runs of the campaign the table lacks
    proc = subprocess.run([sys.executable, "-m", "ecnas", "table", str(tmp_path / "s.sqlite"),
                           "--out", str(tmp_path / "t.csv"), "--json"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["runs"], out["campaign_runs"], out["missing"], out["failed_attempts"]) == \
        (0, 2, 2, 4)


def test_run_fn_that_workers_cannot_import_is_refused_before_anything_runs(
        tmp_path: Path) -> None:
    campaign = load_campaign(campaign_toml(tmp_path / "c.toml", count=1, repeats=1))

    def local_fn(config):  # a closure: spawned workers could not import it by name
        return []

    with pytest.raises(InputError, match="run_fn .*local_fn cannot be sent to worker"):
        run_campaign(campaign, tmp_path / "s.sqlite", workers=2, run_fn=local_fn)
    assert not (tmp_path / "s.sqlite").exists()


def test_resume_false_refuses_a_store_with_runs(tmp_path: Path) -> None:
    from campaign_runfns import trivial

    campaign = load_campaign(campaign_toml(tmp_path / "c.toml", count=1, repeats=1))
    run_campaign(campaign, tmp_path / "s.sqlite", workers=0, run_fn=trivial)
    with pytest.raises(InputError, match="already holds 1 run"):
        run_campaign(campaign, tmp_path / "s.sqlite", workers=0, run_fn=trivial, resume=False)
    lines: list[str] = []
    again = run_campaign(campaign, tmp_path / "s.sqlite", workers=0, run_fn=trivial,
                         progress=lines.append)
    assert (again.done, again.skipped) == (0, 1)
    assert again.energy_j == 0.0  # the summary counts this session's runs
    with ResultsStore(tmp_path / "s.sqlite") as s:
        measured, estimated = s.energy()
    assert 1e3 <= measured < 1e6 and estimated == 0
    # progress counts the campaign so far, the stored run included
    assert lines == [f"[1/1] nothing to run: every run is in the store | energy so far "
                     f"{measured / 1e3:.1f} kJ measured, 0.0 J estimated | "
                     "0 failed attempt(s) | ETA ?"]


def test_concurrent_runs_split_a_socket_wide_meter(tmp_path: Path) -> None:
    campaign = load_campaign(campaign_toml(tmp_path / "c.toml", count=2, repeats=1))
    run_campaign(campaign, tmp_path / "s.sqlite", workers=2, run_fn=socket_meter)
    with ResultsStore(tmp_path / "s.sqlite") as s:
        df = s.table()
        prov = s.provenance()
    assert ((df["cpu_share"] > 0) & (df["cpu_share"] <= 1)).all()
    assert (df["energy_j"] == df["cpu_energy_j"]).all()
    # each run's socket reading (the run function's own rows) scaled by the share it recorded
    from campaign_runfns import _rows

    from ecnas.trainer.train import TrainConfig
    for run in campaign.runs():
        raw = [r["cpu_energy_j"] for r in _rows(TrainConfig.from_dict(campaign.train_config(run)))]
        got = df[df["arch_hash"] == run.arch_hash].sort_values("epoch")
        assert got["cpu_energy_j"].tolist() == pytest.approx(
            [v * got["cpu_share"].iloc[0] for v in raw])
    assert all(p["cpu_share"] == pytest.approx(df.loc[df["arch_hash"] == k.split("/")[0],
                                                      "cpu_share"].iloc[0])
               for k, p in prov.items())
    if (df["cpu_share"] < 1).any():
        assert "cpu_share_note" in df.attrs["ecnas"]


def test_each_local_worker_sees_only_its_gpu(tmp_path: Path) -> None:
    """devices cuda:3 and cuda:5: a run in each slot has CUDA_VISIBLE_DEVICES set to its GPU and
    trains on cuda:0 (the only GPU it sees). No GPU is needed: the trivial run never touches it."""
    from campaign_runfns import trivial

    campaign = load_campaign(campaign_toml(tmp_path / "c.toml", count=2, repeats=2,
                                           devices='["cuda:3", "cuda:5"]'))
    run_campaign(campaign, tmp_path / "s.sqlite", workers=2, run_fn=trivial)
    with ResultsStore(tmp_path / "s.sqlite") as s:
        prov = list(s.provenance().values())
    assert len(prov) == 4
    assert {p["cuda_visible_devices"] for p in prov} == {"3", "5"}
    assert {p["torch_device"] for p in prov} == {"cuda:0"}
    assert "CUDA_VISIBLE_DEVICES" not in os.environ or \
        os.environ["CUDA_VISIBLE_DEVICES"] not in {"3", "5"}  # the coordinator's is untouched


def test_ctrl_c_stops_the_coordinator_and_its_runs(tmp_path: Path) -> None:
    """SIGINT to the whole process group (what Ctrl-C does): exit 130, one line, no traceback
    from the runs, and no run left training."""
    toml = campaign_toml(tmp_path / "c.toml", count=2, repeats=1)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get(
        "PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ecnas", "run", str(toml), "--store", str(tmp_path / "s.sqlite"),
         "--workers", "2", "--run-fn", "campaign_runfns:stalls"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True)
    deadline = time.monotonic() + 60
    runs: list[psutil.Process] = []
    while time.monotonic() < deadline and len(runs) < 2:
        # both runs started: the multiprocessing helper aside, children named for their run
        runs = [c for c in psutil.Process(proc.pid).children()
                if "spawn_main" in " ".join(c.cmdline())]
        time.sleep(0.05)  # test pacing, not a measurement
    assert len(runs) == 2
    time.sleep(0.5)  # let the runs reach their run function
    os.killpg(proc.pid, signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert err.strip().splitlines()[-1] == "ecnas run: interrupted"
    _gone, alive = psutil.wait_procs(runs, timeout=10)
    assert not alive


def test_runs_still_starting_when_the_coordinator_dies_do_not_outlive_it(
        tmp_path: Path) -> None:
    """kill -9 the moment the run processes appear, before their death signal is armed: they
    notice the coordinator is gone and exit instead of training for nobody."""
    toml = campaign_toml(tmp_path / "c.toml", count=2, repeats=1)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get(
        "PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ecnas", "run", str(toml), "--store", str(tmp_path / "s.sqlite"),
         "--workers", "2", "--run-fn", "campaign_runfns:stalls"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 60
    runs: list[psutil.Process] = []
    while time.monotonic() < deadline and not runs:
        try:
            runs = [c for c in psutil.Process(proc.pid).children()
                    if "spawn_main" in " ".join(c.cmdline())]
        except psutil.NoSuchProcess:  # a child gone between listing and reading it
            runs = []
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert runs
    _gone, alive = psutil.wait_procs(runs, timeout=20)
    for p in alive:  # clean up before failing: these would train for 2 minutes
        p.kill()
    assert not alive
