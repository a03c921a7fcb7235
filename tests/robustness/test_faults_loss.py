"""Fault injection, data loss (issue 30): nothing ecnas did not write is ever replaced,
truncated or followed, and an unfinished write leaves nothing behind. Each case runs the real
command and compares the bytes (SHA-256) of every file around it before and after."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from faults import ROOT, TESTS, cli, make_table, one_line, snapshot

from ecnas.outputs import sweep_stale_temps, write_text


def sums(folder: Path) -> dict[str, str]:
    """SHA-256 of every regular file under ``folder`` (links are listed by their target)."""
    out = {k: hashlib.sha256(v).hexdigest() for k, v in snapshot(folder).items()}
    for p in folder.rglob("*"):
        if p.is_symlink():
            out[str(p.relative_to(folder))] = "-> " + os.readlink(p)
    return out


@pytest.fixture(scope="module")
def table(ecnas_5v_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_table(ecnas_5v_dir, tmp_path_factory.mktemp("faults-loss"))


# ---------------------------------------------------------------- symbolic links as --out
@pytest.mark.parametrize("command", ["measure", "tfrecord", "import"])
def test_force_never_writes_through_or_over_a_symlink(capsys, table, ecnas_5v_dir, tmp_path,
                                                       command):
    """`ecnas measure --out /dev/stdout --force` as root renamed a file over /dev/stdout: a
    link given as --out is refused, with or without --force, and neither it nor its target
    changes."""
    victim = tmp_path / "victim.txt"
    victim.write_text("the user's file\n")
    link = tmp_path / ("out.parquet" if command == "import" else "out.link")
    link.symlink_to(victim)
    before = sums(tmp_path)
    argv = {"measure": ["measure", "--out", link, "--force", "--", "true"],
            "tfrecord": ["export", table, "--format", "ecnas-tfrecord", "--out", link,
                         "--force"],
            "import": ["import-ecnas", ecnas_5v_dir, "--out", link, "--force"]}[command]
    rc, _, err = cli(capsys, *argv)
    assert rc == 2
    assert "symbolic link" in one_line(err)
    assert link.is_symlink() and sums(tmp_path) == before


def test_library_writes_refuse_a_symlink(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    (tmp_path / "l").symlink_to(victim)
    from ecnas.errors import InputError

    with pytest.raises(InputError, match="symbolic link"):
        write_text(tmp_path / "l", "x")
    assert (tmp_path / "l").is_symlink() and victim.read_text() == "keep"


# ---------------------------------------------------------------- measure --out F
def test_measure_never_replaces_a_file_the_command_wrote(capsys, tmp_path):
    out = tmp_path / "r.json"
    rc, stdout, err = cli(capsys, "measure", "--out", out, "--json", "--", "sh", "-c",
                          f"echo mine > '{out}'")
    assert rc == 2
    assert "the command wrote this file" in err and "Traceback" not in err
    assert out.read_text() == "mine\n"
    assert json.loads(stdout)["returncode"] == 0  # the report is not lost: it is on stdout
    # nor with --force: the command's file is not ecnas's output
    rc, _, err = cli(capsys, "measure", "--out", out, "--force", "--", "true")
    assert rc == 2 and "did not write it" in one_line(err)
    assert out.read_text() == "mine\n"
    # an old report of ecnas's that the command leaves alone is replaced with --force
    out.unlink()
    assert cli(capsys, "measure", "--out", out, "--", "true")[0] == 0
    first = out.read_bytes()
    rc, _, err = cli(capsys, "measure", "--out", out, "--force", "--", "sh", "-c", "exit 3")
    assert rc == 3, err
    assert out.read_bytes() != first and json.loads(out.read_text())["returncode"] == 3


def test_force_replaces_only_what_ecnas_wrote(capsys, tmp_path):
    """--force on a user's file (same name and format as an ecnas output) refuses, checksum
    unchanged; on ecnas's own output it replaces; once the user edits that output, it is the
    user's and --force refuses again."""
    out = tmp_path / "report.json"
    out.write_text('{"mine": true}\n')
    before = sums(tmp_path)
    rc, _, err = cli(capsys, "measure", "--out", out, "--force", "--", "true")
    assert rc == 2 and "did not write it" in one_line(err) and "Traceback" not in err
    assert sums(tmp_path) == before
    out.unlink()
    assert cli(capsys, "measure", "--out", out, "--", "true")[0] == 0
    assert cli(capsys, "measure", "--out", out, "--force", "--", "true")[0] == 0
    with open(out, "a") as fh:
        fh.write(" ")  # the user's edit makes it theirs
    before = sums(tmp_path)
    rc, _, err = cli(capsys, "measure", "--out", out, "--force", "--", "true")
    assert rc == 2 and "changed since" in one_line(err)
    assert sums(tmp_path) == before


# ---------------------------------------------------------------- demo --out
def test_demo_never_overwrites_a_users_files(capsys, tmp_path):
    d = tmp_path / "work"
    d.mkdir()
    for name in ("campaign.toml", "table.parquet", "summary.md"):
        (d / name).write_text(f"my own {name}\n")
    before = sums(d)
    rc, _, err = cli(capsys, "demo", "--out", d)
    assert rc == 2
    assert "did not write" in one_line(err)
    assert sums(d) == before


def test_demo_never_overwrites_a_file_changed_since_it_wrote_it(capsys, tmp_path):
    from ecnas.demo import ledger

    d = tmp_path / "demo"
    d.mkdir()
    (d / "summary.md").write_text("the demo's summary\n")
    ledger.record(d, d / "summary.md")
    (d / "summary.md").write_text("my notes on the demo's summary\n")
    before = sums(d)
    rc, _, err = cli(capsys, "demo", "--out", d)
    assert rc == 2
    assert "changed since the demo wrote it" in one_line(err)
    assert sums(d) == before


# ---------------------------------------------------------------- the campaign store
def _campaign(tmp_path: Path) -> Path:
    from campaign_runfns import campaign_toml

    return campaign_toml(tmp_path / "c.toml", count=1, repeats=1)


def test_store_makes_no_file_beside_it(capsys, tmp_path):
    """`--store Pipfile` truncated Pipfile.lock (the coordinator lock was STORE.lock)."""
    work = tmp_path / "project"
    work.mkdir()
    (work / "Pipfile.lock").write_text('{"_meta": {"hash": "keep me"}}\n')
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("keep me too\n")
    (work / "Pipfile.lock.link").symlink_to(elsewhere)
    before = sums(work)
    rc, _, err = cli(capsys, "run", _campaign(tmp_path), "--store", work / "Pipfile",
                     "--workers", "0", "--run-fn", "campaign_runfns:trivial", "--quiet")
    assert rc == 0, err
    after = sums(work)
    assert {k: v for k, v in after.items() if not k.startswith("Pipfile")
            or k.startswith("Pipfile.lock")} == before
    assert elsewhere.read_text() == "keep me too\n"
    assert sorted(set(after) - set(before)) == ["Pipfile"]  # the store, nothing else


@pytest.mark.parametrize("kind", ["hardlink", "symlink"])
def test_one_coordinator_through_any_link_to_the_store(capsys, tmp_path, kind):
    from ecnas.campaign.store import ResultsStore

    store = tmp_path / "s.sqlite"
    holder = ResultsStore(store, create=True)
    holder.claim()
    try:
        other = tmp_path / f"other-{kind}.sqlite"
        (os.link if kind == "hardlink" else os.symlink)(store, other)
        rc, _, err = cli(capsys, "run", _campaign(tmp_path), "--store", other,
                         "--workers", "0", "--run-fn", "campaign_runfns:trivial", "--quiet")
        assert rc == 2
        line = one_line(err)
        if kind == "symlink":
            assert "another coordinator" in line and f"pid {os.getpid()}" in line
        else:  # SQLite keeps a WAL per name: a store with two names is refused outright
            assert "hard links" in line
        assert ResultsStore(store, readonly=True).table().empty  # the second coordinator ran nothing
    finally:
        holder.close()
    if kind == "symlink":  # the lock went with its holder: the link now works
        rc, _, err = cli(capsys, "run", _campaign(tmp_path), "--store", other,
                         "--workers", "0", "--run-fn", "campaign_runfns:trivial", "--quiet")
        assert rc == 0, err


# ---------------------------------------------------------------- killed writes
_KILLED_WRITE = """
import os, signal, sys
from pathlib import Path
from ecnas.cli._boundary import run_guarded
from ecnas.outputs import atomic_folder, atomic_path

target, how, kind = Path(sys.argv[1]), sys.argv[2], sys.argv[3]

def work(_args):
    ctx = atomic_folder(target) if kind == "folder" else atomic_path(target)
    with ctx as tmp:
        (tmp / "f" if kind == "folder" else tmp).write_bytes(b"half")
        os.kill(os.getpid(), getattr(signal, how))
    return 0

sys.exit(run_guarded("export", work, None))
"""


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_a_terminated_write_removes_its_temp(tmp_path, kind):
    target = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", _KILLED_WRITE, str(target), "SIGTERM", kind],
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{TESTS}"))
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
    assert "terminated by signal" in proc.stderr and "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_a_killed_writes_temp_is_removed_by_the_next_write(capsys, table, tmp_path, kind):
    """SIGKILL runs no cleanup: the temp names its host and process, and the next write beside
    it removes it once that process is gone (never another process's, never a user's file)."""
    target = tmp_path / ("out.tfrecord" if kind == "file" else "bundle")
    proc = subprocess.run([sys.executable, "-c", _KILLED_WRITE, str(target), "SIGKILL", kind],
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{TESTS}"))
    assert proc.returncode == -signal.SIGKILL
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].endswith(".tmp"), left
    (tmp_path / ".out.tfrecord.mine.tmp").write_text("a user's file with a temp-like name")
    argv = (["export", table, "--format", "ecnas-tfrecord", "--out", target] if kind == "file"
            else ["export", table, "--out", target])
    rc, _, err = cli(capsys, *argv)
    assert rc == 0, err
    # a TFRecord export writes its sidecar (measured/estimated per record) beside it
    written = [target.name, f"{target.name}.ecnas.json"] if kind == "file" else [target.name]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*written, ".out.tfrecord.mine.tmp"])


def test_sweep_leaves_a_live_process_temp(tmp_path):
    from ecnas.outputs import atomic_path

    with atomic_path(tmp_path / "x") as tmp:
        tmp.write_text("in flight")
        assert sweep_stale_temps(tmp_path / "x") == []  # ours, alive
        assert tmp.exists()


def test_a_symlinked_csv_sidecar_is_refused_before_work(capsys, table, tmp_path):
    """A CSV table's metadata sidecar is written beside it: a link there is refused too."""
    victim = tmp_path / "victim.json"
    victim.write_text('{"mine": true}\n')
    out = tmp_path / "t.csv"
    out.write_text("old\n")
    (tmp_path / "t.csv.meta.json").symlink_to(victim)
    before = sums(tmp_path)
    rc, _, err = cli(capsys, "import-ecnas", table.parent / "tree", "--out", out, "--force")
    assert rc == 2 and "symbolic link" in one_line(err)
    assert sums(tmp_path) == before
