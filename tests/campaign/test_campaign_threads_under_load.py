"""Issue 37.7 and 37.12: under load, runs ask for no more threads than the idle cores, the ETA
follows the recent runs, and ``ecnas run`` reports the command's whole wall time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from campaign_runfns import campaign_toml

from ecnas.campaign.progress import Progress, process_elapsed_s
from ecnas.campaign.worker_slots import fair_threads

TESTS = Path(__file__).resolve().parents[1]


def test_threads_never_exceed_the_idle_cores():
    assert fair_threads(2, 2, 0.1) == 2  # a quiet machine: the whole share
    assert fair_threads(2, 2, 1.0) == 1  # one core busy elsewhere: one thread
    assert fair_threads(8, 16, 10.2) == 6
    assert fair_threads(4, 4, 11.0) == 1  # never below one
    assert fair_threads(4, 4, None) == 4  # no load average: the share


def test_eta_follows_the_recent_runs_not_the_session_mean():
    # four quiet runs of 15 s, then the machine gets busy: runs of 300 s
    prog = Progress(total=30, skipped=0, started=0.0)
    t = 0.0
    for gap in (15, 15, 15, 15, 300, 300, 300, 300):
        t += gap
        prog.add_run(1.0, True, when=t)
    # the session mean (1260 s / 8 runs = 157.5 s a run) would promise 22 × 157.5 s;
    # the median of the last five intervals is 300 s
    eta = prog.eta_s()
    assert eta == 300 * 22
    assert "ETA 1 h 50 min" in prog.line("done")
    # and back: once quiet again, it follows within a few runs
    for _ in range(3):
        t += 15
        prog.add_run(1.0, True, when=t)
    assert prog.eta_s() == 15 * 19


def test_run_reports_the_whole_commands_wall_time(tmp_path):
    toml = campaign_toml(tmp_path / "c.toml", count=2, repeats=1)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get(
        "PYTHONPATH", "")])}
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "ecnas", "run", str(toml), "--store",
                          str(tmp_path / "s.sqlite"), "--workers", "0", "--run-fn",
                          "campaign_runfns:trivial", "--json"], capture_output=True, text=True,
                         env=env, timeout=300)
    outside = time.monotonic() - t0
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    # the command's clock starts with the process: imports and set-up included, so it is
    # longer than the campaign loop's and no longer than what the caller saw
    assert d["wall_time_s"] < d["command_wall_time_s"] <= outside + 0.05
    text = subprocess.run([sys.executable, "-m", "ecnas", "run", str(toml), "--store",
                           str(tmp_path / "s.sqlite"), "--workers", "0", "--resume",
                           "--run-fn", "campaign_runfns:trivial"], capture_output=True,
                          text=True, env=env, timeout=300).stdout
    assert "s for the whole command (" in text and "s running the campaign" in text
    assert process_elapsed_s() is not None and process_elapsed_s() > 0
