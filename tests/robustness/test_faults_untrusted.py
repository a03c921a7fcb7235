"""Fault injection, untrusted input stays harmless (issue 36): a campaign file's ``[cluster]``
table, a bundle, the written ledger, a profile path, an EC-NAS import and a RAPL counter from
someone else (or an attacker). Each case runs the exact command and checks the exit status,
the one-line message and that no file outside the intended output changed."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from campaign_runfns import campaign_toml
from faults import cli, one_line, run_limited

pytest.importorskip("dask_jobqueue", reason="dask-jobqueue is not installed")


def sums(*folders: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folders`` (by path): what must not change."""
    out: dict[str, str] = {}
    for folder in folders:
        for p in sorted(folder.rglob("*")) if folder.is_dir() else []:
            if p.is_file() and not p.is_symlink():
                try:
                    out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
                except OSError:
                    out[str(p)] = "unreadable"
    return out


def _campaign(tmp_path: Path, table: str) -> Path:
    toml = campaign_toml(tmp_path / "c.toml", count=2, repeats=1)
    toml.write_text(toml.read_text() + "\n[cluster]\n" + table + "\n")
    return toml


# ----- [cluster]: injection, bounds, log_directory (points 2, 3, 7, 16) -----

@pytest.mark.parametrize(("table", "key", "reason"), [
    ('python = "python3; touch X;"', "cluster.python", "path or an executable name"),
    ('python = "$(touch X)"', "cluster.python", "path or an executable name"),
    ('account = "lab -A other --uid=0"', "cluster.account", "account name"),
    ('partition = "gpu;touch X"', "cluster.partition", "partition name"),
    ('memory = "1e99GB"', "cluster.memory", "amount of memory"),
    ('memory = "' + "9" * 100 + 'GB"', "cluster.memory", "amount of memory"),
    ('memory = "999999TB"', "cluster.memory", "between 64MB and 64TB"),
    ('walltime = "abc"', "cluster.walltime", "HH:MM:SS"),
    ('walltime = "-01:00:00"', "cluster.walltime", "HH:MM:SS"),
    ('walltime = "00:00:00"', "cluster.walltime", "positive"),
    ('walltime = "999-00:00:00"', "cluster.walltime", "at most 365 days"),
    ('gres = "gpu:999"', "cluster.gres", "between 1 and 64"),
    ('gres = "gpu:1 --uid=0"', "cluster.gres", "NAME[:TYPE][:COUNT]"),
    ("cores = 999999", "cluster.cores", "≤ 768"),
    ("cores = 999", "cluster.cores", "≤ 768"),
    ('extra_directives = ["--constraint=a100 --uid=0"]', "cluster.extra_directives",
     "one option per entry"),
    ('extra_directives = ["-A x; touch X"]', "cluster.extra_directives", "one option"),
    ('interface = "eth0; touch X"', "cluster.interface", "network interface name"),
    ('log_directory = "../../../../etc"', "cluster.log_directory", "under the store's folder"),
    ('log_directory = "jobs dir"', "cluster.log_directory", "under the store's folder"),
])
def test_cluster_table_value_refused_up_front(capsys, tmp_path, table, key, reason):
    toml = _campaign(tmp_path, 'kind = "slurm"\n' + table)
    before = sums(tmp_path)
    rc, _, err = cli(capsys, "run", toml, "--workers", "1", "--quiet")
    line = one_line(err)
    assert rc == 2 and f"{key}:" in line and reason in line, line
    assert sums(tmp_path) == before and not (tmp_path / "X").exists()


def test_pbs_bounds_refused_up_front(capsys, tmp_path):
    """PBS's -l select=...:mem=...:ngpus=... is built from the same checked values."""
    for table, key in (('memory = "' + "1" * 100 + 'GB"', "cluster.memory"),
                       ('gres = "gpu:999"', "cluster.gres"), ("cores = 99999", "cluster.cores")):
        toml = _campaign(tmp_path, 'kind = "pbs"\n' + table)
        rc, _, err = cli(capsys, "run", toml, "--workers", "1", "--quiet")
        assert rc == 2 and key in one_line(err)


def test_absolute_log_directory_outside_the_store_folder_refused(capsys, tmp_path):
    toml = _campaign(tmp_path, 'kind = "slurm"\nlog_directory = "/etc/cron.d"')
    watched = Path("/etc/cron.d")
    before = sums(tmp_path, watched), sorted(watched.iterdir()) if watched.is_dir() else []
    rc, _, err = cli(capsys, "run", toml, "--workers", "1", "--quiet")
    line = one_line(err)
    assert rc == 2 and "cluster.log_directory" in line and "--log-directory" in line
    after = sums(tmp_path, watched), sorted(watched.iterdir()) if watched.is_dir() else []
    assert after == before


def test_log_directory_through_a_symlink_out_of_the_store_folder_refused(capsys, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "logs").symlink_to(outside)
    toml = _campaign(tmp_path / "run", 'kind = "slurm"\nlog_directory = "logs/jobs"')
    rc, _, err = cli(capsys, "run", toml, "--workers", "1", "--quiet")
    assert rc == 2 and "job logs stay under the store's folder" in one_line(err)
    assert list(outside.iterdir()) == []


def test_relative_command_line_log_directory_refused(capsys, tmp_path):
    toml = _campaign(tmp_path, 'kind = "slurm"')
    before = sums(tmp_path)
    rc, _, err = cli(capsys, "run", toml, "--log-directory", "logs", "--quiet")
    assert rc == 2 and "--log-directory 'logs': must be an absolute folder" in one_line(err)
    assert sums(tmp_path) == before


def test_sbatch_not_found(capsys, tmp_path, monkeypatch):
    toml = _campaign(tmp_path, 'kind = "slurm"')
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    before = sums(tmp_path)
    rc, _, err = cli(capsys, "run", toml, "--workers", "1", "--quiet")
    assert rc == 2 and "sbatch not found" in one_line(err)
    assert sums(tmp_path) == before  # refused before the store was made


def test_qsub_not_found(capsys, tmp_path, monkeypatch):
    toml = _campaign(tmp_path, 'kind = "pbs"')
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    rc, _, err = cli(capsys, "run", toml, "--workers", "1", "--quiet")
    assert rc == 2 and "qsub not found" in one_line(err)


def test_unknown_interface_names_the_key(capsys, tmp_path):
    if shutil.which("sbatch") is None:
        pytest.skip("sbatch is not installed: the interface is checked after it")
    toml = _campaign(tmp_path, 'kind = "slurm"\ninterface = "nosuch9"')
    before = sums(tmp_path)
    rc, _, err = cli(capsys, "run", toml, "--workers", "1", "--quiet")
    line = one_line(err)
    assert rc == 2 and "cluster.interface 'nosuch9': no such network interface" in line
    assert "internal error" not in line and sums(tmp_path) == before


def _slurm_up() -> bool:
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return False
    out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                         timeout=30)
    return out.returncode == 0 and bool(out.stdout.strip())


@pytest.mark.skipif(not _slurm_up(), reason="no running SLURM (sinfo): scripts/slurm/start.sh")
def test_scheduler_refusal_is_shown_at_once(tmp_path):
    """A partition SLURM does not have: sbatch's own message, status 1, no 60 s wait."""
    toml = _campaign(tmp_path, 'kind = "slurm"\nmemory = "1GB"\npartition = "nosuch"')
    proc = run_limited("run", toml, "--workers", "1", "--quiet", cwd=tmp_path,
                       env={"DASK_JOBQUEUE__SLURM__INTERFACE": "lo"}, timeout=60)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 1, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "SLURM refuses the worker job" in lines[0] and "nosuch" in lines[0], lines[0]
    assert "before their worker starts" not in proc.stderr


def test_a_submission_the_scheduler_refuses_is_one_line(tmp_path):
    """A refusal only the real submission meets (PBS has no dry run; here a stand-in qsub
    that refuses as PBS does): the scheduler's words in one line, status 1, no tornado
    traceback, not the 60 s wait ending in "the worker jobs end before their worker starts"."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    qsub = bin_dir / "qsub"
    qsub.write_text("#!/bin/sh\necho 'qsub: Unknown queue MSG=requested queue not found' >&2\n"
                    "exit 1\n")
    qsub.chmod(0o755)
    toml = _campaign(tmp_path, 'kind = "pbs"\nmemory = "1GB"\npartition = "nosuch"')
    proc = run_limited("run", toml, "--workers", "1", "--quiet", cwd=tmp_path, timeout=120,
                       env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                            "DASK_JOBQUEUE__PBS__INTERFACE": "lo"})
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines == ["ecnas run: error: PBS refuses the worker job: qsub: Unknown queue "
                     "MSG=requested queue not found"], proc.stderr


# ----- the written ledger (point 5) -----

def _entry(out: Path) -> Path:
    from ecnas.outputs import _entry_path

    return _entry_path(out)


@pytest.mark.parametrize("swap", ["fifo", "dev-zero", "huge", "junk"])
def test_a_replaced_ledger_entry_neither_hangs_nor_exhausts_force(tmp_path, swap):
    """An entry replaced by a FIFO (used to block until killed), linked to /dev/zero (used to
    read until memory ran out), a huge file or junk: --force refuses at once, naming the
    ledger; the output is left as it was."""
    state = tmp_path / "state"
    env = {"ECNAS_STATE_DIR": str(state)}
    out = tmp_path / "r.json"
    assert run_limited("measure", "--out", out, "--", "true", env=env).returncode == 0
    entry = state / "written" / _entry(out).name
    assert entry.is_file()
    entry.unlink()
    if swap == "fifo":
        os.mkfifo(entry)
    elif swap == "dev-zero":
        entry.symlink_to("/dev/zero")
    elif swap == "huge":
        with open(entry, "wb") as fh:
            fh.truncate(1 << 30)  # sparse: 1 GiB that costs no disk
    else:
        entry.write_bytes(b"\xff\x00not json")
    before = out.read_bytes()
    proc = run_limited("measure", "--out", out, "--force", "--", "true", env=env, timeout=60)
    line = one_line(proc.stderr)
    assert proc.returncode == 2 and "did not write it" in line, proc.stderr
    assert f"not in the written ledger {state / 'written'}" in line
    assert out.read_bytes() == before


@pytest.mark.parametrize("kind", ["file", "devnull", "readonly"])
def test_an_unusable_ledger_still_writes_warns_and_names_itself_later(capsys, tmp_path,
                                                                      monkeypatch, kind):
    if kind == "file":
        state = tmp_path / "state"
        state.write_text("not a folder")
    elif kind == "devnull":
        state = Path("/dev/null")
    else:
        state = tmp_path / "state"
        (state / "written").mkdir(parents=True)
        (state / "written").chmod(0o555)
    monkeypatch.setenv("ECNAS_STATE_DIR", str(state))
    out = tmp_path / "r.json"
    before = sums(tmp_path)
    rc, _, err = cli(capsys, "measure", "--out", out, "--", "true")
    assert rc == 0 and out.is_file()  # the output is written all the same
    assert "warning:" in err and "not recorded in the written ledger" in err, err
    assert "--force will refuse" in err
    rc, _, err = cli(capsys, "measure", "--out", out, "--force", "--", "true")
    line = one_line(err)
    assert rc == 2 and "did not write it" in line and "which cannot be written" in line, line
    assert "ECNAS_STATE_DIR" in line
    after = sums(tmp_path)
    assert {k: v for k, v in after.items() if k != str(out)} == before
    if kind == "readonly":
        assert list((state / "written").iterdir()) == []
        (state / "written").chmod(0o755)


# ----- ECNAS_PROFILE_PATH inside the user's program (point 8) -----

NESTED_TOML = "a = " + "[" * 5000 + "]" * 5000 + "\n"


@pytest.mark.parametrize("kind", ["missing", "junk", "too-deep"])
def test_in_code_measure_never_raises_over_the_profile_path(tmp_path, kind):
    """``import ecnas; with ecnas.measure()`` in a program run with a broken
    ECNAS_PROFILE_PATH: the program runs to its end (status 0), one warning on stderr (not
    one per window), the report says the path was left out; the CLI still refuses."""
    folder = tmp_path / "profiles"
    if kind != "missing":
        folder.mkdir()
        (folder / "lab.toml").write_text("garbage [[[\n" if kind == "junk" else NESTED_TOML)
    program = tmp_path / "prog.py"
    program.write_text(
        "import ecnas\n"
        "for _ in range(3):\n"
        "    with ecnas.measure('w') as m:\n"
        "        sum(range(1000))\n"
        "print([w for w in m.report.warnings if 'ECNAS_PROFILE_PATH' in w])\n"
        "print('done')\n")
    env = {"ECNAS_PROFILE_PATH": str(folder), "ECNAS_CACHE_DIR": str(tmp_path / "cache"),
           "PYTHONWARNINGS": "default"}
    before = sums(folder) if folder.exists() else {}
    proc = subprocess.run([sys.executable, str(program)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("done") and "Traceback" not in proc.stderr
    assert "ECNAS_PROFILE_PATH not used" in proc.stdout  # in the report's warnings
    warned = [ln for ln in proc.stderr.splitlines() if "RuntimeWarning" in ln]
    assert len(warned) == 1 and "ECNAS_PROFILE_PATH not used" in warned[0], proc.stderr
    assert warned[0].startswith(f"{program}:3:"), warned[0]  # the user's line
    assert (sums(folder) if folder.exists() else {}) == before
    cli_proc = run_limited("measure", "--meters", "estimate", "--", "true",
                           env=env, cwd=tmp_path)
    line = one_line(cli_proc.stderr)
    assert cli_proc.returncode == 2 and ("ECNAS_PROFILE_PATH" in line or "lab.toml" in line)


# ----- import-ecnas: timestamps and device ids (point 12) -----

@pytest.fixture(scope="module")
def small_tree(ecnas_5v_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fixtures_tables.corpus import make_tree

    return make_tree(ecnas_5v_dir, tmp_path_factory.mktemp("untrusted-tree") / "tree",
                     n_arch=3, repeats=1, budgets=(4,))


def _edit_results(tree: Path, edit) -> Path:
    victim = sorted(tree.rglob("results.json"))[0]
    data = json.loads(victim.read_text())
    edit(data)
    victim.write_text(json.dumps(data))
    return victim


@pytest.mark.parametrize(("field", "value"), [("start_emission", "yesterday"),
                                              ("stop_emission", "2022-13-45 99:99:99"),
                                              ("evaluation", "soon")])
def test_import_refuses_a_timestamp_that_does_not_parse(capsys, small_tree, tmp_path, field,
                                                        value):
    tree = shutil.copytree(small_tree, tmp_path / "tree")

    def edit(d):
        if field == "evaluation":
            d["evaluation_results"][0]["start_emission"] = value
        else:
            d[field] = value
    victim = _edit_results(tree, edit)
    before = sums(tmp_path)
    rc, _, err = cli(capsys, "import-ecnas", tree, "--out", tmp_path / "t.parquet")
    line = one_line(err)
    assert rc == 2 and f"{value!r}: not a timestamp" in line and victim.parent.name in line
    assert sums(tmp_path) == before


@pytest.mark.parametrize("device", ["../../x", "Nvidia A100", "a/b", "x-", "x" * 65, ""])
def test_import_device_flag_must_be_a_kebab_case_id(capsys, small_tree, tmp_path, device):
    before = sums(tmp_path)
    rc, _, err = cli(capsys, "import-ecnas", small_tree, "--device", device, "--out",
                     tmp_path / "t.parquet")
    line = one_line(err)
    assert rc == 2 and "--device" in line and "kebab-case" in line, line
    assert sums(tmp_path) == before


def test_a_device_name_in_the_data_becomes_a_kebab_case_id(capsys, small_tree, tmp_path):
    """A tree whose GPU is named ``../../etc/passwd``: an id, never a path."""
    import pandas as pd

    tree = shutil.copytree(small_tree, tmp_path / "tree")
    for f in tree.rglob("results.json"):
        data = json.loads(f.read_text())
        for usage in (v for k, v in data.items() if k.startswith("avg_power_usages")):
            usage["gpu"]["devices"] = ["../../etc/passwd" for _ in usage["gpu"]["devices"]]
        f.write_text(json.dumps(data))
    out = tmp_path / "t.parquet"
    rc, _, err = cli(capsys, "import-ecnas", tree, "--out", out)
    assert rc == 0, err
    devices = set(pd.read_parquet(out)["device"])
    assert devices == {"unknown-etc-passwd"}, devices
    rc, _, err = cli(capsys, "import-ecnas", tree, "--device", "lab-gpu-1", "--out", out,
                     "--force")
    assert rc == 0 and set(pd.read_parquet(out)["device"]) == {"lab-gpu-1"}
