"""pytest plugin: an ``energy`` fixture that meters one test.

Registered through the ``pytest11`` entry point, so it is active wherever ecnas is installed.
It imports nothing heavy at load time: the meters are imported only by tests that ask for
the fixture. When the test also uses pytest-benchmark's ``benchmark`` fixture, the energy
is recorded in ``benchmark.extra_info`` (total, per round, and whether it was estimated), so
it lands in pytest-benchmark's JSON output beside the timings.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ecnas.monitor import measure

_REPORTS_KEY = pytest.StashKey[list]()


class EnergyProbe:
    """What the ``energy`` fixture yields: the live window now, the report after the test."""

    def __init__(self, window: Any) -> None:
        self._window = window  # an open ecnas.monitor.measure
        self.report: Any = None  # EnergyReport, set when the test finishes

    def so_far(self) -> Any:
        """The EnergyReport from the start of the test until now (the window stays open)."""
        return self._window.peek()


def pytest_configure(config: pytest.Config) -> None:
    """Make room for the energy reports of this session's tests (pytest hook)."""
    config.stash[_REPORTS_KEY] = []


@pytest.fixture
def energy(request: pytest.FixtureRequest) -> Iterator[EnergyProbe]:
    """Meter the test that uses this fixture with ecnas' default meters (one window on the
    process's shared Monitor: no meter start-up per test).

    The report is attached to the test's ``user_properties`` (so JUnit XML carries it) and,
    with pytest-benchmark, to ``benchmark.extra_info``.
    """
    bench = request.getfixturevalue("benchmark") if "benchmark" in request.fixturenames else None
    window = request.node.nodeid
    metered = measure(window)
    with metered:
        probe = EnergyProbe(metered)
        yield probe
    report = probe.report = metered.report
    assert report is not None  # the window has ended: measure() set its report
    request.node.user_properties.append(("energy_j", report.energy_j))
    request.node.user_properties.append(("energy_estimated", report.estimated))
    request.config.stash[_REPORTS_KEY].append((window, report))
    if bench is not None:
        rounds = getattr(getattr(bench, "stats", None), "stats", None)
        n = getattr(rounds, "rounds", 0) or 0
        bench.extra_info["energy_j"] = report.energy_j
        bench.extra_info["energy_estimated"] = report.estimated
        bench.extra_info["energy_meters"] = list(report.meters)
        if n:
            # The window spans calibration and warm-up too; per-round energy is an upper bound.
            bench.extra_info["energy_j_per_round_upper"] = report.energy_j / n


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Print an ``ecnas energy`` section: each metered test's energy (J), duration (s) and
    whether it was measured or estimated (pytest hook)."""
    reports = config.stash.get(_REPORTS_KEY, [])
    if not reports:
        return
    terminalreporter.section("ecnas energy")
    for nodeid, report in reports:
        kind = "estimated" if report.estimated else "measured"
        terminalreporter.write_line(
            f"{report.energy_j:10.3f} J  {report.duration_s:8.3f} s  {kind:9s}  {nodeid}"
        )
