"""The written ledger and the profile-match cache in a session's temporary folder: shared by
tests/conftest.py and benchmarks/conftest.py, so that neither suite touches the user's
~/.local/state/ecnas or ~/.cache/ecnas (subprocesses inherit both through the environment)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


def isolated_state_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Body of a session fixture: ``ECNAS_STATE_DIR`` in the session's folder, and
    ``ECNAS_CACHE_DIR`` too unless the user set one; both restored afterwards."""
    saved = {k: os.environ.get(k) for k in ("ECNAS_STATE_DIR", "ECNAS_CACHE_DIR")}
    os.environ.setdefault("ECNAS_CACHE_DIR", str(tmp_path_factory.mktemp("ecnas-cache")))
    os.environ["ECNAS_STATE_DIR"] = str(tmp_path_factory.mktemp("ecnas-state"))
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
