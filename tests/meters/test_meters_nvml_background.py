"""NVML meter where NVML is slow (the stand-in's FAKE_NVML_DELAY_US: 3 ms a read, as an H200
in a VM took 4.4 ms): a background sampler reads the GPUs and window edges take its newest
reading. The stand-in logs every read with its thread (FAKE_NVML_CALLS), so the tests see
which reads the edges made themselves. No timing is asserted: behaviour only."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fakes.env import isolated_cache  # noqa: F401  (autouse: a private ECNAS_CACHE_DIR)
from fakes.nvml import (
    INSTANT,
    FakeGpu,
    run_scenario,
    write_state,
)

from ecnas.errors import InputError
from ecnas.meters.nvml import BACKGROUND_ENV, background_setting

SLOW = "3000"  # µs a read
WATTS = 250.0
UPDATE_S = 0.005  # the live counter's update period in these tests


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "nvml-state.txt"
    write_state(path, [FakeGpu("GPU-aaa", energy_mj=5000, power_mw=int(WATTS * 1000))])
    return path


def run(stub_dir: Path, state: Path, scenario: str, *args: object, live: bool = False,
        **env: str) -> dict:
    env.setdefault("FAKE_NVML_CALLS", str(state.with_name("calls.log")))
    if live:  # the counter runs on the wall clock at WATTS, updating every UPDATE_S
        env["FAKE_NVML_LIVE"] = f"{time.time() - 1:.3f} 1 {UPDATE_S * 1000:g}"
    return run_scenario(stub_dir, state, scenario, *args, env=env)


def assert_exact(report: dict) -> None:
    """The live counter's joules over the window: WATTS x duration, within one counter update
    (its resolution) plus 10 ms for where inside a 3 ms pass a read lands."""
    joules, duration = report["domain_details"]["gpu:0"]["raw_joules"], report["duration_s"]
    assert duration > 0.4
    assert abs(joules - WATTS * duration) <= WATTS * (UPDATE_S + 0.010), (joules, duration)


def test_slow_reads_move_to_the_sampler_and_edges_call_no_nvml(stub_dir: Path,
                                                               state: Path) -> None:
    out = run(stub_dir, state, "slow_counter", "auto", live=True, FAKE_NVML_DELAY_US=SLOW)
    assert out["sampling"] is True and out["threads"] == ["ecnas-nvml-sampler"]
    reason = out["status"]["reason"]
    assert reason.startswith("gpu:0 NVIDIA Quadro RTX 6000: energy counter (a read takes ")
    assert "in the background; window edges use the latest sample" in reason
    assert out["status"]["status"] == "measured"
    # 20 windows = 40 edges on this thread: NVML is read only where an edge found the
    # newest sample stale (the meter counts those; normally none)
    assert out["edge_calls"] == out["late_reads"] <= 2
    assert out["other_calls"] > 0  # the sampler read meanwhile
    assert_exact(out["report"])
    assert out["threads_after_close"] == []  # close() stopped it


def test_background_off_reads_at_every_edge(stub_dir: Path, state: Path) -> None:
    out = run(stub_dir, state, "slow_counter", "off", live=True, FAKE_NVML_DELAY_US=SLOW)
    assert out["sampling"] is False and out["threads"] == []
    assert out["edge_calls"] == 40  # one read of the one GPU per edge
    assert "background sampling off: each window edge reads NVML" in out["status"]["reason"]
    assert_exact(out["report"])


def test_fast_nvml_keeps_synchronous_edges(stub_dir: Path, state: Path) -> None:
    out = run(stub_dir, state, "slow_counter", "auto", "20", "0.1")
    assert out["sampling"] is False and out["threads"] == []
    assert out["edge_calls"] == 40
    assert out["status"]["reason"] == "gpu:0 NVIDIA Quadro RTX 6000: energy counter"


def test_background_on_samples_even_fast_nvml(stub_dir: Path, state: Path) -> None:
    out = run(stub_dir, state, "slow_counter", "on", live=True)
    assert out["sampling"] is True and out["threads"] == ["ecnas-nvml-sampler"]
    assert "in the background as asked" in out["status"]["reason"]
    assert out["edge_calls"] == out["late_reads"] <= 2
    assert_exact(out["report"])


def test_counter_going_back_is_counted_once(stub_dir: Path, state: Path) -> None:
    out = run(stub_dir, state, "slow_counter_goes_back", FAKE_NVML_DELAY_US=SLOW)
    assert out["sampling"] is True
    # 5000 → 9000 mJ, then the driver restarted the counter: 1000 → 1500 mJ since
    assert out["domain_details"]["gpu:0"]["raw_joules"] == pytest.approx(5.5)
    went_back = [w for w in out["warnings"] if "energy counter went back" in w]
    assert went_back == ["gpu:0: energy counter went back (9000 -> 1000 mJ); counting on from 0"]


def test_dead_sampler_falls_back_to_reading_at_the_edge(stub_dir: Path, state: Path) -> None:
    out = run(stub_dir, state, "slow_counter_sampler_dies", FAKE_NVML_DELAY_US=SLOW)
    assert out["sampling"] is True
    assert out["edge_calls"] == 1  # the end edge read the counter itself
    assert out["domain_details"]["gpu:0"]["raw_joules"] == pytest.approx(2.0)  # 5000 → 7000
    assert any("the background sampler stopped" in w and "read NVML themselves" in w
               for w in out["warnings"]), out["warnings"]


def test_nvml_slowing_down_after_start_switches_to_the_sampler(stub_dir: Path,
                                                                state: Path) -> None:
    out = run(stub_dir, state, "slows_down_after_start")
    assert out["sampling_at_start"] is False
    assert out["sampling"] is True and out["threads"] == ["ecnas-nvml-sampler"]
    assert any("reads slowed to" in w and "sampling in the background" in w
               for w in out["warnings"]), out["warnings"]
    assert "in the background; window edges use the latest sample" in out["reason"]


def test_polled_power_with_slow_reads_is_sampled_too(stub_dir: Path, state: Path) -> None:
    write_state(state, [FakeGpu("GPU-aaa", flags=INSTANT, instant_mw=100_000)])
    out = run(stub_dir, state, "slow_instant_power", FAKE_NVML_DELAY_US=SLOW)
    assert out["mode"] == "instant" and out["sampling"] is True
    assert out["threads"] == ["ecnas-nvml-sampler"]
    # constant power integrates exactly over the samples' own times
    assert out["domain_details"]["gpu:0"]["raw_joules"] / out["duration_s"] == pytest.approx(
        100.0, rel=1e-9)
    assert "instantaneous power polled every" in out["reason"]


@pytest.mark.parametrize("value, expected", [("on", [True]), ("off", [False]),
                                             ("auto", [None])])
def test_env_var_reaches_the_default_and_named_meters(stub_dir: Path, state: Path, value: str,
                                                      expected: list) -> None:
    out = run(stub_dir, state, "default_nvml_background", **{BACKGROUND_ENV: value})
    assert out == {"default": expected, "named": expected}


def test_env_var_values() -> None:
    assert background_setting({}) is None
    assert background_setting({BACKGROUND_ENV: " ON "}) is True
    assert background_setting({BACKGROUND_ENV: "0"}) is False
    with pytest.raises(InputError, match=r"ECNAS_NVML_BACKGROUND='sometimes': use auto, on"):
        background_setting({BACKGROUND_ENV: "sometimes"})
