"""The 5V GPU campaign (scripts/campaign_5v.py) end to end on a CPU: the real trainer, the real
store, the real NVML meter reading the stand-in libnvidia-ml.so.1 in live mode (its counter
runs on the wall clock) as an H200; ``--quick`` shrinks the network and data, nothing else.
Also the coordinator's RunLimit, which stops a session when a lent machine's time runs out."""

from __future__ import annotations

import json
import math
import os
import shutil
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
if str(ROOT) not in sys.path:  # the experiment's driver lives in experiments/, beside ecnas
    sys.path.insert(0, str(ROOT))
from experiments.campaign_5v.driver import (  # noqa: E402
    ARCHIVE,
    Plan,
    build_campaign,
    five_v_cells,
)

SCRIPT = ROOT / "scripts" / "campaign_5v.py"
DEVICE_SCRIPT = ROOT / "scripts" / "campaign_5v_device.sh"
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
    from ecnas.trainer.data.synthetic import write_synthetic_cifar10
    from ecnas.trainer.train import TrainConfig

    write_synthetic_cifar10(tmp_path, 8, 4)
    cells = five_v_cells(ARCHIVE)
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
    assert proc.returncode == 2 and "not a sessions file of ecnas-5v-campaign-sessions/1" in proc.stderr
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


# -- the device call (scripts/campaign_5v_device.sh), as a lent machine runs it ---------------

def _device_env(stub: Path, state: Path, out: Path, source: Path) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("CUDA_VISIBLE_DEVICES", "PYTHONPATH"):
        env.pop(key, None)  # the script sets the PYTHONPATH route itself
    env.update(LD_LIBRARY_PATH=str(stub), FAKE_NVML_STATE=str(state),
               FAKE_NVML_LIVE=f"{time.time() - 5:.3f} 1.0 20", OUT=str(out),
               CAMPAIGN_5V_FROM=str(source))
    return env


def _other_kind(source: Path) -> list[str]:
    """A store, table and sessions record of another GPU kind (an H100) beside the H200's."""
    from ecnas.campaign.store import ResultsStore

    with ResultsStore(source / "nvidia-h100-quick.sqlite", create=True) as store:
        store.bind("0" * 16, {"name": "5v-gpu-quick"})
    (source / "nvidia-h100-quick.parquet").write_bytes(b"PAR1")
    (source / "nvidia-h100-quick.sessions.json").write_text(
        '{"format": "ecnas-5v-campaign-sessions/1", "sessions": []}\n')
    return sorted(p.name for p in source.iterdir())


def _cells(store_file: Path) -> int:
    """Committed cells in a store file read alone, as a repository keeps it (no -wal)."""
    import sqlite3

    uri = f"file:{store_file}?mode=ro&immutable=1"  # immutable: a -wal would be ignored
    with sqlite3.connect(uri, uri=True) as db:
        return int(db.execute("SELECT COUNT(*) FROM runs").fetchone()[0])


@pytest.fixture(scope="module")
def killed_call(stub_dir: Path, h200_state: Path, tmp_path_factory: pytest.TempPathFactory
                ) -> tuple[Path, Path]:
    """A device call killed (SIGKILL, the whole process group, as a call's time limit does)
    once its log says 2 cells are done. (source folder, $OUT)"""
    source, out = tmp_path_factory.mktemp("from"), tmp_path_factory.mktemp("out")
    _other_kind(source)
    proc = subprocess.Popen(["bash", str(DEVICE_SCRIPT), "--quick", "--time-budget", "0"],
                            cwd=tmp_path_factory.getbasetemp(), start_new_session=True,
                            env=_device_env(stub_dir, h200_state, out, source),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    log = out / "log.txt"
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            text = log.read_text() if log.exists() else ""
            if sum(1 for line in text.splitlines() if " done " in line) >= 2:
                break
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, 9)
        proc.wait(timeout=60)
    assert sum(1 for line in log.read_text().splitlines() if " done " in line) >= 2, \
        log.read_text()
    return source, out


def test_killed_device_call_keeps_every_cell_in_the_store_file(killed_call: tuple[Path, Path]
                                                               ) -> None:
    source, out = killed_call
    names = sorted(p.name for p in out.iterdir())
    # this kind's files alone, inside the 8 a call returns; the H100's stayed where they were
    assert len(names) <= 8 and not any("h100" in n for n in names), names
    assert "nvidia-h200-quick.sqlite" in names
    # the store file alone (its -wal git-ignored and never copied) holds both cells
    kept = source.parent / "kept"
    kept.mkdir()
    shutil.copyfile(out / "nvidia-h200-quick.sqlite", kept / "nvidia-h200-quick.sqlite")
    assert _cells(kept / "nvidia-h200-quick.sqlite") >= 2


def test_device_call_resumes_read_only_returned_files(stub_dir: Path, h200_state: Path,
                                                      killed_call: tuple[Path, Path],
                                                      tmp_path: Path) -> None:
    source, killed = killed_call
    # the returned store, copied back into the campaign folder as a lent machine returns files:
    # read-only, without its -wal, beside another GPU kind's files
    store = source / "nvidia-h200-quick.sqlite"
    shutil.copyfile(killed / "nvidia-h200-quick.sqlite", store)
    before = _cells(store)
    for f in source.iterdir():
        f.chmod(0o444)
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run(["bash", str(DEVICE_SCRIPT), "--quick", "--max-cells", "1"],
                          cwd=tmp_path, env=_device_env(stub_dir, h200_state, out, source),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + (out / "log.txt").read_text()
    report = json.loads((out / "session.json").read_text())
    assert (report["cells_done"], report["cells_in_store"]) == (1, before + 1)
    assert report["resumed_from"] == str(source)
    names = sorted(p.name for p in out.iterdir())
    # the store and table of this call's kind, its sessions record, and the call's three notes
    assert names == ["log.txt", "nvidia-h200-quick.parquet", "nvidia-h200-quick.sessions.json",
                     "nvidia-h200-quick.sqlite", "nvidia-smi.txt", "session.json"], names
    assert _cells(out / "nvidia-h200-quick.sqlite") == before + 1  # no -wal needed
    assert len(read_table(out / "nvidia-h200-quick.parquet")["arch_hash"].unique()) == before + 1
    assert store.stat().st_mode & 0o777 == 0o444 and _cells(store) == before  # input untouched
    costs = report["fixed_costs"]
    # timed in a fresh interpreter, not the nothing between two clock reads it was before
    assert costs["import_torch_s"] is not None and costs["import_torch_s"] > 0.01
