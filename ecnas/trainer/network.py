"""NAS-Bench-101 networks in PyTorch, built faithfully to NAS-Bench-101's ``model_builder``.

Stem conv3x3-BN-ReLU → ``num_stacks`` stacks of ``cells_per_stack`` cells (a 2×2/2 max-pool
and doubled channels before every stack but the first) → global average pool → dense.
Channel rules come from :func:`ecnas.space.cost.vertex_channels`, so
``count_trainable_params(build_network(spec))`` equals :func:`ecnas.space.cost.trainable_params`
and EC-NAS's recorded ``trainable_params``.

Conventions kept from the TensorFlow original: convolutions without bias, 'same' padding;
BatchNorm with scale and shift, epsilon 1e-5 and TF momentum 0.997 (= PyTorch momentum 0.003,
since PyTorch weights the *new* batch statistic); conv kernels initialised with TF's
``variance_scaling_initializer`` (fan-in, truncated normal), the dense layer Glorot-uniform with
zero bias.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ecnas.errors import InputError
from ecnas.space.cost import KERNEL, NetworkShape, vertex_channels
from ecnas.space.spec import MAXPOOL3X3, ModelSpec

BN_MOMENTUM_TF = 0.997
BN_MOMENTUM = 1.0 - BN_MOMENTUM_TF  # PyTorch's convention
BN_EPSILON = 1e-5
# std of a unit normal truncated at ±2σ; TF divides by it so the kept samples have variance 1/fan_in
_TRUNC_STD = 0.87962566103423978


def _init_conv(weight: torch.Tensor) -> None:
    fan_in = weight.shape[1] * weight.shape[2] * weight.shape[3]
    std = math.sqrt(1.0 / fan_in) / _TRUNC_STD
    nn.init.trunc_normal_(weight, mean=0.0, std=std, a=-2 * std, b=2 * std)


class ConvBnRelu(nn.Sequential):
    """k×k convolution (no bias, 'same' padding) → BatchNorm → ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        _init_conv(conv.weight)
        super().__init__(
            conv,
            nn.BatchNorm2d(out_channels, eps=BN_EPSILON, momentum=BN_MOMENTUM),
            nn.ReLU(inplace=False),
        )


class Cell(nn.Module):
    """One NAS-Bench-101 module (cell) for a pruned, valid spec."""

    def __init__(self, spec: ModelSpec, in_channels: int, out_channels: int) -> None:
        super().__init__()
        matrix = spec.matrix.tolist()
        n = len(matrix)
        self.num_vertices = n
        self.matrix = matrix
        self.channels = vertex_channels(matrix, in_channels, out_channels)
        # predecessors of each interior vertex other than the input, in vertex order
        self.preds = [[u for u in range(1, v) if matrix[u][v]] for v in range(n)]
        self.to_output = [v for v in range(1, n - 1) if matrix[v][n - 1]]
        self.projections = nn.ModuleDict()
        self.ops = nn.ModuleDict()
        for v in range(1, n - 1):
            c = self.channels[v]
            if matrix[0][v]:
                self.projections[str(v)] = ConvBnRelu(in_channels, c, 1)
            op = spec.ops[v]
            self.ops[str(v)] = (
                nn.MaxPool2d(3, stride=1, padding=1) if op == MAXPOOL3X3 else ConvBnRelu(c, c, KERNEL[op])
            )
        self.out_projection = ConvBnRelu(in_channels, out_channels, 1) if matrix[0][n - 1] else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The cell's output for ``x`` (N, C_in, H, W): vertex outputs fed forward along the
        matrix, the vertices into the output concatenated, plus the input's projection when the
        input feeds the output directly."""
        values: list[torch.Tensor] = [x]
        for v in range(1, self.num_vertices - 1):
            c = self.channels[v]
            # truncation keeps the first c channels (at most one extra, from the remainder split)
            terms = [values[u][:, :c] for u in self.preds[v]]
            key = str(v)
            if key in self.projections:
                terms.append(self.projections[key](x))
            total = terms[0]
            for t in terms[1:]:
                total = total + t
            values.append(self.ops[key](total))
        if not self.to_output:
            assert self.out_projection is not None  # a pruned valid cell has input→output then
            return self.out_projection(x)
        parts = [values[v] for v in self.to_output]
        out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        if self.out_projection is not None:
            out = out + self.out_projection(x)
        return out


class Network(nn.Module):
    """The NAS-Bench-101 macro network around one cell spec; takes NCHW float images."""

    def __init__(self, spec: ModelSpec, shape: NetworkShape) -> None:
        super().__init__()
        self.spec = spec
        self.shape = shape
        self.stem = ConvBnRelu(shape.in_channels, shape.stem_channels, 3)
        layers: list[nn.Module] = []
        current_stack = 0
        for cin, cout, stack in shape.cell_channels():
            if stack != current_stack:
                # 'same' 2×2/2 pooling: ceil_mode reproduces TF on odd sizes
                layers.append(nn.MaxPool2d(2, stride=2, ceil_mode=True))
                current_stack = stack
            layers.append(Cell(spec, cin, cout))
        self.cells = nn.Sequential(*layers)
        self.classifier = nn.Linear(shape.final_channels, shape.num_classes)
        nn.init.xavier_uniform_(self.classifier.weight)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (N, classes) for NCHW images: stem, cells with pooling between stacks,
        global average pool, linear classifier."""
        x = self.cells(self.stem(x))
        return self.classifier(x.mean(dim=(2, 3)))


def build_network(
    spec: ModelSpec,
    *,
    stem_channels: int = 128,
    num_stacks: int = 3,
    cells_per_stack: int = 3,
    num_classes: int = 10,
    in_channels: int = 3,
) -> Network:
    """The PyTorch network for ``spec`` (NAS-Bench-101 defaults; scale down for small runs)."""
    shape = NetworkShape(stem_channels, num_stacks, cells_per_stack, num_classes, in_channels)
    if not spec.valid:
        raise InputError(f"invalid spec {spec.matrix_str} [{spec.ops_str}]: {spec.invalid_reason}")
    return Network(spec, shape)


def count_trainable_params(module: nn.Module) -> int:
    """Number of trainable parameter entries (what EC-NAS records as ``trainable_params``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
