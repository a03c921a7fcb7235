"""Fault injection, what used to be accepted silently (issue 19): each is now refused with
one line, or done as asked, and the figures never change behind the user's back."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from faults import cli, make_table, one_line

BROKEN = "[profile\nid = \n"


@pytest.fixture(scope="module")
def table(ecnas_5v_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_table(ecnas_5v_dir, tmp_path_factory.mktemp("faults-silent"))


def test_missing_results_json_of_a_repeat(capsys, table, tmp_path):
    tree = shutil.copytree(table.parent / "tree", tmp_path / "tree")
    victim = sorted(tree.rglob("repeat_2/results.json"))[0]
    victim.unlink()
    rc, _, err = cli(capsys, "import-ecnas", tree, "--out", tmp_path / "t.parquet", "--json")
    assert rc == 2 and "without results.json" in one_line(err)
    assert not (tmp_path / "t.parquet").exists()


@pytest.mark.parametrize("pue", ["inf", "nan", "0", "0.5", "-1"])
def test_pue_must_be_a_facility_factor(capsys, table, tmp_path, pue):
    rc, _, err = cli(capsys, "import-ecnas", table.parent / "tree", "--pue", pue, "--out",
                     tmp_path / "t.parquet")
    assert rc == 2 and "--pue" in one_line(err)


@pytest.mark.parametrize("option", ["min_correlation=nan", "repeat_cv_error=inf",
                                    "power_margin=-1"])
def test_check_options_must_be_finite(capsys, table, option):
    rc, _, err = cli(capsys, "check", table, "--option", option)
    assert rc == 2 and option.split("=")[0] in one_line(err)


def test_zero_row_table_fails_check(capsys, table, tmp_path):
    from ecnas.tables import read_table, write_table

    empty = write_table(read_table(table).iloc[:0], tmp_path / "empty.parquet")
    rc, out, _ = cli(capsys, "check", empty, "--json")
    assert rc == 1
    schema = json.loads(out)["checks"][0]
    assert schema["name"] == "schema" and not schema["passed"]
    assert "no rows" in schema["explanation"]


def test_surrogate_fit_on_zero_rows_writes_nothing(capsys, table, tmp_path):
    from ecnas.tables import read_table, write_table

    empty = write_table(read_table(table).iloc[:0], tmp_path / "empty.parquet")
    rc, _, err = cli(capsys, "surrogate", "fit", empty, "--out", tmp_path / "m.npz")
    assert rc == 2 and "no rows" in one_line(err)
    assert not (tmp_path / "m.npz").exists()


def test_inline_workers_train_on_the_campaigns_device(capsys, tmp_path):
    from campaign_runfns import campaign_toml

    toml = campaign_toml(tmp_path / "c.toml", count=1, repeats=1, devices='["cuda:0"]')
    rc, out, err = cli(capsys, "run", toml, "--store", tmp_path / "s.sqlite", "--workers", "0",
                       "--run-fn", "faults:on_cuda0", "--quiet", "--json")
    assert rc == 0, err
    assert json.loads(out)["done"] == 1
    two = campaign_toml(tmp_path / "d.toml", count=1, repeats=1, devices='["cuda:0", "cuda:1"]')
    rc, _, err = cli(capsys, "run", two, "--store", tmp_path / "t.sqlite", "--workers", "0",
                     "--run-fn", "faults:on_cuda0", "--quiet")
    assert rc == 2 and "--workers 0" in one_line(err)


# ---------------------------------------------------------------- broken profile files
@pytest.fixture
def broken_profile_path(tmp_path, monkeypatch):
    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "lab-gpu.toml").write_text(BROKEN)
    monkeypatch.setenv("ECNAS_CACHE_DIR", str(tmp_path / "cache"))
    return folder


@pytest.mark.parametrize("how", ["env", "flag"])
def test_a_broken_profile_file_is_refused_everywhere(capsys, tmp_path, monkeypatch,
                                                     broken_profile_path, how):
    """docs/profiles.md: a malformed file is an error naming it (exit 2) -- for `measure`
    (before the command runs) and `hardware`; `with ecnas.measure()` raises for its own
    profile_paths and, for ECNAS_PROFILE_PATH, warns, leaves it out and says so (issue 36)."""
    import ecnas
    from ecnas.errors import InputError

    flag: list[object] = []
    if how == "env":
        monkeypatch.setenv("ECNAS_PROFILE_PATH", str(broken_profile_path))
    else:
        flag = ["--profiles", broken_profile_path]
    marker = tmp_path / "ran"
    rc, _, err = cli(capsys, "measure", "--meters", "estimate", *flag, "--",
                     sys.executable, "-c", f"open({str(marker)!r}, 'w')")
    assert rc == 2 and "lab-gpu.toml" in one_line(err)
    assert not marker.exists()
    rc, _, err = cli(capsys, "hardware", *flag)
    assert rc == 2 and "lab-gpu.toml" in one_line(err)
    meters = ecnas.meters.registry.create_meters(["estimate"])
    if flag:  # the program's own profile_paths: its own ask, refused on entering
        with pytest.raises(InputError, match="lab-gpu.toml"), \
                ecnas.measure("x", meters=meters, profile_paths=[broken_profile_path]):
            pass
    else:  # the environment's: in-code metering warns, leaves it out, says so (issue 36)
        with pytest.warns(RuntimeWarning, match="lab-gpu.toml"), \
                ecnas.measure("x", meters=meters) as m:
            pass
        assert any("ECNAS_PROFILE_PATH not used" in w and "lab-gpu.toml" in w
                   for w in m.report.warnings)


def test_a_good_extra_profile_keeps_the_packaged_ones(capsys, tmp_path, monkeypatch):
    """The same folder, fixed: the packaged profiles still apply (same figures as without)."""
    monkeypatch.setenv("ECNAS_CACHE_DIR", str(tmp_path / "cache"))
    rc, out, err = cli(capsys, "hardware", "--json")
    assert rc == 0, err
    before = json.loads(out)
    folder = tmp_path / "profiles"
    folder.mkdir()
    src = Path(__file__).resolve().parents[2] / "hardware_profiles" / "nvidia-h200.toml"
    (folder / "lab.toml").write_text(src.read_text().replace('id = "nvidia-h200"',
                                                             'id = "lab-h200"'))
    monkeypatch.setenv("ECNAS_PROFILE_PATH", str(folder))
    rc, out, err = cli(capsys, "hardware", "--json")
    assert rc == 0, err
    after = json.loads(out)
    assert [m["devices"] for m in after["meters"]] == [m["devices"] for m in before["meters"]]
