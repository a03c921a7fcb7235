"""Tables benchmarks: import the EC-NAS 5V tree (2,532 runs), read/import it as TFRecord, and
check a 5-million-row table (ECNAS_BENCH_QUICK=1: 300k rows).

Run: python3 -m pytest -q benchmarks/bench_tables.py
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecnas.interop import import_ecnas
from ecnas.interop.proto import metrics_from_results
from ecnas.interop.tfrecord import EcnasRecord, write_records
from ecnas.tables import read_table, write_table
from ecnas.tables.checks import run_checks

QUICK = os.environ.get("ECNAS_BENCH_QUICK") == "1"
BIG_ROWS = 300_000 if QUICK else 5_000_000


@pytest.fixture(scope="module")
def tree(ecnas_5v_dir) -> Path:
    return ecnas_5v_dir


@pytest.fixture(scope="module")
def table(tree) -> pd.DataFrame:
    return import_ecnas(tree)


def test_import_5v_tree(benchmark, tree):
    df = benchmark.pedantic(import_ecnas, args=(tree,), rounds=3, iterations=1)
    benchmark.extra_info["runs"] = int(df["arch_hash"].nunique())
    benchmark.extra_info["rows"] = len(df)


def test_import_5v_tfrecord(benchmark, tree, tmp_path_factory):
    import json

    from ecnas.space import ModelSpec
    from ecnas.space.spec import OP_OF_LABEL

    graphs = json.loads((tree / "graphs" / "generated_graphs_5V9E.json").read_text())
    records = []
    for path in sorted(tree.glob("train_model_results/energy/5V9E/4_epochs/*/*/repeat_1/results.json")):
        h = path.parent.parent.name
        spec = ModelSpec(graphs[h][0], [OP_OF_LABEL[x] for x in graphs[h][1]])
        results = json.loads(path.read_text())
        records.append(EcnasRecord(h, 4, spec.matrix_str, spec.ops_str, metrics_from_results(results)))
    path = write_records(tmp_path_factory.mktemp("tf") / "ecnas-5v.tfrecord",
                         (r.to_bytes() for r in records))
    df = benchmark.pedantic(import_ecnas, args=(path,), rounds=3, iterations=1)
    benchmark.extra_info["file_mb"] = round(path.stat().st_size / 1e6, 2)
    benchmark.extra_info["rows"] = len(df)


@pytest.fixture(scope="module")
def big(table) -> pd.DataFrame:
    """The 5V table tiled to BIG_ROWS rows: copy k is repeat k, energies jittered ±1 %."""
    copies = -(-BIG_ROWS // len(table))
    rng = np.random.default_rng(0)
    parts = []
    for k in range(copies):
        part = table.copy()
        part["repeat"] = k + 1
        jitter = np.repeat(rng.uniform(0.99, 1.01, len(part) // 3), 3)
        for c in ("energy_j", "gpu_energy_j", "cpu_energy_j"):
            part[c] = part[c].to_numpy() * jitter
        part["energy_j"] = part["gpu_energy_j"] + part["cpu_energy_j"]
        parts.append(part)
    df = pd.concat(parts, ignore_index=True).iloc[:BIG_ROWS]
    df.attrs = table.attrs
    return df


def test_check_big_table(benchmark, big):
    report = benchmark.pedantic(run_checks, args=(big,), rounds=1 if not QUICK else 2,
                                iterations=1)
    benchmark.extra_info["rows"] = len(big)
    benchmark.extra_info["errors"] = report.to_dict()["errors"]


def test_write_read_parquet_big(benchmark, big, tmp_path_factory):
    path = tmp_path_factory.mktemp("pq") / "big.parquet"

    def round_trip():
        write_table(big, path)
        return read_table(path)

    df = benchmark.pedantic(round_trip, rounds=1 if not QUICK else 2, iterations=1)
    benchmark.extra_info["rows"] = len(df)
    benchmark.extra_info["file_mb"] = round(path.stat().st_size / 1e6, 1)
