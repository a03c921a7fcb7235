"""Monitor windows, measure(), calibration, idle subtraction, plugins and import weight."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from importlib.util import find_spec
from pathlib import Path

import pytest
from fakes.env import isolated_cache  # noqa: F401  (autouse: a private ECNAS_CACHE_DIR)
from fakes.sysfs import FakePowercap

import ecnas
from ecnas.errors import InputError
from ecnas.meters import available_meters
from ecnas.meters.rapl import RaplMeter
from ecnas.monitor import EnergyReport, Monitor, measure, sync_cuda_devices

J = 1_000_000

LAB_PROFILE = """
schema_version = 1
id = "lab-xeon-6130"
kind = "cpu"
name = "Lab Xeon Gold 6130"
provenance = "test profile"

[match]
cpu_model_patterns = ["Xeon\\\\(R\\\\) Gold 6130"]

[power]
tdp_w = 125.0
idle_w = 20.0
max_w = 140.0
per_core_w = 4.0

[calibration]
status = "calibrated"
gain = 1.1
offset_w = 2.0
reference = "Yokogawa WT310E wall meter"
date = "2026-11-01"
"""


@pytest.fixture
def pkg(tmp_path: Path):
    tree = FakePowercap(tmp_path / "root")
    zone = tree.package(0, dram=False, core=False)["package"]
    zone.value = 0  # type: ignore[attr-defined]

    def add(joules: float) -> None:
        zone.value += int(joules * J)  # type: ignore[attr-defined]
        zone.set(zone.value)  # type: ignore[attr-defined]

    return tree, add


def test_windows_nest_and_overlap(pkg) -> None:
    tree, add = pkg
    with Monitor([RaplMeter(tree.root)]) as mon:
        mon.begin("outer")
        add(1)
        mon.begin("a")
        add(2)
        mon.begin("b")  # overlaps a, which ends before b
        add(4)
        a = mon.end("a")
        add(8)
        so_far = mon.peek("outer")  # stays open
        add(16)
        b = mon.end("b")
        outer = mon.end("outer")
        assert mon.open_windows() == ()
    assert a.energy_j == pytest.approx(6)
    assert b.energy_j == pytest.approx(28)
    assert so_far.energy_j == pytest.approx(15)
    assert outer.energy_j == pytest.approx(31)
    assert outer.duration_s >= b.duration_s > 0
    assert outer.meters == ("rapl",)


def test_window_errors_are_input_errors(pkg) -> None:
    tree, _ = pkg
    with Monitor([RaplMeter(tree.root)]) as mon:
        mon.begin("x")
        with pytest.raises(InputError, match="'x' is already open"):
            mon.begin("x")
        with pytest.raises(InputError, match="'y' is not open"):
            mon.end("y")


def test_measure_context_manager_and_decorator(pkg) -> None:
    tree, add = pkg
    with measure("block", meters=[RaplMeter(tree.root)]) as m:
        add(3)
    assert isinstance(m.report, EnergyReport)
    assert m.report.name == "block" and m.report.energy_j == pytest.approx(3)

    step = measure("step", meters=[RaplMeter(tree.root)])

    @step
    def work(x: float) -> float:
        add(x)
        return x * 2

    assert work(5) == 10
    assert work.energy_report.energy_j == pytest.approx(5)  # type: ignore[attr-defined]
    assert step.report is work.energy_report  # type: ignore[attr-defined]


def test_measure_reports_even_when_the_block_raises(pkg) -> None:
    tree, add = pkg
    m = measure("boom", meters=[RaplMeter(tree.root)])
    with pytest.raises(ZeroDivisionError), m:
        add(2)
        _ = 1 / 0
    assert m.report is not None and m.report.energy_j == pytest.approx(2)


def test_calibration_and_idle_subtraction_from_a_lab_profile(pkg, tmp_path: Path) -> None:
    tree, add = pkg
    profile = tmp_path / "lab.toml"
    profile.write_text(LAB_PROFILE)
    with Monitor([RaplMeter(tree.root)], profile_paths=[profile], idle_subtract=True) as mon:
        mon.begin("w")
        add(100)
        rep = mon.end("w")
    d = rep.domains["cpu:0/package"]
    assert d.profile_id == "lab-xeon-6130" and d.calibrated
    assert d.raw_joules == pytest.approx(100)
    assert d.joules == pytest.approx(1.1 * 100 + 2.0 * rep.duration_s)
    assert d.net_joules == pytest.approx(d.joules - 20.0 * rep.duration_s)
    assert rep.net_energy_j == pytest.approx(d.net_joules)
    out = json.loads(rep.to_json())
    assert out["domain_details"]["cpu:0/package"]["raw_joules"] == pytest.approx(100)
    assert out["domains"] == {"cpu:0/package": pytest.approx(d.joules)}


def test_uncalibrated_profile_leaves_joules_raw(pkg) -> None:
    tree, add = pkg  # the fake CPU is a Xeon: the packaged generic-intel-xeon matches
    with measure(meters=[RaplMeter(tree.root)]) as m:
        add(7)
    d = m.report.domains["cpu:0/package"]
    assert d.profile_id == "generic-intel-xeon" and not d.calibrated
    assert d.joules == d.raw_joules == pytest.approx(7)
    assert d.net_joules is None and m.report.net_energy_j is None


def test_report_fields_and_json(pkg) -> None:
    tree, add = pkg
    with measure("r", meters=[RaplMeter(tree.root)]) as m:
        add(4)
    rep = m.report
    assert rep.mean_power_w == pytest.approx(rep.energy_j / rep.duration_s)
    assert math.isnan(rep.component_j("gpu"))
    data = json.loads(rep.to_json())
    for key in ("energy_j", "duration_s", "domains", "estimated", "reasons", "meters",
                "warnings", "mean_power_w", "components"):
        assert key in data
    assert data["components"]["gpu"] is None  # NaN written as null
    with pytest.raises(AttributeError):
        rep.energy_j = 1.0  # type: ignore[misc]  # frozen


def test_cuda_sync_is_skipped_without_initialized_cuda() -> None:
    # torch (CPU build) may or may not be imported by other tests; CUDA is never initialized.
    assert sync_cuda_devices() is False


def test_import_is_light_and_measure_never_imports_torch() -> None:
    code = textwrap.dedent("""
        import sys, json
        import ecnas.meters
        light = sorted(m for m in ("torch", "numpy", "pandas", "dask", "scipy", "pynvml",
                                   "psutil") if m in sys.modules)
        from ecnas import measure
        with measure() as m:
            pass
        print(json.dumps({"light": light, "torch": "torch" in sys.modules,
                          "estimated": m.report.estimated}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    data = json.loads(out.stdout)
    assert data["light"] == [] and data["torch"] is False


def test_lazy_top_level_exports() -> None:
    assert ecnas.measure is measure and ecnas.Monitor is Monitor
    assert ecnas.EnergyReport is EnergyReport


PLUGIN = """
import time
from ecnas.meters.base import Meter, MeterStatus, Reading, Status

class ConstMeter(Meter):
    name = "const"
    def status(self):
        return MeterStatus(self.name, Status.MEASURED, domains=("gpu:9",), reason="wall meter")
    def domains(self):
        return ("gpu:9",)
    def read(self):
        return Reading(time.monotonic(), {"gpu:9": 42.0})
"""


def test_third_party_meter_through_entry_points(tmp_path: Path) -> None:
    site = tmp_path / "site"
    dist = site / "ecnas_const_meter-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ecnas-const-meter\n"
                                   "Version: 1.0\n")
    (dist / "entry_points.txt").write_text("[ecnas.meters]\nconst = constplug:ConstMeter\n"
                                           "broken = constplug:Missing\n")
    (site / "constplug.py").write_text(PLUGIN)
    code = textwrap.dedent("""
        import json
        from ecnas.meters import available_meters, default_meters, discover
        known = available_meters()
        print(json.dumps({
            "origin": known["const"].origin,
            "defaults": [m.name for m in default_meters()],
            "discover": {s.meter: [s.status.value, s.reason] for s in discover()},
        }))
    """)
    env = dict(os.environ, PYTHONPATH=str(site), ECNAS_SYSFS_ROOT=str(tmp_path / "none"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True, timeout=60)
    data = json.loads(out.stdout)
    assert data["origin"] == "entry point of ecnas-const-meter"
    assert "const" in data["defaults"]
    assert data["discover"]["const"] == ["measured", "wall meter"]
    status, reason = data["discover"]["broken"]
    assert status == "unavailable" and "AttributeError" in reason


def test_pyrapl_registered_only_when_installed() -> None:
    installed = find_spec("pyRAPL") is not None
    assert ("pyrapl" in available_meters()) == installed
    if not installed:
        from ecnas.meters import create_meters

        with pytest.raises(InputError, match=r"pip install 'ecnas\[pyrapl\]'"):
            create_meters(["pyrapl"])


def test_without_profiles_readings_are_uncalibrated_and_say_so(pkg) -> None:
    tree, add = pkg
    with measure(meters=[RaplMeter(tree.root)], use_profiles=False) as m:
        add(5)
    d = m.report.domains["cpu:0/package"]
    assert d.profile_id is None and d.joules == pytest.approx(5)
    assert any("hardware profiles not used" in w for w in m.report.warnings)


def test_report_survives_pickle_for_dask_workers(pkg) -> None:
    import pickle

    tree, add = pkg
    with measure(meters=[RaplMeter(tree.root)]) as m:
        add(1)
    # Dask ships results with pickle.dumps; a mappingproxy inside would make this raise.
    # The domains (built when first read) arrive as the plain dict they stand for.
    back = pickle.loads(pickle.dumps(m.report))
    assert type(back.domains) is dict
    assert back.domains == dict(m.report.domains) and back == m.report
    assert back.domains["cpu:0/package"].joules == pytest.approx(1)


def test_a_domain_read_by_two_meters_is_counted_once(pkg) -> None:
    tree, add = pkg
    with measure(meters=[RaplMeter(tree.root), RaplMeter(tree.root)]) as m:
        add(3)
    assert m.report.energy_j == pytest.approx(3)
    assert any("counted once" in w for w in m.report.warnings)


CACHED_RUN = textwrap.dedent("""
    import json, sys
    from ecnas import measure
    from ecnas.meters.rapl import RaplMeter
    with measure(meters=[RaplMeter(sys.argv[1])]) as m:
        pass
    print(json.dumps({"profiles_imported": "ecnas.profiles" in sys.modules,
                      "profile": m.report.domains["cpu:0/package"].profile_id}))
""")


def test_profile_matches_are_cached_between_processes(pkg) -> None:
    tree, _ = pkg
    cache = Path(os.environ["ECNAS_CACHE_DIR"])  # the private one from fakes.env
    runs = [json.loads(subprocess.run([sys.executable, "-c", CACHED_RUN, str(tree.root)],
                                      capture_output=True, text=True, check=True,
                                      timeout=60).stdout) for _ in range(2)]
    assert runs[0] == {"profiles_imported": True, "profile": "generic-intel-xeon"}
    assert runs[1] == {"profiles_imported": False, "profile": "generic-intel-xeon"}
    assert len(list(cache.glob("profiles-*.json"))) == 1


def test_a_changed_profile_file_is_a_cache_miss(pkg, tmp_path: Path) -> None:
    tree, add = pkg
    profile = tmp_path / "lab.toml"
    profile.write_text(LAB_PROFILE)
    gains = []
    for text in (LAB_PROFILE, LAB_PROFILE.replace("gain = 1.1", "gain = 1.25")):
        profile.write_text(text)
        with measure(meters=[RaplMeter(tree.root)], profile_paths=[profile]) as m:
            add(10)
        d = m.report.domains["cpu:0/package"]
        gains.append((d.joules - 2.0 * m.report.duration_s) / d.raw_joules)
    assert gains == [pytest.approx(1.1), pytest.approx(1.25)]


def test_unwritable_cache_is_reported_not_fatal(pkg, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    tree, add = pkg
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("ECNAS_CACHE_DIR", str(blocker / "cache"))
    with measure(meters=[RaplMeter(tree.root)]) as m:
        add(1)
    assert m.report.domains["cpu:0/package"].profile_id == "generic-intel-xeon"
    assert any("profile cache not written" in w for w in m.report.warnings)


def test_a_monitor_can_be_restarted(pkg) -> None:
    tree, add = pkg
    mon = Monitor([RaplMeter(tree.root), RaplMeter(tree.root)])
    for _ in range(2):
        with mon:
            mon.begin("w")
            add(2)
            rep = mon.end("w")
        assert rep.energy_j == pytest.approx(2)
        counted_once = [w for w in rep.warnings if "counted once" in w]
        assert len(counted_once) == 1  # not accumulated across starts
        assert len(mon.statuses()) == 2


def test_reports_are_immutable_and_pickle_as_plain_data(tmp_path: Path) -> None:
    import dataclasses
    import pickle

    from ecnas.monitor.report import DomainEnergy

    args = ("cpu:0/package", "cpu", 2.5, 2.5, "rapl", "measured", "", "generic-cpu", False,
            None, False)
    d = DomainEnergy(*args)
    assert tuple(d.to_dict().values()) == args and not d.estimated
    with pytest.raises(AttributeError):
        d.joules = 0.0  # type: ignore[misc]
    tree = FakePowercap(tmp_path / "root")
    tree.package(0, dram=False, core=False)["package"].set(3 * J)
    with Monitor([RaplMeter(tree.root)], use_profiles=False) as mon:
        mon.begin("w")
        rep = mon.end("w")
    with pytest.raises(dataclasses.FrozenInstanceError):
        rep.energy_j = 0.0  # type: ignore[misc]
    back = pickle.loads(pickle.dumps(rep))
    assert type(back.domains) is dict and back == rep and back.to_dict() == rep.to_dict()


@pytest.mark.parametrize("pause_s", [0.0, 0.003], ids=["short", "long"])
def test_plain_report_matches_the_general_path(tmp_path: Path, pause_s: float) -> None:
    """The report of an uncalibrated Monitor skips the calibration (joules are raw; domains
    are built when first read); it must say exactly what the calibrating branch says."""
    import time

    tree = FakePowercap(tmp_path / "root")
    zones = [tree.package(s, dram=True, core=False) for s in (0, 1)]
    with Monitor([RaplMeter(tree.root)], use_profiles=False) as mon:
        s0 = mon.snapshot()
        for k, z in enumerate(zones):
            z["package"].set((k + 2) * J)
            z["dram"].set((k + 1) * J // 2)
        time.sleep(pause_s)  # RAPL's update period is 1 ms: a short window or a long one
        s1 = mon.snapshot()
        if pause_s == 0.0:
            # a loaded machine can stretch the writes above past 1 ms: pin the edges' times
            # so the window is short as intended (the report reads only these timestamps)
            s1 = s1._replace(timestamp=s0.timestamp + 2e-4, readings=tuple(
                r._replace(timestamp=r0.timestamp + 2e-4)
                for r, r0 in zip(s1.readings, s0.readings, strict=True)))
        fast = mon.report("w", s0, s1)
        session = mon._session
        assert session is not None and session.plain
        session.plain = False  # the general path, for the same two snapshots
        general = mon.report("w", s0, s1)
    assert dict(fast.domains) == dict(general.domains) and fast == general
    assert fast.energy_j == pytest.approx(2 + 3 + 0.5 + 1.0)
    short = pause_s == 0.0
    assert all(d.short_window is short for d in fast.domains.values())
    # a short window says so once for the meter, naming its four domains
    assert sum("shorter than rapl's update period" in w for w in fast.warnings) == int(short)


def test_plain_report_matches_the_general_path_with_conflicts_and_an_estimate(
        tmp_path: Path) -> None:
    from ecnas.meters.estimate import EstimateMeter

    tree = FakePowercap(tmp_path / "root")
    zone = tree.package(0, dram=False, core=False)["package"]
    meters = [RaplMeter(tree.root), RaplMeter(tree.root), EstimateMeter(per_core_w=5.0)]
    with Monitor(meters, use_profiles=False) as mon:
        s0 = mon.snapshot()
        zone.set(4 * J)
        sum(i * i for i in range(200_000))  # some CPU time for the estimate
        s1 = mon.snapshot()
        fast = mon.report("w", s0, s1)
        mon._session.plain = False  # type: ignore[union-attr]
        general = mon.report("w", s0, s1)
    assert fast == general and dict(fast.domains) == dict(general.domains)
    assert fast.estimated and fast.reasons and "counted once" in fast.warnings[0]
    assert fast.domains["cpu:0/package"].raw_joules == pytest.approx(4.0)
