"""Shared fixtures: the real EC-NAS 5V data, unpacked once per test session; the stand-in NVML."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session", autouse=True)
def _written_ledger(tmp_path_factory: pytest.TempPathFactory):
    """The written ledger (what ``--force`` may replace) in a folder of the test session, not
    the user's ~/.local/state; subprocesses inherit it through the environment."""
    before = os.environ.get("ECNAS_STATE_DIR")
    os.environ["ECNAS_STATE_DIR"] = str(tmp_path_factory.mktemp("ecnas-state"))
    yield
    if before is None:
        os.environ.pop("ECNAS_STATE_DIR", None)
    else:
        os.environ["ECNAS_STATE_DIR"] = before


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
