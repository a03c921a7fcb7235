"""The CPU model name per socket, read from ``/proc/cpuinfo`` (used to match a CPU profile).

Under ``ECNAS_SYSFS_ROOT`` the file ``<root>/proc/cpuinfo`` is preferred when it exists, so a
container that mounts the host's /proc elsewhere (and a test tree) can name the host's CPU.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_ROOT = "ECNAS_SYSFS_ROOT"


def sysfs_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The directory every sysfs/procfs path is prefixed with (``ECNAS_SYSFS_ROOT``, default /)."""
    if root is None:
        root = os.environ.get(ENV_ROOT) or "/"
    return Path(root)


def cpu_models(root: str | os.PathLike[str] | None = None) -> dict[int, str]:
    """socket (physical id) → model name; ``{0: platform.processor()}`` when unknown."""
    base = sysfs_root(root)
    candidates = [base / "proc" / "cpuinfo"]
    if base != Path("/"):
        candidates.append(Path("/proc/cpuinfo"))
    for path in candidates:
        try:
            text = path.read_bytes().decode("utf-8", "replace")
        except OSError:
            continue
        return _parse(text)
    return {0: _fallback_name()}


def _fallback_name() -> str:
    import platform  # costs milliseconds: only when /proc/cpuinfo is missing

    return platform.processor() or platform.machine() or "unknown CPU"


def _parse(text: str) -> dict[int, str]:
    models: dict[int, str] = {}
    model = ""
    socket = 0
    for line in text.splitlines() + [""]:
        if not line.strip():  # end of one logical CPU's block
            if model:
                models.setdefault(socket, model)
            model, socket = "", 0
            continue
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name":
            model = value.strip()
        elif key == "physical id":
            try:
                socket = int(value.strip())
            except ValueError:
                socket = 0
    return models or {0: _fallback_name()}


def cpu_model(socket: int = 0, root: str | os.PathLike[str] | None = None) -> str:
    """The CPU model name of ``socket`` (the first socket's where that one is unknown)."""
    models = cpu_models(root)
    return models.get(socket) or next(iter(models.values()))
