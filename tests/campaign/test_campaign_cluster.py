"""The ``[cluster]`` table and ``--cluster`` without a batch scheduler: the table's checks, the
worker-job scripts dask-jobqueue writes from it (SLURM and PBS), the provenance read from a
job's environment, and the CLI's refusals. The runs on a real SLURM are in
test_campaign_slurm.py."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from campaign_runfns import campaign_toml
from cli_inproc import run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecnas.campaign import load_campaign
from ecnas.campaign.cluster import ClusterSpec, job_name, job_script
from ecnas.campaign.cluster_config import job_log_directory, parse_cluster
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
                                    log_directory="logs")
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


# ----- property tests over generated [cluster] tables (issue 36) -----

#: characters an attacker reaches for: spaces, shell metacharacters, option dashes, newlines
_HOSTILE = st.text(alphabet=st.sampled_from(list("ab0_-.:/ ;&|$`'\"\\#()<>*?!~\n\t=,%@+")),
                   min_size=1, max_size=24)
_NAME = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.+@-]{0,15}", fullmatch=True)
_TABLES = st.fixed_dictionaries({}, optional={
    "cores": st.one_of(st.integers(min_value=1, max_value=64),
                       st.integers(min_value=-5, max_value=10**6)),
    "memory": st.one_of(st.sampled_from(["64MB", "1GB", "1.5GB", "512MiB", "16GB", "2TB"]),
                        _HOSTILE),
    "gres": st.one_of(st.sampled_from(["gpu:1", "gpu:2", "gpu:a100:4", "gpu"]), _HOSTILE),
    "partition": st.one_of(_NAME, _HOSTILE),
    "account": st.one_of(_NAME, _HOSTILE),
    "walltime": st.one_of(st.sampled_from(["00:10:00", "04:00:00", "1-02:03:04", "100:00:00"]),
                          _HOSTILE),
    "extra_directives": st.lists(st.one_of(st.sampled_from(["--constraint=a100", "--nice=5",
                                                            "-C a100", "--exclusive"]),
                                           _HOSTILE), max_size=3),
    "prologue": st.lists(st.one_of(st.sampled_from(["module load cuda", "echo 'a b'; true"]),
                                   _HOSTILE), max_size=3),
    "interface": st.one_of(st.sampled_from(["ib0", "lo", "eth0"]), _HOSTILE),
    "python": st.one_of(st.sampled_from(["python3", "/opt/venv/bin/python", "./py"]),
                        _HOSTILE),
    "log_directory": st.one_of(st.sampled_from(["jobs", "logs/slurm"]), _HOSTILE),
})


def _error(key: str, reason: str) -> InputError:
    return InputError(f"c.toml: {key}: {reason}")


def _asked(spec: ClusterSpec, kind: str, name: str, logs: Path, gpu: bool) -> set[str]:
    """Every line (but the worker command) a job script for ``spec`` may hold."""
    fixed = {"#!/usr/bin/env bash", "", *spec.prologue,
             *(f"export {v}={spec.cores}" for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                     "OPENBLAS_NUM_THREADS")),
             "export DASK_DISTRIBUTED__DIAGNOSTICS__NVML=False"}
    gres = spec.gres or ("gpu:1" if gpu else None)
    if kind == "slurm":
        d = "#SBATCH "
        fixed |= {f"{d}-J {name}", f"{d}-e {logs}/{name}-%J.err", f"{d}-o {logs}/{name}-%J.out",
                  f"{d}-n 1", f"{d}--cpus-per-task={spec.cores}",
                  f"{d}-t {spec.walltime or '00:30:00'}"}
        fixed |= {f"{d}-p {spec.partition}", f"{d}-A {spec.account}", f"{d}--gres={gres}"}
    else:
        d = "#PBS "
        fixed |= {f"{d}-N {name}", f"{d}-e {logs}/", f"{d}-o {logs}/", f"{d}-q {spec.partition}",
                  f"{d}-A {spec.account}"}
    return fixed | {f"{d}{x}" for x in spec.extra_directives}


def _check_script(spec: ClusterSpec, kind: str, tmp: Path, gpu: bool) -> str:
    spec = spec.with_kind(kind)
    store = tmp / "s.sqlite"
    script = job_script(spec, gpu=gpu, store_path=store)
    logs = job_log_directory(spec, store)
    asked = _asked(spec, kind, job_name(store), logs, gpu)
    lines = script.splitlines()
    worker = [ln for ln in lines if " -m distributed.cli.dask_worker " in ln]
    assert len(worker) == 1, script
    for line in lines:
        if line in asked or line is worker[0]:
            continue
        # derived from the checked memory/cores/gres/walltime, never a raw table value
        assert (re.fullmatch(r"#SBATCH --mem=\d+[KMGT]", line)
                or re.fullmatch(r"#PBS -l select=1:ncpus=\d+:mem=\d+GB(:ngpus=\d+)?", line)
                or re.fullmatch(r"#PBS -l walltime=\d+:\d\d:\d\d", line)), (line, script)
    tokens = shlex.split(worker[0])
    # no value needs quoting: none splits, joins or runs anything in the shell
    assert all(shlex.quote(t) == t for t in tokens), worker[0]
    assert tokens[0] == (spec.python or tokens[0]) and tokens[1:3] == ["-m",
                                                                     "distributed.cli.dask_worker"]
    return script


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(table=_TABLES, gpu=st.booleans())
def test_generated_tables_give_only_the_lines_they_ask_for(tmp_path: Path, table: dict,
                                                           gpu: bool) -> None:
    """Any table is refused with a one-line error naming one of its keys, or yields SLURM
    and PBS scripts holding only lines it asked for and a worker command with no value the
    shell would split or run."""
    try:
        spec = parse_cluster(table, _error)
    except InputError as exc:
        message = str(exc)
        assert "\n" not in message, message
        assert any(f"cluster.{k}:" in message for k in table), message
        return
    for kind in ("slurm", "pbs"):
        _check_script(spec, kind, tmp_path, gpu)


def _sbatch_up() -> bool:
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return False
    out = subprocess.run(["sinfo", "-h", "-o", "%T %P"], capture_output=True, text=True,
                         timeout=30)
    return out.returncode == 0 and "debug" in out.stdout


#: valid tables within what the single-node test SLURM has (2 CPUs, ~21 GB, gpu:2, debug)
_LOCAL = st.fixed_dictionaries({}, optional={
    "cores": st.integers(min_value=1, max_value=2),
    "memory": st.sampled_from(["64MB", "100MB", "1GB", "1.5GB", "512MiB", "2GB"]),
    "gres": st.sampled_from(["gpu:1", "gpu:2", "gpu"]),
    "partition": st.just("debug"),
    "walltime": st.sampled_from(["00:10:00", "04:00:00", "1-02:03:04", "100:00:00"]),
    "extra_directives": st.lists(st.sampled_from(["--nice=5", "--comment=ecnas",
                                                  "--requeue", "-J ecnas-x"]), max_size=2),
    "prologue": st.lists(st.sampled_from(["module load cuda", "echo 'a b'; true"]),
                         max_size=2),
    "python": st.sampled_from(["python3", "/usr/bin/python3"]),
    "log_directory": st.sampled_from(["jobs", "logs/slurm"]),
})


@pytest.mark.skipif(not _sbatch_up(), reason="no running SLURM with a debug partition "
                    "(sinfo; scripts/slurm/start.sh starts one as root)")
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(table=_LOCAL, gpu=st.booleans())
def test_sbatch_test_only_accepts_every_valid_local_table(tmp_path: Path, table: dict,
                                                          gpu: bool) -> None:
    """``sbatch --test-only`` on the single-node SLURM takes every valid table's script."""
    spec = parse_cluster(table, _error)
    script = _check_script(spec, "slurm", tmp_path, gpu)
    path = tmp_path / "job.sh"
    path.write_text(script)
    proc = subprocess.run(["sbatch", "--test-only", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, (proc.stderr, script)


def test_job_logs_stay_under_the_store_unless_the_command_line_names_a_folder(
        tmp_path: Path) -> None:
    store = tmp_path / "run" / "s.sqlite"
    store.parent.mkdir()
    assert job_log_directory(ClusterSpec(), store) == store.with_name("s.sqlite.jobs")
    assert job_log_directory(ClusterSpec(log_directory="logs/a"), store) == \
        store.parent.resolve() / "logs" / "a"
    with pytest.raises(InputError, match="job logs stay under the store's folder"):
        job_log_directory(ClusterSpec(log_directory=str(tmp_path / "elsewhere")), store)
    given = ClusterSpec(kind="slurm", log_directory="/etc").with_log_directory(
        tmp_path / "mine")
    assert job_log_directory(given, store) == tmp_path / "mine"  # the command line wins
    script = job_script(given, gpu=False, store_path=store)
    assert f"#SBATCH -e {tmp_path / 'mine'}/{job_name(store)}-%J.err" in script.splitlines()
    for bad in ("relative/logs", "/tmp/a b", "/tmp/../etc"):
        with pytest.raises(InputError, match="--log-directory"):
            ClusterSpec().with_log_directory(bad)
