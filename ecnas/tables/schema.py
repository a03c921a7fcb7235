"""The energy-table contract (docs/architecture.md) as a validated schema.

``COLUMNS`` lists the contract's columns in order with their dtype, unit and whether a table
must carry them. ``check_schema`` normalizes a DataFrame to those dtypes, fills what can be derived
(``arch_hash`` from matrix + ops, NaN for absent optional columns) and raises ``InputError``
naming the column and the value on anything it cannot accept. Columns beyond the contract
(``cpu_share``, ``energy_j_low``, ``eval_time_s`` …) are kept as they are, after the contract's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ecnas.errors import InputError
from ecnas.space import ModelSpec

SOURCES = ("measured", "imported", "extrapolated", "surrogate")
COMPONENT_COLUMNS = ("gpu_energy_j", "cpu_energy_j", "dram_energy_j")
#: the columns that identify one training run (a run has one row per checkpoint)
RUN_KEYS = ("arch_hash", "budget_epochs", "repeat", "device")
#: the columns that identify one row
ROW_KEYS = (*RUN_KEYS, "epoch")


@dataclass(frozen=True)
class Column:
    """One contract column: name, pandas dtype, unit, whether a table must carry it."""

    name: str
    dtype: str  # "str" | "int" | "float" | "bool"
    unit: str
    required: bool
    meaning: str


COLUMNS: tuple[Column, ...] = (
    Column("arch_hash", "str", "", False, "NAS-Bench-101 iso-hash of the pruned cell"),
    Column("matrix", "str", "", True, "pruned adjacency, row-major 0/1 string"),
    Column("ops", "str", "", True, "comma-separated op labels, input first, output last"),
    Column("budget_epochs", "int", "epoch", True, "epochs the run's schedule was set for"),
    Column("epoch", "float", "epoch", True, "the checkpoint, epochs since the start of the run"),
    Column("repeat", "int", "", True, "1-based repeat index"),
    Column("device", "str", "", True, "hardware profile id of the measuring device"),
    Column("training_time_s", "float", "s", True, "cumulative training seconds"),
    Column("wall_time_s", "float", "s", True, "cumulative wall seconds (evaluation included)"),
    Column("energy_j", "float", "J", True, "cumulative energy = sum of the present components"),
    Column("gpu_energy_j", "float", "J", False, "cumulative GPU energy; NaN where not metered"),
    Column("cpu_energy_j", "float", "J", False, "cumulative CPU energy; NaN where not metered"),
    Column("dram_energy_j", "float", "J", False, "cumulative DRAM energy; NaN where not metered"),
    Column("estimated", "bool", "", True, "true where any component was estimated"),
    Column("source", "str", "", True, "measured, imported, extrapolated or surrogate"),
    Column("train_accuracy", "float", "fraction", False, "at the checkpoint; NaN if not evaluated"),
    Column("validation_accuracy", "float", "fraction", False, "at the checkpoint; NaN if not evaluated"),
    Column("test_accuracy", "float", "fraction", False, "at the checkpoint; NaN if not evaluated"),
    Column("trainable_params", "int", "", True, "trainable parameters of the network"),
    Column("flops", "float", "FLOP/image", False, "forward FLOPs per image; NaN if unknown"),
)
COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)
_BY_NAME = {c.name: c for c in COLUMNS}
_PANDAS_DTYPE = {"str": str, "int": "int64", "float": "float64", "bool": "bool"}


def empty_table() -> pd.DataFrame:
    """A table with the contract's columns, dtypes and no rows."""
    return pd.DataFrame({c.name: pd.Series([], dtype=_PANDAS_DTYPE[c.dtype]) for c in COLUMNS})


def _first_bad(series: pd.Series, bad: np.ndarray) -> Any:
    value = series[bad].iloc[0]
    return value.item() if hasattr(value, "item") else value  # numpy scalar → plain repr


def _as_float(df: pd.DataFrame, name: str) -> pd.Series:
    s = df[name]
    if s.dtype == "float64":
        return s
    if s.dtype == bool:
        raise InputError(f"column {name!r}: booleans are not numbers")
    out = pd.to_numeric(s, errors="coerce").astype("float64")
    bad = out.isna().to_numpy() & s.notna().to_numpy()
    # CSV writes NaN as an empty field, which reads back as NaN already; only text that is
    # not a number is an error.
    if bad.any():
        raise InputError(f"column {name!r}: value {_first_bad(s, bad)!r} is not a number")
    return out


def _as_int(df: pd.DataFrame, name: str) -> pd.Series:
    s = df[name]
    if s.dtype == "int64":
        return s
    f = _as_float(df, name) if s.dtype != bool else None
    if f is None:
        raise InputError(f"column {name!r}: booleans are not integers")
    arr = f.to_numpy()
    missing = np.isnan(arr)
    if missing.any():
        raise InputError(f"column {name!r}: missing value in row {int(np.argmax(missing))} "
                         "(integers cannot be empty)")
    frac = arr != np.round(arr)
    if frac.any():
        raise InputError(f"column {name!r}: value {float(arr[frac][0])!r} is not an integer")
    return pd.Series(arr.astype("int64"), index=s.index, name=name)


_TRUE = {"true", "1", "yes", "t", "y"}
_FALSE = {"false", "0", "no", "f", "n"}


def _as_bool(df: pd.DataFrame, name: str) -> pd.Series:
    s = df[name]
    if s.dtype == bool:
        return s
    if s.isna().any():
        raise InputError(f"column {name!r}: missing value in row "
                         f"{int(np.argmax(s.isna().to_numpy()))} (must be true or false)")
    if pd.api.types.is_numeric_dtype(s):
        arr = s.to_numpy(dtype="float64")
        bad = ~np.isin(arr, (0.0, 1.0))
        if bad.any():
            raise InputError(f"column {name!r}: value {float(arr[bad][0])!r} is not a boolean")
        return pd.Series(arr == 1.0, index=s.index, name=name)
    text = s.astype(str).str.strip().str.lower()
    ok_true, ok_false = text.isin(_TRUE), text.isin(_FALSE)
    bad = ~(ok_true | ok_false).to_numpy()
    if bad.any():
        raise InputError(f"column {name!r}: value {_first_bad(s, bad)!r} is not a boolean")
    return pd.Series(ok_true.to_numpy(), index=s.index, name=name)


def _as_str(df: pd.DataFrame, name: str) -> pd.Series:
    s = df[name]
    missing = s.isna().to_numpy()
    if missing.any():
        raise InputError(f"column {name!r}: missing value in row {int(np.argmax(missing))}")
    return s.astype(str)  # a no-op on pandas' string dtype (what Parquet and CSV give)


def _hashes(matrix: pd.Series, ops: pd.Series) -> pd.Series:
    """arch_hash per row, computed once per distinct (matrix, ops) pair."""
    pairs = pd.DataFrame({"m": matrix, "o": ops})
    uniq = pairs.drop_duplicates()
    lookup = {}
    for m, o in zip(uniq["m"], uniq["o"], strict=True):
        try:
            lookup[(m, o)] = ModelSpec(m, o).hash()
        except InputError as exc:
            raise InputError(f"columns matrix/ops: cannot hash matrix={m!r} ops={o!r}: {exc}") from None
    keys = list(zip(matrix, ops, strict=True))
    return pd.Series([lookup[k] for k in keys], index=matrix.index, name="arch_hash", dtype=object)


def check_schema(df: pd.DataFrame, *, compute_hash: bool = True) -> pd.DataFrame:
    """The table with contract dtypes, contract columns first (others kept after them).

    Missing optional float columns are filled with NaN; a missing ``arch_hash`` is computed
    from ``matrix`` + ``ops`` (iso-hash of the pruned cell). Raises ``InputError`` naming the
    first column that is missing or holds a value of the wrong type or outside the allowed set.
    Metadata in ``df.attrs`` travels with the result.
    """
    if not isinstance(df, pd.DataFrame):
        raise InputError(f"expected a pandas DataFrame, got {type(df).__name__}")
    dup = df.columns[df.columns.duplicated()]
    if len(dup):
        raise InputError(f"column {dup[0]!r} appears more than once")
    missing = [c.name for c in COLUMNS if c.required and c.name not in df.columns]
    if missing:
        raise InputError(f"missing required column{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(repr(m) for m in missing)}")
    out: dict[str, pd.Series] = {}
    n = len(df)
    for col in COLUMNS:
        if col.name not in df.columns:
            if col.dtype == "float":
                out[col.name] = pd.Series(np.full(n, np.nan), index=df.index, dtype="float64")
            continue  # arch_hash: computed below
        conv = {"str": _as_str, "int": _as_int, "float": _as_float, "bool": _as_bool}[col.dtype]
        out[col.name] = conv(df, col.name)
    if "arch_hash" not in out:
        if not compute_hash:
            raise InputError("missing column 'arch_hash'")
        out["arch_hash"] = _hashes(out["matrix"], out["ops"])
    src = out["source"]
    bad = ~src.isin(SOURCES).to_numpy()
    if bad.any():
        raise InputError(f"column 'source': value {_first_bad(src, bad)!r} is not one of "
                         f"{', '.join(SOURCES)}")
    result = pd.DataFrame({name: out[name] for name in COLUMN_NAMES}, index=df.index)
    extras = [c for c in df.columns if c not in _BY_NAME]
    if extras:
        result = pd.concat([result, df[extras]], axis=1)
    result.attrs = dict(df.attrs)
    return result


def column(name: str) -> Column:
    """The contract column called ``name`` (KeyError if it is not in the contract)."""
    return _BY_NAME[name]


#: the former name of :func:`check_schema`, kept for existing callers; deprecated
validate = check_schema
