"""Fake powercap sysfs trees on disk, laid out as the kernel lays them out.

Zones live under ``sys/devices/virtual/powercap/<control>/`` (subzones nested in their
package) with symlinks in ``sys/class/powercap/``. Counters are rewritten in place with one
fixed-width ``pwrite`` (same inode, as a sysfs attribute), so a meter holding the file open
sees every new value.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

DEFAULT_RANGE_UJ = 262_143_328_850  # a common Intel max_energy_range_uj
_WIDTH = 24


@dataclass
class FakeZone:
    """One zone directory; ``set(µJ)`` moves its counter."""

    path: Path
    name: str
    range_uj: int

    @property
    def energy_file(self) -> Path:
        return self.path / "energy_uj"

    def set(self, energy_uj: int) -> None:
        if not 0 <= energy_uj < self.range_uj:
            raise ValueError(f"{energy_uj} outside the counter range {self.range_uj}")
        data = str(int(energy_uj)).ljust(_WIDTH - 1).encode() + b"\n"
        fd = os.open(self.energy_file, os.O_WRONLY)
        try:
            os.pwrite(fd, data, 0)
        finally:
            os.close(fd)

    def get(self) -> int:
        return int(self.energy_file.read_bytes())

    def vanish(self) -> None:
        """The counter file disappears (driver unloaded, CPU hot-unplugged)."""
        self.energy_file.unlink()

    def root_only(self) -> None:
        """Mode 0400 as the kernel sets it since CVE-2020-8694."""
        self.energy_file.chmod(stat.S_IRUSR)


class FakePowercap:
    """Build a powercap tree under ``root`` (pass it as ``ECNAS_SYSFS_ROOT``/``sysfs_root``)."""

    def __init__(self, root: Path, cpu_model: str | None = "Intel(R) Xeon(R) Gold 6130 CPU"):
        self.root = Path(root)
        self.klass = self.root / "sys" / "class" / "powercap"
        self.virtual = self.root / "sys" / "devices" / "virtual" / "powercap"
        self.klass.mkdir(parents=True, exist_ok=True)
        self.zones: dict[str, FakeZone] = {}
        self._sockets = 0
        self._cpu_model = cpu_model
        if cpu_model is not None:
            self._write_cpuinfo()

    def _write_cpuinfo(self) -> None:
        proc = self.root / "proc"
        proc.mkdir(exist_ok=True)
        blocks = [f"processor\t: {i}\nphysical id\t: {i}\nmodel name\t: {self._cpu_model}\n"
                  for i in range(max(1, self._sockets))]
        (proc / "cpuinfo").write_text("\n".join(blocks))

    def zone(self, control: str, ids: str, name: str, *, energy_uj: int = 0,
             range_uj: int = DEFAULT_RANGE_UJ, parent: FakeZone | None = None) -> FakeZone:
        zone_name = f"{control}:{ids}"
        base = parent.path if parent is not None else self.virtual / control
        path = base / zone_name
        path.mkdir(parents=True, exist_ok=True)
        (path / "name").write_text(name + "\n")
        (path / "max_energy_range_uj").write_text(f"{range_uj}\n")
        (path / "energy_uj").write_text("0".ljust(_WIDTH - 1) + "\n")
        (path / "enabled").write_text("1\n")
        link = self.klass / zone_name
        if not link.exists():
            link.symlink_to(os.path.relpath(path, self.klass))
        zone = FakeZone(path, name, range_uj)
        zone.set(energy_uj)
        self.zones[zone_name] = zone
        return zone

    def package(self, socket: int, *, dram: bool = True, core: bool = True,
                uncore: bool = False, range_uj: int = DEFAULT_RANGE_UJ,
                control: str = "intel-rapl", die: int | None = None,
                zone_index: int | None = None) -> dict[str, FakeZone]:
        """One package zone (``package-N`` or ``package-N-die-D``) with its subzones."""
        idx = socket if zone_index is None else zone_index
        name = f"package-{socket}" + (f"-die-{die}" if die is not None else "")
        pkg = self.zone(control, str(idx), name, range_uj=range_uj)
        out = {"package": pkg}
        sub = 0
        for present, sub_name in ((core, "core"), (uncore, "uncore"), (dram, "dram")):
            if present:
                out[sub_name] = self.zone(control, f"{idx}:{sub}", sub_name, range_uj=range_uj,
                                          parent=pkg)
                sub += 1
        self._sockets = max(self._sockets, socket + 1)
        if self._cpu_model is not None:
            self._write_cpuinfo()
        return out

    def psys(self, zone_index: int, range_uj: int = DEFAULT_RANGE_UJ) -> FakeZone:
        return self.zone("intel-rapl", str(zone_index), "psys", range_uj=range_uj)

    def mmio_duplicate(self, socket: int, range_uj: int = DEFAULT_RANGE_UJ) -> FakeZone:
        """The same package again through ``intel-rapl-mmio`` (must not be counted twice)."""
        return self.zone("intel-rapl-mmio", str(socket), f"package-{socket}",
                         range_uj=range_uj)
