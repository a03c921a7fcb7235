"""``ecnas contribution verify`` on an archive bomb (issue 36 point 1): three 2000 MiB members
of zeros in a ~6 MB ``.tar.gz`` (the hostile probe's archive). Verify must refuse it within 5 s
and 200 MB resident; before the header caps it read 5.99 GB into memory over 39 s.

Timed in-process with pytest-benchmark (refusal time) and in a process of its own (peak
resident set, ``VmHWM``, which includes the interpreter and ecnas's imports).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path

import pytest

from ecnas.contributions.verify import verify_contribution
from ecnas.errors import InputError

ROOT = Path(__file__).resolve().parent.parent
MIB = 1 << 20


def _bomb(out: Path, members: int = 3, size: int = 2000 * MIB) -> Path:
    """A gzip stream of tar headers and one compressed 1 MiB zero block repeated (a full flush
    resets the compressor, so the block's bytes repeat exactly)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = comp.compress(b"\0" * MIB) + comp.flush(zlib.Z_FULL_FLUSH)
    with out.open("wb") as f:
        f.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff")
        for k in range(members):
            info = tarfile.TarInfo(f"zero{k}")
            info.size = size
            f.write(comp.compress(info.tobuf(format=tarfile.GNU_FORMAT))
                    + comp.flush(zlib.Z_FULL_FLUSH))
            f.write(block * (size // MIB))
    return out


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _bomb(tmp_path_factory.mktemp("bomb") / "bomb.tar.gz")


def test_verify_refuses_the_bomb(benchmark, bomb: Path) -> None:
    def refuse() -> str:
        with pytest.raises(InputError) as err:
            verify_contribution(bomb)
        return str(err.value)

    message = benchmark(refuse)
    assert "unpacks to more than" in message
    benchmark.extra_info["archive_bytes"] = bomb.stat().st_size
    assert benchmark.stats["max"] < 5.0


def test_verify_refuses_the_bomb_in_little_memory(bomb: Path, tmp_path: Path) -> None:
    rss = tmp_path / "rss"
    # VmHWM: this process's own peak since exec (ru_maxrss carries the parent's over exec)
    code = ("import sys\nfrom ecnas.cli import main\nrc = main(sys.argv[2:])\n"
            "open(sys.argv[1], 'w').write(next(ln.split()[1] for ln in open('/proc/self/status')"
            " if ln.startswith('VmHWM:')))\nsys.exit(rc)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(rss), "contribution", "verify",
                           str(bomb)], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 2, proc.stderr
    peak_mb = int(rss.read_text()) / 1024
    print(f"\nverify of a {bomb.stat().st_size / MIB:.1f} MiB bomb (6000 MiB unpacked): "
          f"peak resident {peak_mb:.0f} MB (load {os.getloadavg()[0]:.1f})")
    assert peak_mb < 200
