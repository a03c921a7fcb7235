"""Space room benchmarks: enumeration, sampling, iso-hashing, analytic costs, network build.

Full scale: ``python3 -m pytest -q benchmarks/bench_space.py``. With ``ECNAS_BENCH_QUICK=1``
the full 7-vertex enumeration shrinks to the 6-vertex space.
"""

import os

import pytest

from ecnas.space import ModelSpec, count_cells, enumerate_cells, sample_cells
from ecnas.space.cost import forward_flops, trainable_params

QUICK = os.environ.get("ECNAS_BENCH_QUICK") == "1"
N_CELLS = 1000


@pytest.fixture(scope="module")
def cells_7v():
    """1,000 cells drawn uniformly from the 7-vertex space (seed 0)."""
    return sample_cells(N_CELLS, seed=0)


def test_enumerate_5v(benchmark):
    cells = benchmark(enumerate_cells, 5, 9)
    benchmark.extra_info["cells"] = len(cells)


def test_enumerate_7v(benchmark):
    max_v = 6 if QUICK else 7
    cells = benchmark.pedantic(enumerate_cells, args=(max_v, 9), rounds=3, iterations=1)
    benchmark.extra_info["cells"] = len(cells)
    benchmark.extra_info["max_vertices"] = max_v


def test_count_cells_7v(benchmark):
    benchmark.extra_info["cells"] = benchmark(count_cells, 7, 9)


def test_sample_1000_cells_7v(benchmark):
    cells = benchmark(sample_cells, N_CELLS, 0)
    benchmark.extra_info["cells"] = len(cells)


def test_spec_checked_construction(benchmark, cells_7v):
    raw = [(c.matrix.copy(), list(c.ops)) for c in cells_7v]
    benchmark(lambda: [ModelSpec(m, o) for m, o in raw])
    benchmark.extra_info["per_cell_us"] = benchmark.stats.stats.mean / N_CELLS * 1e6


def test_iso_hash(benchmark, cells_7v):
    benchmark(lambda: [c.hash() for c in cells_7v])
    benchmark.extra_info["per_cell_us"] = benchmark.stats.stats.mean / N_CELLS * 1e6


def test_trainable_params(benchmark, cells_7v):
    benchmark(lambda: [trainable_params(c) for c in cells_7v])
    benchmark.extra_info["per_cell_us"] = benchmark.stats.stats.mean / N_CELLS * 1e6


def test_forward_flops(benchmark, cells_7v):
    benchmark(lambda: [forward_flops(c) for c in cells_7v])
    benchmark.extra_info["per_cell_us"] = benchmark.stats.stats.mean / N_CELLS * 1e6


def test_build_full_size_network(benchmark, cells_7v):
    from ecnas.trainer.network import build_network

    spec = cells_7v[0]
    benchmark.pedantic(build_network, args=(spec,), rounds=3, iterations=1)
