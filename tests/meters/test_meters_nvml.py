"""NVML meter against a stand-in libnvidia-ml.so.1 compiled here and loaded by the real
pynvml bindings in a fresh interpreter (LD_LIBRARY_PATH is read at process start). What that
interpreter runs is a scenario of fakes/nvml_scenarios.py, named here."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes.env import isolated_cache  # noqa: F401  (autouse: a private ECNAS_CACHE_DIR)
from fakes.nvml import (
    FAIL_ENERGY,
    INSTANT,
    LOST,
    FakeGpu,
    run_scenario,
    write_state,
)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "nvml-state.txt"


def run(stub_dir: Path, state: Path, scenario: str, *args: object, **env: str) -> dict:
    return run_scenario(stub_dir, state, scenario, *args, env=env)


def test_energy_counter_path_two_gpus(stub_dir: Path, state: Path) -> None:
    write_state(state, [FakeGpu("GPU-aaa", energy_mj=5000), FakeGpu("GPU-bbb", energy_mj=100)])
    out = run(stub_dir, state, "counter_two_gpus")
    assert out["status"]["status"] == "measured"
    assert out["status"]["domains"] == ["gpu:0", "gpu:1"]
    dev = out["status"]["devices"][0]
    assert dev["name"] == "NVIDIA Quadro RTX 6000" and dev["pci_device_id"] == "0x1e30"
    assert dev["uuid"] == "GPU-aaa"
    assert "energy counter" in out["status"]["reason"]
    details = out["domain_details"]
    assert details["gpu:0"]["raw_joules"] == pytest.approx(1.5)
    assert details["gpu:1"]["raw_joules"] == pytest.approx(0.25)
    assert details["gpu:0"]["status"] == "measured" and not details["gpu:0"]["short_window"]
    assert details["gpu:0"]["profile_id"] == "nvidia-quadro-rtx-6000"
    assert out["components"]["gpu"] == pytest.approx(1.75)
    assert out["estimated"] is False and out["warnings"] == []


def test_window_shorter_than_counter_update_is_flagged(stub_dir: Path, state: Path) -> None:
    write_state(state, [FakeGpu("GPU-aaa", energy_mj=5000)])
    out = run(stub_dir, state, "short_window")
    detail = out["domain_details"]["gpu:0"]
    assert detail["short_window"] is True
    assert "update period 0.1 s" in detail["reason"]
    assert any("gpu:0: window" in w and "noise" in w for w in out["warnings"])


def test_polling_instant_power_trapezoid(stub_dir: Path, state: Path) -> None:
    # No energy counter; instantaneous field 100 W while the averaged reading says 50 W.
    write_state(state, [FakeGpu("GPU-aaa", flags=INSTANT, instant_mw=100_000, power_mw=50_000)])
    out = run(stub_dir, state, "instant_power")
    assert out["mode"] == "instant"
    # A constant power integrates exactly: energy / duration is the power.
    assert out["domain_details"]["gpu:0"]["raw_joules"] / out["duration_s"] == pytest.approx(
        100.0, rel=1e-9)
    assert out["domain_details"]["gpu:0"]["short_window"] is False


def test_polling_follows_a_power_step(stub_dir: Path, state: Path) -> None:
    write_state(state, [FakeGpu("GPU-aaa", flags=INSTANT, instant_mw=100_000)])
    out = run(stub_dir, state, "power_step")
    mean = out["domain_details"]["gpu:0"]["raw_joules"] / out["duration_s"]
    assert 110.0 < mean < 190.0  # between the two levels, near the middle


def test_averaged_power_fallback_flags_sub_second_windows(stub_dir: Path, state: Path) -> None:
    write_state(state, [FakeGpu("GPU-aaa", flags=0, power_mw=60_000)])
    out = run(stub_dir, state, "averaged_power")
    assert out["mode"] == "power"
    detail = out["domain_details"]["gpu:0"]
    assert detail["raw_joules"] / out["duration_s"] == pytest.approx(60.0, rel=1e-9)
    assert detail["short_window"] is True  # a 1 s average cannot resolve 0.2 s


@pytest.mark.parametrize("flag, message", [(FAIL_ENERGY, "Unknown Error"),
                                           (LOST, "GPU is lost")])
def test_nvml_error_mid_window_keeps_energy_so_far_and_warns(
        stub_dir: Path, state: Path, flag: int, message: str) -> None:
    write_state(state, [FakeGpu("GPU-aaa", energy_mj=1000)])
    out = run(stub_dir, state, "error_mid_window", flag)
    assert out["domain_details"]["gpu:0"]["raw_joules"] == pytest.approx(2.0)
    assert any(f"gpu:0: NVML error ({message})" in w for w in out["warnings"])


def test_cuda_visible_devices_uuids_and_indices(stub_dir: Path, state: Path) -> None:
    gpus = [FakeGpu("GPU-aaa-0000", energy_mj=0), FakeGpu("GPU-bbb-1111", energy_mj=0),
            FakeGpu("GPU-ccc-2222", energy_mj=0, pci=0x20B0, name="NVIDIA A100-SXM4-40GB")]
    write_state(state, gpus)
    out = run(stub_dir, state, "uuids_and_indices", CUDA_VISIBLE_DEVICES="GPU-ccc,0")
    assert out["map"] == {"gpu:0": [2, "GPU-ccc-2222"], "gpu:1": [0, "GPU-aaa-0000"]}
    assert out["domains"] == {"gpu:0": pytest.approx(3.0), "gpu:1": pytest.approx(1.0)}
    assert out["domain_details"]["gpu:0"]["profile_id"] == "nvidia-a100-40gb"


def test_mixed_models_warn_about_cuda_device_order(stub_dir: Path, state: Path) -> None:
    write_state(state, [FakeGpu("GPU-aaa"), FakeGpu("GPU-ccc", pci=0x20B0,
                                                    name="NVIDIA A100-SXM4-40GB")])
    assert "CUDA_DEVICE_ORDER=PCI_BUS_ID" in run(stub_dir, state, "status")["reason"]
    quiet = run(stub_dir, state, "status", CUDA_DEVICE_ORDER="PCI_BUS_ID")["reason"]
    assert "CUDA_DEVICE_ORDER" not in quiet


def test_mig_slice_is_refused_and_falls_back(stub_dir: Path, state: Path) -> None:
    write_state(state, [FakeGpu("GPU-aaa")])
    out = run(stub_dir, state, "mig_refused",
              CUDA_VISIBLE_DEVICES="MIG-4f0b6c5e-3b2a-5f86-9a51-0c4e5f6a7b8c")
    assert out["status"]["status"] == "unavailable"
    assert "MIG slice MIG-4f0b6c5e" in out["status"]["reason"]
    assert "whole board" in out["status"]["reason"]
    assert "MIG" in out["refused"]
    assert "nvml" not in out["defaults"]


def test_unknown_uuid_is_unavailable(stub_dir: Path, state: Path) -> None:
    write_state(state, [FakeGpu("GPU-aaa")])
    out = run(stub_dir, state, "status",
              CUDA_VISIBLE_DEVICES="GPU-zzz")
    assert out["status"] == "unavailable"
    assert "GPU-zzz matches 0 GPUs" in out["reason"]


def test_loader_precheck_finds_a_library_where_dlopen_would(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ecnas.meters.nvml import loader_may_find

    name = "libecnas-test-only.so.7"
    monkeypatch.setenv("LD_LIBRARY_PATH", str(tmp_path))
    assert not loader_may_find(name)  # nowhere: NVML is skipped without importing ctypes
    (tmp_path / name).write_bytes(b"")
    assert loader_may_find(name)  # on LD_LIBRARY_PATH: dlopen gets to decide
    monkeypatch.delenv("LD_LIBRARY_PATH")
    assert not loader_may_find(name)
    assert loader_may_find("libc.so.6")  # in the loader's cache or default folders
