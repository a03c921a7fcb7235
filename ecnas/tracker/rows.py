"""Energy-table rows (the contract of ``ecnas.tables.schema``): a check, and writing a table.

The columns, their types and the sources are defined once, in ``ecnas.tables.schema``; this
module checks plain row dicts against them before ``ecnas.tables.write_table`` writes them, so
trainer tables carry the same metadata and checks as every other table.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ecnas.errors import InputError
from ecnas.interop.record import device_columns, device_id
from ecnas.tables.kwh import KWH_J
from ecnas.tables.schema import COLUMNS, SOURCES
from ecnas.tracker.carbon import check_carbon_intensity

#: column → Python type every row must hold (float columns may be NaN where documented)
CONTRACT_COLUMNS: dict[str, type] = {
    c.name: {"str": str, "int": int, "float": float, "bool": bool}[c.dtype] for c in COLUMNS}
TABLE_SUFFIXES = (".parquet", ".csv")

__all__ = ["CONTRACT_COLUMNS", "SOURCES", "TABLE_SUFFIXES", "check_table_path",
           "contract_problems", "record_columns", "timestamp", "to_frame", "write_rows"]
#: EC-NAS's (carbontracker's) timestamp layout; ecnas writes UTC
TIMESTAMP = "%Y-%m-%d %H:%M:%S"


def contract_problems(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """What in ``rows`` breaks the table contract (empty when nothing does)."""
    problems: list[str] = []
    for i, row in enumerate(rows):
        for col, typ in CONTRACT_COLUMNS.items():
            if col not in row:
                problems.append(f"row {i}: column {col!r} missing")
                continue
            value = row[col]
            ok = isinstance(value, typ) and (typ is not int or not isinstance(value, bool))
            if typ is float:
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not ok:
                problems.append(f"row {i}: {col}={value!r} is not {typ.__name__}")
        if problems:
            continue
        parts = [row[c] for c in ("gpu_energy_j", "cpu_energy_j", "dram_energy_j")
                 if not math.isnan(row[c])]
        if parts and not math.isclose(row["energy_j"], math.fsum(parts), rel_tol=1e-9,
                                      abs_tol=1e-9):
            problems.append(f"row {i}: energy_j {row['energy_j']} ≠ sum of components")
        if row["source"] not in SOURCES:
            problems.append(f"row {i}: source {row['source']!r} not in {SOURCES}")
        if row["training_time_s"] > row["wall_time_s"] + 1e-9:
            problems.append(f"row {i}: training_time_s exceeds wall_time_s")
        if row["repeat"] < 1 or row["epoch"] < 0 or row["epoch"] > row["budget_epochs"]:
            problems.append(f"row {i}: repeat/epoch out of range")
    return problems


def timestamp(unix_s: float) -> str:
    """A Unix time as EC-NAS writes timestamps (``2022-08-23 13:49:47``), in UTC."""
    return time.strftime(TIMESTAMP, time.gmtime(unix_s))


def record_columns(checkpoints: Sequence[Any], *, started_unix: float, final: Any = None,
                   domains: Mapping[str, Any] | None = None, devices: Sequence[Any] = (),
                   carbon_intensity_g_per_kwh: float | None = None) -> list[dict[str, Any]]:
    """The EC-NAS record columns (``ecnas.interop.record``) of a measured run, one dict per
    checkpoint: what the meters and the clock know, nothing invented.

    - ``started_at``/``stopped_at``: the window that ends at the checkpoint (from the previous
      checkpoint, or the run's start), UTC; ``run_started_at``/``run_stopped_at`` the run's.
    - ``run_time_s``, ``run_energy_j``: wall time and energy from start to stop (``final``, the
      run's totals, a :class:`~ecnas.tracker.tracker.Checkpoint`).
    - per device: each *measured* GPU and CPU-package domain of ``domains`` (the final
      report's), its name as the driver reports it (``devices``: the meters'
      :class:`~ecnas.meters.base.DeviceInfo`), its joules and its mean power over the run
      (joules / run time). Estimated domains stay out: EC-NAS's format cannot say so.
    - CO2: only with ``carbon_intensity_g_per_kwh`` (the user's figure for the grid):
      ``co2eq_g = energy_j / 3.6e6 × intensity`` (no facility factor: ecnas meters the devices).
    - Never: forecasts (``predicted_*``), ``energy_kwh`` (a published figure), ``checkpoint_path``.

    Run-level columns need ``final`` (the tracker stopped); without it they stay missing.
    """

    intensity = check_carbon_intensity(carbon_intensity_g_per_kwh)
    per_run: dict[str, Any] = {}
    if final is not None:
        per_run.update(run_time_s=final.wall_time_s, run_energy_j=final.energy_j,
                       run_started_at=timestamp(started_unix),
                       run_stopped_at=timestamp(started_unix + final.wall_time_s))
        if intensity is not None:
            per_run.update(run_co2eq_g=final.energy_j / KWH_J * intensity,
                           run_intensity_g_per_kwh=intensity)
        per_run.update(_device_values(domains or {}, devices, final.wall_time_s))
    out = []
    previous = 0.0
    for cp in checkpoints:
        row: dict[str, Any] = {"started_at": timestamp(started_unix + previous),
               "stopped_at": timestamp(started_unix + cp.wall_time_s)}
        previous = cp.wall_time_s
        if intensity is not None:
            row.update(co2eq_g=cp.energy_j / KWH_J * intensity, intensity_g_per_kwh=intensity)
        out.append({**row, **per_run})
    return out


def _device_values(domains: Mapping[str, Any], devices: Sequence[Any],
                   duration_s: float) -> dict[str, Any]:
    by_domain = {d.domain: d for d in devices}
    out: dict[str, Any] = {}
    count = {"gpu": 0, "cpu": 0}
    for key in sorted(domains):
        d = domains[key]
        info = by_domain.get(d.domain)
        if d.component not in count or d.estimated or info is None or info.kind != d.component:
            continue  # DRAM and platform are not in EC-NAS's format; estimates are not meters
        c_name, c_id, c_w, c_j = device_columns(d.component, count[d.component])
        count[d.component] += 1
        out[c_name], out[c_id], out[c_j] = info.name, device_id(info.name), d.joules
        out[c_w] = d.joules / duration_s if duration_s > 0 else math.nan
    return out


def to_frame(rows: Sequence[Mapping[str, Any]]) -> Any:
    """A pandas DataFrame with the contract's columns first, in the contract's order."""
    import pandas as pd

    df = pd.DataFrame(list(rows))
    ordered = [c for c in CONTRACT_COLUMNS if c in df.columns]
    df = df[ordered + [c for c in df.columns if c not in CONTRACT_COLUMNS]]
    dtypes = {"budget_epochs": "int64", "repeat": "int64", "trainable_params": "int64",
              "estimated": "bool", "epoch": "float64"}
    return df.astype({c: t for c, t in dtypes.items() if c in df.columns})


def check_table_path(path: str | Path) -> Path:
    """``path`` as a Path when it ends in ``.parquet`` or ``.csv`` and its folder exists; else
    an :class:`~ecnas.errors.InputError` (checked before training, not after)."""
    p = Path(path)
    if p.suffix.lower() not in TABLE_SUFFIXES:
        raise InputError(f"--out {p}: the table must end in .parquet or .csv")
    if p.parent and not p.parent.exists():
        raise InputError(f"--out {p}: folder {p.parent} does not exist")
    return p


def write_rows(rows: Sequence[Mapping[str, Any]], path: str | Path,
               metadata: Mapping[str, Any] | None = None) -> Path:
    """Write ``rows`` as a table (Parquet or CSV by suffix); ``metadata`` travels with it."""
    p = check_table_path(path)
    problems = contract_problems(rows)
    if problems:
        raise InputError(f"rows break the table contract: {problems[0]}"
                         + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    df = to_frame(rows)
    from ecnas.tables import write_table

    write_table(df, p, metadata=dict(metadata or {}))
    return p
