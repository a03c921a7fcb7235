"""train_architecture and ``ecnas train`` end to end on the embedded dataset (real training,
real meters, real files)."""

from __future__ import annotations

import csv
import json
import math
import subprocess
from pathlib import Path

import pytest
from cli_inproc import run_cli

from ecnas.errors import InputError
from ecnas.meters.estimate import EstimateMeter
from ecnas.monitor import Monitor
from ecnas.space import ModelSpec
from ecnas.space.cost import trainable_params
from ecnas.tracker.rows import CONTRACT_COLUMNS, contract_problems, write_rows
from ecnas.trainer.train import EpochProgress, TrainConfig, run_training, train_architecture

SMALL = dict(max_train_images=256, max_eval_images=100, stem_channels=8, num_stacks=2)
CELL = dict(matrix="0110001000010000", ops="input,conv3x3-bn-relu,maxpool3x3,output")


@pytest.fixture(scope="module")
def one_epoch() -> tuple[TrainConfig, list[dict], list[EpochProgress]]:
    config = TrainConfig(**CELL, budget_epochs=1, **SMALL)
    seen: list[EpochProgress] = []
    with Monitor([EstimateMeter(per_core_w=10.0)]) as monitor:
        rows = train_architecture(config, monitor=monitor, progress=seen.append)
    return config, rows, seen


def test_one_epoch_run_gives_contract_rows_at_start_halfway_end(one_epoch) -> None:
    config, rows, _ = one_epoch
    assert contract_problems(rows) == []
    assert [r["epoch"] for r in rows] == [0.0, 0.5, 1.0]
    spec = ModelSpec(config.matrix, config.ops)
    for r in rows:
        assert set(CONTRACT_COLUMNS) <= set(r)
        assert r["arch_hash"] == spec.hash() and r["ops"] == spec.ops_str
        assert r["budget_epochs"] == 1 and r["repeat"] == 1 and r["source"] == "measured"
        assert r["estimated"] is True and math.isnan(r["gpu_energy_j"])
        assert r["trainable_params"] == trainable_params(spec, stem_channels=8, num_stacks=2,
                                                         cells_per_stack=1)
        assert r["flops"] > 0
        for acc in ("train_accuracy", "validation_accuracy", "test_accuracy"):
            assert 0.0 <= r[acc] <= 1.0
    energies = [r["energy_j"] for r in rows]
    walls = [r["wall_time_s"] for r in rows]
    trains = [r["training_time_s"] for r in rows]
    assert energies == sorted(energies) and energies[-1] > 0
    assert walls == sorted(walls) and trains == sorted(trains)
    assert all(t < w for t, w in zip(trains, walls, strict=True))  # evaluation kept apart
    assert rows[0]["training_time_s"] < 0.05  # nothing trained before the first checkpoint


def test_progress_reports_each_epoch_with_energy_so_far(one_epoch) -> None:
    _, rows, seen = one_epoch
    assert [p.epoch for p in seen] == [1]
    p = seen[0]
    assert p.budget_epochs == 1 and p.estimated and p.meters == ("estimate",)
    assert p.loss > 0 and 0 <= p.train_accuracy <= 1 and p.images_per_s > 0
    assert p.learning_rate == pytest.approx(0.0, abs=1e-12)  # cosine reaches 0 at the end
    # the epoch's mark is read just after its last checkpoint (cumulative energy, a few ms
    # later): never below it, and not more than a few of the estimate's CPU-time ticks above
    assert rows[-1]["energy_j"] - 1e-9 <= p.energy_j <= rows[-1]["energy_j"] * 1.05 + 0.5


def test_rows_pass_the_tables_room_validation(one_epoch, tmp_path: Path) -> None:
    from ecnas.tables import read_table

    _, rows, _ = one_epoch
    path = write_rows(rows, tmp_path / "run.parquet", {"producer": "test"})
    table = read_table(path)  # validates against the contract's schema
    assert len(table) == 3 and table["epoch"].tolist() == [0.0, 0.5, 1.0]


def test_deterministic_runs_repeat_exactly_and_repeats_differ() -> None:
    base = dict(**CELL, budget_epochs=1, deterministic=True, checkpoints=(1.0,),
                max_train_images=128, max_eval_images=60, stem_channels=4, num_stacks=1)
    meters = [EstimateMeter(per_core_w=10.0)]
    with Monitor(meters) as monitor:
        a = train_architecture(TrainConfig(**base), monitor=monitor)
        b = train_architecture(TrainConfig(**base), monitor=monitor)
        c = train_architecture(TrainConfig(**base, repeat=2), monitor=monitor)
    keys = ("train_accuracy", "validation_accuracy", "test_accuracy")
    assert [a[0][k] for k in keys] == [b[0][k] for k in keys]
    assert c[0]["repeat"] == 2
    progress_a: list[EpochProgress] = []
    progress_c: list[EpochProgress] = []
    with Monitor(meters) as monitor:
        train_architecture(TrainConfig(**base), monitor=monitor, progress=progress_a.append)
        train_architecture(TrainConfig(**base, repeat=2), monitor=monitor,
                           progress=progress_c.append)
    assert progress_a[0].loss != progress_c[0].loss  # another repeat, another seed


def test_warm_up_is_metered_apart_and_leaves_the_run_unchanged() -> None:
    base = dict(**CELL, budget_epochs=1, deterministic=True, max_train_images=128,
                max_eval_images=60, stem_channels=4, num_stacks=1)
    with Monitor([EstimateMeter(per_core_w=10.0)]) as monitor:
        cold = run_training(TrainConfig(**base), monitor=monitor)
        warm = run_training(TrainConfig(**base, warmup_steps=2), monitor=monitor)
    assert cold.warmup is None
    w = warm.warmup
    assert w is not None and w.steps == 2 and w.time_s > 0 and w.energy_j > 0
    assert w.estimated and w.meters == ("estimate",)
    # the warm-up trained a copy with streams of its own: the run's numbers are the same
    keys = ("train_accuracy", "validation_accuracy", "test_accuracy")
    assert [[r[k] for k in keys] for r in warm.rows] == [[r[k] for k in keys] for r in cold.rows]
    assert warm.rows[0]["training_time_s"] < 0.05 and len(warm.rows) == len(cold.rows)
    with pytest.raises(InputError, match="warmup_steps"):
        TrainConfig(**base, warmup_steps=-1)


def _ecnas(*args: str) -> subprocess.CompletedProcess:
    return run_cli(*args)


def test_cli_train_on_embedded_writes_checkpoints_start_halfway_end(tmp_path: Path) -> None:
    out = tmp_path / "run.parquet"
    proc = _ecnas("train", "--matrix", "0100", "--ops", "input,output", "--epochs", "2",
                  "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert [r["epoch"] for r in result["rows"]] == [0.0, 1.0, 2.0]
    assert result["config"]["stem_channels"] == 16  # the embedded default network
    assert "epoch 1/2" in proc.stderr and "epoch 2/2" in proc.stderr  # progress per epoch
    from ecnas.tables import read_table

    table = read_table(out)
    assert table["epoch"].tolist() == [0.0, 1.0, 2.0]
    assert table["validation_accuracy"].iloc[-1] > 0.15  # it learned something in 2 epochs


def test_cli_csv_and_repeats(tmp_path: Path) -> None:
    out = tmp_path / "run.csv"
    proc = _ecnas("train", "--matrix", "0100", "--ops", "input,output", "--epochs", "1",
                  "--repeats", "2", "--checkpoints", "1", "--max-train-images", "128",
                  "--max-eval-images", "50", "--stem-channels", "4", "--quiet", "--out", str(out),
                  "--warmup-steps", "2")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["repeat"] for r in rows] == ["1", "2"]
    assert not any("warmup" in k for k in rows[0])
    meta = json.loads(out.with_name(out.name + ".meta.json").read_text())
    warmups = meta["warmup"]
    assert [w["repeat"] for w in warmups] == [1, 2] and all(w["steps"] == 2 for w in warmups)
    assert all(w["time_s"] > 0 and w["energy_j"] > 0 for w in warmups)
    assert [r["ops"] for r in rows] == ["input,output"] * 2


@pytest.mark.parametrize("args, message", [
    (["--ops", "input,blah"], "unknown op"),
    (["--out", "run.txt"], ".parquet or .csv"),
    (["--dataset", "cifar10"], "needs --data-dir"),
    (["--dataset", "cifar10", "--data-dir", "."], "cifar-10-python.tar.gz"),
    (["--epochs", "0"], "budget_epochs"),
    (["--device", "cuda"], "CUDA"),
])
def test_cli_bad_input_exits_2_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    base = {"--matrix": "0100", "--ops": "input,output", "--epochs": "1",
            "--out": str(tmp_path / "r.parquet"), "--max-train-images": "64"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value if flag != "--out" else str(tmp_path / value)
    argv = [x for kv in base.items() for x in kv]
    proc = _ecnas("train", *argv)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr
