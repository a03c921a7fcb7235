"""NAS-Bench-101's training recipe as data, and the schedule arithmetic. No torch here.

What is matched (DOMAIN.md; NAS-Bench-101's ``train.py``/``cifar.py``):

* RMSProp with TensorFlow 1 semantics (:class:`ecnas.trainer.optim.TFRMSprop`): decay 0.9,
  momentum 0.9, epsilon 1.0 *inside* the square root, mean-square slots initialised to 1, the
  learning rate applied inside the momentum accumulator. ``torch.optim.RMSprop`` differs on all
  three points (epsilon outside the root, slots from 0, lr outside the buffer), so it is not used.
* learning rate 0.1 with cosine decay *by step* to 0 over the run's own budget: a 4-epoch run
  and a 108-epoch run each get a full cosine (per-budget schedules, as in NAS-Bench-101).
* weight decay 1e-4 as L2 on the loss: ``loss + 1e-4 · Σ‖w‖²/2`` over all trainable tensors
  (TF's ``l2_loss``), applied as the equivalent gradient term ``1e-4 · w``.
* batch 256; augmentation: per-image standardization, 4-pixel zero padding + random 32×32 crop,
  random horizontal flip; evaluation without augmentation.
* checkpoints at the start, halfway and the end of the budget (configurable fractions).

What is not matched: TPU bfloat16/cross-replica details, TF's input pipeline order and random
streams (so runs are not bit-identical to NAS-Bench-101's), and NAS-Bench-101's step count
rounding (we use ``len(train) // batch_size`` steps per epoch, dropping the last partial batch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ecnas.errors import InputError

# Upper bounds of a run's size: far above any NAS-Bench use (budgets up to 108 epochs, 3
# repeats), low enough that a typo (1e9, an extra 0 or three) is refused in one line instead of
# starting a job that never ends.
#: the longest training budget, epochs
MAX_BUDGET_EPOCHS = 1000
#: the most repeats of one architecture and budget
MAX_REPEATS = 100
#: the most unmetered warm-up steps before a run
MAX_WARMUP_STEPS = 100_000

DEFAULT_CHECKPOINTS = (0.0, 0.5, 1.0)


@dataclass(frozen=True)
class Recipe:
    """Optimizer, schedule and augmentation of a run (NAS-Bench-101's values by default)."""

    learning_rate: float = 0.1
    rmsprop_decay: float = 0.9
    momentum: float = 0.9
    epsilon: float = 1.0
    weight_decay: float = 1e-4
    batch_size: int = 256
    pad: int = 4
    flip: bool = True
    schedule: str = "cosine"  # cosine by step over the run's budget, to 0

    def __post_init__(self) -> None:
        for name in ("learning_rate", "epsilon"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise InputError(f"{name} must be a positive number, got {v!r}")
        for name in ("rmsprop_decay", "momentum"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0 <= v < 1):
                raise InputError(f"{name} must lie in [0, 1), got {v!r}")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise InputError(f"weight_decay must be ≥ 0, got {self.weight_decay!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise InputError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if self.schedule not in ("cosine", "constant"):
            raise InputError(f"schedule must be 'cosine' or 'constant', got {self.schedule!r}")


@dataclass(frozen=True)
class NetworkDefaults:
    """Defaults per dataset: the full NAS-Bench-101 network for CIFAR-10, a small one for the
    embedded dataset (so a run finishes on a CPU in seconds to minutes)."""

    stem_channels: int
    num_stacks: int
    cells_per_stack: int
    batch_size: int
    learning_rate: float
    # BatchNorm moving-average decay, TF convention (PyTorch momentum = 1 − this). NAS-Bench-101's
    # 0.997 needs hundreds of steps before the moving statistics are usable for evaluation; the
    # embedded dataset has 18 steps per epoch, so its default is 0.9.
    bn_decay: float


DATASET_DEFAULTS = {
    "cifar10": NetworkDefaults(stem_channels=128, num_stacks=3, cells_per_stack=3,
                               batch_size=256, learning_rate=0.1, bn_decay=0.997),
    "embedded": NetworkDefaults(stem_channels=16, num_stacks=3, cells_per_stack=1,
                                batch_size=64, learning_rate=0.1, bn_decay=0.9),
}


def learning_rate_at(step: int, total_steps: int, base_lr: float, schedule: str = "cosine") -> float:
    """NAS-Bench-101's ``0.5 · lr · (1 + cos(π · step / total_steps))`` (0 at the end)."""
    if schedule == "constant" or total_steps <= 0:
        return base_lr
    progress = min(max(step / total_steps, 0.0), 1.0)
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * progress))


def parse_checkpoints(text: str | tuple[float, ...] | list[float]) -> tuple[float, ...]:
    """``"0,0.5,1"`` → ``(0.0, 0.5, 1.0)``: sorted, unique fractions of the budget in [0, 1]."""
    if isinstance(text, str):
        parts = [p.strip() for p in text.split(",") if p.strip()]
        try:
            values = [float(p) for p in parts]
        except ValueError as exc:
            raise InputError(f"--checkpoints {text!r}: expected comma-separated fractions of "
                             "the budget such as 0,0.5,1") from exc
    else:
        values = [float(v) for v in text]
    if not values:
        raise InputError("checkpoints: at least one fraction of the budget is needed (e.g. 0,0.5,1)")
    for v in values:
        if not (math.isfinite(v) and 0.0 <= v <= 1.0):
            raise InputError(f"checkpoint {v!r} is not a fraction of the budget in [0, 1]")
    return tuple(sorted(set(values)))


def checkpoint_steps(fractions: tuple[float, ...], total_steps: int) -> list[int]:
    """The optimizer step after which each checkpoint is taken (0 = before training)."""
    return sorted({round(f * total_steps) for f in fractions})
