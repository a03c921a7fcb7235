"""The ``[cluster]`` table and ``--cluster`` without a batch scheduler: the table's checks, the
worker-job scripts dask-jobqueue writes from it (SLURM and PBS), the provenance read from a
job's environment, and the CLI's refusals. The runs on a real SLURM are in
test_campaign_slurm.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from campaign_runfns import campaign_toml
from cli_inproc import run_cli

from ecnas.campaign import load_campaign
from ecnas.campaign.cluster import ClusterSpec, job_name, job_script
from ecnas.campaign.worker import cluster_job
from ecnas.errors import InputError

pytest.importorskip("dask_jobqueue", reason="dask-jobqueue is not installed")

CLUSTER = """
[cluster]
kind = "slurm"
cores = 4
memory = "8GB"
partition = "gpu"
account = "nas-lab"
walltime = "02:00:00"
extra_directives = ["--constraint=a100"]
prologue = ["module load cuda"]
log_directory = "logs"
"""


def _with_cluster(tmp_path: Path, table: str, devices: str = '["cpu"]') -> Path:
    toml = campaign_toml(tmp_path / "c.toml", count=2, repeats=1, devices=devices)
    toml.write_text(toml.read_text() + table)
    return toml


def test_cluster_table_is_read_and_stays_out_of_the_hash(tmp_path: Path) -> None:
    plain = load_campaign(campaign_toml(tmp_path / "p.toml", count=2, repeats=1))
    c = load_campaign(_with_cluster(tmp_path, CLUSTER))
    assert c.hash == plain.hash  # where it runs is not what it measures
    assert c.cluster == ClusterSpec(kind="slurm", cores=4, memory="8GB", partition="gpu",
                                    account="nas-lab", walltime="02:00:00",
                                    extra_directives=("--constraint=a100",),
                                    prologue=("module load cuda",),
                                    log_directory=str(tmp_path / "logs"))
    assert c.to_dict()["cluster"]["cores"] == 4 and plain.cluster is None


@pytest.mark.parametrize(("table", "key", "reason"), [
    ('[cluster]\nkind = "lsf"\n', "cluster.kind", "must be one of slurm, pbs"),
    ("[cluster]\ncores = 0\n", "cluster.cores", "integer ≥ 1"),
    ('[cluster]\nmemory = "lots"\n', "cluster.memory", "amount of memory"),
    ('[cluster]\nqueue = "gpu"\n', "cluster.queue", "unknown key"),
    ('[cluster]\nprologue = "module load cuda"\n', "cluster.prologue", "list of strings"),
    ('[cluster]\npartition = ""\n', "cluster.partition", "non-empty string"),
    ('cluster = 3\n', "cluster", "must be a table"),
])
def test_bad_cluster_table_names_the_key(tmp_path: Path, table: str, key: str,
                                         reason: str) -> None:
    toml = campaign_toml(tmp_path / "c.toml", count=2, repeats=1)
    text = toml.read_text()
    # a top-level key must come before the first table
    toml.write_text(table + text if not table.startswith("[") else text + table)
    with pytest.raises(InputError) as exc:
        load_campaign(toml)
    assert f": {key}: " in str(exc.value) and reason in str(exc.value)


def test_slurm_job_script_asks_for_the_table_resources(tmp_path: Path) -> None:
    c = load_campaign(_with_cluster(tmp_path, CLUSTER, devices='["cuda:0"]'))
    script = job_script(c.cluster, gpu=True, store_path=tmp_path / "s.sqlite")
    lines = script.splitlines()
    for directive in ("#SBATCH -p gpu", "#SBATCH -A nas-lab", "#SBATCH -t 02:00:00",
                      "#SBATCH --cpus-per-task=4", "#SBATCH --gres=gpu:1",
                      "#SBATCH --constraint=a100",
                      f"#SBATCH -J {job_name(tmp_path / 's.sqlite')}"):
        assert directive in lines, (directive, script)
    assert "module load cuda" in lines and "export OMP_NUM_THREADS=4" in lines
    worker = next(ln for ln in lines if "distributed.cli.dask_worker" in ln)
    # one run at a time per job, holding the GPU resource the GPU runs ask for
    assert "--nthreads 1" in worker and "--resources GPU=1" in worker
    assert "--death-timeout 30" in worker
    cpu = job_script(ClusterSpec(kind="slurm"), gpu=False, store_path=tmp_path / "s.sqlite")
    assert "--gres" not in cpu and "GPU=1" not in cpu


def test_pbs_job_script_asks_for_the_table_resources(tmp_path: Path) -> None:
    spec = ClusterSpec(kind="pbs", cores=8, memory="31GB", partition="workq",
                       account="proj1", walltime="01:00:00")
    script = job_script(spec, gpu=True, store_path=tmp_path / "s.sqlite")
    lines = script.splitlines()
    for directive in ("#PBS -q workq", "#PBS -A proj1", "#PBS -l walltime=01:00:00",
                      "#PBS -l select=1:ncpus=8:mem=31GB:ngpus=1"):
        assert directive in lines, (directive, script)


def test_job_name_is_the_stores() -> None:
    assert job_name("/a/s.sqlite") == job_name("/a/../a/s.sqlite")
    assert job_name("/a/s.sqlite") != job_name("/b/s.sqlite")
    assert job_name("/a/s.sqlite").startswith("ecnas-")


def test_cluster_job_from_the_job_environment() -> None:
    assert cluster_job({}) is None
    slurm = cluster_job({"SLURM_JOB_ID": "42", "SLURMD_NODENAME": "n7", "SLURM_JOB_NAME": "x",
                         "SLURM_GPUS_ON_NODE": "1", "SLURM_JOB_GPUS": "3",
                         "SLURM_CPUS_ON_NODE": "8"})
    assert slurm == {"scheduler": "slurm", "job_id": "42", "job_name": "x", "node": "n7",
                     "gres": "gpu:1", "job_gpus": "3", "cpus": "8"}
    assert cluster_job({"SLURM_JOB_ID": "1"})["gres"] is None
    pbs = cluster_job({"PBS_JOBID": "9.server", "PBS_JOBNAME": "x", "PBS_NGPUS": "1"})
    assert pbs is not None and pbs["scheduler"] == "pbs" and pbs["gres"] == "gpu:1"


def _ecnas(*args: str) -> subprocess.CompletedProcess:
    return run_cli(*args)


def test_cli_refuses_cluster_with_scheduler_and_a_bad_table(tmp_path: Path) -> None:
    toml = campaign_toml(tmp_path / "c.toml", count=2, repeats=1)
    proc = _ecnas("run", str(toml), "--cluster", "slurm", "--scheduler", "tcp://127.0.0.1:1")
    assert proc.returncode == 2 and "exclude each other" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    bad = _with_cluster(tmp_path, '[cluster]\nkind = "slurm"\ncores = -1\n')
    proc = _ecnas("run", str(bad))
    assert proc.returncode == 2 and "cluster.cores" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "c.sqlite").exists()  # refused before anything was written


def test_cluster_none_runs_a_table_campaign_locally(tmp_path: Path) -> None:
    toml = _with_cluster(tmp_path, '[cluster]\nkind = "slurm"\n')
    tests = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-m", "ecnas", "run", str(toml), "--cluster", "none", "--workers", "0",
         "--run-fn", "campaign_runfns:trivial", "--json", "--quiet"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tests.parent), str(tests)])})
    assert proc.returncode == 0, proc.stderr
    assert '"executor": "inline"' in proc.stdout
