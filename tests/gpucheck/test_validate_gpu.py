"""``ecnas validate gpu`` end to end against the stand-in libnvidia-ml.so.1 (compiled here,
loaded by the real pynvml), a stand-in nvidia-smi, and a CPU load (the hidden --test-mode): the
comparisons, both report files, the pass/fail decisions, and the refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fakes.env import isolated_cache  # noqa: F401  (autouse: a private ECNAS_CACHE_DIR)
from fakes.nvml import FakeGpu, build_stub, compiler, write_state

from ecnas.gpucheck.nvml_probe import PowerTrace
from ecnas.gpucheck.results import expect_at_most, relative_difference

FAKES = Path(__file__).resolve().parents[1] / "fakes"
BOARDS = [FakeGpu("GPU-aaaa-1111", pci=0x2330, energy_mj=1000, power_mw=250_000,
                  instant_mw=250_000, name="NVIDIA H100 80GB HBM3"),
          FakeGpu("GPU-bbbb-2222", pci=0x2330, energy_mj=5000, power_mw=70_000,
                  instant_mw=70_000, name="NVIDIA H100 80GB HBM3")]


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if compiler() is None:
        pytest.skip("no C compiler to build the stand-in NVML library")
    d = tmp_path_factory.mktemp("gpu-stand-ins")
    build_stub(d / "lib")
    (d / "bin").mkdir()
    smi = d / "bin" / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\nexec {sys.executable} {FAKES / 'nvidia_smi.py'} \"$@\"\n")
    smi.chmod(0o755)
    write_state(d / "state", BOARDS)
    return d


def validate(stand_ins: Path | None, out: Path, *args: str, gain: float = 1.0,
             **env: str) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ)
    for key in ("CUDA_VISIBLE_DEVICES", "LD_LIBRARY_PATH", "FAKE_NVML_LIVE"):
        full.pop(key, None)
    if stand_ins is not None:
        full.update(LD_LIBRARY_PATH=str(stand_ins / "lib"),
                    FAKE_NVML_STATE=str(stand_ins / "state"),
                    # the counter runs on the wall clock, updating every 20 ms, at gain x power
                    FAKE_NVML_LIVE=f"{time.time() - 5:.3f} {gain} 20",
                    PATH=f"{stand_ins / 'bin'}{os.pathsep}{full['PATH']}")
    full.update(env)
    return subprocess.run([sys.executable, "-m", "ecnas", "validate", "gpu", "--out", str(out),
                           *args], env=full, capture_output=True, text=True, timeout=300)


def checks_of(report: dict) -> dict[str, dict]:
    return {f"{c['phase']}: {c['name']}": c for c in report["checks"]}


def test_runs_end_to_end_on_the_stand_in(stand_ins: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    proc = validate(stand_ins, out, "--test-mode", "--json")
    report = json.loads(proc.stdout)
    # the exit status is the verdict of the expectations, whatever the timings did
    assert proc.returncode == (0 if report["passed"] else 1), proc.stderr
    assert report["passed"] == (report["counts"]["fail"] == 0)
    on_disk = json.loads((out / "validation.json").read_text())
    assert on_disk["checks"] == report["checks"]
    md = (out / "validation.md").read_text()
    for phase in ("counter vs power", "window semantics", "short windows", "overhead",
                  "trainer at full width", "device selection"):
        assert f"## {phase}" in md
        assert f"phase 7/7: {phase}" in proc.stderr or phase != "device selection"
    assert proc.stderr.count("[ecnas validate] phase ") == 14  # progress as it goes
    c = checks_of(report)
    # counter vs power: the stand-in's counter integrates its own power reading exactly
    for name in ("energy counter vs NVML power polled every 10 ms",
                 "energy counter vs nvidia-smi power.draw", "NVML power vs nvidia-smi power.draw"):
        assert c[f"counter vs power: {name}"]["verdict"] == "pass", c[f"counter vs power: {name}"]
        assert c[f"counter vs power: {name}"]["value"] < 5.0
    period = c["counter vs power: counter update period"]
    assert period["verdict"] == "pass" and period["value"] == pytest.approx(0.02, abs=0.011)
    details = on_disk["details"]["counter vs power"]
    assert details["meter_j"] == pytest.approx(250.0 * details["interval_s"], rel=0.05)
    # window semantics: with sync the work's energy is in the launch window, without it not
    assert c["window semantics: with sync: share of the work's energy in the launch window"][
        "value"] >= 0.9
    assert c["window semantics: without sync: share of the work's energy in the launch window"][
        "value"] <= 0.1
    # short windows: the flag follows the meter's 0.1 s floor
    for ms in (5, 20, 100):
        assert c[f"short windows: {ms} ms windows flagged short_window iff shorter than 0.1 s"][
            "verdict"] == "pass"
    assert details["counter_update"]["changes"] > 5
    # the trainer's rows pass ecnas check and carry NVML-measured GPU energy
    assert c["trainer at full width: rows pass ecnas check"]["verdict"] == "pass"
    assert c["trainer at full width: GPU energy measured by NVML"]["verdict"] == "pass"
    assert (out / "trainer-rows.parquet").is_file()
    # device selection: index 1 and its UUID are the same board
    sel = c["device selection: NVML meter: index and UUID select the same board"]
    assert sel["verdict"] == "pass" and sel["value"] == "GPU-bbbb-2222 / GPU-bbbb-2222"
    overhead = [v for k, v in c.items() if k.startswith("overhead: ~")]
    assert len(overhead) == 2 and all(v["verdict"] in ("pass", "fail") for v in overhead)
    assert all("in the window edges" in v["note"] for v in overhead)
    blocks = [v for k, v in c.items() if k.startswith("overhead: blocks with and without")]
    assert len(blocks) == 2 and all(v["verdict"] == "info" and "spread" in v["note"]
                                    for v in blocks)
    for key, figures in report["details"]["overhead"].items():
        if key.endswith("ms"):  # the edges are timed inside the metered blocks
            assert all(0 < e < m for e, m in zip(figures["edges_s"], figures["metered_s"],
                                                  strict=True))
    reads = c["overhead: how the NVML meter reads"]  # the stand-in answers fast: at the edges
    assert reads["verdict"] == "info" and reads["value"] == "at window edges"
    assert reads["note"].startswith("gpu:0 NVIDIA H100 80GB HBM3: energy counter")
    assert on_disk["details"]["overhead"]["nvml_reading"] == reads["note"]


def test_fails_where_the_counter_disagrees_with_power(stand_ins: Path, tmp_path: Path) -> None:
    proc = validate(stand_ins, tmp_path / "r", "--test-mode", "--json", "--phases", "counter",
                    gain=1.3)
    assert proc.returncode == 1, proc.stderr
    c = checks_of(json.loads(proc.stdout))
    bad = c["counter vs power: energy counter vs NVML power polled every 10 ms"]
    assert bad["verdict"] == "fail" and bad["value"] == pytest.approx(30.0, abs=3.0)
    assert c["counter vs power: energy counter vs nvidia-smi power.draw"]["verdict"] == "fail"
    assert c["counter vs power: NVML power vs nvidia-smi power.draw"]["verdict"] == "pass"
    md = (tmp_path / "r" / "validation.md").read_text()
    assert "**FAILED**" in md and "| FAIL |" in md
    assert "## overhead" not in md  # --phases counter: the machine record and that phase only


def test_refuses_without_a_gpu(tmp_path: Path) -> None:
    proc = validate(None, tmp_path / "r", "--test-mode")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "no GPU to validate" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "r" / "validation.json").exists()


def test_refuses_without_cuda_even_with_nvml(stand_ins: Path, tmp_path: Path) -> None:
    proc = validate(stand_ins, tmp_path / "r", "--quick")
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_never_replaces_a_report_it_did_not_write(stand_ins: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    out.mkdir()
    (out / "validation.json").write_text('{"mine": true}')
    proc = validate(stand_ins, out, "--test-mode", "--force")
    assert proc.returncode == 2 and "did not write" in proc.stderr
    assert (out / "validation.json").read_text() == '{"mine": true}'


def test_trapezoid_over_an_interval() -> None:
    # 100 W for 1 s then 300 W: samples every 0.5 s; over [0, 2] the trapezoid gives 400 J
    trace = PowerTrace((0.0, 0.5, 1.0, 1.5, 2.0), (100.0, 100.0, 100.0, 300.0, 300.0))
    assert trace.energy_j(0.0, 2.0) == pytest.approx(0.5 * 100 * 2 + 0.5 * 200 + 0.5 * 300)
    assert trace.mean_w() == pytest.approx(180.0)
    assert PowerTrace((0.0,), (5.0,)).energy_j(0.0, 1.0) != PowerTrace((0.0,), (5.0,)).energy_j(
        0.0, 1.0)  # NaN: one sample integrates nothing


def test_update_period_passes_within_one_poll_of_the_floor() -> None:
    from ecnas.gpucheck.phases import update_period_check

    # as measured on an H200 in a VM: 0.10001 s by polling every 4.4 ms
    h200 = {"update_period_s": 0.10001, "changes": 20, "polls": 457, "poll_period_s": 0.00438}
    assert update_period_check("p", h200).verdict == "pass"
    assert update_period_check("p", dict(h200, update_period_s=0.105)).verdict == "fail"
    fast_polls = dict(h200, poll_period_s=0.000001)  # a fast probe resolves 0.10001 s
    assert update_period_check("p", fast_polls).verdict == "fail"


def test_expectations_decide_pass_and_fail() -> None:
    assert relative_difference(105.0, 100.0) == pytest.approx(5.0)
    assert expect_at_most("p", "x", 4.9, 5.0, "%").verdict == "pass"
    assert expect_at_most("p", "x", 5.1, 5.0, "%").verdict == "fail"
    assert expect_at_most("p", "x", float("nan"), 5.0, "%").verdict == "fail"
