"""Readers, profiles, Monitor: imports only run downward (issue 13 point 3).

ecnas.meters (device readers) < ecnas.profiles < ecnas.monitor. Every import statement counts,
including those inside functions (a lazy import running back up is still a cycle).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import ecnas

PACKAGE = Path(ecnas.__file__).resolve().parent
ROOMS = ["ecnas.meters", "ecnas.profiles", "ecnas.monitor"]  # bottom to top


def _imports(path: Path) -> set[str]:
    """Every ecnas module an import statement in this file names (at any depth)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return {m for m in out if m == "ecnas" or m.startswith("ecnas.")}


def _room(module: str) -> int | None:
    for k, room in enumerate(ROOMS):
        if module == room or module.startswith(room + "."):
            return k
    return None


@pytest.mark.parametrize("room", ROOMS)
def test_no_import_runs_back_up(room: str) -> None:
    level = ROOMS.index(room)
    upward = []
    for path in sorted((PACKAGE / room.split(".")[1]).glob("*.py")):
        for module in _imports(path):
            target = _room(module)
            if target is not None and target > level:
                upward.append(f"{path.relative_to(PACKAGE.parent)} imports {module}")
    assert upward == []


def test_importing_a_lower_room_loads_nothing_above_it() -> None:
    code = """
import json, sys
import ecnas.meters.rapl, ecnas.meters.estimate, ecnas.meters.nvml, ecnas.meters.registry
readers = sorted(m for m in sys.modules if m.startswith(("ecnas.profiles", "ecnas.monitor")))
import ecnas.profiles, ecnas.profiles.matching, ecnas.profiles.toml_io
profiles = sorted(m for m in sys.modules if m.startswith("ecnas.monitor"))
print(json.dumps([readers, profiles]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert json.loads(out.stdout) == [[], []]
