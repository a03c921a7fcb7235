"""``ecnas hardware`` and ``ecnas measure`` as users run them: real processes, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fakes import children
from fakes.env import isolated_cache  # noqa: F401  (autouse: a private ECNAS_CACHE_DIR)
from fakes.sysfs import FakePowercap

CLI = [sys.executable, "-c", "import sys; from ecnas.cli import main; sys.exit(main())"]
TESTS = Path(__file__).resolve().parents[1]


def ecnas(*args: str, env: dict[str, str] | None = None, timeout: float = 60
          ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


@pytest.fixture
def empty_env(tmp_path: Path) -> dict[str, str]:
    root = tmp_path / "no-counters"
    root.mkdir()
    return dict(os.environ, ECNAS_SYSFS_ROOT=str(root))


def test_measure_sleep_one_second_is_estimated(empty_env: dict[str, str]) -> None:
    out = ecnas("measure", "--json", "--", "sleep", "1", env=empty_env)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert 0.95 <= data["duration_s"] < 1.6
    assert data["estimated"] is True
    assert any("no RAPL zones" in r for r in data["reasons"])
    assert set(data["domains"]) == {"cpu:estimate"}
    assert data["energy_j"] >= 0 and data["returncode"] == 0
    assert data["command"] == ["sleep", "1"]


def test_exit_status_passes_through_and_report_is_written(empty_env: dict[str, str],
                                                          tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    out = ecnas("measure", "--out", str(report), "--", "sh", "-c", "exit 3", env=empty_env)
    assert out.returncode == 3
    data = json.loads(report.read_text())
    assert data["returncode"] == 3 and data["estimated"] is True
    assert "exit status 3" in out.stdout  # the text summary


def test_killed_by_a_signal_gives_128_plus_n(empty_env: dict[str, str]) -> None:
    out = ecnas("measure", "--json", "--", "sh", "-c", "kill -TERM $$", env=empty_env)
    assert out.returncode == 128 + signal.SIGTERM
    assert json.loads(out.stdout)["returncode"] == 128 + signal.SIGTERM


def test_signals_are_forwarded_to_the_command(empty_env: dict[str, str],
                                              tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    proc = subprocess.Popen([*CLI, "measure", "--out", str(report), "--", sys.executable,
                             children.PATH, "sigterm_child"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True, env=empty_env)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)  # to ecnas, not to the command
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 7  # the command's own handler ran and its status came back
    assert json.loads(report.read_text())["returncode"] == 7


def test_measure_with_wrapping_fake_counters_reports_true_increments(tmp_path: Path) -> None:
    tree = FakePowercap(tmp_path / "root")
    zone = tree.package(0, dram=False, core=False, range_uj=1_000_000)["package"]
    env = dict(os.environ, ECNAS_SYSFS_ROOT=str(tree.root), PYTHONPATH=str(TESTS))
    out = ecnas("measure", "--json", "--", sys.executable, children.PATH, "wrapping_counter",
                str(zone.path),
                env=env)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["estimated"] is False and data["meters"] == ["rapl"]
    assert data["domains"]["cpu:0/package"] == pytest.approx(3.2, abs=1e-9)


def test_hardware_json_with_readable_rapl(tmp_path: Path) -> None:
    tree = FakePowercap(tmp_path / "root")
    tree.package(0)
    tree.package(1)
    out = ecnas("hardware", "--json", env=dict(os.environ, ECNAS_SYSFS_ROOT=str(tree.root)))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    rapl = next(m for m in data["meters"] if m["meter"] == "rapl")
    assert rapl["status"] == "measured"
    assert rapl["domains"] == ["cpu:0/package", "cpu:0/dram", "cpu:1/package", "cpu:1/dram"]
    assert rapl["devices"][0]["profile"]["profile"] == "generic-intel-xeon"
    assert data["default_meters"][-1] == "rapl" and data["estimated"] is False


def test_hardware_text_without_counters(empty_env: dict[str, str]) -> None:
    out = ecnas("hardware", env=empty_env)
    assert out.returncode == 0, out.stderr
    assert "rapl      unavailable" in out.stdout
    assert "energy will be estimated by: estimate" in out.stdout


@pytest.mark.parametrize("args, message", [
    (("measure", "--json"), "no command given"),
    (("measure", "--meters", "bogus", "--", "true"), "meter 'bogus': unknown"),
])
def test_bad_usage_is_one_line_and_exit_2(empty_env: dict[str, str], args: tuple[str, ...],
                                          message: str) -> None:
    out = ecnas(*args, env=empty_env)
    assert out.returncode == 2
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_a_command_that_cannot_run_exits_like_a_shell(empty_env: dict[str, str],
                                                      tmp_path) -> None:
    """Issue 37.12: 127 for a command not found, 126 for one found but not executable."""
    out = ecnas("measure", "--", "no-such-command-ecnas", env=empty_env)
    assert out.returncode == 127
    assert "command not found: no-such-command-ecnas" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    script = tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    out = ecnas("measure", "--", str(script), env=empty_env)
    assert out.returncode == 126, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_chosen_meters_by_name(empty_env: dict[str, str]) -> None:
    out = ecnas("measure", "--json", "--meters", "estimate", "--", "true", env=empty_env)
    assert out.returncode == 0
    assert json.loads(out.stdout)["meters"] == ["estimate"]


def test_unavailable_chosen_meter_fails_with_reason(empty_env: dict[str, str]) -> None:
    start = time.monotonic()
    out = ecnas("measure", "--meters", "rapl", "--", "true", env=empty_env)
    assert out.returncode == 1
    assert "rapl: no RAPL zones" in out.stderr and time.monotonic() - start < 30
