"""ecnas calibrate on a GPU through the stand-in libnvidia-ml (real pynvml, fresh process):
profile matched by PCI id and name, energy counter compared with polled power."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes.nvml import FakeGpu, build_stub, compiler, run_python, write_state

BODY = """
import json, os, threading, time
from fakes.nvml import FakeGpu, write_state
from ecnas.profiles import load_profiles
from ecnas.profiles.calibrate import calibrate
STATE = os.environ["FAKE_NVML_STATE"]
t0 = time.time()
stop = threading.Event()
def board():  # a steady 100 W board: counter in mJ, power reading in mW
    while not stop.is_set():
        mj = int((time.time() - t0) * 100_000)
        write_state(STATE, [FakeGpu("GPU-aaa", energy_mj=mj, power_mw=100_000,
                                    instant_mw=100_000)])
        stop.wait(0.01)
th = threading.Thread(target=board, daemon=True); th.start()
waiter = threading.Event()
run = calibrate("gpu", profiles=load_profiles(), idle_s=0.5, load_s=0.8, probe_s=0.4,
                poll_s=0.05, burn=waiter.wait, profile_id="my-rtx-6000")
stop.set(); th.join()
d = run.to_dict()
d["profile"] = run.profile.to_dict()
print(json.dumps(d))
"""


@pytest.fixture(scope="module")
def stub_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if compiler() is None:
        pytest.skip("no C compiler to build the stand-in NVML library")
    d = tmp_path_factory.mktemp("nvml-stub-profiles")
    build_stub(d)
    return d


def test_calibrate_gpu_counter_vs_polled_power(stub_dir: Path, tmp_path: Path) -> None:
    state = tmp_path / "state.txt"
    write_state(state, [FakeGpu("GPU-aaa")])
    out = run_python(stub_dir, state, BODY)
    assert out["mode"] == "measured" and out["meter"] == "nvml"
    assert out["base_profile"] == "nvidia-quadro-rtx-6000"
    assert out["idle"]["power_w"]["gpu:0"] == pytest.approx(100.0, rel=0.15)
    assert out["counter_vs_polled"] == pytest.approx(1.0, abs=0.15)
    profile = out["profile"]
    assert profile["id"] == "my-rtx-6000" and profile["match"]["pci_device_ids"] == ["0x1e30"]
    assert profile["power"]["tdp_w"] == 260.0  # envelope from the matched seed profile
    assert profile["calibration"]["status"] == "uncalibrated"
    assert any("no --reference" in n for n in out["not_calibrated"])
