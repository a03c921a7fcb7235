"""Enumeration and sampling against the real EC-NAS 5V cells and NAS-Bench-101's counts."""

import collections
import itertools

import numpy as np
import pytest

from ecnas.errors import InputError
from ecnas.space import ModelSpec, count_cells, enumerate_cells, sample_cells
from ecnas.space.canonical import full_dag_codes, vertex_tables
from ecnas.space.enumeration import decode_matrices, decode_ops
from ecnas.space.sampling import _canonical_mask


def test_5v_enumeration_is_exactly_the_ecnas_5v_set(ecnas_5v_graphs):
    cells = enumerate_cells(5, 9)
    hashes = [c.hash() for c in cells]
    assert len(hashes) == len(set(hashes)) == 2532
    assert set(hashes) == set(ecnas_5v_graphs)
    # and each cell is the very matrix/labeling EC-NAS (NAS-Bench-101's generator) stored
    assert all([c.matrix.tolist(), c.labels] == ecnas_5v_graphs[h] for c, h in zip(cells, hashes, strict=True))


def test_cells_are_valid_pruned_and_in_nasbench_order():
    cells = enumerate_cells(4, 9)
    assert len(cells) == 91
    for c in cells:
        again = ModelSpec(c.matrix, c.ops)  # the checked constructor agrees
        assert again.valid and again == c and c.num_edges <= 9
    keys = [(c.num_vertices, int(sum(int(c.matrix[x, y]) << (y * (y - 1) // 2 + x)
                                      for y in range(c.num_vertices) for x in range(y))),
             tuple(c.labels)) for c in cells]
    assert keys == sorted(keys)


@pytest.mark.parametrize(
    "max_vertices,max_edges,expected",
    [(2, 9, 1), (3, 9, 7), (4, 9, 91), (5, 9, 2532), (7, 9, 423_624), (7, 1, 1), (4, 3, 1 + 6 + 9)],
)
def test_counts(max_vertices, max_edges, expected):
    # 423,624 is NAS-Bench-101's number of unique cells. (4, 3): in→out; the 3-vertex chain and
    # triangle, 3 ops each; the 4-vertex chain with 9 labelings
    assert count_cells(max_vertices, max_edges) == expected


def test_counts_by_brute_force_hashing_for_small_spaces():
    # NAS-Bench-101's own method: hash every full DAG × labeling, count distinct hashes
    for max_v, max_e in ((4, 9), (5, 6)):
        hashes = set()
        for v in range(2, max_v + 1):
            n_bits = v * (v - 1) // 2
            for bits in range(1 << n_bits):
                m = np.zeros((v, v), dtype=np.int8)
                for y in range(v):
                    for x in range(y):
                        m[x, y] = (bits >> (y * (y - 1) // 2 + x)) & 1
                if m.sum() > max_e or (m[:-1].sum(axis=1) == 0).any() or (m[:, 1:].sum(axis=0) == 0).any():
                    continue
                for lab in itertools.product(range(3), repeat=v - 2):
                    hashes.add(ModelSpec(m, [-1, *lab, -2]).hash())
        cells = enumerate_cells(max_v, max_e)
        assert {c.hash() for c in cells} == hashes


def test_every_class_has_exactly_one_canonical_encoding():
    # Why the sampler is exactly uniform: among all raw encodings of the 5- and 6-vertex
    # cells, the accepted ones are exactly one per class.
    for v, expected in ((5, 2441), (6, 62_010)):
        t = vertex_tables(v)
        full = full_dag_codes(t, 9)
        codes = np.repeat(full, t.num_labelings)
        labels = np.tile(t.label_codes, full.size)
        keep = _canonical_mask(codes, labels, t)
        assert keep.sum() == expected
        if v == 5:
            mats = decode_matrices(codes[keep], t)
            hashes = {ModelSpec(m, decode_ops(int(lab), v)).hash()
                      for m, lab in zip(mats, labels[keep], strict=True)}
            assert len(hashes) == expected


def test_sampling_is_seeded_distinct_and_prefix_stable(ecnas_5v_graphs):
    a = sample_cells(300, seed=7, max_vertices=5)
    assert a == sample_cells(300, seed=7, max_vertices=5)
    assert a[:40] == sample_cells(40, seed=7, max_vertices=5)
    assert a != sample_cells(300, seed=8, max_vertices=5)
    hashes = [c.hash() for c in a]
    assert len(set(hashes)) == 300 and set(hashes) <= set(ecnas_5v_graphs)
    whole = sample_cells(2532, seed=3, max_vertices=5)
    assert {c.hash() for c in whole} == set(ecnas_5v_graphs)


def test_sampling_7v_matches_the_class_shares():
    cells = sample_cells(2000, seed=0)
    assert all(c.valid and c.num_vertices <= 7 and c.num_edges <= 9 for c in cells)
    by_v = collections.Counter(c.num_vertices for c in cells)
    # uniform over classes: 359,082 of 423,624 cells have 7 vertices (84.8%), 62,010 have 6
    assert 0.82 < by_v[7] / 2000 < 0.87
    assert 0.12 < by_v[6] / 2000 < 0.17


def test_sampling_first_draw_is_uniform_over_a_small_space():
    # 7 cells with ≤ 3 vertices; first draws over 700 seeds, chi-square at p ≈ 0.001
    counts = collections.Counter(sample_cells(1, seed=s, max_vertices=3)[0].hash() for s in range(700))
    assert len(counts) == 7
    chi2 = sum((c - 100) ** 2 / 100 for c in counts.values())
    assert chi2 < 22.5


def test_bad_arguments_are_input_errors():
    with pytest.raises(InputError, match="max_vertices"):
        enumerate_cells(8, 9)
    with pytest.raises(InputError, match="max_edges"):
        count_cells(7, 10)
    with pytest.raises(InputError, match="only 7"):
        sample_cells(8, seed=0, max_vertices=3)
    with pytest.raises(InputError, match="seed"):
        sample_cells(1, seed=1.5)
    assert sample_cells(0, seed=1) == []
