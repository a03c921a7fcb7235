"""Energy-table rows (the contract of ``ecnas.tables.schema``): a check, and writing a table.

The columns, their types and the sources are defined once, in ``ecnas.tables.schema``; this
module checks plain row dicts against them before ``ecnas.tables.write_table`` writes them, so
trainer tables carry the same metadata and checks as every other table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ecnas.errors import InputError
from ecnas.tables.schema import COLUMNS, SOURCES

#: column → Python type every row must hold (float columns may be NaN where documented)
CONTRACT_COLUMNS: dict[str, type] = {
    c.name: {"str": str, "int": int, "float": float, "bool": bool}[c.dtype] for c in COLUMNS}
TABLE_SUFFIXES = (".parquet", ".csv")

__all__ = ["CONTRACT_COLUMNS", "SOURCES", "TABLE_SUFFIXES", "check_table_path",
           "contract_problems", "to_frame", "write_rows"]


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
