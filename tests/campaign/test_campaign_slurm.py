"""Campaigns on a real single-node SLURM (munge + slurmctld + slurmd, started by
scripts/slurm/start.sh): ``ecnas run --cluster slurm`` on 2 worker jobs gives the local
executor's rows; the faults (scancel of a worker job, SIGKILL of a worker process, SIGKILL of
the coordinator then --resume, slurmd stopped and restarted) lose no run and store none twice;
GPU campaigns get one (fake) gres GPU per job and the NVML meter sees only that board; Ctrl-C
and SIGTERM cancel every job. The queue is empty after every test.

Skipped, with the reason, unless asked for with ``ECNAS_TEST_SERVICES=1`` (they submit jobs,
and start SLURM as root where it is not running), and where SLURM is not installed or cannot
be started (not root). Each test sees and cancels only its own jobs (by the job name ecnas gives
its stores' worker jobs), never other jobs on a shared SLURM.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from campaign_runfns import campaign_toml

from ecnas.campaign import ResultsStore, load_campaign

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
SCRIPTS = ROOT / "scripts" / "slurm"
STATE = Path(os.environ.get("ECNAS_SLURM_DIR", "/var/lib/ecnas-slurm"))
SAME = ["arch_hash", "matrix", "ops", "budget_epochs", "repeat", "epoch", "device",
        "train_accuracy", "validation_accuracy", "test_accuracy", "trainable_params", "flops",
        "estimated", "source"]
# one worker runs them all, one after another (pytest -n … --dist loadgroup): they share one
# SLURM node (2 CPUs, 2 gres GPUs) and its queue
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("slurm")]


#: the stores the tests here give their coordinators; ecnas names a store's worker jobs after it
STORES = ("s.sqlite", "slurm.sqlite", "local.sqlite")


def _queue(tmp_path: Path) -> list[str]:
    """The jobs of this test's own coordinators ("ID NAME STATE"), by the job name ecnas gives
    each store's worker jobs: jobs that others queued on a shared SLURM are not ours to see."""
    from ecnas.campaign.cluster import job_name

    ours = {job_name(tmp_path / name) for name in STORES}
    out = subprocess.run(["squeue", "-h", "-o", "%i %j %T"], capture_output=True, text=True,
                         timeout=30)
    return [line for line in out.stdout.splitlines()
            if line.strip() and len(line.split()) >= 2 and line.split()[1] in ours]


def _up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                         timeout=30)
    return out.returncode == 0 and any(s.strip().rstrip("*") in ("idle", "mixed", "allocated")
                                       for s in out.stdout.splitlines())


@pytest.fixture(scope="module")
def slurm():
    """A running single-node SLURM: the one CI started, or one started here (and stopped at
    the end of the module)."""
    if os.environ.get("ECNAS_TEST_SERVICES") != "1":
        pytest.skip("SLURM tests submit jobs (and may start a single-node SLURM as root): "
                    "asked for only, with ECNAS_TEST_SERVICES=1 (bash scripts/test.sh "
                    "--with-services; .ci/run sets it)")
    missing = [b for b in ("slurmctld", "slurmd", "munged", "sbatch", "squeue", "scancel")
               if shutil.which(b) is None]
    if missing:
        pytest.skip(f"SLURM is not installed ({', '.join(missing)} not found; "
                    "apt-get install slurmctld slurmd munge)")
    pytest.importorskip("dask_jobqueue", reason="dask-jobqueue is not installed")
    started = False
    if not _up():
        if os.geteuid() != 0:
            pytest.skip("SLURM is not running and scripts/slurm/start.sh needs root")
        proc = subprocess.run(["bash", str(SCRIPTS / "start.sh")], capture_output=True,
                              text=True, timeout=120)
        if proc.returncode != 0:
            pytest.skip(f"scripts/slurm/start.sh could not start SLURM: "
                        f"{(proc.stderr.strip().splitlines() or ['?'])[-1]}")
        started = True
    gres = subprocess.run(["sinfo", "-h", "-o", "%G"], capture_output=True, text=True,
                          timeout=30).stdout.strip()
    yield {"node": socket.gethostname().split(".")[0], "gres": gres}
    if started:
        subprocess.run(["bash", str(SCRIPTS / "stop.sh")], capture_output=True, timeout=120)


@pytest.fixture(autouse=True)
def empty_queue_after(slurm, tmp_path: Path):
    """Every test leaves none of its jobs queued; what is left is cancelled by id (only the
    test's own jobs, never another user's or another test's)."""
    assert _queue(tmp_path) == [], "jobs queued before the test"
    yield
    left = _queue(tmp_path)
    if left:
        subprocess.run(["scancel", *(line.split()[0] for line in left)], capture_output=True,
                       timeout=60)
    assert left == [], f"jobs left in squeue: {left}"


#: the test cluster is this machine: its scheduler and workers talk over loopback only
LOOPBACK = {"DASK_JOBQUEUE__SLURM__INTERFACE": "lo"}


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """In-process coordinators (run_campaign here) keep their scheduler on loopback too."""
    import dask

    with dask.config.set({"jobqueue.slurm.interface": "lo"}):
        yield


def _env(marks: Path | None = None, **extra: str) -> dict[str, str]:
    env = {**os.environ, **LOOPBACK, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)])}
    if marks is not None:
        env["ECNAS_TEST_MARKS"] = str(marks)
    return {**env, **extra}


def _run_cmd(toml: Path, store: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "ecnas", "run", str(toml), "--store", str(store),
            "--cluster", "slurm", "--workers", "2", "--json", *args]


def _stored(store: Path) -> int:
    if not store.exists():
        return 0
    db = sqlite3.connect(store, timeout=5)
    try:
        return db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


def _marks(marks: Path) -> list[dict[str, str]]:
    out = []
    for p in marks.iterdir():
        job, pid, arch, budget, repeat, _ns = p.name.split("-")
        out.append({"job": job, "pid": pid, "key": f"{arch}/{budget}/{repeat}"})
    return out


def _wait_for(cond, timeout: float = 300.0, what: str = "") -> None:
    """Poll `cond` until true; bounded generously (jobs start slowly on a loaded node)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)  # test pacing, not a measurement


def _check_store(store: Path, toml: Path, node: str) -> dict[str, dict]:
    """Every run of the campaign stored exactly once, each with its job id and node."""
    runs = load_campaign(toml).runs()
    with ResultsStore(store, readonly=True) as s:
        prov = s.provenance()
        rows = s.rows()
        assert s.count() == len(runs)
    assert set(prov) == {r.key for r in runs}  # 0 lost
    keys = [(r["arch_hash"], r["budget_epochs"], r["repeat"], r["epoch"]) for r in rows]
    assert len(keys) == len(set(keys))  # 0 duplicate rows
    for p in prov.values():
        job = p["cluster_job"]
        assert job["scheduler"] == "slurm" and job["job_id"].isdigit()
        assert job["node"] == node and job["job_name"].startswith("ecnas-")
    return prov


# -- the acceptance path --------------------------------------------------------------------------

def test_campaign_on_two_slurm_jobs_gives_the_local_rows(slurm, tmp_path: Path) -> None:
    """The real trainer: 4 runs on 2 SLURM worker jobs, rows as the local executor's."""
    import pandas as pd

    toml = campaign_toml(tmp_path / "c.toml", count=2, repeats=2,
                         extra_recipe="checkpoints = [0, 1]")
    store = tmp_path / "slurm.sqlite"
    proc = subprocess.run(_run_cmd(toml, store), capture_output=True, text=True, timeout=400,
                          env=_env())
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["executor"] == "slurm" and summary["done"] == summary["total"] == 4
    assert "2 SLURM worker job(s)" in proc.stderr
    prov = _check_store(store, toml, slurm["node"])
    jobs = {p["cluster_job"]["job_id"] for p in prov.values()}
    assert 1 <= len(jobs) <= 2  # the two jobs the coordinator kept; no other
    assert all(p["cluster_job"]["cpus"] == "1" for p in prov.values())
    local = tmp_path / "local.sqlite"
    proc = subprocess.run([sys.executable, "-m", "ecnas", "run", str(toml), "--store",
                           str(local), "--workers", "1", "--json"], capture_output=True,
                          text=True, timeout=400, env=_env())
    assert proc.returncode == 0, proc.stderr
    with ResultsStore(store, readonly=True) as s, ResultsStore(local, readonly=True) as t:
        a, b = pd.DataFrame(s.rows()), pd.DataFrame(t.rows())
        assert all(p["cluster_job"] is None for p in t.provenance().values())
    key = ["arch_hash", "budget_epochs", "repeat", "epoch"]
    a, b = a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a[SAME], b[SAME])
    assert (a["energy_j"] > 0).all()  # metered on the worker jobs, not copied


# -- faults ----------------------------------------------------------------------------------------

def _faulty(tmp_path: Path, count: int = 3):
    marks = tmp_path / "marks"
    marks.mkdir()
    toml = campaign_toml(tmp_path / "c.toml", count=count, repeats=2, retries=2)
    return marks, toml, tmp_path / "s.sqlite"


def test_scancel_of_a_worker_job_mid_run(slurm, tmp_path: Path) -> None:
    marks, toml, store = _faulty(tmp_path)
    coord = subprocess.Popen(_run_cmd(toml, store, "--run-fn", "campaign_runfns:on_cluster"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=_env(marks))
    _wait_for(lambda: any(marks.iterdir()) or coord.poll() is not None, what="a run to start")
    victim = _marks(marks)[0]
    subprocess.run(["scancel", victim["job"]], check=True, timeout=30)
    out, err = coord.communicate(timeout=300)
    assert coord.returncode == 0, err
    summary = json.loads(out)
    assert summary["done"] == 6 and summary["failed"] == 0
    prov = _check_store(store, toml, slurm["node"])
    # the run caught in the cancelled job was done again, by another job
    assert prov[victim["key"]]["cluster_job"]["job_id"] != victim["job"]
    assert all(p["cluster_job"]["job_id"] != victim["job"] or k != victim["key"]
               for k, p in prov.items())


def test_worker_process_killed_with_sigkill(slurm, tmp_path: Path) -> None:
    marks, toml, store = _faulty(tmp_path)
    coord = subprocess.Popen(_run_cmd(toml, store, "--run-fn", "campaign_runfns:on_cluster"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=_env(marks))
    _wait_for(lambda: any(marks.iterdir()) or coord.poll() is not None, what="a run to start")
    victim = _marks(marks)[0]
    os.kill(int(victim["pid"]), signal.SIGKILL)  # the Dask worker process inside the job
    out, err = coord.communicate(timeout=300)
    assert coord.returncode == 0, err
    assert json.loads(out)["done"] == 6
    prov = _check_store(store, toml, slurm["node"])
    assert prov[victim["key"]]["pid"] != int(victim["pid"])  # redone by a living process
    started = [m["key"] for m in _marks(marks)]
    assert started.count(victim["key"]) >= 2  # it really was cut off and started again


def test_coordinator_sigkill_then_resume_cancels_its_jobs(slurm, tmp_path: Path) -> None:
    marks, toml, store = _faulty(tmp_path)
    first = subprocess.Popen(_run_cmd(toml, store, "--run-fn", "campaign_runfns:on_cluster"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             env=_env(marks))
    _wait_for(lambda: _stored(store) >= 1 or first.poll() is not None, what="a stored run")
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    assert first.returncode == -signal.SIGKILL
    orphans = sorted(line.split()[0] for line in _queue(tmp_path))
    assert orphans, "the killed coordinator's jobs should still be queued or running"
    # Each orphaned Dask worker gives up DEATH_TIMEOUT_S (30 s) after losing its scheduler and
    # its job ends by itself; under load the resumed coordinator can take longer than that to
    # start, and then finds fewer jobs to cancel than were orphaned (the race this test lost on
    # a busy machine). Suspended jobs stay queued, frozen, until the resume cancels them.
    frozen = [j for j in orphans
              if subprocess.run(["scontrol", "suspend", j], capture_output=True,
                                timeout=30).returncode == 0]
    stored = _stored(store)
    proc = subprocess.run(_run_cmd(toml, store, "--resume", "--run-fn",
                                   "campaign_runfns:on_cluster"),
                          capture_output=True, text=True, timeout=300, env=_env(marks))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["skipped"] == stored and summary["done"] + stored == 6
    note = [w for w in summary["warnings"] if w.startswith("cancelled")]
    # every orphan frozen above was still queued when the resume looked: it must be cancelled
    # (where suspending is not allowed, at least one orphan must be; the others may have ended)
    assert note and all(j in note[0] for j in frozen), summary["warnings"]
    assert any(j in note[0] for j in orphans), summary["warnings"]
    prov = _check_store(store, toml, slurm["node"])
    later = {p["cluster_job"]["job_id"] for k, p in prov.items()}
    # the resumed runs ran on new jobs, never on the dead coordinator's
    assert summary["done"] == sum(1 for p in prov.values()
                                  if p["cluster_job"]["job_id"] not in orphans)
    assert later - set(orphans)


def test_slurmd_stopped_and_restarted_mid_campaign(slurm, tmp_path: Path) -> None:
    pidfile = STATE / "slurmd.pid"
    if not pidfile.is_file() or os.geteuid() != 0:
        pytest.skip("slurmd was not started by scripts/slurm/start.sh as root here")
    marks, toml, store = _faulty(tmp_path, count=4)
    coord = subprocess.Popen(_run_cmd(toml, store, "--run-fn", "campaign_runfns:on_cluster"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=_env(marks))
    _wait_for(lambda: any(marks.iterdir()) or coord.poll() is not None, what="a run to start")
    pid = int(pidfile.read_text())
    os.kill(pid, signal.SIGTERM)
    _wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=30, what="slurmd to stop")
    time.sleep(3)  # runs go on without slurmd for a while
    subprocess.run(["slurmd"], check=True, timeout=30)
    out, err = coord.communicate(timeout=300)
    assert coord.returncode == 0, err
    assert json.loads(out)["done"] == 8
    _check_store(store, toml, slurm["node"])
    assert _up()


# -- GPUs (fake gres) ------------------------------------------------------------------------------

def test_gpu_campaign_one_gres_gpu_per_job_and_the_meter_sees_only_it(
        slurm, stub_dir: Path, tmp_path: Path) -> None:
    from fakes.nvml import FakeGpu, write_state

    if "gpu:" not in slurm["gres"]:
        pytest.skip(f"the SLURM node offers no gpu gres ({slurm['gres'] or 'none'})")
    state = tmp_path / "gpus.txt"
    uuids = ["GPU-aaaa0000", "GPU-bbbb1111"]
    write_state(state, [FakeGpu(u, energy_mj=1000) for u in uuids])
    # the worker job loads the stand-in NVML: the dynamic loader reads LD_LIBRARY_PATH at
    # process start, so the job's prologue sets it
    toml = campaign_toml(tmp_path / "c.toml", count=2, repeats=2, devices='["cuda:0"]')
    toml.write_text(toml.read_text() + f"""
[cluster]
kind = "slurm"
memory = "1GB"
prologue = ["export LD_LIBRARY_PATH={stub_dir}", "export FAKE_NVML_STATE={state}"]
""")
    store = tmp_path / "s.sqlite"
    cmd = [sys.executable, "-m", "ecnas", "run", str(toml), "--store", str(store), "--workers",
           "2", "--json", "--run-fn", "campaign_runfns:metered_gpus"]
    env = _env()
    env.pop("CUDA_VISIBLE_DEVICES", None)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "gres gpu:1" in proc.stderr
    prov = _check_store(store, toml, slurm["node"])
    by_job: dict[str, str] = {}
    for p in prov.values():
        job = p["cluster_job"]
        assert job["gres"] == "gpu:1" and p["torch_device"] == "cuda:0"
        visible = p["cuda_visible_devices"]
        assert visible == job["job_gpus"] and visible in ("0", "1")  # as SLURM set it
        assert by_job.setdefault(job["job_id"], visible) == visible
        gpus = [d for d in p["devices"] if d["meter"] == "nvml"]
        assert [d["uuid"] for d in gpus] == [uuids[int(visible)]]  # that board, only it
    if len(by_job) == 2:  # two jobs held the node at once: two boards
        assert sorted(by_job.values()) == ["0", "1"]


# -- the coordinator ends: its jobs go -------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_coordinator_cancels_its_jobs(slurm, tmp_path: Path, sig: int) -> None:
    marks, toml, store = _faulty(tmp_path)
    coord = subprocess.Popen(_run_cmd(toml, store, "--run-fn", "campaign_runfns:on_cluster"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=_env(marks))
    _wait_for(lambda: any(marks.iterdir()) or coord.poll() is not None, what="a run to start")
    assert _queue(tmp_path)
    coord.send_signal(sig)
    _out, err = coord.communicate(timeout=120)
    # Ctrl-C: "interrupted", 130; SIGTERM: says it cancels the jobs, 128 + 15
    assert coord.returncode == (130 if sig == signal.SIGINT else 143), err
    assert ("interrupted" if sig == signal.SIGINT else "SIGTERM received") in err
    assert "Traceback" not in err, err
    assert _queue(tmp_path) == []  # cancelled before the coordinator returned


def test_jobs_that_die_before_their_worker_joins_fail_the_campaign(
        slurm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A broken job environment (here a prologue that fails) ends every job before its Dask
    worker starts; dask-jobqueue never replaces such jobs: the campaign stops with the job
    log's last line instead of waiting forever, and no job stays queued."""
    from campaign_runfns import trivial

    from ecnas.campaign import cluster as jq
    from ecnas.campaign import run_campaign

    monkeypatch.setattr(jq, "STALL_S", 2.0)
    toml = campaign_toml(tmp_path / "c.toml", count=2, repeats=1)
    toml.write_text(toml.read_text() + '\n[cluster]\nkind = "slurm"\nprologue = '
                    '["echo \'module cuda/12 not found\' >&2", "exit 3"]\n')
    campaign = load_campaign(toml)
    with pytest.raises(jq.ClusterError, match="module cuda/12 not found"):
        run_campaign(campaign, tmp_path / "s.sqlite", workers=2, cluster=campaign.cluster,
                     run_fn=trivial)
    with ResultsStore(tmp_path / "s.sqlite", readonly=True) as s:
        assert s.count() == 0
