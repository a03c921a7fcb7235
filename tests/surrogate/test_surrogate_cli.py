"""`ecnas surrogate fit | predict | evaluate` in real subprocesses on a slice of the 5V data."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pandas as pd
import pytest
from cli_inproc import run_cli

from ecnas.interop.ecnas_tree import import_results_tree
from ecnas.tables import read_table, write_table

ECNAS = [shutil.which("ecnas")] if shutil.which("ecnas") else [
    sys.executable, "-c", "import sys; from ecnas.cli import main; sys.exit(main())"]


def _run(*args, ok=True):
    proc = run_cli("surrogate", *args)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def files(ecnas_5v_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("surrogate_cli")
    table = import_results_tree(ecnas_5v_dir)
    hashes = np.array(sorted(table["arch_hash"].unique()))
    keep = set(np.random.default_rng(0).choice(hashes, 400, replace=False))
    part = table[table["arch_hash"].isin(keep)]
    write_table(part, d / "train.parquet")
    other = table[~table["arch_hash"].isin(keep)]
    other_hashes = sorted(other["arch_hash"].unique())
    write_table(other[other["arch_hash"].isin(other_hashes[:30]) & (other["epoch"] <= 2)],
                d / "short.parquet")
    cells = other[other["arch_hash"].isin(other_hashes[30:50])][["matrix", "ops"]].drop_duplicates()
    cells.to_csv(d / "cells.csv", index=False)
    return d


def test_fit_predict_evaluate_end_to_end(files):
    d = files
    fit = json.loads(_run("fit", d / "train.parquet", "--out", d / "m.npz", "--kind", "linear",
                          "--json").stdout)
    assert fit["extrapolator"]["method"] == "learned"
    sel = fit["extrapolator"]["selection"]["energy_j"]  # which model grouped CV chose, and why
    assert sel["cells"] == 400 and len(sel["cv_mape_pct"]) == 5
    assert sel["chosen"] in (*sel["cv_mape_pct"], "blend") and sel["interval"].startswith("CV+")
    assert any(n.startswith(f"energy_j: {sel['chosen']}") and "grouped CV" in n for n in fit["notes"])
    assert fit["architecture"]["architectures"] == 400 and fit["architecture"]["budget"] == 4
    assert (d / "m.npz").read_bytes()[:2] == b"PK"  # npz (zip of .npy), not a pickle

    pred = json.loads(_run("predict", d / "m.npz", d / "short.parquet", "--budget", 108,
                           "--out", d / "p108.parquet", "--json").stdout)
    assert pred["sources"] == {"extrapolated": 30}
    p = read_table(d / "p108.parquet")
    assert (p["budget_epochs"] == 108).all() and p["estimated"].all()
    assert (p["energy_j_low"] < p["energy_j"]).all() and (p["energy_j"] < p["energy_j_high"]).all()

    text = _run("predict", d / "m.npz", d / "cells.csv", "--budget", 4, "--out", d / "p4.csv").stdout
    assert "20 surrogate" in text
    q = pd.read_csv(d / "p4.csv")
    assert len(q) == 20 and (q["source"] == "surrogate").all() and q["arch_hash"].str.len().eq(32).all()

    ev = json.loads(_run("evaluate", d / "train.parquet", "--train-fraction", "0.7", "--seed", "3",
                         "--kind", "linear", "--json").stdout)
    models = {(s["model"], s["target"]) for s in ev["scores"]}
    assert {("architecture", "energy_j"), ("params-only", "energy_j"), ("extrapolator", "energy_j"),
            ("linear-scaling", "energy_j")} <= models
    assert ev["n_test"] == 80 and ev["seed"] == 3
    for s in ev["scores"]:
        if s["model"] in ("architecture", "extrapolator"):
            for key in ("mape_pct", "mae", "r2", "kendall_tau", "coverage_pct"):
                assert isinstance(s[key], float)
    table_text = _run("evaluate", d / "train.parquet", "--kind", "linear").stdout
    assert "extrapolator" in table_text and "linear-scaling" in table_text


def test_bad_input_exits_2_with_one_line(files):
    d = files
    (d / "notamodel.npz").write_text("matrix,ops\n")
    cases = [
        ("predict", d / "notamodel.npz", d / "cells.csv", "--budget", 4, "--out", d / "x.csv"),
        ("predict", d / "missing.npz", d / "cells.csv", "--budget", 4, "--out", d / "x.csv"),
        ("fit", d / "cells.csv", "--out", d / "y.npz"),
        ("evaluate", d / "train.parquet", "--train-fraction", "0.95"),
        ("fit", d / "train.parquet", "--out", d / "nofolder" / "m.npz", "--kind", "linear"),
    ]
    for args in cases:
        proc = _run(*args, ok=False)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert proc.stderr.strip().splitlines()[-1].startswith("ecnas surrogate: error:")


def test_fit_reads_the_network_shape_from_the_tables_metadata(files, tmp_path):
    """Issue 37.8: a campaign's table records its network (here the 5V quick recipe: stem 8,
    one stack, one cell); ``fit`` uses it without flags, a flag still overrides its value."""
    from ecnas.tables import get_metadata, set_metadata

    table = read_table(files / "train.parquet")
    keep = sorted(table["arch_hash"].unique())[:60]
    table = table[table["arch_hash"].isin(keep)].reset_index(drop=True)
    set_metadata(table, {**get_metadata(read_table(files / "train.parquet")),
                         "campaign": {"dataset": "cifar10", "recipe": {
                             "stem_channels": 8, "num_stacks": 1, "cells_per_stack": 1}}})
    write_table(table, tmp_path / "t.parquet")
    proc = _run("fit", tmp_path / "t.parquet", "--out", tmp_path / "m.npz", "--kind", "linear",
                "--json")
    net = json.loads(proc.stdout)["network"]
    assert (net["stem_channels"], net["stacks"], net["cells_per_stack"]) == (8, 1, 1)
    assert "from metadata campaign recipe" in net["note"] and net["note"] in proc.stderr
    proc = _run("fit", tmp_path / "t.parquet", "--out", tmp_path / "m2.npz", "--kind", "linear",
                "--stem-channels", "16")
    assert ("network shape: stem 16, 1 stack(s), 1 cell(s) per stack, from the flags "
            "(stem_channels) and metadata campaign recipe") in proc.stdout
    # a table that records nothing (EC-NAS's own data) is NAS-Bench-101's network
    proc = _run("fit", files / "train.parquet", "--out", tmp_path / "m3.npz", "--kind", "linear")
    assert "stem 128, 3 stack(s), 3 cell(s) per stack, from NAS-Bench-101's" in proc.stdout
