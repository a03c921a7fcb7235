"""Tables ecnas measured fill EC-NAS's record truthfully: real timestamps, per-socket joules and
power from the meters, CO2 only with a configured intensity; the export leaves the rest unset."""

from __future__ import annotations

import calendar
import math
import time
from pathlib import Path

import pytest
from fakes.sysfs import FakePowercap

from ecnas.errors import InputError
from ecnas.interop import import_ecnas
from ecnas.interop.export_tfrecord import export_ecnas_tfrecord
from ecnas.interop.record import device_id
from ecnas.interop.tfrecord import read_ecnas_records
from ecnas.meters.rapl import RaplMeter
from ecnas.space import ModelSpec
from ecnas.tables.kwh import to_kwh
from ecnas.tables.metadata import set_metadata
from ecnas.tracker.rows import to_frame
from ecnas.tracker.tracker import EnergyTracker

J = 1_000_000  # µJ
CPU = "Intel(R) Xeon(R) Gold 6130 CPU"
SPEC = ModelSpec("0110001000010000", "input,maxpool3x3,maxpool3x3,output")


def _run(root: Path, **kwargs) -> tuple[list[dict], float, float]:
    """A three-checkpoint run on a fake two-socket RAPL tree (package 50 J + 30 J, DRAM 3 J)."""
    tree = FakePowercap(root, cpu_model=CPU)
    s0, s1 = tree.package(0, dram=True, core=False), tree.package(1, dram=False, core=False)
    before = time.time()
    tracker = EnergyTracker(meters=[RaplMeter(tree.root)], **kwargs)
    with tracker:
        tracker.checkpoint(0)
        s0["package"].set(20 * J)
        s1["package"].set(10 * J)
        s0["dram"].set(3 * J)
        time.sleep(0.01)  # the test's fake counters move; the tracker itself never sleeps
        tracker.checkpoint(1)
        s0["package"].set(50 * J)
        s1["package"].set(30 * J)
        tracker.checkpoint(2)
    rows = tracker.rows(arch_hash=SPEC.hash(), matrix=SPEC.matrix_str, ops=SPEC.ops_str,
                        budget_epochs=2, repeat=1, trainable_params=1234, flops=math.nan)
    return rows, before, time.time()


def _unix(text: str) -> float:
    return calendar.timegm(time.strptime(text, "%Y-%m-%d %H:%M:%S"))


def test_measured_rows_carry_clock_and_meters_and_no_invented_co2(tmp_path: Path) -> None:
    rows, before, after = _run(tmp_path / "sysfs")
    assert len(rows) == 3
    for r in rows:
        for col in ("started_at", "stopped_at", "run_started_at", "run_stopped_at"):
            assert int(before) <= _unix(r[col]) <= after, (col, r[col])  # real UTC times
        assert _unix(r["started_at"]) <= _unix(r["stopped_at"])
        # the sockets as the driver names them, package joules and mean power over the run
        assert r["cpu0_name"] == r["cpu1_name"] == CPU and r["cpu0_id"] == device_id(CPU)
        assert r["run_cpu0_energy_j"] == pytest.approx(50.0) and r["run_cpu1_energy_j"] == pytest.approx(30.0)
        assert r["run_cpu0_power_w"] == r["run_cpu0_energy_j"] / r["run_time_s"]
        assert r["run_energy_j"] == pytest.approx(83.0)  # DRAM included, as energy_j
        assert not any(k.startswith(("gpu0", "run_gpu", "predicted_")) for k in r)
        assert not any(k in r for k in ("co2eq_g", "run_co2eq_g", "intensity_g_per_kwh",
                                        "energy_kwh", "checkpoint_path"))
    assert rows[0]["started_at"] == rows[0]["run_started_at"]
    assert rows[1]["started_at"] == rows[0]["stopped_at"]


def test_co2_only_from_a_configured_intensity(tmp_path: Path) -> None:
    rows, _, _ = _run(tmp_path / "sysfs", carbon_intensity_g_per_kwh=250.0)
    for r in rows:
        assert r["intensity_g_per_kwh"] == r["run_intensity_g_per_kwh"] == 250.0
        assert r["co2eq_g"] == r["energy_j"] / 3.6e6 * 250.0
        assert r["run_co2eq_g"] == r["run_energy_j"] / 3.6e6 * 250.0
    with pytest.raises(InputError, match="carbon intensity"):
        EnergyTracker(carbon_intensity_g_per_kwh=-1.0)


def test_export_of_a_measured_table_sets_what_is_known_and_nothing_else(tmp_path: Path) -> None:
    rows, _, _ = _run(tmp_path / "sysfs")
    table = set_metadata(to_frame(rows), {})
    path = tmp_path / "m.tfrecord"
    assert export_ecnas_tfrecord(table, path).records == 1
    (rec,) = read_ecnas_records(path)
    m, last = rec.metrics, rows[-1]
    assert (m.start_emission, m.stop_emission) == (last["run_started_at"], last["run_stopped_at"])
    assert m.total_time == last["run_time_s"] and m.total_energy == to_kwh(last["run_energy_j"], 1.0)
    assert m.total_co2eq is None and m.overall_avg_intensity is None  # no intensity given
    for ev, r in zip(m.evaluation_data_energy, rows, strict=True):
        assert (ev.start_emission, ev.stop_emission) == (r["started_at"], r["stopped_at"])
        assert ev.energy == to_kwh(r["energy_j"], 1.0) and ev.training_time == r["training_time_s"]
        assert ev.co2eq is ev.avg_intensity is ev.checkpoint_path is None
        assert ev.pred_energy is ev.pred_co2eq is ev.pred_training_time is ev.pred_avg_intensity is None
    p = m.avg_power_usages
    assert p.gpu is None  # no GPU metered: none invented
    assert p.cpu.device_names == [CPU, CPU]
    assert p.cpu.joules == [last["run_cpu0_energy_j"], last["run_cpu1_energy_j"]]
    assert p.cpu.watts == [last["run_cpu0_power_w"], last["run_cpu1_power_w"]]
    # and back: the record columns return as they were (no facility factor: --pue 1)
    back = import_ecnas(path, pue=1.0).sort_values("epoch")
    for col in ("started_at", "stopped_at", "run_started_at", "run_cpu0_energy_j",
                "run_cpu1_power_w", "cpu1_name", "energy_j", "training_time_s"):
        assert back[col].tolist() == [r[col] for r in rows], col
