"""The iso-hash must equal EC-NAS's for every architecture in the real 5V data."""

import pytest

from ecnas.errors import InputError
from ecnas.space import ModelSpec


def test_every_5v_directory_hash_is_reproduced(ecnas_5v_graphs):
    mismatches = [h for h, (m, labels) in ecnas_5v_graphs.items() if ModelSpec(m, labels).hash() != h]
    assert len(ecnas_5v_graphs) == 2532
    assert mismatches == []


def test_isomorphic_cells_share_a_hash():
    # Swap the two interior vertices of a diamond: same graph, different vertex order.
    a = ModelSpec("0110000010000100000100000", "input,conv3x3-bn-relu,conv1x1-bn-relu,maxpool3x3,output")
    b = ModelSpec("0110000010000100000100000", "input,conv1x1-bn-relu,conv3x3-bn-relu,maxpool3x3,output")
    assert a.valid and b.valid
    assert a.hash() == b.hash()


def test_string_and_array_forms_agree():
    s1 = ModelSpec("001001000", "input,conv3x3-bn-relu,output")
    s2 = ModelSpec([[0, 0, 1], [0, 0, 1], [0, 0, 0]], [-1, 0, -2])
    # vertex 1 has no input: pruned away, leaving input->output
    assert s1 == s2
    assert s1.matrix_str == "0100"
    assert s1.ops == ("input", "output")


@pytest.mark.parametrize(
    "matrix,ops,reason",
    [
        ("0100", "input,conv3x3-bn-relu", "start with 'input'"),
        ("0000", "input,output", "not connected"),
        ("0010", "input,output", "upper-triangular"),
    ],
)
def test_invalid_specs_say_why(matrix, ops, reason):
    spec = ModelSpec(matrix, ops)
    assert not spec.valid
    assert reason in spec.invalid_reason
    with pytest.raises(InputError):
        spec.hash()


def test_malformed_input_is_an_input_error():
    with pytest.raises(InputError, match="square"):
        ModelSpec("010", "input,output")
    with pytest.raises(InputError, match="unknown op"):
        ModelSpec("0100", "input,conv5x5")
