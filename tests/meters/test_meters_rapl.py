"""RAPL meter on fake powercap trees written to disk (real files, real reads, real threads)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fakes import children
from fakes.env import isolated_cache  # noqa: F401  (autouse: a private ECNAS_CACHE_DIR)
from fakes.sysfs import FakePowercap

from ecnas.meters import Status
from ecnas.meters.rapl import LINK_CHECK_S, RaplMeter
from ecnas.monitor import Monitor

J = 1_000_000  # µJ per joule


def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.0005)


@pytest.fixture
def tree(tmp_path: Path) -> FakePowercap:
    return FakePowercap(tmp_path)


def window(meter: RaplMeter, step: Callable[[], None]):
    with Monitor([meter], profile_paths=()) as mon:
        mon.begin("w")
        step()
        return mon.end("w")


def test_two_sockets_package_and_dram_never_core(tree: FakePowercap) -> None:
    s0 = tree.package(0, dram=True, core=True, uncore=True)
    s1 = tree.package(1, dram=True, core=True)
    for z in (*s0.values(), *s1.values()):
        z.set(5 * J)
    meter = RaplMeter(tree.root)
    assert meter.domains() == ("cpu:0/package", "cpu:0/dram", "cpu:1/package", "cpu:1/dram")

    def work() -> None:
        s0["package"].set(25 * J)  # +20 J
        s0["core"].set(20 * J)  # inside the package: must not be added
        s0["uncore"].set(9 * J)
        s0["dram"].set(8 * J)  # +3 J
        s1["package"].set(15 * J)  # +10 J
        s1["dram"].set(6 * J)  # +1 J

    rep = window(meter, work)
    got = {k: round(d.raw_joules, 6) for k, d in rep.domains.items()}
    assert got == {"cpu:0/package": 20.0, "cpu:0/dram": 3.0, "cpu:1/package": 10.0,
                   "cpu:1/dram": 1.0}
    assert rep.energy_j == pytest.approx(34.0)
    assert rep.component_j("dram") == pytest.approx(4.0)
    assert rep.component_j("gpu") != rep.component_j("gpu")  # NaN: nothing metered
    assert not rep.estimated
    assert all(d.status == "measured" and d.meter == "rapl" for d in rep.domains.values())
    status = meter.status()
    assert status.status is Status.MEASURED
    assert "inside the package" in status.reason


def test_mmio_duplicate_read_once(tree: FakePowercap) -> None:
    pkg = tree.package(0, dram=False, core=False)["package"]
    mmio = tree.mmio_duplicate(0)
    meter = RaplMeter(tree.root)
    assert meter.domains() == ("cpu:0/package",)

    def work() -> None:
        pkg.set(7 * J)
        mmio.set(7 * J)

    rep = window(meter, work)
    assert rep.energy_j == pytest.approx(7.0)
    assert "duplicates cpu:0/package" in meter.status().reason


def test_mmio_only_machine_is_read(tree: FakePowercap) -> None:
    mmio = tree.mmio_duplicate(0)
    meter = RaplMeter(tree.root)
    assert meter.domains() == ("cpu:0/package",)
    rep = window(meter, lambda: mmio.set(2 * J))
    assert rep.energy_j == pytest.approx(2.0)


def test_amd_naming_multi_die_and_low_core(tmp_path: Path) -> None:
    tree = FakePowercap(tmp_path, cpu_model="AMD EPYC 7763 64-Core Processor")
    d0 = tree.package(0, dram=False, core=True, die=0, zone_index=0)
    d1 = tree.package(0, dram=False, core=False, die=1, zone_index=1)
    meter = RaplMeter(tree.root)
    assert meter.domains() == ("cpu:0/package",)

    def work() -> None:
        d0["package"].set(40 * J)
        d0["core"].set(1)  # AMD's core zone reads implausibly low; never used
        d1["package"].set(30 * J)

    rep = window(meter, work)
    assert rep.domains["cpu:0/package"].raw_joules == pytest.approx(70.0)
    devices = meter.status().devices
    assert [d.name for d in devices] == ["AMD EPYC 7763 64-Core Processor"]


def test_psys_only_on_request_and_never_double_counted(tree: FakePowercap) -> None:
    s0 = tree.package(0, dram=True, core=False)
    psys = tree.psys(1)

    def work() -> None:
        s0["package"].set(10 * J)
        s0["dram"].set(2 * J)
        psys.set(15 * J)

    assert "cpu:0/psys" not in RaplMeter(tree.root).domains()
    rep = window(RaplMeter(tree.root, include_psys=True), work)
    assert set(rep.domains) == {"cpu:0/package", "cpu:0/dram", "cpu:0/psys"}
    assert rep.domains["cpu:0/psys"].component == "platform"
    assert rep.energy_j == pytest.approx(15.0)  # psys contains package + DRAM


def test_one_wrap_in_a_window(tree: FakePowercap) -> None:
    pkg = tree.package(0, dram=False, core=False)["package"]
    rng = pkg.range_uj
    pkg.set(rng - 1 * J)
    rep = window(RaplMeter(tree.root), lambda: pkg.set(2 * J))
    assert rep.energy_j == pytest.approx(3.0, abs=1e-6)


def test_three_wraps_in_one_window_are_all_counted(tree: FakePowercap) -> None:
    # A 1 J counter and 50 W of plausible power: the wrap period is 20 ms, so the guard
    # thread reads every 5 ms. Each step moves the counter 0.4 J and waits for one guard read.
    pkg = tree.package(0, dram=False, core=False, range_uj=1 * J)["package"]
    meter = RaplMeter(tree.root, max_power_w=50.0)
    assert meter.guard_interval_s() == pytest.approx(0.005)
    true_uj = 0

    def work() -> None:
        nonlocal true_uj
        for _ in range(8):
            true_uj += 400_000
            pkg.set(true_uj % pkg.range_uj)
            seen = meter.guard_reads
            wait_for(lambda s=seen: meter.guard_reads > s)

    rep = window(meter, work)
    assert true_uj == 3_200_000
    assert rep.energy_j == pytest.approx(3.2, abs=1e-9)
    assert meter.counters()[0]["wraps"] == 3


def test_without_the_guard_a_multi_wrap_window_would_be_wrong(tree: FakePowercap) -> None:
    # The same counter read only at the window edges: two of three wraps are invisible.
    pkg = tree.package(0, dram=False, core=False, range_uj=1 * J)["package"]
    meter = RaplMeter(tree.root, max_power_w=50.0)
    r0 = meter.read()
    pkg.set(200_000)  # after 3.2 J: three wraps, but one read sees only "went down once"
    r1 = meter.read()
    assert r1.energy_j["cpu:0/package"] - r0.energy_j["cpu:0/package"] != pytest.approx(3.2)


def test_counter_reset_counts_on_from_zero_and_warns(tree: FakePowercap) -> None:
    pkg = tree.package(0, dram=False, core=False)["package"]
    pkg.set(5 * J)
    meter = RaplMeter(tree.root)
    with Monitor([meter]) as mon:
        mon.begin("w")
        pkg.set(7 * J)
        mon.peek("w")  # the meter sees 7 J
        pkg.set(1000)  # reset: a wrap would mean ~262 kJ in milliseconds
        rep = mon.end("w")
    assert rep.energy_j == pytest.approx(2.001, abs=1e-9)
    assert any("counter reset" in w for w in rep.warnings)
    assert meter.counters()[0]["resets"] == 1


def test_vanishing_counter_keeps_what_was_read_and_says_so(tree: FakePowercap) -> None:
    s0 = tree.package(0, dram=True, core=False)
    meter = RaplMeter(tree.root)
    with Monitor([meter]) as mon:
        mon.begin("w")
        s0["dram"].set(4 * J)
        s0["package"].set(9 * J)
        mon.peek("w")
        s0["dram"].vanish()
        s0["package"].set(12 * J)
        # A regular file that stands still is checked for its link at most every
        # LINK_CHECK_S (a live counter moves every millisecond; sysfs says ENODEV at once).
        time.sleep(2 * LINK_CHECK_S)
        rep = mon.end("w")
    assert rep.domains["cpu:0/dram"].raw_joules == pytest.approx(4.0)
    assert rep.domains["cpu:0/package"].raw_joules == pytest.approx(12.0)
    assert any("cpu:0/dram: counter stopped reading" in w for w in rep.warnings)


def test_no_zones_is_unavailable_with_a_fix(tmp_path: Path) -> None:
    status = RaplMeter(tmp_path).status()
    assert status.status is Status.UNAVAILABLE
    assert "no RAPL zones" in status.reason and "ECNAS_SYSFS_ROOT" in status.fix


def test_env_var_selects_the_root(tree: FakePowercap, monkeypatch: pytest.MonkeyPatch) -> None:
    tree.package(0, dram=False, core=False)
    monkeypatch.setenv("ECNAS_SYSFS_ROOT", str(tree.root))
    assert RaplMeter().domains() == ("cpu:0/package",)


@pytest.fixture
def world_readable_tree() -> Iterator[FakePowercap]:
    # pytest's tmp_path lives under a 0700 directory; the unprivileged prober must traverse.
    base = Path(tempfile.mkdtemp(prefix="ecnas-rapl-eacces-"))
    base.chmod(0o755)
    try:
        yield FakePowercap(base)
    finally:
        shutil.rmtree(base)


def test_permission_denied_is_unavailable_with_the_exact_command(
        world_readable_tree: FakePowercap) -> None:
    tree = world_readable_tree
    zones = tree.package(0, dram=True, core=False)
    for z in zones.values():
        if os.getuid() == 0:
            z.root_only()  # 0400 as the kernel sets it; root ignores it, nobody does not
        else:
            z.energy_file.chmod(0)
    out = subprocess.run([sys.executable, children.PATH, "rapl_probe", str(tree.root)], capture_output=True,
                         text=True, timeout=60, check=True)
    status = json.loads(out.stdout)
    assert status["status"] == "unavailable"
    assert "permission denied" in status["reason"]
    klass = tree.klass
    assert status["fix"] == (f"sudo chmod a+r {klass / 'intel-rapl:0' / 'energy_uj'} "
                             f"{klass / 'intel-rapl:0:0' / 'energy_uj'}")
    assert "CVE-2020-8694" in status["reason"]


@pytest.mark.parametrize("text", ["-5", "abc", "99999999999999999999999", ""])
def test_a_counter_reading_garbage_is_distrusted_and_estimated(tree: FakePowercap, text: str
                                                               ) -> None:
    """Issue 36 point 14: a counter reading -5 (or beyond its range, or not a number) is
    never 0 J measured: the meter is unavailable, naming the file and the value, and
    ``ecnas measure`` estimates, saying why."""
    zones = tree.package(0, dram=False, core=False)
    zones["package"].energy_file.write_text(text + "\n")
    status = RaplMeter(tree.root).status()
    assert status.status is Status.UNAVAILABLE
    assert "untrusted RAPL counter" in status.reason and "energy_uj" in status.reason
    if text == "-5":
        assert "reads -5, outside the counter's range" in status.reason
    env = {**os.environ, "ECNAS_SYSFS_ROOT": str(tree.root)}
    before = zones["package"].energy_file.read_bytes()
    out = subprocess.run([sys.executable, "-m", "ecnas", "measure", "--json", "--", "true"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    rep = json.loads(out.stdout)
    assert rep["estimated"] and "rapl" not in rep["meters"], rep
    assert not any(k.endswith("/package") for k in rep["domains"])
    assert any("RAPL unavailable: unreadable or untrusted RAPL counter" in r
               for r in rep["reasons"]), rep["reasons"]
    assert zones["package"].energy_file.read_bytes() == before
