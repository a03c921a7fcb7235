"""Training budgets as fidelities: give a benchmark the budgets EC-NAS searched over.

``with_fidelities(bench, (4, 12, 36, 108))`` returns a benchmark holding every listed budget.
Where the table measured a budget its runs are kept as they are (``measured``). Otherwise the
run is built from the benchmark's largest measured budget b₀ at or below it (the smallest if
none is below), as EC-NAS built its full-budget values: time and energy scaled linearly
(× B / b₀), and the validation/test/train error carried along a power law fitted per run
through its halfway and final checkpoints, err(B) = err(b₀)·(B/b₀)^−α with α clipped to
[0, 1] (α = 0, the error unchanged, where the halfway checkpoint is missing). Such runs carry
source ``extrapolated`` and a search's trajectory flags them ``scaled``; they are estimates,
not measurements, and ``ecnas search`` says so.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from ecnas.benchmark.layout import METRIC_INDEX, METRICS, Layout
from ecnas.errors import InputError
from ecnas.tables.schema import SOURCES

#: EC-NAS's (and NAS-Bench-101's) training budgets
ECNAS_BUDGETS = (4, 12, 36, 108)
_SCALED = ("training_time_s", "wall_time_s", "energy_j", "gpu_energy_j", "cpu_energy_j",
           "dram_energy_j", "energy_j_low", "energy_j_high", "energy_kwh")
_ACCURACY = ("train_accuracy", "validation_accuracy", "test_accuracy")


def scaled_layout(lay: Layout, budgets: tuple[int, ...]) -> Layout:
    """``lay`` with every budget of ``budgets`` (measured ones kept, the others scaled)."""
    new = tuple(sorted(set(lay.budgets) | {int(b) for b in budgets}))
    if any(b <= 0 for b in new):
        raise InputError(f"budgets={list(budgets)!r}: epochs must be positive")
    a_n, r_n, m_n = lay.num_archs, lay.repeats, len(METRICS)
    g = lay.grid()
    out = np.full((a_n, len(new), r_n, m_n), np.nan)
    present = np.zeros((a_n, len(new), r_n), dtype=bool)
    source = np.zeros((a_n, len(new), r_n), dtype="int8")
    estimated = np.zeros((a_n, len(new), r_n), dtype=bool)
    old = {b: i for i, b in enumerate(lay.budgets)}
    ext = SOURCES.index("extrapolated")
    for k, b in enumerate(new):
        if b in old:
            i = old[b]
            out[:, k], present[:, k] = g[:, i], lay.present[:, i]
            source[:, k], estimated[:, k] = lay.source[:, i], lay.estimated[:, i]
            continue
        below = [x for x in lay.budgets if x <= b]
        b0 = max(below) if below else min(lay.budgets)
        i = old[b0]
        src = g[:, i]
        dst = out[:, k]
        dst[..., METRIC_INDEX["epoch"]] = b
        for name in _SCALED:
            dst[..., METRIC_INDEX[name]] = src[..., METRIC_INDEX[name]] * (b / b0)
        half_e = src[..., METRIC_INDEX["half_epoch"]]
        for name in _ACCURACY:
            err_f = 1.0 - src[..., METRIC_INDEX[name]]
            err_h = 1.0 - src[..., METRIC_INDEX["half_" + name]]
            with np.errstate(divide="ignore", invalid="ignore"):
                alpha = np.log(err_h / err_f) / np.log(b0 / half_e)
            alpha = np.clip(np.where(np.isfinite(alpha), alpha, 0.0), 0.0, 1.0)
            dst[..., METRIC_INDEX[name]] = 1.0 - err_f * (b / b0) ** (-alpha)
        present[:, k] = lay.present[:, i]
        source[:, k] = np.where(lay.present[:, i], ext, 0)
        estimated[:, k] = lay.estimated[:, i]
    return replace(lay, budgets=new, metrics=out.reshape(-1, m_n), present=present,
                   source=source, estimated=estimated)


def with_fidelities(bench: Any, budgets: tuple[int, ...] | list[int] = ECNAS_BUDGETS) -> Any:
    """A benchmark like ``bench`` holding every budget of ``budgets`` (see the module's docs:
    missing budgets are scaled from the measured ones, and flagged)."""
    from_layout = type(bench)
    out = from_layout(scaled_layout(bench.layout, tuple(budgets)), pue=bench.pue,
                      devices=bench.devices, metadata=bench.metadata, path=bench.path)
    return out


def fidelity_origins(bench: Any) -> dict[int, str]:
    """Per budget: ``measured`` when every present run of it is measured or imported,
    ``scaled`` when every one is extrapolated, ``predicted`` for surrogate rows, else
    ``mixed``."""
    lay = bench.layout
    names = {"measured": "measured", "imported": "measured", "extrapolated": "scaled",
             "surrogate": "predicted"}
    out = {}
    for k, b in enumerate(lay.budgets):
        kinds = {names[SOURCES[c]] for c in np.unique(lay.source[:, k][lay.present[:, k]])}
        out[int(b)] = kinds.pop() if len(kinds) == 1 else "mixed"
    return out
