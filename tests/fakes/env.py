"""Fixtures that keep tests from touching the user's real state."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory,
                   monkeypatch: pytest.MonkeyPatch) -> Path:
    """ECNAS_CACHE_DIR in a per-test folder (subprocesses inherit it through os.environ)."""
    path = tmp_path_factory.mktemp("ecnas-cache")
    monkeypatch.setenv("ECNAS_CACHE_DIR", str(path))
    return path
