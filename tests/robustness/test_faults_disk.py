"""Fault injection, real file systems (issue 19): a full disk (ENOSPC) and a read-only file
system (EROFS), each a small tmpfs mounted in a private mount namespace (``unshare -m``), so
nothing outside the test sees it. Skipped where mount namespaces are not allowed."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from faults import ROOT, TESTS, make_table


def _namespaces_work(where: Path) -> bool:
    if shutil.which("unshare") is None or sys.platform != "linux":
        return False
    where.mkdir(parents=True, exist_ok=True)
    probe = subprocess.run(["unshare", "-m", "sh", "-c",
                            f"mount -t tmpfs -o size=64k none {shlex.quote(str(where))}"],
                           capture_output=True, timeout=30)
    return probe.returncode == 0


@pytest.fixture(scope="module")
def table(ecnas_5v_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_table(ecnas_5v_dir, tmp_path_factory.mktemp("faults-disk"))


@pytest.fixture
def mnt(tmp_path: Path) -> Path:
    where = tmp_path / "mnt"
    if not _namespaces_work(where):
        pytest.skip("no private mount namespace here (unshare -m / mount tmpfs not allowed)")
    return where


def _in_tmpfs(mnt: Path, size: str, script: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (sh) with a fresh tmpfs of ``size`` at ``mnt``; ``$ECNAS`` runs ecnas."""
    ecnas = f"{sys.executable} -m ecnas"  # $ECNAS is split on spaces by sh, not unquoted
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(TESTS)]), ECNAS=ecnas,
               M=str(mnt))
    return subprocess.run(
        ["unshare", "-m", "sh", "-c",
         f"mount -t tmpfs -o size={size} none \"$M\" && {script}"],
        capture_output=True, text=True, env=env, timeout=120)


def _one_error_line(text: str, marker: str) -> str:
    lines = [ln for ln in text.splitlines() if marker in ln]
    assert len(lines) == 1, text
    assert "Traceback" not in text, text
    return lines[0]


def test_disk_full_keeps_the_old_output(table, mnt, tmp_path):
    """ENOSPC midway through replacing a bundle (the file writers share the same atomic path
    and are run out of space by ``ulimit -f`` in test_faults_outputs)."""
    script = (
        f'$ECNAS export {table} --out "$M/b" >/dev/null && '
        f'find "$M" -type f | sort | xargs sha256sum > {tmp_path / "before"} && '
        # fill the disk, then replace the output: ENOSPC midway
        'dd if=/dev/zero of="$M/filler" bs=1k 2>/dev/null; '
        f'$ECNAS export {table} --out "$M/b" --force; echo "rc=$?"; rm "$M/filler"; '
        f'find "$M" -type f | sort | xargs sha256sum | diff {tmp_path / "before"} - && echo same; '
        'ls -A "$M" "$M/b"')
    proc = _in_tmpfs(mnt, "1m", script)
    assert "rc=2" in proc.stdout, proc.stdout + proc.stderr
    assert "No space left on device" in _one_error_line(proc.stderr, ": error:")
    assert "same" in proc.stdout, proc.stdout  # the old output whole
    assert not [n for n in proc.stdout.split() if n.startswith(".")], proc.stdout  # no temps


def test_read_only_file_system_store(mnt, tmp_path):
    """A store on a file system mounted read-only: `run --resume` refuses in one line,
    `ecnas table` still exports it."""
    from campaign_runfns import campaign_toml

    toml = campaign_toml(tmp_path / "c.toml", count=1, repeats=1)
    more = campaign_toml(tmp_path / "d.toml", count=1, repeats=2)
    run = "--workers 0 --run-fn campaign_runfns:trivial --quiet"
    script = (
        f'$ECNAS run {toml} --store "$M/s.sqlite" {run} && '
        'mount -o remount,ro "$M" && '
        f'$ECNAS run {more} --store "$M/s.sqlite" --resume --allow-other-campaign {run}; '
        'echo "rc=$?"; '
        f'$ECNAS table "$M/s.sqlite" --out {tmp_path / "t.parquet"} --json')
    proc = _in_tmpfs(mnt, "4m", script)
    assert "rc=2" in proc.stdout, proc.stdout + proc.stderr
    assert "not writable" in _one_error_line(proc.stderr, ": error:")
    assert (tmp_path / "t.parquet").is_file(), proc.stdout + proc.stderr
