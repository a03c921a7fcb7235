"""ecnas calibrate against a wall meter that logs *while* the run goes on, its clock off the
host's: one step (``ecnas calibrate --reference``) and two steps (``ecnas calibrate fit``).

The fake package counter follows the calibrating process's real CPU time (so the idle, load
and load-step phases show as they would on RAPL) and a second process logs
``gain × package power + offset`` with a shifted clock (``fakes.live_meter``). The machine is
shared, so the load gets whatever CPU share it gets: the power model gives a small idle power
and a large one per busy core, so even a third of a core makes a clear step.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fakes.sysfs import FakePowercap

from ecnas.calibration.procedure import FitOptions, fit_record
from ecnas.calibration.recording import read_record
from ecnas.calibration.reference import ReferenceSeries, read_reference_csv
from ecnas.calibration.timeshift import estimate_time_shift
from ecnas.errors import InputError
from ecnas.profiles import validate_file

ROOT = Path(__file__).resolve().parents[2]
TESTS = Path(__file__).resolve().parents[1]
MAIN = "import sys; from ecnas.cli import main; sys.exit(main(sys.argv[1:]))"
GAIN, OFFSET = 1.15, 12.0
# Short phases (about 10 s in all); 1 s intervals keep the fake counter's timing noise (a few
# ms of staleness, ~0.15 J per interval edge on this busy machine) well under the 2 % bound.
SHORT = ["--idle-s", "2.5", "--probe-s", "0.3", "--load-s", "2.5", "--steps-s", "5",
         "--poll-s", "0.05", "--interval-s", "1"]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(TESTS), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", MAIN, *args], capture_output=True, text=True,
                          cwd=ROOT, env=_env(**env), timeout=120)


def _fake_rapl(tmp_path: Path):
    fake = FakePowercap(tmp_path / "root", cpu_model="Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz")
    return fake, fake.package(0, dram=False, core=False)["package"]


def _live_calibration(tmp_path: Path, shift_s: float, *args: str):
    """Run ``ecnas calibrate`` with a meter logging it live; return (result, log, stderr)."""
    fake, zone = _fake_rapl(tmp_path)
    log = tmp_path / "meter.csv"
    cli = subprocess.Popen(
        [sys.executable, "-c", MAIN, "calibrate", "--kind", "cpu", "--reference", str(log),
         "--instrument", "live test meter", *SHORT, "--json", *args],
        cwd=ROOT, env=_env(ECNAS_SYSFS_ROOT=str(fake.root)), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    meter = subprocess.Popen(
        [sys.executable, "-m", "fakes.live_meter", "--zone", str(zone.path), "--pid",
         str(cli.pid), "--log", str(log), "--gain", str(GAIN), "--offset-w", str(OFFSET),
         "--shift-s", str(shift_s), "--period-s", "0.1", "--idle-w", "5", "--core-w", "100"],
        cwd=TESTS, env=_env())
    try:
        out, err = cli.communicate(timeout=120)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
        meter.wait(timeout=30)  # it ends once the calibrating process is gone
    return cli.returncode, out, err, log


def _assert_recovered(result: dict, clock_ahead_s: float) -> None:
    fit, shift = result["fit"], result["shift"]
    assert fit["gain"] == pytest.approx(GAIN, rel=0.02), result
    assert fit["offset_w"] == pytest.approx(OFFSET, abs=2.0), result
    # The meter's clock runs ahead: its timestamps need the opposite shift.
    assert shift["shift_s"] == pytest.approx(-clock_ahead_s, abs=0.2), result
    assert shift["source"] == "estimated" and 0 < shift["sd_s"] < 0.2


def test_live_meter_one_step_then_fit_later_gives_the_same(tmp_path: Path) -> None:
    out = tmp_path / "xeon.toml"
    code, stdout, stderr, log = _live_calibration(tmp_path, 8.7, "--out", str(out))
    assert code == 0, stderr
    one = json.loads(stdout)
    _assert_recovered(one, 8.7)
    assert "rows so far, format ok" in stderr or "not there yet" in stderr  # checked early
    assert "reference clock 8." in stderr and "ahead of this host" in stderr
    run = Path(one["run"])
    assert run == tmp_path / "xeon.run.json" and run.is_file()
    profile = validate_file(out)
    assert profile.calibrated and profile.calibration.gain == one["fit"]["gain"]
    assert "wall-socket meter that sees the whole machine" in profile.provenance
    assert "estimated from the data" in profile.calibration_info.method

    # The record holds every phase's time series, per domain.
    record = read_record(run)
    assert {s.phase for s in record.samples} == {"idle", "probe", "load", "steps"}
    assert record.domains == ("cpu:0/package",)

    # Two steps: the log exported after the run (the meter kept logging a little longer).
    later = tmp_path / "later.toml"
    fit = _cli("calibrate", "fit", str(run), "--reference", str(log), "--out", str(later),
               "--interval-s", "1", "--instrument", "live test meter", "--json")
    assert fit.returncode == 0, fit.stderr
    two = json.loads(fit.stdout)
    _assert_recovered(two, 8.7)
    # On the same rows the one-step run read, the fit is the very same.
    rows = one["reference"]["rows"]
    same = tmp_path / "same.csv"
    same.write_text("".join(log.read_text().splitlines(keepends=True)[:rows + 1]))
    exact = fit_record(record, same, FitOptions(interval_s=1.0, instrument="live test meter"))
    assert exact.fit.to_dict() == one["fit"] and exact.shift.to_dict() == one["shift"]
    assert exact.profile.calibration == profile.calibration

    # --time-shift-s overrides the estimate, and a clearly different one is pointed out.
    given = fit_record(record, same, FitOptions(interval_s=1.0, time_shift_s=-8.2))
    assert given.shift.source == "given" and given.shift.shift_s == -8.2
    assert any(n.startswith("the data suggest a time shift of -8.") and "-8.200 s given" in n
               for n in given.notes)

    # A flat reference: no step to align, so no shift (the CLI says it in one line, exit 2).
    flat = tmp_path / "flat.csv"
    t0, t1 = record.samples[0].wall_s - 5, record.samples[-1].wall_s + 5
    flat.write_text("timestamp,watts\n" + "".join(
        f"{t:.3f},80.0\n" for t in np.arange(t0, t1, 0.1)))
    with pytest.raises(InputError, match="cannot find the reference's clock shift: the "
                                         "reference follows the measured power at no shift"):
        fit_record(record, flat)


def test_one_step_refusal_keeps_the_run(tmp_path: Path) -> None:
    # The reference never changes while the package steps: the fit refuses, exit 2, and the
    # measurement is kept for a later 'calibrate fit' with a better log or --time-shift-s.
    fake, zone = _fake_rapl(tmp_path)
    log = tmp_path / "meter.csv"
    import time

    now = time.time()
    log.write_text("timestamp,watts\n" + "".join(
        f"{t:.3f},80.0\n" for t in np.arange(now - 5, now + 60, 0.5)))
    out = tmp_path / "p.toml"
    meter = subprocess.Popen(
        [sys.executable, "-m", "fakes.live_meter", "--zone", str(zone.path), "--pid",
         str(os.getpid()), "--log", str(tmp_path / "ignored.csv")], cwd=TESTS, env=_env())
    try:
        result = _cli("calibrate", "--kind", "cpu", "--out", str(out), "--reference", str(log),
                      "--idle-s", "0.6", "--probe-s", "0.1", "--load-s", "0.6", "--steps-s",
                      "1", "--poll-s", "0.05", ECNAS_SYSFS_ROOT=str(fake.root))
    finally:
        meter.terminate()
        meter.wait(timeout=30)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()[-1:]) == 1
    last = result.stderr.strip().splitlines()[-1]
    assert "cannot find the reference's clock shift" in last
    assert f"the run is kept in {tmp_path / 'p.run.json'}" in last
    assert not out.exists() and read_record(tmp_path / "p.run.json").samples


def test_reference_checked_before_measuring(tmp_path: Path) -> None:
    fake, _ = _fake_rapl(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,watts\n1700000000,abc\n")
    r = _cli("calibrate", "--kind", "cpu", "--out", str(tmp_path / "a.toml"), "--reference",
             str(bad), ECNAS_SYSFS_ROOT=str(fake.root))
    assert r.returncode == 2 and "line 2: watts: 'abc' is not a number" in r.stderr
    assert "idle baseline" not in r.stderr  # refused before measuring
    r = _cli("calibrate", "--kind", "cpu", "--out", str(tmp_path / "a.toml"), "--reference",
             str(tmp_path / "nowhere" / "m.csv"), ECNAS_SYSFS_ROOT=str(fake.root))
    assert r.returncode == 2 and "its folder" in r.stderr and "idle baseline" not in r.stderr
    r = _cli("calibrate", "fit", str(bad), "--reference", str(bad), "--out",
             str(tmp_path / "b.toml"))
    assert r.returncode == 2 and "not JSON" in r.stderr
    # The run beside the profile is checked before measuring too, and never replaced unless
    # ecnas wrote it.
    (tmp_path / "c.run.json").write_text("my notes\n")
    r = _cli("calibrate", "--kind", "cpu", "--out", str(tmp_path / "c.toml"),
             ECNAS_SYSFS_ROOT=str(fake.root))
    assert r.returncode == 2 and "c.run.json (the run kept beside the profile) exists" in r.stderr
    r = _cli("calibrate", "--kind", "cpu", "--out", str(tmp_path / "c.toml"), "--force",
             ECNAS_SYSFS_ROOT=str(fake.root))
    assert r.returncode == 2 and "is not a calibration run ecnas wrote" in r.stderr
    assert (tmp_path / "c.run.json").read_text() == "my notes\n"


def test_live_log_with_a_half_written_last_row(tmp_path: Path) -> None:
    log = tmp_path / "m.csv"
    log.write_text("timestamp,watts\n10.0,5\n10.5,6\n11.0,7\n11.5,")
    ref = read_reference_csv(log)
    assert ref.t == (10.0, 10.5, 11.0) and ref.rows == "mean"
    log.write_text("timestamp,watts\n10.0,5\n10.5,6\n11.0,7\n11.5,8")  # complete, no newline
    assert read_reference_csv(log).t[-1] == 11.5


def _steps(t: np.ndarray, edges: list[tuple[float, float]]) -> np.ndarray:
    p = np.full_like(t, 20.0)
    for start, level in edges:
        p[t >= start] = level
    return p


def _synthetic(t: np.ndarray, power: np.ndarray, shift: float, period: float,
               noise: float = 0.5) -> tuple[tuple, ReferenceSeries]:
    rng = np.random.default_rng(3)
    e = np.concatenate([[0.0], np.cumsum(0.5 * (power[1:] + power[:-1]) * np.diff(t))])
    rows = np.arange(t[0] - 3, t[-1] + 3, period)
    re = np.interp(rows, t, e, left=np.nan, right=np.nan)
    ok = np.isfinite(re)
    rows, re = rows[ok], re[ok]
    watts = GAIN * np.diff(re) / period + OFFSET + rng.normal(0, noise, len(rows) - 1)
    ref = ReferenceSeries(tuple(rows[1:] + shift), tuple(watts), "synthetic")
    return (t, e), ref


def test_shift_estimate_and_its_refusals() -> None:
    t = 1.8e9 + np.arange(0, 40, 0.1)
    stepped = _steps(t - t[0], [(8, 70), (12, 40), (20, 90), (23, 20), (30, 55)])
    for clock_ahead, period in ((4.4, 0.5), (-9.9, 1.0), (0.0, 0.1)):
        measured, ref = _synthetic(t, stepped, clock_ahead, period)
        est = estimate_time_shift(measured, ref)
        assert est.shift_s == pytest.approx(-clock_ahead, abs=0.05) and est.sd_s < 0.1
        assert est.correlation > 0.99
    # Rows read as instant samples: a meter sampling the power at its timestamps.
    rows = np.arange(t[0] - 3, t[-1] + 3, 0.2)
    sampled = GAIN * np.interp(rows, t, stepped) + OFFSET
    ref = ReferenceSeries(tuple(rows - 2.5), tuple(sampled), "sampled", rows="instant")
    measured = (t, np.concatenate([[0.0], np.cumsum(0.5 * (stepped[1:] + stepped[:-1])
                                                    * np.diff(t))]))
    est = estimate_time_shift(measured, ref)
    assert est.shift_s == pytest.approx(2.5, abs=0.05)
    # A load that repeats every 4 s fits at several shifts: refused, with both named.
    periodic = np.where(((t - t[0]) // 2) % 2 == 0, 20.0, 80.0)
    measured, ref = _synthetic(t, periodic, 4.4, 0.5)
    with pytest.raises(InputError, match="two shifts fit about equally well"):
        estimate_time_shift(measured, ref)
    # A constant measured power has no step at all.
    measured, ref = _synthetic(t, np.full_like(t, 50.0), 4.4, 0.5)
    with pytest.raises(InputError, match="measured power is constant"):
        estimate_time_shift(measured, ref)
    # A reference that follows something else.
    measured, _ = _synthetic(t, stepped, 0.0, 0.5)
    rng = np.random.default_rng(9)
    noise = ReferenceSeries(tuple(t[::5]), tuple(50 + rng.normal(0, 10, len(t[::5]))), "noise")
    with pytest.raises(InputError, match="follows the measured power at no shift"):
        estimate_time_shift(measured, noise)
