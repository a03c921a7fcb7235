"""Analytic costs of a NAS-Bench-101 network: trainable parameters and forward FLOPs. No torch.

The channel rules are NAS-Bench-101's ``compute_vertex_channels`` (DOMAIN.md), so the counts
equal those of the PyTorch build in ``ecnas.trainer.network`` and EC-NAS's recorded
``trainable_params``. Everything is pure Python on small lists: a few tens of microseconds per
cell, fast enough to cost all 423k cells of the 7-vertex space.

FLOPs convention: one multiply-add = 2 FLOPs, counted for every convolution and the dense
layer (what ``torch.utils.flop_counter`` counts). BatchNorm, ReLU, pooling, additions and the
dense bias are not counted (together well under 1% of the total for the default network).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ecnas.errors import InputError
from ecnas.space.spec import CONV1X1, CONV3X3, MAXPOOL3X3, ModelSpec

#: kernel size of each op's convolution (max-pool has none)
KERNEL = {CONV3X3: 3, CONV1X1: 1, MAXPOOL3X3: 0}


@dataclass(frozen=True)
class NetworkShape:
    """The macro skeleton around the cells (NAS-Bench-101's defaults)."""

    stem_channels: int = 128
    num_stacks: int = 3
    cells_per_stack: int = 3
    num_classes: int = 10
    in_channels: int = 3

    def __post_init__(self) -> None:
        for name in ("stem_channels", "num_stacks", "cells_per_stack", "num_classes", "in_channels"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")

    def cell_channels(self) -> list[tuple[int, int, int]]:
        """(cell input channels, cell output channels, stack index) for every cell in order.

        Before every stack but the first a 2×2/2 max-pool halves the resolution and the
        channel count doubles; the first cell of that stack maps C to 2C.
        """
        out = []
        channels = self.stem_channels
        for stack in range(self.num_stacks):
            cin = channels
            if stack > 0:
                channels *= 2
            for _ in range(self.cells_per_stack):
                out.append((cin, channels, stack))
                cin = channels
        return out

    @property
    def final_channels(self) -> int:
        """Channels of the last stack, which feed the classifier: the stem's, doubled at every
        stack after the first."""
        return self.stem_channels * 2 ** (self.num_stacks - 1)


def _adjacency(spec: ModelSpec) -> tuple[list[list[int]], list[str]]:
    if not spec.valid:
        raise InputError(f"invalid spec {spec.matrix_str} [{spec.ops_str}]: {spec.invalid_reason}")
    return spec.matrix.tolist(), list(spec.ops)


def vertex_channels(matrix: Sequence[Sequence[int]], in_channels: int, out_channels: int) -> list[int]:
    """Output channels of every vertex of a pruned cell (NAS-Bench-101's rule).

    Vertices feeding ``output`` split ``out_channels`` evenly (the remainder goes one by one to
    the first ones); every other interior vertex takes the largest count among the interior
    vertices it feeds. Vertex 0 carries the cell input's channels.
    """
    n = len(matrix)
    ch = [0] * n
    ch[0] = in_channels
    ch[n - 1] = out_channels
    if n == 2:
        return ch
    last = n - 1
    fan_in = sum(matrix[v][last] for v in range(1, last))
    if fan_in == 0:
        raise InputError("no interior vertex feeds output: is the cell pruned?")
    share, extra = divmod(out_channels, fan_in)
    for v in range(1, last):
        if matrix[v][last]:
            ch[v] = share + (1 if extra > 0 else 0)
            extra -= 1
    for v in range(n - 3, 0, -1):
        if not matrix[v][last]:
            row = matrix[v]
            ch[v] = max((ch[d] for d in range(v + 1, last) if row[d]), default=0)
    if share == 0 and any(c == 0 for c in ch[1:last]):
        raise InputError(
            f"{out_channels} output channels cannot be split over {fan_in} vertices feeding output"
        )
    return ch


def _cell_params(matrix: list[list[int]], ops: list[str], cin: int, cout: int) -> int:
    ch = vertex_channels(matrix, cin, cout)
    n = len(matrix)
    last = n - 1
    total = 0
    for v in range(1, last):
        c = ch[v]
        if matrix[0][v]:  # 1x1 conv-BN-ReLU projection of the cell input
            total += cin * c + 2 * c
        k = KERNEL[ops[v]]
        if k:
            total += k * k * c * c + 2 * c
    if matrix[0][last]:
        total += cin * cout + 2 * cout
    return total


def _cell_macs(matrix: list[list[int]], ops: list[str], cin: int, cout: int) -> int:
    """Multiply-adds of one cell per output pixel (cells keep the resolution)."""
    ch = vertex_channels(matrix, cin, cout)
    last = len(matrix) - 1
    total = 0
    for v in range(1, last):
        c = ch[v]
        if matrix[0][v]:
            total += cin * c
        k = KERNEL[ops[v]]
        if k:
            total += k * k * c * c
    if matrix[0][last]:
        total += cin * cout
    return total


def trainable_params(
    spec: ModelSpec,
    *,
    stem_channels: int = 128,
    num_stacks: int = 3,
    cells_per_stack: int = 3,
    num_classes: int = 10,
    in_channels: int = 3,
) -> int:
    """Trainable parameters of the network built from ``spec`` (conv kernels, BN scale and
    shift, dense weights and bias), equal to EC-NAS's ``trainable_params`` at the defaults."""
    shape = NetworkShape(stem_channels, num_stacks, cells_per_stack, num_classes, in_channels)
    matrix, ops = _adjacency(spec)
    total = 9 * in_channels * stem_channels + 2 * stem_channels  # stem conv3x3-BN-ReLU
    memo: dict[tuple[int, int], int] = {}
    for cin, cout, _ in shape.cell_channels():
        key = (cin, cout)
        if key not in memo:
            memo[key] = _cell_params(matrix, ops, cin, cout)
        total += memo[key]
    final = shape.final_channels
    return total + final * num_classes + num_classes


def spatial_sizes(image_size: int, num_stacks: int) -> list[int]:
    """Feature-map side per stack: 'same' 2×2/2 pooling gives ceil(n / 2)."""
    sizes = [image_size]
    for _ in range(1, num_stacks):
        sizes.append(-(-sizes[-1] // 2))
    return sizes


def forward_flops(
    spec: ModelSpec,
    *,
    image_size: int = 32,
    stem_channels: int = 128,
    num_stacks: int = 3,
    cells_per_stack: int = 3,
    num_classes: int = 10,
    in_channels: int = 3,
) -> float:
    """Forward FLOPs per image (2 per multiply-add of convolutions and the dense layer)."""
    if not isinstance(image_size, int) or image_size < 1:
        raise InputError(f"image_size must be a positive integer, got {image_size!r}")
    shape = NetworkShape(stem_channels, num_stacks, cells_per_stack, num_classes, in_channels)
    matrix, ops = _adjacency(spec)
    sizes = spatial_sizes(image_size, num_stacks)
    macs = 9 * in_channels * stem_channels * image_size * image_size
    memo: dict[tuple[int, int], int] = {}
    for cin, cout, stack in shape.cell_channels():
        key = (cin, cout)
        if key not in memo:
            memo[key] = _cell_macs(matrix, ops, cin, cout)
        macs += memo[key] * sizes[stack] * sizes[stack]
    macs += shape.final_channels * num_classes
    return float(2 * macs)
