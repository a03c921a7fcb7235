"""The pytest plugin's energy fixture, exercised in a real inner pytest session."""

import json

import pytest

pytest_plugins = ["pytester"]


def test_energy_fixture_meters_a_test_and_reports_it(pytester):
    pytester.makepyfile(
        """
        def test_burn(energy):
            total = 0
            for i in range(200_000):
                total += i * i
            so_far = energy.so_far()
            assert so_far.duration_s > 0
            assert "cpu:estimate" in so_far.domains or so_far.domains
        """
    )
    result = pytester.runpytest("--junitxml=out.xml")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*ecnas energy*", "* J * s *test_burn*"])
    xml = (pytester.path / "out.xml").read_text()
    assert 'name="energy_j"' in xml
    assert 'name="energy_estimated"' in xml


def test_energy_lands_in_pytest_benchmark_extra_info(pytester, monkeypatch):
    # under pytest-xdist this test runs inside a worker, whose marks would make the inner
    # pytest-benchmark switch itself off: the inner run is a plain one
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)
    pytester.makepyfile(
        """
        def test_bench(benchmark, energy):
            benchmark.pedantic(lambda: sum(i * i for i in range(20_000)), rounds=5, iterations=1)
        """
    )
    result = pytester.runpytest("-p", "no:xdist", "--benchmark-json=bench.json")
    result.assert_outcomes(passed=1)
    data = json.loads((pytester.path / "bench.json").read_text())
    info = data["benchmarks"][0]["extra_info"]
    assert info["energy_j"] >= 0
    assert isinstance(info["energy_estimated"], bool)
    assert info["energy_meters"]
    assert info["energy_j_per_round_upper"] * 5 == pytest.approx(info["energy_j"])
