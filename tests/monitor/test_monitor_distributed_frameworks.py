"""Lightning DDP (two processes on CPU) and the Hugging Face Trainer under torchrun, metered by
the energy callbacks on every rank: one table with the job's totals, per-node and per-GPU
columns, each GPU read by its own rank and the node's CPU and DRAM by one.

The stand-in NVML runs in live mode (``FAKE_NVML_LIVE``): each GPU's counter advances with the
wall clock at a known power (100 W and 300 W), so the truth for a GPU is its power times the
window of the rank that reads it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fakes.env import isolated_cache  # noqa: F401  (autouse: a private ECNAS_CACHE_DIR)
from fakes.nvml import FakeGpu, write_state
from fakes.sysfs import FakePowercap

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
SCRIPT = TESTS / "fakes" / "dist_frameworks.py"
POWER_W = (100.0, 300.0)
pytestmark = pytest.mark.xdist_group("distributed")


def node_env(tmp_path: Path, stub_dir: Path) -> dict[str, str]:
    fake = FakePowercap(tmp_path / "sysfs")
    fake.package(0, dram=True, core=False)
    state = tmp_path / "nvml-state.txt"
    write_state(state, [FakeGpu(f"GPU-f{i}", power_mw=int(w * 1000)) for i, w in enumerate(POWER_W)])
    env = dict(os.environ)
    for k in ("CUDA_VISIBLE_DEVICES", "RANK", "WORLD_SIZE", "LOCAL_RANK", "ECNAS_RENDEZVOUS",
              "SLURM_STEP_ID", "SLURM_PROCID", "SLURM_NTASKS"):
        env.pop(k, None)
    env.update({"LD_LIBRARY_PATH": str(stub_dir), "FAKE_NVML_STATE": str(state),
                "FAKE_NVML_LIVE": f"{time.time():.3f} 1 1", "ECNAS_SYSFS_ROOT": str(fake.root),
                "ECNAS_NODE_ID": "node-a", "ECNAS_GATHER_TIMEOUT": "60",
                "PYTHONPATH": os.pathsep.join([str(TESTS), str(REPO)]), "OMP_NUM_THREADS": "1",
                "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"})
    return env


def check_job_table(out: Path) -> None:
    rows = json.loads((out / "rows.json").read_text())
    meta = json.loads((out / "meta.json").read_text())
    jobs = [json.loads((out / f"jobs{r}.json").read_text()) for r in range(2)]
    assert len(jobs[0]) == len(jobs[1]) == len(rows) >= 3  # epoch 0, 1, 2
    assert meta["distributed"] == {"world_size": 2, "nodes": ["node-a"], "missing_ranks": []}
    for row, j0, j1 in zip(rows, jobs[0], jobs[1], strict=True):
        assert j0["complete"] and j0["energy_j"] == pytest.approx(j1["energy_j"], rel=1e-9)
        assert row["energy_j"] == pytest.approx(j0["energy_j"])
        assert row["node0_energy_j"] == pytest.approx(j0["energy_j"])
        read_by = {d["domain"]: d["rank"] for d in j0["domains"]}
        assert read_by["gpu:0"] == 0 and read_by["gpu:1"] == 1  # each GPU by its own rank
        assert read_by["cpu:0/package"] == read_by["cpu:0/dram"] == 0  # the node's, once
        assert len(read_by) == len(j0["domains"]) == 4
        duration = {r["rank"]: r["duration_s"] for r in j0["ranks"]}
        joules = {d["domain"]: d["joules"] for d in j0["domains"]}
        for rank, watts in enumerate(POWER_W):  # the truth: power × the rank's window
            assert joules[f"gpu:{rank}"] == pytest.approx(watts * duration[rank],
                                                           rel=0.02, abs=watts * 0.01)
            assert row[f"node0_gpu{rank}_energy_j"] == pytest.approx(joules[f"gpu:{rank}"])
        assert row["gpu_energy_j"] == pytest.approx(joules["gpu:0"] + joules["gpu:1"])
        assert row["estimated"] is False
    assert rows[-1]["energy_j"] > rows[0]["energy_j"]


@pytest.mark.filterwarnings("ignore")
def test_lightning_ddp_two_processes_one_job_table(stub_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("lightning")
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run([sys.executable, str(SCRIPT), "lightning", str(out)],
                          env=node_env(tmp_path, stub_dir), cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    check_job_table(out)


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun is not installed")
def test_huggingface_trainer_under_torchrun_one_job_table(stub_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run(["torchrun", "--standalone", "--nproc-per-node=2", str(SCRIPT),
                           "huggingface", str(out)], env=node_env(tmp_path, stub_dir),
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    check_job_table(out)
    # the energy logged into the Trainer's log dict is the job's (rank 0's own is less)
    rows = json.loads((out / "rows.json").read_text())
    logged = json.loads((out / "logged0.json").read_text())
    assert len(logged) == 2 and logged[-1] >= rows[-2]["energy_j"] > 0
    mine = [r for r in json.loads((out / "jobs0.json").read_text())[-1]["ranks"] if r["rank"] == 0]
    assert logged[-1] > mine[0]["energy_j"]
