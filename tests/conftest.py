"""Shared fixtures: the real EC-NAS 5V data, unpacked once per test session; the stand-in NVML;
the written ledger in a folder of the session. Under pytest-xdist each worker is a session of
its own (its own ``tmp_path_factory`` base), so nothing here is shared between workers.

``ECNAS_TEST_SPAWN_LOG=FILE`` appends the id of every test that starts a process (seen through
Python's audit events: ``subprocess.Popen``, ``os.fork``, ``os.posix_spawn``, ``os.system``,
``os.exec``) to FILE, one line each: the count of real-subprocess tests (tests/README.md)."""

from __future__ import annotations

import json
import os
import sys
import tarfile
from pathlib import Path

import pytest
from state_dirs import isolated_state_dirs

DATA = Path(__file__).parent / "data"
_SPAWN_EVENTS = frozenset({"subprocess.Popen", "os.fork", "os.forkpty", "os.posix_spawn",
                           "os.system", "os.exec", "os.spawn"})
_spawned: list[bool] = [False]


def _audit(event: str, _args: tuple) -> None:
    if event in _SPAWN_EVENTS:
        _spawned[0] = True


if os.environ.get("ECNAS_TEST_SPAWN_LOG"):
    sys.addaudithook(_audit)  # cannot be removed; only set when the count is asked for


def pytest_configure(config: pytest.Config) -> None:
    """Refuse ``--dist loadgroup`` where it would not group: pytest 9.2 and later with
    pytest-xdist up to 3.8 drop every ``xdist_group`` mark without a word (pytest-xdist issue
    1386), and the tests that share SLURM's queue or build on a docs page's earlier blocks
    would then run on several workers at once."""
    if getattr(config.option, "dist", "no") != "loadgroup" or pytest.version_tuple[:2] < (9, 2):
        return
    from importlib.metadata import version

    xdist = tuple(int(p) for p in version("pytest-xdist").split(".")[:2] if p.isdigit())
    if xdist <= (3, 8):
        raise pytest.UsageError(
            f"pytest {pytest.__version__} with pytest-xdist {version('pytest-xdist')} ignores "
            "xdist_group marks under --dist loadgroup (pytest-xdist issue 1386): "
            "pip install 'pytest<9.2' (what ecnas[dev] asks for)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    """With ``ECNAS_TEST_SPAWN_LOG``, log the tests that started a process (setup included)."""
    _spawned[0] = False
    yield
    log = os.environ.get("ECNAS_TEST_SPAWN_LOG")
    if log and _spawned[0]:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(item.nodeid + "\n")


@pytest.fixture(scope="session", autouse=True)
def _written_ledger(tmp_path_factory: pytest.TempPathFactory):
    """The written ledger (what ``--force`` may replace) and the profile-match cache in
    folders of the test session (of each xdist worker), not the user's ~/.local/state and
    ~/.cache: the tests touch nothing outside the clone and the temporary folder; subprocesses
    inherit both through the environment. Tests that need the defaults unset them."""
    yield from isolated_state_dirs(tmp_path_factory)


@pytest.fixture(scope="session")
def ecnas_5v_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The EC-NAS 5V9E results tree (graphs JSON + train_model_results), EC-NAS's own layout."""
    root = tmp_path_factory.mktemp("ecnas5v")
    with tarfile.open(DATA / "ec-nas-5v.tar.gz") as tar:
        tar.extractall(root, filter="data")
    return root / "ec-nas-5v"


@pytest.fixture(scope="session")
def ecnas_5v_graphs(ecnas_5v_dir: Path) -> dict:
    """hash -> [matrix, labels] for all 2,532 architectures."""
    return json.loads((ecnas_5v_dir / "graphs" / "generated_graphs_5V9E.json").read_text())


@pytest.fixture(scope="session")
def ecnas_5v_results(ecnas_5v_dir: Path) -> dict:
    """hash -> the parsed results.json of repeat 1."""
    base = ecnas_5v_dir / "train_model_results" / "energy" / "5V9E" / "4_epochs"
    out = {}
    for path in base.glob("*/*/repeat_1/results.json"):
        out[path.parent.parent.name] = json.loads(path.read_text())
    return out


@pytest.fixture(scope="module")
def stub_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the stand-in ``libnvidia-ml.so.1`` (tests/fakes/nvml.py), compiled
    once per test module that asks for it."""
    from fakes.nvml import build_stub, compiler

    if compiler() is None:
        pytest.skip("no C compiler to build the stand-in NVML library")
    d = tmp_path_factory.mktemp("nvml-stub")
    build_stub(d)
    return d
