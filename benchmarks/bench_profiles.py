"""Profile loading, matching and the reference fit (pytest-benchmark)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from ecnas.calibration.fit import ReferenceSeries, fit_reference
from ecnas.meters.base import DeviceInfo
from ecnas.profiles import load_profiles, match_device, match_profile, validate_file

QUICK = os.environ.get("ECNAS_BENCH_QUICK") == "1"


@pytest.fixture(scope="module")
def profiles():
    return load_profiles()


def test_load_profiles(benchmark):
    result = benchmark(load_profiles)
    benchmark.extra_info["profiles"] = len(result)


def test_validate_one_file(benchmark, profiles):
    path = profiles[0].source_path
    benchmark(validate_file, path)


def test_match_preloaded(benchmark, profiles):
    dev = DeviceInfo("cpu:0/package", "cpu", "Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz")
    assert benchmark(match_profile, dev, profiles).profile_id == "generic-intel-xeon"


def test_match_device_with_loading(benchmark):
    dev = DeviceInfo("gpu:0", "gpu", "NVIDIA Quadro RTX 6000", pci_device_id="0x1e30")
    assert benchmark(match_device, dev).profile_id == "nvidia-quadro-rtx-6000"


@pytest.fixture(scope="module")
def series():
    # One hour of 10 Hz meter readings against a 2 Hz reference (quick: 5 minutes).
    seconds = 300 if QUICK else 3600
    rng = np.random.default_rng(0)
    t0 = 1.7e9
    t = t0 + np.arange(0, seconds, 0.1)
    p = 110 + 70 * np.sin(2 * np.pi * (t - t0) / 60) + rng.normal(0, 2, len(t))
    e = np.concatenate([[0.0], np.cumsum(0.5 * (p[1:] + p[:-1]) * np.diff(t))])
    rt = t0 + np.arange(-1, seconds + 1, 0.5)
    rw = 1.08 * (110 + 70 * np.sin(2 * np.pi * (rt - t0) / 60)) + 12 + rng.normal(0, 3, len(rt))
    return (t, e), ReferenceSeries(tuple(rt), tuple(rw), "synthetic")


def test_fit_reference(benchmark, series):
    measured, ref = series
    fit = benchmark(fit_reference, measured, ref)
    benchmark.extra_info.update(n=fit.n, gain=fit.gain, gain_sd=fit.gain_sd)


@pytest.fixture(scope="module")
def protocol_run():
    # A default calibration run (idle 30 s, probe 2 s, load 30 s, load steps 20 s) read at
    # 10 Hz, and a wall meter logging 2 Hz means with its clock 7.3 s ahead.
    from ecnas.calibration.loads import step_segments

    rng = np.random.default_rng(1)
    t0 = 1.7e9
    levels = [(0.0, 30.0), (0.3, 2.0), (1.0, 30.0), *step_segments(20.0)]
    tf = t0 + np.arange(0, sum(s for _, s in levels), 0.001)
    edges = np.cumsum([0.0] + [s for _, s in levels])
    pf = 30 + 120 * np.array([lv for lv, _ in levels])[
        np.clip(np.searchsorted(edges, tf - t0, side="right") - 1, 0, len(levels) - 1)]
    ef = np.concatenate([[0.0], np.cumsum(pf[1:] * 0.001)]) + rng.normal(0, 0.05, len(tf))
    t = tf[::100]
    rows = np.arange(tf[0] - 5, tf[-1], 0.5)
    ok = rows >= tf[0]
    re = np.interp(rows[ok], tf, ef)
    rw = 1.15 * np.diff(re) / 0.5 + 12 + rng.normal(0, 1.0, len(re) - 1)
    return (t, ef[::100]), ReferenceSeries(tuple(rows[ok][1:] + 7.3), tuple(rw), "synthetic")


def test_estimate_time_shift(benchmark, protocol_run):
    from ecnas.calibration.timeshift import estimate_time_shift

    measured, ref = protocol_run
    est = benchmark(estimate_time_shift, measured, ref)
    assert abs(est.shift_s + 7.3) < 0.05
    benchmark.extra_info.update(shift_s=est.shift_s, sd_s=est.sd_s, n=est.n)
