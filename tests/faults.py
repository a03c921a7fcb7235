"""Shared helpers of the fault-injection suite (tests/robustness/test_faults_*.py).

Each case runs the real CLI: in-process through ``ecnas.cli.main`` where that is enough (fast),
in a subprocess where the fault needs a process of its own (a file-size limit, a umask).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

from ecnas.cli import main

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
MAIN = "import sys; from ecnas.cli import main; sys.exit(main(sys.argv[1:]))"


def cli(capsys, *argv: object) -> tuple[int, str, str]:
    """Run ``ecnas ARGV`` in-process; (exit status, stdout, stderr)."""
    capsys.readouterr()
    rc = main([os.fsdecode(a) if isinstance(a, bytes) else str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line(err: str) -> str:
    """The single error line on stderr (the test fails on a traceback or several lines)."""
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert ": error:" in lines[0], err
    return lines[0]


def run_limited(*argv: object, fsize: int | None = None, umask: int | None = None,
                env: dict[str, str] | None = None, cwd: Path | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``ecnas ARGV`` in a subprocess with a file-size limit (``ulimit -f``, bytes) and/or a
    umask. Python ignores SIGXFSZ, so a write past the limit fails with EFBIG."""

    def limit() -> None:
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        if umask is not None:
            os.umask(umask)

    base = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(TESTS)]))
    return subprocess.run([sys.executable, "-c", MAIN, *map(os.fsdecode, argv)],
                          capture_output=True, text=True, preexec_fn=limit,
                          env={**base, **(env or {})}, cwd=cwd or ROOT, timeout=timeout)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (to prove nothing was lost or touched)."""
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


def make_table(tree_src: Path, dst: Path, *, n_arch: int = 8, repeats: int = 2) -> Path:
    """A small real table: ``n_arch`` EC-NAS 5V architectures, imported by the real importer."""
    from fixtures_tables.corpus import make_tree

    from ecnas.interop import import_ecnas
    from ecnas.tables import write_table

    tree = make_tree(tree_src, dst / "tree", n_arch=n_arch, repeats=repeats, budgets=(4,))
    return write_table(import_ecnas(tree), dst / "table.parquet")


def on_cuda0(config):
    """A campaign run function that fails unless the run was given the campaign's GPU."""
    from campaign_runfns import trivial

    if config.device != "cuda:0":
        raise RuntimeError(f"trained on {config.device}, not the campaign's cuda:0")
    return trivial(config)
