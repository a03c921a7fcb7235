"""The loads ``ecnas calibrate`` puts on a device, and its schedule of load steps.

A *burn* is ``work(seconds)``: keep the device busy for that long. :func:`at_level` runs a
burn for a fraction of each step and rests for the rest, so a level of 0.5 averages half
load over any interval a few poll periods long. :data:`STEP_PROGRAM` is the steps phase: load
levels held for irregular lengths of time, so the power has several sharp, unevenly spaced
edges — what lets the fit separate gain from offset at more than two levels and find a
reference meter's clock shift without ambiguity (a periodic load would fit at many shifts).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from ecnas.errors import InputError

Burn = Callable[[float], None]

#: The steps phase: (load level 0..1, fraction of --steps-s). Irregular on purpose.
STEP_PROGRAM: tuple[tuple[float, float], ...] = (
    (0.0, 0.15), (1.0, 0.10), (0.5, 0.20), (0.0, 0.10), (1.0, 0.15), (0.25, 0.15), (0.0, 0.15),
)


def numpy_burn(size: int = 384) -> Burn:
    """CPU load: numpy matrix multiplies (multi-threaded BLAS) for the given seconds."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size))
    b = rng.standard_normal((size, size))

    def work(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            a @ b  # noqa: B018 - the product is the load

    return work


def torch_burn(device_index: int, size: int = 4096) -> Burn:
    """GPU load: torch matrix multiplies on ``cuda:device_index`` (the meter's ``gpu:i`` is
    the i-th visible GPU, which is what torch calls ``cuda:i``), synchronized per call."""
    import torch

    if not torch.cuda.is_available():
        raise InputError("calibrate: torch sees no CUDA device for the GPU load test")
    dev = torch.device("cuda", device_index)
    a = torch.randn(size, size, device=dev)
    b = torch.randn(size, size, device=dev)

    def work(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            torch.matmul(a, b)
            torch.cuda.synchronize(dev)  # energy must land in this window

    return work


def at_level(burn: Burn, level: float) -> Burn | None:
    """``burn`` for ``level`` of each step and rest the remainder (None: rest only)."""
    if level <= 0:
        return None
    if level >= 1:
        return burn
    rest = threading.Event()

    def work(seconds: float) -> None:
        burn(level * seconds)
        rest.wait((1 - level) * seconds)

    return work


def step_segments(steps_s: float) -> list[tuple[float, float]]:
    """:data:`STEP_PROGRAM` scaled to ``steps_s``: (level, seconds) per segment."""
    return [(level, share * steps_s) for level, share in STEP_PROGRAM]
