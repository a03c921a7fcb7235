"""Trainer benchmarks: metering cost per epoch, CPU training throughput, dataset loading.

Run: ``python3 -m pytest -q benchmarks/bench_trainer.py`` (CI: ``ECNAS_BENCH_QUICK=1`` and
``--benchmark-max-time=0.2 --benchmark-min-rounds=3``). Figures land in ``extra_info``.
"""

from __future__ import annotations

import os

import pytest
import torch

from ecnas.monitor import Monitor
from ecnas.space import ModelSpec
from ecnas.tracker.tracker import EnergyTracker
from ecnas.trainer.augment import pad_crop_flip, standardize
from ecnas.trainer.data import load_dataset
from ecnas.trainer.network import build_network
from ecnas.trainer.optim import TFRMSprop

QUICK = os.environ.get("ECNAS_BENCH_QUICK") == "1"
CELL = ModelSpec("0110001000010000", "input,conv3x3-bn-relu,maxpool3x3,output")


def test_tracker_overhead_per_epoch(benchmark) -> None:
    """Cost of the tracker's per-epoch bookkeeping (one meter read) with the machine's meters."""
    with Monitor() as monitor:
        tracker = EnergyTracker(monitor).start()

        def empty_epoch() -> None:
            for _ in tracker.epochs(1):
                pass  # the epoch's work would go here; what remains is the tracker's cost

        benchmark(empty_epoch)
        tracker.stop()
        benchmark.extra_info["meters"] = ",".join(s.meter for s in monitor.statuses())


@pytest.fixture(scope="module")
def step_setup():
    data = load_dataset("embedded")
    batch = 64
    x = torch.from_numpy(data.train.images[:batch])
    y = torch.from_numpy(data.train.labels[:batch])
    model = build_network(CELL, stem_channels=16, num_stacks=3, cells_per_stack=1)
    opt = TFRMSprop(model.parameters(), lr=0.05, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(0)
    return model, opt, x, y, gen


def test_cpu_training_step_embedded_default(benchmark, step_setup) -> None:
    """One training step (augment, forward, backward, TF-RMSProp) of the embedded default
    network (stem 16, 3 stacks × 1 cell) on a conv3x3+maxpool cell, batch 64, on the CPU."""
    model, opt, x, y, gen = step_setup

    def step() -> None:
        logits = model(pad_crop_flip(standardize(x), 4, True, gen))
        loss = torch.nn.functional.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    benchmark(step)
    benchmark.extra_info["images_per_step"] = len(y)
    benchmark.extra_info["torch_threads"] = torch.get_num_threads()


def test_cpu_forward_full_nasbench_network(benchmark) -> None:
    """Forward pass of the full NAS-Bench-101 network (stem 128, 3 × 3 cells) on a batch of
    CIFAR-sized images, the inference side of a CIFAR-10 run on the CPU."""
    batch = 2 if QUICK else 16
    model = build_network(CELL).eval()
    x = torch.randn(batch, 3, 32, 32)

    def forward() -> None:
        with torch.inference_mode():
            model(x)

    benchmark(forward)
    benchmark.extra_info["images_per_call"] = batch


def test_load_embedded_dataset(benchmark) -> None:
    data = benchmark(load_dataset, "embedded")
    benchmark.extra_info["train_images"] = len(data.train)
