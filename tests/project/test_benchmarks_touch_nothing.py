"""The benchmark suite (what scripts/test.sh runs last) writes nothing into the user's home:
its written ledger and profile-match cache live in the session's temporary folder
(benchmarks/conftest.py), as the tests' do (tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_benchmarks_leave_home_untouched(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ECNAS_", "PYTEST", "XDG_"))}
    env.update(HOME=str(home), ECNAS_BENCH_QUICK="1", MPLBACKEND="Agg")
    # a benchmark that writes a table through ecnas (the written ledger) and one that meters
    # (profile matching, its cache)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         "--benchmark-min-rounds=1", "--benchmark-max-time=0.05", "--benchmark-warmup=off",
         f"--basetemp={tmp_path / 'base'}",
         "benchmarks/bench_tables.py::test_write_read_parquet_big",
         "benchmarks/bench_meters.py", "-k", "test_write_read_parquet_big or cold_import"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    left = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    assert not [p for p in left if "ecnas" in p], left
