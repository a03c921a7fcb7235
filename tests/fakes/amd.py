"""The stand-in ``libamd_smi.so`` (and ``librocm-core.so``): compile them and drive them.

``build_stub(dir)`` compiles ``amdsmi_stub.c`` plus a generated file with a NOT_SUPPORTED stub
for every other function the installed ``amdsmi_wrapper.py`` binds (it binds them all at
import) into ``dir/lib/libamd_smi.so``, and ``rocm_core_stub.c`` into
``dir/lib/librocm-core.so``. With ``ROCM_PATH=dir`` the real ``amdsmi`` package loads them as
it loads ROCm's; it reads ROCM_PATH when it is imported, so this works in the test process.
``FAKE_AMDSMI_STATE`` names the device table, ``FAKE_ROCM_VERSION`` the ROCm version.

``python -m fakes.amd advance STATE COUNTS`` adds COUNTS to every counter of a state file
(wrapping 32-bit counters): the command a test runs under ``ecnas measure``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import importlib.util
import io
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "amdsmi_stub.c"
ROCM_CORE_SOURCE = HERE / "rocm_core_stub.c"
ENERGY, FAIL_ENERGY, FAIL_POWER, GONE, NO_PARTITIONS, NO_ENUMERATION = 1, 2, 4, 8, 16, 32
N_A = 65535  # what amdsmi reports for a power field the board does not have
GUEST, BAREMETAL = 3, 1
BOUND = re.compile(r"_libraries\['libamd_smi\.so'\]\.(\w+)")
DEFINED = re.compile(r"^uint32_t (amdsmi_\w+)\(", re.MULTILINE)
# The calls the stand-in implements; every other name amdsmi binds answers NOT_SUPPORTED.
IMPLEMENTED = tuple(DEFINED.findall(SOURCE.read_text()))
# Sizes of the structures the stand-in fills, by its fake_amdsmi_struct_size(which) index.
STRUCTS = ("struct_amdsmi_asic_info_t", "struct_amdsmi_power_info_t",
           "struct_amdsmi_enumeration_info_t", "struct_amdsmi_kfd_info_t",
           "struct_amdsmi_driver_info_t")


def compiler() -> str | None:
    return shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def wrapper_source() -> Path | None:
    """The installed ``amdsmi_wrapper.py`` (found without importing amdsmi)."""
    spec = importlib.util.find_spec("amdsmi")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "amdsmi_wrapper.py"
    return path if path.exists() else None


def build_stub(directory: Path) -> Path:
    """Compile the stand-ins into ``directory/lib``; return ``directory`` (the ROCM_PATH)."""
    cc = compiler()
    wrapper = wrapper_source()
    if cc is None or wrapper is None:
        raise RuntimeError("needs a C compiler (cc) and the amdsmi package")
    lib = directory / "lib"
    lib.mkdir(parents=True, exist_ok=True)
    bound = sorted(set(BOUND.findall(wrapper.read_text())) - set(IMPLEMENTED))
    generated = directory / "not_supported.c"
    generated.write_text("".join(f"unsigned {n}(void) {{ return 2; }}\n" for n in bound))
    flags = ["-shared", "-fPIC", "-O1", "-Wall", "-Werror"]
    subprocess.run([cc, *flags, "-o", str(lib / "libamd_smi.so"), str(SOURCE), str(generated)],
                   check=True, capture_output=True, text=True)
    subprocess.run([cc, *flags, "-o", str(lib / "librocm-core.so"), str(ROCM_CORE_SOURCE)],
                   check=True, capture_output=True, text=True)
    return directory


def import_amdsmi(rocm_path: Path) -> Any:
    """Import amdsmi bound to the stand-in under ``rocm_path``; raise RuntimeError (with why)
    where this process already bound it elsewhere or its structures differ from the stub's."""
    with contextlib.redirect_stdout(io.StringIO()):  # amdsmi prints when the library is missing
        import amdsmi
        from amdsmi import amdsmi_wrapper
    where = Path(str(getattr(amdsmi_wrapper, "location", ""))).resolve()
    if where != (rocm_path / "lib" / "libamd_smi.so").resolve():
        raise RuntimeError(f"amdsmi was imported earlier in this process with {where}")
    size = amdsmi_wrapper._libraries["libamd_smi.so"].fake_amdsmi_struct_size
    size.restype = ctypes.c_size_t
    for k, name in enumerate(STRUCTS):
        theirs = ctypes.sizeof(getattr(amdsmi_wrapper, name))
        if size(k) != theirs:
            raise RuntimeError(f"{name} is {theirs} bytes in this amdsmi, {size(k)} in the "
                               "stand-in (written for amdsmi 7.0)")
    return amdsmi


def joules(counts: int, resolution_uj: float = 15.3) -> float:
    """What ``counts`` accumulator increments are worth: the resolution goes through a C
    float, as amdsmi returns it."""
    return counts * ctypes.c_float(resolution_uj).value * 1e-6


@dataclass
class FakeAmdGpu:
    uuid: str
    devid: int = 0x740F
    serial: str = ""
    acc: int = 0
    res: float = 15.3
    cur: int = N_A
    avg: int = 0
    flags: int = ENERGY
    oam: int = 0
    bus: int = 0
    func: int = 0
    part: int = 0
    hip: int = 0
    cpart: str = "SPX"
    mpart: str = "NPS1"
    virt: int = BAREMETAL
    driver: str = "6.8.5"
    name: str = "AMD Instinct MI210"

    def line(self) -> str:
        out = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "devid":
                value = f"{value:x}"
            if f.name != "name" and value != "":
                out.append(f"{f.name}={value}")
        return " ".join(out) + f" name={self.name}"

    @classmethod
    def parse(cls, line: str) -> FakeAmdGpu:
        head, _, name = line.rstrip("\n").partition(" name=")
        kinds = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {"name": name}
        for token in head.split():
            key, _, raw = token.partition("=")
            if key == "devid":
                values[key] = int(raw, 16)
            elif kinds[key] == "int":
                values[key] = int(raw)
            elif kinds[key] == "float":
                values[key] = float(raw)
            else:
                values[key] = raw
        return cls(**values)


def write_state(path: str | os.PathLike[str], gpus: list[FakeAmdGpu]) -> None:
    """Replace the stub's device table (atomically: a reader sees old or new, never half)."""
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text("".join(g.line() + "\n" for g in gpus))
    os.replace(tmp, target)


def read_state(path: str | os.PathLike[str]) -> list[FakeAmdGpu]:
    return [FakeAmdGpu.parse(line) for line in Path(path).read_text().splitlines() if line]


def advance(path: str | os.PathLike[str], counts: int, bits: int = 32) -> None:
    """Add ``counts`` to every energy counter, wrapping at ``2**bits``."""
    write_state(path, [replace(g, acc=(g.acc + counts) % 2**bits) if g.flags & ENERGY else g
                       for g in read_state(path)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fakes.amd")
    sub = parser.add_subparsers(dest="cmd", required=True)
    adv = sub.add_parser("advance", help="add COUNTS to every counter of STATE")
    adv.add_argument("state")
    adv.add_argument("counts", type=int)
    adv.add_argument("--bits", type=int, default=32)
    args = parser.parse_args(argv)
    advance(args.state, args.counts, args.bits)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
