"""Benchmark.query semantics (repeats, counters, free lookups, domain errors) and the
acceptance: a bundle of the imported 5V data answers ``ecnas query`` with EC-NAS's kWh."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ecnas.benchmark import Benchmark, write_bundle
from ecnas.cli import main
from ecnas.errors import InputError
from ecnas.interop import import_ecnas
from ecnas.space import ModelSpec


@pytest.fixture(scope="module")
def table5v(ecnas_5v_dir):
    return import_ecnas(ecnas_5v_dir)


@pytest.fixture(scope="module")
def bundle5v(table5v, tmp_path_factory):
    return write_bundle(table5v, tmp_path_factory.mktemp("q") / "b5v")


@pytest.fixture(scope="module")
def three_repeats(table5v):
    """20 architectures with repeats 1..3 (energy scaled 1×, 2×, 3×); repeat 3 missing for one."""
    base = table5v[table5v["arch_hash"].isin(table5v["arch_hash"].unique()[:20])]
    parts = []
    for r in (1, 2, 3):
        p = base.copy()
        p["repeat"] = r
        p["energy_j"] = p["energy_j"] * r
        parts.append(p)
    df = pd.concat(parts, ignore_index=True)
    gone = df["arch_hash"].unique()[0]
    df = df[~((df["arch_hash"] == gone) & (df["repeat"] == 3))].reset_index(drop=True)
    df.attrs = dict(table5v.attrs)
    return df, gone


def test_repeat_semantics(three_repeats):
    df, gone = three_repeats
    bench = Benchmark.from_table(df, seed=7)
    h = [x for x in bench.hash_iterator() if x != gone][0]
    spec = bench.spec_of(h)
    e = [bench.query(spec, 4, r)["energy_j"] for r in (1, 2, 3)]
    assert e[1] == pytest.approx(2 * e[0]) and e[2] == pytest.approx(3 * e[0])
    assert bench.query(spec, 4, "mean")["energy_j"] == pytest.approx(2 * e[0])
    # energies edited after import: the kWh follow them, not the stale published energy_kwh
    kwh = [bench.query(spec, 4, r)["energy (kWh)"] for r in (1, 2, 3)]
    assert kwh[1] == pytest.approx(2 * kwh[0], rel=1e-12) and kwh[2] == pytest.approx(3 * kwh[0], rel=1e-12)
    draws = [bench.query(spec, 4)["repeat"] for _ in range(60)]
    assert set(draws) == {1, 2, 3}
    again = Benchmark.from_table(df, seed=7)
    assert [again.query(spec, 4)["repeat"] for _ in range(60)] == draws  # seeded
    g = bench.spec_of(gone)
    assert {bench.query(g, 4)["repeat"] for _ in range(40)} == {1, 2}
    assert bench.query(g, 4, "mean")["energy_j"] == pytest.approx(1.5 * bench.query(g, 4, 1)["energy_j"])
    with pytest.raises(InputError, match="repeat 3 is not in the benchmark"):
        bench.query(g, 4, 3)
    with pytest.raises(InputError, match="repeat 'median'"):
        bench.query(g, 4, "median")


def test_counters_and_free_lookups(three_repeats):
    df, gone = three_repeats
    bench = Benchmark.from_table(df)
    spec = bench.spec_of(next(h for h in bench.hash_iterator() if h != gone))
    assert bench.get_budget_counters() == (0.0, 0.0)
    q1, q2 = bench.query(spec, 4, 1), bench.query(spec, 4, 2)
    t, e = bench.get_budget_counters()
    assert t == pytest.approx(q1["training_time"] + q2["training_time"])
    assert e == pytest.approx(q1["energy_j"] + q2["energy_j"])
    fixed, computed = bench.get_metrics_from_spec(spec)
    bench.get_metrics_from_hash(fixed["module_hash"])
    assert bench.get_budget_counters() == (t, e)  # not charged
    assert [r["repeat"] for r in computed[4]] == [1, 2, 3]
    assert computed[4][0]["final_energy_j"] == q1["energy_j"]
    assert computed[4][0]["halfway_training_time"] < computed[4][0]["final_training_time"]
    bench.reset_budget_counters()
    assert bench.get_budget_counters() == (0.0, 0.0)


def test_domain_errors_and_is_valid(bundle5v):
    bench = Benchmark.load(bundle5v)
    spec = bench.spec_of(next(bench.hash_iterator()))
    assert bench.is_valid(spec)
    with pytest.raises(InputError, match="epochs 108 is not a budget"):
        bench.query(spec, 108)
    invalid = ModelSpec(np.zeros((3, 3), dtype=int), ["input", "conv3x3-bn-relu", "output"])
    assert not bench.is_valid(invalid)
    with pytest.raises(InputError, match="invalid spec"):
        bench.query(invalid, 4)
    seven = ModelSpec(np.eye(7, k=1, dtype=int), ["input"] + ["conv3x3-bn-relu"] * 5 + ["output"])
    assert seven.valid and not bench.is_valid(seven)
    with pytest.raises(InputError, match="valid but not in the benchmark"):
        bench.query(seven, 4)
    with pytest.raises(InputError, match="is not in the benchmark"):
        bench.get_metrics_from_hash("0" * 32)


def test_isomorphic_spec_resolves_by_hash(bundle5v, ecnas_5v_graphs):
    bench = Benchmark.load(bundle5v)
    h, (matrix, labels) = next(iter(ecnas_5v_graphs.items()))
    spec = bench.spec_of(h)
    m = np.array(spec.matrix)
    n = m.shape[0]
    if n > 3:  # swap two inner vertices: same cell, another vertex order
        perm = list(range(n))
        perm[1], perm[2] = perm[2], perm[1]
        swapped = ModelSpec(m[np.ix_(perm, perm)], [spec.ops[i] for i in perm])
        if swapped.valid:
            assert bench.query(swapped, 4, 1)["arch_hash"] == h


def test_acceptance_query_returns_ecnas_kwh(bundle5v, ecnas_5v_results, capsys):
    bench = Benchmark.load(bundle5v)
    for h in sorted(ecnas_5v_results)[:6]:
        final = ecnas_5v_results[h]["evaluation_results"][-1]
        spec = bench.spec_of(h)
        assert main(["query", str(bundle5v), "--matrix", spec.matrix_str, "--ops", spec.ops_str,
                     "--epochs", "4", "--json"]) == 0
        obj = json.loads(capsys.readouterr().out)
        assert obj["arch_hash"] == h and obj["source"] == "imported"
        assert obj["energy (kWh)"] == final["energy (kWh)"]
        assert obj["validation_accuracy"] == final["validation_accuracy"]
        assert obj["energy_j"] == pytest.approx(final["energy (kWh)"] * 3.6e6 / 1.59)
    # bit for bit for every run: the bundle keeps the published kWh (kWh → J → kWh is lossy)
    for h, r in ecnas_5v_results.items():
        _, computed = bench.get_metrics_from_hash(h)
        assert bench.query(bench.spec_of(h), 4, 1)["energy (kWh)"] \
            == computed[4][0]["final_energy (kWh)"] == r["evaluation_results"][-1]["energy (kWh)"]
        assert computed[4][0]["halfway_energy (kWh)"] == r["evaluation_results"][1]["energy (kWh)"]


def test_arrays_view(bundle5v):
    bench = Benchmark.load(bundle5v)
    arr = bench.arrays(4)
    assert len(arr["energy_j"]) == len(bench) == 2532
    i = bench.index_of(arr["arch_hash"][10])
    assert arr["energy_j"][i] == bench.query(bench.spec_of(arr["arch_hash"][10]), 4, 1)["energy_j"]
    with pytest.raises(ValueError):
        arr["energy_j"][0] = 0.0  # read-only
