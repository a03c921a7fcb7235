"""Pruning edge cases: disconnected cells, dangling vertices, input→output only, limits."""

import numpy as np
import pytest

from ecnas.errors import InputError
from ecnas.space import ModelSpec
from ecnas.space.cost import trainable_params

C3, C1, MP = "conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3"


def ops(*inner):
    return ["input", *inner, "output"]


def test_disconnected_input_and_output_is_invalid():
    # 0→1 and 2→3 but no path from input to output
    m = [[0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]]
    spec = ModelSpec(m, ops(C3, C1))
    assert not spec.valid
    assert spec.invalid_reason == "input and output are not connected"


def test_vertex_without_input_is_pruned():
    # vertex 2 feeds output but nothing feeds it
    m = [[0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]]
    spec = ModelSpec(m, ops(C3, MP))
    assert spec.valid and spec.ops == ("input", C3, "output")
    assert spec.matrix.tolist() == [[0, 1, 0], [0, 0, 1], [0, 0, 0]]


def test_vertex_without_output_is_pruned_with_its_edges():
    # vertex 1 is a dead end; input→2→output survives
    m = [[0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]]
    spec = ModelSpec(m, ops(MP, C1))
    assert spec.valid and spec.ops == ("input", C1, "output") and spec.num_edges == 2


def test_input_to_output_only():
    spec = ModelSpec("0100", "input,output")
    assert spec.valid and spec.num_vertices == 2 and spec.num_edges == 1
    # interior vertices that reach neither end collapse to the same cell and hash
    m = np.zeros((5, 5), dtype=int)
    m[0, 4] = 1
    m[1, 2] = 1
    pruned = ModelSpec(m, ops(C3, C1, MP))
    assert pruned == spec and pruned.hash() == spec.hash()
    assert trainable_params(pruned) == trainable_params(spec)


def test_limits_apply_after_pruning():
    # 8 vertices, but one dangles: 7 after pruning, valid
    m = np.zeros((8, 8), dtype=int)
    for i in range(6):
        m[i, i + 1] = 1
    m[6, 7] = 1
    m[0, 3] = 1  # 8 edges kept
    m[2, 5] = 0
    dangling = m.copy()
    spec = ModelSpec(m, ops(C3, C3, C3, C3, C3, C3))
    assert not spec.valid and "8 vertices" in spec.invalid_reason
    dangling[:, 6] = 0
    dangling[5, 7] = 1  # vertex 6 now has no input: pruned away
    spec = ModelSpec(dangling, ops(C3, C3, C3, C3, C3, MP))
    assert spec.valid and spec.num_vertices == 7


def test_too_many_edges_is_invalid():
    m = np.triu(np.ones((6, 6), dtype=int), 1)  # 15 edges
    spec = ModelSpec(m, ops(C3, C1, MP, C3))
    assert not spec.valid and "15 edges" in spec.invalid_reason


@pytest.mark.parametrize("bad", ["input,conv3x3-bn-relu,conv1x1-bn-relu,output", "input,output"])
def test_op_count_must_match_vertices(bad):
    with pytest.raises(InputError, match="3 vertices"):
        ModelSpec("010001000", bad)
