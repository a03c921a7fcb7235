"""Distributed metering with real processes: torchrun ranks (gloo, CPU) over the stand-in
NVML showing four GPUs of known energy and a fake RAPL tree; two simulated nodes; a rank
killed with SIGKILL mid-window; mismatched windows. Every job total is checked against the
truth the test set on the fake counters: each GPU and each RAPL zone counted once."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fakes.env import isolated_cache  # noqa: F401  (autouse: a private ECNAS_CACHE_DIR)
from fakes.nvml import FakeGpu, write_state
from fakes.sysfs import FakePowercap, FakeZone

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
pytestmark = pytest.mark.xdist_group("distributed")
TORCHRUN = shutil.which("torchrun")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Node:
    """One simulated node: its fake powercap tree, the stand-in NVML's GPUs, its identity."""

    root: Path
    node_id: str
    gpus: list[FakeGpu]
    zones: list[FakeZone] = field(default_factory=list)
    truth_j: float = 0.0
    gpu_truth: dict[str, float] = field(default_factory=dict)

    @classmethod
    def build(cls, root: Path, node_id: str, n_gpus: int, prefix: str) -> Node:
        fake = FakePowercap(root / "sysfs")
        zones = []
        for socket_ in range(2):
            made = fake.package(socket_, dram=True, core=False)
            zones += [made["package"], made["dram"]]
        gpus = [FakeGpu(f"GPU-{prefix}{i:03d}", energy_mj=1000 * (i + 1)) for i in range(n_gpus)]
        node = cls(root, node_id, gpus, zones)
        write_state(node.state, gpus)
        return node

    @property
    def state(self) -> Path:
        return self.root / "nvml-state.txt"

    def env(self, stub_dir: Path) -> dict[str, str]:
        env = dict(os.environ)
        for k in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "RANK", "WORLD_SIZE",
                  "LOCAL_RANK", "ECNAS_RENDEZVOUS", "SLURM_STEP_ID"):
            env.pop(k, None)
        env.update({"LD_LIBRARY_PATH": str(stub_dir), "FAKE_NVML_STATE": str(self.state),
                    "ECNAS_SYSFS_ROOT": str(self.root / "sysfs"), "ECNAS_NODE_ID": self.node_id,
                    "PYTHONPATH": os.pathsep.join([str(TESTS), str(REPO)]),
                    "ECNAS_GATHER_TIMEOUT": "30", "OMP_NUM_THREADS": "1"})
        return env

    def burn(self, gpu_j: list[float], zone_j: list[float]) -> None:
        """Move every counter by known joules: the truth the job total must equal."""
        for g, j in zip(self.gpus, gpu_j, strict=True):
            g.energy_mj += int(j * 1000)
            self.gpu_truth[g.uuid] = j
        write_state(self.state, self.gpus)
        for z, j in zip(self.zones, zone_j, strict=True):
            z.set(z.get() + int(j * 1_000_000))
        self.truth_j += sum(gpu_j) + sum(zone_j)


def wait_ready(out: Path, ranks: int, procs: list[subprocess.Popen], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(list(out.glob("ready.*"))) < ranks:
        for p in procs:
            if p.poll() is not None and p.returncode != 0:
                raise AssertionError(f"a launcher exited early ({p.returncode}): "
                                     f"{p.stderr.read() if p.stderr else ''}")
        assert time.monotonic() < deadline, "ranks never opened their windows"
        time.sleep(0.05)


def finish(procs: list[subprocess.Popen], timeout: float = 120) -> None:
    for p in procs:
        try:
            _, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            raise
        assert p.returncode == 0, err[-3000:]


def torchrun(node: Node, stub_dir: Path, out: Path, nproc: int, mode: str, *,
             nnodes: int = 1, node_rank: int = 0, port: int | None = None) -> subprocess.Popen:
    cmd = [TORCHRUN or "torchrun", f"--nproc-per-node={nproc}"]
    if nnodes == 1:
        cmd += ["--standalone"]
    else:
        cmd += [f"--nnodes={nnodes}", f"--node-rank={node_rank}", "--master-addr=127.0.0.1",
                f"--master-port={port}"]
    cmd += ["-m", "fakes.dist_worker", mode, str(out)]
    return subprocess.Popen(cmd, env=node.env(stub_dir), cwd=TESTS, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def reports(out: Path, world: int) -> list[dict]:
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(world)]


needs_torchrun = pytest.mark.skipif(TORCHRUN is None, reason="torchrun is not installed")


@needs_torchrun
@pytest.mark.parametrize("mode", ["pg", "env"])
def test_torchrun_four_ranks_count_each_gpu_and_zone_once(stub_dir: Path, tmp_path: Path,
                                                          mode: str) -> None:
    node = Node.build(tmp_path / "node", "node-a", 4, "a")
    out = tmp_path / "out"
    out.mkdir()
    proc = torchrun(node, stub_dir, out, 4, mode)
    wait_ready(out, 4, [proc])
    node.burn([10.0, 20.0, 30.0, 40.0], [5.0, 1.0, 7.0, 2.0])
    time.sleep(0.15)  # past the NVML counter's 100 ms update
    (out / "go").touch()
    finish([proc])
    jobs = reports(out, 4)
    for job in jobs:  # every rank holds the same job total
        assert job["complete"] and job["missing_ranks"] == []
        assert job["energy_j"] == pytest.approx(node.truth_j, rel=1e-6)
        assert job["components"]["gpu"] == pytest.approx(100.0)
        assert job["components"]["cpu"] == pytest.approx(12.0)
        assert job["components"]["dram"] == pytest.approx(3.0)
        assert job["warnings"] == []  # nobody read a domain twice
    by_rank = {r["rank"]: r for r in jobs[0]["ranks"]}
    assert by_rank[3]["domains"] == ["gpu:3"]  # its own GPU only, named as torch names it
    assert by_rank[3]["energy_j"] == pytest.approx(40.0)
    assert sorted(by_rank[0]["domains"])[0] == "cpu:0/package" or "gpu:0" in by_rank[0]["domains"]
    assert by_rank[0]["energy_j"] == pytest.approx(10.0 + 15.0)  # its GPU and the node's zones
    assert jobs[0]["nodes"] == {"node-a": pytest.approx(node.truth_j)}
    # each rank's own report counts only what it read: summing them is the total too
    local = [json.loads((out / f"local{r}.json").read_text()) for r in range(4)]
    assert sum(d["energy_j"] for d in local) == pytest.approx(node.truth_j, rel=1e-6)


@needs_torchrun
def test_two_simulated_nodes_sum_each_node_once(stub_dir: Path, tmp_path: Path) -> None:
    a = Node.build(tmp_path / "a", "node-a", 2, "a")
    b = Node.build(tmp_path / "b", "node-b", 2, "b")  # other UUIDs, other tree
    out = tmp_path / "out"
    out.mkdir()
    port = free_port()
    procs = [torchrun(a, stub_dir, out, 2, "pg", nnodes=2, node_rank=0, port=port),
             torchrun(b, stub_dir, out, 2, "pg", nnodes=2, node_rank=1, port=port)]
    wait_ready(out, 4, procs)
    a.burn([1.0, 2.0], [3.0, 0.5, 3.0, 0.5])
    b.burn([10.0, 20.0], [30.0, 5.0, 30.0, 5.0])
    time.sleep(0.15)
    (out / "go").touch()
    finish(procs)
    jobs = reports(out, 4)
    truth = a.truth_j + b.truth_j
    for job in jobs:
        assert job["energy_j"] == pytest.approx(truth, rel=1e-6)
        assert job["nodes"] == {"node-a": pytest.approx(a.truth_j),
                                "node-b": pytest.approx(b.truth_j)}
    nodes = {(d["node"], d["domain"]) for d in jobs[0]["domains"]}
    assert ("node-b", "cpu:1/dram") in nodes and ("node-a", "cpu:1/dram") in nodes
    assert len(jobs[0]["domains"]) == 2 * (2 + 4)  # per node: 2 GPUs, 2 packages, 2 DRAM


def plain_ranks(node: Node, stub_dir: Path, out: Path, world: int,
                windows: list[str] | None = None) -> list[subprocess.Popen]:
    """``world`` ranks as plain processes (RANK/WORLD_SIZE/LOCAL_RANK, a folder rendezvous):
    no launcher to tear the job down when one dies."""
    procs = []
    for rank in range(world):
        env = node.env(stub_dir)
        env.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                    "LOCAL_WORLD_SIZE": str(world), "ECNAS_RENDEZVOUS": str(out / "rdv"),
                    "ECNAS_JOB_ID": "test", "ECNAS_GATHER_TIMEOUT": "3"})
        window = (windows or ["train"] * world)[rank]
        procs.append(subprocess.Popen([sys.executable, "-m", "fakes.dist_worker", "env",
                                       str(out), window], env=env, cwd=TESTS,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    return procs


def test_rank_killed_mid_window_is_reported_missing(stub_dir: Path, tmp_path: Path) -> None:
    node = Node.build(tmp_path / "node", "node-a", 3, "k")
    out = tmp_path / "out"
    out.mkdir()
    procs = plain_ranks(node, stub_dir, out, 3)
    wait_ready(out, 3, procs)
    procs[2].send_signal(signal.SIGKILL)  # mid-window
    procs[2].wait(timeout=30)
    node.burn([1.0, 2.0, 3.0], [1.0, 1.0, 1.0, 1.0])
    time.sleep(0.15)
    t0 = time.monotonic()
    (out / "go").touch()
    finish(procs[:2], timeout=60)
    assert time.monotonic() - t0 < 30  # the 3 s timeout, not a hang
    for job in reports(out, 2):
        assert job["missing_ranks"] == [2] and not job["complete"]
        assert job["energy_j"] is None  # NaN: never a silently smaller total
        assert job["partial_energy_j"] == pytest.approx(1.0 + 2.0 + 4.0)
        assert "ranks 2 of 3 did not report" in job["warnings"][0]


def test_mismatched_windows_are_a_clear_error(stub_dir: Path, tmp_path: Path) -> None:
    node = Node.build(tmp_path / "node", "node-a", 2, "m")
    out = tmp_path / "out"
    out.mkdir()
    procs = plain_ranks(node, stub_dir, out, 2, windows=["train", "eval"])
    wait_ready(out, 2, procs)
    (out / "go").touch()
    for p in procs:
        p.communicate(timeout=60)
        assert p.returncode == 3
    for rank in range(2):
        text = (out / f"error{rank}.txt").read_text()
        assert "mismatched windows" in text and "'train'" in text and "'eval'" in text


def ecnas_measure(node: Node, stub_dir: Path, out: Path, node_rank: int, port: int,
                  rdv: Path) -> subprocess.Popen:
    """``ecnas measure --gather`` around a two-node torchrun launch, for one node."""
    cmd = [sys.executable, "-m", "ecnas", "measure", "--json", "--gather", "--nodes", "2",
           "--node-rank", str(node_rank), "--rendezvous", str(rdv), "--",
           TORCHRUN or "torchrun", "--nproc-per-node=2", "--nnodes=2",
           f"--node-rank={node_rank}", "--master-addr=127.0.0.1", f"--master-port={port}",
           "-m", "fakes.dist_worker", "wait", str(out)]
    env = node.env(stub_dir)
    env["ECNAS_JOB_ID"] = "measure-test"
    return subprocess.Popen(cmd, env=env, cwd=TESTS, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@needs_torchrun
def test_ecnas_measure_around_torchrun_on_two_nodes(stub_dir: Path, tmp_path: Path) -> None:
    a = Node.build(tmp_path / "a", "node-a", 2, "a")
    b = Node.build(tmp_path / "b", "node-b", 2, "b")
    out = tmp_path / "out"
    out.mkdir()
    port = free_port()
    procs = [ecnas_measure(a, stub_dir, out, 0, port, tmp_path / "rdv"),
             ecnas_measure(b, stub_dir, out, 1, port, tmp_path / "rdv")]
    wait_ready(out, 4, procs)
    a.burn([4.0, 6.0], [1.0, 2.0, 3.0, 4.0])
    b.burn([40.0, 60.0], [10.0, 20.0, 30.0, 40.0])
    time.sleep(0.15)
    (out / "go").touch()
    outputs = []
    for p in procs:
        stdout, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-3000:]
        outputs.append(json.loads(stdout))
    for node, report in zip((a, b), outputs, strict=True):
        # the wrapper meters its whole node: both GPUs, every zone
        assert report["energy_j"] == pytest.approx(node.truth_j, rel=1e-6)
        job = report["job"]
        assert job["complete"] and job["world_size"] == 2
        assert job["energy_j"] == pytest.approx(a.truth_j + b.truth_j, rel=1e-6)
        assert job["nodes"] == {"node-a": pytest.approx(a.truth_j),
                                "node-b": pytest.approx(b.truth_j)}


def test_ecnas_measure_gather_needs_a_place() -> None:
    proc = subprocess.run([sys.executable, "-m", "ecnas", "measure", "--gather", "--nodes", "2",
                           "--", "true"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--node-rank" in proc.stderr


def slurm_ready() -> str:
    """Why the single-node SLURM cannot run a job here ("" when it can)."""
    if shutil.which("srun") is None or shutil.which("sinfo") is None:
        return "SLURM is not installed (srun/sinfo)"
    try:
        info = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                              timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sinfo failed: {exc}"
    states = info.stdout.split()
    if info.returncode != 0 or not any(s in ("idle", "mixed", "allocated") for s in states):
        return f"no SLURM node up (sinfo: {info.stdout.strip() or info.stderr.strip()})"
    return ""


def test_srun_two_tasks_one_job_total(stub_dir: Path, tmp_path: Path) -> None:
    why = slurm_ready()
    if why:
        pytest.skip(why)
    node = Node.build(tmp_path / "node", "node-a", 2, "s")
    out = tmp_path / "out"
    out.mkdir()
    env = node.env(stub_dir)
    env.update({"ECNAS_RENDEZVOUS": str(tmp_path / "rdv")})  # srun tasks, no process group
    for k in [k for k in env if k.startswith("SLURM_")]:
        env.pop(k)
    proc = subprocess.Popen(["srun", "-n", "2", "--immediate=60", "--chdir", str(TESTS),
                             sys.executable, "-m", "fakes.dist_worker", "env", str(out)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_ready(out, 2, [proc], timeout=180)
    node.burn([3.0, 5.0], [2.0, 1.0, 2.0, 1.0])
    time.sleep(0.15)
    (out / "go").touch()
    finish([proc])
    for job in reports(out, 2):
        assert job["complete"] and job["energy_j"] == pytest.approx(node.truth_j, rel=1e-6)
        read_by = {d["domain"]: d["rank"] for d in job["domains"]}
        assert read_by["gpu:0"] == 0 and read_by["gpu:1"] == 1
        assert read_by["cpu:1/package"] == 0


def placement(node: Node, stub_dir: Path, **env: str) -> dict:
    full = node.env(stub_dir)
    full.update(env)
    proc = subprocess.run([sys.executable, "-m", "fakes.dist_worker", "placement", "."],
                          env=full, cwd=TESTS, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_which_gpu_a_rank_reads(stub_dir: Path, tmp_path: Path) -> None:
    node = Node.build(tmp_path / "node", "node-a", 3, "p")
    rank = {"RANK": "1", "WORLD_SIZE": "3", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "3"}
    # LOCAL_RANK among the visible GPUs: cuda:1 is the physical board 0 here
    got = placement(node, stub_dir, CUDA_VISIBLE_DEVICES="2,0", **rank)
    assert got["gpus"] == [{"domain": "gpu:1", "uuid": "GPU-p000"}]
    assert got["topology"]["rank"] == 1 and got["topology"]["node"] == "node-a"
    assert any("local rank 0" in n for n in got["left_to_other_ranks"])
    # one visible GPU per task (srun's gres binding): the rank reads that one
    got = placement(node, stub_dir, CUDA_VISIBLE_DEVICES="2", **rank)
    assert got["gpus"] == [{"domain": "gpu:0", "uuid": "GPU-p002"}]
    # a single process with several GPUs (a campaign run given two): each once, all of them
    got = placement(node, stub_dir, CUDA_VISIBLE_DEVICES="0,2")
    assert got["gpus"] == [{"domain": "gpu:0", "uuid": "GPU-p000"},
                           {"domain": "gpu:1", "uuid": "GPU-p002"}]
    assert got["topology"] is None
    # a rank alone on its node reads the whole node
    alone = {**rank, "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"}
    assert len(placement(node, stub_dir, **alone)["gpus"]) == 3
