"""Energy table → EC-NAS TFRecord (NAS-Bench-101 framing, EC-NAS's ModelMetricsEnergy proto).

One record per (architecture, budget, repeat, device) run, with exactly the three evaluations
EC-NAS's reader expects: index 0 the first checkpoint (epoch 0), 1 the halfway checkpoint (the
one closest to half the final epoch), 2 the final one. Framing and proto come from
``ecnas.tables.tfrecord`` / ``ecnas.tables.proto`` (one codec in the project).

Energies are written as EC-NAS publishes them: kWh with the facility factor (PUE) recorded in
the table's metadata re-applied, so EC-NAS users get numbers comparable to EC-NAS's own. The
run's GPU and CPU joules go into ``avg_power_usages`` without PUE; ``ecnas import-ecnas``
measures the factor back from ``total_energy / (GPU J + CPU J)`` and divides it out again, so
an exported-then-imported table equals the original (see docs/benchmark.md for the fields).

Skipped, with counts: runs whose ``source`` is ``extrapolated`` or ``surrogate`` (not training
runs) and runs with fewer than three checkpoints. Checkpoints beyond the three are dropped and
counted (the format's reader looks at evaluations 1 and 2 only).
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ecnas.errors import InputError

#: wall times are written as stop_emission − start_emission from this (1-s timestamps)
_EPOCH0 = _dt.datetime(2000, 1, 1)


@dataclass(frozen=True)
class ExportReport:
    """What an EC-NAS TFRecord export wrote and what it left out (and why)."""

    path: str
    records: int
    skipped_runs: dict[str, int] = field(default_factory=dict)
    checkpoints_dropped: int = 0
    pue: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "format": "ecnas-tfrecord", "records": self.records,
                "skipped_runs": dict(self.skipped_runs),
                "checkpoints_dropped": self.checkpoints_dropped, "pue_reapplied": self.pue}


def _opt(v: Any) -> float | None:
    v = float(v)
    return None if math.isnan(v) else v


def _device_names(table_meta: dict[str, Any], device: str, cache: dict[str, str]) -> str:
    if device not in cache:
        from ecnas.profiles import get_profile

        profile = get_profile(device)
        if profile is not None and profile.match.names:
            cache[device] = profile.match.names[-1]
        elif profile is not None:
            cache[device] = profile.name
        else:
            cache[device] = device  # unknown profile: the importer names it unknown-<slug>
    return cache[device]


def _run_metrics(rows: Any, cols: dict[str, np.ndarray], pue: float, gpu_name: str,
                 cpu_count: int, cpu_names: list[str]) -> Any:
    from ecnas.benchmark.api import kwh_of, to_kwh
    from ecnas.tables.proto import (
        Device,
        DeviceUsage,
        EvaluationDataEnergy,
        ModelMetricsEnergy,
        PowerUsageData,
        UsageJ,
        UsageW,
    )

    first, final = rows[0], rows[-1]
    fin_e = cols["epoch"][final]
    inner = rows[1:-1]
    half = inner[int(np.argmin(np.abs(cols["epoch"][inner] - fin_e / 2)))]
    evals = []
    for i in (first, half, final):
        wall = cols["wall_time_s"][i]
        stop = None if math.isnan(wall) else (_EPOCH0 + _dt.timedelta(seconds=round(wall)))
        evals.append(EvaluationDataEnergy(
            current_epoch=_opt(cols["epoch"][i]), training_time=_opt(cols["training_time_s"][i]),
            train_accuracy=_opt(cols["train_accuracy"][i]),
            validation_accuracy=_opt(cols["validation_accuracy"][i]),
            test_accuracy=_opt(cols["test_accuracy"][i]),
            energy=_opt(kwh_of(cols["energy_kwh"][i], cols["energy_j"][i], pue)),
            co2eq=_opt(cols["co2eq_g"][i]),
            pred_energy=_opt(kwh_of(cols["predicted_energy_kwh"][i], cols["predicted_energy_j"][i], pue)),
            stop_emission=None if stop is None else stop.strftime("%Y-%m-%d %H:%M:%S")))
    e_fin = cols["energy_j"][final]
    g_fin, c_fin = cols["gpu_energy_j"][final], cols["cpu_energy_j"][final]
    comp = cols["run_energy_j"][final]
    if math.isnan(comp):
        comp = e_fin
    run_time = cols["run_time_s"][final]
    total_kwh = cols["run_energy_kwh"][final]
    span = next((t for t in (run_time, cols["wall_time_s"][final], cols["training_time_s"][final])
                 if not math.isnan(t) and t > 0), None)

    def watts(joules: float) -> tuple[UsageW, ...]:
        # average power over the run, as carbontracker reports it (absent without a duration)
        return () if span is None else (UsageW((joules / span,)),)

    cpu = None
    if not math.isnan(g_fin) and e_fin > 0:
        g_run = comp * g_fin / e_fin
        gpu = DeviceUsage(watts(g_run), (UsageJ((g_run,)),), (Device(gpu_name),))
        if not math.isnan(c_fin):
            c_run = comp - g_run
            n = max(cpu_count, 1)
            cpu = DeviceUsage(tuple(w for _ in range(n) for w in watts(c_run / n)),
                              tuple(UsageJ((c_run / n,)) for _ in range(n)),
                              tuple(Device(cpu_names[k] if k < len(cpu_names) else f"cpu:{k}")
                                    for k in range(n)))
    else:
        # no component split in the table: the whole energy as the GPU's, so the factor can be
        # measured back on import (the component columns do not survive this case)
        gpu = DeviceUsage(watts(comp), (UsageJ((comp,)),), (Device(gpu_name),))
    return ModelMetricsEnergy(
        evaluation_data_energy=tuple(evals),
        trainable_parameters=int(cols["trainable_params"][final]),
        total_time=_opt(run_time),
        # run_energy_j comes from the component joules, not from this (6-decimal) figure
        total_energy=_opt(total_kwh if total_kwh == total_kwh else to_kwh(comp, pue)),
        start_emission=_EPOCH0.strftime("%Y-%m-%d %H:%M:%S"),
        avg_power_usages=PowerUsageData(gpu=gpu, cpu=cpu))


def export_ecnas_tfrecord(table: Any, path: str | Path) -> ExportReport:
    """Write ``table`` as an EC-NAS TFRecord file; the report says what was skipped."""
    from ecnas.benchmark.api import pue_of
    from ecnas.tables import get_metadata, validate
    from ecnas.tables.tfrecord import EcnasRecord, write_records

    df = validate(table)
    meta = get_metadata(table)
    pue = pue_of(meta)
    devs = meta.get("devices") or {}
    cpu_meta = devs.get("cpu") or {}
    cpu_count = int(cpu_meta.get("count") or 1)
    cpu_names = [str(n) for n in cpu_meta.get("names") or []]
    skipped = {"extrapolated or surrogate": 0, "fewer than three checkpoints": 0}
    keep = df["source"].isin(("measured", "imported")).to_numpy()
    n = len(df)
    cols = {c: (df[c].to_numpy(dtype="float64") if c in df.columns else np.full(n, np.nan))
            for c in ("epoch", "training_time_s", "wall_time_s", "energy_j", "gpu_energy_j",
                      "cpu_energy_j", "train_accuracy", "validation_accuracy", "test_accuracy",
                      "co2eq_g", "predicted_energy_j", "run_energy_j", "run_time_s",
                      "energy_kwh", "run_energy_kwh", "predicted_energy_kwh")}
    cols["trainable_params"] = df["trainable_params"].to_numpy()
    runs = df[["arch_hash", "budget_epochs", "repeat", "device"]]
    run_id = runs.groupby(list(runs.columns), sort=True, observed=True).ngroup().to_numpy()
    excluded = np.unique(run_id[~keep])
    skipped["extrapolated or surrogate"] = int(excluded.size)
    order = np.lexsort((cols["epoch"], run_id))
    bounds = np.flatnonzero(np.diff(run_id[order])) + 1
    hashes, budgets = df["arch_hash"].to_numpy(), df["budget_epochs"].to_numpy()
    mats, opss, devices = df["matrix"].to_numpy(), df["ops"].to_numpy(), df["device"].to_numpy()
    name_cache: dict[str, str] = {}
    excluded_set = set(excluded.tolist())
    dropped = 0

    def records() -> Any:
        nonlocal dropped
        for rows in np.split(order, bounds):
            if len(rows) == 0 or int(run_id[rows[0]]) in excluded_set:
                continue
            if len(rows) < 3:
                skipped["fewer than three checkpoints"] += 1
                continue
            dropped += len(rows) - 3
            i = rows[0]
            m = _run_metrics(rows, cols, pue, _device_names(meta, str(devices[i]), name_cache),
                             cpu_count, cpu_names)
            yield EcnasRecord(str(hashes[i]), int(budgets[i]), str(mats[i]), str(opss[i]), m).to_bytes()

    count = 0

    def counted() -> Any:
        nonlocal count
        for r in records():
            count += 1
            yield r

    out = Path(path)
    write_records(out, counted())
    if count == 0:
        out.unlink()
        raise InputError(f"{out}: no run can be written in EC-NAS's format "
                         f"(skipped: {', '.join(f'{v} {k}' for k, v in skipped.items() if v)})")
    return ExportReport(str(out), count, {k: v for k, v in skipped.items() if v}, dropped, pue)


def write_ecnas_tfrecord(table: Any, path: str | Path) -> int:
    """Write ``table`` as an EC-NAS TFRecord file; the number of records written."""
    return export_ecnas_tfrecord(table, path).records
