"""The mutation graph (ecnas.benchmark.moo.mutation) on the real EC-NAS 5V table: its fast
bit-mask pruning gives the same mutants as ModelSpec's pruning, and the reverse graph is the
forward graph transposed."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from ecnas.benchmark.moo.mutation import mutation_graph
from ecnas.errors import InputError
from ecnas.space import OPS, ModelSpec


@pytest.fixture(scope="module")
def bench(ecnas_5v_dir):
    from ecnas.benchmark import Benchmark
    from ecnas.interop import import_ecnas

    return Benchmark.from_table(import_ecnas(ecnas_5v_dir), seed=0)


def _reference_mutants(bench, a: int, largest: int) -> set[int]:
    """The forward mutants of cell ``a`` through ModelSpec (numpy pruning, validity rules and
    the benchmark's own lookup): the slow path the graph must agree with."""
    spec = bench.spec_of(bench.layout.arch_hash[a])
    n = len(spec.ops)
    children = []
    for i in range(n):
        for j in range(i + 1, n):
            m = spec.matrix.copy()
            m[i, j] = 1 - m[i, j]
            children.append((m, spec.ops))
    for v in range(1, n - 1):
        children += [(spec.matrix, (*spec.ops[:v], op, *spec.ops[v + 1:]))
                     for op in OPS if op != spec.ops[v]]
    for pos in range(1, n if n < largest else 1):
        for op in OPS:
            for i in range(pos):
                for j in range(pos, n):
                    m = np.zeros((n + 1, n + 1), dtype=int)
                    idx = [k if k < pos else k + 1 for k in range(n)]
                    m[np.ix_(idx, idx)] = spec.matrix
                    m[i, pos] = m[pos, j + 1] = 1
                    children.append((m, (*spec.ops[:pos], op, *spec.ops[pos:])))
    out = set()
    for m, ops in children:
        child = ModelSpec(m, list(ops))
        if child.valid:
            with contextlib.suppress(InputError):  # valid, but not a cell the table holds
                out.add(int(bench._arch_index(child)))
    out.discard(a)
    return out


def test_fast_graph_matches_modelspec_pruning(bench):
    g = mutation_graph(bench)
    assert mutation_graph(bench) is g  # built once per benchmark
    largest = max(len(str(o).split(",")) for o in bench.layout.ops.tolist())
    rng = np.random.default_rng(0)
    for a in rng.choice(len(bench), size=120, replace=False).tolist():
        assert set(g.forward[a].tolist()) == _reference_mutants(bench, a, largest), a


def test_reverse_is_forward_transposed_and_reaches_the_large_cells(bench):
    g = mutation_graph(bench)
    edges = {(a, int(b)) for a, nb in enumerate(g.forward) for b in nb}
    assert edges == {(int(b), a) for a, nb in enumerate(g.reverse) for b in nb}
    assert all(a not in nb for a, nb in enumerate(g.forward))
    # input -> output: three forward mutants (one op inserted), hundreds of cells reduce to it
    tiny = bench.index_of(next(h for h, o in zip(bench.layout.arch_hash.tolist(),
                                                    bench.layout.ops.tolist(), strict=True)
                               if o == "input,output"))
    assert len(g.forward[tiny]) == 3 and len(g.reverse[tiny]) > 100
    two = g.two_step(tiny)
    assert set(g.forward[tiny].tolist()) <= set(two.tolist())
