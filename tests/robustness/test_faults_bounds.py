"""Fault injection, silent accepts and hangs (issue 30): physical ranges on profiles, reference
logs and counters; bounded sizes and times. Every bad input is one line and exit 2 (or a
flagged warning where the data is kept), never a number passed on as if it were good."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from faults import ROOT, TESTS, cli, one_line

from ecnas.errors import InputError

PROFILE = ROOT / "hardware_profiles" / "nvidia-quadro-rtx-6000.toml"


def _calibrated(gain: float = 1.04, offset_w: float = 3.0, date: str = "2024-05-01") -> str:
    text = PROFILE.read_text()
    head = text[: text.index("[calibration]")]
    return head + (f'[calibration]\nstatus = "calibrated"\ngain = {gain!r}\n'
                   f'offset_w = {offset_w!r}\nreference = "Yokogawa WT310E"\n'
                   f'date = "{date}"\n')


# ---------------------------------------------------------------- profiles: physical ranges
@pytest.mark.parametrize(("edit", "word"), [
    ({"gain": 1170.0}, "milliwatts"), ({"gain": 0.00117}, "kilowatts"),
    ({"gain": 1000.0}, "milliwatts"), ({"gain": 1e-6}, "outside 0.5..2"),
    ({"offset_w": -500.0}, "offset_w"), ({"date": "2099-01-01"}, "in the future"),
    ({"date": "1924-05-01"}, "before 2000"),
])
def test_profile_validate_refuses_unphysical_calibrations(capsys, tmp_path, edit, word):
    bad = tmp_path / "lab.toml"
    bad.write_text(_calibrated(**edit))
    before = bad.read_bytes()
    rc, out, err = cli(capsys, "profile", "validate", bad)
    assert rc != 0
    assert word in out + err
    assert bad.read_bytes() == before
    good = tmp_path / "good.toml"
    good.write_text(_calibrated())
    assert cli(capsys, "profile", "validate", good)[0] == 0  # the same file, in range, is ok


@pytest.mark.parametrize(("scale", "word"), [(1000.0, "milliwatts"), (0.001, "kilowatts")])
def test_fit_of_a_reference_in_the_wrong_unit_is_refused(scale, word):
    """A log in mW gave gain 1170 (kW 0.00117), written into a profile as calibrated."""
    from ecnas.calibration.fit import ReferenceSeries, fit_reference

    t0 = 1.7e9
    t = t0 + np.arange(0, 60, 0.1)
    p = 60.0 + 40.0 * np.sin(2 * np.pi * (t - t0) / 13.0)
    e = np.concatenate([[0.0], np.cumsum(0.5 * (p[1:] + p[:-1]) * np.diff(t))])
    rt = t0 + np.arange(-1, 61, 0.5)
    rw = scale * (1.17 * (60.0 + 40.0 * np.sin(2 * np.pi * (rt - t0) / 13.0)) + 5.0)
    with pytest.raises(InputError, match=word):
        fit_reference((t, e), ReferenceSeries(tuple(rt), tuple(rw), "ref.csv"))


# ---------------------------------------------------------------- reference logs
@pytest.mark.parametrize(("row", "word"), [
    ("inf,100", "timestamp"), ("nan,100", "timestamp"), ("1e300,100", "timestamp"),
    ("1700000002,150000", "mW"),
])
def test_reference_rows_out_of_range(tmp_path, row, word):
    from ecnas.calibration.reference import read_reference_csv

    log = tmp_path / "ref.csv"
    log.write_text(f"timestamp,watts\n1700000000,100\n1700000001,101\n{row}\n1800000000,99\n")
    with pytest.raises(InputError, match=word):
        read_reference_csv(log)


def test_huge_reference_is_refused_unread(tmp_path):
    """An 84 MB log took 1.7 GB: a log above MAX_BYTES is refused before it is read."""
    from ecnas.calibration import reference

    log = tmp_path / "ref.csv"
    with open(log, "wb") as fh:
        fh.truncate(reference.MAX_BYTES + 1)  # sparse: no disk used
    with pytest.raises(InputError, match="MiB"):
        reference.read_reference_csv(log)


def test_a_fifo_reference_is_refused_without_blocking(tmp_path):
    from ecnas.calibration.reference import read_reference_csv

    fifo = tmp_path / "ref.csv"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        read_reference_csv(fifo)


# ---------------------------------------------------------------- RAPL counters
def _tree(tmp_path: Path):
    sys.path.insert(0, str(TESTS))
    from fakes.sysfs import FakePowercap

    tree = FakePowercap(tmp_path / "sys")
    zones = tree.package(0, dram=False, core=False)
    return tree, zones["package"]


@pytest.mark.parametrize("command", [["hardware", "--json"],
                                     ["measure", "--meters", "rapl", "--json", "--", "true"]])
def test_a_fifo_as_energy_uj_never_blocks(tmp_path, command):
    """A FIFO in place of energy_uj blocked `hardware` and `measure` forever (open waits for a
    writer): the zone is skipped with a note, in a subprocess that must finish."""
    import subprocess

    tree, package = _tree(tmp_path)
    package.energy_file.unlink()
    os.mkfifo(package.energy_file)
    env = dict(os.environ, ECNAS_SYSFS_ROOT=str(tree.root), ECNAS_CACHE_DIR=str(tmp_path / "c"),
               PYTHONPATH=f"{ROOT}{os.pathsep}{TESTS}")
    proc = subprocess.run([sys.executable, "-m", "ecnas", *command], capture_output=True,
                          text=True, env=env, timeout=60)
    assert "Traceback" not in proc.stderr
    assert "not a regular file" in proc.stdout + proc.stderr


def test_a_counter_jump_beyond_physics_is_flagged(tmp_path):
    """262 kJ in half a second (524 kW from one CPU package) was reported as measured."""
    from ecnas.meters.rapl import RaplMeter

    tree, package = _tree(tmp_path)
    package.set(1_000_000)
    meter = RaplMeter(sysfs_root=tree.root)
    since = meter.read().timestamp
    package.set(1_000_000 + 262_000 * 1_000_000)
    second = meter.read()
    assert second.energy_j["cpu:0/package"] == pytest.approx(262_000.0)  # kept, not guessed away
    events = meter.events(since)
    assert any("jumped 262000 J" in e and "suspect" in e for e in events), events
    package.set(1_000_000 + 262_000 * 1_000_000 + 5_000_000)  # 5 J: a plausible step
    meter.read()
    assert len(meter.events(since)) == len(events)
    meter.close()


# ---------------------------------------------------------------- calibrate --domain
def test_calibrate_domain_typo_is_refused_not_estimated(tmp_path):
    """`calibrate --domain cpu:0/pakage` wrote an estimate profile: a domain no meter has is
    refused, naming the domains there are, and nothing is written."""
    import subprocess

    tree, _ = _tree(tmp_path)
    out = tmp_path / "p.toml"
    env = dict(os.environ, ECNAS_SYSFS_ROOT=str(tree.root), ECNAS_CACHE_DIR=str(tmp_path / "c"))
    proc = subprocess.run([sys.executable, "-m", "ecnas", "calibrate", "--kind", "cpu",
                           "--domain", "cpu:0/pakage", "--out", str(out)], capture_output=True,
                          text=True, env=env, timeout=120, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    line = one_line(proc.stderr)
    assert "cpu:0/pakage" in line and "cpu:0/package" in line
    assert not out.exists()


# ---------------------------------------------------------------- campaigns: sizes and values
def _toml(tmp_path: Path, **kw: str) -> Path:
    from campaign_runfns import campaign_toml

    return campaign_toml(tmp_path / "c.toml", count=1, **kw)


@pytest.mark.parametrize(("kw", "key"), [
    ({"repeats": 1_000_000_000}, "campaign.repeats"),
    ({"budgets": "[1000000]"}, "campaign.budgets[0]"),
    ({"extra_recipe": "warmup_steps = 1000000000"}, "recipe.warmup_steps"),
    ({"extra_recipe": "carbon_intensity_g_per_kwh = 1e308"}, "recipe.carbon_intensity"),
    ({"extra_recipe": "carbon_intensity_g_per_kwh = nan"}, "recipe.carbon_intensity"),
])
def test_campaign_sizes_and_values_are_bounded(capsys, tmp_path, kw, key):
    """repeats = 1e9, budgets = [1e6] and warm-up 1e9 started runs that never end; carbon
    intensity 1e308 was accepted. Each is one line naming the key, before anything runs."""
    toml = _toml(tmp_path, **kw)
    store = tmp_path / "s.sqlite"
    rc, _, err = cli(capsys, "run", toml, "--store", store, "--workers", "0", "--run-fn",
                     "campaign_runfns:trivial", "--quiet")
    assert rc == 2
    line = one_line(err)
    assert key in line and ("at most" in line or "from 0 to" in line)
    assert not store.exists()


def test_documented_carbon_intensity_form_is_accepted(capsys, tmp_path):
    """docs/campaigns.md writes `carbon_intensity_g_per_kwh = 250.0`: it was refused as not an
    integer. The CO2 columns then follow from the measured energy."""
    toml = _toml(tmp_path, repeats=1, extra_recipe="carbon_intensity_g_per_kwh = 250.0")
    from ecnas.campaign import load_campaign

    assert dict(load_campaign(toml).recipe)["carbon_intensity_g_per_kwh"] == 250.0
    rc, _, err = cli(capsys, "run", toml, "--store", tmp_path / "s.sqlite", "--workers", "0",
                     "--run-fn", "campaign_runfns:trivial", "--quiet")
    assert rc == 0, err


@pytest.mark.parametrize("argv", [["--epochs", "1000000"], ["--epochs", "1", "--repeats", "1000"],
                                  ["--epochs", "1", "--warmup-steps", "1000000000"],
                                  ["--epochs", "1", "--carbon-intensity", "1e308"]])
def test_train_sizes_are_bounded(capsys, tmp_path, argv):
    out = tmp_path / "t.parquet"
    rc, _, err = cli(capsys, "train", "--matrix", "0100000/0010000/0001000/0000100/0000010/"
                     "0000001/0000000".replace("/", ""), "--ops",
                     "input,conv3x3-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,"
                     "conv3x3-bn-relu,output", "--out", out, *argv)
    assert rc == 2
    assert "at most" in one_line(err) or "up to" in err or "from 0 to" in err
    assert not out.exists()


def test_run_with_a_broken_profile_path_refuses_before_any_run(capsys, tmp_path, monkeypatch):
    """A broken ECNAS_PROFILE_PATH started the campaign and failed every run on it."""
    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "lab-gpu.toml").write_text("[profile\nid = ")
    monkeypatch.setenv("ECNAS_PROFILE_PATH", str(folder))
    store = tmp_path / "s.sqlite"
    rc, _, err = cli(capsys, "run", _toml(tmp_path, repeats=1), "--store", store, "--workers",
                     "0", "--run-fn", "campaign_runfns:trivial", "--quiet")
    assert rc == 2 and "lab-gpu.toml" in one_line(err)
    assert not store.exists()


# ---------------------------------------------------------------- validate gpu --out
def test_validate_gpu_refuses_a_mode_555_folder(capsys, tmp_path):
    """As root, access() says a mode-555 folder is writable and the report went in."""
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        rc, _, err = cli(capsys, "validate", "gpu", "--out", ro / "r", "--test-mode")
    finally:
        ro.chmod(0o755)
    assert rc == 2 and "not writable" in one_line(err)
    assert list(ro.iterdir()) == []


# ---------------------------------------------------------------- imports: duplicates, truncation
@pytest.fixture(scope="module")
def table(ecnas_5v_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from faults import make_table

    return make_table(ecnas_5v_dir, tmp_path_factory.mktemp("faults-bounds"))


def test_a_duplicated_tfrecord_record_is_not_a_second_repeat(capsys, table, tmp_path):
    from ecnas.interop.tfrecord import iter_records, write_records

    rec = tmp_path / "e.tfrecord"
    rc, _, err = cli(capsys, "export", table, "--format", "ecnas-tfrecord", "--out", rec)
    assert rc == 0, err
    records = list(iter_records(rec))
    dup = tmp_path / "dup.tfrecord"
    write_records(dup, [*records, records[0]])
    out = tmp_path / "t.parquet"
    rc, _, err = cli(capsys, "import-ecnas", dup, "--out", out)
    assert rc == 2
    assert "duplicated record" in one_line(err)
    assert not out.exists()
    assert cli(capsys, "import-ecnas", rec, "--out", out)[0] == 0  # the file itself imports


def test_repeat_1_and_repeat_01_are_one_repeat(capsys, ecnas_5v_dir, tmp_path):
    import shutil

    tree = tmp_path / "tree"
    shutil.copytree(ecnas_5v_dir, tree)
    first = next(tree.rglob("repeat_1"))
    shutil.copytree(first, first.with_name("repeat_01"))
    out = tmp_path / "t.parquet"
    rc, _, err = cli(capsys, "import-ecnas", tree, "--out", out)
    assert rc == 2
    assert "the same repeat" in one_line(err)
    assert not out.exists()


@pytest.mark.parametrize("where", ["last", "middle"])
def test_a_truncated_csv_row_is_refused(capsys, table, tmp_path, where):
    import pandas as pd

    from ecnas.tables import read_table, write_table

    csv = tmp_path / "t.csv"
    write_table(read_table(table), csv)
    lines = csv.read_text().splitlines(keepends=True)
    i = len(lines) - 1 if where == "last" else len(lines) // 2
    lines[i] = lines[i][: len(lines[i]) // 2] + ("" if where == "last" else "\n")
    csv.write_text("".join(lines))
    rc, _, err = cli(capsys, "check", csv)
    assert rc == 2
    assert f"line {i + 1}" in one_line(err) and "fields" in err
    assert len(pd.read_csv(csv)) == len(lines) - 1  # pandas alone takes it, NaN-filled


def test_nan_coefficients_in_a_model_file_are_refused(capsys, table, tmp_path):
    import pandas as pd

    from ecnas.surrogate.modelfile import read_model, write_model

    m = tmp_path / "m.npz"
    rc, _, err = cli(capsys, "surrogate", "fit", table, "--out", m, "--kind", "linear")
    assert rc == 0, err
    cells = tmp_path / "cells.csv"
    pd.read_parquet(table)[["matrix", "ops"]].drop_duplicates().to_csv(cells, index=False)
    meta, arrays = read_model(m)
    meta.pop("format")
    coef = next(k for k in arrays if k.endswith("coef"))
    for bad in (np.nan, np.inf):
        poisoned = dict(arrays)
        poisoned[coef] = arrays[coef].copy()
        poisoned[coef][0] = bad
        write_model(tmp_path / "bad.npz", meta, poisoned)
        rc, _, err = cli(capsys, "surrogate", "predict", tmp_path / "bad.npz", cells,
                         "--budget", "4", "--out", tmp_path / "p.parquet")
        assert rc == 2, err
        assert "NaN or infinite" in one_line(err)
        assert not (tmp_path / "p.parquet").exists()


# ---------------------------------------------------------------- calibration runs and phases
@pytest.fixture(scope="module")
def calibration_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real calibration run file, recorded on a fake RAPL tree in about a second."""
    from ecnas.calibration.procedure import (
        CalibrationOptions,
        calibrate_meter,
        choose_meter,
        numpy_burn,
    )
    from ecnas.meters.rapl import RaplMeter
    from ecnas.profiles import load_profiles

    d = tmp_path_factory.mktemp("cal-run")
    sys.path.insert(0, str(TESTS))
    from fakes.sysfs import FakePowercap

    tree = FakePowercap(d / "sys")
    tree.package(0, dram=False, core=False)
    choice = choose_meter([RaplMeter(sysfs_root=tree.root)], "cpu")
    run = d / "p.run.json"
    calibrate_meter(choice.meter, choice.device, choice.domains, profiles=load_profiles(),
                    options=CalibrationOptions(idle_s=0.3, load_s=0.3, probe_s=0.1,
                                               steps_s=0.0, poll_s=0.05),
                    burn=numpy_burn(16), record_path=run)
    return run


@pytest.mark.parametrize("value", ["Infinity", "NaN", "-Infinity"])
def test_a_calibration_run_with_non_finite_times_is_refused(capsys, calibration_run, tmp_path,
                                                           value):
    data = json.loads(calibration_run.read_text())
    data["series"]["wall_s"][1] = "@@"
    bad = tmp_path / "bad.run.json"
    bad.write_text(json.dumps(data).replace('"@@"', value))
    ref = tmp_path / "ref.csv"
    ref.write_text("timestamp,watts\n1700000000,100\n1700000001,101\n")
    out = tmp_path / "p.toml"
    rc, _, err = cli(capsys, "calibrate", "fit", bad, "--reference", ref, "--out", out)
    assert rc == 2
    assert "not finite" in one_line(err)
    assert not out.exists()


@pytest.mark.parametrize("flag", ["--idle-s", "--load-s", "--steps-s"])
def test_calibration_phases_are_bounded(capsys, tmp_path, flag):
    out = tmp_path / "p.toml"
    rc, _, err = cli(capsys, "calibrate", "--kind", "cpu", flag, "1e9", "--out", out)
    assert rc == 2
    assert "longer than a phase may run" in one_line(err)
    assert not out.exists()
