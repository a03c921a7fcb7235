"""Analytic parameter counts and FLOPs against EC-NAS's recorded values and NAS-Bench-101's rules."""

import pytest

from ecnas.errors import InputError
from ecnas.space import ModelSpec
from ecnas.space.cost import (
    NetworkShape,
    forward_flops,
    spatial_sizes,
    trainable_params,
    vertex_channels,
)

# NAS-Bench-101's README example: a 7-vertex cell it reports with 2,694,282 trainable parameters.
README_MATRIX = [
    [0, 1, 1, 1, 0, 1, 0],
    [0, 0, 0, 0, 0, 0, 1],
    [0, 0, 0, 0, 0, 0, 1],
    [0, 0, 0, 0, 1, 0, 0],
    [0, 0, 0, 0, 0, 0, 1],
    [0, 0, 0, 0, 0, 0, 1],
    [0, 0, 0, 0, 0, 0, 0],
]
README_OPS = "input,conv1x1-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,maxpool3x3,output"


def test_every_5v_parameter_count_equals_ecnas(ecnas_5v_graphs, ecnas_5v_results):
    assert len(ecnas_5v_results) == 2532
    wrong = {
        h: (trainable_params(ModelSpec(*ecnas_5v_graphs[h])), r["trainable_params"])
        for h, r in ecnas_5v_results.items()
        if trainable_params(ModelSpec(*ecnas_5v_graphs[h])) != r["trainable_params"]
    }
    assert wrong == {}


def test_seven_vertex_readme_cell():
    spec = ModelSpec(README_MATRIX, README_OPS)
    assert spec.num_vertices == 7 and spec.num_edges == 9
    assert trainable_params(spec) == 2_694_282


def test_input_to_output_only_is_a_projection_per_cell():
    spec = ModelSpec("0100", "input,output")
    stem = 9 * 3 * 128 + 2 * 128
    cells = 3 * (128 * 128 + 256) + (128 * 256 + 512) + 2 * (256 * 256 + 512) \
        + (256 * 512 + 1024) + 2 * (512 * 512 + 1024)
    assert trainable_params(spec) == stem + cells + 512 * 10 + 10


def test_output_channels_split_with_remainder_to_the_first_vertices():
    # three vertices feed output: 128 = 43 + 43 + 42; vertex 1 feeds only vertex 2 -> takes 43
    m = [
        [0, 1, 0, 1, 1, 0],
        [0, 0, 1, 0, 0, 0],
        [0, 0, 0, 0, 0, 1],
        [0, 0, 0, 0, 0, 1],
        [0, 0, 0, 0, 0, 1],
        [0, 0, 0, 0, 0, 0],
    ]
    assert vertex_channels(m, 64, 128) == [64, 43, 43, 43, 42, 128]
    # a vertex feeding several interior vertices takes the largest of them
    m2 = [
        [0, 1, 0, 0, 0],
        [0, 0, 1, 1, 0],
        [0, 0, 0, 0, 1],
        [0, 0, 0, 0, 1],
        [0, 0, 0, 0, 0],
    ]
    assert vertex_channels(m2, 128, 129) == [128, 65, 65, 64, 129]


def test_pruned_vertices_cost_nothing():
    # vertex 2 dangles (no path to output): pruned, so the same count as without it
    with_dangling = ModelSpec([[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0]],
                              "input,conv3x3-bn-relu,conv1x1-bn-relu,output")
    plain = ModelSpec([[0, 1, 0], [0, 0, 1], [0, 0, 0]], "input,conv3x3-bn-relu,output")
    assert with_dangling == plain
    assert trainable_params(with_dangling) == trainable_params(plain)


def test_scaled_down_network_counts():
    spec = ModelSpec([[0, 1, 0], [0, 0, 1], [0, 0, 0]], "input,conv1x1-bn-relu,output")
    # stem 3->8, one stack of one cell 8->8: projection 8*8+16, conv1x1 8*8+16; dense 8*4+4
    n = trainable_params(spec, stem_channels=8, num_stacks=1, cells_per_stack=1, num_classes=4)
    assert n == (9 * 3 * 8 + 16) + (64 + 16) + (64 + 16) + (8 * 4 + 4)


def test_flops_of_input_to_output_cell_by_hand():
    spec = ModelSpec("0100", "input,output")
    f = forward_flops(spec, image_size=8, stem_channels=4, num_stacks=2, cells_per_stack=1,
                      num_classes=2)
    # stem 9*3*4 per pixel on 8x8; cell1 1x1 4->4 on 8x8; cell2 1x1 4->8 on 4x4; dense 8*2
    macs = 9 * 3 * 4 * 64 + 4 * 4 * 64 + 4 * 8 * 16 + 8 * 2
    assert f == 2.0 * macs


def test_spatial_sizes_follow_same_padding():
    assert spatial_sizes(32, 3) == [32, 16, 8]
    assert spatial_sizes(15, 3) == [15, 8, 4]


def test_invalid_spec_and_bad_shape_are_input_errors():
    with pytest.raises(InputError, match="not connected"):
        trainable_params(ModelSpec("0000", "input,output"))
    with pytest.raises(InputError, match="stem_channels"):
        trainable_params(ModelSpec("0100", "input,output"), stem_channels=0)
    with pytest.raises(InputError, match="image_size"):
        forward_flops(ModelSpec("0100", "input,output"), image_size=0)


def test_too_few_channels_for_the_output_split_is_an_input_error():
    m = [[0, 1, 1, 1, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1], [0] * 5]
    spec = ModelSpec(m, "input,conv3x3-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,output")
    with pytest.raises(InputError, match="cannot be split"):
        trainable_params(spec, stem_channels=2, num_stacks=1)


def test_cell_channels_double_per_stack():
    shape = NetworkShape(stem_channels=16, num_stacks=3, cells_per_stack=2)
    assert shape.cell_channels() == [
        (16, 16, 0), (16, 16, 0), (16, 32, 1), (32, 32, 1), (32, 64, 2), (64, 64, 2),
    ]
    assert shape.final_channels == 64


def test_space_and_cost_import_no_torch():
    import subprocess
    import sys

    code = ("import sys, ecnas.space, ecnas.space.cost, ecnas.cli.space; "
            "bad = [m for m in ('torch', 'pandas') if m in sys.modules]; "
            "sys.exit(f'imported {bad}' if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr
