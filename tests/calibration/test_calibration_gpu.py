"""ecnas calibrate on a GPU through the stand-in libnvidia-ml (real pynvml, fresh process):
profile matched by PCI id and name, energy counter compared with polled power, and the board
CUDA_VISIBLE_DEVICES names is the one measured (counter and polled power alike). The child
runs the scenario calibrate_steady_board of fakes/nvml_scenarios.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes.nvml import (
    FakeGpu,
    run_scenario,
    write_state,
)


def test_calibrate_gpu_counter_vs_polled_power(stub_dir: Path, tmp_path: Path) -> None:
    state = tmp_path / "state.txt"
    write_state(state, [FakeGpu("GPU-aaa")])
    out = run_scenario(stub_dir, state, "calibrate_steady_board")
    assert out["mode"] == "measured" and out["meter"] == "nvml"
    assert out["base_profile"] == "nvidia-quadro-rtx-6000"
    assert out["idle"]["power_w"]["gpu:0"] == pytest.approx(100.0, rel=0.15)
    assert out["counter_vs_polled"] == pytest.approx(1.0, abs=0.15)
    profile = out["profile"]
    assert profile["id"] == "my-rtx-6000" and profile["match"]["pci_device_ids"] == ["0x1e30"]
    assert profile["power"]["tdp_w"] == 260.0  # envelope from the matched seed profile
    assert profile["calibration"]["status"] == "uncalibrated"
    assert any("no --reference" in n for n in out["not_calibrated"])


def test_calibrate_gpu_measures_the_board_cuda_visible_devices_names(stub_dir: Path,
                                                                     tmp_path: Path) -> None:
    # Two boards: gpu:0 under CUDA_VISIBLE_DEVICES=1 is NVML index 1 (the 250 W board). The
    # counter and the polled power must both come from it; polling NVML index 0 (100 W)
    # would put the counter/polled ratio at 2.5.
    state = tmp_path / "state.txt"
    write_state(state, [FakeGpu("GPU-aaa"), FakeGpu("GPU-bbb")])
    out = run_scenario(stub_dir, state, "calibrate_steady_board", "GPU-aaa:100",
                       "GPU-bbb:250", env={"CUDA_VISIBLE_DEVICES": "1"})
    assert out["domains"] == ["gpu:0"]
    assert out["idle"]["power_w"]["gpu:0"] == pytest.approx(250.0, rel=0.15)
    assert out["polled_energy_j"] > 0
    assert out["counter_vs_polled"] == pytest.approx(1.0, abs=0.15)
