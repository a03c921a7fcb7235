"""The 5V GPU campaign (scripts/campaign_5v.py) end to end on a CPU: the real trainer, the real
store, the real NVML meter reading the stand-in libnvidia-ml.so.1 in live mode (its counter
runs on the wall clock) as an H200; ``--quick`` shrinks the network and data, nothing else.
Also the coordinator's RunLimit, which stops a session when a lent machine's time runs out."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from campaign_runfns import campaign_toml, trivial
from fakes.env import isolated_cache  # noqa: F401  (autouse: a private ECNAS_CACHE_DIR)
from fakes.nvml import FakeGpu, write_state

from ecnas.campaign import load_campaign, run_campaign
from ecnas.campaign.runner import RunLimit
from ecnas.tables import read_table

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "campaign_5v.py"
H200 = FakeGpu("GPU-h200-0001", pci=0x2335, energy_mj=1000, power_mw=300_000,
               instant_mw=300_000, name="NVIDIA H200")
# the campaign's first cells: the order is part of the store's identity and must never change
FIRST = ["9d2e9dd0584c2b37c7f9a130f3e6c4c8", "40878ab3a05d5994f91ca60874424fa7",
         "f2eece77866f37f71a6f8bdfbea77605"]


def campaign_5v(stub: Path | None, state: Path | None, *args: str,
                timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    for key in ("CUDA_VISIBLE_DEVICES", "LD_LIBRARY_PATH", "FAKE_NVML_LIVE", "FAKE_NVML_STATE"):
        env.pop(key, None)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    if stub is not None and state is not None:
        env.update(LD_LIBRARY_PATH=str(stub), FAKE_NVML_STATE=str(state),
                   FAKE_NVML_LIVE=f"{time.time() - 5:.3f} 1.0 20")
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def h200_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("h200") / "state"
    write_state(path, [H200])
    return path


def test_dry_run_prints_the_fixed_seeded_order() -> None:
    proc = campaign_5v(None, None, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["cells"] == 2532 and plan["first"][:3] == FIRST
    assert plan["budget_epochs"] == 4 and plan["recipe"] == {"warmup_steps": 10}
    assert (plan["train_images"], plan["eval_images"]) == (40_000, 10_000)


def test_full_plan_is_nas_bench_101_at_full_width(tmp_path: Path) -> None:
    from ecnas.campaign.fivev import ARCHIVE, Plan, build_campaign, five_v_cells
    from ecnas.trainer.data.synthetic import write_synthetic_cifar10
    from ecnas.trainer.train import TrainConfig

    write_synthetic_cifar10(tmp_path, 8, 4)
    cells = five_v_cells(ROOT / ARCHIVE)
    campaign = build_campaign(Plan.full(), cells, tmp_path, "cuda:0")
    assert [r.arch_hash for r in campaign.runs()[:3]] == FIRST and len(campaign.runs()) == 2532
    config = TrainConfig.from_dict(campaign.train_config(campaign.runs()[0], "cuda:0"))
    assert (config.stem_channels, config.num_stacks, config.cells_per_stack) == (128, 3, 3)
    assert (config.batch_size, config.learning_rate, config.bn_decay) == (256, 0.1, 0.997)
    assert (config.budget_epochs, config.checkpoints, config.warmup_steps) == (4, (0.0, 0.5, 1.0),
                                                                              10)
    assert (config.dataset, config.max_train_images, config.max_eval_images) == ("cifar10", None,
                                                                                 None)
    # where the batch files lie is not part of what is measured: every loan has the same store
    elsewhere = build_campaign(Plan.full(), cells, ROOT / "tests", "cuda:0")
    assert elsewhere.hash == campaign.hash


def test_quick_sessions_measure_resume_and_record(stub_dir: Path, h200_state: Path,
                                                  tmp_path: Path) -> None:
    first = campaign_5v(stub_dir, h200_state, "--dir", str(tmp_path), "--quick",
                        "--max-cells", "1", "--json")
    assert first.returncode == 0, first.stderr
    one = json.loads(first.stdout)
    assert (one["cells_done"], one["cells_in_store"], one["device"]) == (1, 1, "nvidia-h200")
    assert one["meters"] == ["nvml"] and one["check_ok"] is True
    second = campaign_5v(stub_dir, h200_state, "--dir", str(tmp_path), "--quick",
                         "--max-cells", "1", "--json")
    assert second.returncode == 0, second.stderr
    two = json.loads(second.stdout)
    assert (two["cells_done"], two["cells_in_store"]) == (1, 2)  # the second loan adds a cell
    assert two["campaign_hash"] == one["campaign_hash"]

    table = read_table(tmp_path / "nvidia-h200-quick.parquet")
    assert set(table["arch_hash"]) == set(FIRST[:2])  # the seeded order's first two
    assert sorted(table["epoch"].unique()) == [0.0, 2.0, 4.0]  # EC-NAS's checkpoints
    assert (table["source"] == "measured").all() and not table["estimated"].any()
    assert (table["device"] == "nvidia-h200").all()
    # GPU energy by NVML, nothing else (no RAPL here, and the estimate is never used)
    assert (table["energy_j"] == table["gpu_energy_j"]).all()
    assert table["cpu_energy_j"].isna().all()
    # random images: the accuracies are not recorded, the data is named in the campaign
    for name in ("train_accuracy", "validation_accuracy", "test_accuracy"):
        assert table[name].isna().all()
    from ecnas.tables.metadata import get_metadata

    assert "random images" in get_metadata(table)["campaign"]["name"]
    final = table[table["epoch"] == 4.0]
    # the stand-in draws 300 W: energy / wall time must say so
    power = final["energy_j"] / final["wall_time_s"]
    assert ((power > 250) & (power < 350)).all(), power
    check = subprocess.run([sys.executable, "-m", "ecnas", "check",
                            str(tmp_path / "nvidia-h200-quick.parquet")], cwd=ROOT,
                           capture_output=True, text=True, timeout=120,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert check.returncode == 0, check.stdout + check.stderr

    sessions = json.loads((tmp_path / "nvidia-h200-quick.sessions.json").read_text())
    assert sessions["format"] == "ecnas-5v-campaign-sessions/1"
    assert [s["cells_done"] for s in sessions["sessions"]] == [1, 1]
    costs = sessions["sessions"][1]["fixed_costs"]
    assert costs["import_torch_s"] > 0 and costs["meters_start_s"] > 0
    assert costs["cuda_init_s"] is None  # on the CPU: said, not zero
    assert costs["per_process_s"] >= costs["import_torch_s"]
    assert len(sessions["sessions"][1]["machine"]["ecnas_source_sha256"]) == 64
    per_cell = sessions["sessions"][1]["per_cell"]
    assert per_cell["cells"] == 1 and per_cell["fixed_in_process_s"]["median"] > 0
    # one process measured every cell of the session: the data set was read once
    assert per_cell["call_s"]["median"] > per_cell["metered_wall_s"]["median"]


def test_out_of_time_before_the_first_cell_measures_nothing(stub_dir: Path, h200_state: Path,
                                                            tmp_path: Path) -> None:
    proc = campaign_5v(stub_dir, h200_state, "--dir", str(tmp_path), "--quick",
                       "--time-budget", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert (report["cells_done"], report["cells_in_store"], report["table"]) == (0, 0, None)
    assert "stopping: the run limit is reached, 2532 run(s) left" in proc.stderr


def test_refusals_are_one_line_and_touch_nothing(stub_dir: Path, h200_state: Path,
                                                 tmp_path: Path) -> None:
    no_gpu = campaign_5v(None, None, "--dir", str(tmp_path), "--quick")
    assert no_gpu.returncode == 2
    assert no_gpu.stderr.startswith("campaign_5v: error: the 5V GPU campaign needs the NVML")
    assert len(no_gpu.stderr.strip().splitlines()) == 1 and not any(tmp_path.iterdir())
    foreign = tmp_path / "nvidia-h200-quick.sessions.json"
    foreign.write_text("my notes\n")
    proc = campaign_5v(stub_dir, h200_state, "--dir", str(tmp_path), "--quick")
    assert proc.returncode == 2 and "not a 5V campaign sessions file" in proc.stderr
    assert foreign.read_text() == "my notes\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [foreign.name]  # no store made
    missing = campaign_5v(stub_dir, h200_state, "--dir", str(tmp_path / "nope"), "--quick")
    assert missing.returncode == 2 and "no such folder" in missing.stderr


def test_run_limit_stops_starting_runs_and_resume_finishes(tmp_path: Path) -> None:
    campaign = load_campaign(campaign_toml(tmp_path / "c.toml", count=3, repeats=1))
    lines: list[str] = []
    first = run_campaign(campaign, tmp_path / "s.sqlite", workers=0, run_fn=trivial,
                         limit=RunLimit(runs=2), progress=lines.append)
    assert (first.done, first.left_for_later) == (2, 1)
    assert "stopping: the run limit is reached, 1 run(s) left" in lines[-1]
    rest = run_campaign(campaign, tmp_path / "s.sqlite", workers=0, run_fn=trivial)
    assert (rest.done, rest.skipped, rest.left_for_later) == (1, 2, 0)


def test_run_limit_expects_the_longest_run_so_far() -> None:
    limit = RunLimit(seconds=100.0, first_run_s=30.0)
    assert limit.allows(0, 70.0, None) and not limit.allows(0, 70.1, None)
    assert limit.allows(3, 60.0, 40.0) and not limit.allows(3, 61.0, 40.0)
    assert RunLimit().allows(10**6, math.inf, None)  # no limit: never stops
    assert not RunLimit(runs=2).allows(2, 0.0, None)
