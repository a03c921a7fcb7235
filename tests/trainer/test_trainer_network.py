"""The PyTorch build: parameter counts equal EC-NAS's, FLOPs equal torch's own counter."""

import random

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from ecnas.errors import InputError
from ecnas.space import ModelSpec
from ecnas.space.cost import forward_flops, trainable_params
from ecnas.trainer.network import (
    BN_EPSILON,
    BN_MOMENTUM,
    build_network,
    count_trainable_params,
)

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


def _sample_5v(graphs, k, seed):
    """k 5V architectures chosen by seed, plus the smallest cells (2 and 3 vertices)."""
    by_size = sorted(graphs, key=lambda h: (len(graphs[h][1]), h))
    rng = random.Random(seed)
    return by_size[:2] + rng.sample(by_size[2:], k)


def test_full_size_counts_equal_ecnas(ecnas_5v_graphs, ecnas_5v_results):
    # built on the meta device: the same modules and parameter shapes, no memory filled or
    # initialized (a full-size network takes ~2.5 s to initialize on 2 cores, here ms)
    for h in _sample_5v(ecnas_5v_graphs, 6, seed=4):
        with torch.device("meta"):
            net = build_network(ModelSpec(*ecnas_5v_graphs[h]))
        assert count_trainable_params(net) == ecnas_5v_results[h]["trainable_params"], h


def test_full_size_readme_cell():
    with torch.device("meta"):
        net = build_network(ModelSpec(README_MATRIX, README_OPS))
    assert count_trainable_params(net) == 2_694_282
    assert next(net.parameters()).is_meta  # the count did not come from real tensors


def test_every_5v_cell_scaled_down_matches_the_analytic_count(ecnas_5v_graphs):
    # odd channel counts exercise the remainder split and truncation in every cell shape
    for h in _sample_5v(ecnas_5v_graphs, 60, seed=1):
        spec = ModelSpec(*ecnas_5v_graphs[h])
        kw = dict(stem_channels=7, num_stacks=2, cells_per_stack=1, num_classes=3)
        net = build_network(spec, **kw)
        assert count_trainable_params(net) == trainable_params(spec, **kw), h


@pytest.mark.parametrize("image_size", [32, 15])
def test_forward_shape_and_flops_match_torch(ecnas_5v_graphs, image_size):
    kw = dict(stem_channels=8, num_stacks=3, cells_per_stack=1, num_classes=10)
    for h in _sample_5v(ecnas_5v_graphs, 6, seed=2):
        spec = ModelSpec(*ecnas_5v_graphs[h])
        net = build_network(spec, **kw).eval()
        x = torch.randn(2, 3, image_size, image_size)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            y = net(x)
        assert y.shape == (2, 10)
        assert counter.get_total_flops() / 2 == forward_flops(spec, image_size=image_size, **kw)


def test_seven_vertex_cell_with_truncation_trains_a_step():
    # 3 vertices feed output with 7 channels (3,2,2); vertex 1 (3 ch) also feeds vertex 4 (2 ch)
    m = [
        [0, 1, 1, 0, 0, 0, 0],
        [0, 0, 0, 0, 1, 0, 1],
        [0, 0, 0, 1, 0, 0, 0],
        [0, 0, 0, 0, 0, 1, 0],
        [0, 0, 0, 0, 0, 0, 1],
        [0, 0, 0, 0, 0, 0, 1],
        [0, 0, 0, 0, 0, 0, 0],
    ]
    spec = ModelSpec(m, "input,conv3x3-bn-relu,conv1x1-bn-relu,maxpool3x3,conv3x3-bn-relu,"
                        "conv1x1-bn-relu,output")
    assert spec.valid and spec.num_vertices == 7
    net = build_network(spec, stem_channels=7, num_stacks=1, cells_per_stack=2, num_classes=2)
    assert net.cells[0].channels == [7, 3, 2, 2, 2, 2, 7]
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = torch.randn(4, 3, 9, 9), torch.tensor([0, 1, 0, 1])
    loss = torch.nn.functional.cross_entropy(net(x), y)
    loss.backward()
    before = [p.detach().clone() for p in net.parameters()]
    opt.step()
    assert all(p.grad is not None for p in net.parameters())
    assert any(not torch.equal(b, p) for b, p in zip(before, net.parameters(), strict=True))


def test_batchnorm_and_conv_conventions():
    net = build_network(ModelSpec(README_MATRIX, README_OPS), stem_channels=4, num_stacks=1,
                        cells_per_stack=1)
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert bns and all(b.momentum == BN_MOMENTUM == pytest.approx(0.003) for b in bns)
    assert all(b.eps == BN_EPSILON == 1e-5 and b.affine for b in bns)
    assert convs and all(c.bias is None for c in convs)
    assert net.classifier.bias is not None and torch.count_nonzero(net.classifier.bias) == 0


def test_invalid_spec_is_refused():
    with pytest.raises(InputError, match="not connected"):
        build_network(ModelSpec("0000", "input,output"))


def test_sampled_7v_cells_build_run_and_match_the_analytic_count():
    from ecnas.space import sample_cells

    kw = dict(stem_channels=5, num_stacks=2, cells_per_stack=1, num_classes=3)
    for spec in sample_cells(40, seed=3):
        net = build_network(spec, **kw)
        assert count_trainable_params(net) == trainable_params(spec, **kw), spec
        with torch.no_grad():
            assert net.eval()(torch.randn(1, 3, 6, 6)).shape == (1, 3)
