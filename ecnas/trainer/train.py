"""Train one NAS-Bench-101 architecture with the meters: :class:`TrainConfig` in, table rows out.

``train_architecture(config)`` builds the cell network (:mod:`ecnas.trainer.network`), trains it
with NAS-Bench-101's recipe (:mod:`ecnas.trainer.recipe`) on the embedded dataset or CIFAR-10,
evaluates at the configured checkpoints and returns one energy-table row per checkpoint.
Configs are plain JSON through ``to_dict``/``from_dict`` so campaigns can ship them to worker
processes and Dask workers.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from typing import Any

from ecnas.errors import InputError
from ecnas.trainer.recipe import (
    DATASET_DEFAULTS,
    DEFAULT_CHECKPOINTS,
    Recipe,
    checkpoint_steps,
    learning_rate_at,
    parse_checkpoints,
)

TRAIN_ACCURACY_SAMPLE = 10_000  # NAS-Bench-101 measures train accuracy on a 10k sample
_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")


def _positive_int(name: str, value: object, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")


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
        _positive_int("budget_epochs", self.budget_epochs)
        _positive_int("repeat", self.repeat)
        for name in ("stem_channels", "num_stacks", "cells_per_stack", "batch_size"):
            _positive_int(name, getattr(self, name))
        _positive_int("max_train_images", self.max_train_images, allow_none=True)
        _positive_int("max_eval_images", self.max_eval_images, allow_none=True)
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
        from ecnas.trainer.tracker import check_carbon_intensity

        object.__setattr__(self, "carbon_intensity_g_per_kwh",
                           check_carbon_intensity(self.carbon_intensity_g_per_kwh))
        from ecnas.space import ModelSpec

        spec = ModelSpec(self.matrix, self.ops)  # malformed input raises InputError here
        if not spec.valid:
            raise InputError(f"invalid cell {self.matrix} [{self.ops}]: {spec.invalid_reason}")

    @property
    def recipe(self) -> Recipe:
        assert self.batch_size is not None and self.learning_rate is not None
        return Recipe(learning_rate=self.learning_rate, batch_size=self.batch_size)

    @property
    def run_seed(self) -> int:
        """The seed this run actually uses: distinct per (seed, repeat)."""
        import numpy as np

        return int(np.random.SeedSequence([self.seed, self.repeat]).generate_state(1)[0])

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["checkpoints"] = list(self.checkpoints)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
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


@dataclass(frozen=True)
class EpochProgress:
    """Sent to ``progress`` after every epoch."""

    repeat: int
    epoch: int  # epochs completed
    budget_epochs: int
    loss: float  # mean training cross-entropy of the epoch (without the L2 term)
    train_accuracy: float  # on the epoch's augmented batches, while training
    learning_rate: float  # at the end of the epoch
    energy_j: float  # cumulative since the run started
    estimated: bool
    meters: tuple[str, ...]
    training_time_s: float
    wall_time_s: float
    images_per_s: float  # training throughput of the epoch


@contextmanager
def _determinism(on: bool, cuda: bool) -> Iterator[None]:
    import torch

    if not on:
        yield
        return
    prev_alg = torch.are_deterministic_algorithms_enabled()
    prev_bench, prev_det = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    if cuda:
        # cuBLAS needs this before its first use to be deterministic
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev_alg)
        torch.backends.cudnn.benchmark = prev_bench
        torch.backends.cudnn.deterministic = prev_det


def _torch_device(name: str) -> Any:
    import torch

    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"device {name}: no CUDA device is visible (torch "
                             f"{torch.__version__}, torch.cuda.is_available() is False); "
                             "use --device cpu")
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"device {name}: only {torch.cuda.device_count()} CUDA device(s)")
        return dev
    return torch.device("cpu")


def _accuracy(model: Any, images: Any, labels: Any, batch_size: int) -> float:
    import torch

    from ecnas.trainer.augment import standardize

    if len(labels) == 0:
        return math.nan
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=labels.device)
    with torch.inference_mode():
        for i in range(0, len(labels), batch_size):
            logits = model(standardize(images[i:i + batch_size]))
            correct += (logits.argmax(dim=1) == labels[i:i + batch_size]).sum()
    model.train(was_training)
    return float(correct.item()) / len(labels)


def train_architecture(config: TrainConfig, *, monitor: Any | None = None,
                       progress: Callable[[EpochProgress], None] | None = None) -> list[dict]:
    """Train ``config``'s cell with the meters; one energy-table row per checkpoint.

    ``monitor``: an :class:`ecnas.monitor.Monitor` to meter on (left open; default: the process's
    shared one, :func:`ecnas.monitor.default_monitor`). ``energy_j`` is cumulative over wall time, evaluations included
    (as EC-NAS records it); ``training_time_s`` excludes evaluations.
    """
    import torch
    import torch.nn.functional as F

    from ecnas.space import ModelSpec
    from ecnas.space.cost import forward_flops
    from ecnas.trainer.augment import pad_crop_flip, standardize
    from ecnas.trainer.data import load_dataset
    from ecnas.trainer.network import build_network, count_trainable_params
    from ecnas.trainer.optim import TFRMSprop
    from ecnas.trainer.tracker import EnergyTracker

    spec = ModelSpec(config.matrix, config.ops)
    recipe = config.recipe
    data = load_dataset(config.dataset, config.data_dir)
    device = _torch_device(config.device)
    cuda = device.type == "cuda"
    train = data.train.head(config.max_train_images)
    n_train = len(train)
    batch = min(recipe.batch_size, n_train)
    steps_per_epoch = n_train // batch
    total_steps = steps_per_epoch * config.budget_epochs
    ckpt_steps = checkpoint_steps(config.checkpoints, total_steps)
    net_kw = dict(stem_channels=config.stem_channels, num_stacks=config.num_stacks,
                  cells_per_stack=config.cells_per_stack, num_classes=data.num_classes,
                  in_channels=data.image_shape[0])

    def tensors(split: Any, limit: int | None) -> tuple[Any, Any]:
        s = split.head(limit)
        return (torch.from_numpy(s.images).to(device), torch.from_numpy(s.labels).to(device))

    x_train, y_train = tensors(train, None)
    eval_sets = {
        "train_accuracy": (x_train[:min(TRAIN_ACCURACY_SAMPLE, config.max_eval_images or n_train)],
                           y_train[:min(TRAIN_ACCURACY_SAMPLE, config.max_eval_images or n_train)]),
        "validation_accuracy": tensors(data.valid, config.max_eval_images),
        "test_accuracy": tensors(data.test, config.max_eval_images),
    }
    seed = config.run_seed
    cuda_devices = [device.index or 0] if cuda else []
    with _determinism(config.deterministic, cuda), torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(seed)
        model = build_network(spec, **net_kw).to(device)
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.momentum = 1.0 - config.bn_decay  # PyTorch weights the new statistic
        params = count_trainable_params(model)
        optimizer = TFRMSprop(model.parameters(), lr=recipe.learning_rate,
                              decay=recipe.rmsprop_decay, momentum=recipe.momentum,
                              eps=recipe.epsilon, weight_decay=recipe.weight_decay)
        gen = torch.Generator().manual_seed(seed)  # batch order and augmentation
        tracker = EnergyTracker(monitor, carbon_intensity_g_per_kwh=config.carbon_intensity_g_per_kwh)
        step = 0
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        seen = 0

        def evaluate_and_checkpoint() -> None:
            with tracker.evaluating():
                metrics = {k: _accuracy(model, x, y, max(batch, 256))
                           for k, (x, y) in eval_sets.items()}
            tracker.checkpoint(step / steps_per_epoch, **metrics)

        def on_epoch(mark: Any) -> None:
            nonlocal loss_sum, correct, seen
            if progress is not None:
                progress(EpochProgress(
                    repeat=config.repeat, epoch=mark.epoch, budget_epochs=config.budget_epochs,
                    loss=float(loss_sum.item()) / max(seen, 1),
                    train_accuracy=float(correct.item()) / max(seen, 1),
                    learning_rate=learning_rate_at(step, total_steps, recipe.learning_rate,
                                                   recipe.schedule),
                    energy_j=mark.cumulative_energy_j, estimated=mark.estimated,
                    meters=mark.meters, training_time_s=mark.training_time_s,
                    wall_time_s=mark.wall_time_s,
                    images_per_s=seen / epoch_train_s[0] if epoch_train_s[0] > 0 else math.nan))
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), dtype=torch.int64, device=device)
            seen = 0

        epoch_train_s = [0.0]
        with tracker:
            if 0 in ckpt_steps:
                evaluate_and_checkpoint()
            model.train()
            for _epoch in tracker.epochs(config.budget_epochs, on_epoch=on_epoch):
                t_epoch = time.monotonic()
                eval_before = tracker.checkpoints[-1].evaluation_time_s if tracker.checkpoints else 0.0
                order = torch.randperm(n_train, generator=gen).to(device)
                for i in range(steps_per_epoch):
                    idx = order[i * batch:(i + 1) * batch]
                    x = pad_crop_flip(standardize(x_train[idx]), recipe.pad, recipe.flip, gen)
                    y = y_train[idx]
                    lr = learning_rate_at(step, total_steps, recipe.learning_rate, recipe.schedule)
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                    logits = model(x)
                    loss = F.cross_entropy(logits, y)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    step += 1
                    with torch.no_grad():
                        loss_sum += loss.detach() * len(y)
                        correct += (logits.argmax(dim=1) == y).sum()
                    seen += len(y)
                    if step in ckpt_steps:
                        evaluate_and_checkpoint()
                eval_after = tracker.checkpoints[-1].evaluation_time_s if tracker.checkpoints else 0.0
                epoch_train_s[0] = time.monotonic() - t_epoch - (eval_after - eval_before)
            device_id = tracker.device_id("gpu" if cuda else "cpu")
    flops = forward_flops(spec, image_size=data.image_shape[1], **net_kw)
    return tracker.rows(
        arch_hash=spec.hash(), matrix=spec.matrix_str, ops=spec.ops_str,
        budget_epochs=config.budget_epochs, repeat=config.repeat, device=device_id,
        source="measured", trainable_params=int(params), flops=float(flops))
