"""The compact in-memory layout of a benchmark: per-architecture columns once, run metrics dense.

A long energy table (one row per checkpoint) becomes:

- architecture columns, one entry per architecture: ``arch_hash``, ``matrix``, ``ops``,
  ``trainable_params``, ``flops``;
- ``metrics``: one float64 matrix ``[arch × budget × repeat, metric]`` (C order, so one run's
  metrics are one contiguous row a query turns into Python floats in one ``tolist()``), with
  the final checkpoint's values and the halfway checkpoint's (EC-NAS's evaluation 1);
- ``present`` / ``source`` / ``estimated`` as small ``[arch, budget, repeat]`` arrays.

Only one device is held (a benchmark answers for one device); a table with several devices is
split by ``layout_from_table(df, device=...)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ecnas.errors import InputError
from ecnas.tables.schema import SOURCES

__all__ = ["ARCH_COLUMNS", "FINAL_COLUMNS", "HALF_COLUMNS", "METRICS", "METRIC_INDEX", "SOURCES",
           "Layout", "devices_of", "layout_from_frames", "layout_from_table"]

#: run-level metric columns held in ``Layout.metrics`` (final checkpoint, then halfway);
#: ``energy_kwh`` is the published kWh of imported EC-NAS runs (NaN for everything else)
FINAL_COLUMNS = (
    "epoch", "training_time_s", "wall_time_s", "energy_j", "gpu_energy_j", "cpu_energy_j",
    "dram_energy_j", "energy_j_low", "energy_j_high", "train_accuracy", "validation_accuracy",
    "test_accuracy", "energy_kwh",
)
HALF_COLUMNS = ("epoch", "training_time_s", "energy_j", "train_accuracy", "validation_accuracy",
                "test_accuracy", "energy_kwh")
METRICS = FINAL_COLUMNS + tuple(f"half_{c}" for c in HALF_COLUMNS)
METRIC_INDEX = {name: i for i, name in enumerate(METRICS)}
ARCH_COLUMNS = ("arch_hash", "matrix", "ops", "trainable_params", "flops")


@dataclass(frozen=True)
class Layout:
    """One device's benchmark data, dense over architecture × budget × repeat."""

    device: str
    budgets: tuple[int, ...]
    repeats: int
    arch_hash: np.ndarray  # object (str), [A]
    matrix: np.ndarray  # object (str), [A]
    ops: np.ndarray  # object (str), [A]
    trainable_params: np.ndarray  # int64, [A]
    flops: np.ndarray  # float64, [A]
    metrics: np.ndarray  # float64, [A*B*R, len(METRICS)]
    present: np.ndarray  # bool, [A, B, R]
    source: np.ndarray  # int8 code into SOURCES, [A, B, R]
    estimated: np.ndarray  # bool, [A, B, R]

    @property
    def num_archs(self) -> int:
        """The number of architectures ``A`` the layout holds."""
        return int(self.arch_hash.shape[0])

    def grid(self) -> np.ndarray:
        """``metrics`` viewed as ``[arch, budget, repeat, metric]`` (no copy)."""
        return self.metrics.reshape(self.num_archs, len(self.budgets), self.repeats, len(METRICS))


def arch_fields(archs: Any) -> dict[str, np.ndarray]:
    """A Layout's per-architecture arrays from a bundle's architecture columns (either schema)."""
    return {"arch_hash": np.asarray(archs["arch_hash"], dtype=object),
            "matrix": np.asarray(archs["matrix"], dtype=object),
            "ops": np.asarray(archs["ops"], dtype=object),
            "trainable_params": np.asarray(archs["trainable_params"], dtype="int64"),
            "flops": np.asarray(archs["flops"], dtype="float64")}


def devices_of(df: pd.DataFrame) -> list[str]:
    """Devices of a table, the one with the most rows first (ties: by name)."""
    counts = df["device"].value_counts()
    return sorted(counts.index.astype(str), key=lambda d: (-int(counts[d]), d))


def layout_from_table(df: pd.DataFrame, *, device: str | None = None) -> Layout:
    """The layout of a validated long table (contract columns) for one device.

    ``device=None`` takes the table's only device, or the one with the most rows. For each run
    (arch, budget, repeat) the final checkpoint is the row with the largest ``epoch``; halfway
    is the intermediate checkpoint (0 < epoch < final) closest to half the final epoch.
    """
    if len(df) == 0:
        raise InputError("the table has no rows")
    devs = devices_of(df)
    if device is None:
        device = devs[0]
    elif device not in devs:
        raise InputError(f"device {device!r} is not in the table (it has {', '.join(devs)})")
    if len(devs) > 1:
        df = df[df["device"].to_numpy() == device]
    arch_codes, hashes = pd.factorize(df["arch_hash"], sort=False)
    budgets = np.sort(df["budget_epochs"].unique()).astype("int64")
    b_idx = np.searchsorted(budgets, df["budget_epochs"].to_numpy())
    rep = df["repeat"].to_numpy().astype("int64")
    if (rep < 1).any():
        raise InputError(f"column 'repeat': value {int(rep[rep < 1][0])} is below 1 (repeats are 1-based)")
    n_a, n_b, n_r = len(hashes), len(budgets), int(rep.max())
    run = (arch_codes.astype("int64") * n_b + b_idx) * n_r + (rep - 1)
    epoch = df["epoch"].to_numpy(dtype="float64")
    order = np.lexsort((epoch, run))
    run_s, epoch_s = run[order], epoch[order]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = run_s[1:] != run_s[:-1]
    final_rows = order[last]
    final_run = run_s[last]
    # halfway: per run, the intermediate checkpoint closest to final/2
    group_start = np.ones(len(order), dtype=bool)
    group_start[1:] = run_s[1:] != run_s[:-1]
    gid = np.cumsum(group_start) - 1
    fin_e = epoch_s[last][gid]
    inter = (epoch_s > 0) & (epoch_s < fin_e)
    dist = np.where(inter, np.abs(epoch_s - fin_e / 2), np.inf)
    order2 = np.lexsort((dist, gid))
    first2 = np.ones(len(order2), dtype=bool)
    first2[1:] = gid[order2][1:] != gid[order2][:-1]
    cand = order2[first2]  # positions in the sorted arrays, one per run, in run order
    has_half = np.isfinite(dist[cand])
    half_rows = order[cand]

    metrics = np.full((n_a * n_b * n_r, len(METRICS)), np.nan)
    for k, name in enumerate(FINAL_COLUMNS):
        if name in df.columns:
            metrics[final_run, k] = df[name].to_numpy(dtype="float64")[final_rows]
    off = len(FINAL_COLUMNS)
    for k, name in enumerate(HALF_COLUMNS):
        if name in df.columns:
            vals = df[name].to_numpy(dtype="float64")[half_rows]
            metrics[final_run[has_half], off + k] = vals[has_half]
    present = np.zeros(n_a * n_b * n_r, dtype=bool)
    present[final_run] = True
    source = np.zeros(n_a * n_b * n_r, dtype="int8")
    codes = pd.Categorical(df["source"].to_numpy()[final_rows], categories=list(SOURCES)).codes
    source[final_run] = codes
    estimated = np.zeros(n_a * n_b * n_r, dtype=bool)
    estimated[final_run] = df["estimated"].to_numpy(dtype=bool)[final_rows]

    first_row = np.full(n_a, -1, dtype="int64")
    first_row[arch_codes[::-1]] = np.arange(len(df) - 1, -1, -1)  # first row of each arch
    shape = (n_a, n_b, n_r)
    return Layout(
        device=str(device), budgets=tuple(int(b) for b in budgets), repeats=n_r,
        arch_hash=np.asarray(hashes, dtype=object),
        matrix=df["matrix"].to_numpy(dtype=object)[first_row],
        ops=df["ops"].to_numpy(dtype=object)[first_row],
        trainable_params=df["trainable_params"].to_numpy(dtype="int64")[first_row],
        flops=df["flops"].to_numpy(dtype="float64")[first_row] if "flops" in df.columns
        else np.full(n_a, np.nan),
        metrics=metrics, present=present.reshape(shape), source=source.reshape(shape),
        estimated=estimated.reshape(shape))


def layout_from_frames(archs: pd.DataFrame | Any, runs: Any, *, device: str,
                       budgets: tuple[int, ...], repeats: int) -> Layout:
    """Rebuild a layout from the arch and run columns a bundle stores (numpy/arrow columns).

    ``archs``: mapping of ARCH_COLUMNS → arrays; ``runs``: mapping with ``arch_index``,
    ``budget_epochs``, ``repeat``, ``source`` (codes), ``estimated`` and METRICS → arrays.
    """
    n_a, n_b, n_r = len(archs["arch_hash"]), len(budgets), repeats
    b_idx = np.searchsorted(np.asarray(budgets), runs["budget_epochs"])
    row = (runs["arch_index"].astype("int64") * n_b + b_idx) * n_r + (runs["repeat"].astype("int64") - 1)
    total = n_a * n_b * n_r
    dense = row.shape[0] == total and bool((row == np.arange(total)).all())
    metrics = np.empty((total, len(METRICS))) if dense else np.full((total, len(METRICS)), np.nan)
    for k, name in enumerate(METRICS):
        if name not in runs:  # a bundle written before the column existed
            metrics[:, k] = np.nan
        elif dense:
            metrics[:, k] = runs[name]
        else:
            metrics[row, k] = runs[name]
    present = np.zeros(total, dtype=bool)
    present[row] = True
    source = np.zeros(total, dtype="int8")
    source[row] = runs["source"]
    estimated = np.zeros(total, dtype=bool)
    estimated[row] = runs["estimated"]
    shape = (n_a, n_b, n_r)
    return Layout(device=device, budgets=tuple(budgets), repeats=n_r,
                  **arch_fields(archs),
                  metrics=metrics, present=present.reshape(shape),
                  source=source.reshape(shape), estimated=estimated.reshape(shape))
