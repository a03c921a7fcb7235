"""The checks: a clean table passes; one planted fault per class is reported by the right
check (by name, with the offending rows); hypothesis tables never crash the checker."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from cli_inproc import run_cli
from fixtures_tables.corpus import FAULTS, make_tree
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecnas.errors import InputError
from ecnas.interop import import_ecnas
from ecnas.tables import COLUMN_NAMES, validate, write_table
from ecnas.tables.checks import CHECK_NAMES, run_checks


@pytest.fixture(scope="module")
def clean(tmp_path_factory, ecnas_5v_dir):
    tree = make_tree(ecnas_5v_dir, tmp_path_factory.mktemp("tree") / "tree")
    return import_ecnas(tree)


def test_clean_corpus_table_passes_every_check(clean):
    report = run_checks(clean)
    assert [r.name for r in report.results] == list(CHECK_NAMES)
    assert report.ok and not report.failed, [r.to_dict() for r in report.failed]
    assert "median CV" in report.get("repeats-agree").explanation


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_each_planted_fault_is_caught_by_its_check(clean, fault):
    plant, check = FAULTS[fault]
    bad = plant(clean.copy())
    bad.attrs = clean.attrs
    report = run_checks(bad)
    result = report.get(check)
    assert not result.passed, f"{fault}: {check} passed: {result.explanation}"
    assert result.explanation and result.count >= 1
    if check != "schema":
        assert result.offending_rows and set(result.offending_rows) <= set(bad.index)
    if result.severity == "error":
        assert not report.ok


def test_power_bounds_offenders_are_the_planted_run(clean):
    plant, _ = FAULTS["impossible-power"]
    bad = plant(clean.copy())
    bad.attrs = clean.attrs
    res = run_checks(bad).get("power-bounds")
    hashes = set(bad.loc[list(res.offending_rows), "arch_hash"])
    assert hashes == {sorted(clean["arch_hash"].unique())[3]}
    assert res.worst[0]["mean_power_w"] > 1000


def test_budget_consistency_names_the_run_that_costs_twice_per_epoch(clean):
    plant, _ = FAULTS["cost-doubles"]
    bad = plant(clean.copy())
    bad.attrs = clean.attrs
    res = run_checks(bad).get("budget-consistency")
    planted = sorted(clean["arch_hash"].unique())[10]
    assert res.severity == "warning" and res.count == 1
    assert f"{planted}/12/2" in res.explanation
    worst = res.worst[0]
    assert (worst["arch_hash"], worst["budget_epochs"], worst["repeat"]) == (planted, 12, 2)
    assert worst["per_epoch_time_vs_cell"] == pytest.approx(2.0, rel=0.05)
    assert worst["per_epoch_energy_vs_cell"] == pytest.approx(2.0, rel=0.05)


def test_budget_consistency_tolerance_follows_the_repeat_spread(clean):
    # repeats that scatter by up to ±35 % widen the tolerance past the floor, so a run 1.4× off
    # its cell passes there, but is named in a table whose repeats agree within ~2 %
    keys = ["arch_hash", "budget_epochs", "repeat"]
    rng = np.random.default_rng(2)
    runs = clean[keys].drop_duplicates()
    runs = runs.assign(f=np.where(runs["repeat"] == 1, 1.0, rng.uniform(0.65, 1.35, len(runs))))
    noisy = clean.merge(runs, on=keys, how="left")
    for c in ("training_time_s", "energy_j"):
        noisy[c] = noisy[c] * noisy["f"]
    noisy = noisy.drop(columns="f")
    for table in (clean, noisy):
        m = ((table["arch_hash"] == sorted(clean["arch_hash"].unique())[4])
             & (table["budget_epochs"] == 4) & (table["repeat"] == 1))
        off = table.copy()
        off.loc[m, "training_time_s"] *= 1.4
        res = run_checks(off).get("budget-consistency")
        assert res.passed is (table is noisy), res.explanation


def test_budget_consistency_leaves_derived_rows_and_lone_runs_alone(clean):
    one = clean[(clean["budget_epochs"] == 4) & (clean["repeat"] == 1)]
    assert run_checks(one).get("budget-consistency").severity == "info"
    derived = clean.copy()
    m = derived["budget_epochs"] == 12
    derived.loc[m, "source"], derived.loc[m, "estimated"] = "extrapolated", True
    derived.loc[m, "training_time_s"] *= 3.0  # a model's rows are not measurements
    assert run_checks(derived).get("budget-consistency").passed


def test_power_floor_applies_to_measured_rows_only(clean):
    # A run whose power sits far below the device's idle floor: impossible when measured, but
    # honest for the CPU-time estimate, which leaves idle power out by design.
    run = clean["arch_hash"] == sorted(clean["arch_hash"].unique())[2]
    low = clean.copy()
    for c in ("energy_j", "gpu_energy_j", "cpu_energy_j"):
        low.loc[run, c] = low.loc[run, c] / 1000.0
    low.attrs = clean.attrs
    assert not run_checks(low).get("power-bounds").passed
    est = low.copy()
    est.loc[run, "estimated"] = True
    est.attrs = clean.attrs
    assert run_checks(est).get("power-bounds").passed


def test_cli_reports_planted_faults_by_name(tmp_path, clean):
    bad = clean.copy()
    for fault in ("repeat-disagrees", "components-do-not-add-up", "missing-repeat"):
        bad = FAULTS[fault][0](bad)
    bad.attrs = clean.attrs
    path = write_table(bad, tmp_path / "bad.parquet")
    run = run_cli("check", path)
    assert run.returncode == 1
    for name in ("FAIL repeats-agree", "FAIL energy-sum", "WARN coverage"):
        assert name in run.stdout, run.stdout
    js = run_cli("check", path, "--json")
    report = json.loads(js.stdout)
    assert report["ok"] is False and report["errors"] == 2
    warn_only = run_cli("check", write_table(FAULTS["missing-repeat"][0](clean.copy()),
                                             tmp_path / "w.csv"))
    assert warn_only.returncode == 0 and "WARN coverage" in warn_only.stdout


def test_options_tighten_the_thresholds(clean):
    assert run_checks(clean, options={"repeat_cv_warning": 0.001}).get("repeats-agree").passed is False
    with pytest.raises(InputError, match="check options"):
        run_checks(clean, options={"no_such_option": 1})


def test_schema_failure_is_reported_not_raised(clean):
    report = run_checks(clean.drop(columns=["device"]))
    assert [r.name for r in report.results] == ["schema"] and not report.ok
    assert "'device'" in report.results[0].explanation


finite = st.floats(min_value=-1e6, max_value=1e7) | st.just(float("nan"))
MATRICES = ["0110001000010000", "01000", "0100001000010000", "1"]
OPS = ["input,conv3x3-bn-relu,maxpool3x3,output", "input,output", "input,conv1x1-bn-relu,output"]


@st.composite
def tables(draw):
    n = draw(st.integers(0, 25))
    col = lambda s: draw(st.lists(s, min_size=n, max_size=n))  # noqa: E731
    df = pd.DataFrame({
        "matrix": col(st.sampled_from(MATRICES)), "ops": col(st.sampled_from(OPS)),
        "budget_epochs": col(st.integers(-2, 108)), "epoch": col(finite),
        "repeat": col(st.integers(-1, 3)), "device": col(st.sampled_from(
            ["nvidia-v100", "generic-cpu", "nvidia-quadro-rtx-6000", "mystery-gpu"])),
        "training_time_s": col(finite), "wall_time_s": col(finite), "energy_j": col(finite),
        "gpu_energy_j": col(finite), "cpu_energy_j": col(finite),
        "estimated": col(st.booleans()),
        "source": col(st.sampled_from(["measured", "imported", "extrapolated", "surrogate"])),
        "trainable_params": col(st.integers(-5, 10**7)),
        "validation_accuracy": col(finite),
    })
    if draw(st.booleans()):
        df = df.drop(columns=[draw(st.sampled_from(list(df.columns)))])
    return df


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables())
def test_random_tables_never_crash_the_checker(df):
    report = run_checks(df)
    d = report.to_dict()
    json.dumps(d, default=str)
    assert d["checks"] and d["checks"][0]["name"] == "schema"
    try:
        validate(df)
    except InputError:
        assert not report.ok and len(report.results) == 1
    else:
        assert len(report.results) == len(CHECK_NAMES)


def test_contract_columns_are_the_architecture_contract():
    assert COLUMN_NAMES[:3] == ("arch_hash", "matrix", "ops") and len(COLUMN_NAMES) == 20
    assert COLUMN_NAMES[-1] == "flops" and "dram_energy_j" in COLUMN_NAMES
