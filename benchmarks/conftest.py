"""Shared benchmark fixtures: the real EC-NAS 5V tree, unpacked once per session."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "ec-nas-5v.tar.gz"


@pytest.fixture(scope="session")
def ecnas_5v_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ecnas5v")
    with tarfile.open(DATA) as tar:
        tar.extractall(root, filter="data")
    return root / "ec-nas-5v"
