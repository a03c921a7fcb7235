"""Train one NAS-Bench-101 architecture with the meters: :class:`TrainConfig` in, table rows out.

``train_architecture(config)`` builds the cell network (:mod:`ecnas.trainer.network`), trains it
with NAS-Bench-101's recipe (:mod:`ecnas.trainer.recipe`) on the embedded dataset or CIFAR-10,
evaluates at the configured checkpoints and returns one energy-table row per checkpoint.
:class:`TrainConfig` itself lives in :mod:`ecnas.trainer.config` (no torch there), and is
importable from here as before.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from ecnas.errors import InputError
from ecnas.space import ModelSpec
from ecnas.space.cost import forward_flops
from ecnas.tracker.tracker import EnergyTracker
from ecnas.trainer.augment import pad_crop_flip, standardize
from ecnas.trainer.config import TrainConfig
from ecnas.trainer.data import load_dataset
from ecnas.trainer.network import build_network, count_trainable_params
from ecnas.trainer.optim import TFRMSprop
from ecnas.trainer.recipe import (
    Recipe,
    checkpoint_steps,
    learning_rate_at,
)

if TYPE_CHECKING:
    from ecnas.tracker.tracker import WarmUp

TRAIN_ACCURACY_SAMPLE = 10_000  # NAS-Bench-101 measures train accuracy on a 10k sample


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


@dataclass(frozen=True)
class TrainResult:
    """A run's table rows, and what its warm-up cost (None without one): provenance, not rows."""

    rows: list[dict]
    warmup: WarmUp | None = None


def train_architecture(config: TrainConfig, *, monitor: Any | None = None,
                       progress: Callable[[EpochProgress], None] | None = None) -> list[dict]:
    """Train ``config``'s cell with the meters; one energy-table row per checkpoint.

    ``monitor``: an :class:`ecnas.monitor.Monitor` to meter on (left open; default: the
    process's shared one, :func:`ecnas.monitor.default_monitor`). ``energy_j`` is cumulative
    over wall time, evaluations included (as EC-NAS records it); ``training_time_s`` excludes
    evaluations. With ``config.warmup_steps`` the run first takes that many unmetered steps
    (see :func:`run_training`, which also returns what they cost).
    """
    return run_training(config, monitor=monitor, progress=progress).rows


def run_training(config: TrainConfig, *, monitor: Any | None = None,
                 progress: Callable[[EpochProgress], None] | None = None) -> TrainResult:
    """:func:`train_architecture`, returning the rows with the warm-up's cost.

    The steps: load the data onto the device (:class:`_RunData`), build the network and its
    optimizer, warm up on a copy of both (:func:`_warm_up`), train and checkpoint the epochs
    under the tracker (:class:`_TrainLoop`), then turn the checkpoints into rows."""
    run = _RunData.load(config)
    with _determinism(config.deterministic, run.cuda), \
            torch.random.fork_rng(devices=run.cuda_devices):
        torch.manual_seed(config.run_seed)
        model, optimizer = _build(config, run)
        tracker = EnergyTracker(
            monitor, carbon_intensity_g_per_kwh=config.carbon_intensity_g_per_kwh)
        warmup = _warm_up(tracker, config, run, model) if config.warmup_steps else None
        with tracker:
            _TrainLoop(config, run, model, optimizer, tracker, progress).run()
            device_id = tracker.device_id("gpu" if run.cuda else "cpu")
    flops = forward_flops(run.spec, image_size=run.image_size, **run.net_kw)
    rows = tracker.rows(
        arch_hash=run.spec.hash(), matrix=run.spec.matrix_str, ops=run.spec.ops_str,
        budget_epochs=config.budget_epochs, repeat=config.repeat, device=device_id,
        source="measured", trainable_params=int(count_trainable_params(model)),
        flops=float(flops))
    return TrainResult(rows=rows, warmup=warmup)


@dataclass(frozen=True)
class _RunData:
    """What one run trains on: the cell, the recipe, the tensors on the device, the batch
    geometry and the steps at which it checkpoints."""

    spec: Any
    recipe: Recipe
    device: Any
    x_train: Any
    y_train: Any
    eval_sets: Mapping[str, tuple[Any, Any]]
    batch: int
    steps_per_epoch: int
    total_steps: int
    ckpt_steps: frozenset[int]
    net_kw: Mapping[str, int]
    image_size: int

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def cuda_devices(self) -> list[int]:
        return [self.device.index or 0] if self.cuda else []

    @classmethod
    def load(cls, config: TrainConfig) -> _RunData:
        data = load_dataset(config.dataset, config.data_dir)
        device = _torch_device(config.device)

        def tensors(split: Any, limit: int | None) -> tuple[Any, Any]:
            s = split.head(limit)
            return (torch.from_numpy(s.images).to(device), torch.from_numpy(s.labels).to(device))

        x_train, y_train = tensors(data.train.head(config.max_train_images), None)
        n_train = len(y_train)
        sample = min(TRAIN_ACCURACY_SAMPLE, config.max_eval_images or n_train)
        batch = min(config.recipe.batch_size, n_train)
        steps_per_epoch = n_train // batch
        total_steps = steps_per_epoch * config.budget_epochs
        return cls(
            spec=ModelSpec(config.matrix, config.ops), recipe=config.recipe, device=device,
            x_train=x_train, y_train=y_train,
            eval_sets={"train_accuracy": (x_train[:sample], y_train[:sample]),
                       "validation_accuracy": tensors(data.valid, config.max_eval_images),
                       "test_accuracy": tensors(data.test, config.max_eval_images)},
            batch=batch, steps_per_epoch=steps_per_epoch, total_steps=total_steps,
            ckpt_steps=frozenset(checkpoint_steps(config.checkpoints, total_steps)),
            # the shape fields are filled from the dataset's defaults in __post_init__
            net_kw=dict(stem_channels=int(config.stem_channels or 0),
                        num_stacks=int(config.num_stacks or 0),
                        cells_per_stack=int(config.cells_per_stack or 0),
                        num_classes=data.num_classes, in_channels=data.image_shape[0]),
            image_size=data.image_shape[1])

    def batch_at(self, order: Any, i: int, gen: Any) -> tuple[Any, Any]:
        """The ``i``-th augmented batch of the permutation ``order``."""
        idx = order[i * self.batch:(i + 1) * self.batch]
        x = pad_crop_flip(standardize(self.x_train[idx]), self.recipe.pad, self.recipe.flip, gen)
        return x, self.y_train[idx]

    def learning_rate(self, step: int) -> float:
        return learning_rate_at(step, self.total_steps, self.recipe.learning_rate,
                                self.recipe.schedule)


def _build(config: TrainConfig, run: _RunData) -> tuple[Any, Any]:
    """The cell network on the device (BatchNorm decay set) and its TF-style RMSProp."""
    model = build_network(run.spec, **run.net_kw).to(run.device)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = 1.0 - float(config.bn_decay or 0.0)  # filled in; PyTorch weights the new statistic
    return model, _optimizer(model, run.recipe)


def _optimizer(model: Any, r: Recipe) -> Any:
    return TFRMSprop(model.parameters(), lr=r.learning_rate, decay=r.rmsprop_decay,
                     momentum=r.momentum, eps=r.epsilon, weight_decay=r.weight_decay)


def _train_step(model: Any, optimizer: Any, x: Any, y: Any, lr: float) -> tuple[Any, Any]:
    """One optimizer step at learning rate ``lr``; returns (loss, logits)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss, logits


def _warm_up(tracker: Any, config: TrainConfig, run: _RunData, model: Any) -> WarmUp:
    """``config.warmup_steps`` training steps of the run's own shapes (network, batch, device)
    on a copy of the network and a fresh optimizer, with random streams of their own: the run
    itself starts exactly as it would without them, but the process's thread pools, allocator
    and kernel choices are already settled when its metered epochs begin."""
    with torch.random.fork_rng(devices=run.cuda_devices):
        twin = copy.deepcopy(model).train()
        opt = _optimizer(twin, run.recipe)
        gen = torch.Generator().manual_seed(config.run_seed ^ 0x5EED)
        n_train = len(run.y_train)

        def step() -> None:
            order = torch.randperm(n_train, generator=gen)[:run.batch].to(run.device)
            x, y = run.batch_at(order, 0, gen)
            _train_step(twin, opt, x, y, run.learning_rate(0))

        return tracker.warm_up(step, config.warmup_steps)


class _EpochStats:
    """Loss and accuracy sums of the epoch under way (kept on the device: no sync per step)
    and the training seconds of the last finished epoch, for progress reports."""

    def __init__(self, device: Any) -> None:
        self.device = device
        self.train_s = 0.0
        self.reset()

    def reset(self) -> None:
        self.loss_sum = torch.zeros((), device=self.device)
        self.correct = torch.zeros((), dtype=torch.int64, device=self.device)
        self.seen = 0

    def add(self, loss: Any, logits: Any, y: Any) -> None:
        with torch.no_grad():
            self.loss_sum += loss.detach() * len(y)
            self.correct += (logits.argmax(dim=1) == y).sum()
        self.seen += len(y)


class _TrainLoop:
    """The metered part of a run: epochs of steps, checkpoints at their steps, progress."""

    def __init__(self, config: TrainConfig, run: _RunData, model: Any, optimizer: Any,
                 tracker: Any, progress: Callable[[EpochProgress], None] | None) -> None:
        self.config, self.run_data, self.model, self.optimizer = config, run, model, optimizer
        self.tracker, self.progress = tracker, progress
        self.gen = torch.Generator().manual_seed(config.run_seed)  # batch order, augmentation
        self.step = 0
        self.stats = _EpochStats(run.device)

    def run(self) -> None:
        if 0 in self.run_data.ckpt_steps:
            self.checkpoint()
        self.model.train()
        for _epoch in self.tracker.epochs(self.config.budget_epochs, on_epoch=self.report):
            self.train_epoch()

    def train_epoch(self) -> None:
        run = self.run_data
        t0, eval0 = time.monotonic(), self._evaluation_s()
        order = torch.randperm(len(run.y_train), generator=self.gen).to(run.device)
        for i in range(run.steps_per_epoch):
            x, y = run.batch_at(order, i, self.gen)
            loss, logits = _train_step(self.model, self.optimizer, x, y,
                                       run.learning_rate(self.step))
            self.step += 1
            self.stats.add(loss, logits, y)
            if self.step in run.ckpt_steps:
                self.checkpoint()
        self.stats.train_s = time.monotonic() - t0 - (self._evaluation_s() - eval0)

    def _evaluation_s(self) -> float:
        cps = self.tracker.checkpoints
        return cps[-1].evaluation_time_s if cps else 0.0

    def checkpoint(self) -> None:
        run = self.run_data
        with self.tracker.evaluating():
            metrics = {k: _accuracy(self.model, x, y, max(run.batch, 256))
                       for k, (x, y) in run.eval_sets.items()}
        self.tracker.checkpoint(self.step / run.steps_per_epoch, **metrics)

    def report(self, mark: Any) -> None:
        """``on_epoch`` of the tracker: the epoch's progress line, then fresh sums."""
        s = self.stats
        if self.progress is not None:
            self.progress(EpochProgress(
                repeat=self.config.repeat, epoch=mark.epoch,
                budget_epochs=self.config.budget_epochs,
                loss=float(s.loss_sum.item()) / max(s.seen, 1),
                train_accuracy=float(s.correct.item()) / max(s.seen, 1),
                learning_rate=self.run_data.learning_rate(self.step),
                energy_j=mark.cumulative_energy_j, estimated=mark.estimated,
                meters=mark.meters, training_time_s=mark.training_time_s,
                wall_time_s=mark.wall_time_s,
                images_per_s=s.seen / s.train_s if s.train_s > 0 else math.nan))
        s.reset()
