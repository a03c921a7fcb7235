"""Batch preprocessing on tensors: per-image standardization, pad-and-crop, horizontal flip.

Works on a whole uint8 batch at once (one gather for crop and flip), so the input pipeline is a
small share of a CPU training step and needs no DataLoader workers.
"""

from __future__ import annotations

import math

import torch


def standardize(images: torch.Tensor) -> torch.Tensor:
    """TF's ``per_image_standardization``: (x − mean) / max(std, 1/√n) per image."""
    x = images.float()
    n = x[0].numel()
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    std = x.std(dim=(1, 2, 3), keepdim=True, unbiased=False)
    return (x - mean) / std.clamp_min(1.0 / math.sqrt(n))


def pad_crop_flip(x: torch.Tensor, pad: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad by ``pad``, crop back to the input size at a random offset, flip half the
    images left-right; offsets and flips are drawn from ``generator``."""
    b, c, h, w = x.shape
    if pad == 0 and not flip:
        return x
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad)) if pad else x
    oy = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator)
    ox = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator)
    rows = oy + torch.arange(h)
    cols = torch.arange(w).expand(b, w)
    if flip:
        flipped = torch.rand(b, 1, generator=generator) < 0.5
        cols = torch.where(flipped, (w - 1) - cols, cols)
    cols = ox + cols
    batch = torch.arange(b)[:, None, None, None]
    chan = torch.arange(c)[None, :, None, None]
    return padded[batch, chan, rows[:, None, :, None], cols[:, None, None, :]]
