"""The rules of distributed metering without launching a job: where a process sits (from the
launchers' environments), the node's identity, how a job report counts each domain once, and
the exchange's errors (mismatched windows, missing ranks, a barrier nobody else reaches),
through real folder rendezvous on disk, with one Gatherer per simulated rank in threads."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import pytest

from ecnas.errors import InputError
from ecnas.monitor.distributed import (
    DistributedError,
    Gatherer,
    Topology,
    assemble,
    barrier,
    node_identity,
    topology,
)
from ecnas.monitor.rendezvous import DirectoryRendezvous, job_id, open_rendezvous
from ecnas.monitor.report import DomainEnergy, EnergyReport

pytestmark = pytest.mark.xdist_group("distributed")


def test_single_process_is_not_distributed() -> None:
    assert topology({}) is None
    assert topology({"RANK": "0", "WORLD_SIZE": "1"}) is None


def test_torchrun_environment() -> None:
    topo = topology({"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4",
                     "TORCHELASTIC_RUN_ID": "x", "ECNAS_NODE_ID": "n1"})
    assert topo == Topology(5, 8, 1, 4, "n1", "torchrun")
    assert not topo.node_leader


def test_srun_tasks_but_not_the_batch_script() -> None:
    task = {"SLURM_PROCID": "1", "SLURM_NTASKS": "2", "SLURM_LOCALID": "1",
            "SLURM_STEP_ID": "0", "SLURM_TASKS_PER_NODE": "2(x1)", "ECNAS_NODE_ID": "n"}
    assert topology(task) == Topology(1, 2, 1, 2, "n", "slurm")
    batch = {k: v for k, v in task.items() if k != "SLURM_STEP_ID"}
    assert topology(batch) is None  # sbatch's script is not one of the tasks


def test_bad_environment_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="RANK='x'"):
        topology({"RANK": "x", "WORLD_SIZE": "2"})
    with pytest.raises(InputError, match="outside the world"):
        topology({"RANK": "4", "WORLD_SIZE": "2"})


def test_node_identity_is_host_and_boot_unless_overridden() -> None:
    real = node_identity({})
    host, _, boot = real.partition("/")
    assert host and boot and boot != "noboot"
    assert node_identity({"ECNAS_NODE_ID": "sim-1"}) == "sim-1"


def report(name: str, domains: dict[str, tuple[str, float, str]]) -> EnergyReport:
    entries = {d: DomainEnergy(d, comp, j, j, meter, "estimated" if meter == "estimate"
                               else "measured") for d, (comp, j, meter) in domains.items()}
    return EnergyReport(name, 1.0, math.fsum(e.joules for e in entries.values()), entries)


def run_ranks(tmp_path: Path, world: int, reports: list[EnergyReport], nodes: list[str],
              timeout: float = 5.0) -> list[object]:
    """One thread per rank, each with its own Gatherer over one folder rendezvous."""
    out: list[object] = [None] * world

    def rank(r: int) -> None:
        topo = Topology(r, world, r, world, nodes[r], "test")
        g = Gatherer(topo, DirectoryRendezvous(tmp_path / "rdv", "job"))
        try:
            out[r] = g.gather(reports[r], {"gpu:0": f"GPU-{nodes[r]}-{r}",
                                           "gpu:1": f"GPU-{nodes[r]}-{r}"}, timeout)
        except InputError as exc:
            out[r] = exc

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return out


def test_each_domain_once_even_when_two_ranks_read_it(tmp_path: Path) -> None:
    reports = [report("w", {"gpu:0": ("gpu", 10.0, "nvml"), "cpu:0/package": ("cpu", 5.0, "rapl")}),
               # a rank that also read the node's package (a Monitor started before the
               # process group): counted once, from rank 0, with a warning
               report("w", {"gpu:1": ("gpu", 20.0, "nvml"), "cpu:0/package": ("cpu", 5.0, "rapl"),
                            "cpu:estimate": ("cpu", 0.5, "estimate")})]
    jobs = run_ranks(tmp_path, 2, reports, ["a", "a"])
    for job in jobs:
        assert job.energy_j == pytest.approx(35.5) and job.complete
        assert job.nodes == {"a": pytest.approx(35.5)}
        assert job.component_j("gpu") == pytest.approx(30.0)
        assert any("read by ranks 0 and 1" in w for w in job.warnings)
        assert job.estimated  # the estimate of rank 1's own process tree is in it
        assert "estimated in part" in job.table()
    assert json.loads(jobs[0].to_json())["ranks"][1]["domains"] == ["gpu:1", "cpu:estimate"]


def test_mismatched_windows(tmp_path: Path) -> None:
    reports = [report("train", {}), report("eval", {})]
    errors = run_ranks(tmp_path, 2, reports, ["a", "a"])
    for err in errors:
        assert isinstance(err, DistributedError)
        assert "mismatched windows" in str(err)


def test_a_rank_that_never_comes(tmp_path: Path) -> None:
    topo = Topology(0, 3, 0, 3, "a", "test")
    g = Gatherer(topo, DirectoryRendezvous(tmp_path, "job"))
    job = g.gather(report("w", {"gpu:0": ("gpu", 1.0, "nvml")}), {}, 0.2)
    assert job.missing_ranks == (1, 2) and math.isnan(job.energy_j)
    assert job.partial_energy_j == pytest.approx(1.0)
    assert "unknown" in job.table() and "1, 2" in job.table()
    assert json.loads(job.to_json())["energy_j"] is None


def test_barrier_names_the_ranks_that_did_not_arrive(tmp_path: Path) -> None:
    with pytest.raises(DistributedError, match="ranks 1 of 2 did not arrive"):
        barrier(topo=Topology(0, 2, 0, 2, "a", "test"), rendezvous=str(tmp_path), timeout=0.2)


def test_assemble_single_rank_report() -> None:
    job = assemble("w", 1, {})
    assert job.missing_ranks == (0,) and math.isnan(job.energy_j)


def test_rendezvous_choice_and_job_names(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="ECNAS_RENDEZVOUS"):
        open_rendezvous(0, 2, environ={})
    with pytest.raises(InputError, match="tcp://HOST:PORT"):
        open_rendezvous(0, 2, spec="tcp://nohost")
    rdv = open_rendezvous(0, 2, environ={"ECNAS_RENDEZVOUS": str(tmp_path),
                                         "SLURM_JOB_ID": "7", "SLURM_STEP_ID": "1"})
    assert rdv.where.endswith("slurm-7.1")
    assert job_id({"TORCHELASTIC_RUN_ID": "none"}) == "job"
    assert job_id({"ECNAS_JOB_ID": "mine", "SLURM_JOB_ID": "7"}) == "mine"
