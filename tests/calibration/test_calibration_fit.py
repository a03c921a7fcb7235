"""The reference fit, the gross/net helper, and ecnas calibrate on fake RAPL counters."""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from cli_inproc import run_cli
from fakes.sysfs import FakePowercap

from ecnas.calibration.fit import ReferenceSeries, fit_reference, read_reference_csv
from ecnas.calibration.procedure import (
    CalibrationOptions,
    FitOptions,
    calibrate_meter,
    choose_meter,
    numpy_burn,
)
from ecnas.errors import InputError
from ecnas.meters.base import calibrated_energy
from ecnas.meters.rapl import RaplMeter
from ecnas.profiles import get_profile, load_profiles, validate_file

ROOT = Path(__file__).resolve().parents[2]
MAIN = "import sys; from ecnas.cli import main; sys.exit(main(sys.argv[1:]))"
GAIN, OFFSET = 1.08, 12.0


def _power(t, t0, period=1.3):
    return 60.0 + 40.0 * np.sin(2 * np.pi * (np.asarray(t) - t0) / period)


def _energy(t, t0, period=1.3):
    # Closed-form integral of _power from t0: the fake counter is exact.
    x = np.asarray(t) - t0
    return 60.0 * x + 40.0 * period / (2 * np.pi) * (1 - np.cos(2 * np.pi * x / period))


@pytest.mark.parametrize("seed", range(6))
def test_fit_recovers_gain_and_offset_within_uncertainty(seed):
    rng = np.random.default_rng(seed)
    t0 = 1.7e9
    t = t0 + np.arange(0, 90, 0.1)
    p = _power(t, t0, 17.0) + rng.normal(0, 2.0, len(t))
    e = np.concatenate([[0.0], np.cumsum(0.5 * (p[1:] + p[:-1]) * np.diff(t))])
    rt = t0 + np.arange(-1, 91, 0.5)
    rw = GAIN * _power(rt, t0, 17.0) + OFFSET + rng.normal(0, 3.0, len(rt))
    fit = fit_reference((t, e), ReferenceSeries(tuple(rt), tuple(rw), "synthetic"))
    assert abs(fit.gain - GAIN) < 3 * fit.gain_sd
    assert abs(fit.offset_w - OFFSET) < 3 * fit.offset_sd
    assert 0 < fit.gain_sd < 0.02 and 0 < fit.offset_sd < 2.0
    assert fit.n == 89 and 1.0 < fit.residual_w < 4.0
    cal = fit.calibration
    gross = calibrated_energy(cal, 100.0, 2.0, idle_w=None, subtract_idle=False)[0]
    assert cal.calibrated and gross == pytest.approx(fit.gain * 100 + fit.offset_w * 2)


def test_fit_accepts_watts_and_csv(tmp_path):
    t0 = 1.7e9
    t = t0 + np.arange(0, 30, 0.05)
    csv = tmp_path / "ref.csv"
    rt = t0 + np.arange(-1, 31, 0.25)
    rows = ["timestamp,watts"] + [f"{x:.3f},{GAIN * w + OFFSET:.4f}"
                                  for x, w in zip(rt, _power(rt, t0, 7.0), strict=True)]
    csv.write_text("\n".join(rows) + "\n")
    fit = fit_reference((t, _power(t, t0, 7.0)), csv, measured_is="watts")
    assert fit.gain == pytest.approx(GAIN, abs=0.01)
    assert fit.offset_w == pytest.approx(OFFSET, abs=0.6)


def test_reference_csv_formats_and_errors(tmp_path):
    iso = tmp_path / "iso.csv"
    iso.write_text("time,power_w\n2024-05-01T10:00:00+00:00,100\n2024-05-01T10:00:01Z,110\n")
    ref = read_reference_csv(iso)
    assert ref.t[1] - ref.t[0] == 1.0 and ref.watts == (100.0, 110.0)
    bare = tmp_path / "bare.csv"
    bare.write_text("# PDU log\n10,5\n11,6\n")
    assert read_reference_csv(bare).t == (10.0, 11.0)
    cases = {
        "1,abc\n2,3\n": "line 1: watts: 'abc' is not a number",
        "1,3\n1,4\n": "line 2: timestamp: '1' does not increase",
        "1,3\nyesterday,4\n": "line 2: timestamp: 'yesterday' is neither",
        "1,-3\n2,4\n": "line 1: watts: -3.0 is not a finite power",
        "1,3\n": "needs at least 2 samples",
        "": "empty reference file",
    }
    for text, message in cases.items():
        bad = tmp_path / "bad.csv"
        bad.write_text(text)
        with pytest.raises(InputError, match=f"^{bad}: " + message.replace("(", r"\(")):
            read_reference_csv(bad)


def test_fit_refuses_what_it_cannot_fit():
    t = np.arange(0.0, 10.0, 0.1)
    flat = ReferenceSeries(tuple(t), tuple(np.full_like(t, 50.0)), "flat")
    with pytest.raises(InputError, match="measured power is constant"):
        fit_reference((t, 40.0 * t), flat)
    late = ReferenceSeries((100.0, 200.0), (1.0, 2.0), "late")
    with pytest.raises(InputError, match="late: the reference does not cover the measurement"):
        fit_reference((t, 40.0 * t), late)


def test_calibrated_energy_gross_and_net():
    """A profile's calibration applied as the Monitor applies it (``calibrated_energy``)."""
    from dataclasses import replace

    from ecnas.meters.base import Calibration, calibrated_energy

    base = get_profile("nvidia-quadro-rtx-6000")
    cal = replace(base, calibration=Calibration(1.1, 5.0, 0.5, True))
    gross, net, why = calibrated_energy(cal.calibration_for("gpu:0"), 1000.0, 10.0,
                                        idle_w=cal.idle_w_for("gpu:0"), subtract_idle=True)
    assert (gross, net, why) == (1150.0, 1150.0 - base.idle_w * 10, "")
    gross, net, _ = calibrated_energy(base.calibration_for("gpu:0"), 1000.0, 10.0, idle_w=None,
                                      subtract_idle=False)
    assert (gross, net) == (1000.0, None) and not base.calibration_for("gpu:0").calibrated
    xeon = get_profile("generic-intel-xeon")
    gross, net, why = calibrated_energy(xeon.calibration_for("cpu:0/dram"), 50.0, 1.0,
                                        idle_w=xeon.idle_w_for("cpu:0/dram"), subtract_idle=True)
    # As the Monitor does (issue 20 item 3): nothing known to subtract, net = gross, said so.
    assert net == gross == 50.0 and "no idle baseline" in why


class CounterWriter:
    """Moves a fake package counter along the known power curve, every ~2 ms."""

    def __init__(self, zone, t0: float, period: float) -> None:
        self.zone, self.t0, self.period = zone, t0, period
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            self.zone.set(int(_energy(time.time(), self.t0, self.period) * 1e6))
            self.stop.wait(0.002)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def _fake_rapl(tmp_path: Path):
    fake = FakePowercap(tmp_path / "root", cpu_model="Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz")
    zones = fake.package(0, dram=False, core=False)
    return fake, zones["package"]


def _write_reference(path: Path, t0: float, period: float, seconds: float) -> None:
    rng = np.random.default_rng(7)
    rt = t0 + np.arange(-1.0, seconds, 0.02)
    rw = GAIN * _power(rt, t0, period) + OFFSET + rng.normal(0, 0.5, len(rt))
    path.write_text("timestamp,watts\n" + "".join(
        f"{x:.4f},{w:.4f}\n" for x, w in zip(rt, rw, strict=True)))


def test_calibrate_on_fake_rapl_recovers_gain_and_offset(tmp_path):
    fake, package = _fake_rapl(tmp_path)
    t0, period = time.time(), 0.9
    ref = tmp_path / "ref.csv"
    _write_reference(ref, t0, period, 30.0)
    meter = RaplMeter(sysfs_root=fake.root)
    choice = choose_meter([meter], "cpu")
    assert choice.domains == ("cpu:0/package",)
    with CounterWriter(package, t0, period):
        # The counter follows a sine, not the burn: no step to find a clock shift from,
        # and the reference is on the host's clock (shift 0).
        run = calibrate_meter(choice.meter, choice.device, choice.domains,
                              profiles=load_profiles(),
                              options=CalibrationOptions(idle_s=1.2, load_s=1.2, probe_s=0.3,
                                                         steps_s=0.0, poll_s=0.04),
                              reference=ref, burn=numpy_burn(64),
                              fit=FitOptions(interval_s=0.2, time_shift_s=0.0,
                                             instrument="synthetic reference"))
    fit = run.fit
    assert fit is not None and fit.n >= 8
    assert abs(fit.gain - GAIN) < max(4 * fit.gain_sd, 0.03)
    assert abs(fit.offset_w - OFFSET) < max(4 * fit.offset_sd, 2.0)
    assert run.mode == "measured" and run.base_profile == "generic-intel-xeon"
    assert 40 < run.idle.power_w["cpu:0/package"] < 80  # the curve's mean is 60 W
    assert run.probe.update_period_s is not None and run.probe.update_period_s < 0.1
    p = run.profile
    assert p.calibrated and p.calibration.gain == fit.gain
    assert p.calibration_info.reference == "synthetic reference"
    assert p.rapl_domains == ("package",) and p.energy_counter is True
    assert "generic-intel-xeon" in p.provenance and "measured" not in run.not_calibrated


def _cli(*args, env=None):
    import os

    full = dict(os.environ)
    full.update(env or {})
    return run_cli(*args, cwd=ROOT, env=full)


def test_cli_calibrate_fake_rapl_with_reference(tmp_path):
    fake, package = _fake_rapl(tmp_path)
    t0, period = time.time(), 0.9
    ref = tmp_path / "ref.csv"
    _write_reference(ref, t0, period, 60.0)
    out = tmp_path / "xeon.toml"
    with CounterWriter(package, t0, period):
        result = _cli("calibrate", "--kind", "cpu", "--out", str(out), "--idle-s", "1.2",
                      "--load-s", "1.2", "--probe-s", "0.3", "--poll-s", "0.04",
                      "--interval-s", "0.2", "--time-shift-s", "0", "--steps-s", "0",
                      "--reference", str(ref), "--who", "test lab",
                      "--instrument", "synthetic", "--id", "xeon-gold-6130", "--json",
                      env={"ECNAS_SYSFS_ROOT": str(fake.root)})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["mode"] == "measured" and report["meter"] == "rapl"
    assert abs(report["fit"]["gain"] - GAIN) < max(4 * report["fit"]["gain_sd"], 0.03)
    assert "idle baseline" in result.stderr and "load test" in result.stderr  # progress
    profile = validate_file(out)
    assert profile.id == "xeon-gold-6130" and profile.calibrated
    assert profile.calibration_info.by == "test lab"
    assert math.isclose(profile.calibration.gain, report["fit"]["gain"])


def test_cli_calibrate_estimate_mode_says_what_it_could_not_do(tmp_path):
    root = tmp_path / "root"
    (root / "proc").mkdir(parents=True)
    (root / "proc" / "cpuinfo").write_text("processor\t: 0\nmodel name\t: AMD EPYC 7763 64-Core Processor\n")
    out = tmp_path / "epyc.toml"
    result = _cli("calibrate", "--kind", "cpu", "--out", str(out), "--json",
                  env={"ECNAS_SYSFS_ROOT": str(root)})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["mode"] == "estimate" and report["base_profile"] == "generic-amd-epyc"
    assert any("no energy counter can be read" in n and "no RAPL zones" in n
               for n in report["not_calibrated"])
    profile = validate_file(out)
    assert not profile.calibrated and profile.id == "amd-epyc-7763-64-core-processor"
    assert "estimate mode" in profile.provenance
    again = _cli("calibrate", "--kind", "cpu", "--out", str(out),
                 env={"ECNAS_SYSFS_ROOT": str(root)})
    assert again.returncode == 2 and "exists (use --force" in again.stderr


def test_wall_fit_shares_the_offset_and_pins_the_other_domains():
    from ecnas.calibration.fit import FitResult
    from ecnas.calibration.measured_profile import build_profile, with_fit
    from ecnas.calibration.timeshift import ShiftEstimate
    from ecnas.meters.base import Calibration, DeviceInfo
    from ecnas.profiles import dumps_profile, loads_profile

    dev = DeviceInfo("cpu:0/package", "cpu", "Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz")
    measured = build_profile(device=dev, base=get_profile("generic-intel-xeon"),
                             profile_id="xeon-2s", idle_w=30.0, load_w=120.0, probe=None,
                             energy_counter=True, rapl_domains=("package",), who="lab",
                             provenance="Measured.", date="2026-01-01")
    assert not measured.calibrated and measured.provenance.endswith("reference meter.")
    fit = FitResult(gain=1.15, offset_w=40.0, gain_sd=0.01, offset_sd=1.0, residual_w=2.0,
                    n=50, interval_s=1.0, measured_range_w=(60.0, 240.0))
    cal = with_fit(measured, fit, ShiftEstimate.given(-3.0), reference="WT310E", scope="wall",
                   units=2, other_domains=("cpu:0/dram", "cpu:1/dram"))
    # Two packages fitted together: each carries the gain and half the machine's offset...
    assert cal.calibration_for("cpu:1/package") == Calibration(1.15, 20.0, 1.0, True)
    both = sum(calibrated_energy(cal.calibration_for(d), 100.0, 10.0, idle_w=None,
                                 subtract_idle=False)[0]
               for d in ("cpu:0/package", "cpu:1/package"))
    assert both == pytest.approx(1.15 * 200.0 + 40.0 * 10.0)  # ...so it is added once
    assert not cal.calibration_for("cpu:0/dram").calibrated  # DRAM was not in the fit
    assert "wall-socket meter" in cal.provenance and "20.00 W each" in cal.provenance
    assert "Not calibrated against" not in cal.provenance and "left uncalibrated: dram" in cal.provenance
    assert "-3.000 s given" in cal.calibration_info.method
    again = loads_profile(dumps_profile(cal))
    assert again.calibration == cal.calibration and dict(again.domain_calibrations) == dict(
        cal.domain_calibrations)
