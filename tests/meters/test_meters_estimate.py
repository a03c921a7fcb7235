"""The estimate meter and the fallback path on a machine without readable counters."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fakes import children
from fakes.env import isolated_cache  # noqa: F401  (autouse: a private ECNAS_CACHE_DIR)
from fakes.sysfs import FakePowercap

from ecnas.meters import Status, default_meters, discover
from ecnas.meters.estimate import EstimateMeter
from ecnas.monitor import Monitor
from ecnas.monitor.profile_cache import bind_profiles
from ecnas.profiles import get_profile


@pytest.fixture
def no_counters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "empty-root"
    root.mkdir()
    monkeypatch.setenv("ECNAS_SYSFS_ROOT", str(root))
    return root


def test_fallback_here_is_the_estimate_with_the_reason(no_counters: Path) -> None:
    meters = default_meters()
    names = [m.name for m in meters]
    assert "estimate" in names and "rapl" not in names
    with Monitor(meters) as mon:
        mon.begin("w")
        rep = mon.end("w")
    assert rep.estimated
    reason = " ".join(rep.reasons)
    assert "RAPL unavailable: no RAPL zones" in reason
    assert "CPU time" in reason
    d = rep.domains["cpu:estimate"]
    assert d.status == "estimated" and d.meter == "estimate" and d.component == "cpu"
    statuses = {s.meter: s for s in discover()}
    assert statuses["rapl"].status is Status.UNAVAILABLE
    assert statuses["estimate"].status is Status.ESTIMATED


def test_child_cpu_time_times_per_core_power(no_counters: Path) -> None:
    meter = EstimateMeter(per_core_w=10.0)
    before = os.times()
    with Monitor([meter]) as mon:
        mon.begin("w")
        subprocess.run([sys.executable, children.PATH, "busy", "0.3"], check=True)
        rep = mon.end("w")
    after = os.times()
    child_s = (after.children_user + after.children_system
               - before.children_user - before.children_system)
    own_s = after.user + after.system - before.user - before.system
    assert child_s >= 0.3
    assert rep.energy_j == pytest.approx(10.0 * (child_s + own_s), abs=10.0 * 0.03)
    assert rep.estimated and "10 W per core as given" in rep.reasons[0]


def test_live_descendants_count_before_they_exit() -> None:
    meter = EstimateMeter(per_core_w=1.0)
    start = meter.cpu_seconds()
    proc = subprocess.Popen([sys.executable, children.PATH, "busy", "30"])
    try:
        deadline = time.monotonic() + 20
        while meter.cpu_seconds() - start < 0.3:
            assert time.monotonic() < deadline, "child CPU time never showed up"
            time.sleep(0.02)
        assert proc.poll() is None  # counted while still running
    finally:
        proc.kill()
        proc.wait()


def test_in_process_work_counts(no_counters: Path) -> None:
    meter = EstimateMeter(per_core_w=5.0)
    with Monitor([meter]) as mon:
        mon.begin("w")
        t = time.process_time()
        while time.process_time() - t < 0.2:
            pass
        rep = mon.end("w")
    assert rep.energy_j == pytest.approx(5.0 * 0.2, abs=5.0 * 0.05)


def test_per_core_power_comes_from_the_matched_profile(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    tree = FakePowercap(tmp_path, cpu_model="Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz")
    monkeypatch.setenv("ECNAS_SYSFS_ROOT", str(tree.root))
    # Readers never look profiles up themselves: the Monitor layer binds them (as a Monitor,
    # ``ecnas hardware`` and bind_profiles do).
    (meter,) = bind_profiles([EstimateMeter()])
    watts, source, profile_id = meter.per_core()
    expected = get_profile("generic-intel-xeon")
    assert profile_id == "generic-intel-xeon"
    assert expected is not None and watts == expected.per_core_w
    assert "from profile generic-intel-xeon" in source


def test_refused_when_profiles_cannot_load(no_counters: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # issue 19 point 7: a profile path that cannot load is refused, naming it, rather than
    # estimating with the generic default (which silently changed the figures)
    from ecnas.errors import InputError

    monkeypatch.setenv("ECNAS_PROFILE_PATH", str(tmp_path / "missing-profiles"))
    with pytest.raises(InputError, match="missing-profiles"):
        bind_profiles([EstimateMeter()])


def test_short_window_is_flagged() -> None:
    with Monitor([EstimateMeter(per_core_w=1.0)]) as mon:
        mon.begin("w")
        rep = mon.end("w")
    assert rep.domains["cpu:estimate"].short_window
    assert any("shorter than estimate's update period" in w for w in rep.warnings)


def test_another_process_by_pid() -> None:
    proc = subprocess.Popen([sys.executable, children.PATH, "busy", "30"])
    try:
        meter = EstimateMeter(pid=proc.pid, per_core_w=2.0)
        first = meter.read().energy_j["cpu:estimate"]
        deadline = time.monotonic() + 20
        while meter.read().energy_j["cpu:estimate"] - first < 2.0 * 0.2:
            assert time.monotonic() < deadline, "the other process's CPU time never grew"
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()


DOCS_DECORATOR = '''
from ecnas import measure

step = measure("step")

@step
def train_step(x):
    return sum(i * x for i in range(100_000))

train_step(3)
print(step.report.energy_j, train_step.energy_report.mean_power_w)
print(step.report.warnings)
'''


def test_docs_decorator_example_says_its_window_is_below_the_resolution(no_counters: Path,
                                                                         tmp_path: Path) -> None:
    """Issue 37.6: docs/meters.md's decorator example, as a user runs it with no counter
    readable: a handful of ticks, and the report says how coarse that is (never a silent 0.0)."""
    env = dict(os.environ, ECNAS_SYSFS_ROOT=str(no_counters),
               PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                           os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", DOCS_DECORATOR], capture_output=True, text=True,
                         env=env, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    energy, warnings = out.stdout.splitlines()[0], out.stdout.splitlines()[1]
    assert "step(s) of estimate's resolution" in warnings and "below ten" in warnings
    assert float(energy.split()[0]) >= 0.0


def test_resolution_is_a_tick_times_the_per_core_power_and_long_windows_pass(
        no_counters: Path) -> None:
    meter = EstimateMeter(per_core_w=3.5)
    tick = 1.0 / os.sysconf("SC_CLK_TCK")
    assert meter.resolution_j("cpu:estimate") == pytest.approx(tick * 3.5)
    with Monitor([meter]) as mon:
        mon.begin("idle")
        time.sleep(0.07)  # sleeps: no CPU time, 0 J, and a warning that says why
        idle = mon.end("idle")
        mon.begin("busy")
        t0 = time.process_time()
        while time.process_time() - t0 < 0.6:  # 60 ticks of CPU time: > ten steps
            sum(range(1000))
        busy = mon.end("busy")
    assert idle.energy_j < meter.resolution_j("cpu:estimate") * 10
    assert any("0 step(s) of estimate's resolution" in w or "1 step(s)" in w
               for w in idle.warnings), idle.warnings
    assert not any("resolution" in w for w in busy.warnings), busy.warnings
    assert any("under load it grows" in r for r in busy.reasons)
