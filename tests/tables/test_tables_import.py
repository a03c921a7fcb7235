"""EC-NAS results-tree import on the real 5V data and on a tree with repeats and budgets."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from cli_inproc import run_cli
from fixtures_tables.corpus import make_tree

from ecnas.errors import InputError
from ecnas.interop import import_ecnas
from ecnas.tables import read_table
from ecnas.tables.checks import run_checks


@pytest.fixture(scope="module")
def table_5v(ecnas_5v_dir):
    return import_ecnas(ecnas_5v_dir)


def test_real_5v_imports_and_passes(table_5v, ecnas_5v_results):
    df = table_5v
    assert len(df) == 3 * 2532 and df["arch_hash"].nunique() == 2532
    assert set(df["device"]) == {"nvidia-quadro-rtx-6000"}  # both driver spellings of the name
    assert (df["source"] == "imported").all() and not df["estimated"].any()
    report = run_checks(df)
    assert report.ok and not report.failed, [r.to_dict() for r in report.failed]


def test_pue_is_measured_divided_out_and_recorded(table_5v, ecnas_5v_results):
    meta = table_5v.attrs["ecnas"]
    assert meta["energy_includes_pue"] is False
    assert meta["pue"]["factor"] == 1.59
    assert 1.589 < meta["pue"]["observed"]["min"] <= meta["pue"]["observed"]["max"] < 1.591
    h = "b1750a490368d6cea709a91d0b12ac29"
    run = table_5v[table_5v["arch_hash"] == h].sort_values("epoch")
    res = ecnas_5v_results[h]
    kwh = [ev["energy (kWh)"] for ev in res["evaluation_results"]]
    assert np.allclose(run["energy_j"], np.array(kwh) * 3.6e6 / 1.59, rtol=1e-12)
    # components: the run's GPU share (21814.7 J of 40413.9 J) on every checkpoint
    share = 21814.733220000002 / (21814.733220000002 + 8786.7849255978 + 9812.413265406602)
    assert np.allclose(run["gpu_energy_j"] / run["energy_j"], share)
    assert np.allclose(run["energy_j"], run["gpu_energy_j"] + run["cpu_energy_j"], rtol=0, atol=1e-9)
    assert run["run_energy_j"].iat[0] == pytest.approx(40413.931411, rel=1e-9)
    # wall time from the timestamps: 13:49:47 → 13:50:01, 13:51:01, 13:52:02
    assert run["wall_time_s"].tolist() == [14.0, 74.0, 135.0]


def test_tree_with_repeats_budgets_and_recovery_markers(tmp_path, ecnas_5v_dir):
    tree = make_tree(ecnas_5v_dir, tmp_path / "tree", n_arch=5, repeats=3, budgets=(4, 12),
                     space="4V9E")
    df = import_ecnas(tree)
    assert len(df) == 5 * 2 * 3 * 3
    assert sorted(df["budget_epochs"].unique()) == [4, 12] and sorted(df["repeat"].unique()) == [1, 2, 3]
    assert set(df["space"]) == {"4V9E"}
    assert sorted(df[df["budget_epochs"] == 12]["epoch"].unique()) == [0.0, 6.0, 12.0]
    assert run_checks(df).ok


def test_hash_mismatch_is_an_error_or_kept_for_the_checker(tmp_path, ecnas_5v_dir):
    tree = make_tree(ecnas_5v_dir, tmp_path / "tree", n_arch=3, repeats=1, budgets=(4,))
    run_dir = next((tree / "train_model_results").glob("*/*/*/*/*"))
    fake = "f" * 32
    shutil.move(run_dir, run_dir.parent / fake)
    graphs_file = next((tree / "graphs").glob("*.json"))
    graphs = json.loads(graphs_file.read_text())
    graphs[fake] = graphs[run_dir.name]
    graphs_file.write_text(json.dumps(graphs))
    res = next((run_dir.parent / fake).glob("repeat_1/results.json"))
    data = json.loads(res.read_text())
    data["model_hash"] = fake
    res.write_text(json.dumps(data))
    with pytest.raises(InputError, match=f"{fake} ≠ recomputed {run_dir.name}"):
        import_ecnas(tree)
    df = import_ecnas(tree, keep_bad_hashes=True)
    report = run_checks(df)
    assert not report.get("hash-matches-spec").passed and not report.ok


def test_missing_graph_and_empty_tree_are_clear_errors(tmp_path, ecnas_5v_dir):
    tree = make_tree(ecnas_5v_dir, tmp_path / "tree", n_arch=2, repeats=1, budgets=(4,))
    (next((tree / "graphs").glob("*.json"))).write_text("{}")
    with pytest.raises(InputError, match="is not in the graphs JSON"):
        import_ecnas(tree)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="neither an EC-NAS results tree"):
        import_ecnas(tmp_path / "empty")


def test_cli_acceptance_import_then_check(tmp_path, ecnas_5v_dir):
    out = tmp_path / "t.parquet"
    imp = run_cli("import-ecnas", ecnas_5v_dir, "--out", out, "--json")
    assert imp.returncode == 0, imp.stderr
    summary = json.loads(imp.stdout)
    assert summary["runs"] == 2532 and summary["pue"]["factor"] == 1.59
    chk = run_cli("check", out, "--json")
    assert chk.returncode == 0, chk.stdout
    report = json.loads(chk.stdout)
    assert report["ok"] and report["rows"] == 7596 and report["errors"] == 0
    assert read_table(out).attrs["ecnas"]["devices"]["cpu"]["count"] == 2
