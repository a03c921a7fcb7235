"""Real run functions for the campaign tests (not mocks: the coordinator runs them in real
worker processes). Importable by spawned workers: tests/ is on their sys.path."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from ecnas.space import ModelSpec


def _rows(config: Any, checkpoints: int = 2) -> list[dict[str, Any]]:
    spec = ModelSpec(config.matrix, config.ops)
    h = spec.hash()
    base = int(h[:6], 16) % 1000 + 10.0  # a per-architecture energy, deterministic
    rows = []
    for i in range(checkpoints):
        frac = i / (checkpoints - 1)
        epoch = frac * config.budget_epochs
        cpu = base * (1 + epoch)
        rows.append({
            "arch_hash": h, "matrix": spec.matrix_str, "ops": spec.ops_str,
            "budget_epochs": config.budget_epochs, "repeat": config.repeat, "epoch": epoch,
            "device": "generic-cpu", "training_time_s": 2.0 * epoch,
            "wall_time_s": 2.0 * epoch + 0.5, "energy_j": cpu, "gpu_energy_j": float("nan"),
            "cpu_energy_j": cpu, "dram_energy_j": float("nan"), "estimated": False,
            "source": "measured", "train_accuracy": 0.1 + 0.1 * frac,
            "validation_accuracy": 0.1 + 0.05 * frac, "test_accuracy": 0.1 + 0.05 * frac,
            "trainable_params": 1000 + len(spec.ops_str), "flops": 1e6})
    return rows


def trivial(config: Any) -> list[dict[str, Any]]:
    return _rows(config)


def sleepy(config: Any) -> list[dict[str, Any]]:
    time.sleep(0.02 + (config.repeat % 5) * 0.02)  # spreads completions over time
    return _rows(config)


def big(config: Any) -> list[dict[str, Any]]:
    """Many checkpoints: a run's commit takes long enough to be caught mid-way."""
    return _rows(config, checkpoints=3000)


def socket_meter(config: Any) -> dict[str, Any]:
    """Claims a socket-wide CPU meter, and burns CPU, so the socket split applies."""
    t = time.process_time()
    x = 0
    while time.process_time() - t < 0.3:
        x += 1
    return {"rows": _rows(config), "meters": ["rapl"], "estimate_reasons": []}


def marked(config: Any) -> list[dict[str, Any]]:
    """Rows that say which recipe made them (train_accuracy = learning rate), slow enough that
    two campaigns' runs overlap."""
    time.sleep(0.3)
    return [{**r, "train_accuracy": config.learning_rate} for r in _rows(config)]


def stalls(config: Any) -> list[dict[str, Any]]:
    """Outlasts any test: the run is still going when the test interrupts the coordinator."""
    time.sleep(120)
    return _rows(config)


def crash_once(config: Any) -> list[dict[str, Any]]:
    """The first attempt of each run kills its own process (as a segfault would)."""
    marker = Path(os.environ["ECNAS_TEST_CRASH_DIR"]) / f"{ModelSpec(config.matrix, config.ops).hash()}-{config.repeat}"
    if not marker.exists():
        marker.write_text("crashed once\n")
        os._exit(3)
    return _rows(config)


def loads_torch(config: Any) -> list[dict[str, Any]]:
    """A run that starts torch's thread pools, as any training would."""
    import torch

    torch.ones(64, 64) @ torch.ones(64, 64)
    return _rows(config)


def always_fails(config: Any) -> list[dict[str, Any]]:
    raise RuntimeError(f"this run always fails (repeat {config.repeat})")


def campaign_toml(path: Path, *, count: int = 3, repeats: int = 2, budgets: str = "[1]",
                  retries: int = 2, extra_recipe: str = "",
                  devices: str = '["cpu"]') -> Path:
    """A small campaign file: ``count`` sampled V≤4 cells × budgets × repeats, tiny network."""
    path.write_text(f"""
[campaign]
name = "test"
seed = 0
budgets = {budgets}
repeats = {repeats}
retries = {retries}
devices = {devices}

[architectures]
sample = {{ count = {count}, seed = 1, max_vertices = 4 }}

[recipe]
stem_channels = 4
num_stacks = 1
cells_per_stack = 1
batch_size = 32
max_train_images = 64
max_eval_images = 64
deterministic = true
{extra_recipe}
""", encoding="utf-8")
    return path


_gated_calls = 0


def gated(config: Any) -> list[dict[str, Any]]:
    """The n-th run (0-based, inline in the coordinator's process) finishes only once the test
    writes ``$ECNAS_TEST_GATE_DIR/go-n``: the test decides when each run lands."""
    global _gated_calls
    gate = Path(os.environ["ECNAS_TEST_GATE_DIR"]) / f"go-{_gated_calls}"
    _gated_calls += 1
    deadline = time.monotonic() + 120
    while not gate.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{gate} never appeared")
        time.sleep(0.02)
    return _rows(config)
def on_cluster(config: Any) -> list[dict[str, Any]]:
    """A run slow enough to be caught mid-way by a fault test; it leaves a marker naming the
    batch job, node and process it runs in (``$ECNAS_TEST_MARKS``), then sleeps 2 s."""
    marks = Path(os.environ["ECNAS_TEST_MARKS"])
    job = os.environ.get("SLURM_JOB_ID", "none")
    name = f"{job}-{os.getpid()}-{ModelSpec(config.matrix, config.ops).hash()}-" \
           f"{config.budget_epochs}-{config.repeat}-{time.time_ns()}"
    (marks / name).write_text("started\n")
    time.sleep(2.0)
    return _rows(config)


def metered_gpus(config: Any) -> dict[str, Any]:
    """What the run's meters see (the default Monitor of the worker process, as the trainer
    uses it): each usable meter's devices with their UUIDs."""
    from ecnas.monitor import default_monitor

    statuses = default_monitor().statuses()
    hardware = [{"meter": s.meter, "domain": d.domain, "kind": str(getattr(d.kind, "value", d.kind)),
                 "name": d.name, "uuid": d.uuid}
                for s in statuses if s.usable for d in s.devices]
    return {"rows": _rows(config), "meters": [s.meter for s in statuses], "hardware": hardware}
