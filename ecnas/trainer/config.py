"""One training run's settings, :class:`TrainConfig`: the cell, its budget and NAS-Bench-101's
network and recipe sizes, checked on construction. No torch here: a campaign file is checked
(every run's config built once) without loading the trainer.

Configs are plain JSON through ``to_dict``/``from_dict`` so campaigns can ship them to worker
processes and Dask workers; :func:`ecnas.trainer.train.train_architecture` runs one.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from ecnas.errors import InputError
from ecnas.space import ModelSpec
from ecnas.tracker.carbon import check_carbon_intensity
from ecnas.trainer.recipe import (
    DATASET_DEFAULTS,
    DEFAULT_CHECKPOINTS,
    MAX_BUDGET_EPOCHS,
    MAX_REPEATS,
    MAX_WARMUP_STEPS,
    Recipe,
    parse_checkpoints,
)

_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")


def _positive_int(name: str, value: object, *, allow_none: bool = False,
                  maximum: int | None = None) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    if maximum is not None and value > maximum:
        raise InputError(f"{name} must be at most {maximum}, got {value!r}")


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Network size, batch size and learning rate left at ``None`` take the
    dataset's defaults (:data:`ecnas.trainer.recipe.DATASET_DEFAULTS`: the full NAS-Bench-101
    network for ``cifar10``, a small one for ``embedded``); after construction they are set."""

    matrix: str
    ops: str
    budget_epochs: int
    repeat: int = 1
    seed: int = 0
    dataset: str = "embedded"
    data_dir: str | None = None
    stem_channels: int | None = None
    num_stacks: int | None = None
    cells_per_stack: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    checkpoints: tuple[float, ...] = DEFAULT_CHECKPOINTS
    device: str = "cpu"
    deterministic: bool = False
    max_train_images: int | None = None
    max_eval_images: int | None = None  # cap on each evaluation split (None: all)
    bn_decay: float | None = None  # BatchNorm moving-average decay, TF convention
    #: the grid's gCO2/kWh for the rows' CO2 columns (None: no CO2, never a guess)
    carbon_intensity_g_per_kwh: float | None = None
    warmup_steps: int = 0  # unmetered steps before the run (campaigns: 10); cost in provenance

    def __post_init__(self) -> None:
        if self.dataset not in DATASET_DEFAULTS:
            raise InputError(f"dataset must be one of {', '.join(DATASET_DEFAULTS)}, "
                             f"got {self.dataset!r}")
        defaults = DATASET_DEFAULTS[self.dataset]
        for name in ("stem_channels", "num_stacks", "cells_per_stack", "batch_size",
                     "learning_rate", "bn_decay"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, getattr(defaults, name))
        object.__setattr__(self, "checkpoints", parse_checkpoints(self.checkpoints))
        _positive_int("budget_epochs", self.budget_epochs, maximum=MAX_BUDGET_EPOCHS)
        _positive_int("repeat", self.repeat, maximum=MAX_REPEATS)
        for name in ("stem_channels", "num_stacks", "cells_per_stack", "batch_size"):
            _positive_int(name, getattr(self, name))
        _positive_int("max_train_images", self.max_train_images, allow_none=True)
        _positive_int("max_eval_images", self.max_eval_images, allow_none=True)
        w = self.warmup_steps
        if not isinstance(w, int) or isinstance(w, bool) or not 0 <= w <= MAX_WARMUP_STEPS:
            raise InputError(f"warmup_steps must be an integer from 0 to {MAX_WARMUP_STEPS}, "
                             f"got {w!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise InputError(f"seed must be a non-negative integer, got {self.seed!r}")
        lr = self.learning_rate
        if not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
            raise InputError(f"learning_rate must be a positive number, got {lr!r}")
        object.__setattr__(self, "learning_rate", float(lr))
        bn = self.bn_decay
        if not isinstance(bn, (int, float)) or isinstance(bn, bool) or not 0 <= bn < 1:
            raise InputError(f"bn_decay must lie in [0, 1), got {bn!r}")
        object.__setattr__(self, "bn_decay", float(bn))
        if not isinstance(self.device, str) or not _DEVICE.match(self.device):
            raise InputError(f"device must be cpu, cuda or cuda:N, got {self.device!r}")
        if not isinstance(self.deterministic, bool):
            raise InputError(f"deterministic must be true or false, got {self.deterministic!r}")
        if self.data_dir is not None:
            object.__setattr__(self, "data_dir", os.fspath(self.data_dir))

        object.__setattr__(self, "carbon_intensity_g_per_kwh",
                           check_carbon_intensity(self.carbon_intensity_g_per_kwh))

        spec = ModelSpec(self.matrix, self.ops)  # malformed input raises InputError here
        if not spec.valid:
            raise InputError(f"invalid cell {self.matrix} [{self.ops}]: {spec.invalid_reason}")

    @property
    def recipe(self) -> Recipe:
        """The training recipe (NAS-Bench-101's RMSProp, schedule and augmentation) at this
        run's learning rate and batch size."""
        assert self.batch_size is not None and self.learning_rate is not None
        return Recipe(learning_rate=self.learning_rate, batch_size=self.batch_size)

    @property
    def run_seed(self) -> int:
        """The seed this run actually uses: distinct per (seed, repeat)."""
        return int(np.random.SeedSequence([self.seed, self.repeat]).generate_state(1)[0])

    def to_dict(self) -> dict[str, Any]:
        """The config as plain, JSON-able data; :meth:`from_dict` reads it back."""
        d = asdict(self)
        d["checkpoints"] = list(self.checkpoints)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """A config from plain data (as :meth:`to_dict` writes it); unknown or missing keys and
        invalid values are an :class:`~ecnas.errors.InputError`."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"TrainConfig: unknown key(s) {', '.join(unknown)}")
        kwargs = dict(data)
        if "checkpoints" in kwargs and not isinstance(kwargs["checkpoints"], str):
            kwargs["checkpoints"] = tuple(kwargs["checkpoints"])
        try:
            return cls(**kwargs)
        except TypeError as exc:  # a required key missing
            raise InputError(f"TrainConfig: {exc}") from exc
