"""Reading and writing energy tables: Parquet (with metadata) and CSV (metadata sidecar).

Writes go through :mod:`ecnas.outputs` (atomic, modes from the umask, read-only targets
refused), so a crashed writer never leaves a half table behind. Every read problem becomes
one ``InputError`` line naming the file.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ecnas.errors import InputError
from ecnas.outputs import atomic_path, check_target, dumps_json, write_json
from ecnas.tables.metadata import KEY, get_metadata, merge_metadata, set_metadata
from ecnas.tables.schema import COLUMNS, check_schema

SUFFIXES = (".parquet", ".csv")


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError(f"{path}: a table must end in .parquet or .csv (got {suffix or 'no suffix'!r})")
    return suffix[1:]


def sidecar(path: Path) -> Path:
    """Where a CSV table's metadata lives."""
    return path.with_name(path.name + ".meta.json")


def check_table_target(path: str | Path, *, force: bool = False,
                       inputs: Iterable[str | Path] = (), option: str = "--out") -> Path:
    """Check a table output before any work: suffix, folder, not an input, an existing file
    (or CSV metadata sidecar) replaced only with ``force`` (see :mod:`ecnas.outputs`)."""
    p = Path(path)
    kind = _kind(p)
    return check_target(p, force=force, inputs=inputs, option=option,
                        companions=[sidecar(p)] if kind == "csv" else ())


def _read_parquet(path: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    try:
        try:
            str(path).encode("utf-8")
            table = pq.read_table(path)
        except UnicodeEncodeError:  # pyarrow cannot take a file name that is not UTF-8
            with open(path, "rb") as fh:
                table = pq.read_table(fh)
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: not a readable Parquet file ({reason})") from None
    raw = (table.schema.metadata or {}).get(KEY.encode())
    meta: dict[str, Any] = {}
    if raw:
        try:
            meta = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: Parquet metadata key {KEY!r} is not JSON ({exc})") from None
    # pandas' own schema metadata would restore a stale index; we store none.
    return table.to_pandas(ignore_metadata=True), meta


def _read_csv(path: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    try:
        # Text columns stay text: a matrix "0110…" or an all-digit hash must not become a number.
        df = pd.read_csv(path, dtype={c.name: str for c in COLUMNS if c.dtype == "str"},
                         keep_default_na=True, low_memory=False)
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: empty CSV file (no header row)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        reason = str(exc).strip().splitlines()[-1]
        raise InputError(f"{path}: not a readable CSV table ({reason})") from None
    _check_csv_rows(path)
    meta: dict[str, Any] = {}
    side = sidecar(path)
    if side.is_file():
        try:
            meta = json.loads(side.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InputError(f"{side}: metadata is not JSON ({exc})") from None
    return df, meta


def _check_csv_rows(path: Path) -> None:
    """Every row has the header's number of fields: pandas fills a row cut short (a truncated
    file, a lost line end) with NaN, and a row missing only optional columns would pass as
    data. One pass of the C csv reader (about the time pandas takes to parse the file)."""

    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        n = len(header)
        for row in reader:
            if row and len(row) != n:
                raise InputError(f"{path}: line {reader.line_num}: {len(row)} fields, the header "
                                 f"has {n} (a truncated or broken row)")


def _check_metadata(meta: Any, where: Path) -> None:
    """The metadata's shape, as the writers and checks use it (a file may hold anything)."""
    if not isinstance(meta, dict):
        raise InputError(f"{where}: table metadata is not a JSON object")
    prov = meta.get("provenance")
    if prov is not None and not (isinstance(prov, list)
                                 and all(isinstance(e, dict) for e in prov)):
        raise InputError(f"{where}: table metadata 'provenance' is not a list of objects")
    pue = meta.get("pue")
    factor = pue.get("factor") if isinstance(pue, dict) else pue
    if factor is not None and (isinstance(factor, bool) or not isinstance(factor, (int, float))
                               or not math.isfinite(factor) or factor <= 0):
        raise InputError(f"{where}: table metadata 'pue' factor {factor!r} is not a finite "
                         "number > 0")


def read_table(path: str | Path, *, validate_schema: bool = True) -> pd.DataFrame:
    """Read a Parquet or CSV energy table; metadata lands in ``df.attrs["ecnas"]``.

    Raises ``InputError`` (one line, naming the file) when the file is missing, truncated,
    not a table, or breaks the schema.
    """
    p = Path(path)
    kind = _kind(p)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if not p.is_file():
        raise InputError(f"{p}: not a file")
    df, meta = _read_parquet(p) if kind == "parquet" else _read_csv(p)
    _check_metadata(meta, p if kind == "parquet" else sidecar(p))
    set_metadata(df, meta) if meta else None
    if not validate_schema:
        return df
    try:
        return check_schema(df)
    except InputError as exc:
        raise InputError(f"{p}: {exc}") from None


def write_table(df: pd.DataFrame, path: str | Path,
                metadata: Mapping[str, Any] | None = None) -> Path:
    """Validate ``df`` and write it by suffix (.parquet or .csv), atomically.

    ``metadata`` is merged over ``df.attrs["ecnas"]`` (provenance lists are concatenated).
    """
    p = Path(path)
    kind = _kind(p)
    if not p.parent.exists():
        raise InputError(f"{p}: folder {p.parent} does not exist")
    table = check_schema(df)
    meta = merge_metadata(get_metadata(df), metadata)
    set_metadata(table, meta)
    with atomic_path(p) as tmp:
        if kind == "parquet":
            arrow = pa.Table.from_pandas(table, preserve_index=False)
            arrow = arrow.replace_schema_metadata({KEY: dumps_json(table.attrs[KEY])})
            pq.write_table(arrow, tmp, compression="zstd")
        else:
            table.to_csv(tmp, index=False)
            # the sidecar first: a table never appears without its metadata
            write_json(sidecar(p), table.attrs[KEY], indent=2)
    return p
