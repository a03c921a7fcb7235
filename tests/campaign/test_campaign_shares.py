"""Each local worker's share of the machine: the plan (threads, disjoint cores, GPU), the
warning when workers outnumber cores, and what real worker processes end up with."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from campaign_runfns import campaign_toml, loads_torch, trivial

from ecnas.campaign import ResultsStore, load_campaign, run_campaign
from ecnas.campaign.worker_slots import (
    GPU_WORKER_THREADS,
    can_pin,
    machine_cpus,
    oversubscription,
    plan_shares,
)


def test_cpu_workers_get_disjoint_cores_and_as_many_threads() -> None:
    two = plan_shares(2, ["cpu"], [0, 1], pin=True)
    assert [(s.threads, s.cpus, s.gpu) for s in two] == [(1, (0,), None), (1, (1,), None)]
    three = plan_shares(3, ["cpu"], list(range(8)), pin=True)
    assert [s.cpus for s in three] == [(0, 1), (2, 3), (4, 5)]  # cores 6, 7: the coordinator's
    assert {s.threads for s in three} == {2}
    assert all(s.cpus is None for s in plan_shares(2, ["cpu"], [0, 1, 2, 3], pin=False))
    assert oversubscription(2, ["cpu"], [0, 1]) is None


def test_gpu_workers_get_their_gpu_and_a_bounded_number_of_threads() -> None:
    shares = plan_shares(2, ["cuda:3", "cuda:5"], list(range(32)), pin=True)
    assert [s.gpu for s in shares] == ["3", "5"]
    assert [len(s.cpus or ()) for s in shares] == [16, 16]
    assert {s.threads for s in shares} == {GPU_WORKER_THREADS}


def test_more_workers_than_cores_share_cores_and_say_so() -> None:
    shares = plan_shares(3, ["cpu"], [0, 1], pin=True)
    assert [(s.threads, s.cpus) for s in shares] == [(1, (0,)), (1, (1,)), (1, (0,))]
    note = oversubscription(3, ["cpu"], [0, 1])
    assert note and "3 local workers on 2 CPU core(s)" in note and "--workers 2" in note


@pytest.mark.parametrize("wanted", [1, 2])
def test_worker_processes_run_with_their_share(tmp_path: Path, wanted: int) -> None:
    cpus = machine_cpus()
    workers = min(wanted, len(cpus))
    campaign = load_campaign(campaign_toml(tmp_path / "c.toml", count=2, repeats=1))
    summary = run_campaign(campaign, tmp_path / "s.sqlite", workers=workers, run_fn=loads_torch)
    assert summary.warnings == ()
    with ResultsStore(tmp_path / "s.sqlite") as s:
        prov = list(s.provenance().values())
    assert len(prov) == 2
    for p in prov:
        threads = p["share"]["threads"]
        assert threads == len(cpus) // workers
        # fewer beside busy processes (issue 37.7: fair_threads), never more than the share
        used = p["threads_used"]
        assert 1 <= used <= threads
        assert p["threads"]["OMP_NUM_THREADS"] == str(used)
        assert p["threads"]["torch_intra_op"] == used  # torch followed the environment
        if "OMP_WAIT_POLICY" not in os.environ:
            assert p["threads"]["OMP_WAIT_POLICY"] == "PASSIVE"
        if can_pin():
            assert p["affinity"] == p["share"]["cpus"]
            assert len(p["affinity"]) == threads
        assert p["warmup"] is None  # a run function of its own: no trainer warm-up
    if can_pin() and workers == 2:
        assert {tuple(p["affinity"]) for p in prov} == {(cpus[0],), (cpus[1],)}
    # the coordinator itself keeps every core
    assert not can_pin() or tuple(sorted(os.sched_getaffinity(0))) == cpus


def test_oversubscribed_campaign_warns_before_it_starts(tmp_path: Path) -> None:
    n = len(machine_cpus())
    if n > 8:
        pytest.skip(f"{n} cores: oversubscribing them takes more worker processes than a test "
                    "should start")
    campaign = load_campaign(campaign_toml(tmp_path / "c.toml", count=n + 1, repeats=1))
    lines: list[str] = []
    summary = run_campaign(campaign, tmp_path / "s.sqlite", workers=n + 1, run_fn=trivial,
                           progress=lines.append)
    assert summary.done == n + 1
    assert len(summary.warnings) == 1 and f"on {n} CPU core(s)" in summary.warnings[0]
    warn = next(i for i, line in enumerate(lines) if "WARNING" in line)
    assert warn < next(i for i, line in enumerate(lines) if " done " in line)
    assert summary.to_dict()["warnings"] == list(summary.warnings)
