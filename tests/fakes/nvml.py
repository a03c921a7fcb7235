"""The stand-in ``libnvidia-ml.so.1``: compile it with the system C compiler and drive it.

``build_stub(dir)`` compiles ``nvml_stub.c`` into ``dir/libnvidia-ml.so.1``. Processes that
should see it get ``LD_LIBRARY_PATH=dir`` (the dynamic loader reads it at process start, so
this is done in a subprocess) and ``FAKE_NVML_STATE=<state file>``; the real ``pynvml``
bindings then load the stub exactly as they load the driver's library. What such a process
runs lives in :mod:`fakes.nvml_scenarios` (``run_scenario``), not in code strings.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SOURCE = Path(__file__).with_name("nvml_stub.c")
TESTS = Path(__file__).resolve().parent.parent
ENERGY, INSTANT, FAIL_ENERGY, FAIL_POWER, LOST = 1, 2, 4, 8, 16


def compiler() -> str | None:
    return shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def build_stub(directory: Path) -> Path:
    cc = compiler()
    if cc is None:
        raise RuntimeError("no C compiler (cc) on PATH")
    directory.mkdir(parents=True, exist_ok=True)
    lib = directory / "libnvidia-ml.so.1"
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-o", str(lib),
                    str(SOURCE)], check=True, capture_output=True, text=True)
    return lib


@dataclass
class FakeGpu:
    uuid: str
    pci: int = 0x1E30
    energy_mj: int = 0
    power_mw: int = 0
    instant_mw: int = 0
    flags: int = ENERGY | INSTANT
    name: str = "NVIDIA Quadro RTX 6000"

    def line(self) -> str:
        return (f"{self.uuid} {self.pci:x} {self.energy_mj} {self.power_mw} "
                f"{self.instant_mw} {self.flags} {self.name}")


def write_state(path: str | os.PathLike[str], gpus: list[FakeGpu]) -> None:
    """Replace the stub's device table (atomically: a reader sees old or new, never half)."""
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text("".join(g.line() + "\n" for g in gpus))
    os.replace(tmp, target)


def run_scenario(lib_dir: Path, state: Path, name: str, *args: object,
                 env: dict[str, str] | None = None, timeout: float = 60.0) -> dict:
    """Run scenario ``name`` of :mod:`fakes.nvml_scenarios` in a fresh interpreter that loads
    the stub; return the JSON it prints on its last stdout line."""
    full = dict(os.environ)
    full.pop("CUDA_VISIBLE_DEVICES", None)
    full.pop("CUDA_DEVICE_ORDER", None)
    full.update({"LD_LIBRARY_PATH": str(lib_dir), "FAKE_NVML_STATE": str(state),
                 "PYTHONPATH": os.pathsep.join([str(TESTS), full.get("PYTHONPATH", "")])})
    full.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "fakes.nvml_scenarios", name,
                           *map(str, args)], env=full, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"subprocess failed ({proc.returncode}):\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
