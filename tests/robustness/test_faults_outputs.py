"""Fault injection, outputs (issue 19 "data loss", issue 17 point 4): what ecnas writes is
checked before work, atomic, follows the umask, and never replaces what ecnas did not write."""

from __future__ import annotations

import json
import os
import stat
import sys
import tarfile
from pathlib import Path

import pytest
from faults import ROOT, cli, make_table, one_line, run_limited, snapshot

PROFILE = ROOT / "hardware_profiles" / "nvidia-quadro-rtx-6000.toml"


@pytest.fixture(scope="module")
def table(ecnas_5v_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_table(ecnas_5v_dir, tmp_path_factory.mktemp("faults-out"))


# ---------------------------------------------------------------- 1. export --force
def test_force_never_deletes_a_folder_ecnas_did_not_write(capsys, table, tmp_path):
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / "manifest.json").write_text("{}")
    (d / "notes.txt").write_text("keep")
    (d / "sub" / "x").write_text("keep")
    before = snapshot(d)
    rc, _, err = cli(capsys, "export", table, "--out", d, "--force")
    assert rc == 2
    assert "not an ecnas bundle manifest" in one_line(err)
    assert snapshot(d) == before


def test_force_keeps_files_a_user_added_inside_a_bundle(capsys, table, tmp_path):
    b = tmp_path / "b"
    assert cli(capsys, "export", table, "--out", b)[0] == 0
    (b / "notes.txt").write_text("my notes")
    before = snapshot(b)
    rc, _, err = cli(capsys, "export", table, "--out", b, "--force")
    assert rc == 2 and "notes.txt" in one_line(err)
    assert snapshot(b) == before
    (b / "notes.txt").unlink()  # only ecnas's files left: --force replaces them
    assert cli(capsys, "export", table, "--out", b, "--force")[0] == 0
    assert json.loads((b / "manifest.json").read_text())["format"] == "ecnas-benchmark-bundle"


# ---------------------------------------------------------------- 2. tfrecord over anything
def test_tfrecord_export_never_overwrites_its_input_or_a_file(capsys, table, tmp_path):
    before = table.read_bytes()
    rc, _, err = cli(capsys, "export", table, "--format", "ecnas-tfrecord", "--out", table,
                     "--force")
    assert rc == 2 and "input" in one_line(err)
    assert table.read_bytes() == before
    other = tmp_path / "other.tfrecord"
    other.write_bytes(b"someone else's")
    rc, _, err = cli(capsys, "export", table, "--format", "ecnas-tfrecord", "--out", other)
    assert rc == 2 and "--force" in one_line(err)
    assert other.read_bytes() == b"someone else's"


@pytest.mark.parametrize("out", [".", "..", ""])
def test_export_out_dot_is_refused(capsys, table, tmp_path, monkeypatch, out):
    monkeypatch.chdir(tmp_path)
    rc, _, err = cli(capsys, "export", table, "--out", out, "--force")
    assert rc == 2
    one_line(err)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- 3. measure --out first
@pytest.mark.parametrize("where", ["missing", "readonly"])
def test_measure_checks_out_before_the_command_runs(capsys, tmp_path, where):
    marker = tmp_path / "ran"
    folder = tmp_path / "reports"
    if where == "readonly":
        folder.mkdir()
        folder.chmod(0o555)
    try:
        rc, _, err = cli(capsys, "measure", "--meters", "estimate", "--out", folder / "r.json",
                         "--", sys.executable, "-c", f"open({str(marker)!r}, 'w')")
    finally:
        if folder.exists():
            folder.chmod(0o755)
    assert rc == 2
    one_line(err)
    assert not marker.exists(), "the command ran although --out could not be written"


def test_measure_out_refuses_a_read_only_file(capsys, tmp_path):
    report = tmp_path / "r.json"
    report.write_text("precious")
    report.chmod(0o444)
    rc, _, err = cli(capsys, "measure", "--meters", "estimate", "--out", report, "--force",
                     "--", sys.executable, "-c", "pass")
    assert rc == 2 and "read-only" in one_line(err)
    assert report.read_text() == "precious"


def test_measure_keeps_report_and_status_when_the_disk_fills(tmp_path):
    # the command exits 3; the report cannot be written (file-size limit): both survive
    proc = run_limited("measure", "--meters", "estimate", "--json", "--out", tmp_path / "r.json",
                       "--", sys.executable, "-c", "raise SystemExit(3)", fsize=200)
    assert proc.returncode == 3, proc.stderr
    assert json.loads(proc.stdout)["returncode"] == 3
    assert "File too large" in one_line(proc.stderr)
    assert [p.name for p in tmp_path.iterdir()] == []  # no half report, no temp file


# ---------------------------------------------------------------- 4./5. contribute
def test_contribute_force_is_atomic_under_a_file_size_limit(capsys, table, tmp_path):
    out = tmp_path / "c.tar.gz"
    assert cli(capsys, "contribute", "--profile", PROFILE, "--table", table, "--out", out)[0] == 0
    before = out.read_bytes()
    proc = run_limited("contribute", "--profile", PROFILE, "--table", table, "--out",
                       out, "--force", fsize=len(before) // 3)
    assert proc.returncode == 2
    assert "File too large" in one_line(proc.stderr)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.tar.gz"]


def test_contribute_packs_the_data_of_symlinks(capsys, table, tmp_path):
    (tmp_path / "p.toml").symlink_to(PROFILE)
    (tmp_path / "t.parquet").symlink_to(table)
    out = tmp_path / "c.tar.gz"
    rc, _, err = cli(capsys, "contribute", "--profile", tmp_path / "p.toml", "--table",
                     tmp_path / "t.parquet", "--out", out)
    assert rc == 0, err
    with tarfile.open(out) as tar:
        members = {m.name: m for m in tar.getmembers()}
        manifest = json.loads(tar.extractfile("manifest.json").read())
        assert all(m.isfile() for m in members.values())
        import hashlib

        for part in ("profile", "table"):
            data = tar.extractfile(manifest[part]["file"]).read()
            assert hashlib.sha256(data).hexdigest() == manifest[part]["sha256"]


# ---------------------------------------------------------------- 6. umask (issue 17 point 4)
def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode)
            for p in [root, *root.rglob("*")]}


@pytest.mark.parametrize("umask,fmode,dmode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_outputs_follow_the_umask(capsys, table, tmp_path, umask, fmode, dmode):
    """Like cp and tar: files 0666 & ~umask, folders 0777 & ~umask, for every writer."""
    out = tmp_path / "out"
    out.mkdir()
    old = os.umask(umask)
    try:
        for argv in (["import-ecnas", table.parent / "tree", "--out", out / "t.csv", "--json"],
                     ["export", table, "--out", out / "bundle"],
                     ["export", table, "--format", "ecnas-tfrecord", "--out", out / "e.tfrecord"],
                     ["measure", "--meters", "estimate", "--out", out / "r.json", "--",
                      sys.executable, "-c", "pass"],
                     ["contribute", "--profile", PROFILE, "--table", table, "--out",
                      out / "c.tar.gz"]):
            rc, _, err = cli(capsys, *argv)
            assert rc == 0, err
    finally:
        os.umask(old)
    modes = _modes(out)
    modes.pop(".")
    for name, mode in modes.items():
        want = dmode if (out / name).is_dir() else fmode
        assert mode == want, f"{name}: {oct(mode)}, expected {oct(want)} under umask {oct(umask)}"
    assert {"t.csv", "t.csv.meta.json", "bundle", "bundle/manifest.json", "e.tfrecord",
            "r.json", "c.tar.gz"} <= set(modes)


def test_library_writers_follow_the_umask(table, tmp_path):
    """The writers behind the CLI (model files, the campaign's `ecnas table`) too."""
    import numpy as np

    from ecnas.outputs import write_json
    from ecnas.surrogate.modelfile import write_model

    old = os.umask(0o027)
    try:
        write_model(tmp_path / "m.npz", {"x": 1}, {"a": np.arange(3.0)})
        write_json(tmp_path / "j.json", {"nan": float("nan")})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "m.npz").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "j.json").stat().st_mode) == 0o640
    assert json.loads((tmp_path / "j.json").read_text()) == {"nan": None}


# ---------------------------------------------------------------- disk full / file too large
@pytest.mark.parametrize("command", ["import", "export", "tfrecord"])
def test_file_size_limit_is_one_line_and_keeps_the_old_output(capsys, table, tmp_path, command):
    out = {"import": tmp_path / "t.parquet", "export": tmp_path / "b",
           "tfrecord": tmp_path / "e.tfrecord"}[command]
    argv = {"import": ["import-ecnas", table.parent / "tree", "--json", "--out", out],
            "export": ["export", table, "--out", out],
            "tfrecord": ["export", table, "--format", "ecnas-tfrecord", "--out", out]}[command]
    assert cli(capsys, *argv)[0] == 0
    before = snapshot(tmp_path)
    proc = run_limited(*argv, "--force", fsize=1500)
    assert proc.returncode == 2, proc.stderr
    assert "File too large" in one_line(proc.stderr)
    assert snapshot(tmp_path) == before  # the old output whole, no temp files left


def test_file_size_limit_during_a_campaign_run(tmp_path):
    from campaign_runfns import campaign_toml

    from ecnas.campaign.store import ResultsStore

    toml = campaign_toml(tmp_path / "c.toml", count=3, repeats=2)
    # the store is created, then a run's commit (3000 checkpoints) passes the limit
    proc = run_limited("run", toml, "--store", tmp_path / "s.sqlite", "--workers", "0",
                       "--run-fn", "campaign_runfns:big", "--quiet", fsize=65536)
    assert proc.returncode == 2, proc.stderr
    assert "disk I/O error" in one_line(proc.stderr)
    with ResultsStore(tmp_path / "s.sqlite", readonly=True) as store:
        done = store.count()  # whole runs only: a failed commit left nothing half there
        assert len(store.rows()) == 3000 * done
