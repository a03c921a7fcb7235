"""EnergyTracker with a real meter (the CPU-time estimate meter works on every machine)."""

from __future__ import annotations

import math
import sys
import time

import pytest

from ecnas.errors import InputError
from ecnas.meters.estimate import EstimateMeter
from ecnas.monitor import Monitor
from ecnas.tracker.rows import CONTRACT_COLUMNS
from ecnas.tracker.tracker import EnergyTracker


def burn(seconds: float) -> None:
    """Busy CPU work for about ``seconds`` (the estimate meter counts CPU time)."""
    end = time.process_time() + seconds
    x = 0
    while time.process_time() < end:
        x += sum(range(1000))


def test_checkpoints_are_cumulative_and_evaluation_is_kept_out_of_training_time() -> None:
    tracker = EnergyTracker(meters=[EstimateMeter(per_core_w=10.0)])
    with tracker:
        tracker.checkpoint(0, validation_accuracy=0.1)
        for epoch in tracker.epochs(3):
            burn(0.05)
            with tracker.evaluating():
                burn(0.03)
            tracker.checkpoint(epoch + 1, validation_accuracy=0.2 + epoch / 10)
    cps = tracker.checkpoints
    assert [c.epoch for c in cps] == [0.0, 1.0, 2.0, 3.0]
    energies = [c.cpu_energy_j for c in cps]
    assert energies == sorted(energies) and energies[-1] > energies[1] > 0
    # 10 W per busy core × ≥ 0.24 s of CPU time burnt in the loop
    assert energies[-1] >= 10.0 * 0.2
    for c in cps:
        assert c.estimated and c.meters == ("estimate",)
        assert math.isnan(c.gpu_energy_j) and math.isnan(c.dram_energy_j)
        assert c.energy_j == c.cpu_energy_j
        assert c.training_time_s + c.evaluation_time_s == pytest.approx(c.wall_time_s)
    last = cps[-1]
    assert last.evaluation_time_s >= 3 * 0.03 * 0.9
    assert last.training_time_s >= 3 * 0.05 * 0.9
    assert last.training_time_s < last.wall_time_s
    marks = tracker.epoch_marks
    assert [m.epoch for m in marks] == [1, 2, 3]
    assert math.fsum(m.energy_j for m in marks) == pytest.approx(marks[-1].cumulative_energy_j)


def test_reading_sits_between_checkpoints_and_is_not_recorded() -> None:
    tracker = EnergyTracker(meters=[EstimateMeter(per_core_w=10.0)])
    with tracker:
        first = tracker.checkpoint(0)
        burn(0.05)
        now = tracker.reading()
        burn(0.05)
        last = tracker.checkpoint(1)
    assert tracker.checkpoints == [first, last]  # the reading is not a checkpoint
    assert math.isnan(now.epoch) and now.meters == ("estimate",)
    assert first.cpu_energy_j < now.cpu_energy_j < last.cpu_energy_j
    assert first.wall_time_s < now.wall_time_s < last.wall_time_s
    with pytest.raises(InputError, match="reading"):
        tracker.reading()  # stopped


def test_warm_up_is_metered_before_the_run_and_kept_out_of_its_rows() -> None:
    tracker = EnergyTracker(meters=[EstimateMeter(per_core_w=10.0)])
    calls = []
    w = tracker.warm_up(lambda: (calls.append(1), burn(0.03)), steps=3)
    assert len(calls) == 3 and tracker.warmup == w and not tracker.started
    assert w.steps == 3 and w.time_s >= 3 * 0.03 * 0.9
    # the estimate counts CPU time in clock ticks (10 ms here): allow two ticks' worth
    assert w.energy_j >= 10.0 * (3 * 0.03 * 0.9 - 0.02) and w.estimated and w.meters == ("estimate",)
    with tracker:
        tracker.checkpoint(0)
        for epoch in tracker.epochs(1):
            burn(0.02)
            tracker.checkpoint(epoch + 1)
    first = tracker.checkpoints[0]
    # none of the warm-up (0.09 s, 0.8 J or more) is in the run: its first checkpoint is at ~0
    assert first.wall_time_s < 0.05 and first.energy_j < w.energy_j / 3
    assert "warmup" not in tracker.rows(arch_hash="0" * 32)[0]
    with pytest.raises(InputError, match="before start"):
        tracker.warm_up(lambda: None)
    with pytest.raises(InputError, match="positive integer"):
        EnergyTracker(meters=[EstimateMeter()]).warm_up(lambda: None, steps=0)


def test_rows_follow_the_table_contract() -> None:
    tracker = EnergyTracker(meters=[EstimateMeter(per_core_w=5.0)])
    with tracker:
        for epoch in tracker.epochs(2):
            burn(0.02)
            tracker.checkpoint(epoch + 1, train_accuracy=0.5, loss=1.25)
    rows = tracker.rows(arch_hash="abc", budget_epochs=2, repeat=1)
    assert len(rows) == 2
    row = rows[-1]
    assert row["device"]  # the CPU's profile id, matched from the estimate meter's device
    assert row["source"] == "measured" and row["estimated"] is True
    assert row["train_accuracy"] == 0.5 and math.isnan(row["test_accuracy"])
    assert row["loss"] == 1.25  # extra metrics travel as extra columns
    for col in ("epoch", "training_time_s", "wall_time_s", "energy_j", "cpu_energy_j"):
        assert isinstance(row[col], CONTRACT_COLUMNS[col])


def test_tracker_on_a_shared_monitor_leaves_it_open() -> None:
    with Monitor([EstimateMeter(per_core_w=5.0)]) as monitor:
        a, b = EnergyTracker(monitor), EnergyTracker(monitor)
        a.start()
        b.start()
        burn(0.02)
        a.checkpoint(1)
        b.checkpoint(1)
        a.stop()
        total = b.stop()
        assert monitor.open_windows() == ()
        monitor.begin("still-usable")
        monitor.end("still-usable")
    assert total.cpu_energy_j > 0 and math.isnan(total.epoch)


def test_metering_time_is_accounted_for() -> None:
    # How small it is (< 1 % of an epoch) is a benchmark figure (bench_trainer.py:
    # test_tracker_overhead_per_epoch), not a timed assertion here.
    tracker = EnergyTracker(meters=[EstimateMeter(per_core_w=5.0)])
    with tracker:
        for epoch in tracker.epochs(5):
            burn(0.1)  # a (very short) 100 ms epoch
            tracker.checkpoint(epoch + 1)
    wall = tracker.checkpoints[-1].wall_time_s
    assert 0 < tracker.overhead_s < wall  # every meter read (5 marks, 5 checkpoints) is counted


def test_misuse_is_reported_clearly() -> None:
    tracker = EnergyTracker(meters=[EstimateMeter()])
    with pytest.raises(InputError, match="start"):
        tracker.checkpoint(1)
    with pytest.raises(InputError, match="monitor or meters"):
        EnergyTracker(Monitor([]), meters=[EstimateMeter()])
    with tracker, pytest.raises(InputError, match="≥ 0"):
        tracker.checkpoint(-1)
    with pytest.raises(InputError, match="restarted"):
        tracker.start()


def test_tracker_import_does_not_pull_in_torch() -> None:
    import subprocess

    code = ("import sys; import ecnas.tracker; from ecnas.tracker import EnergyTracker; "
            "print('torch' in sys.modules, 'pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
