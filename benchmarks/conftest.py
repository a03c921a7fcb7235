"""Shared benchmark fixtures: the real EC-NAS 5V tree, unpacked once per session; the written
ledger and the profile-match cache in folders of the session, so that the benchmarks touch
nothing outside the clone and the temporary folder (as tests/conftest.py does for the tests)."""

from __future__ import annotations

import sys
import tarfile
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent.parent / "tests"
DATA = TESTS / "data" / "ec-nas-5v.tar.gz"
sys.path.insert(0, str(TESTS))  # the tests' shared helpers (state_dirs), as tests/conftest.py has
from state_dirs import isolated_state_dirs  # noqa: E402


@pytest.fixture(scope="session")
def ecnas_5v_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ecnas5v")
    with tarfile.open(DATA) as tar:
        tar.extractall(root, filter="data")
    return root / "ec-nas-5v"


@pytest.fixture(scope="session", autouse=True)
def _written_ledger(tmp_path_factory: pytest.TempPathFactory):
    """``ECNAS_STATE_DIR`` (what ``--force`` may replace) and ``ECNAS_CACHE_DIR`` (profile
    matches) in the session's temporary folder, not ~/.local/state and ~/.cache; the
    benchmarks' subprocesses inherit both. A cache folder the user set is kept."""
    yield from isolated_state_dirs(tmp_path_factory)
