"""Campaign files: the shipped example, architecture sources, the hash, precise errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from campaign_runfns import campaign_toml
from cli_inproc import run_cli

from ecnas.campaign import Campaign, load_campaign
from ecnas.errors import InputError

ROOT = Path(__file__).resolve().parents[2]


def test_example_campaign_loads_as_a_complete_grid() -> None:
    c = load_campaign(ROOT / "examples" / "demo-campaign.toml")
    runs = c.runs()
    # 4 sampled cells plus the listed one, each at budget 2: the grid its check expects
    assert len(runs) == 5
    assert {r.budget_epochs for r in runs} == {2}
    assert len({r.matrix for r in runs}) == 5 and len({r.key for r in runs}) == len(runs)
    cfg = c.train_config(runs[0])
    assert cfg["stem_channels"] == 8 and cfg["max_train_images"] == 512


def test_example_campaign_with_its_list_budgets_uncommented(tmp_path: Path) -> None:
    text = (ROOT / "examples" / "demo-campaign.toml").read_text()
    assert "# budgets = [2, 4]" in text
    toml = tmp_path / "c.toml"
    toml.write_text(text.replace("# budgets = [2, 4]", "budgets = [2, 4]"))
    runs = load_campaign(toml).runs()
    # 4 sampled cells at budget 2, plus the listed cell at budgets 2 and 4
    assert len(runs) == 6
    listed = [r for r in runs if r.matrix == "0100000111000110000100000"]
    assert [r.budget_epochs for r in listed] == [2, 4]


def test_the_shipped_example_passes_its_own_coverage_check(tmp_path: Path) -> None:
    """Issue 29: its table ended with `WARN coverage` (one cell at two budgets). The runs here
    are the trivial run function's (the grid is what coverage checks, not the numbers)."""
    import os
    import subprocess
    import sys

    from ecnas.tables import read_table
    from ecnas.tables.checks import run_checks

    tests = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])}
    store, table = tmp_path / "s.sqlite", tmp_path / "t.parquet"
    for argv in (["run", str(ROOT / "examples" / "demo-campaign.toml"), "--store", str(store),
                  "--workers", "0", "--run-fn", "campaign_runfns:trivial", "--quiet"],
                 ["table", str(store), "--out", str(table)]):
        proc = subprocess.run([sys.executable, "-m", "ecnas", *argv], env=env, timeout=120,
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    report = run_checks(read_table(table))
    coverage = next(r for r in report.results if r.name == "coverage")
    assert coverage.passed and coverage.explanation.startswith("complete grid: 5 architectures")


def test_runs_expand_architectures_budgets_repeats(tmp_path: Path) -> None:
    c = load_campaign(campaign_toml(tmp_path / "c.toml", count=3, repeats=2, budgets="[1, 2]"))
    runs = c.runs()
    assert len(runs) == 3 * 2 * 2
    assert {r.repeat for r in runs} == {1, 2}


def test_hash_follows_what_is_measured(tmp_path: Path) -> None:
    a = load_campaign(campaign_toml(tmp_path / "a.toml"))
    b = load_campaign(campaign_toml(tmp_path / "b.toml", retries=5))  # retries: same runs
    c = load_campaign(campaign_toml(tmp_path / "c.toml", extra_recipe="learning_rate = 0.05"))
    assert a.hash == b.hash
    assert a.hash != c.hash
    # where the data lies is not what is measured: two copies of a dataset, one campaign
    for name in ("d1", "d2"):
        (tmp_path / name).mkdir()
    body = {"campaign": {"budgets": [1], "dataset": "cifar10"},
            "architectures": {"sample": {"count": 2}}}
    h1 = Campaign.from_dict({**body, "campaign": {**body["campaign"], "data_dir": "d1"}},
                            base_dir=tmp_path).hash
    h2 = Campaign.from_dict({**body, "campaign": {**body["campaign"], "data_dir": "d2"}},
                            base_dir=tmp_path).hash
    assert h1 == h2


def test_enumerate_and_table_sources(tmp_path: Path) -> None:
    from ecnas.space import enumerate_cells
    from ecnas.tables import write_table

    c = Campaign.from_dict({"campaign": {"budgets": [1]},
                            "architectures": {"enumerate": {"max_vertices": 3}}})
    assert len(c.runs()) == len(enumerate_cells(3, 9))
    # a table's cells: a table written from rows of two of those runs
    import pandas as pd
    from campaign_runfns import _rows

    from ecnas.trainer.train import TrainConfig
    rows = [r for run in c.runs()[:2] for r in _rows(TrainConfig.from_dict(c.train_config(run)))]
    write_table(pd.DataFrame(rows), tmp_path / "t.parquet")
    (tmp_path / "fromtable.toml").write_text(
        '[campaign]\nbudgets = [2]\n[architectures]\ntable = "t.parquet"\n')
    t = load_campaign(tmp_path / "fromtable.toml")
    assert {r.arch_hash for r in t.runs()} == {r.arch_hash for r in c.runs()[:2]}


BAD = [
    ("[campaign]\nbudgets = [1]\n", "architectures: the [architectures] table is required"),
    ("[campaign]\nbudgets = [0]\n[architectures]\nsample = {count = 1}\n",
     "campaign.budgets[0]: must be an integer ≥ 1, got 0"),
    ("[campaign]\nbudgets = [1]\nrepeat = 2\n[architectures]\nsample = {count = 1}\n",
     "campaign.repeat: unknown key"),
    ("[campaign]\nbudgets = [1]\n[architectures]\nsample = {seed = 1}\n",
     "architectures.sample.count: is required"),
    ("[campaign]\nbudgets = [1]\ndevices = ['gpu7']\n[architectures]\nsample = {count = 1}\n",
     "campaign.devices[0]: must be cpu or cuda:N"),
    ("[campaign]\nbudgets = [1]\n[architectures]\n[[architectures.list]]\nmatrix = '0110'\n"
     "ops = 'input,output'\n", "architectures.list[0]:"),
    ("[campaign]\nbudgets = [1]\n[architectures]\nsample = {count = 1}\n[recipe]\n"
     "checkpoints = [0, 2]\n", "recipe.checkpoints: checkpoint 2.0 is not a fraction"),
    ("[campaign]\nbudgets = [1]\n[architectures]\nsample = {count = 1}\n[recipe]\n"
     "bn_decay = 1.5\n", "recipe: bn_decay must lie in [0, 1)"),
    ("[campaign\n", "not valid TOML"),
    ("[campaign]\nbudgets = [1]\ndataset = 'cifar10'\n[architectures]\nsample = {count = 1}\n",
     "campaign.data_dir: is required for dataset cifar10"),
    ("[campaign]\nbudgets = [1]\ndataset = 'cifar10'\ndata_dir = 'nope'\n[architectures]\n"
     "sample = {count = 1}\n", "nope is not a folder"),
    ("[campaign]\nbudgets = [1]\n[architectures]\nenumerate = {max_vertices = 7}\n",
     "architectures.enumerate.max_vertices: 7 enumerates too many cells"),
    ("[campaign]\nbudgets = [1]\n[architectures]\ntable = 'none.parquet'\n",
     "architectures.table: "),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_malformed_campaign_names_file_key_reason(tmp_path: Path, text: str,
                                                   message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        load_campaign(path)
    assert str(err.value).startswith(f"{path}: ")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_cli_malformed_campaign_is_one_line_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[campaign]\nbudgets = 'four'\n[architectures]\nsample = {count = 1}\n")
    proc = subprocess.run([sys.executable, "-m", "ecnas", "run", str(path), "--store",
                           str(tmp_path / "s.sqlite")], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "campaign.budgets: must be a non-empty list of epochs" in lines[0]
    assert not (tmp_path / "s.sqlite").exists()  # nothing created for a bad file


def test_check_output_count_and_listed_rows_agree(tmp_path: Path) -> None:
    """Issue 29: `WARN coverage [4]` listed 3 rows and said nothing of the fourth."""
    import os
    import re

    tests = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])}
    toml = tmp_path / "c.toml"
    toml.write_text((ROOT / "examples" / "demo-campaign.toml").read_text()
                    .replace("# budgets = [2, 4]", "budgets = [2, 4]"))
    store, table = tmp_path / "s.sqlite", tmp_path / "t.parquet"

    def ecnas(*argv: str) -> subprocess.CompletedProcess:
        return run_cli(*argv, env=env)

    assert ecnas("run", str(toml), "--store", str(store), "--workers", "0", "--run-fn",
                 "campaign_runfns:trivial", "--quiet").returncode == 0
    assert ecnas("table", str(store), "--out", str(table)).returncode == 0
    for show, listed, more in ((None, 3, "… and 1 more offending row (--show 4 lists them)"),
                               ("4", 4, None), ("1", 1, "… and 3 more offending rows")):
        proc = ecnas("check", str(table), *(("--show", show) if show else ()))
        assert proc.returncode == 0, proc.stderr  # warnings only
        lines = proc.stdout.splitlines()
        head = next(i for i, line in enumerate(lines) if " coverage [" in line)
        assert re.search(r"WARN coverage \[4\]: generic-cpu: 4 of 5 architectures", lines[head])
        rows = [line for line in lines[head + 1:head + 1 + listed + 1] if "arch_hash=" in line]
        assert len(rows) == listed
        after = lines[head + 1 + listed]
        if more is None:
            assert "more offending" not in after
        else:
            assert after.strip().startswith(more)
